//! What a node's next census flush writes: the changes since the last flush Redis
//! took, or, when Redis may not hold the node's state, all of it.
//!
//! Redis can lose what a node wrote: restarted without persistence, failed over to a
//! replica that lacked the last writes, or the node's keys expired while it could not
//! reach Redis. Changes written on top of lost state would leave presence and the
//! per-subject limit wrong until each count happened to change again, so the node
//! rewrites its whole state instead: at its first flush, after a flush that failed,
//! after a flush that went over a connection other than the previous flush's, and
//! after a flush that found the mark of the last rewrite missing from its keys.

use std::collections::HashMap;

use crate::rooms::{Members, RoomName};

/// What the next flush must write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Replace the node's keys with a snapshot of everything, and the mark.
    Rewrite,
    /// Write [`Pending::rooms`] and [`Pending::subs`] over what Redis holds.
    Changes,
}

/// How a flush went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Redis did not take it (an error or no answer in time): some of it may have
    /// been applied, or none.
    Failed,
    /// Redis took it, over connection number `connection`; `mark_found` says whether
    /// the node's keys still held the mark of its last rewrite.
    Written { connection: u64, mark_found: bool },
}

/// The census writer's state between flushes.
#[derive(Debug)]
pub struct Pending {
    /// Rooms whose members changed since the last flush Redis took, with their members
    /// as last seen (empty: none left on this node). Empty while `rewrite` is set: the
    /// snapshot a rewrite takes holds them.
    rooms: HashMap<RoomName, Members>,
    /// Subjects whose socket count changed since the last flush Redis took, with the
    /// count as last seen (0: none left). Empty while `rewrite` is set.
    subs: HashMap<String, usize>,
    /// Redis may not hold this node's state: the next flush replaces it whole.
    rewrite: bool,
    /// What the flush in progress writes (set by [`Pending::plan`]).
    planned: Plan,
    /// The connection the last flush Redis took went over; Redis is known to hold
    /// this node's state only on that connection.
    connection: Option<u64>,
}

impl Default for Pending {
    fn default() -> Self {
        Pending::new()
    }
}

impl Pending {
    /// A node that has written nothing yet: its first flush is a rewrite (which also
    /// replaces whatever an earlier process left under the same keys).
    pub fn new() -> Self {
        Pending {
            rooms: HashMap::new(),
            subs: HashMap::new(),
            rewrite: true,
            planned: Plan::Rewrite,
            connection: None,
        }
    }

    /// Takes what changed since the last call and answers what the flush writes. On
    /// [`Plan::Rewrite`] the caller snapshots the whole state *after* this call, so
    /// that the changes dropped here are in it.
    pub fn plan(
        &mut self,
        rooms: impl IntoIterator<Item = (RoomName, Members)>,
        subs: impl IntoIterator<Item = (String, usize)>,
    ) -> Plan {
        if self.rewrite {
            // Drain the iterators all the same: they are the index's dirty sets.
            rooms.into_iter().for_each(drop);
            subs.into_iter().for_each(drop);
            self.planned = Plan::Rewrite;
        } else {
            self.rooms.extend(rooms);
            self.subs.extend(subs);
            self.planned = Plan::Changes;
        }
        self.planned
    }

    /// The rooms a [`Plan::Changes`] flush writes.
    pub fn rooms(&self) -> &HashMap<RoomName, Members> {
        &self.rooms
    }

    /// The subjects a [`Plan::Changes`] flush writes.
    pub fn subs(&self) -> &HashMap<String, usize> {
        &self.subs
    }

    /// Records how the planned flush went.
    pub fn flushed(&mut self, outcome: Outcome) {
        let intact = match (outcome, self.planned) {
            (Outcome::Failed, _) => false,
            (Outcome::Written { connection, .. }, Plan::Rewrite) => {
                self.connection = Some(connection);
                true
            }
            (
                Outcome::Written {
                    connection,
                    mark_found,
                },
                Plan::Changes,
            ) => {
                let same = self.connection == Some(connection);
                self.connection = Some(connection);
                same && mark_found
            }
        };
        self.rooms.clear();
        self.subs.clear();
        self.rewrite = !intact;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    fn members(sub: &str, sockets: u32) -> Members {
        Members::from([(Arc::<str>::from(sub), sockets)])
    }

    fn written(connection: u64) -> Outcome {
        Outcome::Written {
            connection,
            mark_found: true,
        }
    }

    #[test]
    fn the_first_flush_rewrites_and_later_ones_write_changes_only() {
        let mut pending = Pending::new();
        assert_eq!(pending.plan([], []), Plan::Rewrite);
        pending.flushed(written(1));
        let plan = pending.plan(
            [(room("lobby"), members("ann", 2))],
            [("ann".to_owned(), 2)],
        );
        assert_eq!(plan, Plan::Changes);
        assert_eq!(pending.rooms().len(), 1);
        assert_eq!(pending.subs().get("ann"), Some(&2));
        pending.flushed(written(1));
        assert_eq!(pending.plan([], []), Plan::Changes);
        assert!(pending.rooms().is_empty() && pending.subs().is_empty());
    }

    #[test]
    fn a_later_change_of_the_same_key_replaces_the_earlier() {
        let mut pending = Pending::new();
        pending.plan([], []);
        pending.flushed(written(1));
        pending.plan([], [("ann".to_owned(), 2)]);
        assert_eq!(pending.plan([], [("ann".to_owned(), 0)]), Plan::Changes);
        assert_eq!(pending.subs().get("ann"), Some(&0));
    }

    #[test]
    fn a_failed_flush_makes_the_next_one_rewrite_until_one_succeeds() {
        let mut pending = Pending::new();
        pending.plan([], []);
        pending.flushed(written(1));
        pending.plan([(room("lobby"), members("ann", 1))], []);
        pending.flushed(Outcome::Failed);
        // The changes are not kept: the rewrite's snapshot holds them.
        let plan = pending.plan([(room("hall"), members("bob", 1))], []);
        assert_eq!(plan, Plan::Rewrite);
        assert!(pending.rooms().is_empty());
        pending.flushed(Outcome::Failed);
        assert_eq!(pending.plan([], []), Plan::Rewrite);
        pending.flushed(written(2));
        assert_eq!(pending.plan([], []), Plan::Changes);
    }

    #[test]
    fn a_missing_mark_means_redis_lost_the_state() {
        let mut pending = Pending::new();
        pending.plan([], []);
        pending.flushed(written(1));
        pending.plan([], [("ann".to_owned(), 1)]);
        pending.flushed(Outcome::Written {
            connection: 1,
            mark_found: false,
        });
        assert_eq!(pending.plan([], []), Plan::Rewrite);
        // A rewrite writes the mark itself: what it found does not matter.
        pending.flushed(Outcome::Written {
            connection: 1,
            mark_found: false,
        });
        assert_eq!(pending.plan([], []), Plan::Changes);
    }

    #[test]
    fn changes_written_over_a_new_connection_are_followed_by_a_rewrite() {
        let mut pending = Pending::new();
        pending.plan([], []);
        pending.flushed(written(1));
        pending.plan([], [("ann".to_owned(), 1)]);
        // Another reader dropped the connection; this flush made a new one.
        pending.flushed(written(2));
        assert_eq!(pending.plan([], []), Plan::Rewrite);
        pending.flushed(written(2));
        assert_eq!(pending.plan([], []), Plan::Changes);
        pending.flushed(written(2));
        assert_eq!(pending.plan([], []), Plan::Changes);
    }
}
