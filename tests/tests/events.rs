//! Every sample event in `events/` is fed, as written, to the handler that receives it in Lambda,
//! so the samples cannot drift from what the handlers accept. Only `domainName` is pointed at a
//! local Management API server, `connectedAt` is set to now, and the connect token is filled in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
use lambda_ws::config::RateLimits;
use lambda_ws::handlers::{self, TokenRequest};
use lambda_ws::policy::OriginPolicy;
use lambda_ws::{App, Config, Identity};
use lambda_ws_e2e::{MgmtServer, events_dir, fresh_dynamodb_store, management_api, sample_event};
use lambda_ws_functions::default_router;
use serde_json::{Value, json};

const CONNECTION: &str = "CZ1WbfE6joECJ5A=";

fn ws_event(name: &str, server: &MgmtServer, token: Option<&str>) -> ApiGatewayWebsocketProxyRequest {
    let mut event = sample_event(name);
    event["requestContext"]["domainName"] = json!(server.domain());
    // Sessions live connectedAt + 2 h 10 min: a sample's fixed date would expire them.
    event["requestContext"]["connectedAt"] = json!(lambda_ws::clock::unix_now_millis());
    if let Some(token) = token {
        event["queryStringParameters"]["ws_token"] = json!(token);
        event["multiValueQueryStringParameters"]["ws_token"] = json!([token]);
    }
    serde_json::from_value(event).unwrap()
}

#[tokio::test]
async fn every_sample_event_runs_through_its_handler() {
    let server = MgmtServer::start().await;
    let config = Config {
        allowed_origins: OriginPolicy::parse("https://app.example.com").unwrap(),
        rate_limits: RateLimits::off(),
        ..Config::default()
    };
    let app = App::new(config, fresh_dynamodb_store().await, management_api());
    let mut seen = Vec::new();

    // $connect: refused without a token, from another origin, and with the placeholder token.
    for (name, status) in [("connect-no-token.json", 401), ("connect-bad-origin.json", 403), ("connect.json", 401)] {
        assert_eq!(handlers::connect(&app, &ws_event(name, &server, None)).await.status_code, status, "{name}");
        seen.push(name);
    }
    let request = TokenRequest {
        identity: Some(Identity::user("5f8e2c1a-7b3d-4e9f-a0c6-1d2e3f4a5b6c")),
        origin: Some("https://app.example.com".into()),
        csrf_header: true,
        channel: None,
    };
    let token = handlers::issue_token(&app, request).await.body["token"].as_str().unwrap().to_owned();
    assert_eq!(handlers::connect(&app, &ws_event("connect.json", &server, Some(&token))).await.status_code, 200);

    // Messages, each on the route API Gateway would pick.
    let router = default_router();
    let cases: [(&str, Value); 6] = [
        ("message-ping.json", json!({"type":"pong","connection_id":CONNECTION,"ref":"p1"})),
        ("message-subscribe.json", json!({"type":"reply","action":"subscribe","ref":"s1","data":{"channel":"news"}})),
        (
            "message-unsubscribe.json",
            json!({"type":"reply","action":"unsubscribe","ref":"u1","data":{"channel":"news","was_member":true}}),
        ),
        (
            "message-chat.json",
            json!({"type":"chat_message","username":"5f8e2c1a-7b3d-4e9f-a0c6-1d2e3f4a5b6c","message":"hello, lobby","channel":"lobby"}),
        ),
        ("message-unknown-action.json", json!("unknown_action")),
        ("message-malformed.json", json!("bad_json")),
    ];
    for (name, expected) in cases {
        server.clear();
        let response = handlers::message(&app, &router, &ws_event(name, &server, None)).await;
        assert_eq!(response.status_code, 200, "{name}");
        let first = server.posts_to(CONNECTION).into_iter().next().unwrap_or(Value::Null);
        match expected {
            Value::String(code) => assert_eq!(first["code"], json!(code), "{name}: {first}"),
            message => assert_eq!(first, message, "{name}"),
        }
        seen.push(name);
    }

    // The sender, once per target.
    for name in [
        "send-connection.json",
        "send-connections.json",
        "send-user.json",
        "send-channel.json",
        "send-channels.json",
        "send-all.json",
        "send-api.json",
        "send-filter.json",
    ] {
        let report = handlers::send(&app, sample_event(name)).await;
        assert!(report["error"].is_null() && report["recipients"].is_u64(), "{name}: {report}");
        seen.push(name);
    }
    let user = handlers::send(&app, sample_event("send-user.json")).await;
    assert_eq!(user["delivered"], 1, "the connected user is reached");
    let channel = handlers::send(&app, sample_event("send-channel.json")).await;
    assert_eq!((channel["delivered"].as_u64(), channel["excluded"].as_u64()), (Some(0), Some(1)));
    let api = handlers::send(&app, sample_event("send-api.json")).await;
    assert_eq!(api["delivered"], 1, "the sample's API is the connection's: {api}");
    let batch = handlers::send(&app, sample_event("send-batch.json")).await;
    assert_eq!((batch[0]["delivered"].as_u64(), batch[1]["delivered"].as_u64()), (Some(1), Some(1)), "{batch}");
    let sqs = handlers::send(&app, sample_event("send-sqs.json")).await;
    assert_eq!(sqs, json!({"batchItemFailures": []}));
    assert_eq!(server.posts_to(CONNECTION).last().map(|m| m["message"].clone()), Some(json!("queued hello")));
    seen.extend(["send-batch.json", "send-sqs.json"]);
    let bad = handlers::send(&app, sample_event("send-bad-target.json")).await;
    assert_eq!(bad["error"]["code"], "bad_request");
    seen.push("send-bad-target.json");

    // $disconnect, then the scheduled clean-up event.
    assert_eq!(handlers::disconnect(&app, &ws_event("disconnect.json", &server, None)).await.status_code, 200);
    let gone = handlers::send(&app, sample_event("send-connection.json")).await;
    assert_eq!(gone["unknown"], json!([CONNECTION]));
    let _: CloudWatchEvent = serde_json::from_value(sample_event("cleanup-scheduled.json")).unwrap();
    assert_eq!(handlers::cleanup(&app).await.unwrap().removed, 0);
    seen.extend(["message-chat.json", "disconnect.json", "cleanup-scheduled.json", "issue-token.json"]);

    // No sample goes untested (issue-token.json is read by the functions crate's tests).
    let mut files: Vec<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    for file in files {
        assert!(seen.contains(&file.as_str()), "{file} is not exercised");
    }
}

#[tokio::test]
async fn the_test_harness_runs_the_sample_events() {
    // The harness users get with the `testing` feature, fed the same samples.
    let config =
        Config { allowed_origins: OriginPolicy::parse("https://app.example.com").unwrap(), ..Config::default() };
    let h = lambda_ws::testing::TestHarness::new(config).with_router(default_router());
    let token = h.token(Identity::user("ann"), None).await;
    let mut connect = sample_event("connect.json");
    connect["queryStringParameters"]["ws_token"] = json!(token);
    connect["requestContext"]["connectedAt"] = json!(lambda_ws::clock::unix_now_millis());
    assert_eq!(h.event(connect).await.status_code, 200);
    assert_eq!(h.event(sample_event("connect-bad-origin.json")).await.status_code, 403);
    let me = lambda_ws::testing::TestConnection { id: lambda_ws::ConnectionId::new(CONNECTION).unwrap() };
    assert_eq!(h.event(sample_event("message-ping.json")).await.status_code, 200);
    assert_eq!(h.take_received(&me), vec![json!({"type":"pong","connection_id":CONNECTION,"ref":"p1"})]);
    h.event(sample_event("message-unknown-action.json")).await;
    assert_eq!(h.take_received(&me)[0]["code"], "unknown_action");
    let report = h.deliver(sample_event("send-channel.json")).await;
    assert_eq!((report["delivered"].as_u64(), report["excluded"].as_u64()), (Some(0), Some(1)), "{report}");
    let report = h.deliver(sample_event("send-user.json")).await;
    assert_eq!(report["delivered"], 0, "another user: {report}");
    let report = h.deliver(sample_event("send-connection.json")).await;
    assert_eq!(report["delivered"], 1, "{report}");
    assert_eq!(h.take_received(&me).len(), 1);
    assert_eq!(h.event(sample_event("disconnect.json")).await.status_code, 200);
    assert_eq!(h.deliver(sample_event("send-all.json")).await["recipients"], 0);
}
