//! Messages through the router, typed errors, `$disconnect` and clean-up.

use super::*;

// ---- messages -------------------------------------------------------------------------------

#[tokio::test]
async fn ping_answers_pong_with_the_connection_id() {
    let h = Harness::default().await;
    h.connected("Ping1=", "ann", "lobby").await;
    let posts = h.send_message("Ping1=", r#"{"action":"ping","ref":"p1"}"#).await;
    assert_eq!(posts, vec![json!({"type":"pong","connection_id":"Ping1=","ref":"p1"})]);
}

#[tokio::test]
async fn bad_messages_get_typed_errors() {
    let h = Harness::default().await;
    h.connected("m1", "ann", "lobby").await;
    h.connected("m2", "bob", "lobby").await;
    let before = h.keys().await;
    let big = format!(r#"{{"action":"ping","pad":"{}"}}"#, "a".repeat(128 * 1024));
    let cases: [(&str, &str); 8] = [
        ("{not json", "bad_json"),
        ("[1,2,3]", "bad_request"),
        (r#"{"message":"no action"}"#, "bad_request"),
        (r#"{"action":"launch","ref":"r9"}"#, "unknown_action"),
        (r#"{"action":"subscribe","channel":"bad name"}"#, "bad_channel"),
        (r#"{"action":"subscribe"}"#, "bad_request"),
        (r#"{"action":"chat","message":""}"#, "bad_request"),
        (&big, "too_large"),
    ];
    for (body, code) in cases {
        let posts = h.send_message("m1", body).await;
        assert_eq!(posts.len(), 1, "one answer for {body:.40}");
        assert_eq!(posts[0]["type"], "error");
        assert_eq!(posts[0]["code"], code, "{body:.40} → {}", posts[0]);
        assert!(posts[0]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(h.server.posts_to("m2").is_empty(), "nobody else hears about it");
    }
    let unknown = h.send_message("m1", r#"{"action":"launch","ref":"r9"}"#).await;
    assert_eq!(unknown[0]["ref"], "r9", "the ref is echoed on errors");
    assert!(unknown[0]["message"].as_str().unwrap().contains("ping"), "lists the known actions");
    assert_eq!(h.keys().await, before, "bad input changes nothing in the table");
}

#[tokio::test]
async fn messages_from_unknown_connections_are_refused() {
    let h = Harness::default().await;
    let posts = h.send_message("ghost1", r#"{"action":"subscribe","channel":"x","ref":"g"}"#).await;
    assert_eq!(posts.len(), 1);
    assert_eq!((posts[0]["code"].as_str(), posts[0]["ref"].as_str()), (Some("not_connected"), Some("g")));
    assert!(h.keys().await.is_empty(), "no session or membership created");
}

#[tokio::test]
async fn subscribe_and_unsubscribe() {
    let rules = ChannelRules::parse("secret=users:zed; *=all").unwrap();
    let h = Harness::new(Config { channel_rules: rules, max_channels_per_connection: 3, ..base_config() }).await;
    h.connected("s1", "ann", "lobby").await;
    let posts = h.send_message("s1", r#"{"action":"subscribe","channel":"news","ref":"a"}"#).await;
    assert_eq!(posts, vec![json!({"type":"reply","action":"subscribe","ref":"a","data":{"channel":"news"}})]);
    assert!(h.keys().await.contains(&key("conn#s1", "chan#news")));
    let posts = h.send_message("s1", r#"{"action":"subscribe","channel":"secret","ref":"b"}"#).await;
    assert_eq!((posts[0]["code"].as_str(), posts[0]["ref"].as_str()), (Some("forbidden"), Some("b")));
    assert!(!h.keys().await.contains(&key("conn#s1", "chan#secret")), "the same rules as $connect");
    h.send_message("s1", r#"{"action":"subscribe","channel":"third"}"#).await;
    let posts = h.send_message("s1", r#"{"action":"subscribe","channel":"fourth"}"#).await;
    assert_eq!(posts[0]["code"], "bad_request", "channel limit: {}", posts[0]);
    let posts = h.send_message("s1", r#"{"action":"unsubscribe","channel":"news"}"#).await;
    assert_eq!(posts[0]["data"], json!({"channel":"news","was_member":true}));
    assert!(!h.keys().await.contains(&key("conn#s1", "chan#news")));
}

#[tokio::test]
async fn chat_reaches_everyone_in_the_channel() {
    let h = Harness::default().await;
    h.connected("c1", "ann", "lobby").await;
    h.connected("c2", "bob", "lobby").await;
    h.connected("c3", "cat", "elsewhere").await;
    h.server.clear();
    let response = handlers::message(
        &h.app,
        &lambda_ws_functions::chat_router(),
        &h.events.message("c1", r#"{"action":"chat","message":" hi all ","ref":"k"}"#),
    )
    .await;
    assert_eq!(response.status_code, 200);
    let line = json!({"type":"chat_message","username":"ann","message":"hi all","channel":"lobby"});
    assert_eq!(h.server.posts_to("c2"), vec![line.clone()]);
    let to_sender = h.server.posts_to("c1");
    assert_eq!(to_sender.len(), 2);
    assert!(to_sender.contains(&line));
    assert!(to_sender.contains(&json!({"type":"reply","action":"chat","ref":"k","data":{"delivered":2}})));
    assert!(h.server.posts_to("c3").is_empty());
    let posts = h.send_message("c1", r#"{"action":"chat","message":"x","channel":"elsewhere"}"#).await;
    assert_eq!(posts[0]["code"], "forbidden", "only channels you are in");
}

#[tokio::test]
async fn message_rate_limit() {
    let limits = RateLimits { messages_per_connection: 2, ..base_config().rate_limits };
    let h = Harness::new(Config { rate_limits: limits, ..base_config() }).await;
    h.connected("q1", "ann", "lobby").await;
    for _ in 0..2 {
        assert_eq!(h.send_message("q1", r#"{"action":"ping"}"#).await[0]["type"], "pong");
    }
    assert_eq!(h.send_message("q1", r#"{"action":"ping"}"#).await[0]["code"], "rate_limited");
    h.clock.advance(60_000);
    assert_eq!(h.send_message("q1", r#"{"action":"ping"}"#).await[0]["type"], "pong");
}

/// A `ping` reads nothing it does not answer with: with no message limit it reaches its route
/// with no store call (so even a connection with no session gets its `pong`), while a route that
/// reads the session still finds none. With a limit, the count's write is the one call.
#[tokio::test]
async fn ping_makes_no_store_call_without_a_message_limit() {
    let h = Harness::default().await;
    assert_eq!(h.app.config.rate_limits.messages_per_connection, 0);
    let pong = h.send_message("ghost", r#"{"action":"ping"}"#).await;
    assert_eq!((pong[0]["type"].as_str(), pong[0]["connection_id"].as_str()), (Some("pong"), Some("ghost")));
    let refused = h.send_message("ghost", r#"{"action":"subscribe","channel":"news"}"#).await;
    assert_eq!(refused[0]["code"], "not_connected", "{refused:?}");
    let limits = RateLimits { messages_per_connection: 10, ..base_config().rate_limits };
    let limited = Harness::new(Config { rate_limits: limits, ..base_config() }).await;
    assert_eq!(limited.send_message("ghost", r#"{"action":"ping"}"#).await[0]["code"], "not_connected");
}

// ---- $disconnect and clean-up ------------------------------------------------------------------

#[tokio::test]
async fn disconnect_removes_session_and_memberships() {
    let h = Harness::default().await;
    h.connected("z1", "ann", "lobby").await;
    h.connected("z2", "bob", "lobby").await;
    h.send_message("z1", r#"{"action":"subscribe","channel":"news"}"#).await;
    let response = handlers::disconnect(&h.app, &h.events.disconnect("z1")).await;
    assert_eq!(response.status_code, 200);
    let keys = h.keys().await;
    assert!(keys.iter().all(|(pk, _)| pk != "conn#z1"), "{keys:?}");
    assert!(h.memberships().await.contains(&key("conn#z2", "lobby")), "other sessions untouched");
    let again = handlers::disconnect(&h.app, &h.events.disconnect("z1")).await;
    assert_eq!(again.status_code, 200, "idempotent");
}

#[tokio::test]
async fn cleanup_removes_expired_sessions() {
    let h = Harness::new(Config { session_ttl: std::time::Duration::from_secs(120), ..base_config() }).await;
    h.connected("e1", "ann", "lobby").await;
    h.clock.advance(60_000);
    h.connected("e2", "bob", "lobby").await;
    h.clock.advance(61_000 + 1_000);
    let report = handlers::cleanup(&h.app).await.unwrap();
    assert_eq!(report.removed, 1);
    let keys = h.keys().await;
    assert!(keys.iter().all(|(pk, _)| pk != "conn#e1"));
    assert!(keys.contains(&key("conn#e2", "session")) && h.memberships().await.contains(&key("conn#e2", "lobby")));
}
