//! How an event travels through Redis between nodes.
//!
//! `{origin} {seq} {kind} {version|-} {target length}\n{target}{frame}`: a header
//! line, then the target (a room name or a subject, which may hold any character)
//! counted by length, then the frame exactly as the clients get it, with no escaping.
//! Kinds: `r` a room event, `a` a broadcast, `u` an event to a user, `d` a user's
//! sockets to close (its `version` field: the second up to which its tokens are
//! revoked, if they are).
//!
//! `origin` is the publishing node's random id and `seq` rises by one per message it
//! publishes: a receiver drops what it already had from that node (a PUBLISH retried
//! after a timeout may have gone through the first time), and a node drops its own
//! messages (it delivered them itself when it published them).

use std::sync::Arc;

use bytestring::ByteString;

use crate::rooms::{Event, RoomName, Target};

/// What travels between nodes.
#[derive(Debug, Clone)]
pub enum Message {
    /// An event for sockets.
    Event(Event),
    /// Close every socket of a subject; with `revoked_before`, its tokens issued at or
    /// before that second are refused from now on.
    Disconnect {
        /// The subject.
        sub: Arc<str>,
        /// The revocation second, when tokens are revoked too.
        revoked_before: Option<i64>,
    },
}

/// A message with where it came from.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The publishing node.
    pub origin: u64,
    /// The publisher's message counter.
    pub seq: u64,
    /// The message.
    pub message: Message,
}

/// Serializes an envelope.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    let (kind, target, version, frame) = match &envelope.message {
        Message::Event(event) => {
            let (kind, target) = match &event.target {
                Target::Room(room) => ('r', room.as_str()),
                Target::All => ('a', ""),
                Target::User(sub) => ('u', &**sub),
            };
            (kind, target, event.version, event.frame.as_bytes().as_ref())
        }
        Message::Disconnect {
            sub,
            revoked_before,
        } => ('d', &**sub, *revoked_before, &b""[..]),
    };
    let version = match version {
        Some(v) => v.to_string(),
        None => "-".to_owned(),
    };
    let header = format!(
        "{} {} {kind} {version} {}\n",
        envelope.origin,
        envelope.seq,
        target.len()
    );
    let mut out = Vec::with_capacity(header.len() + target.len() + frame.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(frame);
    out
}

/// Parses an envelope; `None` for anything malformed.
pub fn decode(payload: &[u8]) -> Option<Envelope> {
    let newline = payload.iter().position(|b| *b == b'\n')?;
    let header = std::str::from_utf8(&payload[..newline]).ok()?;
    let mut fields = header.split(' ');
    let origin = fields.next()?.parse().ok()?;
    let seq = fields.next()?.parse().ok()?;
    let kind = fields.next()?;
    let version = match fields.next()? {
        "-" => None,
        v => Some(v.parse().ok()?),
    };
    let target_len: usize = fields.next()?.parse().ok()?;
    if fields.next().is_some() {
        return None;
    }
    let rest = std::str::from_utf8(&payload[newline + 1..]).ok()?;
    let target = rest.get(..target_len)?;
    let frame = rest.get(target_len..)?;
    let target = match kind {
        "r" => Target::Room(RoomName::parse(target).ok()?),
        "a" if target.is_empty() => Target::All,
        "u" => Target::User(Arc::from(target)),
        "d" if frame.is_empty() => {
            let message = Message::Disconnect {
                sub: Arc::from(target),
                revoked_before: version,
            };
            return Some(Envelope {
                origin,
                seq,
                message,
            });
        }
        _ => return None,
    };
    let event = Event {
        target,
        version,
        frame: ByteString::from(frame.to_owned()),
    };
    Some(Envelope {
        origin,
        seq,
        message: Message::Event(event),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(target: Target, version: Option<i64>, frame: &'static str) {
        let envelope = Envelope {
            origin: 7,
            seq: 42,
            message: Message::Event(Event {
                target: target.clone(),
                version,
                frame: ByteString::from_static(frame),
            }),
        };
        let back = decode(&encode(&envelope)).expect("decodes");
        assert_eq!((back.origin, back.seq), (7, 42));
        let Message::Event(event) = back.message else {
            panic!("an event")
        };
        assert_eq!(event.target, target);
        assert_eq!(event.version, version);
        assert_eq!(event.frame, frame);
    }

    #[test]
    fn envelopes_round_trip() {
        let room = Target::Room(RoomName::parse("provider-1").unwrap());
        round_trip(room, Some(42), "{\"event\":\"x\",\n\"data\":1}");
        round_trip(Target::All, None, "{}");
        round_trip(Target::User(Arc::from("a b\nc é")), None, "{\"x\":\"é\"}");
    }

    #[test]
    fn disconnects_round_trip() {
        for revoked_before in [None, Some(1_700_000_000)] {
            let envelope = Envelope {
                origin: 1,
                seq: 2,
                message: Message::Disconnect {
                    sub: Arc::from("user 1\n"),
                    revoked_before,
                },
            };
            match decode(&encode(&envelope)).expect("decodes").message {
                Message::Disconnect {
                    sub,
                    revoked_before: back,
                } => assert_eq!((&*sub, back), ("user 1\n", revoked_before)),
                other => panic!("{other:?}"),
            }
        }
        assert!(
            decode(b"1 2 d - 1\nx{}").is_none(),
            "a disconnect has no frame"
        );
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        for bad in [
            &b"no newline"[..],
            b"1 2 r - 8\nbad room{}",
            b"1 2 r x 3\nabc{}",
            b"1 2 q - 0\n{}",
            b"1 2 r - 99\nabc",
            b"1 2 a - 1\nx{}",
            b"1 2 a - 0 extra\n{}",
        ] {
            assert!(decode(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
