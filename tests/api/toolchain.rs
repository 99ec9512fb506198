//! The toolchain the README names is the one the lockfile needs: the workspace's
//! `rust-version` is at least the `rust-version` of every locked dependency, so an
//! older compiler fails with cargo's clear message instead of deep inside a crate.

use std::process::Command;

use serde_json::Value;

/// `1.95` or `1.95.0` → (1, 95, 0).
fn parse(version: &str) -> (u64, u64, u64) {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap());
    (
        parts.next().unwrap(),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[test]
fn rust_version_covers_every_locked_dependency() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--locked", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata --locked failed (is Cargo.lock up to date?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let members = metadata["workspace_members"].as_array().unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let ours = packages
        .iter()
        .find(|p| p["name"] == env!("CARGO_PKG_NAME"))
        .unwrap();
    let rust_version = ours["rust_version"].as_str().expect("rust-version is set");
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&format!("Rust {rust_version} or newer")),
        "the README must name the toolchain of Cargo.toml: Rust {rust_version} or newer"
    );
    let declared = parse(rust_version);
    let needed = packages
        .iter()
        .filter(|p| !members.contains(&p["id"]))
        .filter_map(|p| Some((parse(p["rust_version"].as_str()?), p)))
        .max_by_key(|(version, _)| *version)
        .unwrap();
    assert!(
        declared >= needed.0,
        "rust-version is {declared:?} but {} {} needs {:?}: raise it in Cargo.toml and the README",
        needed.1["name"],
        needed.1["version"],
        needed.0
    );
}
