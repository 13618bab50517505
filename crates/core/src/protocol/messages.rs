//! The built-in outbound message types, one struct each; [`super::Outbound`] wraps them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ErrorCode;

/// Severity of a toast or system message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Something worked.
    Success,
    /// Neutral information.
    Info,
    /// Something needs attention.
    Warning,
    /// Something failed.
    Error,
}

/// An id as its sender wrote it: an integer (`"task_id": 123`, a database key) or a string
/// (`"task_id": "export-7"`). It is delivered in the same form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Id {
    /// An integer id.
    Integer(i64),
    /// A string id.
    Text(String),
}

impl From<i64> for Id {
    fn from(id: i64) -> Self {
        Self::Integer(id)
    }
}

impl From<&str> for Id {
    fn from(id: &str) -> Self {
        Self::Text(id.to_owned())
    }
}

impl From<String> for Id {
    fn from(id: String) -> Self {
        Self::Text(id)
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Integer(id) => write!(f, "{id}"),
            Self::Text(id) => f.write_str(id),
        }
    }
}

/// Fields a message carries beyond its typed ones: kept as sent and delivered unchanged.
pub type Extra = Map<String, Value>;

/// A short message the page shows as a toast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Toast {
    /// Severity.
    pub level: Level,
    /// The text.
    pub message: String,
    /// Optional heading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// How long to show it; the client's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A link the toast offers (render only `http(s)` and relative URLs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_url: Option<String>,
    /// Application data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Any other field, delivered as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Toast {
    /// A toast with only a level and a text.
    pub fn new(level: Level, message: impl Into<String>) -> Self {
        Self {
            level,
            message: message.into(),
            title: None,
            timeout_ms: None,
            action_url: None,
            metadata: None,
            extra: Extra::new(),
        }
    }
}

/// Progress of a long-running task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskProgress {
    /// The task's id (an integer or a string).
    pub task_id: Id,
    /// Percent done, an integer 0 to 100.
    #[schemars(range(max = 100))]
    pub percent: u8,
    /// What the task is doing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Set when the task has finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
    /// Any other field, delivered as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

impl TaskProgress {
    /// Progress of `task_id` at `percent`.
    pub fn new(task_id: impl Into<Id>, percent: u8) -> Self {
        Self { task_id: task_id.into(), percent, message: None, done: None, extra: Extra::new() }
    }
}

/// A resource changed: the page should refetch it (a lightweight invalidation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResourceUpdated {
    /// The kind of resource (`"order"`).
    pub resource: String,
    /// Its id (an integer or a string).
    pub id: Id,
    /// Where to fetch the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_url: Option<String>,
    /// Any other field, delivered as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ResourceUpdated {
    /// `resource` `id` changed.
    pub fn new(resource: impl Into<String>, id: impl Into<Id>) -> Self {
        Self { resource: resource.into(), id: id.into(), fetch_url: None, extra: Extra::new() }
    }
}

/// A notification for the user's inbox or bell. It needs a `message` or a `title` (or both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Notification {
    /// The text (`{"type":"notification","message":"You have a new notification."}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Heading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Body text under the heading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A link to open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Application data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Any other field, delivered as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Notification {
    /// A notification with only a text.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: Some(message.into()), title: None, body: None, url: None, metadata: None, extra: Extra::new() }
    }
}

/// A chat line. `channel` (or `room`, as the reference package's chat example names it) says where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChatMessage {
    /// Who wrote it.
    pub username: String,
    /// What they wrote.
    pub message: String,
    /// The channel it was said in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The room it was said in (the reference package's name for a channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Any other field, delivered as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatMessage {
    /// `username` said `message` in `channel`.
    pub fn new(username: impl Into<String>, message: impl Into<String>, channel: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            message: message.into(),
            channel: Some(channel.into()),
            room: None,
            extra: Extra::new(),
        }
    }
}

/// A message from the system (maintenance, announcements).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SystemMessage {
    /// Severity.
    pub level: Level,
    /// The text.
    pub message: String,
    /// Any other field, delivered as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

impl SystemMessage {
    /// A system message.
    pub fn new(level: Level, message: impl Into<String>) -> Self {
        Self { level, message: message.into(), extra: Extra::new() }
    }
}

/// The answer to one inbound message, correlated by `ref`; or a plain reply to the current
/// connection (`{"type":"reply","message":"Received."}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Reply {
    /// The action this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The client's `ref`, echoed.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// A text for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Any other field, delivered as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Reply {
    /// The answer to `action` (with the client's `ref`) carrying `data`.
    pub fn to(action: impl Into<String>, reference: Option<String>, data: Value) -> Self {
        Self { action: Some(action.into()), reference, data: Some(data), message: None, extra: Extra::new() }
    }
}

/// The answer to `ping`: the connection's own id, which a page passes to HTTP endpoints so the
/// broadcast its request causes can leave it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pong {
    /// The connection's id.
    pub connection_id: String,
    /// The client's `ref`, echoed.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Any other field, delivered as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A user's first connection joined a channel with presence (sent to its other members).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberJoined {
    /// The channel.
    pub channel: String,
    /// Who joined: the user, its connection count there and the public part of its metadata.
    pub member: crate::presence::Member,
    /// Any other field, delivered as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A user's last connection left a channel with presence: unsubscribe, `$disconnect`, a 410 a
/// send found, or clean-up (sent to its remaining members).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberLeft {
    /// The channel.
    pub channel: String,
    /// Who left.
    pub user_id: String,
    /// Any other field, delivered as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Several of a channel's kept messages in one frame, oldest first, as a resume replays them:
/// the client handles each as if it had arrived alone. A replay packs what fits in 32 KiB (one
/// billed unit of API Gateway) into one frame, so catching up on 100 small messages is one post,
/// not 100; a message too large to share a frame is sent alone, as itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Replay {
    /// The channel.
    pub channel: String,
    /// The messages, oldest first, each with its `channel`, `seq` and `epoch`.
    pub messages: Vec<Value>,
    /// Any other field, delivered as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A typed error sent to a client in a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorMessage {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation (never internal details).
    pub message: String,
    /// The request field that failed, as a path (`items[0].qty`), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The client's `ref`, echoed.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Any other field, delivered as sent.
    #[serde(flatten)]
    pub extra: Extra,
}
