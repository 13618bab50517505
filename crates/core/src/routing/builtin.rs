//! The built-in actions every router starts from ([`Router::builtin`](super::Router::builtin)):
//! `subscribe`, `unsubscribe`, `history`, `presence` and `ping`, as typed routes.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{MessageContext, RouteError, TypedRoute};
use crate::history::{self, HistoryRule, Resumed};
use crate::protocol::{ErrorCode, Outbound, Pong};
use crate::session::{ChannelName, Recipient};
use crate::store::{Joined, Removed};

/// The request of `subscribe` and `unsubscribe`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct ChannelRequest {
    /// The channel.
    pub channel: ChannelName,
}

/// The request of `subscribe`: the channel, and to resume, the last `seq` seen in it with its
/// `epoch` (both from the channel's messages or an earlier `subscribe` reply).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct Subscription {
    /// The channel.
    pub channel: ChannelName,
    /// The last sequence number seen in the channel: the messages after it are sent first.
    #[serde(default)]
    pub since: Option<u64>,
    /// The stream `since` belongs to.
    #[serde(default)]
    pub epoch: Option<String>,
}

/// The request of `history`: a channel and how many of its latest messages.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct HistoryQuery {
    /// The channel.
    pub channel: ChannelName,
    /// At most this many (the channel's rule may keep fewer).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only messages numbered below this (the next page back: the first `seq` of the last answer).
    #[serde(default)]
    pub before: Option<u64>,
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
    type Request = Subscription;

    fn description(&self) -> &str {
        "Join a channel, under the same permission check as `$connect`. In a channel with history, \
         the reply carries the stream's `epoch` and `seq`; with `since` (and `epoch`) the messages \
         after it are sent first, in order, and the reply says whether they close the gap \
         (`recovered`)."
    }

    async fn handle(&self, ctx: &MessageContext<'_>, request: Subscription) -> Result<Option<Outbound>, RouteError> {
        let Subscription { channel, since, epoch } = request;
        let app = ctx.app;
        ctx.may_use(&channel).await?;
        let max = app.config.max_channels_per_connection;
        match app.sessions.join(ctx.session, &channel, max).await? {
            Joined::Full => {
                return Err(RouteError::bad_request(format!("a connection may be in at most {max} channels")));
            }
            Joined::New => {
                if let Err(e) = app.join_presence(ctx.session, &channel).await {
                    // Not counted there: leave again, so that a retry joins, and is counted, anew.
                    let _ = app.sessions.leave(ctx.connection_id(), &channel).await;
                    return Err(e.into());
                }
                // A `$disconnect` running meanwhile removes what it finds: a membership written
                // after it looked, or a presence entry after it left, would outlive the
                // connection. It deletes the session first, so a session still there now means it
                // will find both; one gone means undoing them here.
                if app.sessions.get_session(ctx.connection_id(), app.clock.now_secs()).await?.is_none() {
                    let _ = app.sessions.leave(ctx.connection_id(), &channel).await;
                    app.leave_presence(&[Removed::of(ctx.session, vec![channel.clone()])]).await;
                    return Err(RouteError::new(ErrorCode::NotConnected, "the connection ended"));
                }
            }
            Joined::Already => {}
        }
        let Some(rule) = app.config.history.rule_for(&channel) else {
            return Ok(Some(ctx.reply(json!({ "channel": channel }))));
        };
        // A member now, so every later send reaches this connection live; what came before is
        // read after joining, so nothing falls between the two (the client drops a `seq` it has
        // seen twice).
        let Some(since) = since else {
            // No position to resume from: only the stream's place (no message after the last).
            let head = app.history.recent(&channel, u64::MAX, rule, app.clock.now_millis()).await?;
            return Ok(Some(ctx.reply(json!({ "channel": channel, "epoch": head.epoch, "seq": head.head }))));
        };
        let resumed = catch_up(ctx, &channel, rule, since, epoch.as_deref()).await?;
        // A replay costs what it posts: packed into frames of one billed unit each, and every
        // frame counted against the connection's message limit (beside the request itself), so
        // asking again and again replays no more than the limit allows.
        let frames = history::replay_frames(&channel, &resumed.messages);
        let limit = app.config.rate_limits.messages_per_connection;
        let units = u32::try_from(frames.len()).unwrap_or(u32::MAX);
        let window = app.clock.now_secs().div_euclid(crate::rate::WINDOW_SECS);
        if !frames.is_empty() && !app.sessions.charge_messages(ctx.connection_id(), window, limit, units).await? {
            return Err(RouteError::new(
                ErrorCode::RateLimited,
                format!(
                    "replaying {} messages takes {units} of this connection's {limit} messages a minute; \
                     try again later",
                    resumed.messages.len()
                ),
            ));
        }
        let recipient =
            Recipient { connection_id: ctx.connection_id().clone(), endpoint: ctx.session.endpoint.clone() };
        let sender = app.sender();
        for frame in frames {
            let report = sender.deliver_payload_to(&recipient, frame).await;
            if report.delivered != 1 {
                return Err(RouteError::internal("the connection could not be reached"));
            }
        }
        Ok(Some(ctx.reply(json!({
            "channel": channel,
            "epoch": resumed.epoch,
            "seq": resumed.seq,
            "recovered": resumed.recovered,
            "replayed": resumed.messages.len(),
        }))))
    }
}

/// The messages after `since` and whether they close the gap. A message whose number was taken
/// but is not kept yet is in flight (its send stores it, then posts it to members, this
/// connection included): a short wait gives it time; if only the newest are still missing, they
/// are left to arrive live.
async fn catch_up(
    ctx: &MessageContext<'_>,
    channel: &ChannelName,
    rule: HistoryRule,
    since: u64,
    epoch: Option<&str>,
) -> Result<Resumed, RouteError> {
    let app = ctx.app;
    let mut waits = IN_FLIGHT_WAITS.iter();
    loop {
        let now = app.clock.now_millis();
        let recent = app.history.recent(channel, since, rule, now).await?;
        let resumed = history::resume(channel, since, epoch, recent, rule, now)?;
        // `recovered` only when every number after `since` is replayed: a number still missing
        // after the waits counts as lost (the client refetches), never as caught up.
        match waits.next() {
            Some(wait) if resumed.tail_only => tokio::time::sleep(*wait).await,
            _ => return Ok(resumed),
        }
    }
}

/// How long a resume waits, each time, for a message whose number is taken but which is not kept
/// yet (a send writes the number, then the message: one store write apart).
const IN_FLIGHT_WAITS: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(50),
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(200),
];

/// `history {channel, limit}`: the channel's latest kept messages, oldest first, under the same
/// permission check as `subscribe` (membership is not needed).
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryRoute;

#[async_trait]
impl TypedRoute for HistoryRoute {
    type Request = HistoryQuery;

    fn description(&self) -> &str {
        "Read a channel's latest kept messages (a channel with history), under the same permission \
         check as `subscribe`; the reply's data has `channel`, `epoch`, `seq`, `messages` (as many \
         as fit in one message) and `more` (older ones were left out: ask again with `before`)."
    }

    async fn handle(&self, ctx: &MessageContext<'_>, request: HistoryQuery) -> Result<Option<Outbound>, RouteError> {
        let HistoryQuery { channel, limit, before } = request;
        match ctx.channel_history(&channel, limit, before).await? {
            Some(history) => Ok(Some(ctx.reply(json!(history)))),
            None => Err(RouteError::bad_request("this channel keeps no history").at_field("channel")),
        }
    }
}

/// `presence {channel}`: who is in a channel with presence, under the same permission check as
/// `subscribe` (membership is not needed).
#[derive(Debug, Clone, Copy, Default)]
pub struct PresenceRoute;

#[async_trait]
impl TypedRoute for PresenceRoute {
    type Request = ChannelRequest;

    fn description(&self) -> &str {
        "Ask who is in a channel with presence, under the same permission check as `subscribe`. The \
         reply's data has `channel`, `users`, `connections` (anonymous ones included) and \
         `anonymous`, and `members` (one per user: `user_id`, `connections`, `info`, the public part \
         of its metadata) unless the channel has more users than it lists."
    }

    async fn handle(&self, ctx: &MessageContext<'_>, request: ChannelRequest) -> Result<Option<Outbound>, RouteError> {
        let ChannelRequest { channel } = request;
        match ctx.channel_presence(&channel).await? {
            Some(presence) => Ok(Some(ctx.reply(json!(presence)))),
            None => Err(RouteError::bad_request("this channel has no presence").at_field("channel")),
        }
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
        let app = ctx.app;
        let was_member = app.sessions.leave(ctx.connection_id(), &request.channel).await?;
        if was_member {
            let left = Removed::of(ctx.session, vec![request.channel.clone()]);
            app.leave_presence(&[left]).await;
        }
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
