//! Routing: what a message's `action` runs. A [`Router`] maps actions to routes; a route is a
//! [`TypedRoute`] (its request is a Rust type the router parses and validates before calling it,
//! and that type is the route's contract) or, for full control over the envelope, a [`Route`].
//!
//! ```
//! use lambda_ws::routing::{MessageContext, RouteError, Router, TypedRoute};
//! use lambda_ws::{ChannelName, Outbound};
//! use serde::Deserialize;
//!
//! /// `{"action":"watch","invoice":"inv-42","ref":"w1"}`
//! #[derive(Debug, Deserialize, schemars::JsonSchema)]
//! struct Watch {
//!     /// The invoice to follow.
//!     invoice: ChannelName,
//! }
//!
//! #[derive(Debug)]
//! struct WatchRoute;
//!
//! #[lambda_ws::async_trait]
//! impl TypedRoute for WatchRoute {
//!     type Request = Watch;
//!
//!     fn description(&self) -> &str {
//!         "Follow an invoice."
//!     }
//!
//!     async fn handle(&self, ctx: &MessageContext<'_>, watch: Watch) -> Result<Option<Outbound>, RouteError> {
//!         Ok(Some(ctx.reply(serde_json::json!({ "watching": watch.invoice }))))
//!     }
//! }
//!
//! let router = Router::builtin().typed("watch", WatchRoute);
//! assert!(router.actions().any(|a| a == "watch"));
//! ```
//!
//! A request that does not parse never reaches the route: the client gets
//! `{"type":"error","code":"bad_request","message":"invoice: invalid type: integer `7`, expected a string","field":"invoice","ref":"w1"}`.

mod builtin;

pub use builtin::{HistoryRoute, PingRoute, PresenceRoute, SubscribeRoute, UnsubscribeRoute};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::App;
use crate::protocol::{ErrorCode, Inbound, Outbound, Reply};
use crate::session::{ChannelName, ConnectionId, NameError, Session};

/// A refusal a route sends back to the client as `{"type":"error",...}`, with the client's `ref`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
#[non_exhaustive]
pub struct RouteError {
    /// The error code.
    pub code: ErrorCode,
    /// What to tell the client.
    pub message: String,
    /// The request field that failed, as a path (`items[0].qty`), when one did.
    pub field: Option<String>,
}

impl RouteError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None }
    }

    /// `bad_request`: a missing or mistyped field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// `forbidden`: the sender may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// The same error, naming the request field that failed.
    pub fn at_field(mut self, path: impl Into<String>) -> Self {
        self.field = Some(path.into());
        self
    }

    /// `internal`: the server failed; the detail is logged, not sent.
    pub fn internal(detail: impl fmt::Display) -> Self {
        tracing::error!(error = %detail, "route failed");
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// The `{"type":"error",...}` message for this refusal, echoing `reference`. Its text and
    /// field path are bounded ([`MAX_ERROR_TEXT`] and 64 characters, control characters escaped),
    /// whatever a route put in them: an error never echoes a client's value at length.
    pub fn into_message(self, reference: Option<String>) -> Outbound {
        let field = self.field.map(|f| crate::handlers::loggable(&f));
        Outbound::error_at(self.code, bounded(&self.message, MAX_ERROR_TEXT), field, reference)
    }
}

/// The most characters of an error message's text sent or logged.
pub const MAX_ERROR_TEXT: usize = 256;

/// `text` cut to `max` characters (with `…`) and its control characters escaped.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A serde message with every quoted part (`"..."` and `` `...` ``, where serde puts the
/// client's value or key) cut to 64 characters.
fn cut_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(1024));
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        match after.find(quote) {
            Some(close) => {
                out.push_str(&crate::handlers::loggable(&after[..close]));
                out.push(quote);
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&crate::handlers::loggable(after));
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

impl From<crate::store::StoreError> for RouteError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}

impl From<crate::protocol::OutboundError> for RouteError {
    /// A message the route built is not sendable: the server's mistake, logged, not the client's.
    fn from(e: crate::protocol::OutboundError) -> Self {
        Self::internal(e)
    }
}

impl From<crate::delivery::SendError> for RouteError {
    fn from(e: crate::delivery::SendError) -> Self {
        Self::internal(e)
    }
}

/// What a route sees: the app, the sender's session, the message's envelope and the raw event.
#[derive(Debug)]
#[non_exhaustive]
pub struct MessageContext<'a> {
    /// The app.
    pub app: &'a App,
    /// The sending connection's session.
    pub session: &'a Session,
    /// The API Gateway event.
    pub event: &'a ApiGatewayWebsocketProxyRequest,
    /// The action the message was routed by.
    pub action: &'a str,
    /// The message's `handler`, if any.
    pub handler: Option<&'a str>,
    /// The message's correlation `ref`, if any.
    pub reference: Option<&'a str>,
}

impl<'a> MessageContext<'a> {
    /// A context for `session` and `event`, routed by `action` (what the message handler builds;
    /// public for tests and for code that dispatches on its own).
    pub fn new(
        app: &'a App,
        session: &'a Session,
        event: &'a ApiGatewayWebsocketProxyRequest,
        action: &'a str,
    ) -> Self {
        Self { app, session, event, action, handler: None, reference: None }
    }

    /// The same context with the message's `handler` and `ref`.
    pub fn with_envelope(mut self, handler: Option<&'a str>, reference: Option<&'a str>) -> Self {
        self.handler = handler;
        self.reference = reference;
        self
    }

    /// The sender's connection id.
    pub fn connection_id(&self) -> &ConnectionId {
        &self.session.connection_id
    }

    /// The sender's user id, if the connection is authenticated.
    pub fn user_id(&self) -> Option<&str> {
        self.session.user_id()
    }

    /// A `reply` to this message: its action and `ref`, with `data`.
    pub fn reply(&self, data: Value) -> Outbound {
        Outbound::Reply(Reply::to(self.action, self.reference.map(str::to_owned), data))
    }

    /// Whether this connection may join or read `channel`, with every check `subscribe` makes:
    /// not bound by its token to another channel, then the channel rules, then the app's
    /// [`ChannelCheck`](crate::policy::ChannelCheck). A `forbidden` error otherwise.
    pub async fn may_use(&self, channel: &ChannelName) -> Result<(), RouteError> {
        if self.session.bound_channel.as_ref().is_some_and(|bound| bound != channel) {
            return Err(RouteError::forbidden("this connection's token is bound to another channel"));
        }
        if !self.app.admits(self.session.identity.as_ref(), channel).await {
            return Err(RouteError::forbidden("channel not allowed"));
        }
        Ok(())
    }

    /// The latest kept messages of `channel` (at most `limit`, below `before` when given), as
    /// the `history` action answers them (as many as fit in one message, `more` when older ones
    /// are left out), after the same checks as [`may_use`](Self::may_use); `None` when the channel keeps
    /// no history.
    pub async fn channel_history(
        &self,
        channel: &ChannelName,
        limit: Option<u32>,
        before: Option<u64>,
    ) -> Result<Option<crate::history::ChannelHistory>, RouteError> {
        self.may_use(channel).await?;
        // The answer carries the client's `ref` too: it must fit beside it.
        let room = crate::protocol::ANSWER_BYTES.saturating_sub(self.reference.map_or(0, str::len));
        Ok(self.app.channel_history_unchecked(channel, limit, before, room).await?)
    }

    /// Who is in `channel`, as the `presence` action answers it, after the same checks as
    /// [`may_use`](Self::may_use); `None` when the channel has no presence.
    pub async fn channel_presence(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<crate::presence::ChannelPresence>, RouteError> {
        self.may_use(channel).await?;
        Ok(self.app.channel_presence_unchecked(channel).await?)
    }

    /// A string field of an untyped `msg`, or a `bad_request` error naming it.
    pub fn required_str<'m>(&self, msg: &'m Inbound, field: &str) -> Result<&'m str, RouteError> {
        msg.str_field(field)
            .ok_or_else(|| RouteError::bad_request(format!("\"{field}\" must be a string")).at_field(field))
    }

    /// A channel-name field of an untyped `msg`, validated.
    pub fn channel_field(&self, msg: &Inbound, field: &str) -> Result<ChannelName, RouteError> {
        ChannelName::new(self.required_str(msg, field)?)
            .map_err(|e| RouteError::new(ErrorCode::BadChannel, e.to_string()).at_field(field))
    }
}

/// The message types a route answers with, when it does not say: a `reply` or an `error`.
pub const REPLY_OR_ERROR: &[&str] = &["reply", "error"];

/// A route whose request is a Rust type. The router parses the message's fields (everything
/// but `action`, `handler` and `ref`) into [`Self::Request`] before calling [`Self::handle`]; a
/// message that does not parse gets a `bad_request` error naming the field path, and a channel
/// name that breaks the rule a `bad_channel` error. The request type's JSON Schema is the route's
/// entry in the contract (`schema::Contract`, feature `schema`).
///
/// Return `Some` to answer the sender (usually [`MessageContext::reply`]), `None` to stay silent,
/// or an error to send `{"type":"error",...}` with the client's `ref`.
#[async_trait]
pub trait TypedRoute: Send + Sync + fmt::Debug + 'static {
    /// The request: `Deserialize` for the router, `JsonSchema` for the contract.
    type Request: DeserializeOwned + JsonSchema + Send;

    /// One sentence for the contract.
    fn description(&self) -> &str {
        ""
    }

    /// The `type`s of the messages this route answers the sender with, for the contract.
    fn answers(&self) -> &[&str] {
        REPLY_OR_ERROR
    }

    /// Whether the route reads the stored session (`ctx.session`'s identity, metadata, bound
    /// channel). `true` unless overridden; see [`Route::needs_session`].
    fn needs_session(&self) -> bool {
        true
    }

    /// Handles one parsed request.
    async fn handle(&self, ctx: &MessageContext<'_>, request: Self::Request) -> Result<Option<Outbound>, RouteError>;
}

/// A route over the raw envelope: it gets the [`Inbound`] message with its fields as JSON. Prefer
/// [`TypedRoute`]; use this to accept any shape (e.g. a relay) or to parse on your own.
#[async_trait]
pub trait Route: Send + Sync + fmt::Debug {
    /// Handles one message.
    async fn handle(&self, ctx: &MessageContext<'_>, msg: Inbound) -> Result<Option<Outbound>, RouteError>;

    /// What the contract says about this route; an untyped route accepts any object.
    fn spec(&self) -> RouteSpec {
        RouteSpec::default()
    }

    /// Whether the route reads the stored session. `true` unless overridden. A route that does
    /// not (`ping`) reaches its handler with no store call when no message limit is configured
    /// (with one, the count's single write returns the session anyway); its `ctx.session` then
    /// holds only what the event says: connection id, endpoint, API, stage, source IP and user
    /// agent, no identity or metadata.
    fn needs_session(&self) -> bool {
        true
    }
}

/// A route's entry in the contract: its description, request schema and answers.
#[derive(Clone)]
#[non_exhaustive]
pub struct RouteSpec {
    /// One sentence.
    pub description: String,
    /// The request's schema, for a typed route.
    pub request: Option<fn(&mut SchemaGenerator) -> Schema>,
    /// The `type`s of the messages the route answers with.
    pub answers: Vec<String>,
}

impl Default for RouteSpec {
    fn default() -> Self {
        Self {
            description: String::new(),
            request: None,
            answers: REPLY_OR_ERROR.iter().map(|a| (*a).to_owned()).collect(),
        }
    }
}

impl RouteSpec {
    /// An untyped route's entry with a description and its answers.
    pub fn untyped(description: impl Into<String>, answers: &[&str]) -> Self {
        Self {
            description: description.into(),
            request: None,
            answers: answers.iter().map(|a| (*a).to_owned()).collect(),
        }
    }
}

impl fmt::Debug for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteSpec")
            .field("description", &self.description)
            .field("typed", &self.request.is_some())
            .field("answers", &self.answers)
            .finish()
    }
}

fn request_schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// A [`TypedRoute`] as a [`Route`]: parses and validates, then calls it.
#[derive(Debug)]
struct Typed<R>(R);

#[async_trait]
impl<R: TypedRoute> Route for Typed<R> {
    async fn handle(&self, ctx: &MessageContext<'_>, msg: Inbound) -> Result<Option<Outbound>, RouteError> {
        let request = parse_request::<R::Request>(msg.fields)?;
        self.0.handle(ctx, request).await
    }

    fn needs_session(&self) -> bool {
        self.0.needs_session()
    }

    fn spec(&self) -> RouteSpec {
        RouteSpec {
            description: self.0.description().to_owned(),
            request: Some(request_schema::<R::Request>),
            answers: self.0.answers().iter().map(|a| (*a).to_owned()).collect(),
        }
    }
}

/// Parses a message's fields into a route's request type. A failure names the field path
/// (`items[0].qty`; empty for the message as a whole) and is a `bad_channel` error when the
/// value was a channel name that breaks the rule, `bad_request` otherwise.
pub fn parse_request<T: DeserializeOwned>(fields: serde_json::Map<String, Value>) -> Result<T, RouteError> {
    serde_path_to_error::deserialize(Value::Object(fields)).map_err(|e| {
        let path = crate::handlers::loggable(&e.path().to_string());
        let inner = cut_quoted(&e.into_inner().to_string());
        let code =
            if inner.contains(&NameError::Channel.to_string()) { ErrorCode::BadChannel } else { ErrorCode::BadRequest };
        if path == "." {
            RouteError::new(code, inner)
        } else {
            let message = format!("{path}: {inner}");
            RouteError::new(code, message).at_field(path)
        }
    })
}

/// Maps `action` values to routes.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: BTreeMap<String, Arc<dyn Route>>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in actions: `subscribe`, `unsubscribe`, `history`, `presence`, `ping`.
    pub fn builtin() -> Self {
        Self::new()
            .typed("subscribe", SubscribeRoute)
            .typed("unsubscribe", UnsubscribeRoute)
            .typed("history", HistoryRoute)
            .typed("presence", PresenceRoute)
            .typed("ping", PingRoute)
    }

    /// Adds (or replaces) the typed route for `action`.
    pub fn typed(self, action: impl Into<String>, route: impl TypedRoute) -> Self {
        self.route(action, Typed(route))
    }

    /// Adds (or replaces) the untyped route for `action`.
    pub fn route(mut self, action: impl Into<String>, route: impl Route + 'static) -> Self {
        self.routes.insert(action.into(), Arc::new(route));
        self
    }

    /// Adds every route of `other`, replacing routes of the same action.
    pub fn merge(mut self, other: &Router) -> Self {
        self.routes.extend(other.routes.iter().map(|(action, route)| (action.clone(), Arc::clone(route))));
        self
    }

    /// The actions this router handles, in order.
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// The route for `action`.
    pub fn get(&self, action: &str) -> Option<&Arc<dyn Route>> {
        self.routes.get(action)
    }

    /// Every action with its contract entry, in order.
    pub fn specs(&self) -> impl Iterator<Item = (&str, RouteSpec)> {
        self.routes.iter().map(|(action, route)| (action.as_str(), route.spec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Item>,
        channel: Option<ChannelName>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        qty: u32,
    }

    fn fields(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_bad_request_names_the_field_path() {
        let e = parse_request::<Order>(fields(serde_json::json!({"items": [{"qty": 1}, {"qty": "two"}]})))
            .err()
            .unwrap_or_else(|| panic!("a string quantity must be refused"));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(e.field.as_deref(), Some("items[1].qty"));
        assert!(e.message.starts_with("items[1].qty: invalid type: string \"two\""), "{}", e.message);

        let e = parse_request::<Order>(fields(serde_json::json!({}))).err().unwrap_or_else(|| panic!("missing"));
        assert_eq!((e.field.as_deref(), e.message.as_str()), (None, "missing field `items`"));
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Resume {
        since: Option<u64>,
        tags: Option<std::collections::BTreeMap<String, u32>>,
    }

    #[test]
    fn client_text_in_a_parse_error_is_cut() {
        let long = "9".repeat(100_000);
        let e = parse_request::<Resume>(fields(serde_json::json!({ "since": long })))
            .err()
            .unwrap_or_else(|| panic!("a string since must be refused"));
        assert!(e.message.len() < 200, "{} bytes: {}", e.message.len(), &e.message[..200.min(e.message.len())]);
        assert!(e.message.starts_with("since: invalid type: string \"9999"), "{}", e.message);
        let key = format!("{}\n", "k".repeat(10_000));
        let e = parse_request::<Resume>(fields(serde_json::json!({ "tags": { key: "x" } })))
            .err()
            .unwrap_or_else(|| panic!("a string count must be refused"));
        assert!(e.field.as_ref().is_some_and(|f| f.chars().count() <= 65), "{:?}", e.field);
        assert!(e.message.len() < 300 && !e.message.contains('\n'), "{}", e.message);
        // The edge bounds what any route puts in an error.
        let message = RouteError::bad_request("x".repeat(5000)).at_field("y".repeat(500)).into_message(None);
        let text = serde_json::to_string(&message).unwrap_or_default();
        assert!(text.len() < MAX_ERROR_TEXT + 200, "{} bytes", text.len());
    }

    #[test]
    fn a_bad_channel_name_is_a_bad_channel_error() {
        let e = parse_request::<Order>(fields(serde_json::json!({"items": [], "channel": "no spaces"})))
            .err()
            .unwrap_or_else(|| panic!("a bad channel name must be refused"));
        assert_eq!(e.code, ErrorCode::BadChannel);
        assert_eq!(e.field.as_deref(), Some("channel"));
    }
}
