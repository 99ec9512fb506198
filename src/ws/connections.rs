//! Counts open sockets per token subject, so one credential cannot hold a node's
//! sockets hostage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Open WebSocket connections per `sub` on this node.
#[derive(Debug, Default, Clone)]
pub struct ConnectionCounter {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// One counted connection; dropping it releases the count.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: ConnectionCounter,
    sub: String,
}

impl ConnectionCounter {
    /// Takes a slot for `sub` unless it already holds `max` connections.
    pub fn try_acquire(&self, sub: &str, max: usize) -> Option<ConnectionSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(sub.to_owned()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            counter: self.clone(),
            sub: sub.to_owned(),
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counter
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.sub) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.sub);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_releases() {
        let counter = ConnectionCounter::default();
        let a = counter.try_acquire("u", 2).unwrap();
        let _b = counter.try_acquire("u", 2).unwrap();
        assert!(counter.try_acquire("u", 2).is_none());
        assert!(counter.try_acquire("v", 2).is_some());
        drop(a);
        let _c = counter.try_acquire("u", 2).unwrap();
        assert!(counter.try_acquire("u", 2).is_none());
    }
}
