//! The wire protocol: what browsers send (a flat JSON envelope routed by `action`) and what the
//! server pushes (flat JSON messages discriminated by `type`).
//!
//! Inbound example: `{"action":"chat","message":"hi","ref":"c1"}`.
//! Outbound example: `{"type":"toast","level":"success","message":"Saved"}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// API Gateway's limit for one WebSocket message and for one Management API post: 128 KiB.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// How many bytes of listed items (kept messages, presence members) one answer carries at most:
/// a message's 128 KiB less room for the envelope (`type`, `action`, the other fields).
pub const ANSWER_BYTES: usize = MAX_MESSAGE_BYTES - 2048;

/// How deep inbound JSON may nest before it is refused (guards the parser's stack).
pub const MAX_JSON_DEPTH: usize = 32;

/// A machine-readable error code, sent in [`Outbound::Error`] messages and sender errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The body is not JSON, or is nested too deeply.
    BadJson,
    /// The JSON is not an object, lacks `action`, or a field has the wrong type.
    BadRequest,
    /// No route handles this `action` (or `handler`).
    UnknownAction,
    /// The message is larger than 128 KiB.
    TooLarge,
    /// A channel name breaks the channel rule.
    BadChannel,
    /// The request carries no identity and needs one (the token issuer).
    Unauthorized,
    /// The identity may not do this (e.g. join that channel).
    Forbidden,
    /// Too many requests; retry later.
    RateLimited,
    /// The connection has no stored session (it never connected, or it expired).
    NotConnected,
    /// The target named no live connection.
    UnknownConnection,
    /// The server failed; details are in its logs, not in the message.
    Internal,
}

impl ErrorCode {
    /// The code as its wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadRequest => "bad_request",
            Self::UnknownAction => "unknown_action",
            Self::TooLarge => "too_large",
            Self::BadChannel => "bad_channel",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::NotConnected => "not_connected",
            Self::UnknownConnection => "unknown_connection",
            Self::Internal => "internal",
        }
    }
}

/// The one error shape of every JSON answer outside a session: the token issuer's refusals, the
/// sender's, and the local gateway's admin and guard answers. `{"error":{"code":"forbidden","message":"origin not allowed"}}`.
/// (In a session, errors are [`Outbound::Error`] messages.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorEnvelope {
    /// What went wrong.
    pub error: ErrorBody,
}

/// The body of an [`ErrorEnvelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation (never internal details).
    pub message: String,
}

impl ErrorEnvelope {
    /// An envelope with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { error: ErrorBody { code, message: message.into() } }
    }

    /// The envelope as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "error": { "code": self.error.code, "message": self.error.message } })
    }
}

/// Why an inbound frame could not be read as an [`Inbound`] envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboundError {
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("message is {0} bytes; the limit is 131072")]
    TooLarge(usize),
    /// Not JSON (or nested deeper than [`MAX_JSON_DEPTH`]).
    #[error("message is not valid JSON: {0}")]
    BadJson(String),
    /// JSON, but not an object.
    #[error("message must be a JSON object")]
    NotObject,
    /// No string `action` field (and no `handler` to route by instead).
    #[error("message must have a string \"action\" (or \"handler\") field")]
    MissingAction,
    /// A reserved field (`handler`, `ref`) has the wrong type.
    #[error("field \"{0}\" must be a string")]
    FieldType(&'static str),
}

impl InboundError {
    /// The error code sent back to the client.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge(_) => ErrorCode::TooLarge,
            Self::BadJson(_) => ErrorCode::BadJson,
            Self::NotObject | Self::MissingAction | Self::FieldType(_) => ErrorCode::BadRequest,
        }
    }
}

/// An inbound message: the route (`action`, or `handler` when there is no `action`), an optional
/// sub-handler, an optional correlation `ref`, and every other field as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Inbound {
    /// The route key, as API Gateway's `$request.body.action` selects it.
    pub action: String,
    /// Optional sub-handler inside the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Optional correlation id, echoed on the reply or error this message causes.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// All other fields.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Inbound {
    /// Parses a text frame. Never panics; every failure is a typed [`InboundError`].
    pub fn parse(body: &str) -> Result<Self, InboundError> {
        Self::parse_for_route(body, None)
    }

    /// Parses a frame API Gateway routed to `route_key`. With no `action` and no `handler` in
    /// the body (a selection expression such as `$request.body.message.action` or
    /// `${request.body.service}/${request.body.action}` picked the route), the route key is the
    /// action; `$default` never is.
    pub fn parse_for_route(body: &str, route_key: Option<&str>) -> Result<Self, InboundError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(InboundError::TooLarge(body.len()));
        }
        if json_depth_exceeds(body, MAX_JSON_DEPTH) {
            return Err(InboundError::BadJson(format!("nested deeper than {MAX_JSON_DEPTH} levels")));
        }
        let value: Value = serde_json::from_str(body).map_err(|e| InboundError::BadJson(e.to_string()))?;
        let Value::Object(mut fields) = value else {
            return Err(InboundError::NotObject);
        };
        let action = match fields.remove("action") {
            Some(Value::String(a)) if !a.is_empty() => Some(a),
            None => None,
            _ => return Err(InboundError::MissingAction),
        };
        let mut handler = take_optional_string(&mut fields, "handler")?;
        let reference = take_optional_string(&mut fields, "ref")?;
        // With no `action` (API Gateway sent it to `$default`), `handler` names the route, as the
        // reference package's views pick a method by `handler` or `action`.
        let action = match action {
            Some(action) => action,
            None => match handler.take().filter(|h| !h.is_empty()) {
                Some(handler) => handler,
                None => route_key
                    .filter(|k| !k.is_empty() && !k.starts_with('$'))
                    .map(str::to_owned)
                    .ok_or(InboundError::MissingAction)?,
            },
        };
        Ok(Self { action, handler, reference, fields })
    }

    /// A string field, if present and a string.
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }
}

fn take_optional_string(fields: &mut Map<String, Value>, name: &'static str) -> Result<Option<String>, InboundError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(InboundError::FieldType(name)),
    }
}

/// Whether `[`/`{` nesting in `body` exceeds `limit`, ignoring brackets inside strings.
fn json_depth_exceeds(body: &str, limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in body.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

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

/// Every message the server pushes, discriminated by `type`.
///
/// Parsing ([`Outbound::from_object`], and `Deserialize`) picks the variant by `type`: a built-in
/// type is checked field by field and a mistake names the type and the field
/// (`task_progress: "percent" must be an integer 0-100`); any other `type` is a custom message.
/// Fields beyond a built-in type's own are kept in its `extra` and delivered unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outbound {
    /// `{"type":"toast",...}`
    Toast(Toast),
    /// `{"type":"task_progress",...}`
    TaskProgress(TaskProgress),
    /// `{"type":"resource_updated",...}`
    ResourceUpdated(ResourceUpdated),
    /// `{"type":"notification",...}`
    Notification(Notification),
    /// `{"type":"chat_message",...}`
    ChatMessage(ChatMessage),
    /// `{"type":"system",...}`
    System(SystemMessage),
    /// `{"type":"reply",...}`
    Reply(Reply),
    /// `{"type":"pong",...}`
    Pong(Pong),
    /// `{"type":"error",...}`
    Error(ErrorMessage),
    /// `{"type":"member_joined",...}`
    MemberJoined(MemberJoined),
    /// `{"type":"member_left",...}`
    MemberLeft(MemberLeft),
    /// `{"type":"replay",...}`
    Replay(Replay),
    /// Any other JSON object carrying its own string `type`; see [`Outbound::custom`].
    #[serde(untagged)]
    #[schemars(schema_with = "crate::schema::custom_message")]
    Custom(Map<String, Value>),
}

/// The `type` values the typed variants use; a custom message may not reuse them.
pub const BUILTIN_TYPES: [&str; 12] = [
    "toast",
    "task_progress",
    "resource_updated",
    "notification",
    "chat_message",
    "system",
    "reply",
    "pong",
    "error",
    "member_joined",
    "member_left",
    "replay",
];

/// What a typed field accepts, for the field-by-field check and its error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Text,
    Level,
    Percent,
    Id,
    Count,
    Flag,
    Code,
    Member,
    Messages,
    Any,
}

impl Expect {
    fn accepts(self, value: &Value) -> bool {
        match self {
            Self::Text => value.is_string(),
            Self::Level => value.as_str().is_some_and(|l| matches!(l, "success" | "info" | "warning" | "error")),
            Self::Percent => value.as_u64().is_some_and(|p| p <= 100),
            Self::Id => value.is_string() || value.is_i64(),
            Self::Count => value.is_u64(),
            Self::Flag => value.is_boolean(),
            Self::Code => serde_json::from_value::<ErrorCode>(value.clone()).is_ok(),
            Self::Member => serde_json::from_value::<crate::presence::Member>(value.clone()).is_ok(),
            Self::Messages => value.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
            Self::Any => true,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Text => "a string",
            Self::Level => "one of success, info, warning, error",
            Self::Percent => "an integer 0-100",
            Self::Id => "a string or an integer",
            Self::Count => "a non-negative integer",
            Self::Flag => "true or false",
            Self::Code => "an error code (bad_request, forbidden, internal, ...)",
            Self::Member => "a member: {user_id, connections, info}",
            Self::Messages => "an array of message objects",
            Self::Any => "any JSON value",
        }
    }
}

/// A built-in type's typed fields: name, required, what it accepts.
type FieldSpec = (&'static str, bool, Expect);

fn fields_of(message_type: &str) -> Option<&'static [FieldSpec]> {
    use Expect::*;
    Some(match message_type {
        "toast" => &[
            ("level", true, Level),
            ("message", true, Text),
            ("title", false, Text),
            ("timeout_ms", false, Count),
            ("action_url", false, Text),
            ("metadata", false, Any),
        ],
        "task_progress" => {
            &[("task_id", true, Id), ("percent", true, Percent), ("message", false, Text), ("done", false, Flag)]
        }
        "resource_updated" => &[("resource", true, Text), ("id", true, Id), ("fetch_url", false, Text)],
        "notification" => &[
            ("message", false, Text),
            ("title", false, Text),
            ("body", false, Text),
            ("url", false, Text),
            ("metadata", false, Any),
        ],
        "chat_message" => {
            &[("username", true, Text), ("message", true, Text), ("channel", false, Text), ("room", false, Text)]
        }
        "system" => &[("level", true, Level), ("message", true, Text)],
        "reply" => &[("action", false, Text), ("ref", false, Text), ("data", false, Any), ("message", false, Text)],
        "pong" => &[("connection_id", true, Text), ("ref", false, Text)],
        "error" => &[("code", true, Code), ("message", true, Text), ("field", false, Text), ("ref", false, Text)],
        "member_joined" => &[("channel", true, Text), ("member", true, Member)],
        "member_left" => &[("channel", true, Text), ("user_id", true, Text)],
        "replay" => &[("channel", true, Text), ("messages", true, Messages)],
        _ => return None,
    })
}

/// Checks a built-in message's fields one by one, naming the first that is wrong.
fn check_fields(message_type: &str, spec: &[FieldSpec], object: &Map<String, Value>) -> Result<(), OutboundError> {
    for &(name, required, expect) in spec {
        let problem = match object.get(name) {
            None | Some(Value::Null) if required => format!("is required: {}", expect.describe()),
            None | Some(Value::Null) => continue,
            Some(value) if expect.accepts(value) => continue,
            Some(_) => format!("must be {}", expect.describe()),
        };
        return Err(OutboundError::Field(format!("{message_type}: \"{name}\" {problem}")));
    }
    if message_type == "notification"
        && !["message", "title"].iter().any(|f| object.get(*f).is_some_and(|v| !v.is_null()))
    {
        return Err(notification_without_text());
    }
    Ok(())
}

/// A notification needs a `message` or a `title`; the Rust type and the field check share this.
fn notification_without_text() -> OutboundError {
    OutboundError::Field("notification: needs \"message\" or \"title\" (a string)".into())
}

/// Why an outbound message was refused before sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// The message is not an object with a non-empty string `type`.
    #[error("a message must be a JSON object with a non-empty string \"type\"")]
    MissingType,
    /// [`Outbound::Custom`] was given a built-in `type` (or none).
    #[error("a custom message needs a string \"type\" that is not one of the built-in types")]
    CustomType,
    /// A built-in message's field is missing or of the wrong kind; the text names the type and
    /// the field (`task_progress: "percent" must be an integer 0-100`).
    #[error("{0}")]
    Field(String),
    /// The serialized message is over 128 KiB.
    #[error("message is {0} bytes serialized; the limit is 131072")]
    TooLarge(usize),
    /// The message could not be serialized.
    #[error("{0}")]
    Invalid(&'static str),
}

/// An application's own outbound message type, pushed with a constant `type`:
///
/// ```
/// use lambda_ws::protocol::{Outbound, OutboundMessage};
///
/// #[derive(serde::Serialize)]
/// struct InvoicePaid {
///     invoice: String,
///     amount_cents: u64,
/// }
///
/// impl OutboundMessage for InvoicePaid {
///     const TYPE: &'static str = "invoice_paid";
/// }
///
/// let message = Outbound::message(&InvoicePaid { invoice: "inv-7".into(), amount_cents: 1200 })?;
/// assert_eq!(
///     serde_json::to_value(&message)?,
///     serde_json::json!({"type": "invoice_paid", "invoice": "inv-7", "amount_cents": 1200})
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// With `schemars::JsonSchema` as well, [`Contract::outbound`](crate::schema::Contract::outbound)
/// lists it in the application's AsyncAPI document and TypeScript declarations.
pub trait OutboundMessage: Serialize {
    /// The `type` it is pushed with; not one of [`BUILTIN_TYPES`].
    const TYPE: &'static str;
}

impl<'de> Deserialize<'de> for Outbound {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Map::<String, Value>::deserialize(deserializer)?;
        Self::from_object(object).map_err(serde::de::Error::custom)
    }
}

impl Outbound {
    /// An error message with an optional echoed `ref`.
    pub fn error(code: ErrorCode, message: impl Into<String>, reference: Option<String>) -> Self {
        Self::error_at(code, message, None, reference)
    }

    /// An error message naming the request `field` that failed, with an optional echoed `ref`.
    pub fn error_at(
        code: ErrorCode,
        message: impl Into<String>,
        field: Option<String>,
        reference: Option<String>,
    ) -> Self {
        Self::Error(ErrorMessage { code, message: message.into(), field, reference, extra: Extra::new() })
    }

    /// An application's typed message: its fields, with `type` set to [`OutboundMessage::TYPE`].
    /// Fails if it does not serialize to a JSON object or its `TYPE` is a built-in type.
    pub fn message<T: OutboundMessage>(message: &T) -> Result<Self, OutboundError> {
        match serde_json::to_value(message) {
            Ok(Value::Object(mut object)) => {
                object.insert("type".into(), Value::String(T::TYPE.to_owned()));
                Self::custom(object)
            }
            Ok(_) => Err(OutboundError::Invalid("an outbound message must serialize to a JSON object")),
            Err(_) => Err(OutboundError::Invalid("the message could not be serialized")),
        }
    }

    /// A custom message. `object` must carry a string `type` that is not a built-in type.
    pub fn custom(object: Map<String, Value>) -> Result<Self, OutboundError> {
        match object.get("type").and_then(Value::as_str) {
            Some(t) if !t.is_empty() && !BUILTIN_TYPES.contains(&t) => Ok(Self::Custom(object)),
            _ => Err(OutboundError::CustomType),
        }
    }

    /// Reads a message from a JSON object: the variant its `type` names, each typed field
    /// checked (the error names the type and the field), other fields kept; or, for any other
    /// `type`, a custom message.
    pub fn from_object(mut object: Map<String, Value>) -> Result<Self, OutboundError> {
        let message_type = match object.get("type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            _ => return Err(OutboundError::MissingType),
        };
        let Some(spec) = fields_of(&message_type) else {
            return Ok(Self::Custom(object));
        };
        check_fields(&message_type, spec, &object)?;
        object.remove("type");
        let value = Value::Object(object);
        let parsed = match message_type.as_str() {
            "toast" => serde_json::from_value(value).map(Self::Toast),
            "task_progress" => serde_json::from_value(value).map(Self::TaskProgress),
            "resource_updated" => serde_json::from_value(value).map(Self::ResourceUpdated),
            "notification" => serde_json::from_value(value).map(Self::Notification),
            "chat_message" => serde_json::from_value(value).map(Self::ChatMessage),
            "system" => serde_json::from_value(value).map(Self::System),
            "reply" => serde_json::from_value(value).map(Self::Reply),
            "pong" => serde_json::from_value(value).map(Self::Pong),
            "member_joined" => serde_json::from_value(value).map(Self::MemberJoined),
            "member_left" => serde_json::from_value(value).map(Self::MemberLeft),
            "replay" => serde_json::from_value(value).map(Self::Replay),
            _ => serde_json::from_value(value).map(Self::Error),
        };
        // The field check above accepts only what the structs parse; this is a safety net.
        parsed.map_err(|e| OutboundError::Field(format!("{message_type}: {e}")))
    }

    /// The message's `type`.
    pub fn type_name(&self) -> &str {
        match self {
            Self::Toast(_) => "toast",
            Self::TaskProgress(_) => "task_progress",
            Self::ResourceUpdated(_) => "resource_updated",
            Self::Notification(_) => "notification",
            Self::ChatMessage(_) => "chat_message",
            Self::System(_) => "system",
            Self::Reply(_) => "reply",
            Self::Pong(_) => "pong",
            Self::Error(_) => "error",
            Self::MemberJoined(_) => "member_joined",
            Self::MemberLeft(_) => "member_left",
            Self::Replay(_) => "replay",
            Self::Custom(m) => m.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// The fields kept beyond a built-in type's own (`None` for a custom message).
    pub fn extra(&self) -> Option<&Extra> {
        match self {
            Self::Toast(m) => Some(&m.extra),
            Self::TaskProgress(m) => Some(&m.extra),
            Self::ResourceUpdated(m) => Some(&m.extra),
            Self::Notification(m) => Some(&m.extra),
            Self::ChatMessage(m) => Some(&m.extra),
            Self::System(m) => Some(&m.extra),
            Self::Reply(m) => Some(&m.extra),
            Self::Pong(m) => Some(&m.extra),
            Self::Error(m) => Some(&m.extra),
            Self::MemberJoined(m) => Some(&m.extra),
            Self::MemberLeft(m) => Some(&m.extra),
            Self::Replay(m) => Some(&m.extra),
            Self::Custom(_) => None,
        }
    }

    /// Checks what the Rust types cannot say: ranges, a notification's text, extra fields that
    /// would repeat a typed one, and, for custom messages, the `type` rule.
    pub fn validate(&self) -> Result<(), OutboundError> {
        let message_type = self.type_name();
        match self {
            Self::Custom(m) => return Self::custom(m.clone()).map(|_| ()),
            Self::TaskProgress(p) if p.percent > 100 => {
                let expected = Expect::Percent.describe();
                return Err(OutboundError::Field(format!("task_progress: \"percent\" must be {expected}")));
            }
            Self::Notification(n) if n.message.is_none() && n.title.is_none() => {
                return Err(notification_without_text());
            }
            _ => {}
        }
        let spec = fields_of(message_type).unwrap_or_default();
        let typed = |key: &str| key == "type" || spec.iter().any(|(name, _, _)| *name == key);
        match self.extra().and_then(|extra| extra.keys().find(|k| typed(k))) {
            Some(key) => {
                Err(OutboundError::Field(format!("{message_type}: extra field \"{key}\" repeats a typed field")))
            }
            None => Ok(()),
        }
    }

    /// Validates and serializes the message once, refusing anything over 128 KiB.
    pub fn encode(&self) -> Result<bytes::Bytes, OutboundError> {
        self.validate()?;
        // Serializing a tree of strings, numbers and maps cannot fail.
        let bytes = serde_json::to_vec(self).map_err(|_| OutboundError::Invalid("message is not serializable"))?;
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(OutboundError::TooLarge(bytes.len()));
        }
        Ok(bytes.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(value: Value) -> Outbound {
        let msg: Outbound = serde_json::from_value(value.clone()).expect("parses");
        assert_eq!(serde_json::to_value(&msg).expect("serializes"), value, "round trip of {value}");
        msg
    }

    #[test]
    fn every_outbound_type_round_trips() {
        let cases = [
            json!({"type":"toast","level":"success","message":"Saved","title":"Done","timeout_ms":3000,
                   "action_url":"/x","metadata":{"k":1}}),
            json!({"type":"toast","level":"warning","message":"Careful"}),
            json!({"type":"task_progress","task_id":"t1","percent":42,"message":"copying","done":false}),
            json!({"type":"resource_updated","resource":"invoice","id":"7","fetch_url":"/api/invoices/7"}),
            json!({"type":"notification","title":"New","body":"b","url":"/n/1"}),
            json!({"type":"chat_message","username":"ann","message":"hi","channel":"lobby"}),
            json!({"type":"system","level":"info","message":"maintenance at 5"}),
            json!({"type":"reply","action":"subscribe","ref":"r1","data":{"channel":"x"}}),
            json!({"type":"pong","connection_id":"abc=","ref":"p"}),
            json!({"type":"error","code":"unknown_action","message":"no route","ref":"q"}),
            json!({"type":"member_joined","channel":"room-1",
                   "member":{"user_id":"bob","connections":1,"info":{"name":"Bob"}}}),
            json!({"type":"member_left","channel":"room-1","user_id":"bob"}),
            json!({"type":"replay","channel":"room-1","messages":[{"type":"t","seq":1},{"type":"t","seq":2}]}),
            json!({"type":"invoice_paid","invoice":7,"nested":{"a":[1,2]}}),
        ];
        let names: Vec<String> = cases.into_iter().map(|c| roundtrip(c).type_name().to_owned()).collect();
        assert_eq!(
            names,
            [
                "toast",
                "toast",
                "task_progress",
                "resource_updated",
                "notification",
                "chat_message",
                "system",
                "reply",
                "pong",
                "error",
                "member_joined",
                "member_left",
                "replay",
                "invoice_paid"
            ]
        );
    }

    #[test]
    fn custom_messages_need_their_own_type() {
        let ok = json!({"type":"my_event","x":1});
        assert!(Outbound::custom(ok.as_object().cloned().unwrap_or_default()).is_ok());
        for bad in [json!({"x":1}), json!({"type":""}), json!({"type":5}), json!({"type":"toast","x":1})] {
            let obj = bad.as_object().cloned().unwrap_or_default();
            assert_eq!(Outbound::custom(obj.clone()), Err(OutboundError::CustomType), "{bad}");
            assert!(Outbound::Custom(obj).encode().is_err());
        }
    }

    #[test]
    fn the_reference_shapes_round_trip_typed() {
        let cases = [
            json!({"type":"task_progress","task_id":123,"percent":75,"message":"Processing records."}),
            json!({"type":"resource_updated","resource":"order","id":123,"fetch_url":"/api/orders/123/"}),
            json!({"type":"notification","message":"You have a new notification."}),
            json!({"type":"chat_message","room":"general","username":"alice","message":"Hello"}),
            json!({"type":"chat_message","username":"alice","message":"Hello"}),
            json!({"type":"reply","message":"Django received your message."}),
            json!({"type":"toast","level":"info","message":"m","timeout":5000,"icon":"bell"}),
        ];
        for case in cases {
            let msg = roundtrip(case.clone());
            assert!(!matches!(msg, Outbound::Custom(_)), "{case} parsed as custom");
            assert!(msg.validate().is_ok(), "{case}");
        }
        let Outbound::TaskProgress(p) = roundtrip(json!({"type":"task_progress","task_id":"t-1","percent":0})) else {
            panic!("not task progress");
        };
        assert_eq!(p.task_id, Id::from("t-1"));
        let Outbound::Toast(t) = roundtrip(json!({"type":"toast","level":"info","message":"m","timeout":5000})) else {
            panic!("not a toast");
        };
        assert_eq!(t.extra.get("timeout"), Some(&json!(5000)), "extra fields are kept");
    }

    #[test]
    fn a_malformed_builtin_message_names_its_type_and_field() {
        let cases = [
            (json!({"type":"toast","message":"m"}), "toast: \"level\" is required"),
            (json!({"type":"toast","level":"loud","message":"m"}), "toast: \"level\" must be one of"),
            (
                json!({"type":"task_progress","task_id":1,"percent":101}),
                "task_progress: \"percent\" must be an integer 0-100",
            ),
            (
                json!({"type":"task_progress","task_id":1.5,"percent":1}),
                "task_progress: \"task_id\" must be a string or an integer",
            ),
            (json!({"type":"resource_updated","resource":"order"}), "resource_updated: \"id\" is required"),
            (json!({"type":"notification","body":"b"}), "notification: needs \"message\" or \"title\""),
            (json!({"type":"chat_message","username":"a","message":7}), "chat_message: \"message\" must be a string"),
            (json!({"type":"system","level":"info"}), "system: \"message\" is required"),
            (json!({"type":"reply","data":1,"action":false}), "reply: \"action\" must be a string"),
            (json!({"type":"pong"}), "pong: \"connection_id\" is required"),
            (json!({"type":"error","code":"nope","message":"m"}), "error: \"code\" must be an error code"),
        ];
        for (case, expected) in cases {
            let err = serde_json::from_value::<Outbound>(case.clone()).expect_err("refused").to_string();
            assert!(err.starts_with(expected), "{case}: {err}");
            assert!(!err.contains("custom"), "{case}: {err}");
        }
        for untyped in [json!({"x":1}), json!({"type":""}), json!({"type":5})] {
            let err = serde_json::from_value::<Outbound>(untyped.clone()).expect_err("refused").to_string();
            assert!(err.contains("non-empty string \"type\""), "{untyped}: {err}");
        }
    }

    #[test]
    fn rust_built_messages_are_validated_too() {
        let mut toast = Toast::new(Level::Info, "m");
        toast.extra.insert("level".into(), json!("x"));
        let err = Outbound::Toast(toast).validate().expect_err("repeats a typed field");
        assert!(err.to_string().contains("toast: extra field \"level\""), "{err}");
        let empty = Notification { message: None, ..Notification::new("") };
        assert!(Outbound::Notification(empty).validate().is_err());
    }

    #[test]
    fn encode_checks_size_and_ranges() {
        let big = Outbound::System(SystemMessage::new(Level::Info, "x".repeat(MAX_MESSAGE_BYTES)));
        assert!(matches!(big.encode(), Err(OutboundError::TooLarge(n)) if n > MAX_MESSAGE_BYTES));
        let bad = Outbound::TaskProgress(TaskProgress::new("t", 101));
        assert!(matches!(bad.encode(), Err(OutboundError::Field(_))));
        let fits = Outbound::System(SystemMessage::new(Level::Info, "x".repeat(MAX_MESSAGE_BYTES - 100)));
        assert!(fits.encode().is_ok());
    }

    #[test]
    fn inbound_envelope_parses_flat_fields() {
        let m = Inbound::parse(r#"{"action":"chat","message":"hi","ref":"c1","handler":"say"}"#).expect("parses");
        assert_eq!(m.action, "chat");
        assert_eq!(m.handler.as_deref(), Some("say"));
        assert_eq!(m.reference.as_deref(), Some("c1"));
        assert_eq!(m.str_field("message"), Some("hi"));
        assert!(!m.fields.contains_key("action"));
        let by_handler = Inbound::parse(r#"{"handler":"chat_message","message":"hi"}"#).expect("parses");
        assert_eq!((by_handler.action.as_str(), by_handler.handler), ("chat_message", None), "handler routes");
    }

    #[test]
    fn inbound_errors_are_typed() {
        let cases: [(&str, ErrorCode); 8] = [
            ("not json", ErrorCode::BadJson),
            ("[1,2]", ErrorCode::BadRequest),
            ("\"str\"", ErrorCode::BadRequest),
            (r#"{"message":"no action"}"#, ErrorCode::BadRequest),
            (r#"{"action":5}"#, ErrorCode::BadRequest),
            (r#"{"action":""}"#, ErrorCode::BadRequest),
            (r#"{"action":"x","ref":{}}"#, ErrorCode::BadRequest),
            (r#"{"action":"x","handler":1}"#, ErrorCode::BadRequest),
        ];
        for (body, code) in cases {
            assert_eq!(Inbound::parse(body).map_err(|e| e.code()), Err(code), "{body}");
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(Inbound::parse(&deep).map_err(|e| e.code()), Err(ErrorCode::BadJson));
        let huge = format!(r#"{{"action":"x","pad":"{}"}}"#, "a".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(Inbound::parse(&huge).map_err(|e| e.code()), Err(ErrorCode::TooLarge));
        // Brackets inside strings do not count toward depth.
        let brackets = format!(r#"{{"action":"x","s":"{}"}}"#, "[".repeat(1000));
        assert!(Inbound::parse(&brackets).is_ok());
    }
}
