//! What a channel stream store keeps and answers: the interface the history feature
//! ([`crate::history`]) is built on, implemented by both stores.

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;
use crate::session::ChannelName;

/// How much of a channel's past is kept: the last `size` messages, none older than `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRule {
    /// Messages kept (1–1000).
    pub size: u32,
    /// How long a message is kept.
    pub window: Duration,
}

/// A message's place in its channel's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The message's sequence number (the first message of a stream is 1).
    pub seq: u64,
    /// The stream.
    pub epoch: String,
}

/// One kept message: its number and its encoded JSON as sent, without `channel`, `seq` and `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// The message as encoded by the sender.
    pub payload: String,
}

/// A channel's recent past, as [`HistoryStore::recent`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recent {
    /// The stream, or `None` when nothing was ever sent to the channel.
    pub epoch: Option<String>,
    /// The last sequence number allocated (0 when none).
    pub head: u64,
    /// When it was allocated, in Unix milliseconds.
    pub head_at: i64,
    /// The kept messages after the asked position, oldest first.
    pub entries: Vec<Entry>,
}

/// Where channel streams live. Implemented by both stores; tested by the same conformance suite.
#[async_trait]
pub trait HistoryStore: Send + Sync + std::fmt::Debug {
    /// Allocates `channel`'s next sequence number (atomically) and keeps `payload` under it for
    /// `rule.window`. `now_ms` is Unix milliseconds.
    async fn append(
        &self,
        channel: &ChannelName,
        payload: &str,
        rule: HistoryRule,
        now_ms: i64,
    ) -> Result<Position, StoreError>;

    /// The kept messages of `channel` numbered above `after`, oldest first: at most `rule.size`
    /// (the newest), none older than `rule.window`.
    async fn recent(
        &self,
        channel: &ChannelName,
        after: u64,
        rule: HistoryRule,
        now_ms: i64,
    ) -> Result<Recent, StoreError>;
}

/// A new stream's epoch: 12 random characters of `[0-9a-v]`.
pub fn new_epoch() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| char::from(b"0123456789abcdefghijklmnopqrstuv"[usize::from(b % 32)])).collect()
}
