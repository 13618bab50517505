//! What a presence store keeps and answers: the interface the presence feature
//! ([`crate::presence`]) is built on, implemented by both stores.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::session::{ChannelName, ConnectionId, Metadata, Session};

/// One user present in a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Member {
    /// The user.
    pub user_id: String,
    /// How many of the user's connections are in the channel.
    pub connections: usize,
    /// The public part of the session's metadata (the keys `LWS_PRESENCE_METADATA` names), from
    /// the user's latest connection to join.
    #[serde(default)]
    pub info: Metadata,
}

/// A channel's presence, as [`PresenceStore::present`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Present {
    /// Users present.
    pub users: usize,
    /// Connections present, anonymous ones included.
    pub connections: usize,
    /// Anonymous connections present.
    pub anonymous: usize,
    /// The users, ordered by id; `None` when there are more than the listing allows.
    pub members: Option<Vec<Member>>,
}

/// A connection that entered a channel's presence.
#[derive(Debug, Clone, Copy)]
pub struct Presence<'a> {
    /// The connection's session.
    pub session: &'a Session,
    /// The public part of its metadata.
    pub info: &'a Metadata,
    /// Until when the user's entry is kept (Unix seconds) if nothing removes it; each enter sets
    /// it, so it must be the latest any connection of the user in the channel can live (the
    /// presence tracker gives now plus the session TTL). Each connection counts until its own
    /// session's `expires_at`.
    pub expires_at: i64,
}

/// Where presence lives. Implemented by both stores; tested by the same conformance suite.
///
/// A user's entry holds each of its connections in the channel with that connection's expiry
/// (its session's), changed atomically, so of concurrent first joins exactly one is first and of
/// concurrent last leaves exactly one is last. A connection whose time has passed (it ended
/// without a word and clean-up has not come by) counts as gone: it is not counted, and it does
/// not keep the user's last live connection from being the last.
#[async_trait]
pub trait PresenceStore: Send + Sync + std::fmt::Debug {
    /// Counts the connection in `channel` until its session expires; returns whether it is its
    /// user's first live connection there (always `false` for an anonymous connection). `now` is
    /// Unix seconds.
    async fn enter(&self, channel: &ChannelName, presence: Presence<'_>, now: i64) -> Result<bool, StoreError>;

    /// Takes the connection out of `channel`; returns whether its user has no live connection
    /// left there (`false` when it was not counted, and for an anonymous connection).
    async fn exit(
        &self,
        channel: &ChannelName,
        id: &ConnectionId,
        user_id: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Who is in `channel`: the counts, and the members when there are at most `listed` users.
    ///
    /// Its cost does not grow with the channel: it reads kept counts and at most `listed + 1`
    /// users. With the members listed, the counts are exact (connections whose time has passed
    /// left out). Above the listing size they are the kept counts, which count a connection that
    /// ended without a word until the clean-up takes its session out.
    async fn present(&self, channel: &ChannelName, listed: usize, now: i64) -> Result<Present, StoreError>;

    /// Counts every channel's presence anew and corrects the kept counts where a write's count
    /// was lost (a function stopped between the two) or an entry expired away; returns how many
    /// channels it corrected. The clean-up runs it; it reads every presence entry once.
    async fn recount(&self) -> Result<usize, StoreError>;
}
