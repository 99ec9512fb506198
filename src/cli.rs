//! The command line: `serve` (the default), `migrate` and `token`.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

use crate::auth::{Claims, Role, TokenVerifier};
use crate::config::Settings;
use crate::db::{self, DatabaseTarget};
use crate::startup::Application;

/// Eventide hub: pushes live availability updates to browsers over WebSockets.
#[derive(Debug, Parser)]
#[command(
    name = "eventide-hub",
    version,
    about,
    args_conflicts_with_subcommands = true,
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub (the default).
    Serve(Settings),
    /// Apply pending database migrations and exit.
    Migrate(Settings),
    /// Print a signed JWT for local use, e.g. `token --role provider --provider-id 42`.
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// admin, service, provider or client.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// The provider this user is (required with `--role provider`).
    #[arg(long)]
    provider_id: Option<i64>,
    /// Subject; defaults to `provider-{id}` or the role name.
    #[arg(long)]
    sub: Option<String>,
    /// Extra room pattern the token may join (repeatable), e.g. `provider-*`.
    #[arg(long = "room")]
    rooms: Vec<String>,
    /// Lifetime: seconds, or a number with s, m, h or d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,

    #[command(flatten)]
    settings: Settings,
}

fn parse_role(s: &str) -> Result<Role, String> {
    serde_json::from_value(serde_json::Value::from(s))
        .map_err(|_| format!("unknown role {s:?}: use admin, service, provider or client"))
}

/// Parses `90`, `90s`, `15m`, `1h`, `7d`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid ttl {s:?}: use e.g. 90, 90s, 15m, 1h or 7d"))?;
    let unit_secs: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "invalid ttl {s:?}: use e.g. 90, 90s, 15m, 1h or 7d"
            ))
        }
    };
    // Beyond a century a token is as good as eternal; refuse rather than overflow.
    n.checked_mul(unit_secs)
        .filter(|secs| *secs <= 100 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("ttl {s:?} is too long: at most 100 years"))
}

/// What `--help` adds after the options.
const AFTER_HELP: &str = "\
Every option can also be set by the environment variable shown beside it; a flag wins.
RUST_LOG sets the log filter (default: info), e.g. RUST_LOG=eventide_hub=debug.

HTTP: GET / (page), GET /ws (WebSocket), /api/... (REST, Bearer JWT),
GET /healthz, GET /readyz, GET /metrics (Prometheus; admin token, or loopback
unless EVENTIDE_METRICS_LOOPBACK_OPEN=false),
GET /api/openapi.json (OpenAPI 3.1). Docs: README.md, docs/protocol.md,
docs/operations.md, docs/asyncapi.yaml.";

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::CommandFactory;
            let args: Vec<String> = std::env::args().collect();
            // Name the variable (or flag) the bad value came from.
            match crate::config::describe_invalid_value(&e, &Cli::command(), &args) {
                Some(message) => {
                    eprintln!("error: {message}");
                    return ExitCode::from(2);
                }
                None => e.exit(),
            }
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = match cli.command {
        None => serve(cli.settings),
        Some(Command::Serve(settings)) => serve(settings),
        Some(Command::Migrate(settings)) => migrate(settings),
        Some(Command::Token(args)) => token(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings) -> Result<(), String> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings)
            .await
            .map_err(|e| e.to_string())?;
        app.run_until_stopped().await.map_err(|e| e.to_string())
    })
}

fn migrate(settings: Settings) -> Result<(), String> {
    let target = DatabaseTarget::parse(&settings.database_url).map_err(|e| e.to_string())?;
    db::connect_and_migrate(&target, settings.db_statement_timeout()).map_err(|e| e.to_string())?;
    log::info!("database is up to date");
    Ok(())
}

fn token(args: TokenArgs) -> Result<(), String> {
    if args.role == Role::Provider && args.provider_id.is_none() {
        return Err("--role provider needs --provider-id".into());
    }
    let target = DatabaseTarget::parse(&args.settings.database_url).map_err(|e| e.to_string())?;
    let verifier =
        TokenVerifier::from_settings(&args.settings, &target).map_err(|e| e.to_string())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let sub = args.sub.unwrap_or_else(|| match args.provider_id {
        Some(id) if args.role == Role::Provider => format!("provider-{id}"),
        _ => args.role.as_str().to_owned(),
    });
    let claims = Claims {
        sub,
        role: args.role,
        provider_id: args.provider_id,
        rooms: args.rooms,
        exp: (now + args.ttl).as_secs(),
        iss: args.settings.jwt_issuer.clone(),
        aud: args
            .settings
            .jwt_audience
            .clone()
            .map(serde_json::Value::from),
        iat: Some(now.as_secs()),
    };
    let token = verifier
        .mint(&claims, now.as_secs())
        .map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
        assert!(parse_ttl("999999999999999d").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
