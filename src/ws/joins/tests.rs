use super::*;

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

fn join(name: &str, since: Option<i64>) -> RoomRequest {
    RoomRequest::Join {
        room: room(name),
        since,
        epoch: None,
        reference: None,
    }
}

fn leave(name: &str) -> RoomRequest {
    RoomRequest::Leave {
        room: room(name),
        reference: None,
    }
}

fn frame(v: i64) -> ByteString {
    ByteString::from(format!("v{v}"))
}

#[test]
fn pipelined_join_and_leave_run_in_order() {
    let mut rooms = Rooms::new(100, 1 << 20);
    rooms.request(join("x", None)).unwrap();
    rooms.request(leave("x")).unwrap();
    assert!(matches!(rooms.next(), Some(Step::Join { .. })));
    assert_eq!(rooms.next(), None, "the leave waits for the join");
    rooms.joined(&room("x"), None, None, Vec::new());
    assert_eq!(
        rooms.next(),
        Some(Step::Leave {
            room: room("x"),
            reference: None,
            was_member: true
        })
    );
    assert!(rooms.is_empty());
    assert_eq!(rooms.next(), None);
}

#[test]
fn the_cap_counts_queued_joins_and_leaves() {
    let mut rooms = Rooms::new(2, 1 << 20);
    rooms.request(join("a", None)).unwrap();
    rooms.request(join("b", None)).unwrap();
    assert_eq!(rooms.request(join("c", None)), Err(Refusal::TooManyRooms));
    rooms.request(join("a", None)).unwrap(); // already counted
    rooms.request(leave("a")).unwrap();
    rooms.request(join("c", None)).unwrap();
    assert_eq!(rooms.request(join("d", None)), Err(Refusal::TooManyRooms));
}

#[test]
fn the_queue_is_bounded() {
    let mut rooms = Rooms::new(1000, 1 << 20);
    for i in 0..MAX_QUEUED {
        rooms.request(join(&format!("r{i}"), None)).unwrap();
    }
    assert_eq!(rooms.request(join("more", None)), Err(Refusal::QueueFull));
}

#[test]
fn live_events_wait_for_the_join_then_follow_the_replay_once() {
    let mut rooms = Rooms::new(10, 1 << 20);
    let r = room("provider-1");
    rooms.request(join("provider-1", Some(2))).unwrap();
    assert!(matches!(
        rooms.next(),
        Some(Step::Join {
            replay_from: Some(2),
            ..
        })
    ));
    // The registry answered "at 4" and then sent 5; 4 came again from Redis.
    assert_eq!(rooms.arrive(&r, Some(4), &frame(4)), Arrival::Held);
    assert_eq!(rooms.arrive(&r, Some(5), &frame(5)), Arrival::Held);
    let Ended {
        frames,
        version: last,
        ..
    } = rooms
        .joined(&r, Some(4), Some(2), vec![(3, frame(3)), (4, frame(4))])
        .unwrap();
    assert_eq!(frames, [frame(3), frame(4), frame(5)]);
    assert_eq!(last, Some(5));
    assert_eq!(rooms.arrive(&r, Some(5), &frame(5)), Arrival::Drop);
    assert_eq!(rooms.arrive(&r, Some(6), &frame(6)), Arrival::Send);
}

#[test]
fn a_client_ahead_of_the_node_gets_nothing_it_has() {
    let mut rooms = Rooms::new(10, 1 << 20);
    let r = room("provider-1");
    rooms.request(join("provider-1", Some(7))).unwrap();
    rooms.next();
    assert_eq!(rooms.arrive(&r, Some(6), &frame(6)), Arrival::Held);
    assert_eq!(rooms.arrive(&r, Some(8), &frame(8)), Arrival::Held);
    let Ended {
        frames,
        version: last,
        ..
    } = rooms.joined(&r, Some(5), Some(7), Vec::new()).unwrap();
    assert_eq!(frames, [frame(8)]);
    assert_eq!(last, Some(8));
}

#[test]
fn a_rejoin_replays_from_what_the_client_has() {
    let mut rooms = Rooms::new(10, 1 << 20);
    let r = room("provider-1");
    rooms.request(join("provider-1", None)).unwrap();
    rooms.next();
    rooms.joined(&r, Some(3), None, Vec::new());
    rooms.request(join("provider-1", None)).unwrap();
    assert!(matches!(
        rooms.next(),
        Some(Step::Join {
            replay_from: Some(3),
            since: None,
            ..
        })
    ));
}

#[test]
fn unversioned_rooms_pass_everything() {
    let mut rooms = Rooms::new(10, 1 << 20);
    let r = room("lobby");
    rooms.request(join("lobby", None)).unwrap();
    rooms.next();
    assert_eq!(rooms.arrive(&r, None, &frame(1)), Arrival::Held);
    let Ended {
        frames,
        version: last,
        ..
    } = rooms.joined(&r, None, None, Vec::new()).unwrap();
    assert_eq!((frames.len(), last), (1, None));
    assert_eq!(rooms.arrive(&r, None, &frame(2)), Arrival::Send);
    assert_eq!(rooms.arrive(&room("other"), None, &frame(2)), Arrival::Drop);
}

#[test]
fn holding_past_the_cap_is_an_overflow() {
    let mut rooms = Rooms::new(10, 4);
    let r = room("lobby");
    rooms.request(join("lobby", None)).unwrap();
    rooms.next();
    assert_eq!(rooms.arrive(&r, None, &frame(1)), Arrival::Held);
    assert_eq!(rooms.arrive(&r, None, &frame(22)), Arrival::Overflow);
}

#[test]
fn a_failed_join_leaves_no_room_and_lets_the_queue_go_on() {
    let mut rooms = Rooms::new(10, 1 << 20);
    rooms.request(join("a", None)).unwrap();
    rooms.request(join("b", None)).unwrap();
    rooms.next();
    rooms.join_failed(&room("a"));
    assert!(matches!(rooms.next(), Some(Step::Join { room, .. }) if room.as_str() == "b"));
    assert_eq!(rooms.len(), 1);
}

#[test]
fn narrowing_removes_the_rooms_no_longer_allowed() {
    let mut rooms = Rooms::new(10, 1 << 20);
    for name in ["a", "b"] {
        rooms.request(join(name, None)).unwrap();
        rooms.next();
        rooms.joined(&room(name), None, None, Vec::new());
    }
    let gone = rooms.retain(|r| r.as_str() == "a");
    assert_eq!(gone, vec![room("b")]);
    assert_eq!(rooms.len(), 1);
}

#[test]
fn versions_skipped_during_a_join_end_it_unrecovered_after_the_skip() {
    let mut rooms = Rooms::new(10, 1 << 20);
    let r = room("provider-1");
    rooms.request(join("provider-1", Some(2))).unwrap();
    rooms.next();
    // The stream skipped to after 9 while the replay of (2, 4] was being read; 10
    // and 11 follow the skip.
    assert!(
        !rooms.resync(&r, 9, None),
        "no notice of its own for a joining socket"
    );
    assert_eq!(rooms.arrive(&r, Some(10), &frame(10)), Arrival::Held);
    assert_eq!(rooms.arrive(&r, Some(11), &frame(11)), Arrival::Held);
    let ended = rooms
        .joined(&r, Some(4), Some(2), vec![(3, frame(3)), (4, frame(4))])
        .unwrap();
    assert_eq!(ended.skipped, Some((9, None)));
    assert_eq!(
        ended.frames,
        [frame(10), frame(11)],
        "the replay has a hole: dropped"
    );
    assert_eq!(ended.version, Some(11));
    assert_eq!(rooms.arrive(&r, Some(12), &frame(12)), Arrival::Send);
    // Live now: the next skip is told at once.
    assert!(rooms.resync(&r, 20, None));
}

#[test]
fn a_stream_that_moves_back_during_a_join_resumes_from_its_new_head() {
    let mut rooms = Rooms::new(10, 1 << 20);
    let r = room("provider-1");
    rooms.request(join("provider-1", Some(2))).unwrap();
    rooms.next();
    // 5 and 6 of the old epoch were held; then the stream was found at 4 under a new
    // epoch, and the new 5 follows.
    assert_eq!(rooms.arrive(&r, Some(5), &frame(5)), Arrival::Held);
    assert_eq!(rooms.arrive(&r, Some(6), &frame(6)), Arrival::Held);
    assert!(!rooms.resync(&r, 4, Some("fresh".into())));
    let new_five = ByteString::from_static("new 5");
    assert_eq!(rooms.arrive(&r, Some(5), &new_five), Arrival::Held);
    let ended = rooms
        .joined(&r, Some(6), Some(2), vec![(3, frame(3)), (4, frame(4))])
        .unwrap();
    assert_eq!(ended.skipped, Some((4, Some("fresh".into()))));
    assert_eq!(ended.frames, [new_five], "only what follows the new head");
    assert_eq!(ended.version, Some(5));
}

#[test]
fn a_join_narrowed_away_while_it_runs_answers_nothing() {
    let mut rooms = Rooms::new(10, 1 << 20);
    rooms.request(join("provider-1", Some(2))).unwrap();
    rooms.request(join("b", None)).unwrap();
    rooms.next();
    assert_eq!(
        rooms.retain(|r| r.as_str() == "b"),
        vec![room("provider-1")]
    );
    assert_eq!(
        rooms.joined(&room("provider-1"), Some(4), Some(2), Vec::new()),
        None
    );
    assert!(matches!(rooms.next(), Some(Step::Join { room, .. }) if room.as_str() == "b"));
    assert_eq!(rooms.len(), 1);
}

#[test]
fn the_shard_may_send_only_what_a_live_room_has_not_seen_and_never_for_a_joining_one() {
    let mut rooms = Rooms::new(10, 1 << 20);
    let r = room("provider-1");
    rooms.request(join("provider-1", Some(7))).unwrap();
    rooms.next();
    assert_eq!(
        rooms.arrive_live(&r, Some(8)),
        None,
        "joining: the session holds it"
    );
    // The client came from a node that saw more: it has 7, this node delivered 5.
    rooms.joined(&r, Some(5), Some(7), Vec::new()).unwrap();
    assert_eq!(rooms.arrive_live(&r, Some(6)), Some(false));
    assert_eq!(rooms.arrive_live(&r, Some(7)), Some(false));
    assert_eq!(rooms.arrive_live(&r, Some(8)), Some(true));
    assert_eq!(
        rooms.arrive(&r, Some(8), &frame(8)),
        Arrival::Drop,
        "seen once"
    );
    assert_eq!(rooms.arrive_live(&r, None), Some(true));
    assert_eq!(rooms.arrive_live(&room("other"), Some(1)), Some(false));
    // A rejoin of a live room replays from what the shard wrote, not from before it.
    rooms.request(join("provider-1", None)).unwrap();
    assert!(matches!(
        rooms.next(),
        Some(Step::Join {
            replay_from: Some(8),
            ..
        })
    ));
}
