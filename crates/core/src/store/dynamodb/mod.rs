//! The DynamoDB store: one table, two sparse GSIs, TTL on `expires_at`.
//!
//! | item       | `pk`               | `sk`             | other attributes                                    |
//! |------------|--------------------|------------------|-----------------------------------------------------|
//! | session    | `conn#<id>`        | `session`        | `user_id`, endpoint, identity, times, metadata, `channel` (the connect channel), `channels` (all), `slot`, `msgs_<minute>` |
//! | membership | `conn#<id>`        | `chan#<channel>` | `channel`, endpoint, `expires_at` (channels joined after `$connect`) |
//! | token      | `token#<sha256>`   | `token`          | token_user, token_groups, token_channel, expiry     |
//! | counter    | `rate#<scope>#...` | `rate`           | `n`, `expires_at`                                   |
//! | user       | `user#<user id>`   | `conns`          | `slots` (connection id → expiry), `connects_<minute>`, `closed_at` (ms), `expires_at` |
//! | stream head | `hist#<channel>`  | `head`           | `seq` (the last number given), `epoch`, `head_at`   |
//! | kept message | `hist#<channel>` | `m#<seq>`        | `payload`, `keep_until` (ms), `expires_at`          |
//! | presence   | `pres#<channel>`   | `u!`, `u#<user>`, `a#<id>` | the counts; a user's connections; an anonymous connection |
//!
//! One module per concern: `sessions` (sessions, memberships, slots), `tokens` (tokens and
//! counters), `history` (channel streams), `presence`; this one holds the table (`create_table`)
//! and the item codec they share.
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

use super::history::{Entry, HistoryRule, HistoryStore, Position, Recent};
use super::{
    Admission, Claim, CounterStore, Cursor, Joined, LAST_SEEN_EVERY_MS, Page, Removed, Segment, SessionFilter,
    SessionStore, StoreError, TokenRecord, TokenStore, UserLimits,
};
use crate::session::{ChannelName, ConnectionId, Identity, Metadata, Recipient, Session};

mod history;
mod presence;
mod sessions;
mod tokens;

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
