//! The DynamoDB store: one table, two sparse GSIs, TTL on `expires_at`.
//!
//! | item       | `pk`               | `sk`             | other attributes                                    |
//! |------------|--------------------|------------------|-----------------------------------------------------|
//! | session    | `conn#<id>`        | `session`        | `user_id`, endpoint, identity, times, metadata, `channel` (the connect channel), `channels` (all), `slot`, `msgs_<minute>` |
//! | membership | `conn#<id>`        | `chan#<channel>` | `channel`, endpoint, `expires_at` (channels joined after `$connect`) |
//! | token      | `token#<sha256>`   | `token`          | token_user, token_groups, token_channel, expiry     |
//! | counter    | `rate#<scope>#...` | `rate`           | `n`, `expires_at`                                   |
//! | user       | `user#<user id>`   | `conns`          | `slots` (connection id → expiry), `connects_<minute>`, `expires_at` |
//! | stream head | `hist#<channel>`  | `head`           | `seq` (the last number given), `epoch`, `head_at`   |
//! | kept message | `hist#<channel>` | `m#<seq>`        | `payload`, `keep_until` (ms), `expires_at`          |
//!
//! `$connect` writes the session with its connect channel on it, so a connection in one channel
//! is one item; `$disconnect` deletes it and reads back what else to delete. `by-channel` (hash
//! `channel`, range `pk`) holds memberships and sessions with a connect channel; `by-user` (hash
//! `user_id`, range `pk`) only sessions with a user. Both project just `connection_id`, `endpoint` and
//! `expires_at`, so fan-out reads what it needs and nothing more. Tokens and counters name their
//! attributes differently so they never enter an index.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    Projection, ProjectionType, ReturnValue, ScalarAttributeType, WriteRequest,
};
use futures::{StreamExt as _, TryStreamExt as _};

use super::{
    Admission, Claim, CounterStore, Cursor, Joined, LAST_SEEN_EVERY_MS, Page, Removed, Segment, SessionFilter,
    SessionStore, StoreError, TokenRecord, TokenStore, UserLimits,
};
use crate::history::{Entry, HistoryRule, HistoryStore, Position, Recent};
use crate::hooks::Metadata;
use crate::session::{ChannelName, ConnectionId, Identity, Recipient, Session};

mod presence;

/// Name of the channel index.
pub const CHANNEL_INDEX: &str = "by-channel";
/// Name of the user index.
pub const USER_INDEX: &str = "by-user";
/// The TTL attribute (Unix seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// Attributes the indexes project besides their keys.
pub const INDEX_PROJECTION: [&str; 3] = ["connection_id", "endpoint", "expires_at"];

const SESSION_SK: &str = "session";
/// Session attributes counting its messages per rate window (`msgs_<minute>`).
const MESSAGES_PREFIX: &str = "msgs_";
/// The session attribute listing every channel the connection is in (a string set kept
/// atomically by `join` and `leave`; its size is checked against the per-connection limit).
const CHANNELS: &str = "channels";
/// The session attribute saying it holds one of its user's connection slots.
const SLOT: &str = "slot";
/// The token attribute holding when it was issued (Unix milliseconds).
const TOKEN_ISSUED: &str = "token_issued";
/// The user item's attribute holding when its sessions were last closed (Unix milliseconds):
/// tokens issued until then are refused.
const CLOSED: &str = "closed_at";
/// The index key of a membership; the session item carries its connect channel under it too.
const CHANNEL: &str = "channel";
/// Attributes of the user item counting its `$connect`s per rate window (`connects_<minute>`).
const CONNECTS_PREFIX: &str = "connects_";
/// A channel stream's partition (`hist#<channel>`): its head and its kept messages.
const HISTORY_PREFIX: &str = "hist#";
/// The stream head's sort key: the last sequence number and the epoch.
const HEAD_SK: &str = "head";
/// A kept message's sort key prefix (`m#<seq, 20 digits>`).
const ENTRY_PREFIX: &str = "m#";
/// How long a stream head outlives its last message (30 days): a channel sent to again within
/// that keeps its epoch.
const STREAM_TTL_SECS: i64 = 30 * 24 * 3600;
const CONN_PREFIX: &str = "conn#";
const CHAN_PREFIX: &str = "chan#";
const TOKEN_PREFIX: &str = "token#";
const USER_PREFIX: &str = "user#";
const SLOTS_SK: &str = "conns";
/// How many connect counts of old windows a user item may carry before a slot release drops them.
const STALE_COUNTS: usize = 8;
/// How many times a connection claim retries after reclaiming expired slots or losing a race.
const CLAIM_ATTEMPTS: usize = 8;
/// DynamoDB's BatchWriteItem limit.
const BATCH_LIMIT: usize = 25;
const BATCH_RETRIES: u32 = 8;

type Item = HashMap<String, AttributeValue>;

/// What a connection's partition holds, as [`DynamoDbStore::items_of`] reads it.
#[derive(Debug, Default)]
struct ConnectionItems {
    /// The session, when it was asked for and exists.
    session: Option<Session>,
    /// The session's user, if it has one.
    user_id: Option<String>,
    /// The keys of every item (session and memberships).
    keys: Vec<Item>,
    /// The channels of its memberships (the session item's connect channel included).
    channels: Vec<String>,
}

/// Sessions, tokens and counters in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
}

impl DynamoDbStore {
    /// A store over `table` using `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The keys of every item of a connection (session and memberships) and its user, and the
    /// session itself when `with_session` (otherwise only keys and the user are read).
    async fn items_of(&self, id: &ConnectionId, with_session: bool) -> Result<ConnectionItems, StoreError> {
        let mut found = ConnectionItems::default();
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", conn_pk(id))
            .consistent_read(true);
        if !with_session {
            query = query.projection_expression("pk, sk, user_id, #ch").expression_attribute_names("#ch", CHANNEL);
        }
        query_all(query, |item| {
            if get_s(&item, "sk") == Some(SESSION_SK) {
                found.user_id = get_s(&item, "user_id").map(str::to_owned);
                if with_session {
                    found.session = Some(session_from(&item)?);
                }
            }
            found.channels.extend(get_s(&item, CHANNEL).map(str::to_owned));
            let key = ["pk", "sk"].into_iter().filter_map(|k| item.get(k).map(|v| (k.to_owned(), v.clone())));
            found.keys.push(key.collect());
            Ok(())
        })
        .await?;
        Ok(found)
    }

    /// Deletes items by key, 25 at a time, retrying unprocessed items with backoff.
    async fn delete_keys(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        for chunk in keys.chunks(BATCH_LIMIT) {
            let mut requests = chunk
                .iter()
                .map(|key| {
                    let delete = DeleteRequest::builder().set_key(Some(key.clone())).build().map_err(corrupt)?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            for attempt in 0.. {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                requests = out.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if attempt >= BATCH_RETRIES {
                    return Err(StoreError::Throttled);
                }
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
            }
        }
        Ok(())
    }

    /// Runs a GSI query for recipients.
    async fn index_page(
        &self,
        index: &str,
        hash_attr: &str,
        hash_value: &str,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#h = :h")
            .filter_expression("#exp > :now")
            .expression_attribute_names("#h", hash_attr)
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":h", s(hash_value))
            .expression_attribute_values(":now", n(now))
            .limit(page_limit(limit))
            .set_exclusive_start_key(decode_cursor(cursor)?)
            .send()
            .await
            .map_err(sdk_error)?;
        let items = out.items.unwrap_or_default().iter().map(recipient_of).collect::<Result<_, _>>()?;
        Ok(Page { items, next: encode_cursor(out.last_evaluated_key)? })
    }

    /// Takes `channel` out of the session's channel set (nothing to do for a removed session).
    async fn forget_channel(&self, id: &ConnectionId, channel: &ChannelName) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .update_expression("DELETE #cs :set")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#cs", CHANNELS)
            .expression_attribute_values(":set", AttributeValue::Ss(vec![channel.as_str().to_owned()]))
            .send()
            .await;
        unless_condition_failed(result)
    }

    /// The channels in the session's set, or `None` for a session written before the set existed
    /// (or no session).
    async fn channel_set(&self, id: &ConnectionId, now: i64) -> Result<Option<Vec<String>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .projection_expression("#cs, #exp, #slot")
            .expression_attribute_names("#cs", CHANNELS)
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_names("#slot", SLOT)
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let Some(item) = out.item.filter(|i| !i.is_empty()) else {
            return Ok(Some(Vec::new()));
        };
        if get_n(&item, TTL_ATTRIBUTE).is_ok_and(|exp| exp <= now) {
            return Ok(Some(Vec::new()));
        }
        Ok(match item.get(CHANNELS) {
            Some(AttributeValue::Ss(set)) => Some(set.clone()),
            _ if item.contains_key(SLOT) => Some(Vec::new()),
            _ => None,
        })
    }

    /// The user item (connection slots and connect counts), if there is one.
    async fn user_item(&self, user: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(slots_key(user)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item.filter(|i| !i.is_empty()))
    }

    /// The names of a connection's membership items (sessions written before the channel set).
    async fn membership_names(&self, id: &ConnectionId, now: i64) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :chan)")
            .filter_expression("#exp > :now")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":pk", conn_pk(id))
            .expression_attribute_values(":chan", s(CHAN_PREFIX))
            .expression_attribute_values(":now", n(now))
            .consistent_read(true);
        query_all(query, |item| {
            let name = get_s(&item, CHANNEL).ok_or_else(|| StoreError::Corrupt("membership without channel".into()))?;
            names.push(name.to_owned());
            Ok(())
        })
        .await?;
        Ok(names)
    }

    /// Frees a connection's slot (nothing to do if the user has no slot item). Connect counts of
    /// old windows are dropped by each claim only for the two windows before it; once
    /// [`STALE_COUNTS`] older ones have built up on the item, this drops them too (the
    /// two newest windows stay, whatever the time).
    async fn release_slot(&self, user: &str, id: &ConnectionId) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(slots_key(user)))
            .update_expression("REMOVE slots.#id")
            .condition_expression("attribute_exists(slots)")
            .expression_attribute_names("#id", id.as_str())
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let item = match result {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => return Ok(()),
            Err(e) => return Err(sdk_error(e)),
        };
        let mut windows: Vec<i64> =
            item.keys().filter_map(|k| k.strip_prefix(CONNECTS_PREFIX)).filter_map(|w| w.parse().ok()).collect();
        if windows.len() < STALE_COUNTS + 2 {
            return Ok(());
        }
        windows.sort_unstable_by(|a, b| b.cmp(a));
        let stale = &windows[2..];
        let names: Vec<String> = (0..stale.len()).map(|i| format!("#s{i}")).collect();
        let mut cleanup = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(slots_key(user)))
            .update_expression(format!("REMOVE {}", names.join(", ")))
            .condition_expression("attribute_exists(pk)");
        for (name, window) in names.iter().zip(stale) {
            cleanup = cleanup.expression_attribute_names(name, format!("{CONNECTS_PREFIX}{window}"));
        }
        unless_condition_failed(cleanup.send().await)
    }

    /// Creates the table with the keys and indexes above (on-demand billing) and waits until it
    /// is active. TTL is declared by the deployment template, not here.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        create_table(&self.client, &self.table).await
    }
}

/// Creates `table` with the lambda-ws key schema and indexes; waits until it is active.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let attr =
        |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    let projection = INDEX_PROJECTION
        .iter()
        .fold(Projection::builder().projection_type(ProjectionType::Include), |p, a| p.non_key_attributes(*a))
        .build();
    let index = |name: &str, hash: &str| -> Result<GlobalSecondaryIndex, StoreError> {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(hash, KeyType::Hash).map_err(corrupt)?)
            .key_schema(key("pk", KeyType::Range).map_err(corrupt)?)
            .projection(projection.clone())
            .build()
            .map_err(corrupt)
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(
            ["pk", "sk", "channel", "user_id"].into_iter().map(attr).collect::<Result<_, _>>().map_err(corrupt)?,
        ))
        .key_schema(key("pk", KeyType::Hash).map_err(corrupt)?)
        .key_schema(key("sk", KeyType::Range).map_err(corrupt)?)
        .global_secondary_indexes(index(CHANNEL_INDEX, "channel")?)
        .global_secondary_indexes(index(USER_INDEX, "user_id")?)
        .send()
        .await
        .map_err(sdk_error)?;
    for _ in 0..100 {
        let out = client.describe_table().table_name(table).send().await.map_err(sdk_error)?;
        let active = out.table.and_then(|t| t.table_status).is_some_and(|s| s.as_str() == "ACTIVE");
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(StoreError::Unavailable(format!("table {table} did not become active")))
}

#[async_trait]
impl SessionStore for DynamoDbStore {
    async fn put_session(&self, session: &Session) -> Result<(), StoreError> {
        self.open_session(session, None, false).await
    }

    async fn get_session(&self, id: &ConnectionId, now: i64) -> Result<Option<Session>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let session = out.item.as_ref().map(session_from).transpose()?;
        Ok(session.filter(|s| !s.is_expired(now)))
    }

    async fn remove_session(&self, id: &ConnectionId) -> Result<Option<Removed>, StoreError> {
        // The session item goes first and says what else there is: the channels joined after
        // `$connect` (their own items) and whether it holds a user's connection slot. A
        // connection in only its connect channel, without a slot, is one call.
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_error)?;
        let Some(item) = out.attributes.filter(|a| !a.is_empty()) else {
            // No session: clear whatever a failed removal left of the connection.
            let found = self.items_of(id, false).await?;
            self.delete_keys(found.keys).await?;
            return Ok(None);
        };
        let session = session_from(&item)?;
        let written_with_set = item.contains_key(SLOT);
        let memberships = async {
            if !written_with_set {
                let found = self.items_of(id, false).await?;
                let mut channels = found.channels;
                channels.extend(get_s(&item, CHANNEL).map(str::to_owned));
                self.delete_keys(found.keys).await?;
                return Ok(channels);
            }
            let inline = get_s(&item, CHANNEL);
            let keys: Vec<Item> = match item.get(CHANNELS) {
                Some(AttributeValue::Ss(set)) => set
                    .iter()
                    .filter(|name| Some(name.as_str()) != inline)
                    .map(|name| {
                        HashMap::from([
                            ("pk".to_owned(), conn_pk(id)),
                            ("sk".to_owned(), s(&format!("{CHAN_PREFIX}{name}"))),
                        ])
                    })
                    .collect(),
                _ => Vec::new(),
            };
            self.delete_keys(keys).await?;
            Ok(match item.get(CHANNELS) {
                Some(AttributeValue::Ss(set)) => set.clone(),
                _ => Vec::new(),
            })
        };
        let holds_slot = matches!(item.get(SLOT), Some(AttributeValue::Bool(true))) || !written_with_set;
        let slot = async {
            match session.user_id() {
                Some(user) if holds_slot => self.release_slot(user, id).await,
                _ => Ok(()),
            }
        };
        let (channels, ()) = futures::try_join!(memberships, slot)?;
        Ok(Some(Removed::of(&session, channel_names(channels)?)))
    }

    async fn remove_sessions(&self, ids: &[ConnectionId]) -> Result<Vec<Removed>, StoreError> {
        // Keys of all the connections' items (a few queries at a time), then 25-item batch deletes.
        let found: Vec<(ConnectionId, ConnectionItems)> = futures::stream::iter(ids.to_vec())
            .map(|id| async move { Ok::<_, StoreError>((id.clone(), self.items_of(&id, false).await?)) })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        let mut removed = Vec::new();
        let mut users: Vec<(String, ConnectionId)> = Vec::new();
        let mut keys = Vec::new();
        for (id, items) in found {
            if items.keys.is_empty() {
                continue;
            }
            let mut channels = channel_names(items.channels)?;
            channels.sort_unstable();
            channels.dedup();
            removed.push(Removed { connection_id: id.clone(), user_id: items.user_id.clone(), channels });
            users.extend(items.user_id.map(|user| (user, id)));
            keys.extend(items.keys);
        }
        self.delete_keys(keys).await?;
        futures::stream::iter(users)
            .map(|(user, id)| async move { self.release_slot(&user, &id).await })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(removed)
    }

    async fn join(&self, session: &Session, channel: &ChannelName, max: usize) -> Result<Joined, StoreError> {
        // Into the session's channel set first, conditionally on the cap and on not being there
        // yet, so no membership ever exists beyond it; then the membership's own item.
        let id = &session.connection_id;
        let set = AttributeValue::Ss(vec![channel.as_str().to_owned()]);
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .update_expression("ADD #cs :set")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(#cs) OR (size(#cs) < :max AND NOT contains(#cs, :name)))",
            )
            .expression_attribute_names("#cs", CHANNELS)
            .expression_attribute_values(":set", set)
            .expression_attribute_values(":name", s(channel.as_str()))
            .expression_attribute_values(":max", n(max as i64))
            .send()
            .await;
        match counted {
            Ok(_) => {}
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                let joined = self.channel_set(id, i64::MIN).await?.unwrap_or_default();
                let member = joined.iter().any(|c| c == channel.as_str());
                return Ok(if member { Joined::Already } else { Joined::Full });
            }
            Err(e) => return Err(sdk_error(e)),
        }
        let mut item = HashMap::from([
            ("pk".to_owned(), conn_pk(id)),
            ("sk".to_owned(), s(&format!("{CHAN_PREFIX}{channel}"))),
            (CHANNEL.to_owned(), s(channel.as_str())),
            ("connection_id".to_owned(), s(id.as_str())),
            ("endpoint".to_owned(), s(&session.endpoint)),
            ("api_id".to_owned(), s(&session.api_id)),
            (TTL_ATTRIBUTE.to_owned(), n(session.expires_at)),
        ]);
        if let Some(metadata) = metadata_attribute(session) {
            item.insert("metadata".to_owned(), metadata);
        }
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match written {
            Ok(_) => Ok(Joined::New),
            // The item was there (a session written before the channel set): now both agree.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(Joined::Already),
            Err(e) => {
                // Give the place back; if that fails too, it expires with the session.
                let _ = self.forget_channel(id, channel).await;
                Err(sdk_error(e))
            }
        }
    }

    async fn admit_message(
        &self,
        id: &ConnectionId,
        now: i64,
        window: i64,
        limit: u32,
    ) -> Result<Admission, StoreError> {
        let seen = now.saturating_mul(1000);
        if limit == 0 {
            // No count to write: a read, and `last_seen` written at most once a minute.
            let Some(mut session) = self.get_session(id, now).await? else {
                return Ok(Admission::NoSession);
            };
            if seen - session.last_seen >= LAST_SEEN_EVERY_MS {
                let touched = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", conn_pk(id))
                    .key("sk", s(SESSION_SK))
                    .update_expression("SET last_seen = :seen")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_values(":seen", n(seen))
                    .send()
                    .await;
                unless_condition_failed(touched)?;
                session.last_seen = seen;
            }
            return Ok(Admission::Admitted(Box::new(session)));
        }
        // One conditional update on the session item: it must exist and be live, and this
        // window's count (an attribute per window; the two before it are dropped) be under the
        // limit. It sets `last_seen` in the same write and returns the session, so no read comes
        // first.
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .update_expression("ADD #w :one SET last_seen = :seen REMOVE #p1, #p2")
            .condition_expression("attribute_exists(pk) AND #exp > :now AND (attribute_not_exists(#w) OR #w < :limit)")
            .expression_attribute_names("#w", format!("{MESSAGES_PREFIX}{window}"))
            .expression_attribute_names("#p1", format!("{MESSAGES_PREFIX}{}", window - 1))
            .expression_attribute_names("#p2", format!("{MESSAGES_PREFIX}{}", window - 2))
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":limit", n(i64::from(limit)))
            .expression_attribute_values(":seen", n(seen))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match counted {
            Ok(out) => Ok(Admission::Admitted(Box::new(session_from(&out.attributes.unwrap_or_default())?))),
            // Refused: over the limit, or no live session. Only this (rare) path reads.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Ok(match self.get_session(id, now).await? {
                    Some(_) => Admission::Limited,
                    None => Admission::NoSession,
                })
            }
            Err(e) => Err(sdk_error(e)),
        }
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
        if units > limit {
            return Ok(false);
        }
        // The same count `admit_message` keeps, raised by `units` only while it stays within the
        // limit (a condition cannot add, so the bound is `limit - units`).
        let charged = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .update_expression("ADD #w :units")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(#w) OR #w <= :most)")
            .expression_attribute_names("#w", format!("{MESSAGES_PREFIX}{window}"))
            .expression_attribute_values(":units", n(i64::from(units)))
            .expression_attribute_values(":most", n(i64::from(limit - units)))
            .send()
            .await;
        match charged {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
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
        let (max, limit) = (limits.max_connections, limits.connects_per_minute);
        let slot = max > 0;
        let id = session.connection_id.as_str();
        let window = now.div_euclid(crate::rate::WINDOW_SECS);
        let counter = format!("{CONNECTS_PREFIX}{window}");
        for _ in 0..CLAIM_ATTEMPTS {
            // The common case: one conditional write to the user item that checks the user's
            // sessions were not closed since the token was issued, counts the connect in this
            // minute's window (dropping the two before) and takes a slot. With both limits off it
            // only checks, keeping the item's expiry (a close's mark must outlive its tokens).
            let mut sets = vec![if slot || limit > 0 { "#exp = :exp" } else { "#exp = if_not_exists(#exp, :exp)" }];
            let mut conditions = vec!["(attribute_not_exists(#closed) OR #closed < :issued)"];
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(slots_key(user)))
                .expression_attribute_names("#closed", CLOSED)
                .expression_attribute_values(":issued", n(issued_ms));
            if slot {
                sets.push("slots.#id = :exp");
                conditions.push("attribute_exists(slots) AND (size(slots) < :max OR attribute_exists(slots.#id))");
                update =
                    update.expression_attribute_names("#id", id).expression_attribute_values(":max", n(max as i64));
            }
            let mut expression = format!("SET {}", sets.join(", "));
            if limit > 0 {
                expression.push_str(" ADD #w :one REMOVE #p1, #p2");
                conditions.push("(attribute_not_exists(#w) OR #w < :limit)");
                update = update
                    .expression_attribute_names("#w", &counter)
                    .expression_attribute_names("#p1", format!("{CONNECTS_PREFIX}{}", window - 1))
                    .expression_attribute_names("#p2", format!("{CONNECTS_PREFIX}{}", window - 2))
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":limit", n(i64::from(limit)));
            }
            let claimed = update
                .update_expression(expression)
                .condition_expression(conditions.join(" AND "))
                .expression_attribute_names("#exp", TTL_ATTRIBUTE)
                .expression_attribute_values(":exp", n(session.expires_at))
                .send()
                .await;
            match claimed {
                Ok(_) => return Ok(Claim::Claimed { slot }),
                Err(e) if e.code() == Some("ConditionalCheckFailedException") => {}
                Err(e) => return Err(sdk_error(e)),
            }
            // Refused: read the user item and see why.
            let item = self.user_item(user).await?;
            if item.as_ref().and_then(|i| get_n(i, CLOSED).ok()).is_some_and(|closed| closed >= issued_ms) {
                return Ok(Claim::Closed);
            }
            let counted = item.as_ref().and_then(|i| get_n(i, &counter).ok()).unwrap_or(0);
            if limit > 0 && counted >= i64::from(limit) {
                return Ok(Claim::RateLimited);
            }
            if !slot {
                continue; // the window turned between the write and the read
            }
            let slots = item.as_ref().and_then(|i| match i.get("slots") {
                Some(AttributeValue::M(slots)) => Some(
                    slots
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_n().ok().and_then(|n| n.parse().ok()).unwrap_or(0)))
                        .collect::<HashMap<String, i64>>(),
                ),
                _ => None,
            });
            let Some(slots) = slots else {
                // No slot map yet: create the item with it, or add it to an item without one,
                // then claim again.
                // A lost race (the item or its map appeared meanwhile) only means claim again.
                match item {
                    None => unless_condition_failed(
                        self.client
                            .put_item()
                            .table_name(&self.table)
                            .set_item(Some(slots_key(user)))
                            .item("slots", AttributeValue::M(HashMap::new()))
                            .item(TTL_ATTRIBUTE, n(session.expires_at))
                            .condition_expression("attribute_not_exists(pk)")
                            .send()
                            .await,
                    )?,
                    Some(_) => unless_condition_failed(
                        self.client
                            .update_item()
                            .table_name(&self.table)
                            .set_key(Some(slots_key(user)))
                            .update_expression("SET slots = :empty")
                            .condition_expression("attribute_not_exists(slots)")
                            .expression_attribute_values(":empty", AttributeValue::M(HashMap::new()))
                            .send()
                            .await,
                    )?,
                }
                continue;
            };
            let expired: Vec<&String> = slots.iter().filter(|(_, exp)| **exp <= now).map(|(k, _)| k).collect();
            if expired.is_empty() {
                if slots.len() < max {
                    continue; // a slot was freed after the write was refused
                }
                return Ok(Claim::Full);
            }
            let names: Vec<String> = (0..expired.len()).map(|i| format!("#e{i}")).collect();
            let mut reclaim =
                self.client.update_item().table_name(&self.table).set_key(Some(slots_key(user))).update_expression(
                    format!(
                        "REMOVE {}",
                        names.iter().map(|name| format!("slots.{name}")).collect::<Vec<_>>().join(", ")
                    ),
                );
            for (name, key) in names.iter().zip(expired) {
                reclaim = reclaim.expression_attribute_names(name, key);
            }
            reclaim.send().await.map_err(sdk_error)?;
        }
        Ok(Claim::Full)
    }

    async fn close_user(&self, user: &str, now_ms: i64, keep_until: i64) -> Result<(), StoreError> {
        // The mark, and the item's expiry pushed out to `keep_until` where it is sooner (the item
        // of a user with no live connection may be about to expire); otherwise the mark alone.
        let extended = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(slots_key(user)))
            .update_expression("SET #closed = :now, #exp = :keep")
            .condition_expression("attribute_not_exists(#exp) OR #exp < :keep")
            .expression_attribute_names("#closed", CLOSED)
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":keep", n(keep_until))
            .send()
            .await;
        match extended {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(slots_key(user)))
                    .update_expression("SET #closed = :now")
                    .expression_attribute_names("#closed", CLOSED)
                    .expression_attribute_values(":now", n(now_ms))
                    .send()
                    .await
                    .map_err(sdk_error)?;
                Ok(())
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn open_session(
        &self,
        session: &Session,
        channel: Option<&ChannelName>,
        holds_slot: bool,
    ) -> Result<(), StoreError> {
        // The session and its connect channel's membership are one item: it carries the
        // channel index's key and projected attributes itself.
        let mut item = session_item(session);
        item.insert(SLOT.to_owned(), AttributeValue::Bool(holds_slot));
        if let Some(channel) = channel {
            item.insert(CHANNEL.to_owned(), s(channel.as_str()));
            item.insert(CHANNELS.to_owned(), AttributeValue::Ss(vec![channel.as_str().to_owned()]));
        }
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(sdk_error)?;
        Ok(())
    }

    async fn leave(&self, id: &ConnectionId, channel: &ChannelName) -> Result<bool, StoreError> {
        // A channel joined after `$connect` has its own item ...
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(&format!("{CHAN_PREFIX}{channel}")))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_error)?;
        if out.attributes.is_some_and(|a| !a.is_empty()) {
            self.forget_channel(id, channel).await?;
            return Ok(true);
        }
        // ... the connect channel is on the session item.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .update_expression("REMOVE #ch DELETE #cs :set")
            .condition_expression("#ch = :name")
            .expression_attribute_names("#ch", CHANNEL)
            .expression_attribute_names("#cs", CHANNELS)
            .expression_attribute_values(":name", s(channel.as_str()))
            .expression_attribute_values(":set", AttributeValue::Ss(vec![channel.as_str().to_owned()]))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn channels_of(&self, id: &ConnectionId, now: i64) -> Result<Vec<ChannelName>, StoreError> {
        // One read of the session's channel set; a session written before the set existed has
        // its memberships listed instead.
        let names = match self.channel_set(id, now).await? {
            Some(names) => names,
            None => self.membership_names(id, now).await?,
        };
        channel_names(names)
    }

    async fn channel_page(
        &self,
        channel: &ChannelName,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        self.index_page(CHANNEL_INDEX, "channel", channel.as_str(), cursor, limit, now).await
    }

    async fn user_page(
        &self,
        user_id: &str,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        self.index_page(USER_INDEX, "user_id", user_id, cursor, limit, now).await
    }

    async fn scan_page(
        &self,
        segment: Segment,
        filter: &SessionFilter,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        // Sessions, or with a channel prefix the memberships and sessions in a matching channel
        // (memberships carry the session's api_id and metadata, so the other conditions apply to
        // them alike).
        let mut conditions = vec!["#exp > :now".to_owned()];
        let mut request = self.client.scan().table_name(&self.table);
        match &filter.channel_prefix {
            None => {
                conditions.push("sk = :session".to_owned());
                request = request.expression_attribute_values(":session", s(SESSION_SK));
            }
            Some(prefix) => {
                // Memberships, and sessions whose connect channel matches.
                conditions.push("(begins_with(sk, :chan) OR (sk = :session AND begins_with(#ch, :prefix)))".to_owned());
                request = request
                    .expression_attribute_values(":chan", s(&format!("{CHAN_PREFIX}{prefix}")))
                    .expression_attribute_values(":session", s(SESSION_SK))
                    .expression_attribute_values(":prefix", s(prefix))
                    .expression_attribute_names("#ch", CHANNEL);
            }
        }
        if let Some(api) = &filter.api_id {
            conditions.push("api_id = :api".to_owned());
            request = request.expression_attribute_values(":api", s(api));
        }
        for (i, (key, value)) in filter.metadata.iter().enumerate() {
            conditions.push(format!("metadata.#m{i} = :m{i}"));
            request = request
                .expression_attribute_names(format!("#m{i}"), key)
                .expression_attribute_values(format!(":m{i}"), s(value));
        }
        let mut request = request
            .filter_expression(conditions.join(" AND "))
            .projection_expression("connection_id, endpoint")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now))
            .limit(page_limit(limit))
            .set_exclusive_start_key(decode_cursor(cursor)?);
        if segment.total > 1 {
            request = request.segment(segment.index as i32).total_segments(segment.total as i32);
        }
        let out = request.send().await.map_err(sdk_error)?;
        let items = out.items.unwrap_or_default().iter().map(recipient_of).collect::<Result<_, _>>()?;
        Ok(Page { items, next: encode_cursor(out.last_evaluated_key)? })
    }

    async fn expired_page(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<ConnectionId>, StoreError> {
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(pk, :conn) AND #exp <= :now")
            .projection_expression("pk")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":conn", s(CONN_PREFIX))
            .expression_attribute_values(":now", n(now))
            .limit(page_limit(limit))
            .set_exclusive_start_key(decode_cursor(cursor)?)
            .send()
            .await
            .map_err(sdk_error)?;
        let mut ids: Vec<ConnectionId> = Vec::new();
        for item in out.items.unwrap_or_default() {
            let id = get_s(&item, "pk").and_then(|pk| pk.strip_prefix(CONN_PREFIX)).unwrap_or_default();
            let id = ConnectionId::new(id).map_err(corrupt)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(Page { items: ids, next: encode_cursor(out.last_evaluated_key)? })
    }
}

#[async_trait]
impl TokenStore for DynamoDbStore {
    async fn put_token(&self, hash: &str, record: &TokenRecord) -> Result<(), StoreError> {
        let mut item = HashMap::from([
            ("pk".to_owned(), s(&format!("{TOKEN_PREFIX}{hash}"))),
            ("sk".to_owned(), s("token")),
            ("token_user".to_owned(), s(&record.identity.user_id)),
            (TTL_ATTRIBUTE.to_owned(), n(record.expires_at)),
            (TOKEN_ISSUED.to_owned(), n(record.issued_at)),
        ]);
        if !record.identity.groups.is_empty() {
            item.insert(
                "token_groups".to_owned(),
                AttributeValue::L(record.identity.groups.iter().map(|g| s(g)).collect()),
            );
        }
        if let Some(channel) = &record.channel {
            item.insert("token_channel".to_owned(), s(channel.as_str()));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn purge_expired_tokens(&self, now: i64, dry_run: bool) -> Result<usize, StoreError> {
        let mut found = 0;
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :token) AND #exp <= :now")
                .projection_expression("pk, sk")
                .expression_attribute_names("#exp", TTL_ATTRIBUTE)
                .expression_attribute_values(":token", s(TOKEN_PREFIX))
                .expression_attribute_values(":now", n(now))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            let keys: Vec<Item> = out.items.unwrap_or_default();
            found += keys.len();
            if !dry_run && !keys.is_empty() {
                self.delete_keys(keys).await?;
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(found);
            }
        }
    }

    async fn take_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&format!("{TOKEN_PREFIX}{hash}")))
            .key("sk", s("token"))
            .condition_expression("attribute_exists(pk)")
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        let item = match result {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => return Ok(None),
            Err(e) => return Err(sdk_error(e)),
        };
        let user_id = get_s(&item, "token_user").ok_or_else(|| StoreError::Corrupt("token without user".into()))?;
        let groups = match item.get("token_groups") {
            Some(AttributeValue::L(list)) => list.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
            _ => Vec::new(),
        };
        let channel = get_s(&item, "token_channel").map(ChannelName::new).transpose().map_err(corrupt)?;
        Ok(Some(TokenRecord {
            identity: Identity { user_id: user_id.to_owned(), groups },
            channel,
            expires_at: get_n(&item, TTL_ATTRIBUTE)?,
            // A token stored before issue times were kept counts as issued at once.
            issued_at: get_n(&item, TOKEN_ISSUED).unwrap_or(0),
        }))
    }
}

#[async_trait]
impl CounterStore for DynamoDbStore {
    async fn increment(&self, key: &str, expires_at: i64) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&format!("rate#{key}")))
            .key("sk", s("rate"))
            .update_expression("ADD #n :one SET #exp = if_not_exists(#exp, :exp)")
            .expression_attribute_names("#n", "n")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":exp", n(expires_at))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk_error)?;
        let attrs = out.attributes.unwrap_or_default();
        get_n(&attrs, "n").map(|v| v.max(0) as u64)
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn conn_pk(id: &ConnectionId) -> AttributeValue {
    s(&format!("{CONN_PREFIX}{id}"))
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("missing number {name}")))
}

/// Runs `query` to its last page, handing each item to `each` in order.
async fn query_all(
    query: QueryFluentBuilder,
    mut each: impl FnMut(Item) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut start = None;
    loop {
        let out = query.clone().set_exclusive_start_key(start).send().await.map_err(sdk_error)?;
        for item in out.items.unwrap_or_default() {
            each(item)?;
        }
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(());
        }
    }
}

/// A map attribute of strings (session metadata, presence info) as metadata; anything else as
/// none.
fn string_map(value: Option<&AttributeValue>) -> Metadata {
    match value {
        Some(AttributeValue::M(map)) => {
            map.iter().filter_map(|(k, v)| v.as_s().ok().map(|v| (k.clone(), v.clone()))).collect()
        }
        _ => Metadata::new(),
    }
}

/// Metadata as a map attribute of strings.
fn string_map_attribute(map: &Metadata) -> AttributeValue {
    AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), s(v))).collect())
}

/// Stored channel names, validated.
fn channel_names(names: Vec<String>) -> Result<Vec<ChannelName>, StoreError> {
    names.into_iter().map(|name| ChannelName::new(name).map_err(corrupt)).collect()
}

fn page_limit(limit: usize) -> i32 {
    limit.clamp(1, 1000) as i32
}

/// The key of a user's slot item.
fn slots_key(user: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(&format!("{USER_PREFIX}{user}"))), ("sk".to_owned(), s(SLOTS_SK))])
}

/// A conditional write's result, where a failed condition means there was nothing to do.
fn unless_condition_failed<T, E, R>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
) -> Result<(), StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
        Err(e) => Err(sdk_error(e)),
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn sdk_error<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.code() {
        Some("ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded") => {
            StoreError::Throttled
        }
        _ => StoreError::Unavailable(DisplayErrorContext(&e).to_string()),
    }
}

fn session_item(session: &Session) -> Item {
    let mut item = HashMap::from([
        ("pk".to_owned(), conn_pk(&session.connection_id)),
        ("sk".to_owned(), s(SESSION_SK)),
        ("connection_id".to_owned(), s(session.connection_id.as_str())),
        ("api_id".to_owned(), s(&session.api_id)),
        ("stage".to_owned(), s(&session.stage)),
        ("endpoint".to_owned(), s(&session.endpoint)),
        ("source_ip".to_owned(), s(&session.source_ip)),
        ("connected_at".to_owned(), n(session.connected_at)),
        ("last_seen".to_owned(), n(session.last_seen)),
        (TTL_ATTRIBUTE.to_owned(), n(session.expires_at)),
    ]);
    if let Some(identity) = &session.identity {
        item.insert("user_id".to_owned(), s(&identity.user_id));
        if !identity.groups.is_empty() {
            item.insert("groups".to_owned(), AttributeValue::L(identity.groups.iter().map(|g| s(g)).collect()));
        }
    }
    if let Some(ua) = &session.user_agent {
        item.insert("user_agent".to_owned(), s(ua));
    }
    if let Some(bound) = &session.bound_channel {
        item.insert("bound_channel".to_owned(), s(bound.as_str()));
    }
    if let Some(metadata) = metadata_attribute(session) {
        item.insert("metadata".to_owned(), metadata);
    }
    item
}

/// The session's metadata as a map attribute (none when empty). Memberships carry it too, so a
/// filtered scan can match on memberships alone.
fn metadata_attribute(session: &Session) -> Option<AttributeValue> {
    (!session.metadata.is_empty()).then(|| string_map_attribute(&session.metadata))
}

fn session_from(item: &Item) -> Result<Session, StoreError> {
    let text =
        |name: &str| get_s(item, name).map(str::to_owned).ok_or_else(|| StoreError::Corrupt(format!("missing {name}")));
    let identity = get_s(item, "user_id").map(|user| Identity {
        user_id: user.to_owned(),
        groups: match item.get("groups") {
            Some(AttributeValue::L(list)) => list.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
            _ => Vec::new(),
        },
    });
    let metadata = string_map(item.get("metadata"));
    Ok(Session {
        connection_id: ConnectionId::new(text("connection_id")?).map_err(corrupt)?,
        identity,
        api_id: text("api_id")?,
        stage: text("stage")?,
        endpoint: text("endpoint")?,
        source_ip: text("source_ip")?,
        user_agent: get_s(item, "user_agent").map(str::to_owned),
        connected_at: get_n(item, "connected_at")?,
        last_seen: get_n(item, "last_seen")?,
        expires_at: get_n(item, TTL_ATTRIBUTE)?,
        metadata,
        bound_channel: get_s(item, "bound_channel").map(ChannelName::new).transpose().map_err(corrupt)?,
    })
}

fn recipient_of(item: &Item) -> Result<Recipient, StoreError> {
    let id = get_s(item, "connection_id").ok_or_else(|| StoreError::Corrupt("missing connection_id".into()))?;
    let endpoint = get_s(item, "endpoint").ok_or_else(|| StoreError::Corrupt("missing endpoint".into()))?;
    Ok(Recipient { connection_id: ConnectionId::new(id).map_err(corrupt)?, endpoint: endpoint.to_owned() })
}

/// Key attributes are all strings, so a cursor is a JSON object of strings.
fn encode_cursor(key: Option<Item>) -> Result<Option<Cursor>, StoreError> {
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Ok(None);
    };
    let map: serde_json::Map<String, serde_json::Value> = key
        .into_iter()
        .map(|(k, v)| match v {
            AttributeValue::S(s) => Ok((k, serde_json::Value::String(s))),
            _ => Err(StoreError::Corrupt(format!("non-string key attribute {k}"))),
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(Cursor(serde_json::Value::Object(map).to_string())))
}

fn decode_cursor(cursor: Option<&Cursor>) -> Result<Option<Item>, StoreError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let map: HashMap<String, String> = serde_json::from_str(&cursor.0).map_err(|_| StoreError::BadCursor)?;
    Ok(Some(map.into_iter().map(|(k, v)| (k, AttributeValue::S(v))).collect()))
}

/// Where a channel's stream lives: `hist#<channel>`, its head item and one item per kept message.
fn stream_pk(channel: &ChannelName) -> AttributeValue {
    s(&format!("{HISTORY_PREFIX}{channel}"))
}

/// A kept message's sort key: zero-padded, so keys sort as numbers.
fn entry_sk(seq: u64) -> String {
    format!("{ENTRY_PREFIX}{seq:020}")
}

#[async_trait]
impl HistoryStore for DynamoDbStore {
    async fn append(
        &self,
        channel: &ChannelName,
        payload: &str,
        rule: HistoryRule,
        now_ms: i64,
    ) -> Result<Position, StoreError> {
        // The next number: one atomic ADD on the stream's head (created with its epoch by the
        // first send), then the message under it.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", stream_pk(channel))
            .key("sk", s(HEAD_SK))
            .update_expression("ADD #seq :one SET #epoch = if_not_exists(#epoch, :epoch), #exp = :exp, head_at = :at")
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_names("#epoch", "epoch")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":epoch", s(&crate::history::new_epoch()))
            .expression_attribute_values(":exp", n(now_ms.div_euclid(1000) + STREAM_TTL_SECS))
            .expression_attribute_values(":at", n(now_ms))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(sdk_error)?;
        let head = out.attributes.unwrap_or_default();
        let seq = get_n(&head, "seq")?.max(0) as u64;
        let epoch = get_s(&head, "epoch").ok_or_else(|| StoreError::Corrupt("stream without epoch".into()))?.to_owned();
        let keep_until = now_ms.saturating_add(rule.window.as_millis() as i64);
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", stream_pk(channel))
            .item("sk", s(&entry_sk(seq)))
            .item("payload", s(payload))
            .item("keep_until", n(keep_until))
            .item(TTL_ATTRIBUTE, n(keep_until.div_euclid(1000) + 1))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(Position { seq, epoch })
    }

    async fn recent(
        &self,
        channel: &ChannelName,
        after: u64,
        rule: HistoryRule,
        now_ms: i64,
    ) -> Result<Recent, StoreError> {
        // The head and the newest kept messages above `after`, in one round trip.
        let head = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", stream_pk(channel))
            .key("sk", s(HEAD_SK))
            .consistent_read(true)
            .send();
        let entries = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .filter_expression("keep_until > :now")
            .expression_attribute_values(":pk", stream_pk(channel))
            .expression_attribute_values(":from", s(&entry_sk(after.saturating_add(1))))
            .expression_attribute_values(":to", s(&entry_sk(u64::MAX)))
            .expression_attribute_values(":now", n(now_ms))
            .scan_index_forward(false)
            .limit(rule.size.max(1) as i32)
            .consistent_read(true)
            .send();
        let (head, entries) = futures::join!(head, entries);
        let Some(head) = head.map_err(sdk_error)?.item.filter(|i| !i.is_empty()) else {
            return Ok(Recent::default());
        };
        let mut kept = Vec::new();
        for item in entries.map_err(sdk_error)?.items.unwrap_or_default() {
            let seq = get_s(&item, "sk")
                .and_then(|sk| sk.strip_prefix(ENTRY_PREFIX))
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| StoreError::Corrupt("kept message without a number".into()))?;
            let payload =
                get_s(&item, "payload").ok_or_else(|| StoreError::Corrupt("kept message without payload".into()))?;
            kept.push(Entry { seq, payload: payload.to_owned() });
        }
        kept.reverse();
        Ok(Recent {
            epoch: get_s(&head, "epoch").map(str::to_owned),
            head: get_n(&head, "seq")?.max(0) as u64,
            head_at: get_n(&head, "head_at").unwrap_or(0),
            entries: kept,
        })
    }
}
