//! Channel history: every message sent to a channel with a history rule gets the channel's next
//! sequence number and is kept for a while, so a client that reconnects can ask for what it
//! missed.
//!
//! A rule (`LWS_HISTORY`, e.g. `task-*=100/5m; room-*=50/10m`) keeps the last `size` messages of
//! the channels its pattern matches, none older than `window`. Each send to such a channel
//! allocates one sequence number (atomically: concurrent senders get distinct, gap-free numbers)
//! and stores the message once, not once per recipient; every delivered copy carries `channel`,
//! `seq` and the stream's `epoch`. The epoch names one unbroken stream: when a store can no longer
//! vouch for what came before (a new stream, a local gateway restarted on the memory store), it
//! is new, and a client holding the old one cannot be caught up from history.
//!
//! A client resumes with the last `seq` and `epoch` it saw ([`resume`]): the messages after it
//! are sent in order and the answer says `recovered: true`; when the window no longer covers the
//! gap, or the epoch differs, it says `recovered: false` and the application refetches.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::policy::{PolicyParseError, pattern_matches, valid_pattern};
use crate::session::ChannelName;
use crate::store::StoreError;

/// How much of a channel's past is kept: the last `size` messages, none older than `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRule {
    /// Messages kept (1–1000).
    pub size: u32,
    /// How long a message is kept.
    pub window: Duration,
}

/// Which channels keep history (`LWS_HISTORY`): `pattern=size/window` rules separated by `;`,
/// first match wins; a pattern is a name or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryRules(pub Vec<(String, HistoryRule)>);

impl HistoryRules {
    /// Parses `task-*=100/5m; room-*=50/10m` (window units `s`, `m`, `h`).
    pub fn parse(text: &str) -> Result<Self, PolicyParseError> {
        let mut rules = Vec::new();
        for raw in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || PolicyParseError::History(raw.to_owned());
            let (pattern, keep) = raw.split_once('=').ok_or_else(bad)?;
            let pattern = pattern.trim();
            if !valid_pattern(pattern) {
                return Err(bad());
            }
            let (size, window) = keep.trim().split_once('/').ok_or_else(bad)?;
            let size: u32 = size.trim().parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(bad)?;
            let window = parse_window(window.trim()).ok_or_else(bad)?;
            rules.push((pattern.to_owned(), HistoryRule { size, window }));
        }
        Ok(Self(rules))
    }

    /// The rule for `channel`, if it keeps history.
    pub fn rule_for(&self, channel: &ChannelName) -> Option<HistoryRule> {
        self.0.iter().find(|(pattern, _)| pattern_matches(pattern, channel.as_str())).map(|(_, rule)| *rule)
    }

    /// Whether no channel keeps history.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_window(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    };
    (secs <= 24 * 3600).then(|| Duration::from_secs(secs))
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

/// A channel's latest kept messages, as the `history` action and the sender's history query
/// answer them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct ChannelHistory {
    /// The channel.
    pub channel: ChannelName,
    /// Its stream (`null` when nothing was ever sent to it).
    pub epoch: Option<String>,
    /// The last sequence number allocated.
    pub seq: u64,
    /// The kept messages, oldest first, each with its `channel`, `seq` and `epoch`.
    pub messages: Vec<Value>,
}

/// A new stream's epoch: 12 random characters of `[0-9a-v]`.
pub fn new_epoch() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| char::from(b"0123456789abcdefghijklmnopqrstuv"[usize::from(b % 32)])).collect()
}

/// `payload` (a JSON object) with its place in `channel`'s stream: `channel`, `seq`, `epoch`.
pub fn stamp(payload: &str, channel: &ChannelName, position: &Position) -> Result<String, serde_json::Error> {
    let mut message: serde_json::Map<String, Value> = serde_json::from_str(payload)?;
    message.insert("channel".into(), Value::from(channel.as_str()));
    message.insert("seq".into(), Value::from(position.seq));
    message.insert("epoch".into(), Value::from(position.epoch.as_str()));
    serde_json::to_string(&message)
}

/// What a resume found: the messages to send, in order, and whether they close the gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// Whether the messages sent are exactly those after the client's position (`false`: the
    /// window no longer covers the gap, or the stream is another; refetch).
    pub recovered: bool,
    /// The stream now.
    pub epoch: Option<String>,
    /// The last sequence number allocated.
    pub seq: u64,
    /// The messages to send, stamped, oldest first (none when not recovered).
    pub messages: Vec<String>,
    /// Not recovered only because the newest numbers have no kept message yet: every kept
    /// message after `since` is there, in order (a send in flight takes its number first).
    pub tail_only: bool,
}

/// The kept messages of `recent`, stamped with their channel, number and epoch, oldest first.
pub fn stamped(channel: &ChannelName, recent: &Recent) -> Result<Vec<String>, StoreError> {
    let epoch = recent.epoch.clone().unwrap_or_default();
    recent
        .entries
        .iter()
        .map(|e| stamp(&e.payload, channel, &Position { seq: e.seq, epoch: epoch.clone() }))
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::Corrupt(format!("kept message is not a JSON object: {e}")))
}

/// How recent the newest number must be for its missing message to count as in flight.
pub const IN_FLIGHT_MS: i64 = 10_000;

/// Works out a resume from `since` (the last `seq` the client saw, with its `epoch`) at `now_ms`.
pub fn resume(
    channel: &ChannelName,
    since: u64,
    epoch: Option<&str>,
    recent: Recent,
    now_ms: i64,
) -> Result<Resumed, StoreError> {
    let same_stream = match (&recent.epoch, epoch) {
        // A client that saw nothing of a stream can start on any.
        (_, None) => since == 0,
        (Some(now), Some(then)) => now == then,
        // No stream yet: a client holding a position held one of a stream now gone.
        (None, Some(_)) => false,
    };
    // Every kept message after `since`, in an unbroken run from `since + 1`.
    let run = recent.entries.iter().zip(since + 1..).all(|(entry, seq)| entry.seq == seq);
    let reaches_head = recent.entries.last().map_or(since, |e| e.seq) == recent.head;
    let in_range = since <= recent.head;
    let recovered = same_stream && in_range && run && reaches_head;
    // The missing newest ones may be in flight: a send takes its number, then keeps the message.
    let tail_only =
        same_stream && in_range && run && !reaches_head && now_ms.saturating_sub(recent.head_at) < IN_FLIGHT_MS;
    let messages = if recovered || tail_only { stamped(channel, &recent)? } else { Vec::new() };
    Ok(Resumed { recovered, epoch: recent.epoch, seq: recent.head, messages, tail_only })
}
