//! [`Outbound`]: every message the server pushes, and the one table of built-in types.
//!
//! Each built-in type is one entry of the `builtin_types!` table below: its variant, its struct,
//! its `type` name, whether a copy sent to a channel with history carries its place in the
//! stream, and its typed fields (name, required or not, what they accept). The table generates
//! the enum, [`BUILTIN_TABLE`], [`BUILTIN_TYPES`], [`builtin_type`] (what the field checks, the contract and the
//! TypeScript writer read), parsing by `type`, [`Outbound::type_name`] and [`Outbound::extra`]:
//! a new built-in type is one entry (and its struct in `messages`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::messages::{
    ChatMessage, ErrorMessage, Extra, MemberJoined, MemberLeft, Notification, Pong, Replay, Reply, ResourceUpdated,
    SystemMessage, TaskProgress, Toast,
};
use super::{ErrorCode, MAX_MESSAGE_BYTES};

/// What a typed field accepts, for the field-by-field check and its error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expect {
    /// A string.
    Text,
    /// One of `success`, `info`, `warning`, `error`.
    Level,
    /// An integer 0-100.
    Percent,
    /// A string or an integer.
    Id,
    /// A non-negative integer.
    Count,
    /// A boolean.
    Flag,
    /// An [`ErrorCode`].
    Code,
    /// A presence member: `{user_id, connections, info}`.
    Member,
    /// An array of message objects.
    Messages,
    /// Any JSON value.
    Any,
}

impl Expect {
    /// Whether `value` is acceptable.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            Self::Text => value.is_string(),
            Self::Level => value.as_str().is_some_and(|l| matches!(l, "success" | "info" | "warning" | "error")),
            Self::Percent => value.as_u64().is_some_and(|p| p <= 100),
            Self::Id => value.is_string() || value.is_i64(),
            Self::Count => value.is_u64(),
            Self::Flag => value.is_boolean(),
            Self::Code => serde_json::from_value::<ErrorCode>(value.clone()).is_ok(),
            Self::Member => serde_json::from_value::<crate::store::presence::Member>(value.clone()).is_ok(),
            Self::Messages => value.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
            Self::Any => true,
        }
    }

    /// What it accepts, in words (error texts).
    pub fn describe(self) -> &'static str {
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

/// One typed field of a built-in type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Its name.
    pub name: &'static str,
    /// Whether a message must carry it.
    pub required: bool,
    /// What it accepts.
    pub expect: Expect,
}

/// One entry of the table of built-in types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinType {
    /// The `type` value.
    pub name: &'static str,
    /// Whether a copy sent to a channel with history carries `channel`, `seq` and `epoch` (answers,
    /// presence events and replay frames take no place in a stream).
    pub stream: bool,
    /// Its typed fields.
    pub fields: &'static [Field],
}

macro_rules! required {
    (required) => {
        true
    };
    (optional) => {
        false
    };
}

macro_rules! builtin_types {
    ($(
        $(#[$doc:meta])*
        $variant:ident($ty:ty) = $name:literal, stream: $stream:literal,
            [$(($field:literal, $req:ident, $expect:ident)),* $(,)?];
    )*) => {
        /// Every message the server pushes, discriminated by `type`.
        ///
        /// Parsing ([`Outbound::from_object`], and `Deserialize`) picks the variant by `type`: a built-in
        /// type is checked field by field and a mistake names the type and the field
        /// (`task_progress: "percent" must be an integer 0-100`); any other `type` is a custom message.
        /// Fields beyond a built-in type's own are kept in its `extra` and delivered unchanged.
        #[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
        #[serde(tag = "type")]
        #[non_exhaustive]
        pub enum Outbound {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $variant($ty),
            )*
            /// Any other JSON object carrying its own string `type`; see [`Outbound::custom`].
            #[serde(untagged)]
            #[schemars(schema_with = "custom_message_schema")]
            Custom(Map<String, Value>),
        }

        /// The table of built-in types, in the order of [`Outbound`]'s variants.
        pub const BUILTIN_TABLE: &[BuiltinType] = &[
            $(BuiltinType {
                name: $name,
                stream: $stream,
                fields: &[$(Field { name: $field, required: required!($req), expect: Expect::$expect }),*],
            },)*
        ];

        /// The `type` values the typed variants use; a custom message may not reuse them.
        pub const BUILTIN_TYPES: [&str; [$($name),*].len()] = [$($name),*];

        /// The variant a built-in `type` names, parsed from `value` (its fields, without `type`).
        fn parse_builtin(message_type: &str, value: Value) -> Option<Result<Outbound, serde_json::Error>> {
            match message_type {
                $($name => Some(serde_json::from_value(value).map(Outbound::$variant)),)*
                _ => None,
            }
        }

        impl Outbound {
            /// The message's `type`.
            pub fn type_name(&self) -> &str {
                match self {
                    $(Self::$variant(_) => $name,)*
                    Self::Custom(m) => m.get("type").and_then(Value::as_str).unwrap_or(""),
                }
            }

            /// The fields kept beyond a built-in type's own (`None` for a custom message).
            pub fn extra(&self) -> Option<&Extra> {
                match self {
                    $(Self::$variant(m) => Some(&m.extra),)*
                    Self::Custom(_) => None,
                }
            }
        }
    };
}

builtin_types! {
    /// `{"type":"toast",...}`
    Toast(Toast) = "toast", stream: true, [
        ("level", required, Level), ("message", required, Text), ("title", optional, Text),
        ("timeout_ms", optional, Count), ("action_url", optional, Text), ("metadata", optional, Any),
    ];
    /// `{"type":"task_progress",...}`
    TaskProgress(TaskProgress) = "task_progress", stream: true, [
        ("task_id", required, Id), ("percent", required, Percent), ("message", optional, Text), ("done", optional, Flag),
    ];
    /// `{"type":"resource_updated",...}`
    ResourceUpdated(ResourceUpdated) = "resource_updated", stream: true, [
        ("resource", required, Text), ("id", required, Id), ("fetch_url", optional, Text),
    ];
    /// `{"type":"notification",...}`
    Notification(Notification) = "notification", stream: true, [
        ("message", optional, Text), ("title", optional, Text), ("body", optional, Text), ("url", optional, Text),
        ("metadata", optional, Any),
    ];
    /// `{"type":"chat_message",...}`
    ChatMessage(ChatMessage) = "chat_message", stream: true, [
        ("username", required, Text), ("message", required, Text), ("channel", optional, Text), ("room", optional, Text),
    ];
    /// `{"type":"system",...}`
    System(SystemMessage) = "system", stream: true, [("level", required, Level), ("message", required, Text)];
    /// `{"type":"reply",...}`
    Reply(Reply) = "reply", stream: false, [
        ("action", optional, Text), ("ref", optional, Text), ("data", optional, Any), ("message", optional, Text),
    ];
    /// `{"type":"pong",...}`
    Pong(Pong) = "pong", stream: false, [("connection_id", required, Text), ("ref", optional, Text)];
    /// `{"type":"error",...}`
    Error(ErrorMessage) = "error", stream: false, [
        ("code", required, Code), ("message", required, Text), ("field", optional, Text), ("ref", optional, Text),
    ];
    /// `{"type":"member_joined",...}`
    MemberJoined(MemberJoined) = "member_joined", stream: false, [
        ("channel", required, Text), ("member", required, Member),
    ];
    /// `{"type":"member_left",...}`
    MemberLeft(MemberLeft) = "member_left", stream: false, [("channel", required, Text), ("user_id", required, Text)];
    /// `{"type":"replay",...}`
    Replay(Replay) = "replay", stream: false, [("channel", required, Text), ("messages", required, Messages)];
}

/// The table entry of a built-in `type`, if it is one.
pub fn builtin_type(message_type: &str) -> Option<&'static BuiltinType> {
    BUILTIN_TABLE.iter().find(|t| t.name == message_type)
}

/// Schema of [`Outbound::Custom`]: an object with a string `type` no built-in message uses.
fn custom_message_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "An application's own message: any object whose string `type` is not a built-in type.",
        "type": "object",
        "properties": { "type": { "type": "string", "minLength": 1, "not": { "enum": BUILTIN_TYPES } } },
        "required": ["type"],
        "additionalProperties": true,
    })
}

/// Checks a built-in message's fields one by one, naming the first that is wrong.
fn check_fields(builtin: &BuiltinType, object: &Map<String, Value>) -> Result<(), OutboundError> {
    for field in builtin.fields {
        let problem = match object.get(field.name) {
            None | Some(Value::Null) if field.required => format!("is required: {}", field.expect.describe()),
            None | Some(Value::Null) => continue,
            Some(value) if field.expect.accepts(value) => continue,
            Some(_) => format!("must be {}", field.expect.describe()),
        };
        return Err(OutboundError::Field(format!("{}: \"{}\" {problem}", builtin.name, field.name)));
    }
    if builtin.name == "notification"
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
/// With `schemars::JsonSchema` as well, the contract (`schema::Contract::outbound`, feature
/// `schema`) lists it in the application's AsyncAPI document and TypeScript declarations.
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
            Some(t) if !t.is_empty() && builtin_type(t).is_none() => Ok(Self::Custom(object)),
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
        let Some(builtin) = builtin_type(&message_type) else {
            return Ok(Self::Custom(object));
        };
        check_fields(builtin, &object)?;
        object.remove("type");
        // The field check above accepts only what the structs parse; this is a safety net.
        match parse_builtin(&message_type, Value::Object(object)) {
            Some(parsed) => parsed.map_err(|e| OutboundError::Field(format!("{message_type}: {e}"))),
            None => Err(OutboundError::MissingType),
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
        let fields = builtin_type(message_type).map_or(&[][..], |b| b.fields);
        let typed = |key: &str| key == "type" || fields.iter().any(|f| f.name == key);
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
    use crate::protocol::{Id, Level, SystemMessage, TaskProgress};
    use serde_json::json;

    /// A value `expect` accepts, and one it refuses.
    fn sample(expect: Expect) -> (Value, Value) {
        match expect {
            Expect::Text => (json!("text"), json!(5)),
            Expect::Level => (json!("info"), json!("loud")),
            Expect::Percent => (json!(42), json!(101)),
            Expect::Id => (json!("id-1"), json!(true)),
            Expect::Count => (json!(3), json!(-1)),
            Expect::Flag => (json!(true), json!("yes")),
            Expect::Code => (json!("bad_request"), json!("nope")),
            Expect::Member => (json!({"user_id": "ann", "connections": 1, "info": {}}), json!({"user_id": 1})),
            Expect::Messages => (json!([{"type": "t"}]), json!([1])),
            Expect::Any => (json!({"k": 1}), Value::Null),
        }
    }

    /// Every entry of the one table is enough on its own: a message built from its fields alone
    /// parses as its own variant, round-trips, names itself; each required field missing, and
    /// each field given a value its kind refuses, is refused naming the type and the field; a
    /// custom message may not take its name; extras repeating a typed field are refused.
    #[test]
    fn every_table_entry_drives_parsing_checks_and_names() {
        assert_eq!(BUILTIN_TABLE.len(), BUILTIN_TYPES.len());
        for builtin in BUILTIN_TABLE {
            let mut object = Map::new();
            object.insert("type".into(), json!(builtin.name));
            for field in builtin.fields.iter().filter(|f| f.required || builtin.name == "notification") {
                object.insert(field.name.into(), sample(field.expect).0);
            }
            let message = Outbound::from_object(object.clone()).unwrap_or_else(|e| panic!("{}: {e}", builtin.name));
            assert!(!matches!(message, Outbound::Custom(_)), "{} parsed as custom", builtin.name);
            assert_eq!(message.type_name(), builtin.name);
            assert!(message.extra().is_some(), "{}", builtin.name);
            assert_eq!(serde_json::to_value(&message).ok(), Some(Value::Object(object.clone())), "{}", builtin.name);
            assert!(message.encode().is_ok(), "{}", builtin.name);
            for field in builtin.fields {
                let (_, refused) = sample(field.expect);
                let mut wrong = object.clone();
                if field.required {
                    wrong.remove(field.name);
                    let error = Outbound::from_object(wrong.clone()).map(|_| ()).unwrap_err().to_string();
                    assert!(error.contains(builtin.name) && error.contains(field.name), "{error}");
                }
                if !refused.is_null() {
                    wrong.insert(field.name.into(), refused);
                    let error = Outbound::from_object(wrong).map(|_| ()).unwrap_err().to_string();
                    assert!(error.contains(field.name), "{}.{}: {error}", builtin.name, field.name);
                }
            }
            let mut custom = Map::new();
            custom.insert("type".into(), json!(builtin.name));
            assert_eq!(Outbound::custom(custom), Err(OutboundError::CustomType), "{}", builtin.name);
        }
    }

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
}
