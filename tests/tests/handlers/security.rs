//! The token issuer, and the security cases: bound tokens, forged events, per-user connections, the channel limit, log text.

use super::*;

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
pub(crate) async fn h_endpoint() -> String {
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
