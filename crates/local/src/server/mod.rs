//! The gateway: [`Gateway::start`] and what every endpoint shares. One module per endpoint family:
//! `socket` (the WebSocket API), `management` (`@connections`), `issuer` (`POST /ws-token`),
//! `invoke` (the Lambda Invoke API), `admin` (`/_admin/*`) and `pages` (the browser client,
//! `--pages`, the `echo` route). Your own endpoints join them through [`GatewayOptions::endpoints`].

mod admin;
mod invoke;
mod issuer;
mod management;
pub mod pages;
mod socket;

pub use issuer::{DEV_USER_HEADER, dev_identity};

use std::collections::BTreeMap;
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
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lambda_ws::handlers::{self, TokenRequest};
use lambda_ws::policy::GATEWAY_SECRET_HEADER;
use lambda_ws::protocol::{ErrorCode, ErrorEnvelope};
use lambda_ws::{App, Config, DynamoDbStore, Identity, MemoryStore, Outbound};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::events::{self, EventContext, iso8601, new_id, parse_query};
use crate::registry::{Connection, LocalTransport, Outgoing, PostError, Registry};
use crate::routes::{Handler, RouteTable, SelectionExpression};
use admin::{admin_cleanup, admin_purge_tokens, admin_sessions};
use invoke::invoke;
use issuer::issue_token;
use management::{delete_connection, get_connection, post_to_connection};
use pages::{client_file, page_file};
use socket::upgrade;

/// API Gateway's limit on one frame.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// Read and write buffer of each WebSocket. Tungstenite allocates (and zero-fills) the read buffer
/// for every connection, idle or not: at 2 KiB, 10,000 idle connections took 67 MiB, at 1 KiB 57 MiB,
/// with echo throughput within run-to-run noise (a frame over 1 KiB takes more than one read).
pub const SOCKET_BUFFER_BYTES: usize = 1024;

/// Where sessions are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Your own HTTP endpoints, served beside the gateway's (behind the same `Host` and `Origin`
    /// checks): a demo page, a page of your app, a fake backend. `None` serves none.
    pub endpoints: Option<Endpoints>,
    /// What your functions add to the app (hooks, checks) before it serves.
    pub setup: AppSetup,
    /// Each function's own configuration, by binary (what its template environment gives it): a
    /// route, the token issuer, the sender or the clean-up served by a binary listed here runs
    /// with it; anything else runs with `config`.
    pub function_configs: BTreeMap<String, Config>,
    /// Which binaries serve the token issuer, the sender and the clean-up (for their
    /// configuration in `function_configs`).
    pub roles: FunctionRoles,
}

/// The binaries that serve the gateway's fixed endpoints, as a template deploys them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionRoles {
    /// `POST /ws-token`.
    pub issuer: Option<String>,
    /// The `sender` of the Lambda Invoke API.
    pub sender: Option<String>,
    /// The `cleanup` of the Lambda Invoke API and `/_admin/cleanup`.
    pub cleanup: Option<String>,
}

/// What your own endpoints are built with ([`GatewayOptions::endpoints`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointContext {
    /// The app the gateway's handlers run with (its sender reaches the gateway's connections).
    pub app: App,
    /// The stage (`local`): the WebSocket path is `/<stage>`.
    pub stage: String,
    /// The user the token issuer gives a request that names none.
    pub dev_user: String,
}

/// Your own HTTP endpoints for the gateway to serve: an axum router built from the
/// [`EndpointContext`] when the gateway starts.
///
/// ```
/// use axum::routing::get;
/// use lambda_ws_local::{Endpoints, GatewayOptions};
///
/// let options = GatewayOptions {
///     endpoints: Some(Endpoints::new(|ctx| {
///         let stage = ctx.stage.clone();
///         axum::Router::new().route("/hello", get(move || async move { format!("stage {stage}") }))
///     })),
///     ..GatewayOptions::default()
/// };
/// ```
#[derive(Clone)]
pub struct Endpoints(Arc<dyn Fn(&EndpointContext) -> Router + Send + Sync>);

impl Endpoints {
    /// Endpoints that `build` makes.
    pub fn new(build: impl Fn(&EndpointContext) -> Router + Send + Sync + 'static) -> Self {
        Self(Arc::new(build))
    }
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Endpoints(custom)")
    }
}

/// What a deployment's functions add to their [`App`] (hooks, checks, metrics), applied to the
/// gateway's app so handlers run here as they do there.
#[derive(Clone, Default)]
pub struct AppSetup(Option<Arc<dyn Fn(App) -> App + Send + Sync>>);

impl AppSetup {
    /// A setup that applies `f`.
    pub fn new(f: impl Fn(App) -> App + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    /// `app` with the setup applied.
    pub fn apply(&self, app: App) -> App {
        match &self.0 {
            Some(f) => f(app),
            None => app,
        }
    }
}

impl std::fmt::Debug for AppSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "AppSetup(custom)" } else { "AppSetup(none)" })
    }
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
            routes: RouteTable::empty(SelectionExpression::body_field("action")),
            invoke_endpoint: None,
            gateway_secret: None,
            pages: None,
            write_timeout: Duration::from_secs(5),
            endpoints: None,
            setup: AppSetup::default(),
            function_configs: BTreeMap::new(),
            roles: FunctionRoles::default(),
        }
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The port could not be bound.
    #[error("cannot listen: {0}")]
    Bind(#[from] std::io::Error),
    /// The DynamoDB table could not be reached or created.
    #[error("DynamoDB: {0}")]
    Store(#[from] lambda_ws::store::StoreError),
}

struct Shared {
    app: App,
    /// Each function's app (its own configuration, the same store and transport), by binary.
    apps: BTreeMap<String, App>,
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

impl Shared {
    /// The app the function built as `binary` runs with (the gateway's own when it has none).
    fn app_of(&self, binary: Option<&str>) -> &App {
        binary.and_then(|b| self.apps.get(b)).unwrap_or(&self.app)
    }
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
        let apps: BTreeMap<String, App> = options
            .function_configs
            .iter()
            .map(|(binary, config)| {
                let mut config = config.clone();
                if config.management_endpoint.is_none() {
                    config.management_endpoint = options.config.management_endpoint.clone();
                }
                (binary.clone(), options.setup.apply(App { config: Arc::new(config), ..app.clone() }))
            })
            .collect();
        let app = options.setup.apply(app);
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
            apps,
            lambda,
            registry: registry.clone(),
            routes,
            options,
            domain,
            stage: stage_name,
            api_id,
        });
        // Your endpoints first (they may not take the gateway's paths: axum refuses a duplicate),
        // then the guard over all of them.
        let own: Router = match &shared.options.endpoints {
            Some(endpoints) => (endpoints.0)(&EndpointContext {
                app: app.clone(),
                stage: shared.options.stage.clone(),
                dev_user: shared.options.dev_user.clone(),
            }),
            None => Router::new(),
        };
        let router = Router::new()
            .route("/client/{file}", get(client_file))
            .route("/pages/{*path}", get(page_file))
            .route("/ws-token", post(issue_token))
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
            .with_state(shared.clone())
            .merge(own)
            .layer(axum::middleware::from_fn_with_state(shared, guard));
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

/// `status` with the one error envelope (`{"error":{"code","message"}}`) the issuer and the sender use.
fn error_response(status: u16, code: ErrorCode, message: &str) -> Response {
    json_response(status, &ErrorEnvelope::new(code, message).to_json())
}

/// An AWS-style error: status, `x-amzn-ErrorType` and `{"message":…}`.
fn aws_error(status: StatusCode, kind: &'static str, message: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-ErrorType", HeaderValue::from_static(kind));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (status, headers, json!({ "message": message }).to_string()).into_response()
}

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
        return error_response(403, ErrorCode::Forbidden, "unknown Host");
    }
    let path = request.uri().path();
    let read_only_page = request.method() == axum::http::Method::GET
        && (path == "/" || path.starts_with("/client/") || path.starts_with("/pages/") || path == &*shared.stage_path);
    if !read_only_page && let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let own = origin.strip_prefix("http://").is_some_and(|o| serves_host(o, shared.port));
        let listed = path == "/ws-token"
            && shared.app.config.allowed_origins != lambda_ws::policy::OriginPolicy::Any
            && shared.app.config.allowed_origins.allows(Some(origin));
        if !own && !listed {
            tracing::warn!(origin = %lambda_ws::handlers::loggable(origin), path, "cross-site request refused");
            return error_response(403, ErrorCode::Forbidden, "origin not allowed");
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
