//! `$disconnect`: forget the session and its memberships; a user whose last connection was in a
//! channel with presence leaves it (`member_left`).

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use serde_json::json;

use super::{check_event, loggable, respond};
use crate::App;
use crate::hooks::{Ended, Ending};
use crate::session::ConnectionId;

/// Handles a `$disconnect` event. Idempotent: an unknown connection is not an error (API Gateway
/// may deliver `$disconnect` for a connection `$connect` refused, and delivers at most once).
pub async fn disconnect(app: &App, event: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let ctx = &event.request_context;
    if let Err(reason) = check_event(&app.config, event) {
        tracing::warn!(api_id = ctx.apiid.as_deref(), reason, "$disconnect event refused");
        return respond(403, &json!({ "message": reason }));
    }
    let Some(id) = ctx.connection_id.clone().and_then(|id| ConnectionId::new(id).ok()) else {
        tracing::warn!("$disconnect without a valid connection id");
        return respond(400, &json!({ "message": "invalid connection id" }));
    };
    match app.sessions.remove_session(&id).await {
        Ok(found) => {
            if let (Some(hook), Some(removed)) = (&app.disconnect_hook, &found) {
                let ending =
                    Ending::Disconnected { status: ctx.disconnect_status_code, reason: ctx.disconnect_reason.clone() };
                let user_id = removed.user_id.clone();
                hook.on_disconnect(&Ended { connection_id: id.clone(), user_id, ending }).await;
            }
            if let Some(removed) = &found {
                app.leave_presence(std::slice::from_ref(removed)).await;
            }
            tracing::info!(
                connection_id = %id,
                known = found.is_some(),
                status = ctx.disconnect_status_code,
                reason = ctx.disconnect_reason.as_deref().map(loggable),
                "disconnected"
            );
            respond(200, &json!({}))
        }
        Err(e) => {
            // The items expire by TTL and the clean-up function removes them; nothing else to do.
            tracing::error!(connection_id = %id, error = %e, "could not remove session on $disconnect");
            respond(500, &json!({ "message": "temporarily unavailable" }))
        }
    }
}
