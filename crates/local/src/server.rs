//! The gateway's endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use lambda_ws::handlers::{self, TokenRequest};
use lambda_ws::protocol::{Level, TaskProgress, Toast};
use lambda_ws::{App, Config, DynamoDbStore, GATEWAY_SECRET_HEADER, Identity, MemoryStore, Outbound, Target};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::events::{self, EventContext, iso8601, new_id, parse_query};
use crate::registry::{Connection, LocalTransport, Outgoing, PostError, Registry};
use crate::routes::{Handler, RouteTable};

/// API Gateway's limit on one frame.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// Read and write buffer of each WebSocket. Tungstenite allocates (and zero-fills) the read buffer
/// for every connection, idle or not: at 2 KiB, 10,000 idle connections took 67 MiB, at 1 KiB 57 MiB,
/// with echo throughput within run-to-run noise (a frame over 1 KiB takes more than one read).
pub const SOCKET_BUFFER_BYTES: usize = 1024;

/// Where sessions are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded in-memory store (default).
    Memory,
    /// A DynamoDB endpoint (the table is created if missing).
    DynamoDb {
        /// e.g. `http://127.0.0.1:8000`.
        endpoint: String,
        /// The table name.
        table: String,
    },
}

/// How to run the gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The stage, the first path segment (`local`).
    pub stage: String,
    /// The API id put in events.
    pub api_id: String,
    /// A connection idle this long is closed (API Gateway: 10 minutes).
    pub idle_timeout: Duration,
    /// No connection lives longer (API Gateway: 2 hours).
    pub max_lifetime: Duration,
    /// The identity the token issuer gives when the request names none (`x-lambda-ws-user`).
    pub dev_user: String,
    /// Handler configuration (the same `LWS_*` variables as in Lambda).
    pub config: Config,
    /// Where sessions live.
    pub store: StoreChoice,
    /// The routes.
    pub routes: RouteTable,
    /// Where [`Handler::Invoke`] routes are invoked (a Lambda Invoke API such as
    /// `cargo lambda watch` serves, e.g. `http://127.0.0.1:9000`).
    pub invoke_endpoint: Option<String>,
    /// The secret the gateway adds to every `$connect` as `X-Lws-Gateway-Secret`, as a deployed
    /// front would (`lambda-ws dev` takes the first of `LWS_GATEWAY_SECRET`). A header of that
    /// name sent by a client is always dropped, so a browser cannot supply it.
    pub gateway_secret: Option<String>,
    /// How long one write to a client may take before the connection is closed (a client that
    /// stops reading would otherwise hold its task, and its idle and lifetime timers, forever).
    pub write_timeout: Duration,
    /// A folder of your own pages, served at `/pages/<file>` on the gateway's origin, so that
    /// their token requests (`fetch("/ws-token")`) are same-origin as in your app.
    pub pages: Option<std::path::PathBuf>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            stage: "local".into(),
            api_id: "local".into(),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(7200),
            dev_user: "dev-user".into(),
            config: Config::default(),
            store: StoreChoice::Memory,
            routes: RouteTable::builtin(),
            invoke_endpoint: None,
            gateway_secret: None,
            pages: None,
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The port could not be bound.
    #[error("cannot listen: {0}")]
    Bind(#[from] std::io::Error),
    /// The DynamoDB table could not be reached or created.
    #[error("DynamoDB: {0}")]
    Store(#[from] lambda_ws::StoreError),
}

struct Shared {
    app: App,
    lambda: Option<aws_sdk_lambda::Client>,
    registry: Arc<Registry>,
    routes: RouteTable,
    options: GatewayOptions,
    /// The port it listens on (what `Host` must name) and the WebSocket path (`/<stage>`).
    port: u16,
    stage_path: Arc<str>,
    /// `domainName`, stage and API id, shared by every connection's events.
    domain: Arc<str>,
    stage: Arc<str>,
    api_id: Arc<str>,
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
    stage: String,
    registry: Arc<Registry>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    app: App,
}

impl Gateway {
    /// Binds `addr` (port 0 for an ephemeral one) and serves until [`Gateway::shutdown`].
    pub async fn start(addr: SocketAddr, options: GatewayOptions) -> Result<Self, StartError> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let domain = addr.to_string();
        let endpoint = format!("http://{domain}/{}", options.stage);
        let mut options = options;
        if options.config.management_endpoint.is_none() {
            // Replies go to this gateway's own endpoint, with the right scheme whatever address it
            // listens on (and, with a gateway secret, never to a domain name an event names).
            options.config.management_endpoint = Some(endpoint.clone());
        }
        let aws = local_aws_config();
        let registry = Arc::new(Registry::default());
        let transport = Arc::new(LocalTransport::new(registry.clone(), endpoint, aws.clone()));
        let app = match &options.store {
            StoreChoice::Memory => App::new(options.config.clone(), Arc::new(MemoryStore::new()), transport),
            StoreChoice::DynamoDb { endpoint, table } => {
                let conf = aws_sdk_dynamodb::config::Builder::from(&aws).endpoint_url(endpoint).build();
                let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(conf), table);
                if let Err(e) = store.create_table().await {
                    // Most often the table exists already; any other problem shows on first use.
                    tracing::debug!(error = %e, "create table");
                }
                App::new(options.config.clone(), Arc::new(store), transport)
            }
        };
        let stage = options.stage.clone();
        let lambda = options.invoke_endpoint.as_ref().map(|endpoint| {
            let timeout = aws_sdk_lambda::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(29))
                .build();
            let conf =
                aws_sdk_lambda::config::Builder::from(&aws).endpoint_url(endpoint).timeout_config(timeout).build();
            aws_sdk_lambda::Client::from_conf(conf)
        });
        let routes = options.routes.clone();
        let (domain, stage_name, api_id) =
            (domain.into(), options.stage.as_str().into(), options.api_id.as_str().into());
        let shared = Arc::new(Shared {
            port: addr.port(),
            stage_path: format!("/{}", options.stage).into(),
            app: app.clone(),
            lambda,
            registry: registry.clone(),
            routes,
            options,
            domain,
            stage: stage_name,
            api_id,
        });
        let router = Router::new()
            .route("/", get(demo_page))
            .route("/client/{file}", get(client_file))
            .route("/pages/{*path}", get(page_file))
            .route("/ws-token", post(issue_token))
            .route("/demo/task", post(demo_task))
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            .route("/_admin/sessions", get(admin_sessions))
            .route("/_admin/cleanup", post(admin_cleanup))
            .route("/_admin/tokens/purge", post(admin_purge_tokens))
            .route(&format!("/{stage}"), get(upgrade))
            .route(
                &format!("/{stage}/@connections/{{id}}"),
                post(post_to_connection).get(get_connection).delete(delete_connection),
            )
            // AWS's guide has callers percent-encode the command (`/prod/%40connections/R0oX...%3D`),
            // and SDKs that encode `@` send that: API Gateway reads it as `@connections` (the id
            // itself is decoded by the path extractor).
            .route(
                &format!("/{stage}/%40connections/{{id}}"),
                post(post_to_connection).get(get_connection).delete(delete_connection),
            )
            .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
            .with_state(shared);
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            let graceful = axum::serve(listener, service).with_graceful_shutdown(async {
                let _ = signal.await;
            });
            if let Err(e) = graceful.await {
                tracing::error!(error = %e, "server stopped");
            }
        });
        Ok(Self { addr, stage, registry, shutdown: Some(shutdown), task, app })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://host:port/stage`.
    pub fn websocket_url(&self) -> String {
        format!("ws://{}/{}", self.addr, self.stage)
    }

    /// The Management API endpoint to give SDKs: `http://host:port/stage`.
    pub fn management_endpoint(&self) -> String {
        format!("http://{}/{}", self.addr, self.stage)
    }

    /// The base URL for the Lambda Invoke API and the token issuer: `http://host:port`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.registry.len()
    }

    /// The app the handlers run with (its store can be inspected in tests).
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Closes every connection (1001, running their `$disconnect`s) and stops serving.
    pub async fn shutdown(mut self) {
        // Not `Registry::close`: each connection stays registered until its task ends, so the
        // wait below covers the closes in progress.
        for connection in self.registry.ids().iter().filter_map(|id| self.registry.get(id)) {
            let _ = connection.push(Outgoing::Close(1001, "Going away"));
        }
        for _ in 0..100 {
            if self.registry.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

/// AWS configuration for local endpoints: fixed credentials and region, nothing looked up (no
/// profile files, no instance metadata). Local endpoints accept any signature.
pub fn local_aws_config() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "lambda-ws-dev"),
        ))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build()
}

fn now_ms() -> i64 {
    lambda_ws::clock::unix_now_millis()
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body.to_string())
        .into_response()
}

/// An AWS-style error: status, `x-amzn-ErrorType` and `{"message":…}`.
fn aws_error(status: StatusCode, kind: &'static str, message: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-ErrorType", HeaderValue::from_static(kind));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (status, headers, json!({ "message": message }).to_string()).into_response()
}

// ---- who may call the gateway ----------------------------------------------------------------

/// Refuses what a web page the developer happens to visit could send: any request whose `Host`
/// is not this gateway (DNS rebinding: a name that resolves to 127.0.0.1), and, on every
/// endpoint that changes or reveals state (token issuer, Invoke API, Management API, admin, demo
/// task), any request whose `Origin` is another site's. SDKs and command-line tools send no
/// `Origin`, so they keep working; the demo page and `--pages` are same-origin.
async fn guard(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !host.is_some_and(|h| serves_host(h, shared.port)) {
        tracing::warn!(host = host.map(lambda_ws::handlers::loggable), "request for another host refused");
        return json_response(403, &json!({ "error": { "code": "forbidden", "message": "unknown Host" } }));
    }
    let path = request.uri().path();
    let read_only_page = request.method() == axum::http::Method::GET
        && (path == "/" || path.starts_with("/client/") || path.starts_with("/pages/") || path == &*shared.stage_path);
    if !read_only_page && let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let own = origin.strip_prefix("http://").is_some_and(|o| serves_host(o, shared.port));
        let listed = path == "/ws-token"
            && shared.app.config.allowed_origins != lambda_ws::OriginPolicy::Any
            && shared.app.config.allowed_origins.allows(Some(origin));
        if !own && !listed {
            tracing::warn!(origin = %lambda_ws::handlers::loggable(origin), path, "cross-site request refused");
            return json_response(403, &json!({ "error": { "code": "forbidden", "message": "origin not allowed" } }));
        }
    }
    next.run(request).await
}

/// Whether a `Host` (or an origin's host) names this gateway: `localhost` or an IP address, with
/// its port. A domain name is refused, which is what stops DNS rebinding.
fn serves_host(host: &str, port: u16) -> bool {
    let (name, given_port) = match host.rsplit_once(':') {
        Some((name, p)) if !name.is_empty() && !p.contains(']') => (name, p.parse::<u16>().ok()),
        _ => (host, Some(80)),
    };
    let literal = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    let local_name = name.eq_ignore_ascii_case("localhost") || literal.parse::<std::net::IpAddr>().is_ok();
    local_name && given_port == Some(port)
}

// ---- the WebSocket API ------------------------------------------------------------------------

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    mut headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    headers.remove(GATEWAY_SECRET_HEADER);
    if let Some(secret) = shared.options.gateway_secret.as_deref().and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(GATEWAY_SECRET_HEADER, secret);
    }
    let ctx = EventContext {
        connection_id: new_id(),
        connected_at: now_ms(),
        domain_name: shared.domain.clone(),
        stage: shared.stage.clone(),
        api_id: shared.api_id.clone(),
        source_ip: peer.ip().to_string(),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    let event = ctx.connect(&headers, &parse_query(query.as_deref()), ctx.connected_at);
    let RouteAnswer { status, body, subprotocol } =
        invoke_route(&shared, "$connect", &event).await.unwrap_or_else(|| RouteAnswer::status(200));
    if !(200..300).contains(&status) {
        tracing::info!(status, connection_id = %ctx.connection_id, "$connect refused the upgrade");
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    // Small I/O buffers: tungstenite's 128 KiB defaults would cost 256 KiB per connection once
    // touched. A buffer is a read chunk, not a limit: 32 KiB frames still arrive whole.
    // A `$connect` that answers `Sec-WebSocket-Protocol` completes the handshake with that
    // subprotocol (if the client offered it); otherwise none is chosen, and a client that asked
    // for one fails the connection, as with API Gateway.
    let ws = match subprotocol {
        Some(protocol) => ws.protocols([protocol]),
        None => ws,
    };
    ws.read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(lambda_ws::protocol::MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run_connection(shared, ctx, socket))
}

/// Runs the handler of `route_key`; `None` when the route does not exist. With a gateway secret,
/// every event carries it (messages and `$disconnect` too), as a front that adds it would.
async fn invoke_route(shared: &Shared, route_key: &str, event: &Value) -> Option<RouteAnswer> {
    let handler = shared.routes.get(route_key)?;
    let mut signed;
    let event = match shared.options.gateway_secret.as_deref() {
        Some(secret) => {
            signed = event.clone();
            if !signed["headers"].is_object() {
                signed["headers"] = json!({});
            }
            signed["headers"][GATEWAY_SECRET_HEADER] = json!(secret);
            &signed
        }
        None => event,
    };
    let typed = match events::typed(event) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "event does not deserialize");
            return Some(RouteAnswer::status(500));
        }
    };
    let response = match handler {
        Handler::Connect => handlers::connect(&shared.app, &typed).await,
        Handler::Disconnect => handlers::disconnect(&shared.app, &typed).await,
        Handler::Messages(router) => handlers::message(&shared.app, router, &typed).await,
        Handler::Invoke(function) => return Some(invoke_function(shared, function, event).await),
    };
    let body = match response.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t,
        _ => String::new(),
    };
    let subprotocol =
        response.headers.get(header::SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Some(RouteAnswer { status: u16::try_from(response.status_code).unwrap_or(500), body, subprotocol })
}

/// What a route's integration answered: status, body and, from `$connect`, the
/// `Sec-WebSocket-Protocol` header that completes the handshake with a subprotocol.
#[derive(Debug)]
struct RouteAnswer {
    status: u16,
    body: String,
    subprotocol: Option<String>,
}

impl RouteAnswer {
    fn status(status: u16) -> Self {
        Self { status, body: String::new(), subprotocol: None }
    }
}

/// Invokes a route's function through the Lambda Invoke API, as API Gateway's Lambda proxy
/// integration does; a failed invocation answers 500 (502 for an unreachable endpoint).
async fn invoke_function(shared: &Shared, function: &str, event: &Value) -> RouteAnswer {
    let Some(lambda) = &shared.lambda else {
        tracing::error!(function, "route invokes a function but no --invoke-endpoint is set");
        return RouteAnswer::status(500);
    };
    let result = lambda
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
        .send()
        .await;
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            let text = aws_sdk_lambda::error::DisplayErrorContext(&e).to_string();
            tracing::error!(function, error = %text, "invoke failed");
            return RouteAnswer::status(502);
        }
    };
    if let Some(kind) = out.function_error() {
        tracing::error!(function, kind, "function failed");
        return RouteAnswer::status(500);
    }
    let answer: Value = out.payload().and_then(|p| serde_json::from_slice(p.as_ref()).ok()).unwrap_or(Value::Null);
    let status = answer.get("statusCode").and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok()).unwrap_or(200);
    let body = answer.get("body").and_then(Value::as_str).unwrap_or_default().to_owned();
    let headers = answer.get("headers").and_then(Value::as_object);
    let subprotocol = headers
        .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol")))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_owned);
    RouteAnswer { status, body, subprotocol }
}

/// Serves one open WebSocket until it closes, then runs `$disconnect`.
///
/// This future lives as long as the connection, so it is kept small: one socket (not a split
/// pair), one timer for the nearer of the idle and lifetime deadlines, and the `$disconnect`
/// invocation boxed so its (large) state is only allocated when the connection ends.
async fn run_connection(shared: Arc<Shared>, ctx: EventContext, mut socket: WebSocket) {
    let connection = Arc::new(Connection::new(ctx));
    let ctx = &connection.ctx;
    shared.registry.insert(&ctx.connection_id, connection.clone());
    let ends_at = Instant::now() + shared.options.max_lifetime;
    let mut idle_deadline = Instant::now() + shared.options.idle_timeout;
    let (status, reason): (u16, String) = loop {
        // tokio::select! drops the branch futures before a handler runs, so handlers may use the
        // socket the `recv` future borrowed.
        tokio::select! {
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Ok(Message::Binary(_))) => {
                        // API Gateway rejects binary frames and disconnects the client with 1003.
                        break Box::pin(close(&mut socket, 1003, "Binary frames are not supported", "Binary frames are not supported")).await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        idle_deadline = Instant::now() + shared.options.idle_timeout;
                        continue;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        // Answer the close (RFC 6455 §5.5.1) so the client sees its own code, not
                        // 1006; `$disconnect` reports the client's code and reason (1005: none).
                        let ended = frame.as_ref().map_or((1005, String::new()), |f| (f.code, f.reason.to_string()));
                        let _ = tokio::time::timeout(Duration::from_secs(1), futures::SinkExt::close(&mut socket)).await;
                        break ended;
                    }
                    Some(Err(e)) => break Box::pin(socket_error(&mut socket, &ctx.connection_id, e)).await,
                    None => break (1006, String::new()),
                };
                idle_deadline = Instant::now() + shared.options.idle_timeout;
                connection.last_active_at.store(now_ms(), Ordering::Relaxed);
                tokio::spawn(handle_frame(shared.clone(), connection.clone(), text));
            }
            out = connection.next() => match out {
                Outgoing::Text(payload) => {
                    // Management API posts of non-UTF-8 data arrive as binary frames.
                    let message = match Utf8Bytes::try_from(payload.clone()) {
                        Ok(text) => Message::Text(text),
                        Err(_) => Message::Binary(payload),
                    };
                    // A client that stops reading must not hold this loop (and its timers): a
                    // write that cannot finish in time ends the connection.
                    match tokio::time::timeout(shared.options.write_timeout, socket.send(message)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break (1006, String::new()),
                        Err(_) => break (1006, "Client is not reading".to_owned()),
                    }
                }
                Outgoing::Close(code, why) => break Box::pin(close(&mut socket, code, why, why)).await,
            },
            () = tokio::time::sleep_until(idle_deadline.min(ends_at)) => {
                let why = if idle_deadline <= ends_at { "Idle timeout" } else { "Connection lifetime reached" };
                break Box::pin(close(&mut socket, 1001, "Going away", why)).await;
            }
        }
    };
    shared.registry.remove(&ctx.connection_id);
    connection.end();
    drop(socket);
    let event = ctx.disconnect(status, &reason, now_ms());
    Box::pin(invoke_route(&shared, "$disconnect", &event)).await;
}

/// Sends a close frame (giving up after a second if the client is not reading); returns the
/// status and reason `$disconnect` reports.
async fn close(socket: &mut WebSocket, code: u16, frame_reason: &'static str, reason: &str) -> (u16, String) {
    let frame = Message::Close(Some(CloseFrame { code, reason: frame_reason.into() }));
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(frame)).await;
    (code, reason.to_owned())
}

/// A read error: an oversize frame or message closes with 1009, as API Gateway does.
async fn socket_error(socket: &mut WebSocket, id: &str, error: axum::Error) -> (u16, String) {
    let text = error.to_string();
    if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
        return close(socket, 1009, "Message too big", "Message too big").await;
    }
    tracing::debug!(connection_id = %id, error = %text, "socket error");
    (1006, String::new())
}

async fn handle_frame(shared: Arc<Shared>, connection: Arc<Connection>, text: String) {
    let ctx = &connection.ctx;
    let Some((route_key, _)) = shared.routes.select(&text) else {
        let frame = json!({ "message": "Forbidden", "connectionId": ctx.connection_id, "requestId": new_id() });
        let _ = shared.registry.post(&ctx.connection_id, Bytes::from(frame.to_string()));
        return;
    };
    let event = ctx.message(route_key, &text, now_ms());
    let answer = invoke_route(&shared, route_key, &event).await;
    // A route response sends the handler's body back (API Gateway sends nothing for an empty one).
    if let Some(RouteAnswer { body, .. }) = answer.filter(|a| !a.body.is_empty())
        && shared.routes.answers_with_response(route_key)
    {
        let _ = shared.registry.post(&ctx.connection_id, Bytes::from(body));
    }
}

// ---- the Management API ------------------------------------------------------------------------

async fn post_to_connection(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    match shared.registry.post(&id, body) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(PostError::Gone) => aws_error(StatusCode::GONE, "GoneException", "Connection is gone"),
        Err(PostError::TooLarge) => {
            aws_error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLargeException", "Payload over 128 KiB")
        }
        Err(PostError::Full) => aws_error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            "The WebSocket client side buffer is full",
        ),
    }
}

async fn get_connection(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(c) = shared.registry.get(&id) else {
        return aws_error(StatusCode::GONE, "GoneException", "Connection is gone");
    };
    let mut identity = json!({ "sourceIp": c.ctx.source_ip });
    if let Some(ua) = &c.ctx.user_agent {
        identity["userAgent"] = json!(ua);
    }
    let body = json!({
        "connectedAt": iso8601(c.ctx.connected_at),
        "lastActiveAt": iso8601(c.last_active_at.load(Ordering::Relaxed)),
        "identity": identity,
    });
    json_response(200, &body)
}

async fn delete_connection(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.registry.close(&id, 1000, "") {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => aws_error(StatusCode::GONE, "GoneException", "Connection is gone"),
    }
}

// ---- token issuer, Invoke API, demo ---------------------------------------------------------------

/// The header that picks the development identity of a request.
pub const DEV_USER_HEADER: &str = "x-lambda-ws-user";

fn dev_identity(shared: &Shared, headers: &HeaderMap) -> Identity {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    let user = header(DEV_USER_HEADER).unwrap_or(&shared.options.dev_user);
    let groups =
        header("x-lambda-ws-groups").map(|g| g.split(',').map(str::trim).map(str::to_owned).collect::<Vec<_>>());
    Identity::user(user).with_groups(groups.unwrap_or_default())
}

async fn issue_token(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let channel = parse_query(query.as_deref())
        .remove("channel")
        .and_then(|mut v| v.pop())
        .or_else(|| serde_json::from_slice::<Value>(&body).ok()?.get("channel")?.as_str().map(str::to_owned));
    let request = TokenRequest {
        identity: Some(dev_identity(&shared, &headers)),
        origin: header("origin"),
        csrf_header: header(&shared.app.config.csrf_header).is_some(),
        channel,
    };
    let answer = handlers::issue_token(&shared.app, request).await;
    json_response(answer.status, &answer.body)
}

async fn invoke(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A name, a partial ARN or a full ARN; a `:qualifier` suffix is ignored.
    let function = name.rsplit(":function:").next().unwrap_or(&name).split(':').next().unwrap_or_default().to_owned();
    let kind = match function.as_str() {
        "sender" | "SenderFunction" => "sender",
        "cleanup" | "CleanupFunction" => "cleanup",
        _ => {
            let text = format!("Function not found: {function} (this gateway serves sender and cleanup)");
            return aws_error(StatusCode::NOT_FOUND, "ResourceNotFoundException", &text);
        }
    };
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) if body.is_empty() => Value::Null,
        Err(e) => return aws_error(StatusCode::BAD_REQUEST, "InvalidRequestContentException", &e.to_string()),
    };
    let invocation = headers.get("x-amz-invocation-type").and_then(|v| v.to_str().ok()).unwrap_or("RequestResponse");
    let run = {
        let shared = shared.clone();
        async move {
            match kind {
                "sender" => handlers::send(&shared.app, payload).await,
                _ => match handlers::cleanup(&shared.app).await {
                    Ok(report) => serde_json::to_value(report).unwrap_or(Value::Null),
                    Err(e) => json!({ "errorType": "StoreError", "errorMessage": e.to_string() }),
                },
            }
        }
    };
    match invocation {
        "Event" => {
            tokio::spawn(run);
            StatusCode::ACCEPTED.into_response()
        }
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        _ => {
            let result = run.await;
            let mut response = json_response(200, &result);
            response.headers_mut().insert("x-amz-executed-version", HeaderValue::from_static("$LATEST"));
            response
        }
    }
}

/// Starts a fake long task for the caller: `task_progress` every 150 ms to all their tabs, then
/// a toast. Shows the sender driving a progress bar.
async fn demo_task(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let user = dev_identity(&shared, &headers).user_id;
    let task_id = format!("task-{}", &new_id()[..6]);
    let sender = shared.app.sender();
    let id = task_id.clone();
    tokio::spawn(async move {
        let target = Target::User(user);
        for step in 0..=10u8 {
            let done = step == 10;
            let mut progress = TaskProgress::new(id.clone(), step * 10);
            progress.message = Some(if done { "done".into() } else { format!("step {step} of 10") });
            progress.done = Some(done);
            let progress = Outbound::TaskProgress(progress);
            let _ = sender.send(&target, &progress, &[]).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let mut toast = Toast::new(Level::Success, format!("{id} finished"));
        toast.title = Some("Task complete".into());
        toast.timeout_ms = Some(4000);
        let toast = Outbound::Toast(toast);
        let _ = sender.send(&target, &toast, &[]).await;
    });
    json_response(202, &json!({ "task_id": task_id }))
}

const DEMO_HTML: &str = include_str!("../../../clients/js/demo/index.html");
const CLIENT_JS: &str = include_str!("../../../clients/js/websocket-manager.js");
const DEMO_UI_JS: &str = include_str!("../../../clients/js/demo/demo-ui.js");

async fn demo_page(State(shared): State<Arc<Shared>>) -> Html<String> {
    Html(DEMO_HTML.replace("{{STAGE}}", &shared.options.stage))
}

async fn client_file(Path(file): Path<String>) -> Response {
    let body = match file.as_str() {
        "websocket-manager.js" => CLIENT_JS,
        "demo-ui.js" => DEMO_UI_JS,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], body).into_response()
}

/// `GET /pages/<path>`: a file of [`GatewayOptions::pages`]. Only plain path segments are
/// followed (no `..`, no hidden files), so nothing outside the folder is served.
async fn page_file(State(shared): State<Arc<Shared>>, Path(path): Path<String>) -> Response {
    let Some(folder) = shared.options.pages.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let plain = |segment: &str| !segment.is_empty() && !segment.starts_with('.') && !segment.contains('\\');
    if !path.split('/').all(plain) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let file = folder.join(&path);
    let kind = match file.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => "application/octet-stream",
    };
    match tokio::task::spawn_blocking(move || std::fs::read(file)).await {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, kind)], body).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

// ---- operator endpoints (what `lambda-ws sessions|cleanup|tokens --gateway` calls) -------------

fn flag(query: &HashMap<String, Vec<String>>, name: &str) -> bool {
    query.get(name).and_then(|v| v.last()).is_some_and(|v| matches!(v.as_str(), "" | "1" | "true" | "yes"))
}

fn admin_error(e: &lambda_ws::StoreError) -> Response {
    json_response(500, &json!({ "error": { "code": "internal", "message": e.to_string() } }))
}

/// `GET /_admin/sessions[?channel=|user=][&limit=]`: live sessions with their channels.
async fn admin_sessions(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let query = parse_query(query.as_deref());
    let first = |name: &str| query.get(name).and_then(|v| v.last()).filter(|v| !v.is_empty()).cloned();
    let selection = match (first("channel"), first("user")) {
        (Some(_), Some(_)) => {
            return json_response(
                400,
                &json!({ "error": { "code": "bad_request", "message": "give channel or user, not both" } }),
            );
        }
        (Some(channel), None) => match lambda_ws::ChannelName::new(channel) {
            Ok(channel) => lambda_ws::admin::Selection::Channel(channel),
            Err(e) => {
                return json_response(400, &json!({ "error": { "code": "bad_channel", "message": e.to_string() } }));
            }
        },
        (None, Some(user)) => lambda_ws::admin::Selection::User(user),
        (None, None) => lambda_ws::admin::Selection::All,
    };
    let limit = first("limit").and_then(|l| l.parse().ok());
    let now = shared.app.clock.now_secs();
    match lambda_ws::admin::list_sessions(&*shared.app.sessions, &selection, limit, now, &|_| {}).await {
        Ok(sessions) => json_response(200, &json!(sessions)),
        Err(e) => admin_error(&e),
    }
}

/// `POST /_admin/cleanup[?dry_run][&check_connections]`.
async fn admin_cleanup(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let query = parse_query(query.as_deref());
    let options = lambda_ws::admin::CleanupOptions {
        dry_run: flag(&query, "dry_run"),
        check_connections: flag(&query, "check_connections"),
    };
    match lambda_ws::admin::cleanup(&shared.app, options, &|_| {}).await {
        Ok(summary) => json_response(200, &json!(summary)),
        Err(e) => admin_error(&e),
    }
}

/// `POST /_admin/tokens/purge[?dry_run]`.
async fn admin_purge_tokens(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let dry_run = flag(&parse_query(query.as_deref()), "dry_run");
    match lambda_ws::admin::purge_tokens(&shared.app, dry_run).await {
        Ok(purged) => json_response(200, &json!({ "purged": purged, "dry_run": dry_run })),
        Err(e) => admin_error(&e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_this_gateway_is_served() {
        for ok in ["127.0.0.1:3001", "localhost:3001", "LOCALHOST:3001", "[::1]:3001", "192.168.1.20:3001"] {
            assert!(super::serves_host(ok, 3001), "{ok}");
        }
        for refused in
            ["evil.example:3001", "127.0.0.1:3002", "localhost", "127.0.0.1", "rebind.127.0.0.1.nip.io:3001", ""]
        {
            assert!(!super::serves_host(refused, 3001), "{refused}");
        }
        assert!(super::serves_host("localhost", 80));
    }

    use super::*;

    #[test]
    fn query_strings_decode() {
        let q = parse_query(Some("ws_token=a%2Db&channel=lobby&x=1+2&x=3&flag&bad=%zz&end=%4"));
        assert_eq!(q["ws_token"], vec!["a-b"]);
        assert_eq!(q["channel"], vec!["lobby"]);
        assert_eq!(q["x"], vec!["1 2", "3"]);
        assert_eq!(q["flag"], vec![""]);
        assert_eq!(q["bad"], vec!["%zz"]);
        assert_eq!(q["end"], vec!["%4"]);
        assert!(parse_query(None).is_empty());
    }
}
