//! The files of a `cluster` run split over several processes, and reading them back.
//!
//! One process holds at most as many sockets as its file-descriptor limit allows, so a
//! run with more subscribers is several `cluster --role subscribe` processes, each with
//! a slice of the subscribers, and one `cluster --role write` process making the
//! changes. They share nothing but the machine's clock (`CLOCK_REALTIME`, so their
//! timestamps compare) and these JSON files: a subscriber process writes a [`Ready`]
//! file once every socket has joined and an [`Arrivals`] file at the end, the writer a
//! [`Calls`] file; `merge` reads them all.

use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Written by a subscriber process once every one of its sockets joined its rooms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    /// The run-wide index of its first subscriber.
    pub first_subscriber: usize,
    /// Its subscribers (run-wide indexes `first_subscriber..first_subscriber + subscribers`).
    pub subscribers: usize,
    /// Rooms in the run and rooms per subscriber (subscriber i joins
    /// `(i + j) % providers` for `j < rooms_each`).
    pub providers: usize,
    pub rooms_each: usize,
    /// Its sockets on each node (node k = the k-th `--hub`).
    pub sockets_per_node: Vec<u64>,
    /// When its first connect began and its last `joinedRoom` arrived (µs since the epoch).
    pub connect_started_us: u64,
    pub joined_us: u64,
}

/// How one change reached one process's subscribers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    /// Subscribers that received it (each counted once).
    pub subscribers: u64,
    /// Arrivals at a subscriber that already had it.
    pub repeats: u64,
    /// The first and the last first-arrival (µs since the epoch; 0 = none).
    pub first_us: u64,
    pub last_us: u64,
}

impl Reach {
    /// Counts one arrival at `now`; `new` says whether that subscriber lacked it.
    pub fn arrived(&mut self, now: u64, new: bool) {
        if !new {
            self.repeats += 1;
            return;
        }
        self.subscribers += 1;
        self.first_us = if self.first_us == 0 {
            now
        } else {
            self.first_us.min(now)
        };
        self.last_us = self.last_us.max(now);
    }
}

/// Written by a subscriber process at the end: per change how it arrived, and the
/// process's own check of every subscriber's stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Arrivals {
    pub first_subscriber: usize,
    pub subscribers: usize,
    /// Indexed by change number.
    pub reach: Vec<Reach>,
    /// Totals of the per-subscriber check against the rooms' versions read over REST.
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub unexpected: u64,
    pub never_joined: u64,
    pub reconnects: u64,
    pub pass: bool,
}

/// One REST change as the writer made it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The room (0-based provider index) it went to.
    pub room: usize,
    /// When it was due, when the request was sent, when the answer came (µs since the
    /// epoch; `acked_us` 0 = it failed or was never made).
    pub due_us: u64,
    pub sent_us: u64,
    pub acked_us: u64,
}

/// Written by the writer process at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calls {
    pub rate_per_sec: f64,
    pub providers: usize,
    /// Indexed by change number.
    pub calls: Vec<Call>,
}

/// Writes `value` as JSON to `path` through a temporary file and a rename, so that a
/// reader polling for `path` never sees half of it.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let text = serde_json::to_string(value).map_err(|e| format!("{}: {e}", path.display()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a JSON file written by [`write_json`].
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_keeps_first_and_last_of_new_arrivals_only() {
        let mut r = Reach::default();
        r.arrived(500, true);
        r.arrived(300, true);
        r.arrived(900, false);
        r.arrived(700, true);
        assert_eq!(
            r,
            Reach {
                subscribers: 3,
                repeats: 1,
                first_us: 300,
                last_us: 700
            }
        );
    }

    #[test]
    fn files_round_trip() {
        let dir = std::env::temp_dir().join(format!("eventide-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("calls.json");
        let calls = Calls {
            rate_per_sec: 2.0,
            providers: 1,
            calls: vec![Call {
                room: 0,
                due_us: 1,
                sent_us: 2,
                acked_us: 3,
            }],
        };
        write_json(&path, &calls).unwrap();
        assert_eq!(read_json::<Calls>(&path).unwrap(), calls);
        assert!(!path.with_extension("tmp").exists());
        assert!(read_json::<Calls>(&dir.join("missing.json")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
