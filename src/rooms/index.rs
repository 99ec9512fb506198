//! The node's room index: which rooms have members on any shard of this node.
//!
//! Shards count themselves in and out of a room here; the cluster subscriber watches
//! the set to subscribe to exactly these rooms' Redis channels, and `eventide_rooms`
//! counts the distinct rooms.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::RoomName;

/// Rooms with members on this node, shared by every shard.
#[derive(Default)]
pub struct RoomIndex {
    /// Room → number of shards with at least one member in it. A room is present
    /// exactly while that number is above zero.
    shards: Mutex<HashMap<RoomName, u32>>,
    /// Woken whenever a room enters or leaves the set.
    changed: Notify,
}

impl RoomIndex {
    /// A shard has its first member in `room`; answers the number of distinct rooms.
    pub fn enter(&self, room: &RoomName) -> usize {
        let mut shards = self.lock();
        let count = shards.entry(room.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.changed.notify_one();
        }
        shards.len()
    }

    /// A shard's last member left `room`; answers the number of distinct rooms.
    pub fn exit(&self, room: &RoomName) -> usize {
        let mut shards = self.lock();
        if let Some(count) = shards.get_mut(room) {
            *count -= 1;
            if *count == 0 {
                shards.remove(room);
                self.changed.notify_one();
            }
        }
        shards.len()
    }

    /// The rooms with members now.
    pub fn rooms(&self) -> Vec<RoomName> {
        self.lock().keys().cloned().collect()
    }

    /// Distinct rooms with members.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no room has a member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the set of rooms changes (a change since the last wait counts).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, u32>> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_stays_while_any_shard_has_it() {
        let index = RoomIndex::default();
        let room = RoomName::parse("lobby").unwrap();
        assert_eq!(index.enter(&room), 1);
        assert_eq!(index.enter(&room), 1);
        assert_eq!(index.exit(&room), 1);
        assert_eq!(index.rooms(), vec![room.clone()]);
        assert_eq!(index.exit(&room), 0);
        assert!(index.is_empty());
    }
}
