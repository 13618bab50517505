//! Handlers driven by API Gateway-shaped events (from `events/`), against the DynamoDB engine,
//! posting through the real SDK client to a recording Management API server. Each test asserts
//! what ends up in the table and what is posted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::encodings::Body;
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_ws::clock::{Clock as _, ManualClock};
use lambda_ws::config::RateLimits;
use lambda_ws::handlers::{self, TokenRequest};
use lambda_ws::policy::{ChannelRules, OriginPolicy};
use lambda_ws::policy::{GATEWAY_SECRET_HEADER, GatewaySecrets};
use lambda_ws::{App, ChannelCheck, ChannelName, Config, DynamoDbStore, Identity, Router};
use lambda_ws_e2e::{Events, MgmtServer, dynamodb_client, fresh_dynamodb_store, management_api};
use serde_json::{Value, json};

const ORIGIN: &str = "https://app.example.com";

struct Harness {
    app: App,
    server: MgmtServer,
    events: Events,
    store: Arc<DynamoDbStore>,
    clock: Arc<ManualClock>,
}

impl Harness {
    async fn new(config: Config) -> Self {
        let store = fresh_dynamodb_store().await;
        let server = MgmtServer::start().await;
        let clock = Arc::new(ManualClock::at(lambda_ws::clock::unix_now_millis()));
        let app = App::new(config, store.clone(), management_api()).with_clock(clock.clone());
        let events = Events::for_server(&server);
        Self { app, server, events, store, clock }
    }

    async fn default() -> Self {
        Self::new(base_config()).await
    }

    async fn token(&self, user: &str, channel: Option<&str>) -> String {
        self.token_for(Identity::user(user), channel).await
    }

    async fn token_for(&self, identity: Identity, channel: Option<&str>) -> String {
        let answer = handlers::issue_token(&self.app, token_request(Some(identity), channel)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["token"].as_str().unwrap().to_owned()
    }

    async fn connect(&self, id: &str, token: Option<&str>, channel: Option<&str>) -> (i64, String) {
        let mut event = self.events.connect(id, &[("ws_token", token), ("channel", channel)], Some(ORIGIN));
        event.request_context.connected_at = self.clock.now_millis();
        status_and_body(handlers::connect(&self.app, &event).await)
    }

    /// Connects `id` as `user` into `channel` with a fresh token.
    async fn connected(&self, id: &str, user: &str, channel: &str) {
        let token = self.token(user, None).await;
        assert_eq!(self.connect(id, Some(&token), Some(channel)).await.0, 200);
    }

    async fn send_message(&self, id: &str, body: &str) -> Vec<Value> {
        self.send_message_with(&lambda_ws_functions::default_router(), id, body).await
    }

    async fn send_message_with(&self, router: &Router, id: &str, body: &str) -> Vec<Value> {
        self.server.clear();
        let response = handlers::message(&self.app, router, &self.events.message(id, body)).await;
        assert_eq!(response.status_code, 200, "messages answer 200; errors go to the client");
        self.server.posts_to(id)
    }

    /// `(pk, sk)` of every item in the table.
    async fn keys(&self) -> BTreeSet<(String, String)> {
        self.items().await.iter().map(|i| (s(i, "pk"), s(i, "sk"))).collect()
    }

    /// (connection partition, channel) of every membership: a membership item, or a session
    /// item carrying its connect channel.
    async fn memberships(&self) -> BTreeSet<(String, String)> {
        let items = self.items().await;
        let is_membership =
            |i: &HashMap<String, AttributeValue>| s(i, "sk").starts_with("chan#") || s(i, "sk") == "session";
        items
            .iter()
            .filter(|i| is_membership(i) && i.contains_key("channel"))
            .map(|i| (s(i, "pk"), s(i, "channel")))
            .collect()
    }

    async fn items(&self) -> Vec<HashMap<String, AttributeValue>> {
        let out = dynamodb_client().scan().table_name(self.store.table()).send().await.unwrap();
        out.items.unwrap_or_default()
    }

    async fn item(&self, pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
        self.items().await.into_iter().find(|i| s(i, "pk") == pk && s(i, "sk") == sk).unwrap_or_default()
    }
}

fn base_config() -> Config {
    Config {
        allowed_origins: OriginPolicy::parse(ORIGIN).unwrap(),
        rate_limits: RateLimits::off(),
        ..Config::default()
    }
}

fn token_request(identity: Option<Identity>, channel: Option<&str>) -> TokenRequest {
    TokenRequest { identity, origin: Some(ORIGIN.into()), csrf_header: true, channel: channel.map(str::to_owned) }
}

fn s(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
}

fn status_and_body(response: ApiGatewayProxyResponse) -> (i64, String) {
    let body = match response.body {
        Some(Body::Text(t)) => t,
        _ => String::new(),
    };
    (response.status_code, body)
}

fn key(pk: &str, sk: &str) -> (String, String) {
    (pk.to_owned(), sk.to_owned())
}

// ---- $connect -------------------------------------------------------------------------------

#[tokio::test]
async fn connect_with_token_stores_session_and_membership() {
    let h = Harness::default().await;
    let token = h.token_for(Identity::user("ann").with_groups(["staff"]), None).await;
    assert_eq!(h.keys().await.len(), 1, "the token item");
    let (status, body) = h.connect("Abc123=", Some(&token), Some("lobby")).await;
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert_eq!(
        h.keys().await,
        BTreeSet::from([key("conn#Abc123=", "session"), key("user#ann", "conns")]),
        "token spent; the session with its channel on it; the user's connection slot taken"
    );
    let session = h.item("conn#Abc123=", "session").await;
    assert_eq!(s(&session, "user_id"), "ann");
    assert_eq!(s(&session, "endpoint"), h.server.endpoint("prod"));
    assert_eq!(s(&session, "source_ip"), "203.0.113.7");
    assert_eq!(s(&session, "api_id"), "abc123defg");
    assert!(session.contains_key("expires_at"));
    assert_eq!(s(&session, "channel"), "lobby", "the connect channel's membership is the session item");
    assert_eq!(h.memberships().await, BTreeSet::from([key("conn#Abc123=", "lobby")]));
    assert!(h.server.posts().is_empty(), "$connect posts nothing");
}

#[tokio::test]
async fn tokens_are_single_use_expiring_and_required() {
    let h = Harness::default().await;
    let token = h.token("ann", None).await;
    assert_eq!(h.connect("a1", Some(&token), None).await.0, 200);
    let (status, body) = h.connect("a2", Some(&token), None).await;
    assert_eq!(status, 401, "replayed token");
    assert!(body.contains("already used"), "{body}");
    assert_eq!(h.connect("a3", None, None).await, (401, r#"{"message":"token missing"}"#.to_owned()));
    assert_eq!(h.connect("a4", Some("not-a-token"), None).await.0, 401);
    assert_eq!(h.connect("a5", Some(&"x".repeat(43)), None).await.0, 401, "well-formed but unknown");
    let late = h.token("ann", None).await;
    h.clock.advance(61_000);
    let (status, body) = h.connect("a6", Some(&late), None).await;
    assert_eq!((status, body.contains("expired")), (401, true), "{body}");
    assert_eq!(h.keys().await.iter().filter(|(_, sk)| sk == "session").count(), 1, "only the first connected");
}

#[tokio::test]
async fn anonymous_connections_when_tokens_are_optional() {
    let h = Harness::new(Config { require_token: false, ..base_config() }).await;
    assert_eq!(h.connect("anon1", None, Some("public")).await.0, 200);
    let session = h.item("conn#anon1", "session").await;
    assert!(!session.contains_key("user_id"), "anonymous sessions have no user and stay out of by-user");
    assert_eq!(h.connect("anon2", Some("bogus"), None).await.0, 401, "a presented token is still checked");
}

#[tokio::test]
async fn origin_is_checked_against_the_allow_list() {
    let h = Harness::default().await;
    for origin in [Some("https://evil.example"), Some("https://app.example.com.evil.io"), Some("null"), None] {
        let token = h.token("ann", None).await;
        let event = h.events.connect("o1", &[("ws_token", Some(&token))], origin);
        let (status, body) = status_and_body(handlers::connect(&h.app, &event).await);
        assert_eq!((status, body.as_str()), (403, r#"{"message":"origin not allowed"}"#), "{origin:?}");
    }
    assert!(h.keys().await.iter().all(|(pk, _)| !pk.starts_with("conn#")), "no session stored");
}

#[tokio::test]
async fn bad_channel_is_400_and_does_not_spend_the_token() {
    let h = Harness::default().await;
    let token = h.token("ann", None).await;
    for bad in ["has space", "dot.ted", &"x".repeat(129)] {
        assert_eq!(h.connect("c1", Some(&token), Some(bad)).await.0, 400, "{bad}");
    }
    assert_eq!(h.connect("c1", Some(&token), Some("fine")).await.0, 200, "the token survived the typos");
}

#[tokio::test]
async fn malformed_connection_id_is_400() {
    let h = Harness::default().await;
    let token = h.token("ann", None).await;
    let (status, body) = h.connect("bad/id", Some(&token), None).await;
    assert_eq!((status, body.as_str()), (400, r#"{"message":"invalid connection id"}"#));
}

#[tokio::test]
async fn channel_permissions_on_connect() {
    let rules = ChannelRules::parse("public-*=all; staff=groups:staff; vip=users:ann; *=authenticated").unwrap();
    let h = Harness::new(Config { channel_rules: rules, ..base_config() }).await;
    let staff = Identity::user("bob").with_groups(["staff"]);
    let cases: [(Identity, &str, i64); 5] = [
        (staff.clone(), "staff", 200),
        (Identity::user("ann"), "staff", 403),
        (Identity::user("ann"), "vip", 200),
        (staff, "vip", 403),
        (Identity::user("cat"), "public-news", 200),
    ];
    for (n, (identity, channel, expected)) in cases.into_iter().enumerate() {
        let token = h.token_for(identity.clone(), None).await;
        let (status, _) = h.connect(&format!("p{n}"), Some(&token), Some(channel)).await;
        assert_eq!(status, expected, "{} → {channel}", identity.user_id);
    }
}

#[derive(Debug)]
struct OwnRoomOnly;

#[lambda_ws::async_trait]
impl ChannelCheck for OwnRoomOnly {
    async fn allows(&self, identity: Option<&Identity>, channel: &ChannelName) -> bool {
        match channel.as_str().strip_prefix("user-") {
            Some(owner) => identity.is_some_and(|i| i.user_id == owner),
            None => true,
        }
    }
}

#[tokio::test]
async fn custom_channel_check_hook() {
    let mut h = Harness::default().await;
    h.app = h.app.clone().with_channel_check(Arc::new(OwnRoomOnly));
    let token = h.token("ann", None).await;
    assert_eq!(h.connect("h1", Some(&token), Some("user-bob")).await.0, 403);
    let token = h.token("ann", None).await;
    assert_eq!(h.connect("h2", Some(&token), Some("user-ann")).await.0, 200);
}

#[tokio::test]
async fn token_bound_to_a_channel() {
    let h = Harness::default().await;
    let token = h.token("ann", Some("room-1")).await;
    assert_eq!(h.connect("b1", Some(&token), Some("room-2")).await.0, 403);
    let token = h.token("ann", Some("room-1")).await;
    assert_eq!(h.connect("b2", Some(&token), None).await.0, 200, "no channel asked: the bound one is used");
    assert!(h.memberships().await.contains(&key("conn#b2", "room-1")));
}

#[tokio::test]
async fn default_channel_when_absent() {
    let config = Config { default_channel: Some(ChannelName::new("lobby").unwrap()), ..base_config() };
    let h = Harness::new(config).await;
    h.connected("d1", "ann", "own").await;
    let token = h.token("ann", None).await;
    assert_eq!(h.connect("d2", Some(&token), None).await.0, 200);
    let joined = h.memberships().await;
    assert!(joined.contains(&key("conn#d1", "own")) && !joined.contains(&key("conn#d1", "lobby")));
    assert!(joined.contains(&key("conn#d2", "lobby")));
}

#[tokio::test]
async fn api_id_is_checked_when_configured() {
    let h = Harness::new(Config { api_id: Some("otherapi".into()), ..base_config() }).await;
    let token = h.token("ann", None).await;
    assert_eq!(h.connect("x1", Some(&token), None).await.0, 403);
    let response = handlers::message(&h.app, &Router::builtin(), &h.events.message("x1", r#"{"action":"ping"}"#)).await;
    assert_eq!(response.status_code, 403);
    assert!(h.server.posts().is_empty(), "events from another API get no answer");
}

#[tokio::test]
async fn connect_rate_limit_counts_failed_attempts_and_recovers() {
    let limits = RateLimits { connect_per_ip: 3, ..base_config().rate_limits };
    let token_ttl = std::time::Duration::from_secs(300);
    let h = Harness::new(Config { rate_limits: limits, token_ttl, ..base_config() }).await;
    for n in 0..3 {
        assert_eq!(h.connect(&format!("r{n}"), Some("wrong-token"), None).await.0, 401);
    }
    let token = h.token("ann", None).await;
    assert_eq!(h.connect("r3", Some(&token), None).await.0, 429, "token guessing counts toward the limit");
    h.clock.advance(60_000);
    assert_eq!(h.connect("r4", Some(&token), None).await.0, 200, "the 429 did not spend the token");
}

#[tokio::test]
async fn connect_rate_limit_per_user() {
    let limits = RateLimits { connect_per_user: 2, ..base_config().rate_limits };
    let h = Harness::new(Config { rate_limits: limits, ..base_config() }).await;
    for n in 0..2 {
        h.connected(&format!("u{n}"), "ann", "lobby").await;
    }
    let token = h.token("ann", None).await;
    assert_eq!(h.connect("u2", Some(&token), None).await.0, 429);
    h.connected("u3", "bob", "lobby").await;
    h.clock.advance(60_000);
    assert_eq!(h.connect("u4", Some(&token), None).await.0, 401, "the user is known from the token: it was spent");
    h.connected("u5", "ann", "lobby").await;
}

#[tokio::test]
async fn a_replayed_token_wins_once_among_32_concurrent_connects() {
    let h = Harness::default().await;
    let token = h.token("ann", None).await;
    let attempts = (0..32).map(|n| {
        let (h, token) = (&h, token.clone());
        async move { h.connect(&format!("race{n}"), Some(&token), Some("lobby")).await.0 }
    });
    let mut statuses = futures::future::join_all(attempts).await;
    statuses.sort_unstable();
    assert_eq!(statuses[0], 200);
    assert!(statuses[1..].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(h.keys().await.iter().filter(|(_, sk)| sk == "session").count(), 1, "one session stored");
}

#[tokio::test]
async fn gateway_secret_is_checked_first_and_in_any_of_its_versions() {
    let (old, new) = ("o".repeat(40), "N3w-secret_value.with+base64/chars=".to_owned());
    let secrets = GatewaySecrets::parse(&format!("{old},{new}")).unwrap();
    let limits = RateLimits { connect_per_ip: 2, ..base_config().rate_limits };
    let h = Harness::new(Config { gateway_secrets: secrets, rate_limits: limits, ..base_config() }).await;
    let token = h.token("ann", None).await;
    let (app, events, token) = (&h.app, &h.events, &token);
    let connect = |id: &str, secret: Option<&str>| {
        let mut event = events.connect(id, &[("ws_token", Some(token))], Some(ORIGIN));
        if let Some(secret) = secret {
            event.headers.insert(GATEWAY_SECRET_HEADER, secret.parse().unwrap());
        }
        async move { status_and_body(handlers::connect(app, &event).await) }
    };
    for (n, wrong) in [None, Some("wrong"), Some(&old[1..]), Some(&*format!("{new} "))].into_iter().enumerate() {
        let refused = connect(&format!("g{n}"), wrong).await;
        assert_eq!(refused, (403, r#"{"message":"invalid request"}"#.to_owned()), "{wrong:?}");
    }
    let keys = h.keys().await;
    assert!(keys.iter().all(|(pk, _)| !pk.starts_with("rate#connect-ip#") && !pk.starts_with("conn#")), "{keys:?}");
    assert_eq!(connect("g8", Some(&new)).await.0, 200, "the new secret");
    let token_again = h.token("ann", None).await;
    let mut event = h.events.connect("g9", &[("ws_token", Some(&token_again))], Some(ORIGIN));
    event.headers.insert("X-LWS-Gateway-Secret", old.parse().unwrap());
    assert_eq!(status_and_body(handlers::connect(&h.app, &event).await).0, 200, "the old one, any header case");
}

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

// ---- token issuer ---------------------------------------------------------------------------

#[tokio::test]
async fn token_issuer_checks_and_answers() {
    let rules = ChannelRules::parse("staff=groups:staff; *=all").unwrap();
    let limits = RateLimits { tokens_per_user: 3, ..base_config().rate_limits };
    let h = Harness::new(Config { channel_rules: rules, rate_limits: limits, ..base_config() }).await;
    let ann = || Some(Identity::user("ann"));
    let ok = handlers::issue_token(&h.app, token_request(ann(), None)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["expires_in"], 60);
    let token = ok.body["token"].as_str().unwrap();
    assert_eq!(token.len(), 43);
    let stored = h.keys().await;
    assert!(stored.iter().all(|(pk, _)| !pk.contains(token)), "only the hash is stored");
    let cases = [
        (TokenRequest { origin: Some("https://evil.example".into()), ..token_request(ann(), None) }, 403),
        (TokenRequest { origin: None, ..token_request(ann(), None) }, 403),
        (TokenRequest { csrf_header: false, ..token_request(ann(), None) }, 403),
        (token_request(None, None), 401),
        (token_request(ann(), Some("bad name")), 400),
        (token_request(ann(), Some("staff")), 403),
    ];
    for (request, status) in cases {
        let answer = handlers::issue_token(&h.app, request.clone()).await;
        assert_eq!(answer.status, status, "{request:?} → {}", answer.body);
        assert!(answer.body["error"]["code"].is_string());
    }
    assert_eq!(handlers::issue_token(&h.app, token_request(ann(), Some("room"))).await.status, 200);
    assert_eq!(handlers::issue_token(&h.app, token_request(ann(), None)).await.status, 200);
    let limited = handlers::issue_token(&h.app, token_request(ann(), None)).await;
    assert_eq!((limited.status, limited.body["error"]["code"].as_str()), (429, Some("rate_limited")));
    h.clock.advance(60_000);
    assert_eq!(handlers::issue_token(&h.app, token_request(ann(), None)).await.status, 200, "recovers");
}

// ---- security: bound tokens, forged events, per-user connections, channel limit, log text ---------

#[tokio::test]
async fn a_bound_token_binds_the_whole_session() {
    let h = Harness::default().await;
    let token = h.token("ann", Some("room-1")).await;
    assert_eq!(h.connect("bound1", Some(&token), None).await.0, 200);
    let posts = h.send_message("bound1", r#"{"action":"subscribe","channel":"other","ref":"o"}"#).await;
    assert_eq!((posts[0]["code"].as_str(), posts[0]["ref"].as_str()), (Some("forbidden"), Some("o")), "{posts:?}");
    assert!(!h.keys().await.contains(&key("conn#bound1", "chan#other")), "nothing joined");
    let posts = h.send_message("bound1", r#"{"action":"subscribe","channel":"room-1"}"#).await;
    assert_eq!(posts[0]["type"], "reply", "its own channel stays fine: {posts:?}");
    assert_eq!(s(&h.item("conn#bound1", "session").await, "bound_channel"), "room-1", "stored on the session");
    h.connected("free1", "ann", "lobby").await;
    let posts = h.send_message("free1", r#"{"action":"subscribe","channel":"other"}"#).await;
    assert_eq!(posts[0]["type"], "reply", "an unbound session subscribes as the rules allow");
}

#[tokio::test]
async fn with_a_gateway_secret_every_event_type_needs_it() {
    let secret = "s".repeat(40);
    let config = Config {
        gateway_secrets: GatewaySecrets::parse(&secret).unwrap(),
        api_id: Some("abc123defg".into()),
        ..base_config()
    };
    let h = Harness::new(Config { management_endpoint: Some(h_endpoint().await), ..config }).await;
    let with_secret = |mut event: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest| {
        event.headers.insert(GATEWAY_SECRET_HEADER, secret.parse().unwrap());
        event
    };
    let token = h.token("ann", None).await;
    let connect = with_secret(h.events.connect("sec1", &[("ws_token", Some(&token))], Some(ORIGIN)));
    assert_eq!(handlers::connect(&h.app, &connect).await.status_code, 200);
    // A forged MESSAGE (no secret) for a known connection: refused, nothing posted anywhere.
    let router = Router::builtin();
    let forged = h.events.message("sec1", r#"{"action":"ping"}"#);
    assert_eq!(handlers::message(&h.app, &router, &forged).await.status_code, 403);
    assert!(h.server.posts().is_empty(), "a forged event gets no answer");
    let real = with_secret(h.events.message("sec1", r#"{"action":"ping"}"#));
    assert_eq!(handlers::message(&h.app, &router, &real).await.status_code, 200);
    // A forged $disconnect: refused, the session stays.
    let forged = h.events.disconnect("sec1");
    assert_eq!(handlers::disconnect(&h.app, &forged).await.status_code, 403);
    assert!(h.keys().await.contains(&key("conn#sec1", "session")));
    // Another API id on $disconnect is refused too, secret or not.
    let mut other_api = with_secret(h.events.disconnect("sec1"));
    other_api.request_context.apiid = Some("otherapi".into());
    assert_eq!(handlers::disconnect(&h.app, &other_api).await.status_code, 403);
    assert_eq!(handlers::disconnect(&h.app, &with_secret(h.events.disconnect("sec1"))).await.status_code, 200);
    assert!(!h.keys().await.contains(&key("conn#sec1", "session")));
}

/// The Management API endpoint a configured `LWS_MANAGEMENT_ENDPOINT` names: a server of its own,
/// so a reply cannot go to the event's (forgeable) domain name.
async fn h_endpoint() -> String {
    let server = MgmtServer::start().await;
    let endpoint = server.endpoint("prod");
    std::mem::forget(server);
    endpoint
}

#[test]
fn a_gateway_secret_requires_a_configured_management_endpoint() {
    let secret = "s".repeat(40);
    let lookup = |endpoint: Option<&'static str>| {
        let secret = secret.clone();
        move |name: &str| match name {
            "LWS_GATEWAY_SECRET" => Some(secret.clone()),
            "LWS_MANAGEMENT_ENDPOINT" => endpoint.map(str::to_owned),
            _ => None,
        }
    };
    let err = Config::from_lookup(lookup(None)).unwrap().check_deployment().unwrap_err();
    assert!(err.to_string().contains("LWS_MANAGEMENT_ENDPOINT"), "{err}");
    assert!(Config::from_lookup(lookup(Some("https://ws.example.com/prod"))).unwrap().check_deployment().is_ok());
}

#[tokio::test]
async fn open_connections_per_user_are_capped_atomically() {
    let h = Harness::new(Config { max_connections_per_user: 3, ..base_config() }).await;
    let mut tokens = Vec::new();
    for _ in 0..8 {
        tokens.push(h.token("ann", None).await);
    }
    let attempts = tokens.iter().enumerate().map(|(n, token)| {
        let h = &h;
        async move { h.connect(&format!("cap{n}"), Some(token), Some("lobby")).await }
    });
    let answers = futures::future::join_all(attempts).await;
    assert_eq!(answers.iter().filter(|(status, _)| *status == 200).count(), 3, "{answers:?}");
    let refused: Vec<&(i64, String)> = answers.iter().filter(|(status, _)| *status != 200).collect();
    assert!(refused.iter().all(|(status, body)| *status == 429 && body.contains("too many open connections")));
    let sessions = h.keys().await.into_iter().filter(|(pk, sk)| pk.starts_with("conn#cap") && sk == "session");
    assert_eq!(sessions.count(), 3, "a refused connect writes no session");
    h.connected("bob1", "bob", "lobby").await;
    let open = (0..8).find(|n| answers[*n].0 == 200).unwrap();
    assert_eq!(handlers::disconnect(&h.app, &h.events.disconnect(&format!("cap{open}"))).await.status_code, 200);
    h.connected("cap-again", "ann", "lobby").await;
}

#[tokio::test]
async fn the_channel_limit_holds_under_concurrent_subscribes() {
    let h = Harness::new(Config { max_channels_per_connection: 4, ..base_config() }).await;
    h.connected("many", "ann", "lobby").await;
    let router = Router::builtin();
    let subscribes = (0..12).map(|n| {
        let (h, router) = (&h, &router);
        async move {
            let body = format!(r#"{{"action":"subscribe","channel":"c{n}"}}"#);
            handlers::message(&h.app, router, &h.events.message("many", &body)).await.status_code
        }
    });
    futures::future::join_all(subscribes).await;
    let answers = h.server.posts_to("many");
    assert_eq!(answers.iter().filter(|a| a["type"] == "reply").count(), 3, "lobby plus three: {answers:?}");
    assert_eq!(answers.iter().filter(|a| a["code"] == "bad_request").count(), 9);
    let memberships = h.memberships().await.into_iter().filter(|(pk, _)| pk == "conn#many");
    assert_eq!(memberships.count(), 4, "never beyond the limit");
}

#[tokio::test]
async fn client_text_in_errors_and_logs_is_bounded_and_escaped() {
    let h = Harness::default().await;
    h.connected("noisy", "ann", "lobby").await;
    let action = format!("fly\n2026-01-01T00:00:00Z ERROR forged line\u{1b}[2J{}", "x".repeat(100_000));
    let posts = h.send_message("noisy", &json!({"action": action, "ref": "n"}).to_string()).await;
    let text = posts[0]["message"].as_str().unwrap();
    assert_eq!(posts[0]["code"], "unknown_action");
    assert!(text.len() < 400, "bounded: {} bytes", text.len());
    assert!(!text.contains('\n') && !text.contains('\u{1b}'), "escaped: {text}");
    assert!(text.contains("fly\\n2026"), "{text}");
}

// ---- application hooks --------------------------------------------------------------------------

/// Tags a session with the `plan` its page connected for, and refuses `plan=banned` with 402.
#[derive(Debug)]
struct PlanHook;

#[lambda_ws::async_trait]
impl lambda_ws::hooks::ConnectHook for PlanHook {
    async fn on_connect(
        &self,
        info: &lambda_ws::hooks::ConnectInfo<'_>,
    ) -> Result<lambda_ws::hooks::Metadata, lambda_ws::hooks::Refusal> {
        match info.query("plan") {
            Some("banned") => Err(lambda_ws::hooks::Refusal::new(402, "upgrade your plan")),
            plan => {
                let user = info.identity.map(|i| i.user_id.clone()).unwrap_or_default();
                Ok([("plan".to_owned(), plan.unwrap_or("free").to_owned()), ("user".to_owned(), user)].into())
            }
        }
    }
}

#[tokio::test]
async fn a_connect_hooks_metadata_is_stored_and_matched_by_a_filter_send() {
    let mut h = Harness::default().await;
    h.app = h.app.clone().with_connect_hook(Arc::new(PlanHook));
    for (id, user, plan) in [("p1", "ann", "pro"), ("p2", "bob", "free"), ("p3", "cat", "pro")] {
        let token = h.token(user, None).await;
        let mut event = h.events.connect(
            id,
            &[("ws_token", Some(&token)), ("channel", Some("lobby")), ("plan", Some(plan))],
            Some(ORIGIN),
        );
        event.request_context.connected_at = h.clock.now_millis();
        assert_eq!(status_and_body(handlers::connect(&h.app, &event).await).0, 200);
    }
    let session = h.item("conn#p1", "session").await;
    let metadata = session.get("metadata").and_then(|m| m.as_m().ok()).cloned().unwrap_or_default();
    assert_eq!(metadata.get("plan").and_then(|v| v.as_s().ok()).map(String::as_str), Some("pro"), "stored");
    h.server.clear();
    let request = json!({"target": {"filter": {"metadata": {"plan": "pro"}}}, "message": {"type": "system", "level": "info", "message": "pro only"}});
    let report = handlers::send(&h.app, request).await;
    assert_eq!(report["delivered"], 2, "{report}");
    assert_eq!(h.server.posts_to("p1").len() + h.server.posts_to("p3").len(), 2);
    assert!(h.server.posts_to("p2").is_empty(), "the free plan is not matched");
}

#[tokio::test]
async fn a_refusing_connect_hook_gives_its_status_and_writes_nothing() {
    let mut h = Harness::default().await;
    h.app = h.app.clone().with_connect_hook(Arc::new(PlanHook));
    let token = h.token("ann", None).await;
    let event = h.events.connect("banned1", &[("ws_token", Some(&token)), ("plan", Some("banned"))], Some(ORIGIN));
    let (status, body) = status_and_body(handlers::connect(&h.app, &event).await);
    assert_eq!((status, body.as_str()), (402, r#"{"message":"upgrade your plan"}"#));
    assert!(
        h.keys().await.iter().all(|(pk, _)| !pk.starts_with("conn#") && !pk.starts_with("user#")),
        "no session, no slot"
    );
}

/// Records every ending it is told of.
#[derive(Debug, Default)]
struct Endings(std::sync::Mutex<Vec<lambda_ws::hooks::Ended>>);

#[lambda_ws::async_trait]
impl lambda_ws::hooks::DisconnectHook for Endings {
    async fn on_disconnect(&self, ended: &lambda_ws::hooks::Ended) {
        self.0.lock().unwrap().push(ended.clone());
    }
}

#[tokio::test]
async fn the_disconnect_hook_hears_every_ending() {
    use lambda_ws::hooks::Ending;
    let mut h = Harness::default().await;
    let endings = Arc::new(Endings::default());
    h.app = h.app.clone().with_disconnect_hook(endings.clone());
    h.connected("e1", "ann", "lobby").await;
    h.connected("e2", "bob", "lobby").await;
    h.connected("e3", "cat", "other").await;
    // $disconnect, with API Gateway's code and reason.
    assert_eq!(handlers::disconnect(&h.app, &h.events.disconnect("e1")).await.status_code, 200);
    // A 410 found by a send.
    h.server.set_gone("e2");
    handlers::send(
        &h.app,
        json!({"target": {"channel": "lobby"}, "message": {"type": "system", "level": "info", "message": "m"}}),
    )
    .await;
    // Clean-up of an expired session.
    h.clock.advance(3 * 3600 * 1000);
    handlers::cleanup(&h.app).await.unwrap();
    let seen = endings.0.lock().unwrap().clone();
    let of = |id: &str| seen.iter().find(|e| e.connection_id.as_str() == id).cloned();
    let first = of("e1").expect("$disconnect told");
    assert!(
        matches!(first.ending, Ending::Disconnected { .. }) && first.user_id.as_deref() == Some("ann"),
        "{first:?}"
    );
    assert_eq!(of("e2").map(|e| e.ending), Some(Ending::Gone), "{seen:?}");
    assert_eq!(of("e3").map(|e| e.ending), Some(Ending::CleanedUp), "{seen:?}");
    assert_eq!(seen.len(), 3, "once each: {seen:?}");
}

/// `close: true` for a user: the message first, then every connection of the user closed
/// (`DELETE @connections`), the sessions removed, the disconnect hook told `Closed`, presence
/// announcing the user gone; tokens issued before the close are refused at `$connect` (401),
/// ones issued after connect; other users are untouched. A request with neither a message nor
/// `close` is refused; a connection already gone is reported as such.
#[tokio::test]
async fn closing_a_users_sessions_closes_removes_announces_and_refuses_earlier_tokens() {
    use lambda_ws::hooks::Ending;
    let mut h = presence_harness("room-*").await;
    let endings = Arc::new(Endings::default());
    h.app = h.app.clone().with_disconnect_hook(endings.clone());
    h.connected("k1", "ann", "room-1").await;
    h.connected("k2", "ann", "room-1").await;
    h.connected("k3", "bob", "room-1").await;
    let early = h.token("ann", None).await;
    h.clock.advance(1);
    h.server.clear();
    let toast = json!({"type": "toast", "level": "warning", "message": "You were signed out"});
    let report = handlers::send(&h.app, json!({"target": {"user": "ann"}, "message": toast, "close": true})).await;
    assert_eq!((report["delivered"].as_u64(), report["closed"].as_u64()), (Some(2), Some(2)), "{report}");
    for id in ["k1", "k2"] {
        assert_eq!(h.server.posts_to(id).first().map(|m| m["type"].clone()), Some(json!("toast")), "message first");
    }
    let mut deleted = h.server.deleted();
    deleted.sort();
    assert_eq!(deleted, vec!["k1".to_owned(), "k2".to_owned()]);
    let sessions: Vec<String> =
        h.keys().await.into_iter().filter(|(pk, sk)| pk.starts_with("conn#") && sk == "session").map(|k| k.0).collect();
    assert_eq!(sessions, vec!["conn#k3".to_owned()], "ann's sessions removed, bob's kept");
    assert_eq!(presence_events(&h, "k3"), vec![event("member_left", "ann")], "announced once");
    let seen = endings.0.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|e| e.ending == Ending::Closed).count(), 2, "{seen:?}");
    // The token issued before the close is refused; one issued after it connects.
    let (status, body) = h.connect("k4", Some(&early), Some("room-1")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("closed"), "{body}");
    h.clock.advance(1);
    let fresh = h.token("ann", None).await;
    assert_eq!(h.connect("k5", Some(&fresh), Some("room-1")).await.0, 200, "a token issued after the close");
    assert_eq!(h.connect("k6", Some(&h.token("bob", None).await), Some("room-1")).await.0, 200, "bob");
    // Neither message nor close; a close of a connection that is gone already.
    let refused = handlers::send(&h.app, json!({"target": {"user": "ann"}})).await;
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
    h.server.set_gone("k6");
    let gone = handlers::send(&h.app, json!({"target": {"connection": "k6"}, "close": true})).await;
    assert_eq!((gone["closed"].as_u64(), gone["gone"].clone()), (Some(0), json!(["k6"])), "{gone}");
    assert!(h.keys().await.iter().all(|(pk, _)| pk != "conn#k6"), "its session removed too");
}

// ---- channel history and resume ------------------------------------------------------------------

/// Posts as the client handles them: a replay frame's messages in its place, in order.
fn unpacked(posts: &[Value]) -> Vec<Value> {
    posts
        .iter()
        .flat_map(|p| match p["type"].as_str() {
            Some("replay") => p["messages"].as_array().cloned().unwrap_or_default(),
            _ => vec![p.clone()],
        })
        .collect()
}

fn history_config(rules: &str) -> Config {
    Config { history: lambda_ws::history::HistoryRules::parse(rules).unwrap(), ..base_config() }
}

/// Sends `{"type":"task_progress","task_id":"t","percent":n}` to `channel` through the app's sender.
async fn progress(h: &Harness, channel: &str, n: u32) -> lambda_ws::DeliveryReport {
    let message: lambda_ws::Outbound =
        serde_json::from_value(json!({"type":"task_progress","task_id":"t","percent":n})).unwrap();
    let target = lambda_ws::Target::Channel(ChannelName::new(channel).unwrap());
    h.app.sender().send(&target, &message, &[]).await.unwrap()
}

#[tokio::test]
async fn messages_to_a_channel_with_history_carry_their_place_and_a_resume_replays_the_rest() {
    let h = Harness::new(history_config("task-*=5/5m")).await;
    h.connected("h1", "ann", "task-1").await;
    for n in 1..=3 {
        let report = progress(&h, "task-1", n * 10).await;
        assert_eq!((report.delivered, report.streams[0].seq), (1, u64::from(n)), "{report:?}");
    }
    let live = h.server.posts_to("h1");
    let epoch = live[0]["epoch"].as_str().unwrap().to_owned();
    assert_eq!(live.iter().map(|m| m["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(live.iter().all(|m| m["channel"] == "task-1" && m["epoch"] == epoch.as_str()), "{live:?}");
    // The tab reconnects as h2, having seen 1: it gets 2 and 3, in order, then the answer.
    h.connected("h2", "ann", "lobby").await;
    let body = json!({"action":"subscribe","channel":"task-1","since":1,"epoch":epoch,"ref":"r"}).to_string();
    let answers = h.send_message("h2", &body).await;
    assert_eq!((answers.len(), answers[0]["type"].as_str()), (2, Some("replay")), "one frame for both: {answers:?}");
    let answers = unpacked(&answers);
    let kinds: Vec<(&str, Option<u64>)> =
        answers.iter().map(|m| (m["type"].as_str().unwrap(), m["seq"].as_u64())).collect();
    assert_eq!(kinds, vec![("task_progress", Some(2)), ("task_progress", Some(3)), ("reply", None)]);
    assert_eq!(answers[1]["percent"], 30, "the message as sent");
    let data = &answers[2]["data"];
    assert_eq!(
        (data["recovered"].as_bool(), data["seq"].as_u64(), data["replayed"].as_u64()),
        (Some(true), Some(3), Some(2))
    );
    // Subscribing without `since` tells the position to resume from later.
    let plain = h.send_message("h2", r#"{"action":"subscribe","channel":"task-1"}"#).await;
    assert_eq!((plain.len(), plain[0]["data"]["seq"].as_u64()), (1, Some(3)), "{plain:?}");
    assert_eq!(plain[0]["data"]["epoch"], epoch.as_str());
    // Up to date: nothing to send, recovered.
    let body = json!({"action":"subscribe","channel":"task-1","since":3,"epoch":epoch}).to_string();
    let current = h.send_message("h2", &body).await;
    assert_eq!((current.len(), current[0]["data"]["recovered"].as_bool()), (1, Some(true)));
    // `history` reads the latest without resuming.
    let read = h.send_message("h2", r#"{"action":"history","channel":"task-1","limit":2}"#).await;
    let messages = read[0]["data"]["messages"].as_array().unwrap();
    assert_eq!(messages.iter().map(|m| m["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2, 3]);
    let none = h.send_message("h2", r#"{"action":"history","channel":"lobby"}"#).await;
    assert_eq!((none[0]["code"].as_str(), none[0]["field"].as_str()), (Some("bad_request"), Some("channel")));
}

#[tokio::test]
async fn a_resume_beyond_the_window_or_from_another_epoch_is_not_recovered() {
    let h = Harness::new(history_config("task-*=5/5m")).await;
    h.connected("w1", "ann", "task-2").await;
    for n in 1..=8 {
        progress(&h, "task-2", n).await;
    }
    let epoch = h.server.posts_to("w1")[0]["epoch"].as_str().unwrap().to_owned();
    h.connected("w2", "ann", "lobby").await;
    let resume = |since: u64, epoch: &str| {
        json!({"action":"subscribe","channel":"task-2","since":since,"epoch":epoch}).to_string()
    };
    // Seen 1; 2 and 3 fell out of the window of 5.
    let answers = h.send_message("w2", &resume(1, &epoch)).await;
    assert_eq!(answers.len(), 1, "nothing replayed: {answers:?}");
    assert_eq!((answers[0]["data"]["recovered"].as_bool(), answers[0]["data"]["seq"].as_u64()), (Some(false), Some(8)));
    // Seen 3: 4..8 are all kept.
    let answers = h.send_message("w2", &resume(3, &epoch)).await;
    assert_eq!(answers.len(), 2, "one frame, one answer: {answers:?}");
    let answers = unpacked(&answers);
    assert_eq!(answers.len(), 6, "{answers:?}");
    assert_eq!(answers[5]["data"]["recovered"], true);
    // Another stream's epoch.
    let answers = h.send_message("w2", &resume(7, "0123456789ab")).await;
    assert_eq!((answers.len(), answers[0]["data"]["recovered"].as_bool()), (1, Some(false)));
    assert_eq!(answers[0]["data"]["epoch"], epoch.as_str(), "the answer names the stream to restart from");
    // Older than the window's time: 6 minutes later nothing is kept.
    h.clock.advance(360_000);
    h.connected("w3", "ann", "lobby").await;
    let answers = h.send_message("w3", &resume(7, &epoch)).await;
    assert_eq!((answers.len(), answers[0]["data"]["recovered"].as_bool()), (1, Some(false)), "{answers:?}");
}

/// Sends happening while a client resumes: every number is delivered to it, replayed or live
/// (a number seen twice is dropped by the client), none missing.
#[tokio::test]
async fn a_client_resuming_during_concurrent_sends_sees_every_message() {
    let h = Harness::new(history_config("room-*=100/5m")).await;
    h.connected("c1", "ann", "lobby").await;
    for n in 1..=4 {
        progress(&h, "room-busy", n).await;
    }
    let sends = (5..=24).map(|n| {
        let h = &h;
        async move { progress(h, "room-busy", n).await.streams[0].seq }
    });
    let body = json!({"action":"subscribe","channel":"room-busy","since":0}).to_string();
    let (router, event) = (Router::builtin(), h.events.message("c1", &body));
    let resume = handlers::message(&h.app, &router, &event);
    let (seqs, resumed) = futures::join!(futures::future::join_all(sends), resume);
    assert_eq!(resumed.status_code, 200);
    let mut given = seqs;
    given.sort_unstable();
    assert_eq!(given, (5..=24).collect::<Vec<u64>>(), "distinct, gap-free numbers");
    let posts = unpacked(&h.server.posts_to("c1"));
    let seen: BTreeSet<u64> = posts.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seen, (1..=24).collect::<BTreeSet<u64>>(), "every message reached the resuming client");
    let reply = posts.iter().find(|m| m["type"] == "reply").unwrap();
    assert_eq!(reply["data"]["recovered"], true, "{reply}");
}

/// Sends `count` custom messages of about `bytes` each to `channel`.
async fn fill(h: &Harness, channel: &str, count: usize, bytes: usize) {
    let target = lambda_ws::Target::Channel(ChannelName::new(channel).unwrap());
    for n in 0..count {
        let message: lambda_ws::Outbound =
            serde_json::from_value(json!({"type":"note","n":n,"text":"x".repeat(bytes)})).unwrap();
        h.app.sender().send(&target, &message, &[]).await.unwrap();
    }
}

/// A replay costs what it posts: ten `subscribe {since: 0}` of a channel with 100 kept messages
/// deliver no more frames than the connection's message limit allows, and each replay packs its
/// messages into 32 KiB frames (one billed unit each) instead of a post per message.
#[tokio::test]
async fn replays_count_against_the_message_limit_and_are_packed_into_frames() {
    let limits = RateLimits { messages_per_connection: 20, ..base_config().rate_limits };
    let h = Harness::new(Config { rate_limits: limits, ..history_config("lobby=100/5m; room-*=100/5m") }).await;
    fill(&h, "lobby", 100, 2000).await;
    h.connected("greedy", "ann", "lobby").await;
    let mut frames = 0;
    let mut replies = 0;
    let mut refused = Vec::new();
    for n in 0..10 {
        let body = json!({"action":"subscribe","channel":"lobby","since":0,"ref":format!("s{n}")}).to_string();
        let posts = h.send_message("greedy", &body).await;
        frames += posts.iter().filter(|p| p["type"] == "replay" || p["type"] == "note").count();
        replies += posts.iter().filter(|p| p["type"] == "reply").count();
        refused.extend(posts.iter().filter(|p| p["code"] == "rate_limited").map(|p| p["ref"].clone()));
        if n == 0 {
            let messages = unpacked(&posts);
            let seqs: Vec<u64> = messages.iter().filter_map(|m| m["seq"].as_u64()).collect();
            assert_eq!(seqs, (1..=100).collect::<Vec<_>>(), "the whole window, in order, once");
            assert!(posts.len() <= 9, "about 200 KB in 32 KiB frames, not 100 posts: {}", posts.len());
            assert!(posts.iter().all(|p| p.to_string().len() <= 32 * 1024), "each frame one billed unit");
        }
    }
    assert!(frames + replies <= 20, "{frames} frames and {replies} replies within a limit of 20");
    assert!(replies >= 1 && !refused.is_empty(), "the first replays, later ones are refused: {refused:?}");
    assert!(refused.iter().all(|r| r.as_str().is_some_and(|r| r.starts_with('s'))), "each with its ref");
    // A minute later the connection may ask again.
    h.clock.advance(60_000);
    let plain = h.send_message("greedy", r#"{"action":"subscribe","channel":"lobby"}"#).await;
    let epoch = plain[0]["data"]["epoch"].as_str().unwrap().to_owned();
    let body = json!({"action":"subscribe","channel":"lobby","since":90,"epoch":epoch}).to_string();
    let posts = h.send_message("greedy", &body).await;
    assert_eq!(unpacked(&posts).len(), 11, "10 messages and the answer: {posts:?}");
}

/// An answer over 128 KiB never vanishes: `history` returns as many of the latest messages as fit
/// with `more`, and pages back with `before`; any other answer that cannot be sent becomes a
/// `too_large` error carrying the client's `ref`.
#[tokio::test]
async fn answers_always_fit_or_become_a_typed_error() {
    let h = Harness::new(history_config("room-*=100/5m")).await;
    h.connected("reader", "ann", "lobby").await;
    fill(&h, "room-big", 40, 4000).await;
    let mut seen = Vec::new();
    let mut before: Option<u64> = None;
    for page in 0.. {
        assert!(page < 5, "paging ends");
        let mut body = json!({"action":"history","channel":"room-big","ref":format!("h{page}")});
        if let Some(before) = before {
            body["before"] = json!(before);
        }
        let posts = h.send_message("reader", &body.to_string()).await;
        assert_eq!((posts.len(), posts[0]["type"].as_str()), (1, Some("reply")), "{:?}", posts[0]["code"]);
        assert!(posts[0].to_string().len() <= 128 * 1024, "fits one message");
        let data = &posts[0]["data"];
        let seqs: Vec<u64> = data["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert!(!seqs.is_empty());
        seen.splice(0..0, seqs.iter().copied());
        before = seqs.first().copied();
        if data["more"] == false {
            break;
        }
        assert_eq!(data["seq"], 40, "the stream's head on every page");
    }
    assert_eq!(seen, (1..=40).collect::<Vec<_>>(), "every kept message once, across pages");

    // A route whose answer is too large: the client hears of it, with its ref.
    #[derive(Debug)]
    struct Huge;
    #[lambda_ws::async_trait]
    impl lambda_ws::Route for Huge {
        async fn handle(
            &self,
            ctx: &lambda_ws::MessageContext<'_>,
            _: lambda_ws::Inbound,
        ) -> Result<Option<lambda_ws::Outbound>, lambda_ws::RouteError> {
            Ok(Some(ctx.reply(json!({ "blob": "x".repeat(200_000) }))))
        }
    }
    let router = Router::builtin().route("huge", Huge);
    let posts = h.send_message_with(&router, "reader", r#"{"action":"huge","ref":"big-1"}"#).await;
    assert_eq!((posts[0]["code"].as_str(), posts[0]["ref"].as_str()), (Some("too_large"), Some("big-1")), "{posts:?}");
}

/// `exclude` leaves connections out of a send's live posts; in a channel with history the
/// message is still in the channel's stream, the same for every member, so an excluded member
/// reads it with `history` and a resume replays it (exclude is not access control).
#[tokio::test]
async fn an_excluded_member_is_not_posted_to_but_the_stream_still_holds_the_message() {
    let h = Harness::new(history_config("room-*=100/5m")).await;
    h.connected("ex1", "ann", "room-x").await;
    h.connected("ex2", "bob", "room-x").await;
    let target = lambda_ws::Target::Channel(ChannelName::new("room-x").unwrap());
    let message: lambda_ws::Outbound = serde_json::from_value(json!({"type":"note","text":"hi"})).unwrap();
    let excluded = [lambda_ws::ConnectionId::new("ex2").unwrap()];
    h.server.clear();
    let report = h.app.sender().send(&target, &message, &excluded).await.unwrap();
    assert_eq!((report.delivered, report.excluded), (1, 1), "{report:?}");
    assert!(h.server.posts_to("ex2").is_empty(), "not posted live");
    assert_eq!(h.server.posts_to("ex1")[0]["seq"], 1);
    let read = h.send_message("ex2", r#"{"action":"history","channel":"room-x"}"#).await;
    assert_eq!(read[0]["data"]["messages"][0]["text"], "hi", "in the stream: {read:?}");
    let resumed = unpacked(&h.send_message("ex2", r#"{"action":"subscribe","channel":"room-x","since":0}"#).await);
    assert_eq!((resumed[0]["seq"].as_u64(), resumed[1]["data"]["recovered"].as_bool()), (Some(1), Some(true)));
}

/// What a route reads of a channel goes through the checks `subscribe` makes: a connection
/// whose token is bound to one channel cannot read another through an app's own route.
#[tokio::test]
async fn an_apps_route_reads_channels_only_through_the_checks() {
    #[derive(Debug)]
    struct Peek;
    #[lambda_ws::async_trait]
    impl lambda_ws::Route for Peek {
        async fn handle(
            &self,
            ctx: &lambda_ws::MessageContext<'_>,
            msg: lambda_ws::Inbound,
        ) -> Result<Option<lambda_ws::Outbound>, lambda_ws::RouteError> {
            let channel = ctx.channel_field(&msg, "channel")?;
            let history = ctx.channel_history(&channel, None, None).await?;
            let presence = ctx.channel_presence(&channel).await?;
            Ok(Some(ctx.reply(json!({ "history": history, "presence": presence }))))
        }
    }
    let config = Config {
        presence: lambda_ws::presence::PresenceRules::parse("room-*").unwrap(),
        ..history_config("room-*=10/5m")
    };
    let h = Harness::new(config).await;
    fill(&h, "room-secret", 1, 10).await;
    let token = h.token("ann", Some("room-mine")).await;
    assert_eq!(h.connect("bound9", Some(&token), None).await.0, 200);
    let router = Router::builtin().route("peek", Peek);
    let posts = h.send_message_with(&router, "bound9", r#"{"action":"peek","channel":"room-secret","ref":"p"}"#).await;
    assert_eq!((posts[0]["code"].as_str(), posts[0]["ref"].as_str()), (Some("forbidden"), Some("p")), "{posts:?}");
    let posts = h.send_message_with(&router, "bound9", r#"{"action":"peek","channel":"room-mine"}"#).await;
    assert_eq!(posts[0]["type"], "reply", "its own channel: {posts:?}");
    let id = lambda_ws::ConnectionId::new("bound9").unwrap();
    let session = h.app.sessions.get_session(&id, h.clock.now_secs()).await.unwrap().unwrap();
    assert!(!h.app.may_join(&session, &ChannelName::new("room-secret").unwrap()).await);
    assert!(h.app.may_join(&session, &ChannelName::new("room-mine").unwrap()).await);
}

/// A client's long value in a typed request is cut in the error it gets (and the log line).
#[tokio::test]
async fn a_long_value_in_a_typed_request_is_cut_in_its_error() {
    let h = Harness::new(history_config("lobby=10/5m")).await;
    h.connected("long1", "ann", "lobby").await;
    let body = json!({"action":"subscribe","channel":"lobby","since":"9".repeat(100_000),"ref":"l"}).to_string();
    let posts = h.send_message("long1", &body).await;
    assert_eq!((posts[0]["code"].as_str(), posts[0]["field"].as_str()), (Some("bad_request"), Some("since")));
    assert!(posts[0].to_string().len() < 400, "{} bytes", posts[0].to_string().len());
    let body = json!({"action":"subscribe","channel":"lobby","since":u64::MAX,"epoch":"x"}).to_string();
    let posts = h.send_message("long1", &body).await;
    assert_eq!(posts[0]["data"]["recovered"], false, "a number past the head is no position: {posts:?}");
}

// ---- presence -------------------------------------------------------------------------------------

/// Names every user's session (`name`, public) and tags it with a secret members must not see.
#[derive(Debug)]
struct Names;

#[lambda_ws::async_trait]
impl lambda_ws::hooks::ConnectHook for Names {
    async fn on_connect(
        &self,
        info: &lambda_ws::hooks::ConnectInfo<'_>,
    ) -> Result<lambda_ws::hooks::Metadata, lambda_ws::hooks::Refusal> {
        let name = info.identity.map(|i| i.user_id.to_uppercase()).unwrap_or_default();
        Ok(lambda_ws::hooks::Metadata::from([("name".to_owned(), name), ("secret".to_owned(), "s3".to_owned())]))
    }
}

async fn presence_harness(rules: &str) -> Harness {
    let config = Config {
        presence: lambda_ws::presence::PresenceRules::parse(rules).unwrap(),
        presence_metadata: vec!["name".to_owned()],
        require_token: false,
        session_ttl: std::time::Duration::from_secs(600),
        ..base_config()
    };
    let mut h = Harness::new(config).await;
    h.app = h.app.clone().with_connect_hook(Arc::new(Names));
    h
}

/// The presence events posted to `id` since the last clear, as `(type, user)`.
fn presence_events(h: &Harness, id: &str) -> Vec<(String, String)> {
    h.server
        .posts_to(id)
        .iter()
        .filter(|m| m["type"] == "member_joined" || m["type"] == "member_left")
        .map(|m| {
            let user = m["member"]["user_id"].as_str().or(m["user_id"].as_str()).unwrap_or_default();
            (m["type"].as_str().unwrap_or_default().to_owned(), user.to_owned())
        })
        .collect()
}

fn event(kind: &str, user: &str) -> (String, String) {
    (kind.to_owned(), user.to_owned())
}

/// A `subscribe` racing the connection's `$disconnect` leaves nothing behind: no membership item
/// and no presence entry listing a user who is gone (before, a join written after the
/// disconnect looked outlived it for the session's whole lifetime). Forty races on DynamoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscribe_racing_its_disconnect_leaves_no_member_behind() {
    let h = presence_harness("room-*").await;
    let router = Router::builtin();
    for round in 0..40 {
        let id = format!("race{round}");
        h.connected(&id, &format!("u{round}"), "lobby").await;
        let room = format!("room-r{round}");
        let body = json!({"action":"subscribe","channel":room}).to_string();
        let (message, disconnect) = (h.events.message(&id, &body), h.events.disconnect(&id));
        let subscribe = handlers::message(&h.app, &router, &message);
        // The disconnect starts a little later each round, so the races sweep the subscribe's
        // steps (a session read, the channel set, the membership, the presence entry).
        let gone = async {
            tokio::time::sleep(std::time::Duration::from_micros(1000 * round)).await;
            handlers::disconnect(&h.app, &disconnect).await
        };
        let (_, gone) = futures::join!(subscribe, gone);
        assert_eq!(gone.status_code, 200);
        let left: Vec<_> = h.keys().await.into_iter().filter(|(pk, _)| *pk == format!("conn#{id}")).collect();
        assert!(left.is_empty(), "round {round}: {left:?} outlived the connection");
        let present = h.app.presence.present(&ChannelName::new(&room).unwrap(), 10, h.clock.now_secs()).await;
        assert_eq!(present.unwrap().users, 0, "round {round}: a gone user is listed in {room}");
    }
}

#[tokio::test]
async fn presence_follows_each_user_through_connect_subscribe_unsubscribe_disconnect_and_a_410() {
    let h = presence_harness("room-*").await;
    h.connected("p1", "ann", "room-1").await;
    h.server.clear();
    h.connected("p2", "bob", "room-1").await;
    let joined = h.server.posts_to("p1");
    assert_eq!(joined.len(), 1, "{joined:?}");
    assert_eq!(
        joined[0],
        json!({"type":"member_joined","channel":"room-1","member":{"user_id":"bob","connections":1,"info":{"name":"BOB"}}}),
        "the public part of the metadata only"
    );
    assert!(h.server.posts_to("p2").is_empty(), "the joiner is not told of itself");
    // Bob's second tab, by subscribe, and an anonymous connection: counted, not announced.
    h.connected("p3", "bob", "lobby").await;
    h.server.clear();
    h.send_message("p3", r#"{"action":"subscribe","channel":"room-1"}"#).await;
    assert_eq!(h.connect("p4", None, Some("room-1")).await.0, 200);
    assert!(presence_events(&h, "p1").is_empty(), "not a new user");
    let answer = h.send_message("p1", r#"{"action":"presence","channel":"room-1","ref":"w"}"#).await;
    assert_eq!(
        answer[0]["data"],
        json!({"channel":"room-1","users":2,"connections":4,"anonymous":1,"members":[
            {"user_id":"ann","connections":1,"info":{"name":"ANN"}},
            {"user_id":"bob","connections":2,"info":{"name":"BOB"}},
        ]})
    );
    // Bob's tabs leave one way and another; only the last is announced.
    h.server.clear();
    h.send_message("p3", r#"{"action":"unsubscribe","channel":"room-1"}"#).await;
    assert!(presence_events(&h, "p1").is_empty(), "bob still has p2");
    assert_eq!(handlers::disconnect(&h.app, &h.events.disconnect("p2")).await.status_code, 200);
    assert_eq!(presence_events(&h, "p1"), vec![event("member_left", "bob")]);
    // A connection found gone by a send leaves too.
    h.connected("p5", "cat", "room-1").await;
    h.server.set_gone("p5");
    h.server.clear();
    progress(&h, "room-1", 50).await;
    assert_eq!(presence_events(&h, "p1"), vec![event("member_left", "cat")], "{:?}", h.server.posts_to("p1"));
    let answer = h.send_message("p1", r#"{"action":"presence","channel":"room-1"}"#).await;
    assert_eq!((answer[0]["data"]["users"].as_u64(), answer[0]["data"]["connections"].as_u64()), (Some(1), Some(2)));
    // No presence, and not allowed: typed errors.
    let none = h.send_message("p1", r#"{"action":"presence","channel":"lobby"}"#).await;
    assert_eq!((none[0]["code"].as_str(), none[0]["field"].as_str()), (Some("bad_request"), Some("channel")));
    // Everyone gone: nothing of the channel's presence is left in the table.
    for id in ["p1", "p3", "p4"] {
        assert_eq!(handlers::disconnect(&h.app, &h.events.disconnect(id)).await.status_code, 200);
    }
    let left: Vec<_> = h.keys().await.into_iter().filter(|(pk, _)| pk.starts_with("pres#")).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn clean_up_announces_the_users_it_removes_and_large_channels_answer_counts_only() {
    let h = presence_harness("room-*=1").await;
    h.connected("q1", "dan", "room-2").await;
    h.clock.advance(300_000);
    h.connected("q2", "eve", "room-2").await;
    let answer = h.send_message("q2", r#"{"action":"presence","channel":"room-2"}"#).await;
    assert_eq!(
        answer[0]["data"],
        json!({"channel":"room-2","users":2,"connections":2,"anonymous":0}),
        "above 1: counts"
    );
    // Dan's session (10 minutes) expires without a $disconnect; eve's has 5 minutes left.
    h.clock.advance(360_000);
    h.server.clear();
    let report = handlers::cleanup(&h.app).await.unwrap();
    assert_eq!(report.removed, 1, "{report:?}");
    assert_eq!(presence_events(&h, "q2"), vec![event("member_left", "dan")]);
    let answer = h.send_message("q2", r#"{"action":"presence","channel":"room-2"}"#).await;
    assert_eq!(answer[0]["data"]["members"], json!([{"user_id":"eve","connections":1,"info":{"name":"EVE"}}]));
}

/// Backend code reads what browsers read: the sender answers history and presence queries.
#[tokio::test]
async fn the_sender_answers_history_and_presence_queries() {
    let config = Config {
        history: lambda_ws::history::HistoryRules::parse("room-*=3/5m").unwrap(),
        presence: lambda_ws::presence::PresenceRules::parse("room-*").unwrap(),
        ..base_config()
    };
    let h = Harness::new(config).await;
    h.connected("s1", "ann", "room-9").await;
    for n in 1..=4 {
        progress(&h, "room-9", n * 10).await;
    }
    let history = handlers::send(&h.app, json!({"version":1,"query":{"history":{"channel":"room-9","limit":2}}})).await;
    assert_eq!(history["seq"], 4, "{history}");
    let percents: Vec<u64> =
        history["messages"].as_array().unwrap().iter().map(|m| m["percent"].as_u64().unwrap()).collect();
    assert_eq!(percents, vec![30, 40], "the latest two, oldest first");
    assert_eq!(history["messages"][1]["seq"], 4);
    let presence = handlers::send(&h.app, json!({"query":{"presence":{"channel":"room-9"}}})).await;
    assert_eq!(
        presence,
        json!({"channel":"room-9","users":1,"connections":1,"anonymous":0,"members":[{"user_id":"ann","connections":1,"info":{}}]})
    );
    let none = handlers::send(&h.app, json!({"query":{"presence":{"channel":"lobby"}}})).await;
    assert_eq!(none["error"]["code"], "bad_request", "{none}");
    let bad = handlers::send(&h.app, json!({"query":{"history":{"channel":"not a channel"}}})).await;
    assert_eq!(bad["error"]["code"], "bad_request", "{bad}");
    let batch = handlers::send(
        &h.app,
        json!([{"query":{"presence":{"channel":"room-9"}}},
        {"target":{"channel":"room-9"},"message":{"type":"system","level":"info","message":"m"}}]),
    )
    .await;
    assert_eq!((batch[0]["users"].as_u64(), batch[1]["delivered"].as_u64()), (Some(1), Some(1)), "{batch}");
}
