//! The generated HS256 secret used when `EVENTIDE_JWT_SECRET` is unset.
//!
//! It is kept beside the SQLite file (mode 0600) so that `serve` and `token` find the
//! same one and tokens survive restarts.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the generated secret of a SQLite database lives: `<db file>.jwt-secret`.
pub fn secret_file_for(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".jwt-secret");
    PathBuf::from(name)
}

/// Reads the secret at `path`, or generates a random one and stores it there.
pub fn load_or_generate_secret(path: &Path) -> Result<String, String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let secret = existing.trim().to_owned();
        if !secret.is_empty() {
            return Ok(secret);
        }
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("cannot generate a JWT secret: {e}"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();

    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write the JWT secret to {}: {e}", path.display()))?;
    file.write_all(secret.as_bytes())
        .map_err(|e| format!("cannot write the JWT secret to {}: {e}", path.display()))?;
    log::warn!(
        "EVENTIDE_JWT_SECRET is not set: generated a random secret and stored it in {} \
         (mode 0600). Set EVENTIDE_JWT_SECRET in production.",
        path.display()
    );
    Ok(secret)
}
