//! Parsing setting values, and saying what was wrong with one in the name the
//! operator typed.

use std::net::SocketAddr;
use std::str::FromStr;

/// Parses a listen address, saying what was wrong.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("invalid socket address {s:?} (expected IP:PORT, e.g. 127.0.0.1:8080)")
    })
}

/// Parses a whole number, saying what was wrong.
pub fn number<T: FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.trim()
        .parse()
        .map_err(|e| format!("invalid number {s:?} ({e})"))
}

/// Rewrites clap's error for a value that does not parse so that it names what the
/// operator set: `EVENTIDE_ADDR: invalid socket address "abc" (…)` when the value came
/// from the environment, `--addr: …` when it came from the command line. `None` for any
/// other error (unknown flag, `--help`, …), which clap reports itself.
pub fn describe_invalid_value(
    error: &clap::Error,
    command: &clap::Command,
    args: &[String],
) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    // "--addr <ADDR>" → "addr"
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let reason = match std::error::Error::source(error) {
        Some(source) => source.to_string(),
        None => match error.get(ContextKind::InvalidValue) {
            Some(ContextValue::String(value)) => format!("invalid value {value:?}"),
            _ => "invalid value".to_owned(),
        },
    };
    let flag = format!("--{long}");
    let given_as_flag = args
        .iter()
        .skip(1)
        .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
    let env = find_env(command, long).filter(|_| !given_as_flag);
    Some(format!("{}: {reason}", env.unwrap_or(flag)))
}

/// The environment variable of the flag `--{long}`, in `command` or a sub-command.
pub(super) fn find_env(command: &clap::Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|sub| find_env(sub, long))
        })
}
