//! The node's room index: which rooms have members on this node, and who they are.
//!
//! Shards record every membership here. The cluster subscriber watches the set of
//! rooms to subscribe to exactly these rooms' Redis channels, presence reads the
//! members of a room, the cluster census publishes the rooms whose members changed,
//! and `eventide_rooms` counts the distinct rooms.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::RoomName;

/// Who is in a room on this node: sockets per subject.
pub type Members = HashMap<Arc<str>, u32>;

#[derive(Default)]
struct State {
    /// Room → subject → sockets of that subject in the room. A room is present exactly
    /// while it has at least one socket; a subject exactly while it has one there.
    rooms: HashMap<RoomName, Members>,
    /// Rooms whose members changed since the census last took them; `None` on a node
    /// without a census, where nothing would ever take them.
    dirty: Option<HashSet<RoomName>>,
}

impl State {
    fn mark(&mut self, room: &RoomName) {
        if let Some(dirty) = &mut self.dirty {
            dirty.insert(room.clone());
        }
    }
}

/// Rooms with members on this node, shared by every shard.
#[derive(Default)]
pub struct RoomIndex {
    state: Mutex<State>,
    /// Woken whenever a room enters or leaves the set.
    changed: Notify,
}

impl RoomIndex {
    /// An index that also records which rooms changed, for [`RoomIndex::take_dirty`].
    pub fn recording_changes() -> Self {
        let index = RoomIndex::default();
        index.lock().dirty = Some(HashSet::new());
        index
    }

    /// A socket of `sub` joined `room`; answers the number of distinct rooms.
    pub fn join(&self, room: &RoomName, sub: &Arc<str>) -> usize {
        let mut state = self.lock();
        let members = state.rooms.entry(room.clone()).or_default();
        let first = members.is_empty();
        *members.entry(sub.clone()).or_insert(0) += 1;
        state.mark(room);
        if first {
            self.changed.notify_one();
        }
        state.rooms.len()
    }

    /// A socket of `sub` left `room`; answers the number of distinct rooms.
    pub fn leave(&self, room: &RoomName, sub: &Arc<str>) -> usize {
        let mut state = self.lock();
        let Some(members) = state.rooms.get_mut(room) else {
            return state.rooms.len();
        };
        if let Some(count) = members.get_mut(sub) {
            *count -= 1;
            if *count == 0 {
                members.remove(sub);
            }
        }
        if members.is_empty() {
            state.rooms.remove(room);
            self.changed.notify_one();
        }
        state.mark(room);
        state.rooms.len()
    }

    /// The rooms with members now.
    pub fn rooms(&self) -> Vec<RoomName> {
        self.lock().rooms.keys().cloned().collect()
    }

    /// Distinct rooms with members.
    pub fn len(&self) -> usize {
        self.lock().rooms.len()
    }

    /// Whether no room has a member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The members of `room` on this node.
    pub fn members(&self, room: &RoomName) -> Members {
        self.lock().rooms.get(room).cloned().unwrap_or_default()
    }

    /// The rooms whose members changed since the last call, with their members now
    /// (empty: the room has none left here).
    pub fn take_dirty(&self) -> Vec<(RoomName, Members)> {
        let mut state = self.lock();
        let dirty = state.dirty.as_mut().map(std::mem::take).unwrap_or_default();
        dirty
            .into_iter()
            .map(|room| {
                let members = state.rooms.get(&room).cloned().unwrap_or_default();
                (room, members)
            })
            .collect()
    }

    /// Every room with members, with its members (what a full census rewrite writes).
    pub fn snapshot(&self) -> Vec<(RoomName, Members)> {
        let state = self.lock();
        state
            .rooms
            .iter()
            .map(|(room, members)| (room.clone(), members.clone()))
            .collect()
    }

    /// Waits until the set of rooms changes (a change since the last wait counts).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_stays_while_anyone_is_in_it() {
        let index = RoomIndex::recording_changes();
        let room = RoomName::parse("lobby").unwrap();
        let (ann, bob): (Arc<str>, Arc<str>) = (Arc::from("ann"), Arc::from("bob"));
        assert_eq!(index.join(&room, &ann), 1);
        assert_eq!(index.join(&room, &ann), 1);
        assert_eq!(index.join(&room, &bob), 1);
        assert_eq!(index.leave(&room, &ann), 1);
        assert_eq!(index.members(&room).get(&ann), Some(&1));
        assert_eq!(index.take_dirty().len(), 1);
        assert!(index.take_dirty().is_empty());
        index.leave(&room, &ann);
        assert_eq!(index.leave(&room, &bob), 0);
        assert!(index.is_empty());
        assert_eq!(index.take_dirty(), vec![(room.clone(), Members::new())]);
        // Without a census nothing is recorded, so nothing piles up.
        let quiet = RoomIndex::default();
        quiet.join(&room, &ann);
        assert!(quiet.take_dirty().is_empty());
    }
}
