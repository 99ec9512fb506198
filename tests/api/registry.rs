//! The registry forgets every session and room once the sockets are gone.

use futures_util::future::join_all;

use crate::helpers::*;

#[actix_web::test]
async fn registry_is_empty_after_all_sockets_close() {
    let app = TestApp::builder().spawn().await;
    let mut sockets = Vec::new();
    for i in 0..100 {
        let mut socket = app.ws(&admin()).await;
        socket.join(&format!("room-{}", i % 10), None).await;
        socket.join("provider-1", None).await;
        sockets.push(socket);
    }
    let stats = app.wait_for_sessions(100).await;
    assert_eq!(stats.rooms, 11);
    assert_eq!(stats.memberships, 200);

    // Half close politely, half just drop the connection.
    let (polite, rude): (Vec<_>, Vec<_>) = sockets
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    join_all(polite.into_iter().map(|(_, s)| s.close())).await;
    drop(rude);
    let stats = app.wait_for_sessions(0).await;
    assert_eq!((stats.rooms, stats.memberships), (0, 0), "{stats:?}");
}
