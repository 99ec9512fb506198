//! Counts open sockets per token subject, so one credential cannot hold a node's
//! sockets hostage, and in all, so a node takes no more than it was sized for.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Counts {
    /// Subject → open sockets; a subject is present exactly while it has one.
    open: HashMap<String, usize>,
    /// The sum of `open`'s counts.
    total: usize,
    /// Subjects whose count changed since the cluster census last took them; `None`
    /// on a node without a census, where nothing would ever take them.
    dirty: Option<HashSet<String>>,
}

/// Open WebSocket connections per `sub` on this node.
#[derive(Debug, Default, Clone)]
pub struct ConnectionCounter {
    counts: Arc<Mutex<Counts>>,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The subject holds its most.
    Subject,
    /// The node holds its most.
    Node,
}

/// One counted connection; dropping it releases the count.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: ConnectionCounter,
    sub: String,
}

impl Counts {
    fn mark(&mut self, sub: &str) {
        if let Some(dirty) = &mut self.dirty {
            dirty.insert(sub.to_owned());
        }
    }
}

impl ConnectionCounter {
    /// A counter that also records which subjects changed, for
    /// [`ConnectionCounter::take_dirty`].
    pub fn recording_changes() -> Self {
        let counter = ConnectionCounter::default();
        counter
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dirty = Some(HashSet::new());
        counter
    }

    /// Takes a slot for `sub` unless it already holds `max_per_sub` connections or the
    /// node holds `max_total`.
    pub fn try_acquire(
        &self,
        sub: &str,
        max_per_sub: usize,
        max_total: usize,
    ) -> Result<ConnectionSlot, Full> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= max_total {
            return Err(Full::Node);
        }
        let count = counts.open.entry(sub.to_owned()).or_insert(0);
        if *count >= max_per_sub {
            if *count == 0 {
                counts.open.remove(sub);
            }
            return Err(Full::Subject);
        }
        *count += 1;
        counts.total += 1;
        counts.mark(sub);
        Ok(ConnectionSlot {
            counter: self.clone(),
            sub: sub.to_owned(),
        })
    }

    /// Open connections of `sub`.
    #[cfg(test)]
    fn count(&self, sub: &str) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.open.get(sub).copied().unwrap_or(0)
    }

    /// The subjects whose count changed since the last call, with their count now.
    pub fn take_dirty(&self) -> Vec<(String, usize)> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let dirty = counts
            .dirty
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        dirty
            .into_iter()
            .map(|sub| {
                let count = counts.open.get(&sub).copied().unwrap_or(0);
                (sub, count)
            })
            .collect()
    }

    /// Every subject with open connections, with its count (what a full census rewrite
    /// writes).
    pub fn snapshot(&self) -> Vec<(String, usize)> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .open
            .iter()
            .map(|(sub, n)| (sub.clone(), *n))
            .collect()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counter
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.open.get_mut(&self.sub) {
            *count -= 1;
            if *count == 0 {
                counts.open.remove(&self.sub);
            }
            counts.total -= 1;
        }
        counts.mark(&self.sub);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_releases() {
        let counter = ConnectionCounter::recording_changes();
        let a = counter.try_acquire("u", 2, 10).unwrap();
        let _b = counter.try_acquire("u", 2, 10).unwrap();
        assert_eq!(counter.try_acquire("u", 2, 10).err(), Some(Full::Subject));
        assert!(counter.try_acquire("v", 2, 10).is_ok());
        drop(a);
        assert_eq!(counter.count("u"), 1);
        assert!(counter.try_acquire("u", 2, 10).is_ok());
        let mut dirty = counter.take_dirty();
        dirty.sort();
        assert_eq!(dirty, [("u".to_owned(), 1), ("v".to_owned(), 0)]);
        assert!(counter.take_dirty().is_empty());
    }

    #[test]
    fn the_node_limit_counts_every_subject() {
        let counter = ConnectionCounter::default();
        let a = counter.try_acquire("u", 5, 2).unwrap();
        let _b = counter.try_acquire("v", 5, 2).unwrap();
        assert_eq!(counter.try_acquire("w", 5, 2).err(), Some(Full::Node));
        drop(a);
        assert!(counter.try_acquire("w", 5, 2).is_ok());
    }
}
