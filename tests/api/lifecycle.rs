//! The hub as a process: restarts keep data, SIGTERM closes every socket with 1001
//! and exits 0, and a client that never reads cannot grow the hub's memory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

// `HubProcess` lives in `helpers::processes`; re-exported here only for `cluster.rs`,
// which still imports it from this module.
pub use crate::helpers::HubProcess;

async fn a_restart_keeps_slots_and_versions(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    app.create_slot(12, 0).await;
    app.create_slot(12, 60).await;
    app.shutdown.clone().run().await;

    let again = TestApp::builder().same_data_as(&app).spawn().await;
    let (status, list) = again.get("/api/providers/12/availability", &admin()).await;
    assert_eq!(status, 200);
    assert_eq!(list["version"], 2);
    assert_eq!(list["slots"].as_array().unwrap().len(), 2);
    let mut socket = again.ws(&provider(12)).await;
    let joined = socket.join("provider-12", Some(0)).await;
    assert_eq!(joined["data"]["recovered"], true);
    assert_eq!(socket.recv().await["data"]["version"], 1);
    assert_eq!(socket.recv().await["data"]["version"], 2);
}

#[actix_web::test]
async fn sigterm_closes_every_socket_with_1001_and_exits_0() {
    let mut hub = HubProcess::start(&[]);
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let mut socket = hub.ws(&admin()).await;
        socket.join("lobby", None).await;
        sockets.push(socket);
    }
    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &hub.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for socket in &mut sockets {
        assert_eq!(
            socket.ending(Duration::from_secs(10)).await,
            Ending::Close(1001)
        );
    }
    let status = loop {
        if let Some(status) = hub.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

/// Opens a WebSocket by hand on a blocking socket that will then never be read.
fn stalled_socket(port: u16, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    upgrade_by_hand(&mut stream, port, token);
    let join = br#"{"event":"joinRoom","data":{"room":"firehose"}}"#;
    // A masked client text frame (mask of zeros keeps the payload as is).
    let mut frame = vec![0x81, 0x80 | join.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(join);
    stream.write_all(&frame).unwrap();
    stream
}

#[actix_web::test]
async fn a_client_that_never_reads_is_cut_off_and_costs_bounded_memory() {
    let hub = HubProcess::start(&[]);
    let mut reader = hub.ws(&service()).await;
    reader.join("firehose", None).await;
    let stalled = stalled_socket(hub.port, &service());
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let baseline = hub.rss_kib();

    // 20 MB published to the room, 60 KB per event.
    let payload = "z".repeat(60_000);
    let http = awc::Client::new();
    let events = 340;
    let mut received = 0;
    let t0 = Instant::now();
    for i in 0..events {
        let response = http
            .post(format!(
                "http://127.0.0.1:{}/api/rooms/firehose/events",
                hub.port
            ))
            .bearer_auth(service())
            .send_json(&json!({"event": "chunk", "data": {"i": i, "blob": payload}}))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        // The normal subscriber keeps up and gets every event, in order.
        let frame = reader.recv_event("chunk").await;
        assert_eq!(frame["data"]["i"], i);
        received += 1;
    }
    assert_eq!(received, events);
    eprintln!("published {events} events after {:?}", t0.elapsed());
    let grown = hub.rss_kib().saturating_sub(baseline);
    assert!(
        grown < 8 * 1024,
        "the hub grew by {grown} KiB while 20 MB went to a client that never reads"
    );

    // The stalled connection was closed: reading it now reaches the end of the stream,
    // through at most the few frames that were in flight and a 1013 close frame.
    let mut stalled = stalled;
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut tail = Vec::new();
    eprintln!("reading the stalled socket after {:?}", t0.elapsed());
    let read = stalled.read_to_end(&mut tail);
    eprintln!(
        "read {} bytes ({read:?}) after {:?}",
        tail.len(),
        t0.elapsed()
    );
    match read {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the stalled socket was not released: {e} after {} bytes",
            tail.len()
        ),
    }
    assert!(
        tail.windows(4)
            .any(|w| w[0] == 0x88 && u16::from_be_bytes([w[2], w[3]]) == 1013),
        "no 1013 close frame in the {} bytes left on the stalled socket",
        tail.len()
    );
}

crate::on_both_backends!(a_restart_keeps_slots_and_versions);

#[actix_web::test]
#[ignore = "needs `ss` (iproute2)"]
async fn accepted_sockets_get_the_hubs_tcp_options() {
    let app = TestApp::builder().spawn().await;
    let _socket = app.ws(&admin()).await;
    let output = Command::new("ss")
        .args([
            "-tmnoH",
            "state",
            "established",
            &format!("( sport = :{} )", app.port),
        ])
        .output()
        .expect("this test needs `ss` on PATH (apt-get install iproute2)");
    let text = String::from_utf8_lossy(&output.stdout);
    // The kernel doubles SO_SNDBUF: 128 KiB asked, 256 KiB reported.
    assert!(text.contains("tb262144"), "send buffer not capped: {text}");
    assert!(text.contains("keepalive"), "keepalive not enabled: {text}");
}
