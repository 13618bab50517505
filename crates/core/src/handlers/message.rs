//! Messages on an open connection: parse the envelope, admit the message (session and rate, in
//! one store round trip), route it by `action` (see [`crate::routing`]), and answer with a reply
//! or a typed `error` message — never a panic or a 500 for a client's mistake.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use serde_json::json;

use super::{check_event, loggable, management_endpoint, respond};
use crate::App;
use crate::protocol::{ErrorCode, Inbound, Outbound, OutboundError};
use crate::rate;
use crate::routing::{MessageContext, RouteError, Router};
use crate::session::{ConnectionId, Recipient, Session};
use crate::store::Admission;

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
    let (answer, reference) = match route_message(app, router, event, &id).await {
        Ok(None) => return respond(200, &json!({})),
        Ok(Some(answered)) => answered,
        Err((error, reference)) => {
            let reason = crate::routing::bounded(&error.message, crate::routing::MAX_ERROR_TEXT);
            tracing::info!(connection_id = %id, code = error.code.as_str(), reason, "message refused");
            (error.into_message(reference.clone()), reference)
        }
    };
    let sender = app.sender();
    match sendable(&answer, reference) {
        Ok(payload) => match sender.deliver_payload_to(&reply_to, payload).await {
            report if report.delivered == 1 => {}
            report => tracing::info!(connection_id = %id, ?report, "could not answer the sender"),
        },
        Err(e) => tracing::error!(connection_id = %id, error = %e, "no answer is encodable"),
    }
    respond(200, &json!({}))
}

/// The answer as it is posted: the route's, or when that one cannot be sent (over 128 KiB, or
/// not a valid message) a typed error in its place with the client's `ref`, so no answer
/// vanishes; without the `ref` if even that is too large (a `ref` near 128 KiB itself).
fn sendable(answer: &Outbound, reference: Option<String>) -> Result<bytes::Bytes, OutboundError> {
    let error = match answer.encode() {
        Ok(payload) => return Ok(payload),
        Err(e) => e,
    };
    let refusal = match &error {
        OutboundError::TooLarge(bytes) => RouteError::new(
            ErrorCode::TooLarge,
            format!("the answer is {bytes} bytes, over the 131072 a message may carry"),
        ),
        // Logged just below, once; `RouteError::internal` would log it again.
        _ => RouteError::new(ErrorCode::Internal, "internal error"),
    };
    tracing::warn!(code = refusal.code.as_str(), error = %error, "answer replaced by an error");
    refusal.clone().into_message(reference).encode().or_else(|_| refusal.into_message(None).encode())
}

async fn route_message(
    app: &App,
    router: &Router,
    event: &ApiGatewayWebsocketProxyRequest,
    id: &ConnectionId,
) -> Result<Option<(Outbound, Option<String>)>, (RouteError, Option<String>)> {
    let body = event.body.as_deref().unwrap_or_default();
    let route_key = event.request_context.route_key.as_deref().filter(|k| !k.starts_with('$'));
    let msg =
        Inbound::parse_for_route(body, route_key).map_err(|e| (RouteError::new(e.code(), e.to_string()), None))?;
    let reference = msg.reference.clone();
    let fail = |e: RouteError| (e, reference.clone());
    let now = app.clock.now_secs();
    // The message's own `action`, or else the route API Gateway selected, when this router serves
    // it under that key (a selection expression may select by more than `action`).
    let route = router.get(&msg.action).or_else(|| route_key.and_then(|k| router.get(k)));
    // At most one store round trip: the session, with the message counted against the rate
    // limit. With no limit, a route that does not read the session (`ping`) needs none.
    let limit = app.config.rate_limits.messages_per_connection;
    let window = now.div_euclid(rate::WINDOW_SECS);
    let session = if limit == 0 && route.is_some_and(|r| !r.needs_session()) {
        event_session(app, id, event)
    } else {
        match app.sessions.admit_message(id, now, window, limit).await.map_err(|e| fail(e.into()))? {
            Admission::Admitted(session) => *session,
            Admission::Limited => {
                return Err(fail(RouteError::new(ErrorCode::RateLimited, "too many messages; slow down")));
            }
            Admission::NoSession => {
                return Err(fail(RouteError::new(
                    ErrorCode::NotConnected,
                    "no session for this connection; reconnect",
                )));
            }
        }
    };
    let Some(route) = route else {
        let known: Vec<&str> = router.actions().collect();
        let text = format!("unknown action \"{}\"; known actions: {}", loggable(&msg.action), known.join(", "));
        return Err(fail(RouteError::new(ErrorCode::UnknownAction, text)));
    };
    let (action, handler) = (msg.action.clone(), msg.handler.clone());
    let ctx =
        MessageContext::new(app, &session, event, &action).with_envelope(handler.as_deref(), reference.as_deref());
    Ok(route.handle(&ctx, msg).await.map_err(fail)?.map(|answer| (answer, reference)))
}

/// What the event itself says about the connection, for a route that does not read the stored
/// session (see [`Route::needs_session`](crate::routing::Route::needs_session)).
fn event_session(app: &App, id: &ConnectionId, event: &ApiGatewayWebsocketProxyRequest) -> Session {
    let ctx = &event.request_context;
    Session {
        connection_id: id.clone(),
        identity: None,
        api_id: ctx.apiid.clone().unwrap_or_default(),
        stage: ctx.stage.clone().unwrap_or_default(),
        endpoint: management_endpoint(&app.config, ctx).unwrap_or_default(),
        source_ip: ctx.identity.source_ip.clone().unwrap_or_default(),
        user_agent: ctx.identity.user_agent.clone(),
        connected_at: ctx.connected_at,
        last_seen: app.clock.now_millis(),
        expires_at: 0,
        metadata: Default::default(),
        bound_channel: None,
    }
}
