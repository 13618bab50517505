//! The operator commands, run as a user runs them: the `lambda-ws` binary against a running
//! gateway (`--gateway`) and against a table in the DynamoDB engine the test command starts
//! (`--table`, AWS settings from the environment), with real WebSocket clients receiving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lambda_ws::config::RateLimits;
use lambda_ws::policy::OriginPolicy;
use lambda_ws::store::{SessionStore as _, TokenRecord, TokenStore as _};
use lambda_ws::{ChannelName, Config, ConnectionId, DynamoDbStore, Identity, Session};
use lambda_ws_local::{Gateway, GatewayOptions, StoreChoice};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use lambda_ws_e2e::ws::{ORIGIN, Ws, close_code, connect, connection_id, next_json, token};

fn dynamodb_endpoint() -> String {
    std::env::var("LWS_TEST_DYNAMODB_ENDPOINT")
        .expect("LWS_TEST_DYNAMODB_ENDPOINT is not set: run the tests with scripts/test.sh, which starts the engine")
}

async fn gateway(store: StoreChoice, token_ttl: Duration) -> Gateway {
    let config = Config {
        allowed_origins: OriginPolicy::parse(ORIGIN).unwrap(),
        rate_limits: RateLimits::off(),
        token_ttl,
        ..Config::default()
    };
    let options = GatewayOptions { config, store, ..lambda_ws_cli::repository::gateway_options() };
    Gateway::start(SocketAddr::from(([127, 0, 0, 1], 0)), options).await.unwrap()
}

/// A connected client of `user` in `channel`, and its connection id.
async fn client(gw: &Gateway, user: &str, channel: &str) -> (Ws, String) {
    let mut ws = connect(gw, user, channel).await;
    let id = connection_id(&mut ws).await;
    (ws, id)
}

/// Runs `lambda-ws <args>` with AWS settings for the local engine: (exit success, stdout, stderr).
async fn cli(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lambda-ws"))
        .args(args)
        .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("LWS_TABLE_NAME")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

async fn cli_json(args: &[&str]) -> Value {
    let (ok, stdout, stderr) = cli(args).await;
    assert!(ok, "lambda-ws {args:?} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn ids(listing: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        listing.as_array().unwrap().iter().map(|s| s["connection_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_against_a_running_gateway() {
    let gw = gateway(StoreChoice::Memory, Duration::from_secs(1)).await;
    let url = gw.http_url();
    let g = ["--gateway", url.as_str()];
    let (mut ann1, a1) = client(&gw, "ann", "lobby").await;
    let (mut ann2, a2) = client(&gw, "ann", "news").await;
    let (mut bob, b1) = client(&gw, "bob", "lobby").await;

    let all = cli_json(&[&["sessions", "list", "--json"][..], &g].concat()).await;
    assert_eq!(ids(&all), sorted(vec![a1.clone(), a2.clone(), b1.clone()]));
    assert_eq!(all[0]["channels"], json!(["lobby"]), "channels are listed: {all}");
    let news = cli_json(&[&["sessions", "list", "--json", "--channel", "news"][..], &g].concat()).await;
    assert_eq!(ids(&news), vec![a2.clone()]);
    let ann = cli_json(&[&["sessions", "list", "--json", "--user", "ann"][..], &g].concat()).await;
    assert_eq!(ids(&ann), sorted(vec![a1.clone(), a2.clone()]));
    let (ok, table, _) = cli(&[&["sessions", "list", "--limit", "2"][..], &g].concat()).await;
    assert!(ok && table.starts_with("CONNECTION") && table.contains("2 sessions"), "{table}");
    assert_eq!(table.lines().count(), 4, "header, two rows, total: {table}");

    let toast = r#"{"type":"toast","level":"info","message":"from the CLI"}"#;
    let report =
        cli_json(&[&["send", "--channel", "lobby", "--message", toast, "--exclude", &b1][..], &g].concat()).await;
    assert_eq!((report["delivered"].as_u64(), report["excluded"].as_u64()), (Some(1), Some(1)), "{report}");
    assert_eq!(next_json(&mut ann1).await["message"], "from the CLI");
    let file = std::env::temp_dir().join(format!("lws-cli-{}.json", std::process::id()));
    std::fs::write(&file, r#"{"type":"system","level":"warning","message":"from a file"}"#).unwrap();
    let report = cli_json(&[&["send", "--user", "ann", "--file", file.to_str().unwrap()][..], &g].concat()).await;
    assert_eq!(report["delivered"], 2);
    assert_eq!(next_json(&mut ann1).await["message"], "from a file");
    assert_eq!(next_json(&mut ann2).await["message"], "from a file");
    let report =
        cli_json(&[&["send", "--all", "--message", r#"{"type":"invoice_paid","id":7}"#][..], &g].concat()).await;
    assert_eq!(report["delivered"], 3);
    assert_eq!(next_json(&mut bob).await["type"], "invoice_paid");
    let (ok, _, stderr) = cli(&[&["send", "--all", "--message", r#"{"type":"toast"}"#][..], &g].concat()).await;
    assert!(!ok && stderr.contains("not valid"), "a bad message is refused before sending: {stderr}");
    let (ok, _, stderr) = cli(&[&["send", "--connection", "bad/id", "--message", toast][..], &g].concat()).await;
    assert!(!ok && stderr.contains("connection id"), "{stderr}");
    let (ok, _, stderr) = cli(&["sessions", "list", "--gateway", "http://127.0.0.1:9"]).await;
    assert!(!ok && stderr.contains("cannot reach the gateway"), "{stderr}");

    // Two tokens that are never used expire (the gateway's token lifetime is 1 s here).
    token(&gw, "cat").await;
    token(&gw, "cat").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (ok, out, _) = cli(&[&["tokens", "purge", "--dry-run"][..], &g].concat()).await;
    assert!(ok && out.contains("would purge 2 expired token(s)"), "{out}");
    let (ok, out, _) = cli(&[&["tokens", "purge"][..], &g].concat()).await;
    assert!(ok && out.contains("purged 2 expired token(s)"), "{out}");
    let (ok, out, _) = cli(&[&["tokens", "purge"][..], &g].concat()).await;
    assert!(ok && out.contains("purged 0"), "{out}");
    let (ok, out, _) = cli(&[&["cleanup", "--check-connections"][..], &g].concat()).await;
    assert!(ok && out.contains("removed 0 session(s)") && out.contains("checked 3 live"), "{out}");

    // Closing sessions: one connection, then a user (both of ann's were open).
    let (ok, out, stderr) = cli(&[&["sessions", "close", "--connection", &a2][..], &g].concat()).await;
    assert!(ok && out.contains("closed 1 connection;"), "{out}{stderr}");
    assert_eq!(close_code(&mut ann2).await, 1000);
    let (ok, out, stderr) = cli(&[&["sessions", "close", "--user", "ann"][..], &g].concat()).await;
    assert!(ok && out.contains("closed 1 connection;") && out.contains("tokens issued"), "{out}{stderr}");
    assert_eq!(close_code(&mut ann1).await, 1000);
    let left = cli_json(&[&["sessions", "list", "--json"][..], &g].concat()).await;
    assert_eq!(ids(&left), vec![b1.clone()], "only bob is left");
    let (ok, _, stderr) = cli(&[&["sessions", "close"][..], &g].concat()).await;
    assert!(!ok && stderr.contains("--user"), "a target is required: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_against_a_dynamodb_table() {
    let endpoint = dynamodb_endpoint();
    let table = format!("lws-cli-{}", std::process::id());
    let gw =
        gateway(StoreChoice::DynamoDb { endpoint: endpoint.clone(), table: table.clone() }, Duration::from_secs(60))
            .await;
    let t = ["--table", table.as_str()];
    let (mut ann, a1) = client(&gw, "ann", "lobby").await;
    let (mut bob, b1) = client(&gw, "bob", "lobby").await;

    // The CLI posts through the Management API endpoint each session stored: the gateway's.
    let toast = r#"{"type":"toast","level":"success","message":"via the table"}"#;
    let report = cli_json(&[&["send", "--channel", "lobby", "--message", toast][..], &t].concat()).await;
    assert_eq!(report["delivered"], 2, "{report}");
    assert_eq!(next_json(&mut ann).await["message"], "via the table");
    assert_eq!(next_json(&mut bob).await["message"], "via the table");
    let report = cli_json(&[&["send", "--connection", &a1, "--message", toast][..], &t].concat()).await;
    assert_eq!(report["delivered"], 1);
    assert_eq!(next_json(&mut ann).await["message"], "via the table");

    // A stale session (its connection is gone) and an expired one, written behind the gateway's back.
    let config = aws_sdk_dynamodb::config::Builder::from(&lambda_ws_local::server::local_aws_config())
        .endpoint_url(&endpoint)
        .build();
    let store = Arc::new(DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), &table));
    let now = lambda_ws::clock::unix_now_millis();
    let session = |id: &str, expires_at: i64| Session {
        connection_id: ConnectionId::new(id).unwrap(),
        identity: Some(Identity::user("ghost")),
        api_id: "local".into(),
        stage: "local".into(),
        endpoint: gw.management_endpoint(),
        source_ip: "127.0.0.1".into(),
        user_agent: None,
        connected_at: now,
        last_seen: now,
        expires_at,
        metadata: BTreeMap::new(),
        bound_channel: None,
    };
    let lobby = ChannelName::new("lobby").unwrap();
    for (id, expires_at) in [("stale1", now / 1000 + 3600), ("expired1", now / 1000 - 10)] {
        store.put_session(&session(id, expires_at)).await.unwrap();
        store.join(&session(id, expires_at), &lobby, 16).await.unwrap();
    }
    let listed = cli_json(&[&["sessions", "list", "--json", "--channel", "lobby"][..], &t].concat()).await;
    assert_eq!(ids(&listed), sorted(vec![a1.clone(), b1.clone(), "stale1".into()]), "expired ones are not listed");

    let (ok, out, _) = cli(&[&["cleanup", "--dry-run", "--check-connections"][..], &t].concat()).await;
    assert!(ok && out.contains("would remove 2 session(s): 1 expired, 1 stale"), "{out}");
    assert!(store.get_session(&ConnectionId::new("stale1").unwrap(), now / 1000).await.unwrap().is_some());
    let (ok, out, _) = cli(&[&["cleanup"][..], &t].concat()).await;
    assert!(ok && out.contains("removed 1 session(s): 1 expired, 0 stale"), "without the check only expiry: {out}");
    let (ok, out, _) = cli(&[&["cleanup", "--check-connections"][..], &t].concat()).await;
    assert!(ok && out.contains("removed 1 session(s): 0 expired, 1 stale"), "{out}");
    let listed = cli_json(&[&["sessions", "list", "--json"][..], &t].concat()).await;
    assert_eq!(ids(&listed), sorted(vec![a1.clone(), b1.clone()]), "live sessions are kept");

    let record = |expires_at| TokenRecord { identity: Identity::user("ann"), channel: None, expires_at, issued_at: 0 };
    store.put_token("old1", &record(now / 1000 - 5)).await.unwrap();
    store.put_token("old2", &record(now / 1000 - 5)).await.unwrap();
    store.put_token("fresh", &record(now / 1000 + 60)).await.unwrap();
    let (ok, out, _) = cli(&[&["tokens", "purge", "--dry-run"][..], &t].concat()).await;
    assert!(ok && out.contains("would purge 2"), "{out}");
    let (ok, out, _) = cli(&[&["tokens", "purge"][..], &t].concat()).await;
    assert!(ok && out.contains("purged 2"), "{out}");
    assert!(store.take_token("fresh").await.unwrap().is_some(), "live tokens stay");
    assert!(store.take_token("old1").await.unwrap().is_none());

    let (ok, _, stderr) = cli(&["sessions", "list", "--table", "no-such-table"]).await;
    assert!(!ok && stderr.contains("DynamoDB"), "{stderr}");
}

/// Every server-side example message of the reference documents, passed to `lambda-ws send` as
/// written, reaches a WebSocket client unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_messages_are_sent_unchanged_by_the_command() {
    let gw = gateway(StoreChoice::Memory, Duration::from_secs(60)).await;
    let url = gw.http_url();
    let (mut ws, id) = client(&gw, "alice", "general").await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/seed-messages.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in fixture["messages"].as_array().unwrap() {
        let message = case["message"].to_string();
        let report = cli_json(&["send", "--connection", &id, "--message", &message, "--gateway", url.as_str()]).await;
        assert_eq!(report["delivered"], 1, "{message}: {report}");
        assert_eq!(next_json(&mut ws).await, case["message"], "arrives as sent");
    }
    let bad = r#"{"type":"task_progress","task_id":123,"percent":"75"}"#;
    let (ok, _, stderr) = cli(&["send", "--all", "--message", bad, "--gateway", url.as_str()]).await;
    assert!(!ok && stderr.contains("task_progress: \"percent\" must be an integer 0-100"), "{stderr}");
}

/// Listening beyond loopback needs `--expose` and says what it exposes; replies still reach
/// clients (the endpoint keeps the `http` scheme whatever address the gateway listens on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_beyond_loopback_needs_expose() {
    let (ok, _, stderr) = cli(&["dev", "--host", "0.0.0.0", "--port", "0", "--template", "none.yaml"]).await;
    assert!(!ok && stderr.contains("--expose"), "{stderr}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lambda-ws"))
        .args(["dev", "--host", "0.0.0.0", "--port", "0", "--expose", "--template", "none.yaml"])
        .env("RUST_LOG", "warn")
        .env("LWS_RATE_CONNECT_PER_IP", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        if let Some(rest) = line.trim().strip_prefix("Demo page") {
            break rest.trim().trim_start_matches("http://0.0.0.0:").trim_end_matches('/').parse().unwrap();
        }
    };
    let mut errors = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let warning = tokio::time::timeout(Duration::from_secs(5), errors.next_line()).await.unwrap().unwrap();
    assert!(warning.as_deref().is_some_and(|w| w.contains("reachable from your network")), "{warning:?}");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /ws-token HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nx-lambda-ws: 1\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let body: Value = serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap();
    let url = format!("ws://{addr}/local?ws_token={}", body["token"].as_str().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    futures::SinkExt::send(&mut ws, Message::text(r#"{"action":"ping","ref":"p"}"#)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "pong", "the reply reached the client");
    child.kill().await.unwrap();
}

/// A route selection expression API Gateway would refuse stops `lambda-ws dev` at start-up.
#[tokio::test]
async fn a_bad_route_selection_expression_is_refused_at_start_up() {
    let path = std::env::temp_dir().join(format!("lws-bad-selection-{}.yaml", std::process::id()));
    let template = "Resources:\n  Api:\n    Type: AWS::ApiGatewayV2::Api\n    Properties:\n      ProtocolType: WEBSOCKET\n      \
                    RouteSelectionExpression: $request.header.action\n";
    std::fs::write(&path, template).unwrap();
    let (ok, _, stderr) = cli(&["dev", "--port", "0", "--template", path.to_str().unwrap()]).await;
    std::fs::remove_file(&path).unwrap();
    assert!(!ok, "it must not start");
    assert!(stderr.contains("route selection expression \"$request.header.action\""), "{stderr}");
}

/// `lambda-ws dev` runs the repository's functions with `template.yaml`'s environment and lists
/// it at start-up: parameters at their defaults, an override as `sam deploy` takes it, a
/// variable set in the shell over both, a resource as the gateway's own; an unknown parameter
/// stops it.
#[tokio::test]
async fn dev_lists_the_template_environment_it_applies() {
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lambda-ws"))
        .args(["dev", "--port", "0", "--template", template, "--parameter-overrides", "PresenceRules='room-*=50'"])
        .env("RUST_LOG", "warn")
        .env("LWS_HISTORY", "task-*=10/1m")
        .env_remove("LWS_CHANNEL_RULES")
        .env_remove("LWS_PRESENCE")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    while !banner.contains("Ctrl-C") {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        banner.push_str(&line);
        banner.push('\n');
    }
    child.kill().await.unwrap();
    for expected in [
        "parameters at their defaults but PresenceRules=room-*=50",
        "LWS_CHANNEL_RULES=lobby=all; general=all; room-*=authenticated; *=none   (parameter ChannelRules, default)",
        "LWS_PRESENCE=room-*=50   (parameter PresenceRules, override)",
        "LWS_HISTORY=task-*=10/1m   (shell)",
        "LWS_TABLE_NAME: the gateway's own (SessionsTable)",
    ] {
        assert!(banner.contains(expected), "{expected:?} in\n{banner}");
    }
    let (ok, _, stderr) = cli(&["dev", "--port", "0", "--template", template, "--parameter-overrides", "Nope=1"]).await;
    assert!(!ok && stderr.contains("no parameter Nope"), "{stderr}");
}
