//! The app on a gateway it builds itself from its own `template.yaml` (`invoices::dev()`), with
//! real WebSocket clients, and its `notify` code reaching them through the sender function by the
//! Lambda Invoke API.

// A failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use lambda_ws::client::SenderClient;
use lambda_ws_local::{DevArgs, Gateway};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn gateway() -> Gateway {
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
    let args = DevArgs::parse_from(["--port", "0", "--template", template]).unwrap();
    invoices::dev().start(args).await.unwrap()
}

/// A token from the gateway's issuer for `user` in `groups`.
async fn token(gw: &Gateway, user: &str, groups: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let request = format!(
        "POST /ws-token HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nx-lambda-ws: 1\r\nx-lambda-ws-user: {user}\r\n\
         x-lambda-ws-groups: {groups}\r\nContent-Length: 0\r\n\r\n",
        gw.addr()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let body: Value = serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap();
    body["token"].as_str().unwrap_or_else(|| panic!("{raw}")).to_owned()
}

async fn connect(gw: &Gateway, user: &str, tenant: &str) -> Ws {
    let token = token(gw, user, &format!("tenant-{tenant}")).await;
    let url = format!("{}?ws_token={token}&channel=invoices-{tenant}", gw.websocket_url());
    tokio_tungstenite::connect_async(url).await.map(|(ws, _)| ws).unwrap()
}

/// The status of `user`'s (of `tenant`) WebSocket handshake into `channel`: 101 when it connects.
async fn handshake(gw: &Gateway, user: &str, tenant: &str, channel: &str) -> u16 {
    let token = token(gw, user, &format!("tenant-{tenant}")).await;
    match tokio_tungstenite::connect_async(format!("{}?ws_token={token}&channel={channel}", gw.websocket_url())).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

/// The next JSON frame, presence events left out (`invoices-*` channels have presence, as the
/// template deploys them).
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a frame in time");
        match frame.expect("socket open").expect("frame") {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] != "member_joined" && value["type"] != "member_left" {
                    return value;
                }
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_routes_and_notify_run_on_its_own_gateway() {
    let gw = gateway().await;
    let mut ann = connect(&gw, "ann", "acme").await;
    let mut bob = connect(&gw, "bob", "acme").await;

    ann.send(Message::text(json!({"action": "whoami", "ref": "w"}).to_string())).await.unwrap();
    assert_eq!(next_json(&mut ann).await["data"], json!({"user": "ann", "tenant": "acme", "client": "web"}));

    ann.send(Message::text(json!({"action": "comment", "invoice": "inv-7", "text": "Called them"}).to_string()))
        .await
        .unwrap();
    let comment = json!({"type": "invoice_comment", "invoice": "inv-7", "author": "ann", "text": "Called them"});
    assert_eq!(next_json(&mut bob).await, comment);
    assert_eq!(next_json(&mut ann).await, comment);

    ann.send(Message::text(json!({"action": "comment", "invoice": "inv-7", "text": 1, "ref": "x"}).to_string()))
        .await
        .unwrap();
    let refused = next_json(&mut ann).await;
    assert_eq!((refused["code"].as_str(), refused["field"].as_str()), (Some("bad_request"), Some("text")));

    // What the notify function does, through the gateway's Lambda Invoke API.
    let aws = lambda_ws_local::local_aws_config();
    let conf = aws_sdk_lambda::config::Builder::from(&aws).endpoint_url(gw.http_url()).build();
    let sender = SenderClient::new(aws_sdk_lambda::Client::from_conf(conf), "sender");
    let event = serde_json::from_value(json!({"tenant": "acme", "invoice": "inv-7", "amount_cents": 1200})).unwrap();
    let report = invoices::announce_payment(&sender, event).await.unwrap();
    assert_eq!(report.delivered, 2);
    let paid = json!({"type": "invoice_paid", "invoice": "inv-7", "amount_cents": 1200});
    assert_eq!(next_json(&mut ann).await, paid);
    assert_eq!(next_json(&mut bob).await, paid);
    gw.shutdown().await;
}

/// The gateway runs the functions with the environment the template deploys them with
/// (`ChannelRules` defaults to `invoices-*=authenticated; *=none`): users of two tenants cannot
/// meet in `lobby` (a dev default the deployed stack never had), and a tenant's channel is its own.
/// `--parameter-overrides` changes it as `sam deploy` would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_runs_the_templates_environment() {
    let gw = gateway().await;
    assert_eq!(handshake(&gw, "ann", "acme", "lobby").await, 403, "no lobby in the deployed rules");
    assert_eq!(handshake(&gw, "eve", "evil", "lobby").await, 403);
    assert_eq!(handshake(&gw, "eve", "evil", "invoices-acme").await, 403, "another tenant's channel");
    assert_eq!(handshake(&gw, "ann", "acme", "invoices-acme").await, 101);
    gw.shutdown().await;

    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
    let args = ["--port", "0", "--template", template, "--parameter-overrides", "ChannelRules='lobby=all; *=none'"];
    let gw = invoices::dev().start(DevArgs::parse_from(args).unwrap()).await.unwrap();
    assert_eq!(handshake(&gw, "ann", "acme", "lobby").await, 101, "the override opens the lobby");
    assert_eq!(handshake(&gw, "ann", "acme", "invoices-acme").await, 403, "and closes the rest");
    gw.shutdown().await;
}

#[test]
fn the_committed_contract_is_fresh() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/asyncapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let fresh = invoices::dev().asyncapi_file();
    assert!(committed == fresh, "asyncapi.json is stale: run `cargo run --bin dev -- schema -o asyncapi.json` here");
    let doc: Value = serde_json::from_str(&fresh).unwrap();
    for name in ["comment_request", "whoami_request", "invoice_comment", "invoice_paid", "subscribe_request"] {
        assert!(doc.pointer(&format!("/components/messages/{name}")).is_some(), "{name}");
    }
    assert_eq!(doc.pointer("/components/schemas/CommentRequest/required"), Some(&json!(["action", "invoice", "text"])));
}
