//! A typed client for the sender function, for code in other Lambdas (feature `invoke-client`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), lambda_ws::client::ClientError> {
//! use lambda_ws::client::SenderClient;
//! use lambda_ws::protocol::{Level, SystemMessage};
//! use lambda_ws::{Outbound, SendRequest, Target};
//!
//! let aws = aws_config::load_from_env().await;
//! let sender = SenderClient::new(aws_sdk_lambda::Client::new(&aws), "my-stack-SenderFunction-abc");
//! let message = Outbound::System(SystemMessage::new(Level::Info, "deploy finished"));
//! let request = SendRequest::new(Target::All, message);
//! let report = sender.send(&request).await?;          // waits for the delivery report
//! sender.send_async(&request).await?;                 // or fire and forget (InvocationType::Event)
//! # let _ = report; Ok(()) }
//! ```
//!
//! The caller's role needs `lambda:InvokeFunction` on the sender (the stack's
//! `SenderInvokePolicyArn` output is a managed policy granting exactly that).

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde::Deserialize;

use crate::delivery::{DeliveryReport, SendRequest};
use crate::protocol::{ErrorCode, ErrorEnvelope};

/// Why a call to the sender did not produce a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request could not be built or encoded.
    #[error("invalid request: {0}")]
    Request(String),
    /// Lambda did not run the function (permissions, throttling, network, no such function).
    #[error("invoke failed: {0}")]
    Invoke(String),
    /// The function ran and failed (crash, timeout).
    #[error("the sender failed: {0}")]
    Function(String),
    /// The sender refused the request (a [`crate::protocol::ErrorEnvelope`]).
    #[error("the sender refused the request ({}): {message}", code.as_str())]
    Refused {
        /// The error code, e.g. `bad_request` or `too_large`.
        code: ErrorCode,
        /// Why.
        message: String,
    },
    /// The answer was neither a report nor an error.
    #[error("unexpected answer from the sender: {0}")]
    Decode(String),
}

/// Invokes the sender function through the Lambda Invoke API.
#[derive(Debug, Clone)]
pub struct SenderClient {
    lambda: aws_sdk_lambda::Client,
    function: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    Refused(ErrorEnvelope),
    Report(DeliveryReport),
}

impl SenderClient {
    /// A client for the function `function` (name, ARN or partial ARN).
    pub fn new(lambda: aws_sdk_lambda::Client, function: impl Into<String>) -> Self {
        Self { lambda, function: function.into() }
    }

    /// Sends and waits for the delivery report (`RequestResponse`).
    pub async fn send(&self, request: &SendRequest) -> Result<DeliveryReport, ClientError> {
        let payload = self.invoke(request, InvocationType::RequestResponse).await?;
        match serde_json::from_slice::<Answer>(&payload) {
            Ok(Answer::Report(report)) => Ok(report),
            Ok(Answer::Refused(ErrorEnvelope { error })) => {
                Err(ClientError::Refused { code: error.code, message: error.message })
            }
            Err(e) => Err(ClientError::Decode(e.to_string())),
        }
    }

    /// Queues the send with Lambda (`Event` invocation) and returns once Lambda accepted it.
    pub async fn send_async(&self, request: &SendRequest) -> Result<(), ClientError> {
        self.invoke(request, InvocationType::Event).await.map(drop)
    }

    async fn invoke(&self, request: &SendRequest, kind: InvocationType) -> Result<Vec<u8>, ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Request(e.to_string()))?;
        let out = self
            .lambda
            .invoke()
            .function_name(&self.function)
            .invocation_type(kind)
            .payload(Blob::new(body))
            .send()
            .await
            .map_err(|e| ClientError::Invoke(aws_sdk_lambda::error::DisplayErrorContext(&e).to_string()))?;
        if let Some(kind) = out.function_error() {
            let detail = out.payload().map(|p| String::from_utf8_lossy(p.as_ref()).into_owned()).unwrap_or_default();
            return Err(ClientError::Function(format!("{kind}: {detail}")));
        }
        Ok(out.payload.map(Blob::into_inner).unwrap_or_default())
    }
}
