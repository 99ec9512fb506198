//! Where streams stand, for the node's anti-entropy tick, and the replacement of a
//! stream's epoch when it is found to have moved back.
//!
//! The tick reads the heads of every versioned room with members on this node. It does
//! so in batches of [`HEADS_BATCH`] streams, one query per kind of stream in a batch,
//! each batch under its own read permit released before the next is taken: a tick never
//! holds more than one permit, and joins waiting for one get their turn between batches.
//! Like every read, each batch answers within the read deadline.

use super::queries::{self, Position};
use super::{ChangeLog, LogError, Stream};
use crate::rooms::sequencer::Epoch;

/// Streams whose heads one query reads at most.
pub const HEADS_BATCH: usize = 1000;

/// What one pass over many streams found.
#[derive(Debug, Default)]
pub struct Positions {
    /// Each stream's head and epoch, in the order the streams were given.
    pub positions: Vec<Position>,
    /// The queries it took.
    pub queries: usize,
}

impl ChangeLog {
    /// The heads and epochs of `streams`, in batches, one permit at a time.
    pub async fn positions(&self, streams: Vec<Stream>) -> Result<Positions, LogError> {
        let mut out = Positions {
            positions: Vec::with_capacity(streams.len()),
            queries: 0,
        };
        for batch in streams.chunks(HEADS_BATCH) {
            let batch = batch.to_vec();
            let kinds = 1 + usize::from(
                batch.iter().any(|s| matches!(s, Stream::Room(_)))
                    && batch.iter().any(|s| matches!(s, Stream::Provider(_))),
            );
            let found = self
                .with_permit(move |conn| queries::positions(conn, &batch))
                .await?;
            out.queries += kinds;
            out.positions.extend(found);
        }
        Ok(out)
    }

    /// Replaces `stale`, the epoch `stream` moved back under, by a new one, unless
    /// another node already did; answers where the stream stands then.
    pub async fn replace_epoch(&self, stream: Stream, stale: Epoch) -> Result<Position, LogError> {
        let fresh = new_epoch();
        self.with_permit(move |conn| {
            diesel::Connection::transaction(conn, |conn| {
                queries::replace_epoch(conn, &stream, &stale, &fresh)
            })
        })
        .await
    }
}

/// A fresh epoch: 12 random hex digits, like the ones the database makes.
fn new_epoch() -> String {
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy: the clock still gives an epoch no stream had.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_epochs_are_twelve_hex_digits_and_differ() {
        let (a, b) = (super::new_epoch(), super::new_epoch());
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
