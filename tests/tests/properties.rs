//! Property tests over everything that reads client or caller input: the inbound envelope, route
//! selection, query strings, connection ids and channel names, and sender requests. Each must
//! never panic, and every rejection must be typed. Cases per property: `PROPTEST_CASES`
//! (the test command runs the default below; `scripts/fuzz.sh` runs a million).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lambda_ws::protocol::{ErrorCode, Inbound, MAX_MESSAGE_BYTES};
use lambda_ws::{ChannelName, ConnectionId, SendRequest};
use lambda_ws_local::RouteTable;
use lambda_ws_local::events::parse_query;
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use serde_json::Value;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2_000);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Arbitrary JSON, biased towards the fields the envelope and the sender look at.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("action".to_owned()),
        Just("ref".to_owned()),
        Just("handler".to_owned()),
        Just("channel".to_owned()),
        Just("target".to_owned()),
        Just("message".to_owned()),
        Just("type".to_owned()),
        Just("exclude".to_owned()),
        "[a-z_]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        prop_oneof![Just("chat".to_owned()), Just("all".to_owned()), Just("lobby".to_owned()), ".{0,24}"]
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Bodies as clients send them: arbitrary text, JSON, JSON cut short, deep nesting.
fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        json().prop_map(|v| v.to_string()),
        (json(), any::<usize>()).prop_map(|(v, cut)| {
            let text = v.to_string();
            let mut at = cut % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text[..at].to_owned()
        }),
        (1usize..2_000).prop_map(|depth| format!("{{\"action\":{}1{}}}", "[".repeat(depth), "]".repeat(depth))),
        envelope(),
    ]
}

/// Objects with a string `action` and arbitrary other fields: mostly valid envelopes.
fn envelope() -> impl Strategy<Value = String> {
    let action = prop_oneof![Just("chat".to_owned()), Just("ping".to_owned()), Just("nope".to_owned()), ".{0,12}"];
    (action, prop::collection::vec(("[a-z_]{1,8}", json()), 0..4)).prop_map(|(action, fields)| {
        let mut object: serde_json::Map<String, Value> = fields.into_iter().collect();
        object.insert("action".into(), Value::String(action));
        Value::Object(object).to_string()
    })
}

fn valid_name(s: &str, extra: &[char]) -> bool {
    (1..=128).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn inbound_envelopes_parse_or_fail_typed(body in body()) {
        match Inbound::parse(&body) {
            Ok(msg) => {
                let value: Value = serde_json::from_str(&body).expect("accepted bodies are JSON");
                prop_assert_eq!(value.get("action").and_then(Value::as_str), Some(msg.action.as_str()));
            }
            Err(e) => {
                prop_assert!(matches!(
                    e.code(),
                    ErrorCode::BadJson | ErrorCode::BadRequest | ErrorCode::TooLarge | ErrorCode::UnknownAction
                ), "{e:?}");
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn oversize_bodies_are_refused_before_parsing(extra in 1usize..64) {
        let body = format!("{{\"action\":\"chat\",\"message\":\"{}\"}}", "x".repeat(MAX_MESSAGE_BYTES + extra));
        prop_assert_eq!(Inbound::parse(&body).unwrap_err().code(), ErrorCode::TooLarge);
    }

    #[test]
    fn route_selection_is_total_and_exact(body in body()) {
        let table = RouteTable::builtin();
        let (key, _) = table.select(&body).expect("with $default every frame has a route");
        let action = serde_json::from_str::<Value>(&body).ok()
            .and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_owned));
        match action.filter(|a| !a.starts_with('$') && table.get(a).is_some()) {
            Some(a) => prop_assert_eq!(key, a.as_str()),
            None => prop_assert_eq!(key, "$default"),
        }
    }

    #[test]
    fn query_strings_decode_what_was_encoded(pairs in prop::collection::vec(("[a-z_]{1,8}", any::<String>()), 0..6)) {
        let encode = |s: &str| s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
        let raw = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
        let parsed = parse_query(Some(&raw));
        for (k, v) in &pairs {
            prop_assert!(parsed.get(k).is_some_and(|values| values.contains(v)), "{k}={v:?} from {raw}");
        }
    }

    #[test]
    fn raw_query_strings_never_panic(raw in any::<String>()) {
        let _ = parse_query(Some(&raw));
    }

    #[test]
    fn channel_names_and_connection_ids_follow_their_rules(s in prop_oneof![any::<String>(), "[A-Za-z0-9_=-]{0,130}"]) {
        prop_assert_eq!(ChannelName::new(s.clone()).is_ok(), valid_name(&s, &[]));
        prop_assert_eq!(ConnectionId::new(s.clone()).is_ok(), valid_name(&s, &['=']));
    }

    #[test]
    fn sender_requests_parse_or_fail_typed(value in json()) {
        // Never panics; what parses serializes back to something that parses the same.
        if let Ok(request) = serde_json::from_value::<SendRequest>(value) {
            let again: SendRequest = serde_json::from_value(serde_json::to_value(&request).unwrap()).unwrap();
            prop_assert_eq!(again, request);
        }
    }
}

#[test]
fn the_generators_reach_both_outcomes() {
    // Guards against generators that only ever produce rejections (properties that cannot fail).
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = body();
    let (mut ok, mut bad) = (0, 0);
    for _ in 0..2_000 {
        match Inbound::parse(&strategy.new_tree(&mut runner).unwrap().current()) {
            Ok(_) => ok += 1,
            Err(_) => bad += 1,
        }
    }
    assert!(ok > 10 && bad > 100, "{ok} accepted, {bad} refused");
}
