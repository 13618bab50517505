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

use serde_json::Value;

use crate::policy::PolicyParseError;
use crate::rules::Rules;
use crate::session::ChannelName;
use crate::store::StoreError;
pub use crate::store::history::{Entry, HistoryRule, HistoryStore, Position, Recent, new_epoch};

/// Which channels keep history (`LWS_HISTORY`): `pattern=size/window` rules separated by `;`,
/// first match wins; a pattern is a name or a prefix ending in `*`.
pub type HistoryRules = Rules<HistoryRule>;

impl Rules<HistoryRule> {
    /// Parses `task-*=100/5m; room-*=50/10m` (window units `s`, `m`, `h`).
    pub fn parse(text: &str) -> Result<Self, PolicyParseError> {
        Rules::parse_with(
            text,
            |keep| {
                let (size, window) = keep?.split_once('/')?;
                let size: u32 = size.trim().parse().ok().filter(|n| (1..=1000).contains(n))?;
                Some(HistoryRule { size, window: parse_window(window.trim())? })
            },
            PolicyParseError::History,
        )
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
    /// Whether older kept messages were left out (by `limit`, or because the answer must fit in
    /// one 128 KiB message): ask again with `before` set to the first message's `seq`.
    pub more: bool,
}

impl ChannelHistory {
    /// The newest of `recent`'s kept messages numbered below `before` (all when `None`): at most
    /// `limit`, and no more than fit in `max_bytes` of JSON (at least one is always there when
    /// any is, a kept message being under 128 KiB itself).
    pub fn page(
        channel: &ChannelName,
        recent: &Recent,
        before: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Self, StoreError> {
        let below: Vec<&Entry> = recent.entries.iter().filter(|e| before.is_none_or(|b| e.seq < b)).collect();
        let epoch = recent.epoch.as_deref().unwrap_or_default();
        let mut messages = Vec::new();
        let mut bytes = 0usize;
        for entry in below.iter().rev().take(limit.max(1)) {
            let text = stamp_entry(channel, entry, epoch)?;
            if !messages.is_empty() && bytes + text.len() + 1 > max_bytes {
                break;
            }
            bytes += text.len() + 1;
            messages.push(serde_json::from_str::<Value>(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        messages.reverse();
        let more = messages.len() < below.len();
        Ok(Self { channel: channel.clone(), epoch: recent.epoch.clone(), seq: recent.head, messages, more })
    }
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
    /// Not recovered only because the newest numbers have no kept message yet, and the head is
    /// young enough for them to be in flight (a send takes its number first): asking again
    /// shortly may recover.
    pub tail_only: bool,
}

/// The kept messages of `recent`, stamped with their channel, number and epoch, oldest first.
pub fn stamped(channel: &ChannelName, recent: &Recent) -> Result<Vec<String>, StoreError> {
    let epoch = recent.epoch.as_deref().unwrap_or_default();
    recent.entries.iter().map(|entry| stamp_entry(channel, entry, epoch)).collect()
}

/// One kept message stamped with its place in `channel`'s stream `epoch`.
fn stamp_entry(channel: &ChannelName, entry: &Entry, epoch: &str) -> Result<String, StoreError> {
    stamp(&entry.payload, channel, &Position { seq: entry.seq, epoch: epoch.to_owned() })
        .map_err(|e| StoreError::Corrupt(format!("kept message is not a JSON object: {e}")))
}

/// How recent the newest number must be for its missing message to count as in flight.
pub const IN_FLIGHT_MS: i64 = 10_000;

/// Works out a resume from `since` (the last `seq` the client saw, with its `epoch`) at `now_ms`
/// under `rule`.
///
/// `recovered` is true only when every number from `since + 1` to the stream's head is among the
/// messages to send: a number whose message expired, was dropped by the size bound or was never
/// kept makes it false, whatever else is kept.
pub fn resume(
    channel: &ChannelName,
    since: u64,
    epoch: Option<&str>,
    recent: Recent,
    rule: HistoryRule,
    now_ms: i64,
) -> Result<Resumed, StoreError> {
    let same_stream = match (&recent.epoch, epoch) {
        // A client that saw nothing of a stream can start on any.
        (_, None) => since == 0,
        (Some(now), Some(then)) => now == then,
        // No stream yet: a client holding a position held one of a stream now gone.
        (None, Some(_)) => false,
    };
    // `since` is the client's number: past the head it names nothing of this stream (and
    // `since + 1` must not overflow).
    let in_range = since <= recent.head;
    // Every kept message after `since`, in an unbroken run from `since + 1`.
    let run = in_range && recent.entries.iter().zip(since.saturating_add(1)..).all(|(entry, seq)| entry.seq == seq);
    let reaches_head = recent.entries.last().map_or(since, |e| e.seq) == recent.head;
    let recovered = same_stream && run && reaches_head;
    // The missing newest ones may be in flight (a send takes its number, then keeps the message),
    // but only while the head is younger than the window: past it they expired, never to come.
    let window_ms = i64::try_from(rule.window.as_millis()).unwrap_or(i64::MAX);
    let young = now_ms.saturating_sub(recent.head_at) < IN_FLIGHT_MS.min(window_ms);
    let tail_only = same_stream && run && !reaches_head && young;
    let messages = if recovered || tail_only { stamped(channel, &recent)? } else { Vec::new() };
    Ok(Resumed { recovered, epoch: recent.epoch, seq: recent.head, messages, tail_only })
}

/// The most bytes a replay frame packs messages into: one 32 KiB unit of API Gateway's billing.
pub const REPLAY_FRAME_BYTES: usize = 32 * 1024;

/// `messages` (stamped, oldest first) as the frames a resume posts, in order: consecutive
/// messages packed into `{"type":"replay","channel":...,"messages":[...]}` frames of at most
/// [`REPLAY_FRAME_BYTES`], a message that shares no frame sent alone as itself. Each frame is
/// one post and one billed unit where it can be.
pub fn replay_frames(channel: &ChannelName, messages: &[String]) -> Vec<bytes::Bytes> {
    let head = format!(r#"{{"type":"replay","channel":{},"messages":["#, Value::from(channel.as_str()));
    let overhead = head.len() + 2; // `]}`
    let mut frames = Vec::new();
    let mut group: Vec<&str> = Vec::new();
    let mut size = overhead;
    let flush = |group: &mut Vec<&str>, frames: &mut Vec<bytes::Bytes>| {
        match group.as_slice() {
            [] => {}
            [one] => frames.push(bytes::Bytes::from((*one).to_owned())),
            many => frames.push(bytes::Bytes::from(format!("{head}{}]}}", many.join(",")))),
        }
        group.clear();
    };
    for message in messages {
        let added = message.len() + usize::from(!group.is_empty());
        if !group.is_empty() && size + added > REPLAY_FRAME_BYTES {
            flush(&mut group, &mut frames);
            size = overhead;
        }
        size += message.len() + usize::from(!group.is_empty());
        group.push(message);
    }
    flush(&mut group, &mut frames);
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_packs_messages_into_32_kib_frames_in_order() {
        let channel = ChannelName::new("lobby").unwrap_or_else(|e| panic!("{e}"));
        let small: Vec<String> =
            (1..=100).map(|n| format!(r#"{{"type":"t","seq":{n},"text":"{}"}}"#, "x".repeat(200))).collect();
        let frames = replay_frames(&channel, &small);
        assert!(frames.len() == 1, "100 messages of ~230 bytes: one frame, not {}", frames.len());
        let frame: Value = serde_json::from_slice(&frames[0]).unwrap_or_default();
        let seqs: Vec<u64> =
            frame["messages"].as_array().into_iter().flatten().filter_map(|m| m["seq"].as_u64()).collect();
        assert_eq!((frame["type"].as_str(), seqs), (Some("replay"), (1..=100).collect()));

        let large: Vec<String> =
            (1..=100).map(|n| format!(r#"{{"type":"t","seq":{n},"text":"{}"}}"#, "x".repeat(4000))).collect();
        let frames = replay_frames(&channel, &large);
        assert!(frames.iter().all(|f| f.len() <= REPLAY_FRAME_BYTES), "every frame within one unit");
        assert_eq!(frames.len(), 13, "8 messages of ~4 KB a frame");
        let mut seqs = Vec::new();
        for frame in &frames {
            let frame: Value = serde_json::from_slice(frame).unwrap_or_default();
            seqs.extend(frame["messages"].as_array().into_iter().flatten().filter_map(|m| m["seq"].as_u64()));
        }
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>(), "in order, each once");

        let huge = vec![format!(r#"{{"type":"t","seq":1,"text":"{}"}}"#, "x".repeat(40_000))];
        let frames = replay_frames(&channel, &huge);
        assert_eq!(frames, vec![bytes::Bytes::from(huge[0].clone())], "alone, as itself");
        assert!(replay_frames(&channel, &[]).is_empty());
    }
}
