//! Sessions and the validated names they are made of.
//!
//! A [`Session`] is what the store keeps for one open WebSocket connection. Its identifiers are
//! newtypes that can only be built through validation, so a handler that holds a [`ChannelName`]
//! or a [`ConnectionId`] never has to check it again.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest connection id accepted (API Gateway's are 16 characters; we allow headroom).
pub const MAX_CONNECTION_ID_LEN: usize = 128;
/// Longest channel name accepted.
pub const MAX_CHANNEL_NAME_LEN: usize = 128;

/// A value that failed validation, with the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The connection id is empty, too long or has characters outside `[A-Za-z0-9_=-]`.
    #[error("invalid connection id")]
    ConnectionId,
    /// The channel name does not match `^[A-Za-z0-9_-]{1,128}$`.
    #[error("invalid channel name: it must be 1 to 128 characters of A-Z, a-z, 0-9, '_' or '-'")]
    Channel,
}

/// An API Gateway connection id (e.g. `L0SM9cOFvHcCIhw=`), validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConnectionId(String);

impl ConnectionId {
    /// Validates `id`: 1 to 128 characters of `[A-Za-z0-9_=-]`.
    pub fn new(id: impl Into<String>) -> Result<Self, NameError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= MAX_CONNECTION_ID_LEN
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'=' | b'-'));
        if ok { Ok(Self(id)) } else { Err(NameError::ConnectionId) }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ConnectionId {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ConnectionId> for String {
    fn from(value: ConnectionId) -> Self {
        value.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A channel name matching `^[A-Za-z0-9_-]{1,128}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelName(String);

impl ChannelName {
    /// Validates `name` against the channel rule.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= MAX_CHANNEL_NAME_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if ok { Ok(Self(name)) } else { Err(NameError::Channel) }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ChannelName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ChannelName> for String {
    fn from(value: ChannelName) -> Self {
        value.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is behind a connection or a token request: a user id and the groups it belongs to.
///
/// Built from an authorizer's claims by the token issuer and carried through the token into the
/// session, so channel permissions can be checked on `$connect` and again on `subscribe`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The user id (`sub` of a JWT, or what a Lambda authorizer returned).
    pub user_id: String,
    /// Groups or roles the user belongs to (e.g. `cognito:groups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl Identity {
    /// An identity with no groups.
    pub fn user(user_id: impl Into<String>) -> Self {
        Self { user_id: user_id.into(), groups: Vec::new() }
    }

    /// Adds groups to the identity.
    pub fn with_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups.extend(groups.into_iter().map(Into::into));
        self
    }
}

impl Identity {
    /// Builds an identity from authorizer claims: the user is `sub` (JWT) or `user_id` /
    /// `principalId` (Lambda authorizer context); groups come from `cognito:groups` or `groups`,
    /// either as a JSON array or as API Gateway's flattened `"[a b]"` / `"a,b"` strings.
    /// Returns `None` without a non-empty user.
    pub fn from_claims(claim: impl Fn(&str) -> Option<serde_json::Value>) -> Option<Self> {
        let text = |v: serde_json::Value| match v {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let user_id = ["sub", "user_id", "principalId"].into_iter().find_map(|k| claim(k).and_then(text))?;
        if user_id.trim().is_empty() {
            return None;
        }
        let groups = match ["cognito:groups", "groups"].into_iter().find_map(&claim) {
            Some(serde_json::Value::Array(items)) => items.into_iter().filter_map(text).collect(),
            Some(serde_json::Value::String(s)) => s
                .trim_matches(|c| c == '[' || c == ']')
                .split([' ', ','])
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Some(Self { user_id, groups })
    }
}

/// One open WebSocket connection, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The API Gateway connection id.
    pub connection_id: ConnectionId,
    /// The authenticated user, if the connection presented a token.
    pub identity: Option<Identity>,
    /// The WebSocket API's id (`requestContext.apiId`).
    pub api_id: String,
    /// The stage the client connected to.
    pub stage: String,
    /// The Management API endpoint that reaches this connection, e.g.
    /// `https://abc123.execute-api.eu-west-1.amazonaws.com/prod`.
    pub endpoint: String,
    /// The client's address as API Gateway saw it (not a spoofable header).
    pub source_ip: String,
    /// The client's `User-Agent`, if it sent one.
    pub user_agent: Option<String>,
    /// When the connection was opened, in Unix milliseconds.
    pub connected_at: i64,
    /// When the session last sent a message, in Unix milliseconds to the second (written with the
    /// message's rate count, or at most once a minute without one; see
    /// [`LAST_SEEN_EVERY_MS`](crate::store::LAST_SEEN_EVERY_MS)).
    pub last_seen: i64,
    /// When the stored session expires, in Unix seconds (the DynamoDB TTL attribute).
    pub expires_at: i64,
    /// Free-form attributes an application attaches on connect (filters may match on them).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The channel the connect token was bound to: the only channel this connection may be in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_channel: Option<ChannelName>,
}

impl Session {
    /// The user id, if any.
    pub fn user_id(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.user_id.as_str())
    }

    /// Whether the session has expired at `now_secs` (Unix seconds). Stores ignore expired
    /// sessions on reads because DynamoDB deletes TTL-expired items late.
    pub fn is_expired(&self, now_secs: i64) -> bool {
        self.expires_at <= now_secs
    }
}

/// Who a message can be delivered to: a connection and the endpoint that reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Recipient {
    /// The connection id.
    pub connection_id: ConnectionId,
    /// The Management API endpoint for this connection.
    pub endpoint: String,
}

/// Session metadata: string pairs your connect hook attaches (a tenant, a display name), stored
/// with the session and its memberships.
pub type Metadata = std::collections::BTreeMap<String, String>;

// Their JSON Schema (the contract names them), written by hand: the patterns are the rules.
impl schemars::JsonSchema for ConnectionId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ConnectionId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An API Gateway connection id, e.g. `L0SM9cOFvHcCIhw=`.",
            "type": "string",
            "pattern": "^[A-Za-z0-9_=-]{1,128}$",
        })
    }
}

impl schemars::JsonSchema for ChannelName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ChannelName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A channel name.",
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]{1,128}$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_follow_api_gateway_shape() {
        assert!(ConnectionId::new("L0SM9cOFvHcCIhw=").is_ok());
        assert!(ConnectionId::new("abc_DEF-123").is_ok());
        for bad in ["", "has space", "slash/", "semi;colon", &"a".repeat(129)] {
            assert_eq!(ConnectionId::new(bad), Err(NameError::ConnectionId), "{bad:?}");
        }
        assert!(ConnectionId::new("a".repeat(128)).is_ok());
    }

    #[test]
    fn channel_names_follow_the_rule() {
        for good in ["lobby", "room-1", "A_b-9", &"x".repeat(128)] {
            assert!(ChannelName::new(good).is_ok(), "{good:?}");
        }
        for bad in ["", "a b", "dot.ted", "emoji😀", "a=b", &"x".repeat(129)] {
            assert_eq!(ChannelName::new(bad), Err(NameError::Channel), "{bad:?}");
        }
    }

    #[test]
    fn identity_from_jwt_and_lambda_authorizer_claims() {
        use serde_json::json;
        let jwt = |k: &str| match k {
            "sub" => Some(json!("u-1")),
            "cognito:groups" => Some(json!("[admin staff]")),
            _ => None,
        };
        assert_eq!(Identity::from_claims(jwt), Some(Identity::user("u-1").with_groups(["admin", "staff"])));
        let lambda = |k: &str| match k {
            "user_id" => Some(json!(42)),
            "groups" => Some(json!(["a", "b"])),
            _ => None,
        };
        assert_eq!(Identity::from_claims(lambda), Some(Identity::user("42").with_groups(["a", "b"])));
        let comma = |k: &str| match k {
            "principalId" => Some(json!("p")),
            "groups" => Some(json!("x,y")),
            _ => None,
        };
        assert_eq!(Identity::from_claims(comma).map(|i| i.groups), Some(vec!["x".to_owned(), "y".to_owned()]));
        assert_eq!(Identity::from_claims(|_| None), None);
        assert_eq!(Identity::from_claims(|k| (k == "sub").then(|| json!(" "))), None);
    }

    #[test]
    fn names_validate_when_deserialized() {
        assert!(serde_json::from_str::<ChannelName>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<ChannelName>("\"not ok\"").is_err());
        assert!(serde_json::from_str::<ConnectionId>("\"x/y\"").is_err());
    }
}
