//! The inbound envelope: what a browser sends, routed by `action`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ErrorCode, MAX_JSON_DEPTH, MAX_MESSAGE_BYTES};

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

#[cfg(test)]
mod tests {
    use super::*;

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
