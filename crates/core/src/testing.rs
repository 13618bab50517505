//! A test harness for applications built on lambda-ws (feature `testing`): your routes and checks
//! run through the real handlers, on the in-memory store, with API Gateway-shaped events, and
//! every message the handlers post is recorded per connection instead of sent.
//!
//! ```
//! # tokio_test_block_on(async {
//! use lambda_ws::testing::TestHarness;
//! use lambda_ws::{Config, MessageContext, Outbound, RouteError, Router, Target, TypedRoute};
//! use serde_json::json;
//!
//! /// `{"action":"shout","text":"hi"}`: everyone in the sender's first channel gets it.
//! #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
//! struct Shout { text: String }
//!
//! #[derive(Debug)]
//! struct ShoutRoute;
//!
//! #[lambda_ws::async_trait]
//! impl TypedRoute for ShoutRoute {
//!     type Request = Shout;
//!     async fn handle(&self, ctx: &MessageContext<'_>, shout: Shout) -> Result<Option<Outbound>, RouteError> {
//!         let channels = ctx.app.sessions.channels_of(ctx.connection_id(), 0).await?;
//!         let channel = channels.first().cloned().ok_or_else(|| RouteError::bad_request("join a channel"))?;
//!         let message = Outbound::custom(json!({"type": "shout", "text": shout.text}).as_object().cloned().unwrap_or_default())
//!             .map_err(RouteError::internal)?;
//!         ctx.app.sender().send(&Target::Channel(channel), &message, &[]).await?;
//!         Ok(None)
//!     }
//! }
//!
//! let h = TestHarness::new(Config::default()).with_router(Router::builtin().typed("shout", ShoutRoute));
//! let ann = h.connect(Some("ann"), Some("lobby")).await.expect("connects");
//! let bob = h.connect(Some("bob"), Some("lobby")).await.expect("connects");
//!
//! h.send(&ann, json!({"action": "shout", "text": "hi"})).await;
//! assert_eq!(h.take_received(&bob), vec![json!({"type": "shout", "text": "hi"})]);
//!
//! let answers = h.send(&bob, json!({"action": "shout", "text": 5, "ref": "r1"})).await;
//! assert_eq!(answers[0]["code"], "bad_request");
//! assert_eq!(answers[0]["field"], "text");
//! assert_eq!(answers[0]["ref"], "r1");
//!
//! let answers = h.send(&bob, json!({"action": "launch", "ref": "r2"})).await;
//! assert_eq!(answers[0]["code"], "unknown_action");
//!
//! // What backend code sends through the sender function:
//! let report = h.deliver(json!({"target": {"user": "ann"}, "message": {"type": "toast", "level": "info", "message": "Saved"}})).await;
//! assert_eq!(report["delivered"], 1);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! [`TestHarness::event`] runs any API Gateway event, such as the sample files in the
//! repository's `events/` folder.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::clock::{Clock as _, ManualClock};
use crate::delivery::{ConnectionInfo, Transport, TransportError};
use crate::handlers;
use crate::routing::Router;
use crate::session::{ChannelName, ConnectionId, Identity, Recipient, Session};
use crate::store::{
    Admission, Claim, Cursor, Joined, Page, Removed, Segment, SessionFilter, SessionStore, StoreError, UserLimits,
};
use crate::{App, Config, MemoryStore, token};

/// The domain name and stage the harness's events carry.
pub const DOMAIN: &str = "test.execute-api.local";
/// The stage of the harness's events.
pub const STAGE: &str = "test";

/// A [`Transport`] that records every post per connection instead of sending it, and answers
/// 410 Gone for connections marked gone.
#[derive(Debug, Default)]
pub struct RecordingTransport {
    state: Mutex<Recorded>,
}

#[derive(Debug, Default)]
struct Recorded {
    posts: Vec<(ConnectionId, Value)>,
    gone: HashSet<ConnectionId>,
}

impl RecordingTransport {
    fn state(&self) -> MutexGuard<'_, Recorded> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every post so far, in order: (connection, message as JSON).
    pub fn posts(&self) -> Vec<(ConnectionId, Value)> {
        self.state().posts.clone()
    }

    /// Posts to `id` so far.
    pub fn posts_to(&self, id: &ConnectionId) -> Vec<Value> {
        self.state().posts.iter().filter(|(to, _)| to == id).map(|(_, m)| m.clone()).collect()
    }

    /// Forgets the posts to `id` and returns them.
    pub fn take_posts_to(&self, id: &ConnectionId) -> Vec<Value> {
        let mut state = self.state();
        let (taken, kept) = std::mem::take(&mut state.posts).into_iter().partition(|(to, _)| to == id);
        state.posts = kept;
        taken.into_iter().map(|(_, m)| m).collect()
    }

    /// From now on, `id` answers 410 Gone (a closed tab).
    pub fn mark_gone(&self, id: &ConnectionId) {
        self.state().gone.insert(id.clone());
    }
}

#[async_trait]
impl Transport for RecordingTransport {
    async fn post(&self, _endpoint: &str, connection: &ConnectionId, payload: Bytes) -> Result<(), TransportError> {
        let mut state = self.state();
        if state.gone.contains(connection) {
            return Err(TransportError::Gone);
        }
        let message = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        state.posts.push((connection.clone(), message));
        Ok(())
    }

    async fn get_connection(
        &self,
        _endpoint: &str,
        connection: &ConnectionId,
    ) -> Result<ConnectionInfo, TransportError> {
        if self.state().gone.contains(connection) {
            return Err(TransportError::Gone);
        }
        Ok(ConnectionInfo { connected_at: None, last_active_at: None, source_ip: None })
    }

    async fn disconnect(&self, _endpoint: &str, connection: &ConnectionId) -> Result<(), TransportError> {
        self.state().gone.insert(connection.clone());
        Ok(())
    }
}

/// A [`SessionStore`] in front of another that answers every recipient page read (channel, user,
/// scan) after a fixed delay and counts those reads: a stand-in for a store across a network, to
/// see how the sender's page reads overlap its posts (the fan-out benchmark's `--page-latency-ms`).
/// Every other call goes straight through.
#[derive(Debug)]
pub struct SlowPages {
    inner: Arc<dyn SessionStore>,
    delay: Duration,
    pages: AtomicU64,
}

impl SlowPages {
    /// `inner` with `delay` added to each page read.
    pub fn new(inner: Arc<dyn SessionStore>, delay: Duration) -> Self {
        Self { inner, delay, pages: AtomicU64::new(0) }
    }

    /// How many page reads have started so far.
    pub fn pages_read(&self) -> u64 {
        self.pages.load(Ordering::SeqCst)
    }

    async fn page<T>(&self, read: impl Future<Output = T>) -> T {
        self.pages.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        read.await
    }
}

#[async_trait]
impl SessionStore for SlowPages {
    async fn put_session(&self, session: &Session) -> Result<(), StoreError> {
        self.inner.put_session(session).await
    }

    async fn open_session(
        &self,
        session: &Session,
        channel: Option<&ChannelName>,
        holds_slot: bool,
    ) -> Result<(), StoreError> {
        self.inner.open_session(session, channel, holds_slot).await
    }

    async fn get_session(&self, id: &ConnectionId, now: i64) -> Result<Option<Session>, StoreError> {
        self.inner.get_session(id, now).await
    }

    async fn remove_session(&self, id: &ConnectionId) -> Result<Option<Removed>, StoreError> {
        self.inner.remove_session(id).await
    }

    async fn remove_sessions(&self, ids: &[ConnectionId]) -> Result<Vec<Removed>, StoreError> {
        self.inner.remove_sessions(ids).await
    }

    async fn join(&self, session: &Session, channel: &ChannelName, max: usize) -> Result<Joined, StoreError> {
        self.inner.join(session, channel, max).await
    }

    async fn claim_connection(
        &self,
        session: &Session,
        limits: UserLimits,
        issued_ms: i64,
        now: i64,
    ) -> Result<Claim, StoreError> {
        self.inner.claim_connection(session, limits, issued_ms, now).await
    }

    async fn close_user(&self, user: &str, now_ms: i64, keep_until: i64) -> Result<(), StoreError> {
        self.inner.close_user(user, now_ms, keep_until).await
    }

    async fn admit_message(
        &self,
        id: &ConnectionId,
        now: i64,
        window: i64,
        limit: u32,
    ) -> Result<Admission, StoreError> {
        self.inner.admit_message(id, now, window, limit).await
    }

    async fn charge_messages(
        &self,
        id: &ConnectionId,
        window: i64,
        limit: u32,
        units: u32,
    ) -> Result<bool, StoreError> {
        self.inner.charge_messages(id, window, limit, units).await
    }

    async fn leave(&self, id: &ConnectionId, channel: &ChannelName) -> Result<bool, StoreError> {
        self.inner.leave(id, channel).await
    }

    async fn channels_of(&self, id: &ConnectionId, now: i64) -> Result<Vec<ChannelName>, StoreError> {
        self.inner.channels_of(id, now).await
    }

    async fn channel_page(
        &self,
        channel: &ChannelName,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        self.page(self.inner.channel_page(channel, cursor, limit, now)).await
    }

    async fn user_page(
        &self,
        user_id: &str,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        self.page(self.inner.user_page(user_id, cursor, limit, now)).await
    }

    async fn scan_page(
        &self,
        segment: Segment,
        filter: &SessionFilter,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        self.page(self.inner.scan_page(segment, filter, cursor, limit, now)).await
    }

    async fn expired_page(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<ConnectionId>, StoreError> {
        self.inner.expired_page(cursor, limit, now).await
    }
}

/// A connection the harness opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestConnection {
    /// Its id.
    pub id: ConnectionId,
}

/// `$connect` refused: the status and body API Gateway would return to the browser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("$connect answered {status}: {body}")]
pub struct Refused {
    /// The HTTP status.
    pub status: i64,
    /// The body, e.g. `{"message":"origin not allowed"}`.
    pub body: String,
}

/// Runs the handlers against API Gateway-shaped events on an in-memory store, recording posts.
#[derive(Debug)]
pub struct TestHarness {
    app: App,
    router: Router,
    transport: Arc<RecordingTransport>,
    clock: Arc<ManualClock>,
    origin: String,
    next_id: AtomicU64,
}

impl TestHarness {
    /// A harness with `config`, the built-in routes, and a clock at the current time.
    pub fn new(config: Config) -> Self {
        let transport = Arc::new(RecordingTransport::default());
        let clock = Arc::new(ManualClock::at(crate::clock::unix_now_millis()));
        let app = App::new(config, Arc::new(MemoryStore::new()), transport.clone()).with_clock(clock.clone());
        Self {
            app,
            router: Router::builtin(),
            transport,
            clock,
            origin: "http://localhost".into(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Routes messages with `router` (your routes).
    pub fn with_router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    /// Replaces the app (e.g. to add a channel check with [`App::with_channel_check`]); keep
    /// its transport and clock from [`Self::app`].
    pub fn with_app(mut self, app: App) -> Self {
        self.app = app;
        self
    }

    /// The `Origin` the harness's connections send (default `http://localhost`).
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    /// The app the handlers run with.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The clock; advance it to expire tokens, sessions and rate-limit windows.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The recording transport.
    pub fn transport(&self) -> &RecordingTransport {
        &self.transport
    }

    /// A connect token for `identity`, optionally bound to `channel`, as the issuer would store it.
    pub async fn token(&self, identity: Identity, channel: Option<ChannelName>) -> String {
        let ttl = self.app.config.token_ttl.as_secs();
        match token::issue(&*self.app.tokens, identity, channel, ttl, self.clock.now_millis()).await {
            Ok(issued) => issued.token,
            // The in-memory store does not fail.
            Err(e) => unreachable!("memory store failed: {e}"),
        }
    }

    /// Opens a connection for `user` (a token is issued first; `None` connects without one)
    /// into `channel`, through `$connect`.
    pub async fn connect(&self, user: Option<&str>, channel: Option<&str>) -> Result<TestConnection, Refused> {
        self.connect_with(user.map(Identity::user), channel).await
    }

    /// Opens a connection for `identity` (with its groups; `None` connects without a token) into
    /// `channel`, through `$connect`.
    pub async fn connect_with(
        &self,
        identity: Option<Identity>,
        channel: Option<&str>,
    ) -> Result<TestConnection, Refused> {
        let token = match identity {
            Some(identity) => Some(self.token(identity, None).await),
            None => None,
        };
        let id = self.new_connection_id();
        let mut query = serde_json::Map::new();
        if let Some(token) = token {
            query.insert("ws_token".into(), json!(token));
        }
        if let Some(channel) = channel {
            query.insert("channel".into(), json!(channel));
        }
        let event = json!({
            "headers": { "Origin": self.origin, "Host": DOMAIN },
            "queryStringParameters": query,
            "requestContext": self.context(&id, "$connect", "CONNECT"),
            "isBase64Encoded": false,
        });
        let response = self.event(event).await;
        if response.status_code == 200 {
            Ok(TestConnection { id })
        } else {
            Err(Refused { status: response.status_code, body: body_text(&response) })
        }
    }

    /// Sends one frame from `connection` through the router; returns what was posted back to
    /// that connection while handling it (its answers).
    pub async fn send(&self, connection: &TestConnection, frame: impl Into<Frame>) -> Vec<Value> {
        let before = self.transport.posts_to(&connection.id).len();
        let event = json!({
            "body": frame.into().0,
            "requestContext": self.context(&connection.id, "$default", "MESSAGE"),
            "isBase64Encoded": false,
        });
        self.event(event).await;
        self.transport.posts_to(&connection.id).split_off(before)
    }

    /// Closes `connection` through `$disconnect`.
    pub async fn disconnect(&self, connection: &TestConnection) {
        let event = json!({
            "headers": { "Host": DOMAIN },
            "requestContext": self.context(&connection.id, "$disconnect", "DISCONNECT"),
            "isBase64Encoded": false,
        });
        self.event(event).await;
    }

    /// What the sender function answers to `request` (a send request, a batch or an SQS event).
    pub async fn deliver(&self, request: Value) -> Value {
        handlers::send(&self.app, request).await
    }

    /// Everything posted to `connection` so far.
    pub fn received(&self, connection: &TestConnection) -> Vec<Value> {
        self.transport.posts_to(&connection.id)
    }

    /// Everything posted to `connection` since the last call, forgetting it.
    pub fn take_received(&self, connection: &TestConnection) -> Vec<Value> {
        self.transport.take_posts_to(&connection.id)
    }

    /// Runs one API Gateway WebSocket event through the handler its `eventType` names
    /// (`CONNECT`, `MESSAGE`, `DISCONNECT`), e.g. a sample from `events/`. An event that does
    /// not parse answers 400.
    pub async fn event(&self, event: Value) -> ApiGatewayProxyResponse {
        let event: ApiGatewayWebsocketProxyRequest = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => {
                return handlers::respond(
                    400,
                    &json!({ "message": format!("not an API Gateway WebSocket event: {e}") }),
                );
            }
        };
        match event.request_context.event_type.as_deref() {
            Some("CONNECT") => handlers::connect(&self.app, &event).await,
            Some("DISCONNECT") => handlers::disconnect(&self.app, &event).await,
            _ => handlers::message(&self.app, &self.router, &event).await,
        }
    }

    fn new_connection_id(&self) -> ConnectionId {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        match ConnectionId::new(format!("Test{n:010}A=")) {
            Ok(id) => id,
            Err(e) => unreachable!("generated ids are valid: {e}"),
        }
    }

    fn context(&self, id: &ConnectionId, route: &str, kind: &str) -> Value {
        let now = self.clock.now_millis();
        json!({
            "routeKey": route,
            "eventType": kind,
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": now,
            "requestTimeEpoch": now,
            "identity": { "sourceIp": "127.0.0.1" },
            "requestId": format!("req-{now}"),
            "domainName": DOMAIN,
            "connectionId": id.as_str(),
            "apiId": "test",
        })
    }
}

/// A frame a test sends: JSON (`json!({...})`) or raw text (for malformed input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(String);

impl From<Value> for Frame {
    fn from(value: Value) -> Self {
        Self(value.to_string())
    }
}

impl From<&str> for Frame {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

fn body_text(response: &ApiGatewayProxyResponse) -> String {
    match &response.body {
        Some(Body::Text(text)) => text.clone(),
        Some(Body::Binary(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ChannelRules, OriginPolicy};

    fn harness() -> TestHarness {
        let config = Config {
            allowed_origins: OriginPolicy::parse("https://app.example.com").expect("parses"),
            channel_rules: ChannelRules::parse("staff=groups:staff; *=all").expect("parses"),
            ..Config::default()
        };
        TestHarness::new(config).with_origin("https://app.example.com")
    }

    #[tokio::test]
    async fn connections_messages_and_refusals() {
        let h = harness();
        let ann = h.connect(Some("ann"), Some("lobby")).await.expect("connects");
        let answers = h.send(&ann, json!({"action": "ping", "ref": "p"})).await;
        assert_eq!(answers, vec![json!({"type": "pong", "connection_id": ann.id.as_str(), "ref": "p"})]);
        assert_eq!(h.send(&ann, "{oops").await[0]["code"], "bad_json");
        let refused = h.connect(Some("bob"), Some("staff")).await.expect_err("not staff");
        assert_eq!(refused.status, 403);
        assert_eq!(h.connect(None, None).await.expect_err("no token").status, 401);
        let wrong = TestHarness::new(harness().app().config.as_ref().clone()).with_origin("https://evil.example");
        assert_eq!(wrong.connect(Some("ann"), None).await.expect_err("origin").status, 403);
    }

    #[tokio::test]
    async fn gone_connections_and_disconnects() {
        let h = harness();
        let ann = h.connect(Some("ann"), Some("lobby")).await.expect("connects");
        let bob = h.connect(Some("bob"), Some("lobby")).await.expect("connects");
        h.transport().mark_gone(&bob.id);
        let message = json!({"type": "system", "level": "info", "message": "hello"});
        let report = h.deliver(json!({"target": {"channel": "lobby"}, "message": message})).await;
        assert_eq!((report["delivered"].as_u64(), report["gone"][0].as_str()), (Some(1), Some(bob.id.as_str())));
        assert_eq!(h.take_received(&ann), vec![message.clone()]);
        assert!(h.take_received(&ann).is_empty(), "taken");
        h.disconnect(&ann).await;
        let report = h.deliver(json!({"target": "all", "message": message})).await;
        assert_eq!(report["recipients"], 0, "bob was removed as gone, ann disconnected: {report}");
    }
}
