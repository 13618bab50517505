//! Presence in DynamoDB: a partition per channel (`pres#<channel>`).
//!
//! | item        | `sk`               | attributes                                                        |
//! |-------------|--------------------|-------------------------------------------------------------------|
//! | counts      | `u!`               | `users`, `conns`, `anon`, `v`                                     |
//! | user        | `u#<user id>`      | `c_<connection id>` (its expiry) per connection, `info`, `v`, `expires_at` |
//! | anonymous   | `a#<connection id>`| `expires_at`                                                      |
//!
//! Neither carries `user_id` or `channel`, so neither index lists them. The counts item sorts
//! just before the users, so one query reads it and then the first users by id: an answer costs
//! the counts and at most `listed + 1` entries, whatever the channel's size. Every write that adds
//! or removes a connection or a user entry tells the counts what it changed, from what the write
//! itself returned (one more `UpdateItem`); [`PresenceStore::recount`] (the clean-up) corrects a
//! count a lost second write or DynamoDB's TTL left behind.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{DynamoDbStore, Item, TTL_ATTRIBUTE, get_n, get_s, n, s, sdk_error, string_map, string_map_attribute};
use crate::session::{ChannelName, ConnectionId};
use crate::store::StoreError;
use crate::store::presence::{Member, Presence, PresenceStore, Present};

const PRESENCE_PREFIX: &str = "pres#";
const USER_PREFIX: &str = "u#";
const ANONYMOUS_PREFIX: &str = "a#";
/// The counts item's sort key: just before every `u#`.
const COUNTS_SK: &str = "u!";
/// A user item's attribute per connection (`c_<connection id>`: its expiry).
const CONNECTION_PREFIX: &str = "c_";
/// A user item's (and the counts item's) version, added to by every change: a last leave deletes
/// the user item, and a recount sets the counts, only if nothing changed since they read it.
const VERSION: &str = "v";
const USERS: &str = "users";
const CONNECTIONS: &str = "conns";
const ANONYMOUS: &str = "anon";
/// Most items one page of a listing asks for.
const PAGE: usize = 1000;

/// Where a channel's presence lives.
fn presence_pk(channel: &ChannelName) -> AttributeValue {
    s(&format!("{PRESENCE_PREFIX}{channel}"))
}

/// A presence item's sort key: the user's, or an anonymous connection's.
fn presence_sk(id: &ConnectionId, user_id: Option<&str>) -> AttributeValue {
    match user_id {
        Some(user) => s(&format!("{USER_PREFIX}{user}")),
        None => s(&format!("{ANONYMOUS_PREFIX}{id}")),
    }
}

/// The attribute of a user's presence item that holds `id`'s expiry.
fn connection_attribute(id: &ConnectionId) -> String {
    format!("{CONNECTION_PREFIX}{id}")
}

/// The connection expiries a user's presence item holds.
fn connection_expiries(item: &Item) -> impl Iterator<Item = Option<i64>> + '_ {
    item.iter()
        .filter(|(name, _)| name.starts_with(CONNECTION_PREFIX))
        .map(|(_, until)| until.as_n().ok().and_then(|n| n.parse::<i64>().ok()))
}

/// How many connections of a user's presence item have not expired at `now`.
fn live_connections(item: &Item, now: i64) -> usize {
    connection_expiries(item).filter(|until| until.is_some_and(|until| until > now)).count()
}

/// How many connections a user's presence item holds, expired or not (what the counts count).
fn held_connections(item: &Item) -> i64 {
    connection_expiries(item).count() as i64
}

/// A number attribute, 0 when absent; never below 0 (a count a lost write left short).
fn count_of(item: &Item, name: &str) -> usize {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok()).map_or(0, |v| v.max(0) as usize)
}

/// The names of the counts item's attributes in its update expressions (`#u`, `#c`, `#a`, `#v`).
fn counts_names() -> std::collections::HashMap<String, String> {
    [("#u", USERS), ("#c", CONNECTIONS), ("#a", ANONYMOUS), ("#v", VERSION)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The values of a counts update: `:u`, `:c`, `:a` from `change`, and `:one` for the version.
fn counts_values(change: Change) -> Item {
    [(":u", change.0), (":c", change.1), (":a", change.2), (":one", 1)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), n(v)))
        .collect()
}

/// What a write changed: users, connections, anonymous connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Change(i64, i64, i64);

impl DynamoDbStore {
    /// Adds `change` to `channel`'s counts. A failure is logged, not returned: the entry it counts
    /// was written, and the next recount corrects the count.
    async fn count(&self, channel: &ChannelName, change: Change) {
        if change == Change::default() {
            return;
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", presence_pk(channel))
            .key("sk", s(COUNTS_SK))
            .update_expression("ADD #u :u, #c :c, #a :a, #v :one")
            .set_expression_attribute_names(Some(counts_names()))
            .set_expression_attribute_values(Some(counts_values(change)))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        let counts = match result {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(channel = %channel, error = %sdk_error(e), "could not update presence counts; the clean-up corrects them");
                return;
            }
        };
        // The channel emptied: drop its counts item too, unless a join counted meanwhile (a count
        // added after the drop makes it anew, from zero).
        if [USERS, CONNECTIONS, ANONYMOUS]
            .iter()
            .all(|name| counts.get(*name).and_then(|v| v.as_n().ok()).is_some_and(|v| v == "0"))
            && let Some(version) = counts.get(VERSION)
        {
            let dropped = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("pk", presence_pk(channel))
                .key("sk", s(COUNTS_SK))
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":v", version.clone())
                .send()
                .await;
            if let Err(e) = dropped
                && e.code() != Some("ConditionalCheckFailedException")
            {
                tracing::warn!(channel = %channel, error = %sdk_error(e), "could not drop empty presence counts");
            }
        }
    }

    /// Counts `channel`'s presence items as they are and sets the counts to that, unless a write
    /// counted meanwhile; returns whether the counts changed.
    async fn recount_channel(&self, channel: &ChannelName) -> Result<bool, StoreError> {
        let mut counted = Item::new();
        let (mut users, mut connections, mut anonymous) = (0i64, 0i64, 0i64);
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", presence_pk(channel))
            .consistent_read(true);
        super::query_all(query, |item| {
            match get_s(&item, "sk").unwrap_or_default() {
                COUNTS_SK => counted = item,
                sk if sk.starts_with(ANONYMOUS_PREFIX) => {
                    anonymous += 1;
                    connections += 1;
                }
                sk if sk.starts_with(USER_PREFIX) => {
                    let held = held_connections(&item);
                    users += i64::from(held > 0);
                    connections += held;
                }
                _ => {}
            }
            Ok(())
        })
        .await?;
        let kept = (count_of(&counted, USERS), count_of(&counted, CONNECTIONS), count_of(&counted, ANONYMOUS));
        if kept == (users as usize, connections as usize, anonymous as usize) {
            return Ok(false);
        }
        // Only if no write counted since the read: the count it added is in the items read, or
        // not, and only a later read can tell.
        let mut values = counts_values(Change(users, connections, anonymous));
        let condition = match counted.get(VERSION) {
            Some(version) => {
                values.insert(":v".to_owned(), version.clone());
                "#v = :v"
            }
            None => "attribute_not_exists(#v)",
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", presence_pk(channel))
            .key("sk", s(COUNTS_SK))
            .update_expression("SET #u = :u, #c = :c, #a = :a ADD #v :one")
            .condition_expression(condition)
            .set_expression_attribute_names(Some(counts_names()))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }
}

#[async_trait]
impl PresenceStore for DynamoDbStore {
    async fn enter(&self, channel: &ChannelName, presence: Presence<'_>, now: i64) -> Result<bool, StoreError> {
        let session = presence.session;
        let id = &session.connection_id;
        let Some(user) = session.user_id() else {
            let old = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", presence_pk(channel))
                .item("sk", presence_sk(id, None))
                .item(TTL_ATTRIBUTE, n(session.expires_at))
                .return_values(ReturnValue::AllOld)
                .send()
                .await
                .map_err(sdk_error)?
                .attributes
                .unwrap_or_default();
            if old.is_empty() {
                self.count(channel, Change(0, 1, 1)).await;
            }
            return Ok(false);
        };
        // One atomic write: the connection's attribute (its expiry), the entry's expiry, the
        // public metadata and the version; the item as it was says whether any connection of
        // the user was live there, and what to count.
        let attribute = connection_attribute(id);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", presence_pk(channel))
            .key("sk", presence_sk(id, Some(user)))
            .expression_attribute_names("#c", &attribute)
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_names("#info", "info")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":c", n(session.expires_at))
            .expression_attribute_values(":exp", n(presence.expires_at))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllOld);
        let update = if presence.info.is_empty() {
            update.update_expression("SET #c = :c, #exp = :exp REMOVE #info ADD #v :one")
        } else {
            update
                .update_expression("SET #c = :c, #exp = :exp, #info = :info ADD #v :one")
                .expression_attribute_values(":info", string_map_attribute(presence.info))
        };
        let old = update.send().await.map_err(sdk_error)?.attributes.unwrap_or_default();
        let change = Change(i64::from(held_connections(&old) == 0), i64::from(!old.contains_key(&attribute)), 0);
        self.count(channel, change).await;
        Ok(live_connections(&old, now) == 0)
    }

    async fn exit(
        &self,
        channel: &ChannelName,
        id: &ConnectionId,
        user_id: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let key = (presence_pk(channel), presence_sk(id, user_id));
        if user_id.is_none() {
            let old = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("pk", key.0)
                .key("sk", key.1)
                .return_values(ReturnValue::AllOld)
                .send()
                .await
                .map_err(sdk_error)?
                .attributes
                .unwrap_or_default();
            if !old.is_empty() {
                self.count(channel, Change(0, -1, -1)).await;
            }
            return Ok(false);
        }
        // One atomic removal of the connection's attribute, if it is there; the item as it is
        // now says whether a live connection of the user is left.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", key.0.clone())
            .key("sk", key.1.clone())
            .update_expression("REMOVE #c ADD #v :one")
            .condition_expression("attribute_exists(#c)")
            .expression_attribute_names("#c", connection_attribute(id))
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let new = match result {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => return Ok(false),
            Err(e) => return Err(sdk_error(e)),
        };
        if live_connections(&new, now) > 0 {
            self.count(channel, Change(0, -1, 0)).await;
            return Ok(false);
        }
        // The user's last live connection: drop the entry (and any connections left by sessions
        // that ended without a word), unless it changed meanwhile (another joined).
        let version = get_n(&new, VERSION)?;
        let dropped = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", key.0)
            .key("sk", key.1)
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":v", n(version))
            .send()
            .await;
        match dropped {
            Ok(_) => {
                self.count(channel, Change(-1, -1 - held_connections(&new), 0)).await;
                Ok(true)
            }
            // Changed since: the same user entered again (and announced itself, having found no
            // live connection), or another leave of a gone connection dropped it. Either way this
            // leave is not the last one to say so: a `member_left` now could arrive after that
            // `member_joined` for a user who is there.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                self.count(channel, Change(0, -1, 0)).await;
                Ok(false)
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn present(&self, channel: &ChannelName, listed: usize, now: i64) -> Result<Present, StoreError> {
        // The counts, then users by id until one more than the listing allows: a page of at most
        // `listed + 2` items, more pages only past users whose connections all expired.
        let page = listed.saturating_add(2).min(PAGE) as i32;
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk >= :from")
            .expression_attribute_values(":pk", presence_pk(channel))
            .expression_attribute_values(":from", s(COUNTS_SK))
            .consistent_read(true)
            .limit(page);
        let mut counts = Item::new();
        let mut members: Vec<Member> = Vec::new();
        let mut start = None;
        let complete = 'read: loop {
            let out = query.clone().set_exclusive_start_key(start).send().await.map_err(sdk_error)?;
            for item in out.items.unwrap_or_default() {
                let sk = get_s(&item, "sk").unwrap_or_default();
                if sk == COUNTS_SK {
                    let too_many = count_of(&item, USERS) > listed;
                    counts = item;
                    if too_many {
                        break 'read false;
                    }
                    continue;
                }
                let Some(user) = sk.strip_prefix(USER_PREFIX) else { continue };
                let live = live_connections(&item, now);
                if live == 0 || get_n(&item, TTL_ATTRIBUTE).is_ok_and(|until| until <= now) {
                    continue;
                }
                if members.len() == listed {
                    break 'read false;
                }
                let info = string_map(item.get("info"));
                members.push(Member { user_id: user.to_owned(), connections: live, info });
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break true;
            }
        };
        let anonymous = count_of(&counts, ANONYMOUS);
        Ok(if complete {
            // Every user read: the live ones, exactly.
            Present {
                users: members.len(),
                connections: members.iter().map(|m| m.connections).sum::<usize>() + anonymous,
                anonymous,
                members: Some(members),
            }
        } else {
            Present {
                users: count_of(&counts, USERS).max(listed + 1),
                connections: count_of(&counts, CONNECTIONS).max(listed + 1 + anonymous),
                anonymous,
                members: None,
            }
        })
    }

    async fn recount(&self) -> Result<usize, StoreError> {
        // The channels with presence items, from one scan of their keys.
        let mut channels: BTreeSet<String> = BTreeSet::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :pres)")
                .projection_expression("pk")
                .expression_attribute_values(":pres", s(PRESENCE_PREFIX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items.unwrap_or_default() {
                if let Some(name) = get_s(&item, "pk").and_then(|pk| pk.strip_prefix(PRESENCE_PREFIX)) {
                    channels.insert(name.to_owned());
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        let mut corrected = 0;
        for channel in channels.iter().filter_map(|name| ChannelName::new(name).ok()) {
            corrected += usize::from(self.recount_channel(&channel).await?);
        }
        Ok(corrected)
    }
}
