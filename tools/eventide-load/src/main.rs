//! `eventide-load`: the hub's load tool and its reference fan-out server (see
//! `BENCHMARKS.md` at the repository root). It shares no code with the hub: it speaks
//! to it only over HTTP and WebSockets, as any client would.
//!
//! Sub-commands `connect`, `fanout` and `slow` drive a hub (or the reference server)
//! on a loopback address and print a table plus one `RESULT {json}` line; the hidden
//! `reference-server` is the minimal tokio-tungstenite fan-out server the hub is
//! compared with. Every run is bounded: counts are capped and `--timeout` stops it.
//! `cluster` spreads subscribers over several hub nodes; a run too big for one
//! process's file descriptors is split over several `cluster` processes, and `merge`
//! joins their files into one result.
//!
//! Run the tool on another CPU than the server (`taskset -c 1`), on one thread: it is
//! a single-threaded tokio runtime.

mod cluster;
mod connect;
mod fanout;
mod http;
mod merge;
mod redis;
mod reference;
mod report;
mod sequence;
mod slow;
mod split;
mod stats;
mod sys;
mod target;
mod ws;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use target::{Auth, Target};

/// Load generator for the Eventide hub (loopback only).
#[derive(Debug, Parser)]
#[command(name = "eventide-load", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open N authenticated sockets in rooms, hold them, report connect rate and the
    /// server's RSS per socket.
    Connect(connect::ConnectArgs),
    /// N subscribers over R rooms, a publisher making M time-stamped changes; report
    /// delivery, loss, order, throughput, latency and server CPU per frame.
    Fanout(fanout::FanoutArgs),
    /// Clients that join a room and never read while events are emitted; report the
    /// server's RSS.
    Slow(slow::SlowArgs),
    /// Subscribers spread over several hub nodes, changes made through all of them,
    /// client drops and Redis faults on a schedule; report loss, duplicates, order,
    /// latency and the convergence after each fault.
    Cluster(cluster::ClusterArgs),
    /// One result for a `cluster` run split over several processes: sockets per node,
    /// connect rate, hub memory per socket, change → last subscriber, loss.
    Merge(merge::MergeArgs),
    /// The minimal tokio-tungstenite fan-out server the hub is compared with.
    #[command(hide = true)]
    ReferenceServer(reference::ReferenceArgs),
}

/// Options every load sub-command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The server's WebSocket URL (loopback only); REST calls go to the same host.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// The server's process id, to read its RSS and CPU time from /proc.
    #[arg(long)]
    hub_pid: Option<u32>,
    /// A token for every socket and the publisher (else minted with --jwt-secret).
    #[arg(long, env = "EVENTIDE_LOAD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The hub's HS256 secret: subscribers get `client` tokens with
    /// rooms ["provider-*"], the publisher a `service` token. Neither this nor
    /// --token: no Authorization header (the reference server).
    #[arg(long, env = "EVENTIDE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Sockets per minted token subject (the hub's EVENTIDE_MAX_CONNECTIONS_PER_SUB
    /// defaults to 100).
    #[arg(long, default_value_t = 100)]
    per_sub: usize,
    /// Sockets per source address (127.0.0.2, 127.0.0.3, …), so ports never run out.
    #[arg(long, default_value_t = 5000)]
    per_source: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Provider rooms are provider-{first-provider}, provider-{first-provider+1}, …
    #[arg(long, default_value_t = 1)]
    first_provider: u64,
    /// Hard cap on the whole run, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

impl Common {
    fn target(&self) -> Result<Target, String> {
        Target::parse(&self.url)
    }

    fn auth(&self) -> Auth {
        Auth::from_args(self.token.clone(), self.jwt_secret.clone(), self.per_sub)
    }
}

/// Parses the command line and runs it on a single-threaded runtime.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, async move {
        match cli.command {
            Command::Connect(args) => bounded(args.common.timeout, connect::run(args)).await,
            Command::Fanout(args) => bounded(args.common.timeout, fanout::run(args)).await,
            Command::Slow(args) => bounded(args.common.timeout, slow::run(args)).await,
            Command::Cluster(args) => bounded(args.timeout, cluster::run(args)).await,
            Command::Merge(args) => merge::run(args).map(Some),
            Command::ReferenceServer(args) => reference::run(args).await.map(|()| None),
        }
    });
    match result {
        Ok(Some(report)) => {
            print!("{}", report.render());
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bounded(
    secs: u64,
    run: impl std::future::Future<Output = Result<report::Report, String>>,
) -> Result<Option<report::Report>, String> {
    tokio::time::timeout(Duration::from_secs(secs.max(1)), run)
        .await
        .map_err(|_| format!("stopped by --timeout after {secs} s"))?
        .map(Some)
}

#[cfg(test)]
mod tests {
    //! Small end-to-end runs of the tool against the reference server, in process.

    use super::*;
    use serde_json::Value;

    fn run_against_reference(args: &[&str]) -> report::Report {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("ws://{}/ws", listener.local_addr().unwrap());
            tokio::task::spawn_local(reference::accept_for(
                listener,
                1024,
                Duration::from_secs(60),
            ));
            let mut argv = vec!["eventide-load"];
            argv.extend_from_slice(args);
            argv.extend_from_slice(&["--url", &url, "--timeout", "60"]);
            let command = Cli::try_parse_from(argv).unwrap().command;
            match command {
                Command::Fanout(args) => fanout::run(args).await,
                Command::Connect(args) => connect::run(args).await,
                Command::Slow(args) => slow::run(args).await,
                Command::Cluster(_) | Command::Merge(_) | Command::ReferenceServer(_) => {
                    unreachable!()
                }
            }
            .unwrap()
        })
    }

    fn number(r: &report::Report, name: &str) -> u64 {
        r.get(name)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn small_fanout_is_complete_and_in_order() {
        let r = run_against_reference(&[
            "fanout",
            "--subscribers",
            "20",
            "--rooms",
            "3",
            "--changes",
            "50",
            "--per-source",
            "7",
        ]);
        // Rooms get 7, 7 and 6 subscribers and 17, 17 and 16 changes.
        assert_eq!(number(&r, "expected"), 7 * 17 + 7 * 17 + 6 * 16);
        assert_eq!(number(&r, "delivered"), number(&r, "expected"));
        assert_eq!(number(&r, "latency_count"), number(&r, "delivered"));
        assert_eq!(number(&r, "change_to_last_subscriber_count"), 50);
        for zero in [
            "lost",
            "duplicated",
            "out_of_order",
            "unexpected",
            "publish_errors",
        ] {
            assert_eq!(number(&r, zero), 0, "{zero}");
        }
        assert!(number(&r, "latency_max_us") >= number(&r, "latency_p50_us"));
    }

    #[test]
    fn small_fixed_rate_fanout() {
        let r = run_against_reference(&[
            "fanout",
            "--subscribers",
            "5",
            "--rooms",
            "1",
            "--changes",
            "10",
            "--rate",
            "200",
        ]);
        assert_eq!(number(&r, "delivered"), 50);
        assert_eq!(number(&r, "lost"), 0);
    }

    #[test]
    fn small_connect_holds_every_socket() {
        let r = run_against_reference(&[
            "connect",
            "--sockets",
            "30",
            "--room-count",
            "4",
            "--hold",
            "1",
            "--settle",
            "0",
            "--per-source",
            "10",
        ]);
        assert_eq!(number(&r, "sockets_connected"), 30);
        assert_eq!(number(&r, "alive_at_end"), 30);
        assert_eq!(number(&r, "source_addresses"), 3);
    }

    #[test]
    fn small_slow_run_keeps_the_healthy_reader_whole() {
        let r = run_against_reference(&[
            "slow",
            "--readers",
            "3",
            "--events",
            "20",
            "--size",
            "100",
            "--settle",
            "0",
        ]);
        assert_eq!(number(&r, "readers_joined"), 3);
        assert_eq!(number(&r, "events_accepted"), 20);
        assert_eq!(number(&r, "healthy_delivered"), 20);
        // They never read during the run, so everything is still there at the end.
        assert_eq!(number(&r, "reader_frames_received_max"), 21);
    }

    #[test]
    fn non_loopback_targets_are_refused() {
        let argv = ["eventide-load", "connect", "--url", "ws://192.0.2.1:80/ws"];
        let Command::Connect(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("connect expected");
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = tokio::task::LocalSet::new()
            .block_on(&runtime, connect::run(args))
            .err()
            .unwrap();
        assert!(err.contains("not a loopback"), "{err}");
    }
}
