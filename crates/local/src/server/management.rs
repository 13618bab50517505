//! The Management API: `POST`, `GET` and `DELETE /<stage>/@connections/{id}`, answered as API
//! Gateway answers them.

use super::*;

pub(super) async fn post_to_connection(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match shared.registry.post(&id, body) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(PostError::Gone) => aws_error(StatusCode::GONE, "GoneException", "Connection is gone"),
        Err(PostError::TooLarge) => {
            aws_error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLargeException", "Payload over 128 KiB")
        }
        Err(PostError::Full) => aws_error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            "The WebSocket client side buffer is full",
        ),
    }
}

pub(super) async fn get_connection(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(c) = shared.registry.get(&id) else {
        return aws_error(StatusCode::GONE, "GoneException", "Connection is gone");
    };
    let mut identity = json!({ "sourceIp": c.ctx.source_ip });
    if let Some(ua) = &c.ctx.user_agent {
        identity["userAgent"] = json!(ua);
    }
    let body = json!({
        "connectedAt": iso8601(c.ctx.connected_at),
        "lastActiveAt": iso8601(c.last_active_at.load(Ordering::Relaxed)),
        "identity": identity,
    });
    json_response(200, &body)
}

pub(super) async fn delete_connection(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.registry.close(&id, 1000, "") {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => aws_error(StatusCode::GONE, "GoneException", "Connection is gone"),
    }
}
