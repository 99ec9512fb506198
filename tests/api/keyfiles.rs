//! Key files as an operator meets them, through the real binary: the generated secret
//! file is refused when others may read or write it, when another user owns it, or
//! when it cannot be read (never regenerated); SIGHUP reloads a PEM key file or the
//! secret file; `token` stamps `iat`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

use crate::helpers::*;

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventide-hub"));
    command.env_clear().env("RUST_LOG", "info");
    command
}

/// `eventide-hub token --role admin` on the SQLite database in `dir`, no secret set.
fn mint_in(dir: &Path) -> Output {
    binary()
        .args(["token", "--role", "admin"])
        .env("DATABASE_URL", format!("sqlite://{}/hub.db", dir.display()))
        .output()
        .unwrap()
}

fn secret_file(dir: &Path) -> PathBuf {
    dir.join("hub.db.jwt-secret")
}

/// Asserts the binary refused to use the secret file, naming it.
fn assert_refused(output: &Output, file: &Path, why: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exited 0; stderr: {stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains(why), "expected {why:?} in: {stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn the_generated_secret_is_refused_unless_private_and_never_regenerated() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path());
    let first = mint_in(dir.path());
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let secret = std::fs::read(&file).unwrap();

    for mode in [0o640, 0o604, 0o620, 0o602, 0o644] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_refused(&mint_in(dir.path()), &file, &format!("mode is {mode:04o}"));
        // `serve` refuses too, before it listens.
        let served = binary()
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/hub.db", dir.path().display()),
            )
            .env("EVENTIDE_ADDR", "127.0.0.1:0")
            .output()
            .unwrap();
        assert_refused(&served, &file, &format!("mode is {mode:04o}"));
        assert_eq!(
            std::fs::read(&file).unwrap(),
            secret,
            "the secret was replaced"
        );
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(mint_in(dir.path()).status.success());

    // Another user's file: this test runs as root, as CI does, to hand it to nobody.
    std::os::unix::fs::chown(&file, Some(65534), Some(65534))
        .expect("chown needs root (CI runs as root)");
    assert_refused(&mint_in(dir.path()), &file, "owned by uid 65534");
    std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();

    // A file that cannot be read, or is empty: an error, never a new secret.
    std::fs::write(&file, [0xff, 0xfe, 0x00]).unwrap();
    assert_refused(&mint_in(dir.path()), &file, "cannot read it");
    std::fs::write(&file, "").unwrap();
    assert_refused(&mint_in(dir.path()), &file, "it is empty");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_refused(&mint_in(dir.path()), &file, "not a regular file");
    assert!(file.is_dir());
}

#[test]
fn minted_tokens_carry_iat() {
    let before = now();
    let output = binary()
        .args([
            "token",
            "--role",
            "provider",
            "--provider-id",
            "3",
            "--ttl",
            "10m",
        ])
        .env("EVENTIDE_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).unwrap();
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token.trim(),
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &jsonwebtoken::Validation::new(Algorithm::HS256),
    )
    .unwrap()
    .claims;
    let iat = claims["iat"].as_u64().expect("iat is a number");
    assert!((before..=now()).contains(&iat), "{claims}");
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 600);
}

/// A hub process with exactly these variables (plus a free port and a SQLite file in
/// `dir`).
struct Hub {
    child: Child,
    port: u16,
}

impl Hub {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Hub {
        let mut child = binary()
            .env("EVENTIDE_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", format!("sqlite://{}/hub.db", dir.display()))
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = loop {
            let line = lines.next().expect("the hub logs before exiting").unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.rsplit(':').next().unwrap().trim().parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Hub { child, port }
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn status_with(&self, token: &str) -> u16 {
        awc::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/api/providers/1/availability",
                self.port
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Waits until `token` gets `status`, at most 10 s.
    async fn wait_for(&self, token: &str, status: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.status_with(token).await != status {
            assert!(Instant::now() < deadline, "still not {status}");
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signed_with(algorithm: Algorithm, key: EncodingKey) -> String {
    encode(
        &Header::new(algorithm),
        &claims(eventide_hub::auth::Role::Admin, None),
        &key,
    )
    .unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[actix_web::test]
async fn sighup_reloads_the_public_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.pem");
    std::fs::copy(fixture("rsa-public.pem"), &key_file).unwrap();
    let hub = Hub::start(
        dir.path(),
        &[("EVENTIDE_JWT_PUBLIC_KEY_FILE", key_file.to_str().unwrap())],
    );
    let rs256 = signed_with(
        Algorithm::RS256,
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-private.pem")).unwrap()).unwrap(),
    );
    let es256 = signed_with(
        Algorithm::ES256,
        EncodingKey::from_ec_pem(&std::fs::read(fixture("ec-private.pem")).unwrap()).unwrap(),
    );
    assert_eq!(hub.status_with(&rs256).await, 200);
    assert_eq!(hub.status_with(&es256).await, 401);

    std::fs::copy(fixture("ec-public.pem"), &key_file).unwrap();
    // Nothing changes until the signal.
    assert_eq!(hub.status_with(&rs256).await, 200);
    hub.hangup();
    hub.wait_for(&es256, 200).await;
    assert_eq!(hub.status_with(&rs256).await, 401);

    // A broken file at the next SIGHUP: the keys in force stay.
    std::fs::write(&key_file, "not a key").unwrap();
    hub.hangup();
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hub.status_with(&es256).await, 200);
}

#[actix_web::test]
async fn sighup_reloads_the_generated_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let minted = |dir: &Path| {
        let output = mint_in(dir);
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let old = minted(dir.path());
    assert_eq!(hub.status_with(&old).await, 200);

    let file = secret_file(dir.path());
    std::fs::write(&file, "a-rotated-secret-0123456789").unwrap();
    let new = minted(dir.path());
    assert_eq!(hub.status_with(&new).await, 401);
    hub.hangup();
    hub.wait_for(&new, 200).await;
    assert_eq!(hub.status_with(&old).await, 401);

    // A file others may read is refused at SIGHUP too; the secret in force stays.
    std::fs::write(&file, "a-third-secret-0123456789").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    hub.hangup();
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hub.status_with(&new).await, 200);
}
