//! Presence: who is in a channel.
//!
//! A rule (`LWS_PRESENCE`, e.g. `room-*; lobby=500`) gives the channels its pattern matches
//! presence: the store keeps one entry per user in the channel (the user's connections there and
//! the public part of the session's metadata) and one per anonymous connection. A `presence
//! {channel}` action answers the members, one per user with a connection count, or, in a channel
//! with more users than the rule lists (100 unless the rule says), the counts only. Anonymous
//! connections are counted, never listed.
//!
//! When a user's first connection joins such a channel its other members receive
//! `member_joined`; when the user's last connection leaves (unsubscribe, `$disconnect`, a 410 a
//! send found, or clean-up), `member_left`. A user's second tab changes only the count.
//!
//! The public part of the metadata is the keys `LWS_PRESENCE_METADATA` names: a
//! [`ConnectHook`](crate::hooks::ConnectHook) may attach more (a tenant, a role) that members do
//! not see.

use std::sync::Arc;

use serde::Serialize;

use crate::delivery::{OnRemoved, Sender, Target};
use crate::hooks::Metadata;
use crate::policy::PolicyParseError;
use crate::protocol::{Extra, MemberJoined, MemberLeft, Outbound};
use crate::rules::Rules;
use crate::session::{ChannelName, ConnectionId, Session};
use crate::store::Removed;
use crate::store::StoreError;
pub use crate::store::presence::{Member, Presence, PresenceStore, Present};

/// Users a presence answer lists unless a rule says otherwise.
pub const DEFAULT_LISTED: usize = 100;
/// The most users a rule may list.
pub const MAX_LISTED: usize = 1000;

/// How a channel's presence is answered: members listed up to `listed` users, counts beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceRule {
    /// The most users an answer lists (1–1000).
    pub listed: usize,
}

/// Which channels have presence (`LWS_PRESENCE`): `pattern[=listed]` rules separated by `;`,
/// first match wins; a pattern is a name or a prefix ending in `*`.
pub type PresenceRules = Rules<PresenceRule>;

impl Rules<PresenceRule> {
    /// Parses `room-*; lobby=500`.
    pub fn parse(text: &str) -> Result<Self, PolicyParseError> {
        Rules::parse_with(
            text,
            |listed| {
                let listed = match listed {
                    Some(listed) => listed.parse().ok().filter(|n| (1..=MAX_LISTED).contains(n))?,
                    None => DEFAULT_LISTED,
                };
                Some(PresenceRule { listed })
            },
            PolicyParseError::Presence,
        )
    }
}

/// Who is in a channel, as the `presence` action and the sender's presence query answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ChannelPresence {
    /// The channel.
    pub channel: ChannelName,
    /// Users present.
    pub users: usize,
    /// Connections present, anonymous ones included.
    pub connections: usize,
    /// Anonymous connections present (counted, never listed).
    pub anonymous: usize,
    /// One per user, by id; absent when the channel has more users than its rule lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Member>>,
    /// Whether `members` lists only the first users by id, the rest left out for the answer to
    /// fit in one 128 KiB message (`users` still counts them all).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

impl ChannelPresence {
    /// `present` in `channel`, its member list cut (and `more` set) where it would take more than
    /// `max_bytes` of JSON.
    pub fn fitted(channel: &ChannelName, present: Present, max_bytes: usize) -> Self {
        let mut more = false;
        let members = present.members.map(|mut members| {
            let mut bytes = 0usize;
            let fits = members
                .iter()
                .take_while(|m| {
                    bytes += serde_json::to_string(m).map_or(usize::MAX / 2, |t| t.len() + 1);
                    bytes <= max_bytes
                })
                .count();
            more = fits < members.len();
            members.truncate(fits);
            members
        });
        Self {
            channel: channel.clone(),
            users: present.users,
            connections: present.connections,
            anonymous: present.anonymous,
            members,
            more,
        }
    }
}

/// Presence as the sender and the handlers keep it: the store, which channels have presence,
/// the public metadata keys and how long an entry may live.
#[derive(Debug, Clone)]
pub struct Tracker {
    store: Arc<dyn PresenceStore>,
    rules: PresenceRules,
    public: Arc<[String]>,
    ttl_secs: i64,
}

impl Tracker {
    /// Presence in `store` for the channels `rules` names, showing the metadata keys `public`;
    /// an entry lives at most `ttl_secs` (the session TTL) past its last join.
    pub fn new(store: Arc<dyn PresenceStore>, rules: PresenceRules, public: Vec<String>, ttl_secs: i64) -> Self {
        Self { store, rules, public: public.into(), ttl_secs }
    }

    /// The rule for `channel`, if it has presence.
    pub fn rule_for(&self, channel: &ChannelName) -> Option<PresenceRule> {
        self.rules.rule_for(channel)
    }

    /// Counts `session` in `channel` (which has presence); returns the member to announce when it
    /// is its user's first connection there.
    pub async fn enter(
        &self,
        channel: &ChannelName,
        session: &Session,
        now: i64,
    ) -> Result<Option<Member>, StoreError> {
        let info = public_info(session, &self.public);
        let presence = Presence { session, info: &info, expires_at: now.saturating_add(self.ttl_secs) };
        let first = self.store.enter(channel, presence, now).await?;
        Ok(match (first, session.user_id()) {
            (true, Some(user)) => Some(Member { user_id: user.to_owned(), connections: 1, info }),
            _ => None,
        })
    }

    /// Takes a connection out of `channel` at `now`; returns whether its user is gone from it.
    pub async fn exit(
        &self,
        channel: &ChannelName,
        id: &ConnectionId,
        user_id: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.store.exit(channel, id, user_id, now).await
    }
}

impl Tracker {
    /// Counts `session` in `channel`'s presence, if the channel has presence; for its user's first
    /// connection there, tells the channel's other members `member_joined` through `sender`.
    pub async fn join(&self, sender: &Sender, session: &Session, channel: &ChannelName) -> Result<(), StoreError> {
        if self.rule_for(channel).is_none() {
            return Ok(());
        }
        if let Some(member) = self.enter(channel, session, sender.clock().now_secs()).await? {
            self.announce_joined(sender, channel, member, &session.connection_id).await;
        }
        Ok(())
    }

    /// Tells `channel`'s members but `joiner` that `member` joined (not a stream message: presence
    /// events take no number and are not kept).
    pub async fn announce_joined(&self, sender: &Sender, channel: &ChannelName, member: Member, joiner: &ConnectionId) {
        let message =
            Outbound::MemberJoined(MemberJoined { channel: channel.to_string(), member, extra: Extra::new() });
        let gone = announce(sender, channel, &message, std::slice::from_ref(joiner)).await;
        // Members found gone leave in turn (`leave` loops; it never announces a join).
        let removed = sender.remove_gone(&gone).await;
        self.leave(sender, &removed).await;
    }

    /// Takes removed sessions (or left memberships) out of the presence of their channels that
    /// have presence, and tells each channel's remaining members `member_left` for every user
    /// with no connection left there. Members an announcement finds gone are removed and leave in
    /// turn, in this loop (not by a send inside a send). Failures are logged: the entries expire
    /// in time.
    pub async fn leave(&self, sender: &Sender, removed: &[Removed]) {
        let mut pending: Vec<Removed> = removed.to_vec();
        while !pending.is_empty() {
            let mut gone = Vec::new();
            for (channel, user_id) in self.exit_all(sender, &pending).await {
                let message =
                    Outbound::MemberLeft(MemberLeft { channel: channel.to_string(), user_id, extra: Extra::new() });
                gone.extend(announce(sender, &channel, &message, &[]).await);
            }
            pending = sender.remove_gone(&gone).await;
        }
    }

    /// Takes each removed session out of its channels with presence; the users who left.
    async fn exit_all(&self, sender: &Sender, removed: &[Removed]) -> Vec<(ChannelName, String)> {
        let exits: Vec<(&ChannelName, &Removed)> = removed
            .iter()
            .flat_map(|r| r.channels.iter().filter(|c| self.rule_for(c).is_some()).map(move |c| (c, r)))
            .collect();
        let mut left = Vec::new();
        let now = sender.clock().now_secs();
        for batch in exits.chunks(8) {
            let answers = futures::future::join_all(
                batch.iter().map(|(c, r)| self.exit(c, &r.connection_id, r.user_id.as_deref(), now)),
            )
            .await;
            for ((channel, r), answer) in batch.iter().zip(answers) {
                match answer {
                    Ok(true) => left.extend(r.user_id.clone().map(|user| ((*channel).clone(), user))),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(
                        channel = %channel, connection_id = %r.connection_id, error = %e, "could not leave presence"
                    ),
                }
            }
        }
        left
    }
}

/// Posts a presence event to a channel's members, outside its stream; the connections it found gone.
async fn announce(
    sender: &Sender,
    channel: &ChannelName,
    message: &Outbound,
    exclude: &[ConnectionId],
) -> Vec<ConnectionId> {
    match message.encode() {
        Ok(payload) => {
            let report = sender.post_all(&Target::Channel(channel.clone()), payload, exclude).await;
            tracing::debug!(channel = %channel, kind = message.type_name(), delivered = report.delivered, "presence event sent");
            report.gone
        }
        Err(e) => {
            tracing::error!(channel = %channel, error = %e, "presence event could not be encoded");
            Vec::new()
        }
    }
}

#[async_trait::async_trait]
impl OnRemoved for Tracker {
    async fn removed(&self, sender: &Sender, removed: &[Removed]) {
        self.leave(sender, removed).await;
    }
}

/// The public part of `session`'s metadata: the keys `public` names.
pub fn public_info(session: &Session, public: &[String]) -> Metadata {
    session.metadata.iter().filter(|(k, _)| public.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_with_and_without_a_listing_size() {
        let rules = PresenceRules::parse("room-*; lobby=500 ;").expect("valid");
        let rule = |name: &str| rules.rule_for(&ChannelName::new(name).expect("name"));
        assert_eq!(rule("room-1"), Some(PresenceRule { listed: DEFAULT_LISTED }));
        assert_eq!(rule("lobby"), Some(PresenceRule { listed: 500 }));
        assert_eq!(rule("lobby-2"), None);
        for bad in ["room-*=0", "room-*=1001", "a*b", "bad name", "x=many"] {
            assert!(PresenceRules::parse(bad).is_err(), "{bad}");
        }
        assert!(PresenceRules::parse("").expect("empty").is_empty());
    }
}
