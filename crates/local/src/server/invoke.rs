//! The Lambda Invoke API for the sender and the clean-up, so backend code calling `lambda.invoke`
//! works locally.

use super::*;

pub(super) async fn invoke(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A name, a partial ARN or a full ARN; a `:qualifier` suffix is ignored.
    let function = name.rsplit(":function:").next().unwrap_or(&name).split(':').next().unwrap_or_default().to_owned();
    let kind = match function.as_str() {
        "sender" | "SenderFunction" => "sender",
        "cleanup" | "CleanupFunction" => "cleanup",
        _ => {
            let text = format!("Function not found: {function} (this gateway serves sender and cleanup)");
            return aws_error(StatusCode::NOT_FOUND, "ResourceNotFoundException", &text);
        }
    };
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) if body.is_empty() => Value::Null,
        Err(e) => return aws_error(StatusCode::BAD_REQUEST, "InvalidRequestContentException", &e.to_string()),
    };
    let invocation = headers.get("x-amz-invocation-type").and_then(|v| v.to_str().ok()).unwrap_or("RequestResponse");
    let run = {
        let shared = shared.clone();
        async move {
            match kind {
                "sender" => handlers::send(shared.app_of(shared.options.roles.sender.as_deref()), payload).await,
                _ => match handlers::cleanup(shared.app_of(shared.options.roles.cleanup.as_deref())).await {
                    Ok(report) => serde_json::to_value(report).unwrap_or(Value::Null),
                    Err(e) => json!({ "errorType": "StoreError", "errorMessage": e.to_string() }),
                },
            }
        }
    };
    match invocation {
        "Event" => {
            tokio::spawn(run);
            StatusCode::ACCEPTED.into_response()
        }
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        _ => {
            let result = run.await;
            let mut response = json_response(200, &result);
            response.headers_mut().insert("x-amz-executed-version", HeaderValue::from_static("$LATEST"));
            response
        }
    }
}
