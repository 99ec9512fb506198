use std::cell::{Cell, RefCell};

use super::*;

/// A socket that takes at most `room` bytes, then would block; records what it took.
struct FakeSocket {
    room: Cell<usize>,
    taken: RefCell<Vec<u8>>,
    calls: Cell<usize>,
    /// Of `calls`, those with one buffer (a plain `send`).
    single: Cell<usize>,
}

impl FakeSocket {
    fn with_room(room: usize) -> Self {
        FakeSocket {
            room: Cell::new(room),
            taken: RefCell::new(Vec::new()),
            calls: Cell::new(0),
            single: Cell::new(0),
        }
    }
}

impl TryWrite for FakeSocket {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls.set(self.calls.get() + 1);
        if self.room.get() == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(self.room.get());
            self.taken.borrow_mut().extend_from_slice(&buf[..take]);
            self.room.set(self.room.get() - take);
            n += take;
        }
        Ok(n)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.single.set(self.single.get() + 1);
        self.try_write_vectored(&[IoSlice::new(buf)])
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = [0u8; MAX_HEADER];
    let mut bytes = header(OpCode::Text, payload.len(), &mut out).to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn a_frame_the_kernel_takes_is_written_in_one_call_and_never_queued() {
    let socket = FakeSocket::with_room(usize::MAX);
    let mut writer = SocketWriter::new(1024);
    let payload = Bytes::from(vec![b'x'; 300]);
    writer.send(&socket, OpCode::Text, payload.clone()).unwrap();
    assert_eq!(socket.calls.get(), 1);
    assert_eq!(writer.queued_bytes(), 0);
    assert!(!writer.has_queue());
    assert_eq!(*socket.taken.borrow(), frame(&payload));
}

#[test]
fn a_small_frame_goes_out_as_one_buffer_and_a_large_one_in_two_parts() {
    let socket = FakeSocket::with_room(usize::MAX);
    let mut writer = SocketWriter::new(1 << 20);
    let small = Bytes::from(vec![b's'; SMALL_FRAME - 4]);
    let large = Bytes::from(vec![b'l'; SMALL_FRAME]);
    writer.send(&socket, OpCode::Text, small.clone()).unwrap();
    assert_eq!((socket.calls.get(), socket.single.get()), (1, 1));
    writer.send(&socket, OpCode::Text, large.clone()).unwrap();
    assert_eq!((socket.calls.get(), socket.single.get()), (2, 1));
    let mut both = frame(&small);
    both.extend(frame(&large));
    assert_eq!(*socket.taken.borrow(), both);
}

#[test]
fn a_small_frame_the_kernel_takes_in_part_is_finished_from_where_it_stopped() {
    let socket = FakeSocket::with_room(10);
    let mut writer = SocketWriter::new(1 << 20);
    let payload = Bytes::from(vec![b'p'; 300]);
    writer.send(&socket, OpCode::Text, payload.clone()).unwrap();
    assert!(writer.has_queue());
    socket.room.set(usize::MAX);
    assert!(writer.flush(&socket).unwrap());
    assert_eq!(*socket.taken.borrow(), frame(&payload));
}

#[test]
fn what_the_kernel_refuses_is_queued_counted_and_flushed_in_order() {
    let socket = FakeSocket::with_room(5);
    let mut writer = SocketWriter::new(10_000);
    writer
        .send(&socket, OpCode::Text, Bytes::from_static(b"first"))
        .unwrap();
    // 5 of 7 bytes went; the rest waits, and so does everything after it.
    assert_eq!(writer.queued_bytes(), 2 + ENTRY_COST);
    writer
        .send(&socket, OpCode::Text, Bytes::from_static(b"second"))
        .unwrap();
    writer.send(&socket, OpCode::Pong, Bytes::new()).unwrap();
    assert_eq!(writer.queued_bytes(), 2 + 8 + 2 + 3 * ENTRY_COST);
    assert!(!writer.flush(&socket).unwrap());

    socket.room.set(4);
    assert!(!writer.flush(&socket).unwrap());
    assert_eq!(writer.queued_bytes(), 6 + 2 + 2 * ENTRY_COST);
    socket.room.set(usize::MAX);
    assert!(writer.flush(&socket).unwrap());
    assert_eq!(writer.queued_bytes(), 0);
    let mut expected = frame(b"first");
    expected.extend(frame(b"second"));
    expected.extend([0x8A, 0]);
    assert_eq!(*socket.taken.borrow(), expected);
}

#[test]
fn past_the_cap_the_writer_refuses_and_clear_frees_the_queue() {
    let socket = FakeSocket::with_room(0);
    let cap = 3 * (100 + 2 + ENTRY_COST);
    let mut writer = SocketWriter::new(cap);
    for _ in 0..3 {
        writer
            .send(&socket, OpCode::Text, Bytes::from(vec![b'y'; 100]))
            .unwrap();
    }
    assert_eq!(writer.queued_bytes(), cap);
    // Empty pongs cost their slot: they cannot pile up for free either.
    assert_eq!(
        writer.send(&socket, OpCode::Pong, Bytes::new()),
        Err(Overflow)
    );
    writer.clear();
    assert_eq!(writer.queued_bytes(), 0);
    assert!(!writer.has_queue());
}

#[test]
fn a_cut_off_client_gets_the_rest_of_its_current_frame_then_the_close_frame() {
    let socket = FakeSocket::with_room(3);
    let cap = 4 * (100 + 2 + ENTRY_COST);
    let mut writer = SocketWriter::new(cap);
    for _ in 0..4 {
        writer
            .send(&socket, OpCode::Text, Bytes::from(vec![b'z'; 100]))
            .unwrap();
    }
    assert!(writer.send(&socket, OpCode::Text, Bytes::new()).is_err());
    writer.abandon();
    // Only the frame the client has begun to get stays: 99 of its 102 bytes.
    assert_eq!(writer.queued_bytes(), 99 + ENTRY_COST);
    // The close frame goes even past the cap.
    writer.send_close(&socket, Bytes::from_static(b"\x03\xf5"));
    assert_eq!(writer.queued_bytes(), 99 + 4 + 2 * ENTRY_COST);
    socket.room.set(usize::MAX);
    assert!(writer.flush(&socket).unwrap());
    let mut expected = frame(&[b'z'; 100]);
    expected.extend([0x88, 2, 0x03, 0xf5]);
    assert_eq!(*socket.taken.borrow(), expected);
}

#[test]
fn a_client_cut_off_between_frames_gets_only_the_close_frame() {
    let socket = FakeSocket::with_room(0);
    let mut writer = SocketWriter::new(1000);
    writer
        .send(&socket, OpCode::Text, Bytes::from_static(b"never"))
        .unwrap();
    writer.abandon();
    assert!(!writer.has_queue());
    writer.send_close(&socket, Bytes::from_static(b"\x03\xe8"));
    socket.room.set(usize::MAX);
    assert!(writer.flush(&socket).unwrap());
    assert_eq!(*socket.taken.borrow(), vec![0x88, 2, 0x03, 0xe8]);
}

#[test]
fn a_held_frame_that_would_pass_the_cap_first_writes_what_is_held() {
    let socket = FakeSocket::with_room(usize::MAX);
    let cap = 2 * (100 + 2 + ENTRY_COST);
    let mut writer = SocketWriter::new(cap);
    for _ in 0..2 {
        writer
            .queue_or_flush(&socket, OpCode::Text, Bytes::from(vec![b'h'; 100]))
            .unwrap();
    }
    assert_eq!(socket.calls.get(), 0);
    // The third does not fit: the two held go to the kernel, the third is held.
    writer
        .queue_or_flush(&socket, OpCode::Text, Bytes::from(vec![b'h'; 100]))
        .unwrap();
    assert_eq!(socket.calls.get(), 1);
    assert_eq!(writer.queued_bytes(), 102 + ENTRY_COST);
    // A kernel that takes nothing: past the cap is an overflow as ever.
    socket.room.set(0);
    writer
        .queue_or_flush(&socket, OpCode::Text, Bytes::from(vec![b'h'; 100]))
        .unwrap();
    assert_eq!(
        writer.queue_or_flush(&socket, OpCode::Text, Bytes::from(vec![b'h'; 100])),
        Err(Overflow)
    );
}
