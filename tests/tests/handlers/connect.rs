//! `$connect`: tokens, origins, channels, limits, the session written.

use super::*;

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
pub(crate) struct OwnRoomOnly;

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
