//! An in-memory store: the local gateway's default and the unit tests' backend.
//!
//! One mutex over ordered maps; never held across an `.await`. Pages walk the maps in key order
//! from the cursor, so paging behaves like DynamoDB's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::history::{Entry, HistoryRule, HistoryStore, Position, Recent};
use super::presence::{Member, Presence, PresenceStore, Present};
use super::{
    Admission, Claim, CounterStore, Cursor, Joined, Page, Removed, Segment, SessionFilter, SessionStore, StoreError,
    TokenRecord, TokenStore, UserLimits,
};
use crate::session::{ChannelName, ConnectionId, Metadata, Recipient, Session};

#[derive(Debug, Default)]
struct State {
    sessions: BTreeMap<ConnectionId, Session>,
    /// channel → members (the by-channel index). A membership's expiry is its session's.
    channels: BTreeMap<ChannelName, BTreeMap<ConnectionId, (String, i64)>>,
    /// connection → channels it is in (a handful at most: a Vec is smaller than a set).
    memberships: HashMap<ConnectionId, Vec<ChannelName>>,
    /// user → connections (the by-user index).
    users: BTreeMap<String, BTreeSet<ConnectionId>>,
    /// connection → (rate window, messages counted in it).
    message_counts: HashMap<ConnectionId, (i64, u32)>,
    /// user → connection slots taken, with each slot's expiry.
    slots: HashMap<String, HashMap<ConnectionId, i64>>,
    /// user → (rate window, connects counted in it).
    user_connects: HashMap<String, (i64, u32)>,
    /// user → (when its sessions were last closed, Unix ms; until when that is kept, Unix s).
    closed: HashMap<String, (i64, i64)>,
    /// channel → its history stream (channels with a history rule that were sent to).
    streams: HashMap<ChannelName, Stream>,
    /// channel → who is present (channels with a presence rule).
    presence: HashMap<ChannelName, ChannelPresence>,
    tokens: HashMap<String, TokenRecord>,
    counters: HashMap<String, (u64, i64)>,
    /// When [`State::sweep`] last ran, in Unix milliseconds.
    swept_at: i64,
}

/// How often the store drops what nothing can read any more.
const SWEEP_EVERY_MS: i64 = 60_000;

impl State {
    /// Drops what nothing can read any more, at most once every [`SWEEP_EVERY_MS`]: streams
    /// whose newest message is older than their window (every message expired), per-user
    /// connect counts of past windows, expired counters and tokens. Without it a long-running
    /// local gateway would keep every channel ever sent to.
    fn sweep(&mut self, now_ms: i64) {
        if now_ms - self.swept_at < SWEEP_EVERY_MS {
            return;
        }
        self.swept_at = now_ms;
        let now = now_ms.div_euclid(1000);
        self.streams.retain(|_, stream| stream.head_at.saturating_add(stream.window_ms) > now_ms);
        let window = now.div_euclid(super::RATE_WINDOW_SECS);
        self.user_connects.retain(|_, (w, _)| *w >= window);
        self.counters.retain(|_, (_, expires_at)| *expires_at > now);
        self.tokens.retain(|_, token| token.expires_at > now);
        self.closed.retain(|_, (_, kept)| *kept > now);
    }
}

/// The messages `id` has had counted in rate window `window` (a new window starts at 0), in
/// [`State::message_counts`].
fn message_count<'a>(counts: &'a mut HashMap<ConnectionId, (i64, u32)>, id: &ConnectionId, window: i64) -> &'a mut u32 {
    let counted = counts.entry(id.clone()).or_insert((window, 0));
    if counted.0 != window {
        *counted = (window, 0);
    }
    &mut counted.1
}

/// The in-memory store. Cheap to create; share it with `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way later
        // readers could not cope with, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of stored sessions, expired ones included (for tests and diagnostics).
    pub fn session_count(&self) -> usize {
        self.state().sessions.len()
    }

    /// Number of channel streams held, those not swept yet included (for tests and diagnostics).
    pub fn stream_count(&self) -> usize {
        self.state().streams.len()
    }
}

fn after(cursor: Option<&Cursor>) -> Result<Bound<ConnectionId>, StoreError> {
    match cursor {
        None => Ok(Bound::Unbounded),
        Some(c) => ConnectionId::new(c.0.clone()).map(Bound::Excluded).map_err(|_| StoreError::BadCursor),
    }
}

/// Takes up to `limit` items and reports the cursor after the last one if more remain.
fn paginate<T>(mut iter: impl Iterator<Item = (ConnectionId, T)>, limit: usize) -> Page<T> {
    let limit = limit.max(1);
    let mut items = Vec::new();
    let mut last = None;
    for (id, item) in iter.by_ref() {
        items.push(item);
        if items.len() == limit {
            last = Some(id);
            break;
        }
    }
    let next = match last {
        Some(id) if iter.next().is_some() => Some(Cursor(id.as_str().to_owned())),
        _ => None,
    };
    Page { items, next }
}

fn segment_of(id: &ConnectionId, total: u32) -> u32 {
    // FNV-1a: stable across runs, so segments stay disjoint between pages.
    let hash =
        id.as_str().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (hash % u64::from(total.max(1))) as u32
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn put_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut s = self.state();
        let id = session.connection_id.clone();
        if let Some(old_user) = s.sessions.get(&id).and_then(|old| old.user_id().map(str::to_owned))
            && let Some(set) = s.users.get_mut(&old_user)
        {
            set.remove(&id);
        }
        if let Some(user) = session.user_id() {
            s.users.entry(user.to_owned()).or_default().insert(id.clone());
        }
        s.sessions.insert(id, session.clone());
        Ok(())
    }

    async fn get_session(&self, id: &ConnectionId, now: i64) -> Result<Option<Session>, StoreError> {
        Ok(self.state().sessions.get(id).filter(|s| !s.is_expired(now)).cloned())
    }

    async fn remove_session(&self, id: &ConnectionId) -> Result<Option<Removed>, StoreError> {
        let mut s = self.state();
        let session = s.sessions.remove(id);
        s.message_counts.remove(id);
        if let Some(user) = session.as_ref().and_then(|s| s.user_id().map(str::to_owned)) {
            if let Some(set) = s.users.get_mut(&user) {
                set.remove(id);
                if set.is_empty() {
                    s.users.remove(&user);
                }
            }
            if let Some(slots) = s.slots.get_mut(&user) {
                slots.remove(id);
                if slots.is_empty() {
                    s.slots.remove(&user);
                }
            }
        }
        let channels = s.memberships.remove(id).unwrap_or_default();
        for channel in &channels {
            if let Some(members) = s.channels.get_mut(channel) {
                members.remove(id);
                if members.is_empty() {
                    s.channels.remove(channel);
                }
            }
        }
        Ok(session.map(|session| Removed::of(&session, channels)))
    }

    async fn join(&self, session: &Session, channel: &ChannelName, max: usize) -> Result<Joined, StoreError> {
        let mut s = self.state();
        let id = session.connection_id.clone();
        let joined = s.memberships.entry(id.clone()).or_default();
        if joined.contains(channel) {
            return Ok(Joined::Already);
        }
        if joined.len() >= max {
            return Ok(Joined::Full);
        }
        joined.push(channel.clone());
        s.channels.entry(channel.clone()).or_default().insert(id, (session.endpoint.clone(), session.expires_at));
        Ok(Joined::New)
    }

    async fn admit_message(
        &self,
        id: &ConnectionId,
        now: i64,
        window: i64,
        limit: u32,
    ) -> Result<Admission, StoreError> {
        let mut guard = self.state();
        let state = &mut *guard;
        let Some(session) = state.sessions.get_mut(id).filter(|s| !s.is_expired(now)) else {
            return Ok(Admission::NoSession);
        };
        if limit > 0 {
            let counted = message_count(&mut state.message_counts, id, window);
            if *counted >= limit {
                return Ok(Admission::Limited);
            }
            *counted += 1;
        }
        // As on DynamoDB: with a count, `last_seen` rides on its write; without, once a minute.
        let seen = now.saturating_mul(1000);
        if limit > 0 || seen - session.last_seen >= super::LAST_SEEN_EVERY_MS {
            session.last_seen = seen;
        }
        Ok(Admission::Admitted(Box::new(session.clone())))
    }

    async fn charge_messages(
        &self,
        id: &ConnectionId,
        window: i64,
        limit: u32,
        units: u32,
    ) -> Result<bool, StoreError> {
        if limit == 0 {
            return Ok(true);
        }
        let mut guard = self.state();
        let counted = message_count(&mut guard.message_counts, id, window);
        if counted.saturating_add(units) > limit {
            return Ok(false);
        }
        *counted += units;
        Ok(true)
    }

    async fn claim_connection(
        &self,
        session: &Session,
        limits: UserLimits,
        issued_ms: i64,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let Some(user) = session.user_id() else {
            return Ok(Claim::Claimed { slot: false });
        };
        let mut guard = self.state();
        let state = &mut *guard;
        state.sweep(now.saturating_mul(1000));
        if state.closed.get(user).is_some_and(|(closed, _)| *closed >= issued_ms) {
            return Ok(Claim::Closed);
        }
        let window = now.div_euclid(super::RATE_WINDOW_SECS);
        let limit = limits.connects_per_minute;
        let counted = state.user_connects.get(user).filter(|(w, _)| *w == window).map_or(0, |(_, n)| *n);
        if limit > 0 && counted >= limit {
            return Ok(Claim::RateLimited);
        }
        let slot = limits.max_connections > 0;
        if slot {
            let slots = state.slots.entry(user.to_owned()).or_default();
            slots.retain(|_, expires_at| *expires_at > now);
            if !slots.contains_key(&session.connection_id) && slots.len() >= limits.max_connections {
                return Ok(Claim::Full);
            }
            slots.insert(session.connection_id.clone(), session.expires_at);
        }
        if limit > 0 {
            state.user_connects.insert(user.to_owned(), (window, counted + 1));
        }
        Ok(Claim::Claimed { slot })
    }

    async fn close_user(&self, user: &str, now_ms: i64, keep_until: i64) -> Result<(), StoreError> {
        let mut s = self.state();
        let kept = s.closed.get(user).map_or(keep_until, |(_, kept)| (*kept).max(keep_until));
        s.closed.insert(user.to_owned(), (now_ms, kept));
        Ok(())
    }

    async fn leave(&self, id: &ConnectionId, channel: &ChannelName) -> Result<bool, StoreError> {
        let mut s = self.state();
        let existed = s.memberships.get_mut(id).is_some_and(|joined| {
            let before = joined.len();
            joined.retain(|c| c != channel);
            joined.len() < before
        });
        if let Some(members) = s.channels.get_mut(channel) {
            members.remove(id);
            if members.is_empty() {
                s.channels.remove(channel);
            }
        }
        Ok(existed)
    }

    async fn channels_of(&self, id: &ConnectionId, now: i64) -> Result<Vec<ChannelName>, StoreError> {
        let s = self.state();
        let live = |c: &&ChannelName| s.channels.get(*c).and_then(|m| m.get(id)).is_some_and(|(_, exp)| *exp > now);
        Ok(s.memberships.get(id).map(|set| set.iter().filter(live).cloned().collect()).unwrap_or_default())
    }

    async fn channel_page(
        &self,
        channel: &ChannelName,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        let start = after(cursor)?;
        let s = self.state();
        let Some(members) = s.channels.get(channel) else {
            return Ok(Page { items: Vec::new(), next: None });
        };
        let iter = members
            .range((start, Bound::Unbounded))
            .filter(|(_, (_, exp))| *exp > now)
            .map(|(id, (ep, _))| (id.clone(), Recipient { connection_id: id.clone(), endpoint: ep.clone() }));
        Ok(paginate(iter, limit))
    }

    async fn user_page(
        &self,
        user_id: &str,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        let start = after(cursor)?;
        let s = self.state();
        let Some(ids) = s.users.get(user_id) else {
            return Ok(Page { items: Vec::new(), next: None });
        };
        let iter = ids
            .range((start, Bound::Unbounded))
            .filter_map(|id| s.sessions.get(id).filter(|sess| !sess.is_expired(now)))
            .map(recipient_of);
        Ok(paginate(iter, limit))
    }

    async fn scan_page(
        &self,
        segment: Segment,
        filter: &SessionFilter,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        let start = after(cursor)?;
        let s = self.state();
        let no_channels = Vec::new();
        let iter = s
            .sessions
            .range((start, Bound::Unbounded))
            .filter(|(id, sess)| segment_of(id, segment.total) == segment.index && !sess.is_expired(now))
            .filter(|(id, sess)| filter.matches(sess, s.memberships.get(*id).unwrap_or(&no_channels)))
            .map(|(_, sess)| recipient_of(sess));
        Ok(paginate(iter, limit))
    }

    async fn expired_page(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<ConnectionId>, StoreError> {
        let start = after(cursor)?;
        let s = self.state();
        let mut expired: BTreeSet<&ConnectionId> = s
            .sessions
            .range((start.clone(), Bound::Unbounded))
            .filter(|(_, sess)| sess.is_expired(now))
            .map(|(id, _)| id)
            .collect();
        for members in s.channels.values() {
            expired.extend(
                members.range((start.clone(), Bound::Unbounded)).filter(|(_, (_, e))| *e <= now).map(|(id, _)| id),
            );
        }
        Ok(paginate(expired.into_iter().map(|id| (id.clone(), id.clone())), limit))
    }
}

fn recipient_of(session: &Session) -> (ConnectionId, Recipient) {
    let id = session.connection_id.clone();
    (id.clone(), Recipient { connection_id: id, endpoint: session.endpoint.clone() })
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn put_token(&self, hash: &str, record: &TokenRecord) -> Result<(), StoreError> {
        self.state().tokens.insert(hash.to_owned(), record.clone());
        Ok(())
    }

    async fn take_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.state().tokens.remove(hash))
    }

    async fn purge_expired_tokens(&self, now: i64, dry_run: bool) -> Result<usize, StoreError> {
        let mut state = self.state();
        let before = state.tokens.len();
        if dry_run {
            return Ok(state.tokens.values().filter(|t| t.expires_at <= now).count());
        }
        state.tokens.retain(|_, t| t.expires_at > now);
        Ok(before - state.tokens.len())
    }
}

#[async_trait]
impl CounterStore for MemoryStore {
    async fn increment(&self, key: &str, expires_at: i64) -> Result<u64, StoreError> {
        let mut s = self.state();
        if s.counters.len() > 10_000 {
            // Forget windows that ended; the key embeds its window, so they are never read again.
            let now = crate::clock::unix_now_secs();
            s.counters.retain(|_, (_, exp)| *exp > now);
        }
        let entry = s.counters.entry(key.to_owned()).or_insert((0, expires_at));
        entry.0 += 1;
        Ok(entry.0)
    }
}

/// One channel's stream in memory: its epoch (new for every store, so a restarted local gateway
/// starts new streams), the last number given, and the kept messages, oldest first.
#[derive(Debug)]
struct Stream {
    epoch: String,
    head: u64,
    head_at: i64,
    /// The window of the rule it was last sent under, in milliseconds.
    window_ms: i64,
    /// (seq, kept until in Unix ms, payload)
    entries: std::collections::VecDeque<(u64, i64, String)>,
}

#[async_trait]
impl HistoryStore for MemoryStore {
    async fn append(
        &self,
        channel: &ChannelName,
        payload: &str,
        rule: HistoryRule,
        now_ms: i64,
    ) -> Result<Position, StoreError> {
        let mut s = self.state();
        s.sweep(now_ms);
        let window_ms = i64::try_from(rule.window.as_millis()).unwrap_or(i64::MAX);
        let stream = s.streams.entry(channel.clone()).or_insert_with(|| Stream {
            epoch: super::history::new_epoch(),
            head: 0,
            head_at: now_ms,
            window_ms,
            entries: Default::default(),
        });
        stream.head += 1;
        stream.head_at = now_ms;
        stream.window_ms = window_ms;
        let keep_until = now_ms.saturating_add(window_ms);
        stream.entries.push_back((stream.head, keep_until, payload.to_owned()));
        while stream.entries.len() > rule.size as usize || stream.entries.front().is_some_and(|e| e.1 <= now_ms) {
            stream.entries.pop_front();
        }
        Ok(Position { seq: stream.head, epoch: stream.epoch.clone() })
    }

    async fn recent(
        &self,
        channel: &ChannelName,
        after: u64,
        rule: HistoryRule,
        now_ms: i64,
    ) -> Result<Recent, StoreError> {
        let s = self.state();
        let Some(stream) = s.streams.get(channel) else {
            return Ok(Recent::default());
        };
        let kept: Vec<Entry> = stream
            .entries
            .iter()
            .filter(|(seq, until, _)| *seq > after && *until > now_ms)
            .map(|(seq, _, payload)| Entry { seq: *seq, payload: payload.clone() })
            .collect();
        let skip = kept.len().saturating_sub(rule.size as usize);
        Ok(Recent {
            epoch: Some(stream.epoch.clone()),
            head: stream.head,
            head_at: stream.head_at,
            entries: kept.into_iter().skip(skip).collect(),
        })
    }
}

/// One channel's presence: an entry per user (its connections with their expiries, its public
/// metadata, the entry's expiry) and the anonymous connections with theirs.
#[derive(Debug, Default)]
struct ChannelPresence {
    users: BTreeMap<String, UserEntry>,
    anonymous: HashMap<ConnectionId, i64>,
    /// Connections the user entries hold, expired or not (kept with every change, so counting
    /// costs nothing however many users there are).
    held: usize,
}

impl ChannelPresence {
    /// Connections the user entries hold, counted.
    fn held_counted(&self) -> usize {
        self.users.values().map(|e| e.connections.len()).sum()
    }
}

#[derive(Debug)]
struct UserEntry {
    connections: BTreeMap<ConnectionId, i64>,
    info: Metadata,
    expires_at: i64,
}

impl UserEntry {
    /// Connections whose sessions have not expired at `now`.
    fn live(&self, now: i64) -> usize {
        self.connections.values().filter(|until| **until > now).count()
    }
}

#[async_trait]
impl PresenceStore for MemoryStore {
    async fn enter(&self, channel: &ChannelName, presence: Presence<'_>, now: i64) -> Result<bool, StoreError> {
        let mut s = self.state();
        let present = s.presence.entry(channel.clone()).or_default();
        let session = presence.session;
        let id = session.connection_id.clone();
        let Some(user) = session.user_id() else {
            present.anonymous.insert(id, session.expires_at);
            return Ok(false);
        };
        let entry = present.users.entry(user.to_owned()).or_insert_with(|| UserEntry {
            connections: BTreeMap::new(),
            info: Metadata::new(),
            expires_at: i64::MIN,
        });
        let first = entry.expires_at <= now || entry.live(now) == 0;
        if entry.connections.insert(id, session.expires_at).is_none() {
            present.held += 1;
        }
        entry.info = presence.info.clone();
        entry.expires_at = presence.expires_at;
        Ok(first)
    }

    async fn exit(
        &self,
        channel: &ChannelName,
        id: &ConnectionId,
        user_id: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut s = self.state();
        let Some(present) = s.presence.get_mut(channel) else {
            return Ok(false);
        };
        let last = match user_id {
            None => {
                present.anonymous.remove(id);
                false
            }
            Some(user) => {
                let Some(entry) = present.users.get_mut(user) else {
                    return Ok(false);
                };
                let counted = entry.connections.remove(id).is_some();
                present.held -= usize::from(counted);
                let none_left = entry.live(now) == 0;
                if none_left {
                    present.held -= entry.connections.len();
                    present.users.remove(user);
                }
                counted && none_left
            }
        };
        if present.users.is_empty() && present.anonymous.is_empty() {
            s.presence.remove(channel);
        }
        Ok(last)
    }

    async fn present(&self, channel: &ChannelName, listed: usize, now: i64) -> Result<Present, StoreError> {
        let s = self.state();
        let Some(present) = s.presence.get(channel) else {
            return Ok(Present { members: Some(Vec::new()), ..Present::default() });
        };
        let anonymous = present.anonymous.len();
        let counts_only =
            Present { users: present.users.len(), connections: present.held + anonymous, anonymous, members: None };
        if present.users.len() > listed {
            return Ok(counts_only);
        }
        // At most `listed` entries: the live ones, exactly.
        let members: Vec<Member> = present
            .users
            .iter()
            .filter(|(_, e)| e.expires_at > now)
            .map(|(user, e)| Member { user_id: user.clone(), connections: e.live(now), info: e.info.clone() })
            .filter(|m| m.connections > 0)
            .collect();
        Ok(Present {
            users: members.len(),
            connections: members.iter().map(|m| m.connections).sum::<usize>() + anonymous,
            anonymous,
            members: Some(members),
        })
    }

    async fn recount(&self) -> Result<usize, StoreError> {
        // Every change keeps the count under the same lock, so none can be lost; this checks it.
        let mut s = self.state();
        let mut corrected = 0;
        for present in s.presence.values_mut() {
            let held = present.held_counted();
            if held != present.held {
                present.held = held;
                corrected += 1;
            }
        }
        Ok(corrected)
    }
}
