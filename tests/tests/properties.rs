//! Property tests over everything that reads client or caller input: the inbound envelope, route
//! selection, query strings, connection ids and channel names, and sender requests. Each must
//! never panic, and every rejection must be typed. Cases per property: `PROPTEST_CASES`
//! (the test command runs the default below; `scripts/fuzz.sh` runs a million).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use lambda_ws::protocol::{ErrorCode, Inbound, MAX_MESSAGE_BYTES};
use lambda_ws::{ChannelName, ConnectionId, SendRequest};
use lambda_ws_local::events::parse_query;
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use serde_json::{Value, json};

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

/// Sender requests as callers write them: valid and broken targets, messages and exclusions.
fn sender_request() -> impl Strategy<Value = Value> {
    let name = prop_oneof!["[A-Za-z0-9_-]{1,12}", ".{0,8}"];
    let names = prop::collection::vec(name.clone(), 0..4);
    let target = prop_oneof![
        Just(json!("all")),
        name.clone().prop_map(|n| json!({ "channel": n })),
        names.clone().prop_map(|n| json!({ "channels": n })),
        name.clone().prop_map(|n| json!({ "user": n })),
        name.clone().prop_map(|n| json!({ "connection": n })),
        names.clone().prop_map(|n| json!({ "connections": n })),
        name.clone().prop_map(|n| json!({ "api": n })),
        (name.clone(), name.clone())
            .prop_map(|(k, v)| json!({ "filter": { "metadata": { k: v }, "channel_prefix": v } })),
        json(),
    ];
    let message = prop_oneof![
        ".{0,16}".prop_map(|m| json!({ "type": "toast", "level": "info", "message": m })),
        name.clone().prop_map(|t| json!({ "type": t, "data": 1 })),
        json(),
    ];
    let exclude = prop_oneof![Just(Value::Null), name.prop_map(Value::String), names.prop_map(|n| json!(n)), json()];
    let version = prop_oneof![Just(Value::Null), Just(json!(1)), json()];
    (target, message, exclude, version).prop_map(|(target, message, exclude, version)| {
        let mut request = json!({ "target": target, "message": message });
        for (key, value) in [("exclude", exclude), ("version", version)] {
            if !value.is_null() {
                request[key] = value;
            }
        }
        request
    })
}

fn valid_name(s: &str, extra: &[char]) -> bool {
    (1..=128).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

/// Outcomes per property, printed after each run (`scripts/fuzz.sh` shows them; SECURITY.md
/// quotes them).
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, outcome: impl Into<String>) {
        if let Ok(mut counts) = self.0.lock() {
            *counts.entry(outcome.into()).or_default() += 1;
        }
    }

    fn print(&self, property: &str) {
        let counts = self.0.lock().map(|c| c.clone()).unwrap_or_default();
        let total: u64 = counts.values().sum();
        let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        eprintln!("property {property}: {total} cases, no failure; {}", parts.join(", "));
    }
}

#[test]
fn inbound_envelopes_parse_or_fail_typed() {
    let tally = Tally::default();
    proptest!(config(), |(body in body())| {
        match Inbound::parse(&body) {
            Ok(msg) => {
                let value: Value = serde_json::from_str(&body).expect("accepted bodies are JSON");
                // The route is `action`, or `handler` when there is no `action`.
                let route = value.get("action").or_else(|| value.get("handler")).and_then(Value::as_str);
                prop_assert_eq!(route, Some(msg.action.as_str()));
                tally.add("accepted");
            }
            Err(e) => {
                prop_assert!(matches!(
                    e.code(),
                    ErrorCode::BadJson | ErrorCode::BadRequest | ErrorCode::TooLarge | ErrorCode::UnknownAction
                ), "{e:?}");
                prop_assert!(!e.to_string().is_empty());
                tally.add(format!("refused {}", e.code().as_str()));
            }
        }
    });
    tally.print("inbound envelope");
}

#[test]
fn oversize_bodies_are_refused_before_parsing() {
    let tally = Tally::default();
    proptest!(config(), |(extra in 1usize..64)| {
        let body = format!("{{\"action\":\"chat\",\"message\":\"{}\"}}", "x".repeat(MAX_MESSAGE_BYTES + extra));
        prop_assert_eq!(Inbound::parse(&body).unwrap_err().code(), ErrorCode::TooLarge);
        tally.add("refused too_large");
    });
    tally.print("oversize inbound");
}

#[test]
fn route_selection_is_total_and_exact() {
    let tally = Tally::default();
    let table = lambda_ws_cli::repository::routes(true);
    proptest!(config(), |(body in body())| {
        let (key, _) = table.select(&body).expect("with $default every frame has a route");
        let action = serde_json::from_str::<Value>(&body).ok()
            .and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_owned));
        match action.filter(|a| !a.starts_with('$') && table.get(a).is_some()) {
            Some(a) => prop_assert_eq!(key, a.as_str()),
            None => prop_assert_eq!(key, "$default"),
        }
        tally.add(if key == "$default" { "to $default" } else { "to a named route" });
    });
    tally.print("route selection");
}

#[test]
fn query_strings_decode_what_was_encoded() {
    let tally = Tally::default();
    proptest!(config(), |(pairs in prop::collection::vec(("[a-z_]{1,8}", any::<String>()), 0..6))| {
        let encode = |s: &str| s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
        let raw = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
        let parsed = parse_query(Some(&raw));
        for (k, v) in &pairs {
            prop_assert!(parsed.get(k).is_some_and(|values| values.contains(v)), "{k}={v:?} from {raw}");
        }
        tally.add("decoded");
    });
    tally.print("encoded query string");
}

#[test]
fn raw_query_strings_never_panic() {
    let tally = Tally::default();
    proptest!(config(), |(raw in any::<String>())| {
        let parsed = parse_query(Some(&raw));
        tally.add(if parsed.is_empty() { "empty" } else { "parsed" });
    });
    tally.print("raw query string");
}

#[test]
fn channel_names_and_connection_ids_follow_their_rules() {
    let tally = Tally::default();
    proptest!(config(), |(s in prop_oneof![any::<String>(), "[A-Za-z0-9_=-]{0,130}", "[A-Za-z0-9_-]{1,128}"])| {
        let channel = ChannelName::new(s.clone()).is_ok();
        prop_assert_eq!(channel, valid_name(&s, &[]));
        prop_assert_eq!(ConnectionId::new(s.clone()).is_ok(), valid_name(&s, &['=']));
        tally.add(if channel { "valid channel" } else { "refused channel" });
    });
    tally.print("channel name and connection id");
}

#[test]
fn sender_requests_parse_or_fail_typed() {
    let tally = Tally::default();
    proptest!(config(), |(value in prop_oneof![sender_request(), json()])| {
        // Never panics; what parses serializes back to something that parses the same.
        match serde_json::from_value::<SendRequest>(value) {
            Ok(request) => {
                let again: SendRequest = serde_json::from_value(serde_json::to_value(&request).unwrap()).unwrap();
                prop_assert_eq!(again, request);
                tally.add("accepted");
            }
            Err(_) => tally.add("refused"),
        }
    });
    tally.print("sender request");
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
    assert!(ok > 10 && bad > 100, "envelopes: {ok} accepted, {bad} refused");
    let strategy = sender_request();
    let (mut ok, mut bad) = (0, 0);
    for _ in 0..2_000 {
        match serde_json::from_value::<SendRequest>(strategy.new_tree(&mut runner).unwrap().current()) {
            Ok(_) => ok += 1,
            Err(_) => bad += 1,
        }
    }
    assert!(ok > 100 && bad > 100, "sender requests: {ok} accepted, {bad} refused");
}
