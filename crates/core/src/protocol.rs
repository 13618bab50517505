//! The wire protocol: what browsers send (a flat JSON envelope routed by `action`) and what the
//! server pushes (flat JSON messages discriminated by `type`).
//!
//! Inbound example: `{"action":"chat","message":"hi","ref":"c1"}`.
//! Outbound example: `{"type":"toast","level":"success","message":"Saved"}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// API Gateway's limit for one WebSocket message and for one Management API post: 128 KiB.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// How deep inbound JSON may nest before it is refused (guards the parser's stack).
pub const MAX_JSON_DEPTH: usize = 32;

/// A machine-readable error code, sent in [`Outbound::Error`] messages and sender errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
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
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::NotConnected => "not_connected",
            Self::UnknownConnection => "unknown_connection",
            Self::Internal => "internal",
        }
    }
}

/// Why an inbound frame could not be read as an [`Inbound`] envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// No string `action` field.
    #[error("message must have a string \"action\" field")]
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

/// An inbound message: the route (`action`), an optional sub-handler, an optional correlation
/// `ref`, and every other field as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
            Some(Value::String(a)) if !a.is_empty() => a,
            _ => return Err(InboundError::MissingAction),
        };
        let handler = take_optional_string(&mut fields, "handler")?;
        let reference = take_optional_string(&mut fields, "ref")?;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

/// A short message the page shows as a toast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// A link the toast offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_url: Option<String>,
    /// Application data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// Progress of a long-running task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskProgress {
    /// The task's id.
    pub task_id: String,
    /// Percent done, 0 to 100.
    #[cfg_attr(feature = "schema", schemars(range(max = 100)))]
    pub percent: u8,
    /// What the task is doing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Set when the task has finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
}

/// A resource changed: the page should refetch it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ResourceUpdated {
    /// The kind of resource (`"invoice"`).
    pub resource: String,
    /// Its id.
    pub id: String,
    /// Where to fetch the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_url: Option<String>,
}

/// A notification for the user's inbox or bell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Notification {
    /// Heading.
    pub title: String,
    /// Body text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A link to open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Application data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// A chat line in a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChatMessage {
    /// Who wrote it.
    pub username: String,
    /// What they wrote.
    pub message: String,
    /// Where.
    pub channel: String,
}

/// A message from the system (maintenance, announcements).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SystemMessage {
    /// Severity.
    pub level: Level,
    /// The text.
    pub message: String,
}

/// The answer to one inbound message, correlated by `ref`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Reply {
    /// The action this answers.
    pub action: String,
    /// The client's `ref`, echoed.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The result.
    #[serde(default)]
    pub data: Value,
}

/// The answer to `ping`: the connection's own id, which a page passes to HTTP endpoints so the
/// broadcast its request causes can leave it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Pong {
    /// The connection's id.
    pub connection_id: String,
    /// The client's `ref`, echoed.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A typed error sent to a client in a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorMessage {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation (never internal details).
    pub message: String,
    /// The client's `ref`, echoed.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// Every message the server pushes, discriminated by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
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
    /// Any other JSON object carrying its own string `type`; see [`Outbound::custom`].
    #[serde(untagged)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::custom_message"))]
    Custom(Map<String, Value>),
}

/// The `type` values the typed variants use; a custom message may not reuse them.
pub const BUILTIN_TYPES: [&str; 9] =
    ["toast", "task_progress", "resource_updated", "notification", "chat_message", "system", "reply", "pong", "error"];

/// Why an outbound message was refused before sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// A custom message needs a non-empty string `type` that no built-in type uses.
    #[error("a custom message needs a string \"type\" that is not one of the built-in types")]
    CustomType,
    /// The serialized message is over 128 KiB.
    #[error("message is {0} bytes serialized; the limit is 131072")]
    TooLarge(usize),
    /// A typed field is out of range (e.g. percent over 100).
    #[error("{0}")]
    Invalid(&'static str),
}

impl Outbound {
    /// An error message with an optional echoed `ref`.
    pub fn error(code: ErrorCode, message: impl Into<String>, reference: Option<String>) -> Self {
        Self::Error(ErrorMessage { code, message: message.into(), reference })
    }

    /// A custom message. `object` must carry a string `type` that is not a built-in type.
    pub fn custom(object: Map<String, Value>) -> Result<Self, OutboundError> {
        match object.get("type").and_then(Value::as_str) {
            Some(t) if !t.is_empty() && !BUILTIN_TYPES.contains(&t) => Ok(Self::Custom(object)),
            _ => Err(OutboundError::CustomType),
        }
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
            Self::Custom(m) => m.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// Checks field ranges and, for custom messages, the `type` rule.
    pub fn validate(&self) -> Result<(), OutboundError> {
        match self {
            Self::TaskProgress(p) if p.percent > 100 => Err(OutboundError::Invalid("percent must be 0 to 100")),
            Self::Custom(m) => Self::custom(m.clone()).map(|_| ()),
            _ => Ok(()),
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
    fn a_builtin_type_with_missing_fields_does_not_parse_as_custom() {
        // `{"type":"toast"}` without level/message must not silently become a custom message.
        let parsed: Result<Outbound, _> = serde_json::from_value(json!({"type":"toast"}));
        match parsed {
            Err(_) => {}
            Ok(msg) => assert!(msg.validate().is_err(), "accepted as {msg:?}"),
        }
    }

    #[test]
    fn encode_checks_size_and_ranges() {
        let big = Outbound::System(SystemMessage { level: Level::Info, message: "x".repeat(MAX_MESSAGE_BYTES) });
        assert!(matches!(big.encode(), Err(OutboundError::TooLarge(n)) if n > MAX_MESSAGE_BYTES));
        let bad = Outbound::TaskProgress(TaskProgress { task_id: "t".into(), percent: 101, message: None, done: None });
        assert!(matches!(bad.encode(), Err(OutboundError::Invalid(_))));
        let fits = Outbound::System(SystemMessage { level: Level::Info, message: "x".repeat(MAX_MESSAGE_BYTES - 100) });
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
