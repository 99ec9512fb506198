use super::*;

/// A masked client frame.
fn client(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![first];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn limits(max_message: usize) -> ReaderLimits {
    ReaderLimits {
        max_message,
        max_fragments: 64,
    }
}

/// Feeds `bytes` as the socket does: each read fills at most the buffer's spare room,
/// and frames are parsed after each read. Stops at the first error.
pub(super) fn read_all(reader: &mut FrameReader, bytes: &[u8]) -> Vec<Result<Message, ReadError>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    loop {
        loop {
            match reader.next_message() {
                Ok(Some(message)) => out.push(Ok(message)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
        if rest.is_empty() {
            return out;
        }
        let buffer = reader.buffer();
        let n = (buffer.capacity() - buffer.len()).min(rest.len());
        buffer.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

#[test]
fn headers_use_the_shortest_length_form() {
    let mut out = [0u8; MAX_HEADER];
    assert_eq!(header(OpCode::Text, 0, &mut out), &[0x81, 0]);
    assert_eq!(header(OpCode::Text, 125, &mut out), &[0x81, 125]);
    assert_eq!(header(OpCode::Pong, 3, &mut out), &[0x8A, 3]);
    assert_eq!(header(OpCode::Text, 126, &mut out), &[0x81, 126, 0, 126]);
    assert_eq!(
        header(OpCode::Text, 65535, &mut out),
        &[0x81, 126, 255, 255]
    );
    assert_eq!(
        header(OpCode::Text, 65536, &mut out),
        &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]
    );
}

#[test]
fn masked_frames_become_messages_however_the_bytes_arrive() {
    let mut bytes = client(0x81, b"{\"event\":\"ping\"}");
    bytes.extend(client(0x89, b"hi"));
    bytes.extend(client(0x82, &[1, 2, 3]));
    bytes.extend(client(0x88, &[0x03, 0xE8, b'o', b'k']));
    let expected = vec![
        Ok(Message::Text("{\"event\":\"ping\"}".into())),
        Ok(Message::Ping(Bytes::from_static(b"hi"))),
        Ok(Message::Binary(Bytes::from_static(&[1, 2, 3]))),
        Ok(Message::Close(Some((1000, Bytes::from_static(b"ok"))))),
    ];
    let mut reader = FrameReader::new(limits(1024), &[]);
    assert_eq!(read_all(&mut reader, &bytes), expected);
    // One byte at a time, the first bytes given with the handshake.
    let mut reader = FrameReader::new(limits(1024), &bytes[..3]);
    let mut got = Vec::new();
    for byte in &bytes[3..] {
        got.extend(read_all(&mut reader, &[*byte]));
    }
    assert_eq!(got, expected);
}

#[test]
fn continuations_join_and_control_frames_may_come_between() {
    let mut bytes = client(0x01, b"ab");
    bytes.extend(client(0x89, b""));
    bytes.extend(client(0x00, b"cd"));
    bytes.extend(client(0x80, b"e"));
    let mut reader = FrameReader::new(limits(5), &[]);
    assert_eq!(
        read_all(&mut reader, &bytes),
        vec![
            Ok(Message::Fragment),
            Ok(Message::Ping(Bytes::new())),
            Ok(Message::Fragment),
            Ok(Message::Text("abcde".into()))
        ]
    );
}

#[test]
fn the_message_limit_holds_for_frames_and_for_continuations() {
    let mut reader = FrameReader::new(limits(4), &[]);
    assert_eq!(
        read_all(&mut reader, &client(0x81, b"12345")),
        vec![Err(ReadError::TooBig)]
    );
    let mut bytes = client(0x01, b"123");
    bytes.extend(client(0x80, b"45"));
    let mut reader = FrameReader::new(limits(4), &[]);
    assert_eq!(
        read_all(&mut reader, &bytes),
        vec![Ok(Message::Fragment), Err(ReadError::TooBig)]
    );
    // Refused from the header alone (mask included), before the payload arrives.
    let mut reader = FrameReader::new(limits(4), &[]);
    assert_eq!(
        read_all(&mut reader, &[0x81, 0x80 | 126, 0, 200, 1, 2, 3, 4]),
        vec![Err(ReadError::TooBig)]
    );
}

#[test]
fn protocol_violations_are_refused() {
    let cases: Vec<(Vec<u8>, ReadError)> = vec![
        (vec![0x81, 0x02, b'h', b'i'], ReadError::Protocol), // unmasked
        (client(0xC1, b"x"), ReadError::Protocol),           // reserved bit
        (client(0x83, b"x"), ReadError::Protocol),           // unknown opcode
        (client(0x80, b"x"), ReadError::Protocol),           // continuation first
        (client(0x09, b"x"), ReadError::Protocol),           // fragmented ping
        (client(0x89, &[0; 126]), ReadError::Protocol),      // long ping
        (client(0x88, &[3]), ReadError::Protocol),           // one-byte close
        (client(0x81, &[0xff, 0xfe]), ReadError::NotUtf8),
    ];
    for (bytes, error) in cases {
        let mut reader = FrameReader::new(limits(1024), &[]);
        assert_eq!(read_all(&mut reader, &bytes), vec![Err(error)], "{bytes:?}");
    }
    let mut bytes = client(0x01, b"a");
    bytes.extend(client(0x81, b"b")); // a new message inside a fragmented one
    let mut reader = FrameReader::new(limits(1024), &[]);
    assert_eq!(
        read_all(&mut reader, &bytes),
        vec![Ok(Message::Fragment), Err(ReadError::Protocol)]
    );
    assert_eq!(ReadError::TooBig.close_code(), 1009);
    assert_eq!(ReadError::TooManyFragments.close_code(), 1009);
}

#[test]
fn the_buffer_grows_for_a_large_frame_and_shrinks_back() {
    let mut reader = FrameReader::new(limits(64 * 1024), &[]);
    assert!(reader.capacity() <= 2 * SMALL_READ_BUFFER);
    let big = vec![b'x'; 60_000];
    let frame = client(0x81, &big);
    // Half of it: the buffer holds what came, not what the header announced.
    assert!(read_all(&mut reader, &frame[..30_000]).is_empty());
    assert!(reader.capacity() >= 30_000 && reader.capacity() < 2 * 30_000 + SMALL_READ_BUFFER);
    let mut rest = frame[30_000..].to_vec();
    rest.extend(client(0x81, b"small"));
    let got = read_all(&mut reader, &rest);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        Ok(Message::Text(String::from_utf8(big).unwrap().into()))
    );
    assert!(
        reader.capacity() <= 2 * SMALL_READ_BUFFER,
        "{}",
        reader.capacity()
    );
}

#[test]
fn an_idle_reader_keeps_no_buffer_and_takes_a_small_one_to_read() {
    let mut reader = FrameReader::new(limits(1 << 20), &[]);
    reader.release_if_empty();
    assert_eq!(reader.capacity(), 0);
    let frame = client(0x81, b"hello");
    reader.buffer().extend_from_slice(&frame[..3]);
    assert_eq!(reader.capacity(), SMALL_READ_BUFFER);
    assert_eq!(reader.next_message(), Ok(None));
    // Half a frame is unread: the buffer stays.
    reader.release_if_empty();
    assert_eq!(reader.capacity(), SMALL_READ_BUFFER);
    reader.buffer().extend_from_slice(&frame[3..]);
    assert_eq!(
        reader.next_message(),
        Ok(Some(Message::Text("hello".into())))
    );
    reader.release_if_empty();
    assert_eq!(reader.capacity(), 0);
}

#[test]
fn a_header_announcing_a_large_frame_reserves_nothing() {
    let mut reader = FrameReader::new(limits(64 * 1024), &[]);
    // `81 FE FF FF` and a mask: 65,535 bytes announced, none sent.
    assert!(read_all(&mut reader, &[0x81, 0xFE, 0xFF, 0xFF, 1, 2, 3, 4]).is_empty());
    assert_eq!(reader.capacity(), SMALL_READ_BUFFER);
}

#[test]
fn close_codes_no_endpoint_may_send_fail_the_connection() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let mut reader = FrameReader::new(limits(1024), &[]);
        let frame = client(0x88, &code.to_be_bytes());
        assert_eq!(
            read_all(&mut reader, &frame),
            vec![Err(ReadError::Protocol)],
            "{code}"
        );
    }
    for code in [1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
        let mut reader = FrameReader::new(limits(1024), &[]);
        let frame = client(0x88, &code.to_be_bytes());
        assert_eq!(
            read_all(&mut reader, &frame),
            vec![Ok(Message::Close(Some((code, Bytes::new()))))],
            "{code}"
        );
    }
    let mut reader = FrameReader::new(limits(1024), &[]);
    let frame = client(0x88, &[0x03, 0xE8, 0xC3]);
    assert_eq!(read_all(&mut reader, &frame), vec![Err(ReadError::NotUtf8)]);
}

#[test]
fn a_64_bit_length_with_its_top_bit_set_is_a_protocol_error() {
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    let mut reader = FrameReader::new(limits(1024), &[]);
    assert_eq!(
        read_all(&mut reader, &frame),
        vec![Err(ReadError::Protocol)]
    );
    // Without the top bit, only too big.
    frame[2] = 0x7f;
    let mut reader = FrameReader::new(limits(1024), &[]);
    assert_eq!(read_all(&mut reader, &frame), vec![Err(ReadError::TooBig)]);
}

#[test]
fn a_message_has_at_most_max_fragments_frames() {
    let mut bytes = client(0x01, b"");
    for _ in 0..62 {
        bytes.extend(client(0x00, b""));
    }
    bytes.extend(client(0x80, b"x"));
    let mut reader = FrameReader::new(limits(1024), &[]);
    let got = read_all(&mut reader, &bytes);
    assert_eq!(got.len(), 64);
    assert_eq!(got[63], Ok(Message::Text("x".into())));
    assert!(!reader.in_message());
    // 20,000 empty continuations: refused at the 65th frame.
    let mut bytes = client(0x01, b"");
    for _ in 0..20_000 {
        bytes.extend(client(0x00, b""));
    }
    let mut reader = FrameReader::new(limits(1024), &[]);
    let got = read_all(&mut reader, &bytes);
    assert_eq!(got.len(), 65);
    assert_eq!(got[64], Err(ReadError::TooManyFragments));
}

#[test]
fn text_is_utf8_across_fragment_boundaries() {
    // "é€": a code point cut between frames, another cut in three.
    let parts: [&[u8]; 4] = [b"\xC3", b"\xA9\xE2", b"\x82", b"\xAC"];
    let mut bytes = client(0x01, parts[0]);
    bytes.extend(client(0x00, parts[1]));
    bytes.extend(client(0x00, parts[2]));
    bytes.extend(client(0x80, parts[3]));
    let mut reader = FrameReader::new(limits(1024), &[]);
    let got = read_all(&mut reader, &bytes);
    assert_eq!(got.last(), Some(&Ok(Message::Text("é€".into()))));
    // A message that ends inside a code point.
    let mut bytes = client(0x01, b"ok");
    bytes.extend(client(0x80, b"\xE2\x82"));
    let mut reader = FrameReader::new(limits(1024), &[]);
    assert_eq!(
        read_all(&mut reader, &bytes),
        vec![Ok(Message::Fragment), Err(ReadError::NotUtf8)]
    );
    // An invalid sequence is refused with the fragment that brings it.
    let mut bytes = client(0x01, b"ok\xFF");
    bytes.extend(client(0x80, b"fine"));
    let mut reader = FrameReader::new(limits(1024), &[]);
    assert_eq!(read_all(&mut reader, &bytes), vec![Err(ReadError::NotUtf8)]);
    // Binary is not text.
    let mut bytes = client(0x02, b"\xFF");
    bytes.extend(client(0x80, b"\xFE"));
    let mut reader = FrameReader::new(limits(1024), &[]);
    assert_eq!(
        read_all(&mut reader, &bytes).last(),
        Some(&Ok(Message::Binary(Bytes::from_static(b"\xFF\xFE"))))
    );
}

#[test]
fn with_one_fragment_allowed_a_continuation_is_refused() {
    let limits = ReaderLimits {
        max_message: 1024,
        max_fragments: 1,
    };
    let mut bytes = client(0x01, b"{");
    bytes.extend(client(0x80, b"}"));
    let mut reader = FrameReader::new(limits, &[]);
    assert_eq!(
        read_all(&mut reader, &bytes),
        vec![Ok(Message::Fragment), Err(ReadError::TooManyFragments)]
    );
}
