//! How an event travels through Redis between nodes.
//!
//! `{origin} {seq} {kind} {version|-} {target length}\n{target}{frame}`: a header
//! line, then the target (a room name or a subject, which may hold any character)
//! counted by length, then the frame exactly as the clients get it, with no escaping.
//!
//! `origin` is the publishing node's random id and `seq` rises by one per message it
//! publishes: a receiver drops what it already had from that node (a PUBLISH retried
//! after a timeout may have gone through the first time), and a node drops its own
//! messages (it delivered them itself when it published them).

use std::sync::Arc;

use bytestring::ByteString;

use crate::rooms::{Event, RoomName, Target};

/// An event with where it came from.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The publishing node.
    pub origin: u64,
    /// The publisher's message counter.
    pub seq: u64,
    /// The event.
    pub event: Event,
}

/// Serializes an envelope.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    let (kind, target) = match &envelope.event.target {
        Target::Room(room) => ('r', room.as_str()),
        Target::All => ('a', ""),
        Target::User(sub) => ('u', &**sub),
    };
    let version = match envelope.event.version {
        Some(v) => v.to_string(),
        None => "-".to_owned(),
    };
    let header = format!(
        "{} {} {kind} {version} {}\n",
        envelope.origin,
        envelope.seq,
        target.len()
    );
    let frame = envelope.event.frame.as_bytes();
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
        _ => return None,
    };
    Some(Envelope {
        origin,
        seq,
        event: Event {
            target,
            version,
            frame: ByteString::from(frame.to_owned()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(target: Target, version: Option<i64>, frame: &'static str) {
        let envelope = Envelope {
            origin: 7,
            seq: 42,
            event: Event {
                target: target.clone(),
                version,
                frame: ByteString::from_static(frame),
            },
        };
        let back = decode(&encode(&envelope)).expect("decodes");
        assert_eq!((back.origin, back.seq), (7, 42));
        assert_eq!(back.event.target, target);
        assert_eq!(back.event.version, version);
        assert_eq!(back.event.frame, frame);
    }

    #[test]
    fn envelopes_round_trip() {
        let room = Target::Room(RoomName::parse("provider-1").unwrap());
        round_trip(room, Some(42), "{\"event\":\"x\",\n\"data\":1}");
        round_trip(Target::All, None, "{}");
        round_trip(Target::User(Arc::from("a b\nc é")), None, "{\"x\":\"é\"}");
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
