//! `$connect`: validate, consume the token, check the channel, store the session.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use serde_json::json;

use super::{check_event, management_endpoint, respond};
use crate::App;
use crate::hooks::{ConnectInfo, Refusal};
use crate::rate::{self, Scope};
use crate::session::{ChannelName, ConnectionId, Session};
use crate::store::{Claim, UserLimits};
use crate::token::{self, TokenError};

/// Why a `$connect` was refused. Each maps to an HTTP status API Gateway returns to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefusal {
    /// 400: malformed connection id or channel name.
    #[error("{0}")]
    BadRequest(&'static str),
    /// 401: token missing, invalid, expired or already used.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: origin, API or channel permission refused.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 429: too many attempts.
    #[error("too many connection attempts")]
    RateLimited,
    /// 429: the user has the most open connections allowed (`LWS_MAX_CONNECTIONS_PER_USER`).
    #[error("too many open connections for this user")]
    TooManyConnections,
    /// The application's connect hook refused, with its own status and reason.
    #[error("{}", .0.reason)]
    Hook(Refusal),
    /// 500: the store failed (details logged, not returned).
    #[error("temporarily unavailable")]
    Unavailable,
}

impl ConnectRefusal {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::RateLimited | Self::TooManyConnections => 429,
            Self::Hook(refusal) => refusal.status,
            Self::Unavailable => 500,
        }
    }
}

impl From<crate::store::StoreError> for ConnectRefusal {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failed during $connect");
        Self::Unavailable
    }
}

/// Handles a `$connect` event: 200, or 400/401/403/429 with a short reason.
///
/// Checks, in order of effect: API id, gateway secret (when configured), connection id, rate per
/// source IP (every attempt counts, so token guessing is limited too), `Origin`, channel name,
/// token (consumed once), the token's channel binding, channel permission, the application's
/// [`ConnectHook`](crate::hooks::ConnectHook) (metadata or its own refusal), then rate per user
/// and a slot among the user's open connections, and the session is written. The channel name
/// and origin are checked before the token is spent, so a typo does not burn it; a 429 from the
/// per-IP limit puts the token back. A token's bound channel is recorded on the session:
/// `subscribe` refuses every other channel.
///
/// Three store round trips in the common case: the per-IP count and the token together; the
/// user's count and slot in one conditional write; the session with its connect channel in one
/// write (and, in a channel with presence, the presence entry beside it). A refused connect
/// writes no session, membership or slot. A user's first connection in a channel with presence
/// is announced to its members (`member_joined`).
pub async fn connect(app: &App, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    match try_connect(app, event).await {
        Ok((session, subprotocol)) => {
            tracing::info!(connection_id = %session.connection_id, user = session.user_id(), "connected");
            let mut response = respond(200, &json!({}));
            if let Some(value) = subprotocol.and_then(|p| http::HeaderValue::from_str(&p).ok()) {
                response.headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
            }
            response
        }
        Err(refusal) => {
            let ctx = &event.request_context;
            tracing::info!(
                status = refusal.status(),
                reason = %refusal,
                connection_id = ctx.connection_id.as_deref(),
                source_ip = ctx.identity.source_ip.as_deref(),
                "$connect refused"
            );
            respond(refusal.status(), &json!({ "message": refusal.to_string() }))
        }
    }
}

/// The subprotocol to answer: the first the client offers that `LWS_SUBPROTOCOLS` lists. With a
/// list configured, a client that offers only others is refused; without one, none is chosen.
fn choose_subprotocol(
    config: &crate::Config,
    event: &ApiGatewayWebsocketProxyRequest,
) -> Result<Option<String>, ConnectRefusal> {
    let offered: Vec<&str> = event
        .headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if config.subprotocols.is_empty() || offered.is_empty() {
        return Ok(None);
    }
    match offered.into_iter().find(|p| config.subprotocols.iter().any(|s| s == p)) {
        Some(chosen) => Ok(Some(chosen.to_owned())),
        None => Err(ConnectRefusal::BadRequest("unsupported subprotocol")),
    }
}

async fn try_connect(
    app: &App,
    event: &ApiGatewayWebsocketProxyRequest,
) -> Result<(Session, Option<String>), ConnectRefusal> {
    let ctx = &event.request_context;
    let config = &app.config;
    let now_ms = app.clock.now_millis();
    let now = now_ms.div_euclid(1000);
    check_event(config, event).map_err(ConnectRefusal::Forbidden)?;
    let connection_id = ctx
        .connection_id
        .clone()
        .and_then(|id| ConnectionId::new(id).ok())
        .ok_or(ConnectRefusal::BadRequest("invalid connection id"))?;
    let subprotocol = choose_subprotocol(config, event)?;
    let source_ip = ctx.identity.source_ip.clone().unwrap_or_else(|| "unknown".to_owned());
    let loopback = source_ip.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let per_ip = if loopback && !config.ip_limits_on_loopback { 0 } else { config.rate_limits.connect_per_ip };
    // The checks that need no store, answered after the per-IP count (every attempt counts) but
    // decided first, so a refused attempt does not spend its token.
    let origin = event.headers.get(http::header::ORIGIN).and_then(|v| v.to_str().ok());
    let query = &event.query_string_parameters;
    let requested = if !config.allowed_origins.allows(origin) {
        Err(ConnectRefusal::Forbidden("origin not allowed"))
    } else {
        match query.first("channel").filter(|c| !c.is_empty()) {
            Some(name) => {
                ChannelName::new(name).map(Some).map_err(|_| ConnectRefusal::BadRequest("invalid channel name"))
            }
            None => Ok(None),
        }
    };
    // One round trip for two independent calls: the per-IP count and the token. A 429 from the
    // count puts the token back, so it does not spend it.
    let token_text = query.first("ws_token");
    let spend = requested.is_ok() && (token_text.is_some() || config.require_token);
    let (allowed, taken) =
        futures::join!(rate::allow(&*app.counters, Scope::ConnectIp, &source_ip, per_ip, now), async {
            if spend { Some(token::consume(&*app.tokens, token_text, now).await) } else { None }
        });
    if !allowed? {
        if let (Some(Ok(record)), Some(text)) = (&taken, token_text)
            && let Err(e) = token::restore(&*app.tokens, text, record).await
        {
            tracing::warn!(error = %e, "could not put back the token of a rate-limited $connect");
        }
        return Err(ConnectRefusal::RateLimited);
    }
    let requested = requested?;
    let record = match taken {
        None => None,
        Some(taken) => Some(taken.map_err(|e| match e {
            TokenError::Missing => ConnectRefusal::Unauthorized("token missing"),
            TokenError::Invalid => ConnectRefusal::Unauthorized("token invalid or already used"),
            TokenError::Expired => ConnectRefusal::Unauthorized("token expired"),
            TokenError::Store(e) => e.into(),
        })?),
    };
    let bound = record.as_ref().and_then(|r| r.channel.clone());
    let channel = match (requested, &bound) {
        (Some(req), Some(bound)) if req != *bound => {
            return Err(ConnectRefusal::Forbidden("token is for another channel"));
        }
        (req, bound) => req.or_else(|| bound.clone()).or_else(|| config.default_channel.clone()),
    };
    // When the credential was issued: a close of the user's sessions after it refuses it.
    let issued_ms = record.as_ref().map_or(now_ms, |r| r.issued_at);
    let identity = record.map(|r| r.identity);
    if let Some(channel) = &channel
        && !app.admits(identity.as_ref(), channel).await
    {
        return Err(ConnectRefusal::Forbidden("channel not allowed"));
    }
    let endpoint = management_endpoint(config, ctx).ok_or(ConnectRefusal::BadRequest("event has no domain name"))?;
    let metadata = match &app.connect_hook {
        None => Default::default(),
        Some(hook) => {
            let info = ConnectInfo {
                connection_id: &connection_id,
                identity: identity.as_ref(),
                channel: channel.as_ref(),
                source_ip: &source_ip,
                headers: &event.headers,
                query_string: &event.query_string_parameters,
            };
            hook.on_connect(&info).await.map_err(ConnectRefusal::Hook)?
        }
    };
    let connected_at = if ctx.connected_at > 0 { ctx.connected_at } else { now_ms };
    let session = Session {
        connection_id,
        identity,
        api_id: ctx.apiid.clone().unwrap_or_default(),
        stage: ctx.stage.clone().unwrap_or_default(),
        endpoint,
        source_ip,
        user_agent: ctx.identity.user_agent.clone(),
        connected_at,
        last_seen: now_ms,
        expires_at: connected_at.div_euclid(1000) + config.session_ttl.as_secs() as i64,
        metadata,
        bound_channel: bound,
    };
    // The writes, last: the user's connect count and connection slot in one, then the session
    // with its connect channel in one.
    let limits = UserLimits {
        max_connections: config.max_connections_per_user,
        connects_per_minute: config.rate_limits.connect_per_user,
    };
    let slot = match app.sessions.claim_connection(&session, limits, issued_ms, now).await? {
        Claim::Claimed { slot } => slot,
        Claim::RateLimited => return Err(ConnectRefusal::RateLimited),
        Claim::Full => return Err(ConnectRefusal::TooManyConnections),
        Claim::Closed => {
            return Err(ConnectRefusal::Unauthorized("token issued before the user's sessions were closed"));
        }
    };
    // In a channel with presence, the connection is counted there at the same time; a user's
    // first connection there is announced once both writes hold.
    let tracker = app.presence_tracker().filter(|t| channel.as_ref().is_some_and(|c| t.rule_for(c).is_some()));
    let (opened, entered) = futures::join!(app.sessions.open_session(&session, channel.as_ref(), slot), async {
        match (&tracker, &channel) {
            (Some(tracker), Some(channel)) => tracker.enter(channel, &session, now).await,
            _ => Ok(None),
        }
    });
    match (opened, entered) {
        (Ok(()), Ok(joined)) => {
            if let (Some(member), Some(channel), Some(tracker)) = (joined, &channel, &tracker) {
                tracker.announce_joined(&app.sender(), channel, member, &session.connection_id).await;
            }
            Ok((session, subprotocol))
        }
        (opened, entered) => {
            // Refused: undo whichever write held, so nothing is left of the connection.
            if opened.is_ok()
                && let Some(removed) = app.sessions.remove_session(&session.connection_id).await.ok().flatten()
            {
                app.leave_presence(&[removed]).await;
            } else if let (Ok(_), Some(tracker), Some(channel)) = (&entered, tracker, &channel) {
                let _ = tracker.exit(channel, &session.connection_id, session.user_id(), now).await;
            }
            Err(opened.and(entered.map(|_| ())).err().map_or(ConnectRefusal::Unavailable, ConnectRefusal::from))
        }
    }
}
