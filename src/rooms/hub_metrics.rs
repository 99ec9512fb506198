//! The hub's own metrics: what an operator watches while gaps are being filled and
//! while Redis misbehaves, and what operators do to users.

use prometheus::{IntCounter, IntGauge, Registry};

/// Counters of the sequencers, the anti-entropy tick, the relay, disconnects and
/// presence.
pub struct HubMetrics {
    /// `eventide_gap_reads_total{result="ok"}`: change-log reads by the sequencers.
    pub gap_reads_ok: IntCounter,
    /// `eventide_gap_reads_total{result="error"}`.
    pub gap_reads_failed: IntCounter,
    /// `eventide_gap_versions_filled_total`: versions delivered from a change-log read
    /// rather than from Redis or this node's commit.
    pub versions_filled: IntCounter,
    /// `eventide_anti_entropy_runs_total`: anti-entropy ticks of the node.
    pub anti_entropy_runs: IntCounter,
    /// `eventide_anti_entropy_gaps_total`: rooms found behind the change log by a check.
    pub anti_entropy_gaps: IntCounter,
    /// `eventide_history_lost_total`: times a room skipped versions its change log no
    /// longer kept (its members were told to re-fetch).
    pub history_lost: IntCounter,
    /// `eventide_stream_rewinds_total`: times a room's stream was found to have moved
    /// back (or restarted under another epoch); its members were told to re-fetch.
    pub stream_rewinds: IntCounter,
    /// `eventide_anti_entropy_queries_total`: head queries of the anti-entropy tick.
    pub anti_entropy_queries: IntCounter,
    /// `eventide_replays_from_memory_total`: joins with `since` answered from a room's
    /// recent frames in memory, with no change-log read.
    pub replays_from_memory: IntCounter,
    /// `eventide_replay_reads_total`: change-log reads of joins with `since` (the
    /// replays recent frames could not serve).
    pub replay_reads: IntCounter,
    /// `eventide_relay_published_total`: events this node published to Redis.
    pub relay_published: IntCounter,
    /// `eventide_relay_retries_total`: failed PUBLISH batches, retried.
    pub relay_retries: IntCounter,
    /// `eventide_relay_dropped_total`: events never published (queue full, or Redis
    /// unreachable too long); other nodes recover versioned ones from the change log.
    pub relay_dropped: IntCounter,
    /// `eventide_relay_queued_bytes`: bytes waiting for Redis.
    pub relay_queued_bytes: IntGauge,
    /// `eventide_user_disconnects_total`: `POST /api/users/{sub}/disconnect` calls.
    pub disconnects: IntCounter,
    /// `eventide_revocations_total`: disconnects that revoked tokens.
    pub revocations: IntCounter,
    /// `eventide_presence_queries_total`: `GET /api/rooms/{room}/presence` calls.
    pub presence_queries: IntCounter,
    /// `eventide_cluster_events_dropped_total`: events from other nodes dropped because
    /// a shard's backlog was full (versioned ones are read back from the change log).
    pub cluster_events_dropped: IntCounter,
}

impl HubMetrics {
    /// Registers the delivery metrics in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let gap_reads = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "eventide_gap_reads_total",
                "Change-log reads by the room sequencers, by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        registry
            .register(Box::new(gap_reads.clone()))
            .expect("unique");
        let relay_queued_bytes = IntGauge::new(
            "eventide_relay_queued_bytes",
            "Bytes waiting to be published to Redis",
        )
        .expect("valid metric");
        registry
            .register(Box::new(relay_queued_bytes.clone()))
            .expect("unique");
        HubMetrics {
            gap_reads_ok: gap_reads.with_label_values(&["ok"]),
            gap_reads_failed: gap_reads.with_label_values(&["error"]),
            versions_filled: counter(
                "eventide_gap_versions_filled_total",
                "Versions delivered from the change log after a gap",
            ),
            anti_entropy_runs: counter(
                "eventide_anti_entropy_runs_total",
                "Batched checks of versioned rooms against the change log",
            ),
            anti_entropy_gaps: counter(
                "eventide_anti_entropy_gaps_total",
                "Rooms an anti-entropy check found behind the change log",
            ),
            history_lost: counter(
                "eventide_history_lost_total",
                "Times a room skipped versions no longer kept (members re-fetch)",
            ),
            stream_rewinds: counter(
                "eventide_stream_rewinds_total",
                "Times a room's stream moved back and restarted under a new epoch",
            ),
            anti_entropy_queries: counter(
                "eventide_anti_entropy_queries_total",
                "Head queries run by the anti-entropy tick",
            ),
            replays_from_memory: counter(
                "eventide_replays_from_memory_total",
                "Joins with since replayed from a room's recent frames, without a read",
            ),
            replay_reads: counter(
                "eventide_replay_reads_total",
                "Change-log reads of joins with since that memory could not serve",
            ),
            relay_published: counter(
                "eventide_relay_published_total",
                "Events published to Redis by this node",
            ),
            relay_retries: counter(
                "eventide_relay_retries_total",
                "Failed PUBLISH batches, retried",
            ),
            relay_dropped: counter(
                "eventide_relay_dropped_total",
                "Events never published to Redis (queue full or Redis unreachable too long)",
            ),
            relay_queued_bytes,
            disconnects: counter(
                "eventide_user_disconnects_total",
                "Users disconnected through the API",
            ),
            revocations: counter(
                "eventide_revocations_total",
                "Disconnects that also revoked the user's tokens",
            ),
            presence_queries: counter(
                "eventide_presence_queries_total",
                "Presence queries answered",
            ),
            cluster_events_dropped: counter(
                "eventide_cluster_events_dropped_total",
                "Events from other nodes dropped: a shard's backlog was full",
            ),
        }
    }
}
