//! The sender function's handler: a JSON request in, a JSON report (or error) out.
//!
//! The sender accepts three shapes of event:
//! - one [`SendRequest`] → one report (or `{"error":…}`);
//! - a JSON array of requests (a batch) → an array of reports/errors, in order;
//! - an SQS event whose records' bodies are requests → `{"batchItemFailures":[…]}`, so that
//!   with `ReportBatchItemFailures` only the records that could not be sent come back;
//! - a [`SenderQuery`] (`{"query": {"history": {…}}}` or `{"query": {"presence": {…}}}`), alone or
//!   in a batch → the channel's history or presence, as the browser actions answer them.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde_json::Value;

use crate::App;
use crate::delivery::{DeliveryReport, Query, SEND_CONTRACT_VERSION, SendError, SendRequest, SenderQuery};
use crate::protocol::{ErrorCode, ErrorEnvelope, OutboundError};

/// Handles a sender event: a request, a batch of requests, or an SQS event (see the module docs).
pub async fn send(app: &App, event: Value) -> Value {
    if is_sqs_event(&event) {
        return match serde_json::from_value::<SqsEvent>(event) {
            Ok(sqs) => serde_json::to_value(send_sqs(app, sqs).await).unwrap_or_else(|e| internal(&e)),
            Err(e) => error(ErrorCode::BadRequest, &format!("invalid SQS event: {e}")),
        };
    }
    match event {
        Value::Array(requests) => {
            let mut answers = Vec::with_capacity(requests.len());
            for request in requests {
                answers.push(send_one(app, request).await);
            }
            Value::Array(answers)
        }
        request => send_one(app, request).await,
    }
}

fn is_sqs_event(event: &Value) -> bool {
    event
        .get("Records")
        .and_then(Value::as_array)
        .is_some_and(|records| records.iter().all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs")))
}

async fn send_one(app: &App, request: Value) -> Value {
    if request.get("query").is_some() {
        return match serde_json::from_value::<SenderQuery>(request) {
            Ok(query) => answer_query(app, &query).await,
            Err(e) => error(ErrorCode::BadRequest, &format!("invalid query: {e}")),
        };
    }
    match serde_json::from_value::<SendRequest>(request) {
        Ok(request) => send_response(app, &request).await,
        Err(e) => error(ErrorCode::BadRequest, &format!("invalid send request: {e}")),
    }
}

/// Sends each SQS record's request. A record is reported as failed (and SQS delivers it again)
/// only when retrying cannot duplicate a delivery and may succeed: the recipient listing broke off,
/// or every post failed. Invalid requests are logged and dropped: they would fail forever.
pub async fn send_sqs(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or_default();
        let request = match serde_json::from_str::<SendRequest>(body) {
            Ok(request) => request,
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "SQS record is not a send request; dropped");
                continue;
            }
        };
        let retry = match deliver(app, &request).await {
            Ok(report) => report.incomplete.is_some() || (report.delivered == 0 && !report.failed.is_empty()),
            Err(refusal) => {
                tracing::info!(message_id = %id, code = refusal.code.as_str(), reason = %refusal, "send refused");
                false
            }
        };
        if retry {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// Handles an already parsed request.
pub async fn send_response(app: &App, request: &SendRequest) -> Value {
    match deliver(app, request).await {
        Ok(report) => serde_json::to_value(&report).unwrap_or_else(|e| internal(&e)),
        Err(refusal) => error(refusal.code, &refusal.message),
    }
}

/// Why the sender refused a request (nothing was posted): its answer is the error envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendRefusal {
    /// `bad_request` or `too_large`.
    pub code: ErrorCode,
    /// Why.
    pub message: String,
}

impl SendRefusal {
    fn bad_request(message: impl Into<String>) -> Self {
        Self { code: ErrorCode::BadRequest, message: message.into() }
    }
}

/// Sends one request, logs and records its report.
pub async fn deliver(app: &App, request: &SendRequest) -> Result<DeliveryReport, SendRefusal> {
    if let Some(v) = request.version.filter(|v| *v != SEND_CONTRACT_VERSION) {
        return Err(SendRefusal::bad_request(format!(
            "unsupported version {v}; this sender speaks {SEND_CONTRACT_VERSION}"
        )));
    }
    let sender = app.sender();
    let sent = match (&request.message, request.close) {
        (Some(message), _) => sender.send(&request.target, message, &request.exclude).await,
        (None, true) => Ok(DeliveryReport::default()),
        (None, false) => {
            return Err(SendRefusal::bad_request("a send request needs a message, close: true, or both"));
        }
    };
    // With `close`, the message (if any) went first: every post was accepted or failed before
    // any connection is closed.
    let sent = match sent {
        Ok(report) if request.close => {
            let closed = sender.close(&request.target, &request.exclude).await;
            Ok(if request.message.is_some() { with_closes(report, closed) } else { closed })
        }
        other => other,
    };
    match sent {
        Ok(report) => {
            tracing::info!(
                target = request.target.kind(),
                closed = report.closed,
                recipients = report.recipients,
                delivered = report.delivered,
                gone = report.gone.len(),
                failed = report.failed.len(),
                retries = report.retries,
                duration_ms = report.duration_ms,
                "sent"
            );
            if let Some(metrics) = &app.metrics {
                metrics.record(request.target.kind(), &report);
            }
            Ok(report)
        }
        Err(SendError::Message(e)) => {
            let code = match e {
                OutboundError::TooLarge(_) => ErrorCode::TooLarge,
                _ => ErrorCode::BadRequest,
            };
            Err(SendRefusal { code, message: e.to_string() })
        }
    }
}

/// A message's report with what closing the same recipients then did: `closed`, and the
/// connections found gone or not closed added to `gone` and `failed` (each once).
fn with_closes(mut sent: DeliveryReport, closes: DeliveryReport) -> DeliveryReport {
    sent.closed = closes.closed;
    for id in closes.gone {
        if !sent.gone.contains(&id) {
            sent.gone.push(id);
        }
    }
    sent.failed.extend(closes.failed);
    sent.retries += closes.retries;
    sent.duration_ms += closes.duration_ms;
    sent.incomplete = match (sent.incomplete, closes.incomplete) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    };
    sent
}

/// Answers a history or presence query: the channel's, or an error for a channel without it.
pub async fn answer_query(app: &App, query: &SenderQuery) -> Value {
    if let Some(v) = query.version.filter(|v| *v != SEND_CONTRACT_VERSION) {
        return error(
            ErrorCode::BadRequest,
            &format!("unsupported version {v}; this sender speaks {SEND_CONTRACT_VERSION}"),
        );
    }
    let answer = match &query.query {
        Query::History { channel, limit, before } => app
            .channel_history_unchecked(channel, *limit, *before, crate::protocol::ANSWER_BYTES)
            .await
            .map(|h| h.map(|h| json(&h))),
        Query::Presence { channel } => app.channel_presence_unchecked(channel).await.map(|p| p.map(|p| json(&p))),
    };
    match answer {
        Ok(Some(answer)) => answer,
        Ok(None) => {
            let kind = match query.query {
                Query::History { .. } => "keeps no history",
                _ => "has no presence",
            };
            error(ErrorCode::BadRequest, &format!("this channel {kind}"))
        }
        Err(e) => {
            tracing::error!(error = %e, "a sender query failed");
            error(ErrorCode::Internal, "temporarily unavailable")
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| internal(&e))
}

fn internal(e: &serde_json::Error) -> Value {
    error(ErrorCode::Internal, &e.to_string())
}

fn error(code: ErrorCode, message: &str) -> Value {
    tracing::info!(code = code.as_str(), reason = message, "send refused");
    ErrorEnvelope::new(code, message).to_json()
}
