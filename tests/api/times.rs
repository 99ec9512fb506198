//! Times in bodies and queries: RFC 3339 with a four-digit year (0001–9999 in UTC),
//! anything else a 422 naming the field (in a query, a 400 for what is not a time at
//! all: it does not parse), on every backend, never a 201 or a 500.

use serde_json::json;

use crate::helpers::*;

/// Times no backend can hold faithfully, and a year-0 time.
const OUT_OF_RANGE: [&str; 5] = [
    "+10000-01-02T00:00:00Z",
    "-5000-01-01T00:00:00Z",
    "0000-06-01T00:00:00Z",
    "+2030-01-01T00:00:00Z",
    "9999-12-31T23:00:00-02:00",
];

async fn body_times_outside_four_digit_years_are_422(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let create = "/api/providers/9/availability";
    let token = admin();
    let slot = app.create_slot(9, 0).await;
    let patch = format!("/api/availability/{}", slot["id"]);
    for bad in OUT_OF_RANGE {
        let (status, err) = app
            .post(
                create,
                &token,
                &json!({"startsAt": "2030-01-01T00:00:00Z", "endsAt": bad}),
            )
            .await;
        assert_eq!(status, 422, "endsAt {bad}: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`endsAt`"),
            "{err}"
        );

        let (status, err) = app
            .post(
                create,
                &token,
                &json!({"startsAt": bad, "endsAt": "2030-01-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(status, 422, "startsAt {bad}: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`startsAt`"),
            "{err}"
        );

        for field in ["startsAt", "endsAt"] {
            let (status, err) = app.patch(&patch, &token, &json!({ field: bad })).await;
            assert_eq!(status, 422, "PATCH {field} {bad}: {err}");
            assert!(
                err["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("`{field}`")),
                "{err}"
            );
        }
    }
    // Nothing was stored or changed by the refused requests.
    let (_, list) = app.get(create, &token).await;
    assert_eq!(list["version"], 1, "{list}");
    assert_eq!(list["slots"][0], slot);
}

async fn query_times_outside_four_digit_years_are_422(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let list = "/api/providers/9/availability";
    for bad in OUT_OF_RANGE {
        // `+` must be escaped in a query, or it reads as a space.
        let encoded = bad.replace('+', "%2B");
        for param in ["from", "to"] {
            let (status, err) = app
                .get(&format!("{list}?{param}={encoded}"), &admin())
                .await;
            assert_eq!(status, 422, "{param}={bad}: {err}");
            assert!(
                err["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("`{param}`")),
                "{err}"
            );
        }
    }
}

/// A query parameter that is not a time at all does not parse: 400, naming it.
async fn query_values_that_are_not_times_are_400(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let list = "/api/providers/9/availability";
    for bad in [
        "yesterday-ish",
        "yesterday",
        "2030-01-01",
        "2030-13-01T00:00:00Z",
        "",
    ] {
        for param in ["from", "to"] {
            let (status, err) = app.get(&format!("{list}?{param}={bad}"), &admin()).await;
            assert_eq!(status, 400, "{param}={bad}: {err}");
            assert_eq!(err["error"]["code"], "bad_request", "{err}");
            assert!(
                err["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("`{param}`")),
                "{err}"
            );
        }
    }
}

async fn the_first_and_last_four_digit_years_work(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let create = "/api/providers/9/availability";
    let token = admin();
    let edges = [
        ("0001-01-01T00:00:00Z", "0001-01-01T00:30:00Z"),
        ("9999-12-31T23:00:00Z", "9999-12-31T23:59:59Z"),
        ("2030-01-01T00:00:00Z", "2030-01-01T00:30:00Z"),
    ];
    for (starts, ends) in edges {
        let (status, slot) = app
            .post(create, &token, &json!({"startsAt": starts, "endsAt": ends}))
            .await;
        assert_eq!(status, 201, "{slot}");
        assert_eq!(slot["startsAt"], starts);
    }
    // A slot ending at the last second overlaps one that would cross it.
    let (status, _) = app
        .post(
            create,
            &token,
            &json!({"startsAt": "9999-12-31T22:00:00Z", "endsAt": "9999-12-31T23:30:00Z"}),
        )
        .await;
    assert_eq!(status, 409);
    // Ordered by start across the whole range, and windowed at its edges.
    let (status, list) = app
        .get(
            &format!("{create}?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z"),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let starts: Vec<&str> = list["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["startsAt"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "0001-01-01T00:00:00Z",
            "2030-01-01T00:00:00Z",
            "9999-12-31T23:00:00Z"
        ]
    );
    let (_, late) = app
        .get(&format!("{create}?from=5000-01-01T00:00:00Z"), &token)
        .await;
    assert_eq!(late["slots"].as_array().unwrap().len(), 1, "{late}");
}

crate::on_both_backends!(
    body_times_outside_four_digit_years_are_422,
    query_times_outside_four_digit_years_are_422,
    query_values_that_are_not_times_are_400,
    the_first_and_last_four_digit_years_work,
);
