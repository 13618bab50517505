//! The sender function's handler: a JSON request in, a JSON report (or error) out.

use serde_json::{Value, json};

use crate::App;
use crate::delivery::{SEND_CONTRACT_VERSION, SendError, SendRequest};
use crate::protocol::{ErrorCode, OutboundError};

/// Handles one sender request (see [`SendRequest`]): `{"target":…,"message":…,"exclude":…}`.
///
/// Answers the [`DeliveryReport`](crate::DeliveryReport) as JSON, or
/// `{"error":{"code":…,"message":…}}` for a request that cannot be sent.
pub async fn send(app: &App, request: Value) -> Value {
    let request: SendRequest = match serde_json::from_value(request) {
        Ok(r) => r,
        Err(e) => return error(ErrorCode::BadRequest, &format!("invalid send request: {e}")),
    };
    send_response(app, &request).await
}

/// Handles an already parsed request.
pub async fn send_response(app: &App, request: &SendRequest) -> Value {
    if let Some(v) = request.version.filter(|v| *v != SEND_CONTRACT_VERSION) {
        return error(
            ErrorCode::BadRequest,
            &format!("unsupported version {v}; this sender speaks {SEND_CONTRACT_VERSION}"),
        );
    }
    match app.sender().send(&request.target, &request.message, &request.exclude).await {
        Ok(report) => {
            tracing::info!(
                target = ?request.target,
                recipients = report.recipients,
                delivered = report.delivered,
                gone = report.gone.len(),
                failed = report.failed.len(),
                "sent"
            );
            serde_json::to_value(&report).unwrap_or_else(|e| error(ErrorCode::Internal, &e.to_string()))
        }
        Err(SendError::Message(e)) => {
            let code = match e {
                OutboundError::TooLarge(_) => ErrorCode::TooLarge,
                OutboundError::CustomType | OutboundError::Invalid(_) => ErrorCode::BadRequest,
            };
            error(code, &e.to_string())
        }
    }
}

fn error(code: ErrorCode, message: &str) -> Value {
    tracing::info!(code = code.as_str(), reason = message, "send refused");
    json!({ "error": { "code": code, "message": message } })
}
