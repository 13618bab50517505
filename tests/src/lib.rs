//! Test support for lambda-ws: the DynamoDB engine the test command starts, a Management API
//! server that records posts and answers what a test scripts, and API Gateway events built from
//! the sample files in `events/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lambda_ws::{DynamoDbStore, ManagementApi};
use serde_json::{Value, json};

pub mod ws;

/// The variable `scripts/test.sh` sets to the DynamoDB engine's endpoint.
pub const DYNAMODB_ENDPOINT_VAR: &str = "LWS_TEST_DYNAMODB_ENDPOINT";

/// AWS configuration for local endpoints (fixed test credentials, no look-ups).
pub use lambda_ws_local::server::local_aws_config;

/// A DynamoDB client for the engine started by the test command. Panics with instructions when
/// the variable is missing: these tests need the real engine, not a fake.
pub fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let endpoint = std::env::var(DYNAMODB_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{DYNAMODB_ENDPOINT_VAR} is not set: run the tests with scripts/test.sh, which starts the DynamoDB engine"
        )
    });
    let config = aws_sdk_dynamodb::config::Builder::from(&local_aws_config()).endpoint_url(endpoint).build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

static TABLES: AtomicU64 = AtomicU64::new(0);

/// A DynamoDB store over a new, empty table (one per test, so tests run in parallel).
pub async fn fresh_dynamodb_store() -> Arc<DynamoDbStore> {
    let client = dynamodb_client();
    let name = format!("lws-test-{}-{}", std::process::id(), TABLES.fetch_add(1, Ordering::SeqCst));
    let store = DynamoDbStore::new(client, name);
    store.create_table().await.expect("create table");
    Arc::new(store)
}

/// A Management API transport through the real SDK client.
pub fn management_api() -> Arc<ManagementApi> {
    Arc::new(ManagementApi::new(local_aws_config()))
}

/// A Management API transport whose posts time out after `timeout`.
pub fn management_api_with_timeout(timeout: std::time::Duration) -> ManagementApi {
    ManagementApi::new(local_aws_config()).with_attempt_timeout(timeout)
}

/// One request the Management API server received.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    /// The connection id from the path.
    pub connection_id: String,
    /// The body, parsed as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
}

#[derive(Debug, Default)]
struct MgmtState {
    posts: Vec<Posted>,
    /// Statuses to answer, in order, before succeeding, per connection.
    scripted: HashMap<String, VecDeque<u16>>,
    /// Connections that answer 410 to everything.
    gone: HashSet<String>,
    deleted: Vec<String>,
    attempts: HashMap<String, usize>,
    faults: Faults,
    /// Random failures answered so far.
    injected: usize,
    /// Xorshift state: the same faults every run.
    rng: u64,
}

/// Random faults the Management API server injects into posts to live connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Delay before every answer.
    pub latency: std::time::Duration,
    /// Share of posts answered 500.
    pub server_errors: f64,
    /// Share of posts answered 429.
    pub throttles: f64,
}

/// A Management API endpoint (`/{stage}/@connections/{id}`) that records what it is sent and
/// answers as scripted: 200 by default, 410/413/429/500 on demand, 413 over 128 KiB, with the
/// `x-amzn-ErrorType` header the SDK reads.
#[derive(Debug, Clone)]
pub struct MgmtServer {
    state: Arc<Mutex<MgmtState>>,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl MgmtServer {
    /// Starts the server on an ephemeral loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(MgmtState::default()));
        let app = Router::new()
            .route("/{stage}/@connections/{id}", post(post_to).get(get_conn).delete(delete_conn))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { state, addr }
    }

    /// `host:port`, as API Gateway puts it in `domainName` (here with the port).
    pub fn domain(&self) -> String {
        self.addr.to_string()
    }

    /// The endpoint a session for `stage` records.
    pub fn endpoint(&self, stage: &str) -> String {
        format!("http://{}/{stage}", self.addr)
    }

    /// Everything posted so far.
    pub fn posts(&self) -> Vec<Posted> {
        self.state.lock().unwrap().posts.clone()
    }

    /// Bodies posted to one connection.
    pub fn posts_to(&self, connection_id: &str) -> Vec<Value> {
        self.posts().into_iter().filter(|p| p.connection_id == connection_id).map(|p| p.body).collect()
    }

    /// How many requests (successful or not) reached one connection.
    pub fn attempts(&self, connection_id: &str) -> usize {
        self.state.lock().unwrap().attempts.get(connection_id).copied().unwrap_or(0)
    }

    /// Makes a connection answer 410 Gone from now on.
    pub fn set_gone(&self, connection_id: &str) {
        self.state.lock().unwrap().gone.insert(connection_id.to_owned());
    }

    /// Makes a connection answer these statuses, in order, before succeeding.
    pub fn script(&self, connection_id: &str, statuses: &[u16]) {
        self.state.lock().unwrap().scripted.insert(connection_id.to_owned(), statuses.iter().copied().collect());
    }

    /// Connections deleted through `DELETE @connections/{id}`.
    pub fn deleted(&self) -> Vec<String> {
        self.state.lock().unwrap().deleted.clone()
    }

    /// Injects random 500s and 429s (a fixed pseudo-random sequence) and latency from now on.
    pub fn set_faults(&self, faults: Faults) {
        let mut state = self.state.lock().unwrap();
        state.faults = faults;
        state.rng = 0x9E37_79B9_7F4A_7C15;
    }

    /// How many random faults were answered.
    pub fn injected(&self) -> usize {
        self.state.lock().unwrap().injected
    }

    /// Forgets recorded posts.
    pub fn clear(&self) {
        self.state.lock().unwrap().posts.clear();
    }
}

fn error_response(status: u16) -> Response {
    let kind = match status {
        410 => "GoneException",
        413 => "PayloadTooLargeException",
        429 => "LimitExceededException",
        403 => "ForbiddenException",
        _ => "InternalServerErrorException",
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-ErrorType", kind.parse().unwrap());
    (status, headers, json!({ "message": kind }).to_string()).into_response()
}

type Shared = State<Arc<Mutex<MgmtState>>>;

/// The status a request to `id` gets before any success, if scripted or gone.
fn scripted_status(state: &mut MgmtState, id: &str) -> Option<u16> {
    *state.attempts.entry(id.to_owned()).or_default() += 1;
    if state.gone.contains(id) {
        return Some(410);
    }
    state.scripted.get_mut(id).and_then(VecDeque::pop_front)
}

/// A random fault for this post, if the dice say so.
fn random_fault(state: &mut MgmtState) -> Option<u16> {
    let Faults { server_errors, throttles, .. } = state.faults;
    if server_errors + throttles <= 0.0 {
        return None;
    }
    state.rng ^= state.rng << 13;
    state.rng ^= state.rng >> 7;
    state.rng ^= state.rng << 17;
    let roll = (state.rng >> 11) as f64 / (1u64 << 53) as f64;
    let status = if roll < server_errors {
        500
    } else if roll < server_errors + throttles {
        429
    } else {
        return None;
    };
    state.injected += 1;
    Some(status)
}

async fn post_to(State(shared): Shared, Path((_stage, id)): Path<(String, String)>, body: Bytes) -> Response {
    let latency = shared.lock().unwrap().faults.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut state = shared.lock().unwrap();
    if let Some(status) = scripted_status(&mut state, &id).or_else(|| random_fault(&mut state)) {
        return error_response(status);
    }
    if body.len() > 128 * 1024 {
        return error_response(413);
    }
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.posts.push(Posted { connection_id: id, body });
    StatusCode::OK.into_response()
}

async fn get_conn(State(state): Shared, Path((_stage, id)): Path<(String, String)>) -> Response {
    let mut state = state.lock().unwrap();
    if let Some(status) = scripted_status(&mut state, &id) {
        return error_response(status);
    }
    let body = json!({
        "connectedAt": "2026-11-23T15:00:00Z",
        "lastActiveAt": "2026-11-23T15:05:00Z",
        "identity": { "sourceIp": "203.0.113.7", "userAgent": "test" }
    });
    (StatusCode::OK, body.to_string()).into_response()
}

async fn delete_conn(State(state): Shared, Path((_stage, id)): Path<(String, String)>) -> Response {
    let mut state = state.lock().unwrap();
    if let Some(status) = scripted_status(&mut state, &id) {
        return error_response(status);
    }
    state.deleted.push(id.clone());
    state.gone.insert(id);
    StatusCode::NO_CONTENT.into_response()
}

/// The repository's `events/` folder.
pub fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// A sample event from `events/`, as JSON.
pub fn sample_event(name: &str) -> Value {
    let path = events_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Builds WebSocket events from the sample files, pointed at a Management API server.
#[derive(Debug, Clone)]
pub struct Events {
    /// `domainName` to put in events.
    pub domain: String,
    /// `stage`.
    pub stage: String,
    /// `apiId`.
    pub api_id: String,
}

impl Events {
    /// Events whose domain is `server`'s address.
    pub fn for_server(server: &MgmtServer) -> Self {
        Self { domain: server.domain(), stage: "prod".into(), api_id: "abc123defg".into() }
    }

    fn build(&self, file: &str, connection_id: &str, edit: impl FnOnce(&mut Value)) -> ApiGatewayWebsocketProxyRequest {
        let mut event = sample_event(file);
        let ctx = &mut event["requestContext"];
        ctx["connectionId"] = json!(connection_id);
        ctx["domainName"] = json!(self.domain);
        ctx["stage"] = json!(self.stage);
        ctx["apiId"] = json!(self.api_id);
        ctx["connectedAt"] = json!(lambda_ws::clock::unix_now_millis());
        edit(&mut event);
        serde_json::from_value(event).expect("event deserializes")
    }

    /// A `$connect` from `events/connect.json` with this query (`None` values removed) and Origin.
    pub fn connect(
        &self,
        connection_id: &str,
        query: &[(&str, Option<&str>)],
        origin: Option<&str>,
    ) -> ApiGatewayWebsocketProxyRequest {
        self.build("connect.json", connection_id, |e| {
            let q: serde_json::Map<String, Value> =
                query.iter().filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), json!(v)))).collect();
            let mq: serde_json::Map<String, Value> = q.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
            e["queryStringParameters"] = Value::Object(q);
            e["multiValueQueryStringParameters"] = Value::Object(mq);
            for key in ["headers", "multiValueHeaders"] {
                let headers = e[key].as_object_mut().unwrap();
                match origin {
                    Some(o) => headers.insert("Origin".into(), if key == "headers" { json!(o) } else { json!([o]) }),
                    None => headers.remove("Origin"),
                };
            }
        })
    }

    /// A MESSAGE event from `events/message-chat.json` with `body`, its `routeKey` the body's
    /// `action` as API Gateway's `$request.body.action` selects it (`$default` without one).
    pub fn message(&self, connection_id: &str, body: &str) -> ApiGatewayWebsocketProxyRequest {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let action = parsed.as_ref().and_then(|b| b.get("action")).and_then(Value::as_str).map(str::to_owned);
        let route = action.filter(|a| !a.starts_with('$')).unwrap_or_else(|| "$default".to_owned());
        self.build("message-chat.json", connection_id, |e| {
            e["body"] = json!(body);
            e["requestContext"]["routeKey"] = json!(route);
        })
    }

    /// A `$disconnect` from `events/disconnect.json`.
    pub fn disconnect(&self, connection_id: &str) -> ApiGatewayWebsocketProxyRequest {
        self.build("disconnect.json", connection_id, |_| {})
    }
}

/// A DynamoDB engine process of a test's own, on disk, that can be stopped and started again on
/// the same port with its data (for fault-injection tests; other tests share the engine the
/// test command starts).
#[derive(Debug)]
pub struct OwnDynamoDb {
    port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl OwnDynamoDb {
    /// Starts dynalite (from the workspace's `node_modules`, which the test command installs)
    /// with its data in a fresh directory.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("lws-dynamodb-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut engine = Self { port, dir, child: None };
        engine.resume();
        engine
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client for it.
    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(&local_aws_config()).endpoint_url(self.endpoint()).build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// Kills the process; its data stays on disk.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port and data, and waits until it accepts connections.
    pub fn resume(&mut self) {
        self.stop();
        let cli = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../node_modules/dynalite/cli.js");
        assert!(cli.exists(), "{} is missing: run the tests with scripts/test.sh (it runs npm ci)", cli.display());
        let port = self.port.to_string();
        let child = std::process::Command::new("node")
            .arg(&cli)
            .args(["--host", "127.0.0.1", "--port", &port, "--path"])
            .arg(&self.dir)
            .args(["--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node runs");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "dynalite did not start on port {}", self.port);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for OwnDynamoDb {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
