//! Where sessions, channel memberships, tokens, rate counters, channel streams and presence live:
//! the interfaces, and the two stores that implement them.
//!
//! Five traits: [`SessionStore`], [`TokenStore`], [`CounterStore`] here,
//! [`HistoryStore`](history::HistoryStore) and [`PresenceStore`](presence::PresenceStore) in their
//! modules, each implemented by [`DynamoDbStore`](dynamodb::DynamoDbStore) (production, one module
//! per concern under `dynamodb/`) and [`MemoryStore`](memory::MemoryStore) (local gateway and unit
//! tests). One conformance suite in the end-to-end tests runs against both. The features (history,
//! presence, rate limits, hooks) are built on these interfaces; nothing here imports them.
//!
//! Reads take `now` (Unix seconds) and ignore items whose `expires_at` has passed: DynamoDB's TTL
//! deletes expired items hours late, so expiry must not depend on it.

#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub mod dynamodb;
pub mod history;
pub mod memory;
pub mod presence;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::session::{ChannelName, ConnectionId, Identity, Recipient, Session};

/// Length of a rate window (per-minute limits are counted per window of this many seconds).
pub const RATE_WINDOW_SECS: i64 = 60;

/// A store failure. Client mistakes never produce one; these are infrastructure problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend did not answer or refused the request (network, permissions, missing table).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend throttled the request.
    #[error("store throttled the request")]
    Throttled,
    /// An item did not have the expected shape.
    #[error("stored item is malformed: {0}")]
    Corrupt(String),
    /// A pagination cursor was not issued by this store.
    #[error("invalid cursor")]
    BadCursor,
}

/// An opaque position in a paged listing. Pass it back to get the next page.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cursor(pub String);

/// One page of results and where the next one starts (`None` = last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// The cursor of the next page, if there is one.
    pub next: Option<Cursor>,
}

/// One of `total` disjoint parts of a full listing, so `all` can be read in parallel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// This part, `0..total`.
    pub index: u32,
    /// How many parts there are.
    pub total: u32,
}

impl Segment {
    /// The whole listing as one segment.
    pub const WHOLE: Self = Self { index: 0, total: 1 };
}

/// Which sessions a scan returns: every condition given must hold.
///
/// `channel_prefix` matches connections that are in at least one channel starting with the
/// prefix (each such connection may be listed once per matching channel; the sender
/// de-duplicates). The default filter matches every live session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionFilter {
    /// Only sessions of this WebSocket API (`requestContext.apiId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_id: Option<String>,
    /// Only sessions whose metadata has every one of these key = value pairs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Only connections in a channel whose name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_prefix: Option<String>,
}

impl SessionFilter {
    /// Whether a session (with the channels it is in) passes the filter.
    pub fn matches(&self, session: &Session, channels: &[ChannelName]) -> bool {
        self.api_id.as_ref().is_none_or(|api| *api == session.api_id)
            && self.metadata.iter().all(|(k, v)| session.metadata.get(k) == Some(v))
            && self.channel_prefix.as_ref().is_none_or(|p| channels.iter().any(|c| c.as_str().starts_with(p.as_str())))
    }

    /// Whether this is the match-everything filter.
    pub fn is_everything(&self) -> bool {
        *self == Self::default()
    }
}

/// How stale a session's `last_seen` may get before a message with no rate count to write
/// (rate limit off) writes it: one write a minute per connection at most.
pub const LAST_SEEN_EVERY_MS: i64 = 60_000;

/// Sessions and their channel memberships.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Stores a session, replacing any with the same connection id.
    async fn put_session(&self, session: &Session) -> Result<(), StoreError>;

    /// Stores a new session and, with `channel`, its membership of that channel: in one write
    /// where the store can (DynamoDB keeps a connection's first channel on its session item).
    /// `holds_slot` says [`claim_connection`](Self::claim_connection) took a connection slot
    /// for it, so removing the session frees one.
    async fn open_session(
        &self,
        session: &Session,
        channel: Option<&ChannelName>,
        holds_slot: bool,
    ) -> Result<(), StoreError> {
        let _ = holds_slot;
        self.put_session(session).await?;
        if let Some(channel) = channel {
            self.join(session, channel, 1).await?;
        }
        Ok(())
    }

    /// The live session of `id`, if any.
    async fn get_session(&self, id: &ConnectionId, now: i64) -> Result<Option<Session>, StoreError>;

    /// Deletes the session and all its memberships; says who it was and which channels it was
    /// in, if it existed.
    async fn remove_session(&self, id: &ConnectionId) -> Result<Option<Removed>, StoreError>;

    /// Deletes several sessions with their memberships (stale connections found by a fan-out,
    /// clean-up); returns those that existed. Stores batch the deletes where they can.
    async fn remove_sessions(&self, ids: &[ConnectionId]) -> Result<Vec<Removed>, StoreError> {
        let mut removed = Vec::new();
        for id in ids {
            removed.extend(self.remove_session(id).await?);
        }
        Ok(removed)
    }

    /// Adds `session` to `channel` unless the connection is already in `max` channels; the
    /// membership expires with the session. Atomic: of concurrent joins by one connection, no
    /// more than `max` memberships ever exist.
    async fn join(&self, session: &Session, channel: &ChannelName, max: usize) -> Result<Joined, StoreError>;

    /// Admits a user's new connection, in one conditional write in the common case: refuses it
    /// if the user's sessions were closed ([`SessionStore::close_user`]) at or after `issued_ms`
    /// (when the token it connects with was issued, Unix milliseconds), counts it against
    /// `limits.connects_per_minute` (in the minute window of `now`) and takes one of the user's
    /// `limits.max_connections` slots for it. A limit of 0 is off. For a session without a user
    /// nothing is written. Atomic under concurrent connects; slots of expired sessions are
    /// reclaimed; removing a session frees its slot. A refused claim writes nothing.
    async fn claim_connection(
        &self,
        session: &Session,
        limits: UserLimits,
        issued_ms: i64,
        now: i64,
    ) -> Result<Claim, StoreError>;

    /// Marks `user`'s sessions closed at `now_ms`: a claim with a token issued until then is
    /// refused ([`Claim::Closed`]). The mark is kept at least until `keep_until` (Unix seconds),
    /// which must outlast every token issued before it.
    async fn close_user(&self, user: &str, now_ms: i64, keep_until: i64) -> Result<(), StoreError>;

    /// What a message needs before its route runs, in one round trip: the live session, with the
    /// message counted in rate window `window` (a minute number) unless `limit` messages were
    /// counted in it already. A `limit` of 0 counts nothing. Atomic under concurrent messages:
    /// exactly `limit` are admitted per window. The session's `last_seen` becomes `now` (in
    /// milliseconds, to the second) in the count's own write, or, with nothing to count, at most
    /// once every [`LAST_SEEN_EVERY_MS`].
    async fn admit_message(
        &self,
        id: &ConnectionId,
        now: i64,
        window: i64,
        limit: u32,
    ) -> Result<Admission, StoreError>;

    /// Counts `units` more messages of `id` in rate window `window` (what a route posts beyond
    /// its one answer, e.g. a replay's frames), unless that would take the window's count past
    /// `limit`; returns whether they were counted. Atomic with [`admit_message`](Self::admit_message):
    /// concurrent charges and messages never count past `limit`. A `limit` of 0 counts nothing
    /// and returns `true`; a refused charge writes nothing.
    async fn charge_messages(&self, id: &ConnectionId, window: i64, limit: u32, units: u32)
    -> Result<bool, StoreError>;

    /// Removes a membership; returns whether it existed.
    async fn leave(&self, id: &ConnectionId, channel: &ChannelName) -> Result<bool, StoreError>;

    /// The channels a connection is in (bounded by the per-connection limit).
    async fn channels_of(&self, id: &ConnectionId, now: i64) -> Result<Vec<ChannelName>, StoreError>;

    /// Live members of `channel`, a page at a time.
    async fn channel_page(
        &self,
        channel: &ChannelName,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError>;

    /// Live connections of `user_id`, a page at a time.
    async fn user_page(
        &self,
        user_id: &str,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError>;

    /// Live sessions in one segment of the whole store that pass `filter`, a page at a time.
    /// A page may hold fewer than `limit` items (even none) and still have a next one.
    async fn scan_page(
        &self,
        segment: Segment,
        filter: &SessionFilter,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError>;

    /// Connections with an expired session or membership, a page at a time (for clean-up).
    async fn expired_page(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<ConnectionId>, StoreError>;
}

/// A session [`SessionStore::remove_session`] deleted: whose it was and the channels it was in
/// (what presence needs to say a user left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Its connection id.
    pub connection_id: ConnectionId,
    /// Its user, if it had one.
    pub user_id: Option<String>,
    /// The channels it was in, in no particular order.
    pub channels: Vec<ChannelName>,
}

impl Removed {
    /// What removing `session`, in `channels`, removed.
    pub fn of(session: &Session, channels: Vec<ChannelName>) -> Self {
        Self { connection_id: session.connection_id.clone(), user_id: session.user_id().map(str::to_owned), channels }
    }
}

/// What [`SessionStore::admit_message`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The session, with the message counted.
    Admitted(Box<Session>),
    /// The connection sent `limit` messages in this window already; nothing was written.
    Limited,
    /// No live session (never connected, removed or expired).
    NoSession,
}

/// The per-user limits [`SessionStore::claim_connection`] applies (`0` = off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserLimits {
    /// Open connections per user (`LWS_MAX_CONNECTIONS_PER_USER`).
    pub max_connections: usize,
    /// `$connect`s per user per minute (`LWS_RATE_CONNECT_PER_USER`).
    pub connects_per_minute: u32,
}

/// What [`SessionStore::claim_connection`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Admitted; `slot` says a connection slot was taken (pass it to
    /// [`SessionStore::open_session`]).
    Claimed {
        /// Whether a slot was taken (the connection limit is on and the session has a user).
        slot: bool,
    },
    /// The user connected `connects_per_minute` times in this minute already.
    RateLimited,
    /// The user has `max_connections` open connections.
    Full,
    /// The user's sessions were closed after the connection's token was issued.
    Closed,
}

/// What [`SessionStore::join`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// The connection joined the channel.
    New,
    /// It was already a member; nothing changed.
    Already,
    /// It is in the most channels allowed; nothing changed.
    Full,
}

/// What a connect token stands for, stored under the SHA-256 of the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Who the token was issued to.
    pub identity: Identity,
    /// The only channel the token may connect to, if bound.
    pub channel: Option<ChannelName>,
    /// When the token stops being valid, in Unix seconds.
    pub expires_at: i64,
    /// When the token was issued, in Unix milliseconds (a close of the user's sessions after it
    /// refuses it).
    pub issued_at: i64,
}

/// Single-use connect tokens.
#[async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// Stores a token record under its hash (lowercase hex SHA-256).
    async fn put_token(&self, hash: &str, record: &TokenRecord) -> Result<(), StoreError>;

    /// Atomically removes and returns the record: of any number of concurrent callers for one
    /// hash, exactly one gets `Some`.
    async fn take_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Deletes every token whose time has passed (`expires_at <= now`), or with `dry_run` only
    /// counts them; returns how many. Expired tokens are already refused; this reclaims space
    /// before the TTL sweep does.
    async fn purge_expired_tokens(&self, now: i64, dry_run: bool) -> Result<usize, StoreError>;
}

/// Counters for fixed-window rate limits.
#[async_trait]
pub trait CounterStore: Send + Sync + fmt::Debug {
    /// Atomically adds one to `key` and returns the new value. The counter may be forgotten
    /// after `expires_at` (Unix seconds).
    async fn increment(&self, key: &str, expires_at: i64) -> Result<u64, StoreError>;
}
