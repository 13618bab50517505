//! The outcome of one send.

use serde::{Deserialize, Serialize};

use crate::session::{ChannelName, ConnectionId};

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
    /// The message's place in each channel stream it was appended to (channels with history).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamPosition>,
    /// Connections closed (a request with `close`; absent otherwise). Connections already gone
    /// are in `gone`, ones that could not be closed in `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<usize>,
}

/// Where a send put its message in one channel's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StreamPosition {
    /// The channel.
    pub channel: ChannelName,
    /// The message's sequence number in it.
    pub seq: u64,
    /// The stream's epoch.
    pub epoch: String,
}

impl DeliveryReport {
    /// Two sends' reports as one (a multi-channel send split across streams).
    pub fn merge(mut self, other: Self) -> Self {
        self.recipients += other.recipients;
        self.delivered += other.delivered;
        self.gone.extend(other.gone);
        self.failed.extend(other.failed);
        self.unknown.extend(other.unknown);
        self.excluded += other.excluded;
        self.retries += other.retries;
        self.duration_ms = self.duration_ms.max(other.duration_ms);
        self.incomplete = match (self.incomplete, other.incomplete) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        self.streams.extend(other.streams);
        self.closed = match (self.closed, other.closed) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self
    }

    /// Whether every recipient got the message and the listing completed.
    pub fn is_complete_success(&self) -> bool {
        self.failed.is_empty() && self.incomplete.is_none()
    }
}
