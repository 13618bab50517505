//! The local gateway with real clients: tokio-tungstenite WebSockets, the AWS SDK's Management
//! API and Lambda clients pointed at it. Every case runs twice: on the embedded memory store and on
//! the DynamoDB engine the test command starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures::SinkExt;
use lambda_ws::Config;
use lambda_ws::config::RateLimits;
use lambda_ws::policy::OriginPolicy;
use lambda_ws_cli::repository;
use lambda_ws_local::{Gateway, GatewayOptions, Handler, RouteTable, StoreChoice};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use lambda_ws_e2e::ws::{ORIGIN, Ws, close_code, connect, connection_id, http, next_json, send, token, try_connect};

fn options(store: StoreChoice) -> GatewayOptions {
    let config = Config {
        allowed_origins: OriginPolicy::parse(ORIGIN).unwrap(),
        rate_limits: RateLimits::off(),
        ..Config::default()
    };
    GatewayOptions { config, store, ..repository::gateway_options() }
}

async fn start(store: StoreChoice) -> Gateway {
    start_with(options(store)).await
}

async fn start_with(options: GatewayOptions) -> Gateway {
    Gateway::start(SocketAddr::from(([127, 0, 0, 1], 0)), options).await.unwrap()
}

/// A raw `GET` with this `Host` header: the whole answer as text.
async fn raw_get(gw: &Gateway, host: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(gw.addr()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    raw
}

fn management(gw: &Gateway) -> aws_sdk_apigatewaymanagement::Client {
    let conf = aws_sdk_apigatewaymanagement::config::Builder::from(&lambda_ws_e2e::local_aws_config())
        .endpoint_url(gw.management_endpoint())
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(conf)
}

fn lambda(gw: &Gateway) -> aws_sdk_lambda::Client {
    let conf =
        aws_sdk_lambda::config::Builder::from(&lambda_ws_e2e::local_aws_config()).endpoint_url(gw.http_url()).build();
    aws_sdk_lambda::Client::from_conf(conf)
}

async fn invoke_sender(gw: &Gateway, request: Value) -> Value {
    let out = lambda(gw)
        .invoke()
        .function_name("sender")
        .payload(aws_sdk_lambda::primitives::Blob::new(request.to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status_code(), 200);
    assert!(out.function_error().is_none());
    serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap()
}

// ---- the cases, each run on both stores ----------------------------------------------------------

async fn chat_between_two_clients(store: StoreChoice) {
    let gw = start(store).await;
    let mut ann = connect(&gw, "ann", "lobby").await;
    let mut bob = connect(&gw, "bob", "lobby").await;
    let mut cat = connect(&gw, "cat", "other").await;
    send(&mut ann, json!({"action":"chat","message":"hello bob"})).await;
    let expected = json!({"type":"chat_message","username":"ann","message":"hello bob","channel":"lobby"});
    assert_eq!(next_json(&mut bob).await, expected);
    assert_eq!(next_json(&mut ann).await, expected);
    send(&mut cat, json!({"action":"ping","ref":"c"})).await;
    assert_eq!(next_json(&mut cat).await["type"], "pong", "cat got no chat line before its pong");
    gw.shutdown().await;
}

async fn sender_through_the_lambda_sdk(store: StoreChoice) {
    let gw = start(store).await;
    let mut ann1 = connect(&gw, "ann", "lobby").await;
    let mut ann2 = connect(&gw, "ann", "room").await;
    let mut bob = connect(&gw, "bob", "room").await;
    let toast = json!({"type":"toast","level":"info","message":"to the room"});
    let report = invoke_sender(&gw, json!({"target":{"channel":"room"},"message":toast})).await;
    assert_eq!((report["recipients"].as_u64(), report["delivered"].as_u64()), (Some(2), Some(2)), "{report}");
    assert_eq!(next_json(&mut ann2).await, toast);
    assert_eq!(next_json(&mut bob).await, toast);
    let progress = json!({"type":"task_progress","task_id":"t","percent":100,"done":true});
    let report = invoke_sender(&gw, json!({"target":{"user":"ann"},"message":progress})).await;
    assert_eq!(report["delivered"], 2);
    assert_eq!(next_json(&mut ann1).await, progress);
    assert_eq!(next_json(&mut ann2).await, progress);
    let system = json!({"type":"system","level":"warning","message":"everyone"});
    let report = invoke_sender(&gw, json!({"target":"all","message":system})).await;
    assert_eq!(report["delivered"], 3);
    for ws in [&mut ann1, &mut ann2, &mut bob] {
        assert_eq!(next_json(ws).await, system);
    }
    let bad = invoke_sender(&gw, json!({"target":{"channel":"no spaces"},"message":system})).await;
    assert_eq!(bad["error"]["code"], "bad_request");
    let unknown = lambda(&gw).invoke().function_name("nope").send().await.unwrap_err();
    assert_eq!(unknown.as_service_error().map(|e| e.is_resource_not_found_exception()), Some(true));
    let queued = lambda(&gw)
        .invoke()
        .function_name("arn:aws:lambda:us-east-1:123456789012:function:sender")
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_sdk_lambda::primitives::Blob::new(json!({"target":{"user":"bob"},"message":system}).to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status_code(), 202);
    assert_eq!(next_json(&mut bob).await, system, "async invocations run too");

    // The typed client (feature `invoke-client`) over the same Invoke API.
    let client = lambda_ws::client::SenderClient::new(lambda(&gw), "sender");
    let note =
        lambda_ws::Outbound::System(lambda_ws::protocol::SystemMessage::new(lambda_ws::protocol::Level::Info, "typed"));
    let room = lambda_ws::Target::Channel(lambda_ws::ChannelName::new("room").unwrap());
    let request = lambda_ws::SendRequest::new(room, note);
    let report = client.send(&request).await.unwrap();
    assert_eq!((report.recipients, report.delivered), (2, 2));
    assert_eq!(next_json(&mut bob).await["message"], "typed");
    assert_eq!(next_json(&mut ann2).await["message"], "typed");
    client.send_async(&request).await.unwrap();
    assert_eq!(next_json(&mut bob).await["message"], "typed", "the Event invocation ran");
    let oversize = lambda_ws::Outbound::System(lambda_ws::protocol::SystemMessage::new(
        lambda_ws::protocol::Level::Info,
        "x".repeat(130 * 1024),
    ));
    let refused = client.send(&lambda_ws::SendRequest::new(lambda_ws::Target::All, oversize)).await.unwrap_err();
    assert!(
        matches!(&refused, lambda_ws::client::ClientError::Refused { code, .. } if *code == lambda_ws::ErrorCode::TooLarge),
        "{refused}"
    );
    let missing = lambda_ws::client::SenderClient::new(lambda(&gw), "nope").send(&request).await.unwrap_err();
    assert!(matches!(missing, lambda_ws::client::ClientError::Invoke(_)), "{missing}");
    gw.shutdown().await;
}

async fn management_api_through_the_sdk(store: StoreChoice) {
    let gw = start(store).await;
    let mut ws = connect(&gw, "ann", "lobby").await;
    let id = connection_id(&mut ws).await;
    let api = management(&gw);
    api.post_to_connection().connection_id(&id).data(Blob::new(r#"{"type":"x","n":1}"#)).send().await.unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type":"x","n":1}));
    let info = api.get_connection().connection_id(&id).send().await.unwrap();
    let identity = info.identity().unwrap();
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));
    assert_eq!(identity.user_agent(), Some("gateway-test/1"));
    let connected = info.connected_at().unwrap().to_millis().unwrap();
    let active = info.last_active_at().unwrap().to_millis().unwrap();
    assert!(connected > 1_700_000_000_000 && active >= connected, "{connected} {active}");
    let big = "x".repeat(128 * 1024 + 1);
    let too_large = api.post_to_connection().connection_id(&id).data(Blob::new(big)).send().await.unwrap_err();
    assert_eq!(too_large.as_service_error().map(|e| e.is_payload_too_large_exception()), Some(true));
    api.delete_connection().connection_id(&id).send().await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1000, "DELETE closes the client");
    let gone = api.post_to_connection().connection_id(&id).data(Blob::new("{}")).send().await.unwrap_err();
    assert_eq!(gone.as_service_error().map(|e| e.is_gone_exception()), Some(true));
    let gone = api.get_connection().connection_id(&id).send().await.unwrap_err();
    assert_eq!(gone.as_service_error().map(|e| e.is_gone_exception()), Some(true));
    // $disconnect ran: the session is gone from the store.
    for _ in 0..50 {
        let report = invoke_sender(&gw, json!({"target":{"connection":id},"message":{"type":"x"}})).await;
        if report["unknown"] == json!([id]) {
            gw.shutdown().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("$disconnect did not remove the session");
}

async fn connect_refusals(store: StoreChoice) {
    let gw = start(store).await;
    assert_eq!(try_connect(&gw, "channel=lobby", Some(ORIGIN)).await.err(), Some(401), "no token");
    assert_eq!(try_connect(&gw, "ws_token=forged", Some(ORIGIN)).await.err(), Some(401), "bad token");
    let t = token(&gw, "ann").await;
    assert_eq!(try_connect(&gw, &format!("ws_token={t}&channel=no.dots"), Some(ORIGIN)).await.err(), Some(400));
    assert_eq!(try_connect(&gw, &format!("ws_token={t}"), Some("http://evil.localhost")).await.err(), Some(403));
    assert_eq!(try_connect(&gw, &format!("ws_token={t}"), None).await.err(), Some(403), "no Origin");
    assert!(try_connect(&gw, &format!("ws_token={t}"), Some(ORIGIN)).await.is_ok(), "the refusals did not spend it");
    assert_eq!(try_connect(&gw, &format!("ws_token={t}"), Some(ORIGIN)).await.err(), Some(401), "replayed");
    let (status, body) = http(&gw, "POST", "/ws-token", &[("origin", ORIGIN)], "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "CSRF header required");
    gw.shutdown().await;
}

async fn oversize_frame_closes_1009(store: StoreChoice) {
    let gw = start(store).await;
    let mut ws = connect(&gw, "ann", "lobby").await;
    let big = json!({"action":"chat","message":"x".repeat(33 * 1024)});
    let _ = ws.send(Message::text(big.to_string())).await;
    assert_eq!(close_code(&mut ws).await, 1009);
    let mut other = connect(&gw, "bob", "lobby").await;
    assert_eq!(connection_id(&mut other).await.len(), 16, "the gateway still serves others");
    gw.shutdown().await;
}

async fn idle_connections_are_closed(store: StoreChoice) {
    let gw = start_with(GatewayOptions { idle_timeout: Duration::from_millis(400), ..options(store) }).await;
    let mut idle = connect(&gw, "ann", "lobby").await;
    let mut busy = connect(&gw, "bob", "lobby").await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        send(&mut busy, json!({"action":"ping"})).await;
        assert_eq!(next_json(&mut busy).await["type"], "pong");
    }
    assert_eq!(close_code(&mut idle).await, 1001, "idle for 400 ms");
    assert_eq!(gw.connection_count(), 1, "activity kept the other open");
    gw.shutdown().await;
}

async fn unmatched_routes_without_default_get_forbidden(store: StoreChoice) {
    let mut routes = repository::routes(true);
    routes.remove("$default");
    let gw = start_with(GatewayOptions { routes, ..options(store) }).await;
    let mut ws = connect(&gw, "ann", "lobby").await;
    send(&mut ws, json!({"action":"nothing-here"})).await;
    let frame = next_json(&mut ws).await;
    assert_eq!(frame["message"], "Forbidden");
    assert!(frame["connectionId"].is_string() && frame["requestId"].is_string());
    ws.send(Message::text("not json")).await.unwrap();
    assert_eq!(next_json(&mut ws).await["message"], "Forbidden");
    gw.shutdown().await;
}

async fn typed_errors_in_a_session(store: StoreChoice) {
    let gw = start(store).await;
    let mut ws = connect(&gw, "ann", "lobby").await;
    ws.send(Message::text("{broken")).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "bad_json");
    send(&mut ws, json!({"action":"fly","ref":"f1"})).await;
    let error = next_json(&mut ws).await;
    assert_eq!((error["code"].as_str(), error["ref"].as_str()), (Some("unknown_action"), Some("f1")));
    send(&mut ws, json!({"action":"echo","x":[1,2],"ref":"e"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type":"echo","x":[1,2],"ref":"e"}));
    gw.shutdown().await;
}

/// The reference documents' server-side example messages, verbatim, with the target each uses.
fn seed_messages() -> Vec<(String, Value)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/seed-messages.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let messages = fixture["messages"].as_array().unwrap();
    messages.iter().map(|m| (m["target"].as_str().unwrap().to_owned(), m["message"].clone())).collect()
}

async fn seed_messages_arrive_as_sent(store: StoreChoice) {
    let gw = start(store).await;
    let mut tab1 = connect(&gw, "alice", "general").await;
    let mut tab2 = connect(&gw, "alice", "general").await;
    let mut bob = connect(&gw, "bob", "general").await;
    let tab1_id = connection_id(&mut tab1).await;
    let cases = seed_messages();
    assert!(cases.len() >= 20, "the fixture lists the seeds' messages");
    for (target, message) in &cases {
        let (target_json, receivers): (Value, Vec<&mut Ws>) = match target.as_str() {
            "all" => (json!("all"), vec![&mut tab1, &mut tab2, &mut bob]),
            "channel" => (json!({"channel": "general"}), vec![&mut tab1, &mut tab2, &mut bob]),
            "user" => (json!({"user": "alice"}), vec![&mut tab1, &mut tab2]),
            "connection" => (json!({"connection": tab1_id}), vec![&mut tab1]),
            other => panic!("unknown target {other}"),
        };
        let expected = receivers.len() as u64;
        let report = invoke_sender(&gw, json!({"target": target_json, "message": message})).await;
        assert_eq!(report["delivered"].as_u64(), Some(expected), "{message}: {report}");
        for ws in receivers {
            assert_eq!(&next_json(ws).await, message, "arrives with the fields and values it was sent with");
        }
    }
    for ws in [&mut tab1, &mut tab2, &mut bob] {
        send(ws, json!({"action":"ping","ref":"end"})).await;
        assert_eq!(next_json(ws).await["type"], "pong", "nobody got a message meant for others");
    }
    gw.shutdown().await;
}

async fn malformed_builtin_messages_name_type_and_field(store: StoreChoice) {
    let gw = start(store).await;
    let cases = [
        (
            json!({"type":"task_progress","task_id":123,"percent":175}),
            "task_progress: \"percent\" must be an integer 0-100",
        ),
        (
            json!({"type":"resource_updated","resource":"order","id":[1]}),
            "resource_updated: \"id\" must be a string or an integer",
        ),
        (json!({"type":"notification"}), "notification: needs \"message\" or \"title\""),
    ];
    for (message, expected) in cases {
        let answer = invoke_sender(&gw, json!({"target":"all","message":message})).await;
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
        let text = answer["error"]["message"].as_str().unwrap();
        assert!(text.contains(expected) && !text.contains("custom"), "{text}");
    }
    gw.shutdown().await;
}

/// The reference package's browser code: `{"action":"chat_message",...}`, and `handler` instead of
/// `action` (API Gateway sends that to `$default`).
async fn the_seeds_chat_message_action_and_handler(store: StoreChoice) {
    let gw = start(store).await;
    let mut ann = connect(&gw, "ann", "general").await;
    let mut bob = connect(&gw, "bob", "general").await;
    send(&mut ann, json!({"action":"chat_message","message":"Hello everyone"})).await;
    let line = json!({"type":"chat_message","username":"ann","message":"Hello everyone","channel":"general"});
    assert_eq!(next_json(&mut bob).await, line);
    assert_eq!(next_json(&mut ann).await, line);
    send(&mut bob, json!({"handler":"chat_message","message":"Hi ann"})).await;
    let line = json!({"type":"chat_message","username":"bob","message":"Hi ann","channel":"general"});
    assert_eq!(next_json(&mut ann).await, line);
    assert_eq!(next_json(&mut bob).await, line);
    send(&mut bob, json!({"handler":"fly","ref":"h"})).await;
    let error = next_json(&mut bob).await;
    assert_eq!((error["code"].as_str(), error["ref"].as_str()), (Some("unknown_action"), Some("h")), "{error}");
    gw.shutdown().await;
}

fn dynamodb() -> StoreChoice {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let endpoint = std::env::var(lambda_ws_e2e::DYNAMODB_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!("{} is not set: run the tests with scripts/test.sh", lambda_ws_e2e::DYNAMODB_ENDPOINT_VAR)
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    StoreChoice::DynamoDb { endpoint, table: format!("lws-gw-{}-{n}", std::process::id()) }
}

async fn clients_dropping_during_a_fan_out_are_removed_and_the_rest_served(store: StoreChoice) {
    const CLIENTS: usize = 240;
    let gw = start_with(GatewayOptions {
        config: Config { require_token: false, ..options(StoreChoice::Memory).config },
        ..options(store)
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut ws = try_connect(&gw, "channel=fan", Some(ORIGIN)).await.unwrap();
        let id = connection_id(&mut ws).await;
        clients.push((id, ws));
    }
    let dropped: Vec<(String, Ws)> = clients.split_off(CLIENTS / 2);
    let first = json!({"type":"toast","level":"info","message":"first"});
    let fan_out = invoke_sender(&gw, json!({"target":{"channel":"fan"},"message":first}));
    // Drop half the sockets without a close handshake while the fan-out runs.
    let drop_half = async {
        for (n, (_, ws)) in dropped.into_iter().enumerate() {
            drop(ws);
            if n % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
    };
    let (report, ()) = tokio::join!(fan_out, drop_half);
    let delivered = report["delivered"].as_u64().unwrap() as usize;
    let gone = report["gone"].as_array().map_or(0, Vec::len) + report["unknown"].as_array().map_or(0, Vec::len);
    assert_eq!(report["failed"], json!([]), "a dropped client is gone, not a failure: {report}");
    // Sessions whose $disconnect already ran are not recipients; a post racing a drop is either
    // delivered (the socket was not yet seen closing, as with API Gateway) or gone.
    let recipients = report["recipients"].as_u64().unwrap() as usize;
    assert!((CLIENTS / 2..=CLIENTS).contains(&recipients) && delivered >= CLIENTS / 2, "{report}");
    assert_eq!(delivered + gone, recipients, "every recipient accounted for: {report}");
    for (_, ws) in &mut clients {
        assert_eq!(next_json(ws).await, first, "every live client got it");
    }
    // The gateway runs $disconnect for each dropped socket; then the next fan-out reaches
    // exactly the live half, once each.
    let management = management(&gw);
    let mut remaining = CLIENTS;
    for _ in 0..100 {
        let report = invoke_sender(
            &gw,
            json!({"target":{"channel":"fan"},"message":{"type":"toast","level":"info","message":"probe"}}),
        )
        .await;
        remaining = report["recipients"].as_u64().unwrap() as usize;
        for (_, ws) in &mut clients {
            assert_eq!(next_json(ws).await["message"], "probe");
        }
        if remaining == CLIENTS / 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(remaining, CLIENTS / 2, "dropped sessions are removed");
    let second = json!({"type":"toast","level":"info","message":"second"});
    let report = invoke_sender(&gw, json!({"target":{"channel":"fan"},"message":second})).await;
    assert_eq!((report["delivered"].as_u64(), report["gone"].as_array().map(Vec::len)), (Some(120), Some(0)));
    for (id, ws) in &mut clients {
        assert_eq!(next_json(ws).await, second, "{id}: once, in order, nothing in between");
        let alive = management.get_connection().connection_id(id.as_str()).send().await;
        assert!(alive.is_ok(), "{id} is still connected");
    }
}

/// The sender's `close` through the gateway, with real clients: the user's sockets get the
/// message, then a close (1000, as API Gateway closes a deleted connection); another user's stays
/// open; a token the user held from before the close is refused (401), a new one connects.
async fn closing_a_user_closes_their_sockets(store: StoreChoice) {
    let gw = start(store).await;
    let mut ann1 = connect(&gw, "ann", "lobby").await;
    let mut ann2 = connect(&gw, "ann", "room").await;
    let mut bob = connect(&gw, "bob", "lobby").await;
    let held = token(&gw, "ann").await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    let notice = json!({"type":"toast","level":"warning","message":"signed out"});
    let report = invoke_sender(&gw, json!({"target":{"user":"ann"},"message":notice,"close":true})).await;
    assert_eq!((report["delivered"].as_u64(), report["closed"].as_u64()), (Some(2), Some(2)), "{report}");
    for ws in [&mut ann1, &mut ann2] {
        assert_eq!(next_json(ws).await, notice, "the message before the close");
        assert_eq!(close_code(ws).await, 1000);
    }
    assert!(!connection_id(&mut bob).await.is_empty(), "bob is still connected");
    let refused = try_connect(&gw, &format!("ws_token={held}&channel=lobby"), Some(ORIGIN)).await.err();
    assert_eq!(refused, Some(401), "a token from before the close");
    tokio::time::sleep(Duration::from_millis(2)).await;
    let mut back = connect(&gw, "ann", "lobby").await;
    assert!(!connection_id(&mut back).await.is_empty(), "a token issued after the close connects");
}

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(lambda_ws_local::StoreChoice::Memory).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::dynamodb()).await;
                }
            )*
        }
    };
}

on_both_stores!(
    chat_between_two_clients,
    sender_through_the_lambda_sdk,
    management_api_through_the_sdk,
    connect_refusals,
    oversize_frame_closes_1009,
    idle_connections_are_closed,
    unmatched_routes_without_default_get_forbidden,
    typed_errors_in_a_session,
    clients_dropping_during_a_fan_out_are_removed_and_the_rest_served,
    seed_messages_arrive_as_sent,
    malformed_builtin_messages_name_type_and_field,
    the_seeds_chat_message_action_and_handler,
    binary_frames_close_1003,
    percent_encoded_management_paths,
    subprotocols,
    per_ip_limits_and_loopback,
    closing_a_user_closes_their_sockets,
);

#[tokio::test]
async fn the_gateway_adds_its_secret_and_drops_one_a_client_sends() {
    let secret = "s".repeat(40);
    let with_secret = |gateway_secret: Option<String>| GatewayOptions {
        config: Config {
            gateway_secrets: lambda_ws::policy::GatewaySecrets::parse(&secret).unwrap(),
            require_token: false,
            ..options(StoreChoice::Memory).config
        },
        gateway_secret,
        ..options(StoreChoice::Memory)
    };
    let connect_sending = |gw: &Gateway, header: Option<&str>| {
        let mut request = format!("{}?channel=x", gw.websocket_url()).into_client_request().unwrap();
        request.headers_mut().insert("origin", ORIGIN.parse().unwrap());
        if let Some(value) = header {
            request.headers_mut().insert(lambda_ws::policy::GATEWAY_SECRET_HEADER, value.parse().unwrap());
        }
        async move {
            match tokio_tungstenite::connect_async(request).await {
                Ok(_) => 101,
                Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
                Err(e) => panic!("unexpected handshake error: {e}"),
            }
        }
    };
    let fronted = start_with(with_secret(Some(secret.clone()))).await;
    assert_eq!(connect_sending(&fronted, None).await, 101, "the gateway adds the secret");
    assert_eq!(connect_sending(&fronted, Some("forged")).await, 101, "a client's header is replaced");
    // Messages and $disconnect carry the secret too, and replies go to the gateway's own endpoint.
    let mut ws = try_connect(&fronted, "channel=x", Some(ORIGIN)).await.unwrap();
    let id = connection_id(&mut ws).await;
    ws.close(None).await.unwrap();
    for _ in 0..50 {
        if fronted
            .app()
            .sessions
            .get_session(&lambda_ws::ConnectionId::new(id.as_str()).unwrap(), 0)
            .await
            .unwrap()
            .is_none()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone =
        fronted.app().sessions.get_session(&lambda_ws::ConnectionId::new(id.as_str()).unwrap(), 0).await.unwrap();
    assert!(gone.is_none(), "$disconnect passed the secret check and removed the session");
    let open = start_with(with_secret(None)).await;
    assert_eq!(connect_sending(&open, None).await, 403);
    assert_eq!(connect_sending(&open, Some(&secret)).await, 403, "a client cannot supply the secret itself");
}

#[tokio::test]
async fn demo_page_and_client_are_served() {
    let gw = start(StoreChoice::Memory).await;
    let host = gw.addr().to_string();
    let page = raw_get(&gw, &host, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"));
    assert!(page.contains("/client/websocket-manager.js") && page.contains("/local"), "stage filled in");
    let js = raw_get(&gw, &host, "/client/websocket-manager.js").await;
    assert!(js.contains("text/javascript") && js.contains("export class WebSocketManager"));
    gw.shutdown().await;
}

/// A stand-in for `cargo lambda watch`: a Lambda Invoke API running the route functions with their
/// own store, answering clients through the gateway's Management API over HTTP, as deployed
/// functions do. Records which function got which route.
struct FunctionHost {
    addr: SocketAddr,
    calls: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    /// `(disconnectStatusCode, disconnectReason)` of every `$disconnect` event.
    disconnects: std::sync::Arc<std::sync::Mutex<Vec<(i64, String)>>>,
}

impl FunctionHost {
    async fn start() -> Self {
        use axum::extract::{Path, State};
        use lambda_ws::{App, MemoryStore, Router, handlers};
        type Calls = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;
        type Disconnects = std::sync::Arc<std::sync::Mutex<Vec<(i64, String)>>>;
        let config = Config { require_token: false, ..Config::default() };
        let app = App::new(config, std::sync::Arc::new(MemoryStore::new()), lambda_ws_e2e::management_api());
        let calls: Calls = Default::default();
        let disconnects: Disconnects = Default::default();
        let invoke = move |State((app, calls, disconnects)): State<(App, Calls, Disconnects)>,
                           Path(name): Path<String>,
                           body: String| async move {
            let event: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest = serde_json::from_str(&body).unwrap();
            let route = event.request_context.route_key.clone().unwrap_or_default();
            calls.lock().unwrap().push((name.clone(), route.clone()));
            if route == "$disconnect" {
                let ctx = &event.request_context;
                disconnects.lock().unwrap().push((
                    ctx.disconnect_status_code.unwrap_or(-1),
                    ctx.disconnect_reason.clone().unwrap_or_default(),
                ));
            }
            let response = match name.as_str() {
                "connect" => handlers::connect(&app, &event).await,
                "disconnect" => handlers::disconnect(&app, &event).await,
                "default" => handlers::message(&app, &Router::builtin(), &event).await,
                "chat" => handlers::message(&app, &lambda_ws_functions::chat_router(), &event).await,
                "whoami" => {
                    let id = event.request_context.connection_id.unwrap_or_default();
                    let body = json!({"statusCode": 200, "body": json!({"you": id, "route": route}).to_string()});
                    return (axum::http::StatusCode::OK, body.to_string());
                }
                _ => return (axum::http::StatusCode::NOT_FOUND, String::new()),
            };
            (axum::http::StatusCode::OK, serde_json::to_string(&response).unwrap())
        };
        let router = axum::Router::new()
            .route("/2015-03-31/functions/{name}/invocations", axum::routing::post(invoke))
            .with_state((app, calls.clone(), disconnects.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, calls, disconnects }
    }

    /// The `$disconnect` events seen so far, waiting up to 2 s for `count` of them.
    async fn disconnects(&self, count: usize) -> Vec<(i64, String)> {
        for _ in 0..100 {
            if self.disconnects.lock().unwrap().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.disconnects.lock().unwrap().clone()
    }

    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }

    /// A gateway whose every route invokes its function on this host.
    async fn gateway(&self) -> Gateway {
        start_with(GatewayOptions {
            routes: repository::routes(false),
            invoke_endpoint: Some(format!("http://{}", self.addr)),
            ..options(StoreChoice::Memory)
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_can_invoke_functions_through_the_invoke_api() {
    let host = FunctionHost::start().await;
    let gw = host.gateway().await;
    assert_eq!(try_connect(&gw, "channel=bad.name", Some(ORIGIN)).await.err(), Some(400), "the function's status");
    let mut ann = try_connect(&gw, "channel=lobby", Some(ORIGIN)).await.unwrap();
    let mut bob = try_connect(&gw, "channel=lobby", Some(ORIGIN)).await.unwrap();
    let id = connection_id(&mut ann).await;
    assert_eq!(id.len(), 16, "pong came back through the Management API");
    send(&mut bob, json!({"action":"chat","message":"via functions"})).await;
    assert_eq!(next_json(&mut ann).await["message"], "via functions");
    ann.close(None).await.unwrap();
    for _ in 0..100 {
        if host.calls().iter().any(|(f, r)| f == "disconnect" && r == "$disconnect") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = host.calls();
    for expected in [("connect", "$connect"), ("default", "ping"), ("chat", "chat"), ("disconnect", "$disconnect")] {
        assert!(calls.iter().any(|(f, r)| (f.as_str(), r.as_str()) == expected), "{expected:?} in {calls:?}");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_routes_with_a_route_response_send_the_handler_body_back() {
    let host = FunctionHost::start().await;
    let mut routes = repository::routes(false);
    routes.insert("whoami", Handler::Invoke("whoami".into()));
    routes.insert("silent", Handler::Invoke("whoami".into()));
    routes.answer_with_response("whoami");
    let options = GatewayOptions {
        routes,
        invoke_endpoint: Some(format!("http://{}", host.addr)),
        ..options(StoreChoice::Memory)
    };
    let gw = start_with(options).await;
    let mut ws = try_connect(&gw, "channel=lobby", Some(ORIGIN)).await.unwrap();
    let id = connection_id(&mut ws).await;
    send(&mut ws, json!({"action":"silent"})).await;
    send(&mut ws, json!({"action":"whoami"})).await;
    let mut seen = vec![next_json(&mut ws).await];
    send(&mut ws, json!({"action":"ping"})).await;
    while seen.last().map(|m| m["type"] != "pong").unwrap_or(true) {
        seen.push(next_json(&mut ws).await);
    }
    assert!(seen.contains(&json!({"you": id, "route": "whoami"})), "{seen:?}");
    assert!(!seen.iter().any(|m| m["route"] == "silent"), "a route without a route response answered: {seen:?}");
    gw.shutdown().await;
}

/// A route that takes its time and records how many of its calls ran at once.
#[derive(Debug)]
struct SlowRoute(Arc<Slow>);

#[derive(Debug, Default)]
struct Slow {
    running: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

#[lambda_ws::async_trait]
impl lambda_ws::Route for SlowRoute {
    async fn handle(
        &self,
        ctx: &lambda_ws::MessageContext<'_>,
        _: lambda_ws::Inbound,
    ) -> Result<Option<lambda_ws::Outbound>, lambda_ws::RouteError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.0.running.fetch_add(1, SeqCst) + 1;
        self.0.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.0.running.fetch_sub(1, SeqCst);
        Ok(Some(ctx.reply(json!({}))))
    }
}

/// One connection's frames run at most 32 routes at once: a client sending faster waits (in its
/// own TCP window), and every frame is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_runs_a_bounded_number_of_frames_at_once() {
    let slow = Arc::new(Slow::default());
    let mut routes = repository::routes(true);
    routes.insert("slow", Handler::Messages(lambda_ws::Router::new().route("slow", SlowRoute(slow.clone()))));
    let gw = start_with(GatewayOptions { routes, ..options(StoreChoice::Memory) }).await;
    let mut ws = connect(&gw, "ann", "lobby").await;
    for n in 0..200 {
        send(&mut ws, json!({"action":"slow","ref":n.to_string()})).await;
    }
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < 200 {
        let answer = next_json(&mut ws).await;
        answered.insert(answer["ref"].as_str().unwrap_or_default().to_owned());
    }
    let most = slow.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=32).contains(&most), "{most} frames ran at once");
    gw.shutdown().await;
}

#[tokio::test]
async fn your_own_pages_are_served_from_the_pages_folder_and_nothing_outside_it() {
    let folder = std::env::temp_dir().join(format!("lws-pages-{}", std::process::id()));
    std::fs::create_dir_all(folder.join("app")).unwrap();
    std::fs::write(folder.join("app/index.html"), "<h1>mine</h1>").unwrap();
    std::fs::write(folder.join(".env"), "SECRET=1").unwrap();
    // Links that lead out of the folder, to a file and to a folder, are not followed out.
    let outside_dir = std::env::temp_dir().join(format!("lws-outside-{}", std::process::id()));
    std::fs::create_dir_all(&outside_dir).unwrap();
    std::fs::write(outside_dir.join("secret.txt"), "SECRET=2").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside_dir.join("secret.txt"), folder.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(&outside_dir, folder.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(folder.join("app/index.html"), folder.join("inside.html")).unwrap();
    }
    let gw = start_with(GatewayOptions { pages: Some(folder.clone()), ..options(StoreChoice::Memory) }).await;
    let host = gw.addr().to_string();
    let get = |path: &'static str| raw_get(&gw, &host, path);
    let page = get("/pages/app/index.html").await;
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("text/html") && page.ends_with("<h1>mine</h1>"),
        "{page}"
    );
    #[cfg(unix)]
    assert!(get("/pages/inside.html").await.ends_with("<h1>mine</h1>"), "a link within the folder is served");
    for outside in [
        "/pages/../Cargo.toml",
        "/pages/%2e%2e/Cargo.toml",
        "/pages/.env",
        "/pages/app/..%2F..%2FCargo.toml",
        "/pages/leak.txt",
        "/pages/elsewhere/secret.txt",
        "/pages/C:%5Cwindows%5Cwin.ini",
        "/pages/C:/secret.txt",
    ] {
        let answer = get(outside).await;
        assert!(answer.starts_with("HTTP/1.1 404") && !answer.contains("SECRET"), "{outside}: {answer}");
    }
    gw.shutdown().await;
    std::fs::remove_dir_all(folder).unwrap();
    std::fs::remove_dir_all(outside_dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_gets_429s_and_is_still_closed_on_time() {
    let gw = start_with(GatewayOptions {
        idle_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
        ..options(StoreChoice::Memory)
    })
    .await;
    let mut ws = connect(&gw, "ann", "lobby").await;
    let id = connection_id(&mut ws).await;
    // From here the client reads nothing.
    let conf = aws_sdk_apigatewaymanagement::config::Builder::from(&lambda_ws_e2e::local_aws_config())
        .endpoint_url(gw.management_endpoint())
        .retry_config(aws_sdk_apigatewaymanagement::config::retry::RetryConfig::disabled())
        .build();
    let api = aws_sdk_apigatewaymanagement::Client::from_conf(conf);
    let payload = Blob::new("x".repeat(120 * 1024));
    let (mut accepted, mut throttled) = (0, 0);
    for _ in 0..600 {
        match api.post_to_connection().connection_id(&id).data(payload.clone()).send().await {
            Ok(_) => accepted += 1,
            Err(e) => {
                let service = e.as_service_error().expect("an API answer");
                assert!(service.is_limit_exceeded_exception(), "{service:?}");
                throttled += 1;
                if throttled == 20 {
                    break;
                }
            }
        }
    }
    assert!(throttled == 20, "a full outbox answers 429 LimitExceededException ({accepted} accepted)");
    // The socket is stuck, yet the connection ends within the write deadline and $disconnect runs.
    let started = std::time::Instant::now();
    loop {
        let gone = api.get_connection().connection_id(&id).send().await.err();
        if gone.and_then(|e| e.into_service_error().is_gone_exception().then_some(())).is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still open after 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cid = lambda_ws::ConnectionId::new(id.as_str()).unwrap();
    for _ in 0..50 {
        if gw.app().sessions.get_session(&cid, 0).await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.app().sessions.get_session(&cid, 0).await.unwrap().is_none(), "$disconnect removed the session");
    drop(ws);
    gw.shutdown().await;
}

/// A page on another site (a simple cross-site POST needs no preflight) or a rebound domain name
/// cannot drive the gateway; SDKs, which send no Origin, and same-origin pages still can.
#[tokio::test]
async fn web_pages_elsewhere_cannot_drive_the_gateway() {
    let gw = start(StoreChoice::Memory).await;
    let mut ws = connect(&gw, "ann", "lobby").await;
    let id = connection_id(&mut ws).await;
    let evil = [("origin", "https://evil.example"), ("content-type", "text/plain")];
    let toast = r#"{"target":"all","message":{"type":"toast","level":"info","message":"pwned"}}"#;
    let cases: [(&str, String, &str); 7] = [
        ("POST", "/ws-token".into(), ""),
        ("POST", "/2015-03-31/functions/sender/invocations".into(), toast),
        ("GET", "/_admin/sessions".into(), ""),
        ("POST", "/_admin/cleanup".into(), ""),
        ("POST", "/_admin/tokens/purge".into(), ""),
        ("POST", "/demo/task".into(), ""),
        ("POST", format!("/local/@connections/{id}"), "hello"),
    ];
    for (method, path, body) in &cases {
        let (status, answer) = http(&gw, method, path, &[&evil[..], &[("x-lambda-ws", "1")]].concat(), body).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("forbidden")), "{method} {path}: {answer}");
    }
    // DNS rebinding: the browser thinks it is on evil.example, so the page is "same-origin".
    let answer = raw_get(&gw, "evil.example", "/_admin/sessions").await;
    assert!(answer.starts_with("HTTP/1.1 403") && !answer.contains(&id), "{answer}");
    // Nothing reached the client, and the same calls without a foreign Origin work.
    send(&mut ws, json!({"action":"ping","ref":"after"})).await;
    assert_eq!(next_json(&mut ws).await["ref"], "after", "no toast and no post arrived first");
    let own = format!("http://{}", gw.addr());
    let (status, _) = http(&gw, "POST", "/demo/task", &[("origin", own.as_str())], "").await;
    assert_eq!(status, 202, "the gateway's own pages");
    let (status, sessions) = http(&gw, "GET", "/_admin/sessions", &[], "").await;
    assert_eq!(status, 200, "command-line tools and SDKs send no Origin: {sessions}");
    gw.shutdown().await;
}

/// Route selection expressions beyond `$request.body.<key>`, with real clients.
#[tokio::test]
async fn nested_and_joined_route_selection_expressions() {
    let echo = |key: &str| Handler::Messages(lambda_ws::Router::new().route(key, EchoBack));
    for (expression, route_key, frame) in [
        ("$request.body.message.action", "say", json!({"message": {"action": "say"}, "ref": "n"})),
        (
            "${request.body.service}/${request.body.action}",
            "billing/pay",
            json!({"service": "billing", "action": "pay", "ref": "j"}),
        ),
        ("$request.body.version", "2", json!({"version": 2, "ref": "s"})),
    ] {
        let mut routes = RouteTable::empty(lambda_ws_local::SelectionExpression::parse(expression).unwrap());
        routes.insert("$connect", Handler::Connect);
        routes.insert("$disconnect", Handler::Disconnect);
        routes.insert(route_key, echo(route_key));
        let gw = start_with(GatewayOptions { routes, ..options(StoreChoice::Memory) }).await;
        let mut ws = connect(&gw, "ann", "lobby").await;
        send(&mut ws, frame.clone()).await;
        let answer = next_json(&mut ws).await;
        assert_eq!(
            (answer["type"].as_str(), answer["ref"].as_str()),
            (Some("echoed"), frame["ref"].as_str()),
            "{expression}"
        );
        send(&mut ws, json!({"action": "nothing"})).await;
        assert_eq!(next_json(&mut ws).await["message"], "Forbidden", "{expression}: no match and no $default");
        gw.shutdown().await;
    }
}

/// Answers any action with `{"type":"echoed","ref":…}`.
#[derive(Debug)]
struct EchoBack;

#[lambda_ws::async_trait]
impl lambda_ws::Route for EchoBack {
    async fn handle(
        &self,
        _ctx: &lambda_ws::MessageContext<'_>,
        msg: lambda_ws::Inbound,
    ) -> Result<Option<lambda_ws::Outbound>, lambda_ws::RouteError> {
        let object = json!({"type": "echoed", "ref": msg.reference}).as_object().cloned().unwrap_or_default();
        Ok(Some(lambda_ws::Outbound::custom(object).unwrap()))
    }
}

/// RFC 6455 §5.5.1: a Close frame is answered with a Close frame, so the client sees its own code;
/// `$disconnect` gets the client's code and reason, 1005 for a close without a code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_close_handshake_is_answered_and_reported() {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let host = FunctionHost::start().await;
    let gw = host.gateway().await;
    let mut ws = try_connect(&gw, "channel=lobby", Some(ORIGIN)).await.unwrap();
    ws.close(Some(CloseFrame { code: CloseCode::Library(4001), reason: "bye now".into() })).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 4001, "the gateway answered the close with the client's code");
    let mut quiet = try_connect(&gw, "channel=lobby", Some(ORIGIN)).await.unwrap();
    quiet.close(None).await.unwrap();
    assert_eq!(close_code(&mut quiet).await, 1005);
    let seen = host.disconnects(2).await;
    assert!(seen.contains(&(4001, "bye now".to_owned())), "{seen:?}");
    assert!(seen.contains(&(1005, String::new())), "{seen:?}");
    gw.shutdown().await;
}

/// "If a client app sends a binary frame, API Gateway rejects it and disconnects the client with
/// code 1003."
async fn binary_frames_close_1003(store: StoreChoice) {
    let gw = start(store).await;
    let mut ws = connect(&gw, "ann", "lobby").await;
    let id = connection_id(&mut ws).await;
    ws.send(Message::binary(br#"{"action":"ping"}"#.to_vec())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1003, "no pong for a binary frame");
    let cid = lambda_ws::ConnectionId::new(id.as_str()).unwrap();
    for _ in 0..50 {
        if gw.app().sessions.get_session(&cid, 0).await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gw.app().sessions.get_session(&cid, 0).await.unwrap().is_none(), "$disconnect ran");
    gw.shutdown().await;
}

/// AWS's own guide percent-encodes the command: `POST /prod/%40connections/R0oXAdfD0kwCH6w%3D`.
async fn percent_encoded_management_paths(store: StoreChoice) {
    let gw = start(store).await;
    let mut ws = connect(&gw, "ann", "lobby").await;
    let id = connection_id(&mut ws).await;
    let encoded = id.replace('=', "%3D");
    let path = format!("/local/%40connections/{encoded}");
    let (status, _) = http(&gw, "POST", &path, &[], r#"{"type":"system","level":"info","message":"encoded"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(next_json(&mut ws).await["message"], "encoded");
    let (status, info) = http(&gw, "GET", &path, &[], "").await;
    assert_eq!((status, info["identity"]["sourceIp"].as_str()), (200, Some("127.0.0.1")), "{info}");
    let (status, _) = http(&gw, "DELETE", &path, &[], "").await;
    assert_eq!(status, 204);
    assert_eq!(close_code(&mut ws).await, 1000);
    let (status, _) = http(&gw, "POST", &path, &[], "{}").await;
    assert_eq!(status, 410, "gone after the delete, in either form");
    gw.shutdown().await;
}

/// A `$connect` that answers `Sec-WebSocket-Protocol` completes the handshake with it; the core
/// handler answers one of `LWS_SUBPROTOCOLS`; a client asking for one nobody answers fails.
async fn subprotocols(store: StoreChoice) {
    let with_protocols = |subprotocols: Vec<String>| GatewayOptions {
        config: Config { subprotocols, require_token: false, ..options(StoreChoice::Memory).config },
        store: store.clone(),
        ..options(StoreChoice::Memory)
    };
    let handshake = |gw: &Gateway, offered: Option<&'static str>| {
        let mut request = format!("{}?channel=lobby", gw.websocket_url()).into_client_request().unwrap();
        request.headers_mut().insert("origin", ORIGIN.parse().unwrap());
        if let Some(offered) = offered {
            request.headers_mut().insert("sec-websocket-protocol", offered.parse().unwrap());
        }
        async move {
            match tokio_tungstenite::connect_async(request).await {
                Ok((_, response)) => {
                    Ok(response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_owned()))
                }
                Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16().to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let gw = start_with(with_protocols(vec!["lws.v2".into(), "lws.v1".into()])).await;
    assert_eq!(handshake(&gw, Some("lws.v1")).await, Ok(Some("lws.v1".into())));
    assert_eq!(
        handshake(&gw, Some("graphql-ws, lws.v2")).await,
        Ok(Some("lws.v2".into())),
        "the client's first we speak"
    );
    assert_eq!(handshake(&gw, None).await, Ok(None), "no subprotocol asked, none chosen");
    assert_eq!(handshake(&gw, Some("graphql-ws")).await, Err("400".into()), "only others offered");
    gw.shutdown().await;
    let plain = start_with(with_protocols(Vec::new())).await;
    let failed = handshake(&plain, Some("lws.v1")).await.unwrap_err();
    assert!(failed.to_lowercase().contains("subprotocol"), "the client fails the handshake: {failed}");
    plain.shutdown().await;
}

/// Every client of `lambda-ws dev` is 127.0.0.1: the per-IP limit does not apply to loopback
/// unless asked for (`--enforce-ip-limits`), and then trips as in production.
async fn per_ip_limits_and_loopback(store: StoreChoice) {
    let limited = |on_loopback: bool| GatewayOptions {
        config: Config {
            rate_limits: RateLimits { connect_per_ip: 3, ..RateLimits::off() },
            ip_limits_on_loopback: on_loopback,
            ..options(StoreChoice::Memory).config
        },
        store: store.clone(),
        ..options(StoreChoice::Memory)
    };
    let gw = start_with(limited(false)).await;
    for n in 0..6 {
        let token = token(&gw, &format!("dev{n}")).await;
        assert!(try_connect(&gw, &format!("ws_token={token}"), Some(ORIGIN)).await.is_ok(), "connect {n}");
    }
    gw.shutdown().await;
    let gw = start_with(limited(true)).await;
    // The limit counts per minute window: start well inside one, so all five attempts share it.
    let into_minute = lambda_ws::clock::unix_now_millis().rem_euclid(60_000);
    if into_minute > 50_000 {
        tokio::time::sleep(std::time::Duration::from_millis((60_000 - into_minute + 100) as u64)).await;
    }
    let mut statuses = Vec::new();
    for n in 0..5 {
        let token = token(&gw, &format!("dev{n}")).await;
        statuses.push(
            try_connect(&gw, &format!("ws_token={token}"), Some(ORIGIN)).await.map(|_| 101).unwrap_or_else(|s| s),
        );
    }
    assert_eq!(statuses, [101, 101, 101, 429, 429], "enforced, loopback included");
    gw.shutdown().await;
}
