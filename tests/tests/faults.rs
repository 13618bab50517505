//! Fault injection: the DynamoDB engine stops in the middle of a run and comes back. Every
//! handler answers with a clear error while it is down (no panic, nothing half-written that
//! matters), and the next call after it returns succeeds with the data it had.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use lambda_ws::config::RateLimits;
use lambda_ws::handlers::{self, TokenRequest};
use lambda_ws::policy::OriginPolicy;
use lambda_ws::{App, Config, DynamoDbStore, Identity, Router, Target};
use lambda_ws_e2e::{Events, MgmtServer, OwnDynamoDb, management_api};
use serde_json::{Value, json};

const ORIGIN: &str = "https://app.example.com";

fn token_request() -> TokenRequest {
    TokenRequest {
        identity: Some(Identity::user("ann")),
        origin: Some(ORIGIN.into()),
        csrf_header: true,
        channel: None,
    }
}

async fn connect(app: &App, events: &Events, id: &str, token: &str) -> (i64, String) {
    let event = events.connect(id, &[("ws_token", Some(token)), ("channel", Some("room"))], Some(ORIGIN));
    let response = handlers::connect(app, &event).await;
    let body = match response.body {
        Some(aws_lambda_events::encodings::Body::Text(text)) => text,
        _ => String::new(),
    };
    (response.status_code, body)
}

async fn ping(app: &App, events: &Events, server: &MgmtServer, id: &str) -> Value {
    server.clear();
    let response = handlers::message(app, &Router::builtin(), &events.message(id, r#"{"action":"ping"}"#)).await;
    assert_eq!(response.status_code, 200);
    server.posts_to(id).pop().unwrap_or_default()
}

fn room_toast(text: &str) -> Value {
    json!({"target":{"channel":"room"},"message":{"type":"toast","level":"info","message":text}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_survive_the_dynamodb_engine_stopping_and_restarting() {
    let mut engine = OwnDynamoDb::start();
    let store = Arc::new(DynamoDbStore::new(engine.client(), "faults"));
    store.create_table().await.unwrap();
    let server = MgmtServer::start().await;
    let events = Events::for_server(&server);
    let config = Config {
        allowed_origins: OriginPolicy::parse(ORIGIN).unwrap(),
        rate_limits: RateLimits::default(),
        ..Config::default()
    };
    let app = App::new(config, store.clone(), management_api());

    let first = handlers::issue_token(&app, token_request()).await.body["token"].as_str().unwrap().to_owned();
    assert_eq!(connect(&app, &events, "up1", &first).await.0, 200);
    let spare = handlers::issue_token(&app, token_request()).await.body["token"].as_str().unwrap().to_owned();
    assert_eq!(ping(&app, &events, &server, "up1").await["type"], "pong");

    engine.stop();
    let refused = handlers::issue_token(&app, token_request()).await;
    assert_eq!((refused.status, &refused.body["error"]["code"]), (500, &json!("internal")), "{}", refused.body);
    assert_eq!(
        connect(&app, &events, "down1", &spare).await,
        (500, r#"{"message":"temporarily unavailable"}"#.to_owned())
    );
    let answer = ping(&app, &events, &server, "up1").await;
    assert_eq!((answer["type"].as_str(), answer["code"].as_str()), (Some("error"), Some("internal")), "{answer}");
    let sent = handlers::send(&app, room_toast("while down")).await;
    assert!(sent["incomplete"].is_string() && sent["delivered"] == 0, "a report that says why: {sent}");
    let disconnect = handlers::disconnect(&app, &events.disconnect("up1")).await;
    assert_eq!(disconnect.status_code, 500, "API Gateway logs it; the connection is closing anyway");
    assert!(handlers::cleanup(&app).await.is_err());

    engine.resume();
    assert_eq!(connect(&app, &events, "back1", &spare).await.0, 200, "the token the outage refused still works");
    assert_eq!(ping(&app, &events, &server, "up1").await["type"], "pong", "sessions survived the restart");
    server.clear();
    let report = handlers::send(&app, room_toast("back")).await;
    assert_eq!((report["recipients"].as_u64(), report["delivered"].as_u64()), (Some(2), Some(2)), "{report}");
    let custom = lambda_ws::Outbound::custom(json!({"type":"x"}).as_object().unwrap().clone()).unwrap();
    let direct = app.sender().send(&Target::All, &custom, &[]).await.unwrap();
    assert_eq!((direct.delivered, direct.incomplete), (2, None));
    let issued = handlers::issue_token(&app, token_request()).await;
    assert_eq!(issued.status, 200);
}
