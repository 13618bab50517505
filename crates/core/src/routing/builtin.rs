//! The built-in actions every router starts from ([`Router::builtin`](super::Router::builtin)):
//! `subscribe`, `unsubscribe` and `ping`, as typed routes.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{MessageContext, RouteError, TypedRoute};
use crate::protocol::{Outbound, Pong};
use crate::session::ChannelName;
use crate::store::Joined;

/// The request of `subscribe` and `unsubscribe`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct ChannelRequest {
    /// The channel.
    pub channel: ChannelName,
}

/// The request of `ping`: nothing.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
pub struct Ping {}

/// `subscribe {channel}`: join a channel, with the same permission check as `$connect`. A
/// connection whose token was bound to a channel may not join any other; the per-connection
/// channel limit holds under concurrent subscribes (the store's join is atomic).
#[derive(Debug, Clone, Copy, Default)]
pub struct SubscribeRoute;

#[async_trait]
impl TypedRoute for SubscribeRoute {
    type Request = ChannelRequest;

    fn description(&self) -> &str {
        "Join a channel, under the same permission check as `$connect`."
    }

    async fn handle(&self, ctx: &MessageContext<'_>, request: ChannelRequest) -> Result<Option<Outbound>, RouteError> {
        let ChannelRequest { channel } = request;
        let app = ctx.app;
        if ctx.session.bound_channel.as_ref().is_some_and(|bound| *bound != channel) {
            return Err(RouteError::forbidden("this connection's token is bound to another channel"));
        }
        if !app.may_join(ctx.session.identity.as_ref(), &channel).await {
            return Err(RouteError::forbidden("channel not allowed"));
        }
        let max = app.config.max_channels_per_connection;
        if app.sessions.join(ctx.session, &channel, max).await? == Joined::Full {
            return Err(RouteError::bad_request(format!("a connection may be in at most {max} channels")));
        }
        Ok(Some(ctx.reply(json!({ "channel": channel }))))
    }
}

/// `unsubscribe {channel}`: leave a channel.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnsubscribeRoute;

#[async_trait]
impl TypedRoute for UnsubscribeRoute {
    type Request = ChannelRequest;

    fn description(&self) -> &str {
        "Leave a channel."
    }

    async fn handle(&self, ctx: &MessageContext<'_>, request: ChannelRequest) -> Result<Option<Outbound>, RouteError> {
        let was_member = ctx.app.sessions.leave(ctx.connection_id(), &request.channel).await?;
        Ok(Some(ctx.reply(json!({ "channel": request.channel, "was_member": was_member }))))
    }
}

/// `ping`: answered by `pong` with the connection's own id.
#[derive(Debug, Clone, Copy, Default)]
pub struct PingRoute;

#[async_trait]
impl TypedRoute for PingRoute {
    type Request = Ping;

    fn description(&self) -> &str {
        "Ask for this connection's id (answered with `pong`)."
    }

    fn answers(&self) -> &[&str] {
        &["pong", "error"]
    }

    fn needs_session(&self) -> bool {
        false
    }

    async fn handle(&self, ctx: &MessageContext<'_>, _: Ping) -> Result<Option<Outbound>, RouteError> {
        let connection_id = ctx.connection_id().to_string();
        let reference = ctx.reference.map(str::to_owned);
        Ok(Some(Outbound::Pong(Pong { connection_id, reference, extra: Default::default() })))
    }
}
