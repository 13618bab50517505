//! Messages on an open connection: parse the envelope, check the session and rate, route by
//! `action`, and answer with a reply or a typed `error` message — never a panic or a 500 for a
//! client's mistake.
//!
//! Add your own routes by implementing [`Route`] and registering it on a [`Router`]:
//!
//! ```
//! use lambda_ws::{Inbound, MessageContext, Outbound, Reply, Route, RouteError, Router};
//!
//! #[derive(Debug)]
//! struct Echo;
//!
//! #[lambda_ws::async_trait]
//! impl Route for Echo {
//!     async fn handle(&self, _ctx: &MessageContext<'_>, msg: Inbound) -> Result<Option<Outbound>, RouteError> {
//!         let data = serde_json::Value::Object(msg.fields);
//!         Ok(Some(Outbound::Reply(Reply::to(msg.action, msg.reference, data))))
//!     }
//! }
//!
//! let router = Router::builtin().route("echo", Echo);
//! assert!(router.actions().any(|a| a == "echo"));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use serde_json::json;

use super::{check_event, loggable, management_endpoint, respond};
use crate::App;
use crate::delivery::Target;
use crate::protocol::{ChatMessage, ErrorCode, Inbound, Outbound, Pong, Reply};
use crate::rate;
use crate::session::{ChannelName, ConnectionId, Recipient, Session};
use crate::store::{Admission, Joined};

/// Longest chat line accepted, in bytes.
pub const MAX_CHAT_BYTES: usize = 4096;

/// A refusal a route sends back to the client as `{"type":"error",...}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RouteError {
    /// The error code.
    pub code: ErrorCode,
    /// What to tell the client.
    pub message: String,
}

impl RouteError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// `bad_request`: a missing or mistyped field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// `internal`: the server failed; log the detail, do not send it.
    pub fn internal(detail: impl fmt::Display) -> Self {
        tracing::error!(error = %detail, "route failed");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

impl From<crate::store::StoreError> for RouteError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}

/// What a route sees: the app, the sender's session and the raw event.
#[derive(Debug)]
pub struct MessageContext<'a> {
    /// The app.
    pub app: &'a App,
    /// The sending connection's session.
    pub session: &'a Session,
    /// The API Gateway event.
    pub event: &'a ApiGatewayWebsocketProxyRequest,
}

impl MessageContext<'_> {
    /// The sender's connection id.
    pub fn connection_id(&self) -> &ConnectionId {
        &self.session.connection_id
    }

    /// A string field of `msg`, or a `bad_request` error naming it.
    pub fn required_str<'m>(&self, msg: &'m Inbound, field: &str) -> Result<&'m str, RouteError> {
        msg.str_field(field).ok_or_else(|| RouteError::bad_request(format!("\"{field}\" must be a string")))
    }

    /// A channel-name field of `msg`, validated.
    pub fn channel_field(&self, msg: &Inbound, field: &str) -> Result<ChannelName, RouteError> {
        ChannelName::new(self.required_str(msg, field)?)
            .map_err(|e| RouteError::new(ErrorCode::BadChannel, e.to_string()))
    }
}

/// One action's handler. Return `Some` to answer the sender, `None` to stay silent, or an error
/// to send `{"type":"error",...}` with the client's `ref`.
#[async_trait]
pub trait Route: Send + Sync + fmt::Debug {
    /// Handles one message.
    async fn handle(&self, ctx: &MessageContext<'_>, msg: Inbound) -> Result<Option<Outbound>, RouteError>;
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

    /// The built-in actions: `subscribe`, `unsubscribe`, `ping`.
    pub fn builtin() -> Self {
        Self::new().route("subscribe", SubscribeRoute).route("unsubscribe", UnsubscribeRoute).route("ping", PingRoute)
    }

    /// Adds (or replaces) the route for `action`.
    pub fn route(mut self, action: impl Into<String>, route: impl Route + 'static) -> Self {
        self.routes.insert(action.into(), Arc::new(route));
        self
    }

    /// The actions this router handles.
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// Adds the worked chat example under both its names, [`ChatRoute::ACTIONS`].
    pub fn with_chat(self) -> Self {
        ChatRoute::ACTIONS.iter().fold(self, |router, action| router.route(*action, ChatRoute))
    }

    /// The route for `action`.
    pub fn get(&self, action: &str) -> Option<&Arc<dyn Route>> {
        self.routes.get(action)
    }
}

/// Handles a MESSAGE event with `router`. Answers go to the sender through the Management API;
/// the HTTP status is 200 unless the event itself is not from a valid connection of this API.
pub async fn message(app: &App, router: &Router, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let ctx = &event.request_context;
    if let Err(reason) = check_event(&app.config, event) {
        tracing::warn!(api_id = ctx.apiid.as_deref(), reason, "message event refused");
        return respond(403, &json!({ "message": reason }));
    }
    let (Some(id), Some(endpoint)) =
        (ctx.connection_id.clone().and_then(|id| ConnectionId::new(id).ok()), management_endpoint(&app.config, ctx))
    else {
        tracing::warn!("message without a valid connection id or domain name");
        return respond(400, &json!({ "message": "invalid connection id" }));
    };
    let reply_to = Recipient { connection_id: id.clone(), endpoint };
    let answer = match route_message(app, router, event, &id).await {
        Ok(None) => return respond(200, &json!({})),
        Ok(Some(answer)) => answer,
        Err((error, reference)) => {
            tracing::info!(connection_id = %id, code = error.code.as_str(), reason = %error.message, "message refused");
            Outbound::error(error.code, error.message, reference)
        }
    };
    match app.sender().deliver_to(&reply_to, &answer).await {
        Ok(report) if report.delivered == 1 => {}
        Ok(report) => tracing::info!(connection_id = %id, ?report, "could not answer the sender"),
        Err(e) => tracing::error!(connection_id = %id, error = %e, "answer not encodable"),
    }
    respond(200, &json!({}))
}

async fn route_message(
    app: &App,
    router: &Router,
    event: &ApiGatewayWebsocketProxyRequest,
    id: &ConnectionId,
) -> Result<Option<Outbound>, (RouteError, Option<String>)> {
    let body = event.body.as_deref().unwrap_or_default();
    let route_key = event.request_context.route_key.as_deref().filter(|k| !k.starts_with('$'));
    let msg =
        Inbound::parse_for_route(body, route_key).map_err(|e| (RouteError::new(e.code(), e.to_string()), None))?;
    let reference = msg.reference.clone();
    let fail = |e: RouteError| (e, reference.clone());
    let now = app.clock.now_secs();
    // One store round trip: the session, with the message counted against the rate limit.
    let limit = app.config.rate_limits.messages_per_connection;
    let window = now.div_euclid(rate::WINDOW_SECS);
    let session = match app.sessions.admit_message(id, now, window, limit).await.map_err(|e| fail(e.into()))? {
        Admission::Admitted(session) => *session,
        Admission::Limited => {
            return Err(fail(RouteError::new(ErrorCode::RateLimited, "too many messages; slow down")));
        }
        Admission::NoSession => {
            return Err(fail(RouteError::new(ErrorCode::NotConnected, "no session for this connection; reconnect")));
        }
    };
    // The message's own `action`, or else the route API Gateway selected, when this router serves
    // it under that key (a selection expression may select by more than `action`).
    let Some(route) = router.get(&msg.action).or_else(|| route_key.and_then(|k| router.get(k))) else {
        let known: Vec<&str> = router.actions().collect();
        let text = format!("unknown action \"{}\"; known actions: {}", loggable(&msg.action), known.join(", "));
        return Err(fail(RouteError::new(ErrorCode::UnknownAction, text)));
    };
    let ctx = MessageContext { app, session: &session, event };
    route.handle(&ctx, msg).await.map_err(fail)
}

/// `subscribe {channel}`: join a channel, with the same permission check as `$connect`. A
/// connection whose token was bound to a channel may not join any other; the per-connection
/// channel limit holds under concurrent subscribes (the store's join is atomic).
#[derive(Debug, Clone, Copy, Default)]
pub struct SubscribeRoute;

#[async_trait]
impl Route for SubscribeRoute {
    async fn handle(&self, ctx: &MessageContext<'_>, msg: Inbound) -> Result<Option<Outbound>, RouteError> {
        let channel = ctx.channel_field(&msg, "channel")?;
        let app = ctx.app;
        if ctx.session.bound_channel.as_ref().is_some_and(|bound| *bound != channel) {
            return Err(RouteError::new(ErrorCode::Forbidden, "this connection's token is bound to another channel"));
        }
        if !app.may_join(ctx.session.identity.as_ref(), &channel).await {
            return Err(RouteError::new(ErrorCode::Forbidden, "channel not allowed"));
        }
        let max = app.config.max_channels_per_connection;
        if app.sessions.join(ctx.session, &channel, max).await? == Joined::Full {
            return Err(RouteError::bad_request(format!("a connection may be in at most {max} channels")));
        }
        let data = json!({ "channel": channel });
        Ok(Some(Outbound::Reply(Reply::to(msg.action, msg.reference, data))))
    }
}

/// `unsubscribe {channel}`: leave a channel.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnsubscribeRoute;

#[async_trait]
impl Route for UnsubscribeRoute {
    async fn handle(&self, ctx: &MessageContext<'_>, msg: Inbound) -> Result<Option<Outbound>, RouteError> {
        let channel = ctx.channel_field(&msg, "channel")?;
        let was_member = ctx.app.sessions.leave(ctx.connection_id(), &channel).await?;
        let data = json!({ "channel": channel, "was_member": was_member });
        Ok(Some(Outbound::Reply(Reply::to(msg.action, msg.reference, data))))
    }
}

/// `ping`: answered by `pong` with the connection's own id.
#[derive(Debug, Clone, Copy, Default)]
pub struct PingRoute;

#[async_trait]
impl Route for PingRoute {
    async fn handle(&self, ctx: &MessageContext<'_>, msg: Inbound) -> Result<Option<Outbound>, RouteError> {
        let connection_id = ctx.connection_id().to_string();
        Ok(Some(Outbound::Pong(Pong { connection_id, reference: msg.reference, extra: Default::default() })))
    }
}

/// The worked custom route: `chat {message, channel?}` broadcasts a `chat_message` to a channel
/// the sender is in (the first one when `channel` is absent). With a `ref`, the sender also gets
/// a `reply` with the delivery count. It also answers to `chat_message`, the action the reference
/// package's browser code sends (`{"action":"chat_message","message":"hi"}`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatRoute;

impl ChatRoute {
    /// The actions the chat example answers to.
    pub const ACTIONS: [&'static str; 2] = ["chat", "chat_message"];
}

#[async_trait]
impl Route for ChatRoute {
    async fn handle(&self, ctx: &MessageContext<'_>, msg: Inbound) -> Result<Option<Outbound>, RouteError> {
        if msg.handler.as_deref().is_some_and(|h| h != "say" && h != msg.action) {
            return Err(RouteError::new(ErrorCode::UnknownAction, "chat has one handler: \"say\""));
        }
        let text = ctx.required_str(&msg, "message")?.trim();
        if text.is_empty() || text.len() > MAX_CHAT_BYTES {
            return Err(RouteError::bad_request(format!("\"message\" must be 1 to {MAX_CHAT_BYTES} bytes")));
        }
        let app = ctx.app;
        let joined = app.sessions.channels_of(ctx.connection_id(), app.clock.now_secs()).await?;
        let channel = match msg.fields.get("channel") {
            Some(_) => ctx.channel_field(&msg, "channel")?,
            None => joined.first().cloned().ok_or_else(|| RouteError::bad_request("join a channel first"))?,
        };
        if !joined.contains(&channel) {
            return Err(RouteError::new(ErrorCode::Forbidden, "you are not in that channel"));
        }
        let username = ctx.session.user_id().unwrap_or("anonymous").to_owned();
        let line = Outbound::ChatMessage(ChatMessage::new(username, text, channel.as_str()));
        let report = app.sender().send(&Target::Channel(channel), &line, &[]).await.map_err(RouteError::internal)?;
        Ok(msg.reference.map(|reference| {
            let data = json!({ "delivered": report.delivered });
            Outbound::Reply(Reply::to(msg.action, Some(reference), data))
        }))
    }
}
