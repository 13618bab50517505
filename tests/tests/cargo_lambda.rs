//! The deployed shape, locally, with the real runtime emulator: `cargo lambda watch` serves this
//! workspace's functions (each one the binary Lambda runs, reading its settings from the
//! environment and its sessions from the DynamoDB engine), and `lambda-ws dev --invoke-endpoint`
//! routes `$connect`, messages and `$disconnect` to them through the Lambda Invoke API, as API
//! Gateway's Lambda proxy integrations do. WebSocket clients chat through it.
//!
//! The test command installs cargo-lambda and builds the functions first (`scripts/test.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::SinkExt;
use lambda_ws::config::RateLimits;
use lambda_ws::store::SessionStore as _;
use lambda_ws::{Config, ConnectionId, DynamoDbStore};
use lambda_ws_e2e::ws::{self, Ws, next_json_within};
use lambda_ws_e2e::{DYNAMODB_ENDPOINT_VAR, dynamodb_client};
use lambda_ws_local::template::Template;
use lambda_ws_local::{Gateway, GatewayOptions, StoreChoice};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// The variable `scripts/test.sh` sets to the cargo-lambda it installs.
const CARGO_LAMBDA_VAR: &str = "LWS_TEST_CARGO_LAMBDA";

/// Functions under the emulator answer their first invocations slowly.
async fn next_json(ws: &mut Ws) -> Value {
    next_json_within(ws, Duration::from_secs(60)).await
}

async fn connect(gw: &Gateway, user: &str) -> Ws {
    ws::connect(gw, user, "lobby").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_functions_under_cargo_lambda_watch_serve_the_gateway() {
    let cargo_lambda = std::env::var(CARGO_LAMBDA_VAR).unwrap_or_else(|_| {
        panic!("{CARGO_LAMBDA_VAR} is not set: run the tests with scripts/test.sh, which installs cargo-lambda")
    });
    let dynamodb = std::env::var(DYNAMODB_ENDPOINT_VAR).expect("the DynamoDB engine (scripts/test.sh)");
    let table = format!("lws-watch-{}", std::process::id());
    DynamoDbStore::new(dynamodb_client(), &table).create_table().await.unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = [
        format!("LWS_TABLE_NAME={table}"),
        format!("AWS_ENDPOINT_URL_DYNAMODB={dynamodb}"),
        "AWS_REGION=us-east-1".into(),
        "AWS_ACCESS_KEY_ID=local".into(),
        "AWS_SECRET_ACCESS_KEY=local".into(),
        "AWS_EC2_METADATA_DISABLED=true".into(),
        "RUST_LOG=error".into(),
    ];
    let mut watch = tokio::process::Command::new(&cargo_lambda);
    watch
        .args(["lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
        .args(["--ignore-changes", "--quiet", "-p", "lambda-ws-functions"])
        .args(env.iter().flat_map(|e| ["--env-var", e.as_str()]))
        .current_dir(&root)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut watch = watch.spawn().unwrap();
    let emulator = SocketAddr::from(([127, 0, 0, 1], port));
    for attempt in 0.. {
        if TcpStream::connect(emulator).await.is_ok() {
            break;
        }
        assert!(attempt < 600, "cargo lambda watch did not listen on {emulator} within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every route of the template invokes its function, as deployed.
    let routes = Template::load(&root.join("template.yaml"))
        .unwrap()
        .route_table(&lambda_ws_cli::repository::functions(), false);
    let options = GatewayOptions {
        routes,
        invoke_endpoint: Some(format!("http://{emulator}")),
        store: StoreChoice::DynamoDb { endpoint: dynamodb, table: table.clone() },
        // The test client's pages come from `ws::ORIGIN`: the gateway's issuer takes it.
        config: Config {
            rate_limits: RateLimits::off(),
            allowed_origins: lambda_ws::policy::OriginPolicy::parse(ws::ORIGIN).unwrap(),
            ..Config::default()
        },
        ..GatewayOptions::default()
    };
    let gw = Gateway::start(SocketAddr::from(([127, 0, 0, 1], 0)), options).await.unwrap();
    let mut ann = connect(&gw, "ann").await;
    let mut bob = connect(&gw, "bob").await;
    ann.send(Message::text(json!({"action":"ping","ref":"p"}).to_string())).await.unwrap();
    let pong = next_json(&mut ann).await;
    assert_eq!((pong["type"].as_str(), pong["ref"].as_str()), (Some("pong"), Some("p")), "the default function");
    let ann_id = pong["connection_id"].as_str().unwrap().to_owned();
    bob.send(Message::text(json!({"action":"chat","message":"through cargo lambda"}).to_string())).await.unwrap();
    let line = json!({"type":"chat_message","username":"bob","message":"through cargo lambda","channel":"lobby"});
    assert_eq!(next_json(&mut ann).await, line, "the chat function posted through the Management API");
    assert_eq!(next_json(&mut bob).await, line);
    ann.close(None).await.unwrap();
    let store = DynamoDbStore::new(dynamodb_client(), &table);
    let id = ConnectionId::new(ann_id).unwrap();
    let mut removed = false;
    for _ in 0..300 {
        if store.get_session(&id, 0).await.unwrap().is_none() {
            removed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(removed, "the disconnect function removed ann's session from the table");
    gw.shutdown().await;
    watch.kill().await.unwrap();
}
