//! Property tests of the rules a client can probe with any input: room names, room
//! patterns, and which claims a token may carry.

use eventide_hub::auth::{may_join, pattern_matches, Claims, Role, TokenVerifier};
use eventide_hub::config::Settings;
use eventide_hub::rooms::RoomName;
use proptest::prelude::*;
use serde_json::json;

use crate::helpers::{now, sign, SECRET};

fn is_room_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
}

fn room_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.:-]{0,140}",
        "provider-[0-9]{1,20}",
        any::<String>(),
        "[a-z ./*é\\-]{0,10}",
    ]
}

fn claims(role: Role, provider_id: Option<i64>, rooms: Vec<String>) -> Claims {
    Claims {
        sub: "p".into(),
        role,
        provider_id,
        rooms,
        exp: 0,
        iss: None,
        aud: None,
        iat: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn room_names_are_exactly_the_allowed_alphabet(name in room_like()) {
        prop_assert_eq!(RoomName::parse(&name).is_ok(), is_room_name(&name));
    }

    #[test]
    fn provider_rooms_round_trip(id in 0i64..=i64::MAX) {
        let room = RoomName::for_provider(id);
        prop_assert_eq!(room.provider_id(), Some(id));
        prop_assert!(RoomName::parse(room.as_str()).is_ok());
    }

    #[test]
    fn a_provider_without_rooms_claim_joins_only_its_room(id in 0i64..1_000_000, room in room_like()) {
        let c = claims(Role::Provider, Some(id), Vec::new());
        prop_assert_eq!(may_join(&c, &room), room == format!("provider-{id}"));
    }

    #[test]
    fn privileged_roles_join_every_room(room in room_like()) {
        prop_assert!(may_join(&claims(Role::Admin, None, Vec::new()), &room));
        prop_assert!(may_join(&claims(Role::Service, None, Vec::new()), &room));
    }

    #[test]
    fn patterns_are_exact_names_or_prefixes(prefix in "[a-z0-9-]{0,12}", room in room_like()) {
        let star = format!("{prefix}*");
        prop_assert_eq!(pattern_matches(&star, &room), room.starts_with(&prefix));
        prop_assert_eq!(pattern_matches(&prefix, &room), prefix == room);
        let c = claims(Role::Client, None, vec![star]);
        prop_assert_eq!(may_join(&c, &room), room.starts_with(&prefix));
    }

    #[test]
    fn tokens_are_accepted_exactly_when_their_claims_are_valid(
        role in prop_oneof![Just("admin"), Just("service"), Just("provider"), Just("client"), Just("root"), Just("")],
        provider_id in proptest::option::of(-5i64..100),
        sub in proptest::option::of("[a-z0-9]{0,6}"),
        exp_offset in prop_oneof![-100_000i64..-30, 30i64..100_000],
        with_exp in any::<bool>(),
    ) {
        let mut settings = Settings::with_database("sqlite://unused.db");
        settings.jwt_leeway_secs = 5;
        let verifier = TokenVerifier::hs256(SECRET.as_bytes(), &settings);
        let mut body = json!({"role": role});
        if let Some(sub) = &sub { body["sub"] = json!(sub); }
        if let Some(id) = provider_id { body["providerId"] = json!(id); }
        if with_exp { body["exp"] = json!(now() as i64 + exp_offset); }
        let valid = ["admin", "service", "provider", "client"].contains(&role)
            && sub.as_deref().is_some_and(|s| !s.is_empty())
            && with_exp && exp_offset > 0
            && (role != "provider" || provider_id.is_some());
        let verdict = verifier.verify(&sign(&body));
        prop_assert_eq!(verdict.is_ok(), valid, "{} → {:?}", body, verdict);
    }
}
