//! The delivery settings: how versioned rooms are kept in step with the change log,
//! recovered, and replayed to clients that rejoin.

use std::time::Duration;

use super::number;

/// Default interval of the anti-entropy check, in milliseconds.
pub const DEFAULT_ANTI_ENTROPY_MS: u64 = 2_000;
/// Default time a room's change log may stay unreadable before its sockets close.
pub const DEFAULT_RECOVERY_DEADLINE_SECS: u64 = 10;
/// Default frame bytes each versioned room keeps in memory for rejoins.
pub const DEFAULT_REPLAY_TAIL_BYTES: usize = 64 * 1024;
/// Default frame bytes all rooms of a node keep in memory for rejoins.
pub const DEFAULT_REPLAY_TAIL_NODE_BYTES: usize = 64 * 1024 * 1024;

/// How versioned rooms are delivered and recovered.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Delivery")]
pub struct Delivery {
    /// Comma-separated patterns of rooms whose emitted events are versioned and kept
    /// (exact names, or a prefix ending in `*`).
    #[arg(long, env = "EVENTIDE_HISTORY_ROOMS", value_delimiter = ',')]
    pub history_rooms: Vec<String>,

    /// How often each node compares the versions it delivered with the change log, in
    /// milliseconds: the longest a lost last event stays lost.
    #[arg(long, env = "EVENTIDE_ANTI_ENTROPY_MS", default_value_t = DEFAULT_ANTI_ENTROPY_MS, value_parser = number::<u64>)]
    pub anti_entropy_ms: u64,

    /// Seconds a joined room's change log may stay unreadable before its sockets are
    /// closed with 1013 (their clients reconnect and recover with `since`).
    #[arg(long, env = "EVENTIDE_RECOVERY_DEADLINE_SECS", default_value_t = DEFAULT_RECOVERY_DEADLINE_SECS, value_parser = number::<u64>)]
    pub recovery_deadline_secs: u64,

    /// Bytes of its most recent frames each versioned room keeps in memory on each
    /// worker it has members on: a `joinRoom` whose `since` falls inside them is
    /// answered without reading the change log. 0 keeps none.
    #[arg(long, env = "EVENTIDE_REPLAY_TAIL_BYTES", default_value_t = DEFAULT_REPLAY_TAIL_BYTES, value_parser = number::<usize>)]
    pub replay_tail_bytes: usize,

    /// Bytes the replay tails of all rooms of the node keep together, at most.
    #[arg(long, env = "EVENTIDE_REPLAY_TAIL_NODE_BYTES", default_value_t = DEFAULT_REPLAY_TAIL_NODE_BYTES, value_parser = number::<usize>)]
    pub replay_tail_node_bytes: usize,

    /// A fail point for failure tests, never for production: every availability change
    /// stops forever after its commit, before it is published, so a test can kill the
    /// node at that moment.
    #[arg(
        long,
        env = "EVENTIDE_TEST_PAUSE_AFTER_COMMIT",
        default_value_t = false
    )]
    pub pause_after_commit: bool,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            history_rooms: Vec::new(),
            anti_entropy_ms: DEFAULT_ANTI_ENTROPY_MS,
            recovery_deadline_secs: DEFAULT_RECOVERY_DEADLINE_SECS,
            replay_tail_bytes: DEFAULT_REPLAY_TAIL_BYTES,
            replay_tail_node_bytes: DEFAULT_REPLAY_TAIL_NODE_BYTES,
            pause_after_commit: false,
        }
    }
}

impl Delivery {
    /// The anti-entropy interval (at least 50 ms).
    pub fn anti_entropy_interval(&self) -> Duration {
        Duration::from_millis(self.anti_entropy_ms.max(50))
    }

    /// How long recovery reads are retried before sockets are closed.
    pub fn recovery_deadline(&self) -> Duration {
        Duration::from_secs(self.recovery_deadline_secs.max(1))
    }

    /// The history room patterns that are set (an empty variable means none).
    pub fn history_patterns(&self) -> Vec<String> {
        self.history_rooms
            .iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect()
    }
}
