//! The application's hooks (connect, disconnect, channel checks) and closing a user's sessions.

use super::*;

// ---- application hooks --------------------------------------------------------------------------

/// Tags a session with the `plan` its page connected for, and refuses `plan=banned` with 402.
#[derive(Debug)]
pub(crate) struct PlanHook;

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
pub(crate) struct Endings(std::sync::Mutex<Vec<lambda_ws::hooks::Ended>>);

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
