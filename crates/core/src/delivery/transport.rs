//! How a payload reaches one connection: the [`Transport`] trait (the Management API client is
//! [`ManagementApi`](super::ManagementApi), feature `management-api`).

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use crate::session::ConnectionId;

/// Why one post (or get, or delete) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// 410: the connection is gone; its session should be removed.
    #[error("connection is gone")]
    Gone,
    /// 413: the payload is too large for the Management API.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 403: the caller may not manage connections of this API (a configuration error).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 429: throttled.
    #[error("throttled")]
    Throttled,
    /// 5xx.
    #[error("server error {0}")]
    Server(u16),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The request did not reach the endpoint.
    #[error("network error: {0}")]
    Network(String),
    /// Anything else (e.g. a 400).
    #[error("{0}")]
    Other(String),
}

impl TransportError {
    /// Whether a retry may succeed (throttling, 5xx, timeouts, network errors).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled | Self::Server(_) | Self::Timeout | Self::Network(_))
    }
}

/// What the Management API says about a live connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// When it connected, Unix milliseconds.
    pub connected_at: Option<i64>,
    /// When it last sent or received, Unix milliseconds.
    pub last_active_at: Option<i64>,
    /// The client's IP.
    pub source_ip: Option<String>,
}

/// Reaches connections through an endpoint.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Posts `payload` to one connection.
    async fn post(&self, endpoint: &str, connection: &ConnectionId, payload: Bytes) -> Result<(), TransportError>;

    /// Reads a connection's state (`GET @connections/{id}`).
    async fn get_connection(&self, endpoint: &str, connection: &ConnectionId)
    -> Result<ConnectionInfo, TransportError>;

    /// Closes a connection (`DELETE @connections/{id}`).
    async fn disconnect(&self, endpoint: &str, connection: &ConnectionId) -> Result<(), TransportError>;
}
