//! The generated HS256 secret used when `EVENTIDE_JWT_SECRET` is unset.
//!
//! It is kept beside the SQLite file (mode 0600) so that `serve` and `token` find the
//! same one and tokens survive restarts. Whoever can read the file can mint any token,
//! and whoever can write it can swap it; so a file that group or others may read or
//! write, or that another user owns, is refused rather than trusted. The file is
//! generated only when it does not exist: any other failure to read it is an error,
//! because a new secret would silently invalidate every token issued.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use super::KeyError;

/// The only permission bits the secret file may have (owner read and write).
pub const SECRET_FILE_MODE: u32 = 0o600;

/// Where the generated secret of a SQLite database lives: `<db file>.jwt-secret`.
pub fn secret_file_for(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".jwt-secret");
    PathBuf::from(name)
}

/// Reads the secret at `path`, or generates a random one there if no file exists.
pub fn load_or_generate_secret(path: &Path) -> Result<String, KeyError> {
    match read_secret(path) {
        Err(KeyError::SecretFile {
            source: Some(e), ..
        }) if e.kind() == ErrorKind::NotFound => generate(path),
        other => other,
    }
}

/// Reads the secret at `path` after checking who may read and write the file.
pub fn read_secret(path: &Path) -> Result<String, KeyError> {
    let refuse = |detail: String, source: Option<std::io::Error>| KeyError::SecretFile {
        path: path.to_owned(),
        detail,
        source,
    };
    let mut file = File::open(path).map_err(|e| refuse("cannot open it".into(), Some(e)))?;
    // The checks are on the open file, so the file read is the file checked.
    let meta = file
        .metadata()
        .map_err(|e| refuse("cannot inspect it".into(), Some(e)))?;
    if !meta.is_file() {
        return Err(refuse("it is not a regular file".into(), None));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() & 0o777;
        if mode & !SECRET_FILE_MODE != 0 {
            return Err(refuse(
                format!(
                    "its mode is {mode:04o}: group or others may read or write it \
                     (run `chmod 600` on it, or set EVENTIDE_JWT_SECRET)"
                ),
                None,
            ));
        }
        // Linux gives `/proc/self` to the process's effective user.
        let me = std::fs::metadata("/proc/self")
            .map_err(|e| refuse("cannot tell which user the hub runs as".into(), Some(e)))?
            .uid();
        if meta.uid() != me {
            return Err(refuse(
                format!(
                    "it is owned by uid {}, not by the user the hub runs as (uid {me})",
                    meta.uid()
                ),
                None,
            ));
        }
    }
    let mut contents = String::new();
    file.read_to_string(&mut contents)
        .map_err(|e| refuse("cannot read it".into(), Some(e)))?;
    let secret = contents.trim();
    if secret.is_empty() {
        return Err(refuse(
            "it is empty (delete it to generate a new secret, which invalidates every \
             token issued with the old one)"
                .into(),
            None,
        ));
    }
    Ok(secret.to_owned())
}

/// Writes a new random secret to `path`. The file appears complete or not at all (a
/// private temp file linked into place), and a file another process created meanwhile
/// wins.
fn generate(path: &Path) -> Result<String, KeyError> {
    let fail = |detail: &str, e: std::io::Error| KeyError::SecretFile {
        path: path.to_owned(),
        detail: detail.to_owned(),
        source: Some(e),
    };
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::SecretFile {
        path: path.to_owned(),
        detail: format!("cannot generate a secret: {e}"),
        source: None,
    })?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();

    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create its directory", e))?;
    }
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".{}.tmp", std::process::id()));
    let temp = PathBuf::from(temp);
    // A temp file left by a crashed process of the same id would block `create_new`.
    let _ = std::fs::remove_file(&temp);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(SECRET_FILE_MODE);
    }
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(secret.as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return read_secret(path),
        Err(e) => return Err(fail("cannot write it", e)),
    }
    log::warn!(
        "EVENTIDE_JWT_SECRET is not set: generated a random secret and stored it in {} \
         (mode 0600). Set EVENTIDE_JWT_SECRET in production.",
        path.display()
    );
    Ok(secret)
}
