//! Configuration as an operator meets it: the real binary with a bad variable says
//! which variable and why, and exits non-zero; `--help` and the docs list every
//! variable the hub reads.

use std::process::{Command, Output};

use clap::CommandFactory;
use eventide_hub::cli::Cli;

/// Runs `eventide-hub args…` with exactly these variables, in an empty directory (so a
/// start that went too far would not touch a real database).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_eventide-hub"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .output()
        .expect("the binary runs")
}

fn assert_refused(output: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exited 0; stderr: {stderr}");
    assert!(
        stderr.contains(message),
        "stderr should contain {message:?}, got: {stderr}"
    );
    assert!(
        !stderr.contains("listening on"),
        "a bad setting must stop the hub before it listens"
    );
}

#[test]
fn a_bad_variable_is_named_with_its_value() {
    let output = run(&[], &[("EVENTIDE_ADDR", "abc")]);
    assert_refused(&output, "EVENTIDE_ADDR: invalid socket address \"abc\"");
    assert_eq!(output.status.code(), Some(2));

    let output = run(&["serve"], &[("EVENTIDE_MAX_ROOMS_PER_CONNECTION", "lots")]);
    assert_refused(
        &output,
        "EVENTIDE_MAX_ROOMS_PER_CONNECTION: invalid number \"lots\"",
    );
    // The same variables apply to `token`.
    let output = run(
        &["token", "--role", "admin"],
        &[("EVENTIDE_JWT_LEEWAY_SECS", "soon")],
    );
    assert_refused(&output, "EVENTIDE_JWT_LEEWAY_SECS: invalid number \"soon\"");
}

#[test]
fn a_bad_flag_is_named_as_a_flag() {
    let output = run(&["--addr", "localhost"], &[]);
    assert_refused(&output, "--addr: invalid socket address \"localhost\"");
}

#[test]
fn values_that_parse_but_make_no_sense_are_named_too() {
    let secret = ("EVENTIDE_JWT_SECRET", "a-test-secret");
    let addr = ("EVENTIDE_ADDR", "127.0.0.1:0");
    let output = run(
        &[],
        &[secret, addr, ("EVENTIDE_MAX_HISTORY_PER_PROVIDER", "5")],
    );
    assert_refused(
        &output,
        "EVENTIDE_MAX_HISTORY_PER_PROVIDER: must be at least 1000, got 5",
    );
    let output = run(
        &[],
        &[secret, addr, ("EVENTIDE_ALLOWED_ORIGINS", "localhost:8080")],
    );
    assert_refused(
        &output,
        "EVENTIDE_ALLOWED_ORIGINS: invalid origin \"localhost:8080\"",
    );
    let output = run(&[], &[secret, addr, ("DATABASE_URL", "mysql://db/hub")]);
    assert_refused(
        &output,
        "DATABASE_URL: expected sqlite://PATH or postgres://",
    );
    let output = run(
        &[],
        &[
            addr,
            ("EVENTIDE_JWT_JWKS_URL", "file:///etc/jwks.json"),
            ("EVENTIDE_JWT_PUBLIC_KEY_FILE", "/etc/key.pem"),
        ],
    );
    assert_refused(
        &output,
        "EVENTIDE_JWT_JWKS_URL and EVENTIDE_JWT_PUBLIC_KEY_FILE: set one or the other",
    );
    let output = run(&[], &[addr, ("EVENTIDE_JWT_JWKS_REFRESH_SECS", "0")]);
    assert_refused(
        &output,
        "EVENTIDE_JWT_JWKS_REFRESH_SECS: must be at least 1",
    );
    let output = run(
        &[],
        &[secret, addr, ("EVENTIDE_MAX_MESSAGE_BYTES", "1073741824")],
    );
    assert_refused(
        &output,
        "EVENTIDE_MAX_MESSAGE_BYTES: must be at most 16777216, got 1073741824",
    );
    let output = run(&[], &[secret, addr, ("EVENTIDE_MAX_FRAGMENTS", "0")]);
    assert_refused(&output, "EVENTIDE_MAX_FRAGMENTS: must be at least 1");
    let output = run(&[], &[secret, addr, ("EVENTIDE_REDIS_URL", "nope")]);
    assert_refused(&output, "EVENTIDE_REDIS_URL: invalid Redis URL");
    let output = run(
        &[],
        &[
            secret,
            addr,
            ("EVENTIDE_REDIS_URL", "redis://127.0.0.1:6379"),
            (
                "EVENTIDE_REDIS_CLUSTER_URLS",
                "redis://127.0.0.1:7000,redis://127.0.0.1:7001",
            ),
        ],
    );
    assert_refused(
        &output,
        "EVENTIDE_REDIS_URL and EVENTIDE_REDIS_CLUSTER_URLS: set one or the other",
    );
    let output = run(
        &[],
        &[secret, addr, ("EVENTIDE_REDIS_CLUSTER_URLS", "nope")],
    );
    assert_refused(&output, "EVENTIDE_REDIS_CLUSTER_URLS: invalid Redis URL");
}

/// Every variable `serve` reads, from the command definition itself.
fn variables() -> Vec<String> {
    let command = Cli::command();
    let mut names: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    names.push("RUST_LOG".into());
    names
}

#[test]
fn help_and_docs_name_every_variable() {
    let output = run(&["--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let operations =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
            .unwrap();
    let names = variables();
    assert!(names.len() > 20, "{names:?}");
    for name in &names {
        assert!(
            help.contains(name.as_str()),
            "--help does not mention {name}"
        );
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not list {name}"
        );
        assert!(
            operations.contains(name.as_str()),
            "docs/operations.md does not mention {name}"
        );
    }
    for command in ["serve", "migrate", "token"] {
        assert!(help.contains(command), "--help does not list `{command}`");
    }
    let token_help = run(&["token", "--help"], &[]);
    let token_help = String::from_utf8(token_help.stdout).unwrap();
    for flag in ["--role", "--provider-id", "--sub", "--room", "--ttl"] {
        assert!(token_help.contains(flag), "token --help lacks {flag}");
    }
}
