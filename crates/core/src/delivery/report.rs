//! The outcome of one send.

use serde::{Deserialize, Serialize};

use crate::session::ConnectionId;

/// A delivery that failed for good, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FailedDelivery {
    /// The connection.
    pub connection_id: ConnectionId,
    /// Why (the last error).
    pub reason: String,
}

/// What happened to one message sent to one target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeliveryReport {
    /// Connections the target resolved to, exclusions not counted.
    pub recipients: usize,
    /// Posts the Management API accepted.
    pub delivered: usize,
    /// Connections the API reported gone (410); their sessions were removed.
    pub gone: Vec<ConnectionId>,
    /// Connections that could not be reached, with the reason.
    pub failed: Vec<FailedDelivery>,
    /// Connections named by the target that have no live session.
    pub unknown: Vec<ConnectionId>,
    /// Connections left out by `exclude`.
    pub excluded: usize,
    /// Retries made (throttling, 5xx, timeouts).
    pub retries: usize,
    /// Wall time of the send, in milliseconds.
    pub duration_ms: u64,
    /// Set when the recipient listing failed part way: some recipients were not tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
}

impl DeliveryReport {
    /// Whether every recipient got the message and the listing completed.
    pub fn is_complete_success(&self) -> bool {
        self.failed.is_empty() && self.incomplete.is_none()
    }
}
