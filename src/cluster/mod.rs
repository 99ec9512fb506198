//! More than one node: the Redis backplane that carries every event to every node.
//!
//! Publish-then-deliver-on-receipt: a node that produces an event publishes it to
//! Redis and does not deliver it itself; every node, the publisher included, delivers
//! what it receives from its subscription to its own registry. So each node delivers
//! each event exactly once. Order: the writers of one provider are serialized across
//! nodes (a PostgreSQL advisory lock held from the version bump through the publish),
//! so Redis receives — and every subscriber sees — a provider's events in version order.
//!
//! When Redis is unreachable a node keeps serving its own sockets (its events are
//! delivered locally), reports not ready, and resubscribes with backoff; after a
//! resubscription every session in a provider room replays what it missed from the
//! database change log.

mod backplane;

pub use backplane::Backplane;
