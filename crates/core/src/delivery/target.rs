//! Who a message is for, and the sender function's request format.
//!
//! ```json
//! {"target": {"channel": "lobby"}, "message": {"type": "toast", "level": "info", "message": "hi"},
//!  "exclude": "abc="}
//! ```
//! `target` is the string `"all"` or an object with exactly one key: `connection`,
//! `connections`, `user`, `channel`, `channels`, `api` (every session of one API) or `filter`
//! (`{"metadata": {"plan": "pro"}, "channel_prefix": "team-", "api_id": "abc123"}`, every
//! condition given must hold). `exclude` is a connection id or a list of them.
//! This format is public and versioned: requests may carry `"version": 1`.

use serde::{Deserialize, Deserializer, Serialize};

use crate::protocol::Outbound;
use crate::session::{ChannelName, ConnectionId};
use crate::store::SessionFilter;

/// The version of the sender's request format this crate speaks.
pub const SEND_CONTRACT_VERSION: u32 = 1;

/// Who a message is delivered to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Target {
    /// One connection.
    Connection(ConnectionId),
    /// Several connections.
    Connections(Vec<ConnectionId>),
    /// Every connection of one user (all their tabs and devices).
    User(String),
    /// Every member of a channel.
    Channel(ChannelName),
    /// Every member of any of these channels, each connection once.
    Channels(Vec<ChannelName>),
    /// Every live session.
    All,
    /// Every live session of one WebSocket API (when several APIs share a table).
    Api(String),
    /// Every live session that passes a filter (metadata, API, channel prefix).
    Filter(SessionFilter),
}

impl Target {
    /// The target's kind as written in JSON (`connection`, `channel`, `all`, …), e.g. a metrics
    /// dimension.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connection(_) => "connection",
            Self::Connections(_) => "connections",
            Self::User(_) => "user",
            Self::Channel(_) => "channel",
            Self::Channels(_) => "channels",
            Self::All => "all",
            Self::Api(_) => "api",
            Self::Filter(_) => "filter",
        }
    }
}

/// One request to the sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Contract version; absent means the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Who to deliver to (and, with `close`, whose connections to close).
    pub target: Target,
    /// What to deliver. Required unless `close` is set; with `close`, delivered first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Outbound>,
    /// Connections to leave out (e.g. the one whose action caused the broadcast).
    #[serde(default, deserialize_with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "one_or_many_ids")]
    pub exclude: Vec<ConnectionId>,
    /// Close every targeted connection (after delivering `message`, if any) and remove its
    /// session, as a logout, a password change or a ban needs; for a `user` target, tokens
    /// issued to the user before the close are refused at `$connect`. See [`Sender::close`].
    ///
    /// [`Sender::close`]: crate::delivery::Sender::close
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub close: bool,
}

impl SendRequest {
    /// A request in the current contract version, excluding no one.
    pub fn new(target: Target, message: Outbound) -> Self {
        Self { version: Some(SEND_CONTRACT_VERSION), target, message: Some(message), exclude: Vec::new(), close: false }
    }

    /// A request that closes every connection `target` names, with no message.
    pub fn close(target: Target) -> Self {
        Self { version: Some(SEND_CONTRACT_VERSION), target, message: None, exclude: Vec::new(), close: true }
    }

    /// Closes the targeted connections after delivering the message.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// Leaves these connections out.
    pub fn excluding(mut self, exclude: impl IntoIterator<Item = ConnectionId>) -> Self {
        self.exclude.extend(exclude);
        self
    }
}

/// A question to the sender instead of a send: what code that may invoke the sender (a backend
/// Lambda) may read of a channel, as a browser would with the `history` and `presence` actions.
///
/// ```json
/// {"version": 1, "query": {"history": {"channel": "room-1", "limit": 20}}}
/// {"query": {"presence": {"channel": "room-1"}}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SenderQuery {
    /// Contract version; absent means the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// What to read.
    pub query: Query,
}

/// What a [`SenderQuery`] reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Query {
    /// The latest kept messages of a channel with history, oldest first: answered with
    /// `{channel, epoch, seq, messages, more}` (at most 126 KiB of messages; `more` when older
    /// ones were left out).
    History {
        /// The channel.
        channel: ChannelName,
        /// At most this many (the channel's rule may keep fewer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// Only messages numbered below this (the next page back).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
    },
    /// Who is in a channel with presence: answered with `{channel, users, connections,
    /// anonymous, members?}`.
    Presence {
        /// The channel.
        channel: ChannelName,
    },
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ConnectionId>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(ConnectionId),
        Many(Vec<ConnectionId>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(id)) => vec![id],
        Some(OneOrMany::Many(ids)) => ids,
    })
}

/// Schema of `exclude`: one connection id or a list of them.
fn one_or_many_ids(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let id = generator.subschema_for::<ConnectionId>();
    schemars::json_schema!({ "anyOf": [id, { "type": "array", "items": id }] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_parse_as_documented() {
        let cases = [
            (json!("all"), Target::All),
            (json!({"connection":"abc="}), Target::Connection(ConnectionId::new("abc=").expect("id"))),
            (json!({"user":"u1"}), Target::User("u1".into())),
            (json!({"api":"abc123"}), Target::Api("abc123".into())),
            (
                json!({"filter":{"metadata":{"plan":"pro"},"channel_prefix":"team-"}}),
                Target::Filter(SessionFilter {
                    metadata: [("plan".to_owned(), "pro".to_owned())].into(),
                    channel_prefix: Some("team-".into()),
                    api_id: None,
                }),
            ),
            (json!({"channel":"lobby"}), Target::Channel(ChannelName::new("lobby").expect("ch"))),
            (
                json!({"channels":["a","b"]}),
                Target::Channels(vec![ChannelName::new("a").expect("ch"), ChannelName::new("b").expect("ch")]),
            ),
        ];
        for (json, target) in cases {
            assert_eq!(serde_json::from_value::<Target>(json.clone()).expect("parses"), target);
            assert_eq!(serde_json::to_value(&target).expect("serializes"), json);
        }
        for bad in [
            json!("everyone"),
            json!({"channel":"bad name"}),
            json!({"connection":"x/y"}),
            json!({"user":"u","channel":"c"}),
            json!({"filter":{"plan":"pro"}}),
            json!({}),
            json!(5),
        ] {
            assert!(serde_json::from_value::<Target>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_accept_one_or_many_excludes() {
        let msg = json!({"type":"system","level":"info","message":"m"});
        let one: SendRequest =
            serde_json::from_value(json!({"target":"all","message":msg,"exclude":"abc="})).expect("one");
        assert_eq!(one.exclude.len(), 1);
        let many: SendRequest =
            serde_json::from_value(json!({"target":"all","message":msg,"exclude":["a","b"],"version":1}))
                .expect("many");
        assert_eq!((many.exclude.len(), many.version), (2, Some(1)));
        let none: SendRequest = serde_json::from_value(json!({"target":"all","message":msg})).expect("none");
        assert!(none.exclude.is_empty());
        assert!(serde_json::from_value::<SendRequest>(json!({"target":"all","message":msg,"extra":1})).is_err());
    }
}
