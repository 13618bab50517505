//! The wire protocol: what browsers send (a flat JSON envelope routed by `action`) and what the
//! server pushes (flat JSON messages discriminated by `type`).
//!
//! Inbound example: `{"action":"chat","message":"hi","ref":"c1"}`.
//! Outbound example: `{"type":"toast","level":"success","message":"Saved"}`.
//!
//! `inbound` reads the envelope; `messages` holds the built-in message types; `outbound` holds
//! [`Outbound`] and the one table of built-in types ([`BUILTIN_TYPES`], [`builtin_type`]) that
//! drives parsing, field checks, names, extras and what the contract says of each.

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod inbound;
mod messages;
mod outbound;

pub use inbound::{Inbound, InboundError};
pub use messages::{
    ChatMessage, ErrorMessage, Extra, Id, Level, MemberJoined, MemberLeft, Notification, Pong, Replay, Reply,
    ResourceUpdated, SystemMessage, TaskProgress, Toast,
};
pub use outbound::{
    BUILTIN_TABLE, BUILTIN_TYPES, BuiltinType, Expect, Field, Outbound, OutboundError, OutboundMessage, builtin_type,
};

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
