//! Every REST route × every kind of malformed input of the contract: the status is the
//! one the contract names, the body is the JSON error shape, and never a 500.

use serde_json::{json, Value};

use crate::helpers::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Body {
    None,
    Valid,
    NotJson,
    Empty,
    WrongShape,
    Mistyped,
    TooLarge,
}

fn body_text(route_body: &Value, kind: Body) -> Option<String> {
    match kind {
        Body::None => None,
        Body::Valid => Some(route_body.to_string()),
        Body::NotJson => Some("{\"unterminated\": ".into()),
        Body::Empty => Some(String::new()),
        Body::WrongShape => Some("[1, 2, 3]".into()),
        Body::Mistyped => {
            Some(json!({"startsAt": true, "endsAt": [], "event": 5, "note": 1}).to_string())
        }
        Body::TooLarge => Some(format!("{{\"note\": \"{}\"}}", "x".repeat(80 * 1024))),
    }
}

/// (method, path with `{}` for the parameter, a valid parameter, bad parameters, a
/// valid body if the route takes one)
type Route<'a> = (&'a str, &'a str, &'a str, Vec<&'a str>, Option<Value>);

#[actix_web::test]
async fn every_route_answers_every_malformed_input_without_a_500() {
    let app = TestApp::builder().spawn().await;
    let slot = app.create_slot(1, 0).await;
    let id = slot["id"].as_i64().unwrap().to_string();
    let new_slot = slot_at(24 * 60);
    let emit = json!({"event": "e", "data": {}});
    let long_room = "r".repeat(129);

    let routes: Vec<Route> = vec![
        (
            "GET",
            "/api/providers/{}/availability",
            "1",
            vec![
                "abc",
                "0",
                "-1",
                "99999999999999999999",
                "1e3",
                "%F0%9F%92%A9",
            ],
            None,
        ),
        (
            "POST",
            "/api/providers/{}/availability",
            "1",
            vec!["abc", "0", "1.5"],
            Some(new_slot.clone()),
        ),
        (
            "GET",
            "/api/availability/{}",
            &id,
            vec!["abc", "0", "-7", "18446744073709551616"],
            None,
        ),
        (
            "PATCH",
            "/api/availability/{}",
            &id,
            vec!["abc", "0"],
            Some(json!({"note": "n"})),
        ),
        (
            "DELETE",
            "/api/availability/{}",
            "999999",
            vec!["abc", "0"],
            None,
        ),
        (
            "POST",
            "/api/rooms/{}/events",
            "lobby",
            vec!["a%20b", "%00", &long_room, "%C3%A9"],
            Some(emit.clone()),
        ),
        ("POST", "/api/broadcast{}", "", vec![], Some(emit.clone())),
    ];
    let bodies = [
        Body::None,
        Body::Valid,
        Body::NotJson,
        Body::Empty,
        Body::WrongShape,
        Body::Mistyped,
        Body::TooLarge,
    ];
    let tokens: [(&str, Option<String>); 3] = [
        ("none", None),
        ("invalid", Some("x.y.z".into())),
        ("admin", Some(admin())),
    ];

    let mut checked = 0;
    for (method, template, good, bad_params, valid_body) in &routes {
        let params = std::iter::once((*good, true)).chain(bad_params.iter().map(|p| (*p, false)));
        for (param, param_ok) in params {
            let path = template.replace("{}", param);
            for kind in bodies {
                let takes_body = valid_body.is_some();
                if !takes_body && kind != Body::None {
                    continue;
                }
                for (token_name, token) in &tokens {
                    let text = body_text(valid_body.as_ref().unwrap_or(&Value::Null), kind);
                    let (status, value) = app
                        .call(method, &path, token.as_deref(), text.as_deref())
                        .await;
                    checked += 1;
                    let expected: &[u16] = if token.is_none() || *token_name == "invalid" {
                        &[401]
                    } else if !param_ok {
                        &[400]
                    } else if takes_body {
                        match kind {
                            Body::None | Body::Empty | Body::NotJson => &[400],
                            Body::TooLarge => &[413],
                            Body::WrongShape | Body::Mistyped => &[422],
                            // A valid create may conflict with the one made by an earlier
                            // iteration; a patch or emit succeeds.
                            Body::Valid => &[200, 201, 202, 409],
                        }
                    } else if *method == "DELETE" {
                        &[404]
                    } else {
                        &[200]
                    };
                    assert!(
                        expected.contains(&status),
                        "{method} {path} token={token_name} body={kind:?}: {status} {value}, expected {expected:?}"
                    );
                    if status >= 400 {
                        assert!(
                            value["error"]["code"].is_string(),
                            "{method} {path}: {value}"
                        );
                    }
                }
            }
        }
    }
    assert!(checked > 150, "only {checked} combinations checked");
}
