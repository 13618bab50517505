//! The API Gateway Management API as a [`Transport`] (feature `management-api`, on by default).

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use bytes::Bytes;

use super::transport::{ConnectionInfo, Transport, TransportError};
use crate::session::ConnectionId;

/// The API Gateway Management API, one SDK client per endpoint, created on first use and reused.
///
/// SDK retries are off: the [`Sender`](crate::Sender) retries itself, so that every retry is
/// counted in its report and bounded by its deadline.
pub struct ManagementApi {
    config: aws_config::SdkConfig,
    attempt_timeout: Duration,
    clients: RwLock<HashMap<String, Client>>,
}

impl fmt::Debug for ManagementApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints: Vec<String> = self.clients.read().map(|c| c.keys().cloned().collect()).unwrap_or_default();
        f.debug_struct("ManagementApi").field("endpoints", &endpoints).finish()
    }
}

impl ManagementApi {
    /// A transport using credentials and region from `config`.
    pub fn new(config: aws_config::SdkConfig) -> Self {
        Self { config, attempt_timeout: Self::DEFAULT_ATTEMPT_TIMEOUT, clients: RwLock::new(HashMap::new()) }
    }

    /// How long one post may take before it counts as a (retryable) timeout.
    pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

    /// The same transport with another per-post timeout (clients built later use it).
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The client for `endpoint`, built once.
    pub fn client(&self, endpoint: &str) -> Client {
        if let Some(client) = self.clients.read().ok().and_then(|c| c.get(endpoint).cloned()) {
            return client;
        }
        let conf = aws_sdk_apigatewaymanagement::config::Builder::from(&self.config)
            .endpoint_url(endpoint)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(self.attempt_timeout)
                    .build(),
            )
            .build();
        let client = Client::from_conf(conf);
        if let Ok(mut clients) = self.clients.write() {
            clients.entry(endpoint.to_owned()).or_insert_with(|| client.clone());
        }
        client
    }
}

fn map_error<E>(e: SdkError<E, aws_smithy_runtime_api_http::HttpResponse>) -> TransportError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &e {
        SdkError::TimeoutError(_) => return TransportError::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => return TransportError::Timeout,
        SdkError::DispatchFailure(_) => return TransportError::Network(DisplayErrorContext(&e).to_string()),
        _ => {}
    }
    match e.code() {
        Some("GoneException") => return TransportError::Gone,
        Some("PayloadTooLargeException") => return TransportError::PayloadTooLarge,
        Some("ForbiddenException" | "AccessDeniedException") => {
            return TransportError::Forbidden(e.message().unwrap_or("forbidden").to_owned());
        }
        Some("LimitExceededException" | "ThrottlingException" | "TooManyRequestsException") => {
            return TransportError::Throttled;
        }
        _ => {}
    }
    match e.raw_response().map(|r| r.status().as_u16()) {
        Some(410) => TransportError::Gone,
        Some(413) => TransportError::PayloadTooLarge,
        Some(403) => TransportError::Forbidden("forbidden".to_owned()),
        Some(429) => TransportError::Throttled,
        Some(status) if status >= 500 => TransportError::Server(status),
        _ => TransportError::Other(DisplayErrorContext(&e).to_string()),
    }
}

mod aws_smithy_runtime_api_http {
    pub use aws_sdk_apigatewaymanagement::config::http::HttpResponse;
}

#[async_trait]
impl Transport for ManagementApi {
    async fn post(&self, endpoint: &str, connection: &ConnectionId, payload: Bytes) -> Result<(), TransportError> {
        self.client(endpoint)
            .post_to_connection()
            .connection_id(connection.as_str())
            .data(Blob::new(payload))
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn get_connection(
        &self,
        endpoint: &str,
        connection: &ConnectionId,
    ) -> Result<ConnectionInfo, TransportError> {
        let out = self
            .client(endpoint)
            .get_connection()
            .connection_id(connection.as_str())
            .send()
            .await
            .map_err(map_error)?;
        let millis = |t: Option<&aws_smithy_types::DateTime>| t.and_then(|t| t.to_millis().ok());
        Ok(ConnectionInfo {
            connected_at: millis(out.connected_at()),
            last_active_at: millis(out.last_active_at()),
            source_ip: out.identity().and_then(|i| i.source_ip()).map(str::to_owned),
        })
    }

    async fn disconnect(&self, endpoint: &str, connection: &ConnectionId) -> Result<(), TransportError> {
        self.client(endpoint).delete_connection().connection_id(connection.as_str()).send().await.map_err(map_error)?;
        Ok(())
    }
}
