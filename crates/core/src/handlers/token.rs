//! The token issuer: `POST /ws-token` → `{"token":"…","expires_in":60}`.
//!
//! Transport-neutral: the Lambda binary builds a [`TokenRequest`] from the HTTP API event (identity
//! from the JWT or Lambda authorizer), the local gateway from its own request.

use serde_json::{Value, json};

use crate::App;
use crate::protocol::{ErrorCode, ErrorEnvelope};
use crate::rate::{self, Scope};
use crate::session::{ChannelName, Identity};
use crate::token;

/// What the issuer needs to know about an HTTP request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// The authenticated caller, from the authorizer; `None` = anonymous.
    pub identity: Option<Identity>,
    /// The `Origin` header.
    pub origin: Option<String>,
    /// Whether the CSRF header ([`Config::csrf_header`](crate::Config::csrf_header)) was sent.
    pub csrf_header: bool,
    /// A channel to bind the token to (`?channel=` or `{"channel":…}`).
    pub channel: Option<String>,
}

/// An HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

impl HttpAnswer {
    /// A refusal: `status` with an [`ErrorEnvelope`] body.
    pub fn error(status: u16, code: ErrorCode, message: &str) -> Self {
        Self { status, body: ErrorEnvelope::new(code, message).to_json() }
    }
}

/// Issues a connect token. Checks, in order: `Origin` (403), CSRF header (403), identity (401),
/// channel name (400), channel permission (403, so a page learns early), rate per user (429).
/// The token is never logged.
pub async fn issue_token(app: &App, request: TokenRequest) -> HttpAnswer {
    let config = &app.config;
    let answer = async {
        if !config.allowed_origins.allows(request.origin.as_deref()) {
            return HttpAnswer::error(403, ErrorCode::Forbidden, "origin not allowed");
        }
        if !request.csrf_header {
            let text = format!("the {} header is required", config.csrf_header);
            return HttpAnswer::error(403, ErrorCode::Forbidden, &text);
        }
        let Some(identity) = request.identity else {
            return HttpAnswer::error(401, ErrorCode::Unauthorized, "authentication required");
        };
        let channel = match request.channel.as_deref().filter(|c| !c.is_empty()).map(ChannelName::new) {
            None => None,
            Some(Ok(channel)) => Some(channel),
            Some(Err(e)) => return HttpAnswer::error(400, ErrorCode::BadChannel, &e.to_string()),
        };
        if let Some(channel) = &channel
            && !app.admits(Some(&identity), channel).await
        {
            return HttpAnswer::error(403, ErrorCode::Forbidden, "channel not allowed");
        }
        let now = app.clock.now_secs();
        let user = identity.user_id.clone();
        match rate::allow(&*app.counters, Scope::Token, &user, config.rate_limits.tokens_per_user, now).await {
            Ok(true) => {}
            Ok(false) => return HttpAnswer::error(429, ErrorCode::RateLimited, "too many token requests"),
            Err(e) => {
                tracing::error!(error = %e, "store failed during token issue");
                return HttpAnswer::error(500, ErrorCode::Internal, "temporarily unavailable");
            }
        }
        match token::issue(&*app.tokens, identity, channel, config.token_ttl.as_secs(), app.clock.now_millis()).await {
            Ok(issued) => {
                tracing::info!(user = %user, "token issued");
                HttpAnswer { status: 200, body: json!({ "token": issued.token, "expires_in": issued.expires_in }) }
            }
            Err(e) => {
                tracing::error!(error = %e, "store failed during token issue");
                HttpAnswer::error(500, ErrorCode::Internal, "temporarily unavailable")
            }
        }
    }
    .await;
    if answer.status != 200 {
        tracing::info!(status = answer.status, body = %answer.body, "token refused");
    }
    answer
}
