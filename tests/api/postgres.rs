//! PostgreSQL specifics: several hub nodes writing the same provider at once never
//! produce a duplicate or skipped version.

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
#[ignore = "needs PostgreSQL (EVENTIDE_TEST_PG_URL)"]
async fn nodes_starting_together_on_a_fresh_database_all_come_up() {
    let backend = Backend::Postgres;
    let (dir, url) = actix_web::web::block(move || fresh_data(backend))
        .await
        .unwrap();
    let settings = test_settings(&url);
    let starts = (0..3).map(|_| {
        let settings = settings.clone();
        async move {
            eventide_hub::startup::Application::build(settings)
                .await
                .map(|_| ())
        }
    });
    for started in join_all(starts).await {
        started.expect("every node migrates or waits for the one that does");
    }
    drop(dir);
}

#[actix_web::test]
#[ignore = "needs PostgreSQL (EVENTIDE_TEST_PG_URL)"]
async fn two_nodes_writing_one_provider_get_consecutive_versions() {
    let backend = Backend::Postgres;
    let a = TestApp::builder().backend(backend).spawn().await;
    let b = TestApp::builder().same_data_as(&a).spawn().await;

    // 2 nodes × 40 creates of distinct slots, 8 in flight per node.
    let mut created = 0;
    for batch in 0..5 {
        let writes = (0..16).map(|j| {
            let i = batch * 16 + j;
            let node = if i % 2 == 0 { &a } else { &b };
            async move {
                node.post(
                    "/api/providers/77/availability",
                    &service(),
                    &slot_at(i * 60),
                )
                .await
            }
        });
        for (status, body) in join_all(writes).await {
            assert_eq!(status, 201, "{body}");
            created += 1;
        }
    }
    assert_eq!(created, 80);
    let (_, list) = a.get("/api/providers/77/availability", &admin()).await;
    assert_eq!(list["version"], 80);

    // The change log holds each version once: a full replay is versions 1..=80.
    let mut socket = b.ws(&provider(77)).await;
    let joined = socket.join("provider-77", Some(0)).await;
    let epoch = joined["data"]["epoch"].clone();
    assert_eq!(
        joined["data"],
        json!({"room": "provider-77", "version": 80, "epoch": epoch, "recovered": true})
    );
    for expected in 1..=80 {
        assert_eq!(socket.recv().await["data"]["version"], expected);
    }

    // Overlap is enforced across nodes too.
    let (status, _) = b
        .post("/api/providers/77/availability", &service(), &slot_at(0))
        .await;
    assert_eq!(status, 409);
}
