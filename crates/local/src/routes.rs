//! Route selection, as API Gateway does it for a WebSocket API with a
//! `$request.body.<key>` selection expression.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use async_trait::async_trait;
use lambda_ws::{Inbound, MessageContext, Outbound, Route, RouteError, Router};

/// The routes `template.yaml` declares, with the workspace binary that serves each.
pub const BUILTIN_ROUTES: [(&str, &str); 8] = [
    ("$connect", "connect"),
    ("$disconnect", "disconnect"),
    ("$default", "default"),
    ("subscribe", "default"),
    ("unsubscribe", "default"),
    ("ping", "default"),
    ("chat", "chat"),
    ("chat_message", "chat"),
];

/// The in-process handler of a workspace binary, or an invocation of any other function.
pub fn handler_for(binary: &str) -> Handler {
    match binary {
        "connect" => Handler::Connect,
        "disconnect" => Handler::Disconnect,
        "default" => Handler::Messages(Router::builtin().with_chat()),
        "chat" => Handler::Messages(Router::new().with_chat()),
        other => Handler::Invoke(other.to_owned()),
    }
}

/// What runs for a route key.
#[derive(Clone)]
pub enum Handler {
    /// The core `$connect` handler.
    Connect,
    /// The core `$disconnect` handler.
    Disconnect,
    /// The core message handler with this router (one per function, as deployed).
    Messages(Router),
    /// A function invoked through the Lambda Invoke API (e.g. under `cargo lambda watch`).
    Invoke(String),
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect => f.write_str("Connect"),
            Self::Disconnect => f.write_str("Disconnect"),
            Self::Messages(r) => f.debug_tuple("Messages").field(&r.actions().collect::<Vec<_>>()).finish(),
            Self::Invoke(name) => f.debug_tuple("Invoke").field(name).finish(),
        }
    }
}

/// The routes of one WebSocket API and its selection key.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// The field of the JSON body that selects the route (`action` for `$request.body.action`).
    pub selection_key: String,
    routes: BTreeMap<String, Handler>,
    /// Routes with a route response: their handler's body is sent back to the client.
    answered: BTreeSet<String>,
}

impl RouteTable {
    /// The routes the deployment template declares ([`BUILTIN_ROUTES`]), handled in-process, plus
    /// the development `echo` route.
    pub fn builtin() -> Self {
        Self::from_functions("action", BUILTIN_ROUTES, true)
    }

    /// The same routes, each invoking the function that serves it in the deployment; `echo` stays
    /// in-process.
    pub fn builtin_invoking_functions() -> Self {
        Self::from_functions("action", BUILTIN_ROUTES, false)
    }

    /// A table from `(route key, function binary)` pairs. In-process, the workspace's binaries
    /// run as handlers ([`handler_for`]); otherwise every route invokes its function. The
    /// development `echo` route is added either way.
    pub fn from_functions<'a>(
        selection_key: &str,
        routes: impl IntoIterator<Item = (&'a str, &'a str)>,
        in_process: bool,
    ) -> Self {
        let mut table = Self::empty(selection_key);
        for (route_key, binary) in routes {
            let handler = if in_process { handler_for(binary) } else { Handler::Invoke(binary.to_owned()) };
            table.insert(route_key, handler);
        }
        table.insert("echo", Handler::Messages(Router::new().route("echo", EchoRoute)));
        table
    }

    /// A table with no routes, selecting on `selection_key`.
    pub fn empty(selection_key: &str) -> Self {
        Self { selection_key: selection_key.to_owned(), routes: BTreeMap::new(), answered: BTreeSet::new() }
    }

    /// Declares a route response for a route (as an `AWS::ApiGatewayV2::RouteResponse` does):
    /// the body its handler returns is then sent to the client as a frame. Without one, API
    /// Gateway drops the body, and so does the gateway.
    pub fn answer_with_response(&mut self, route_key: &str) {
        self.answered.insert(route_key.to_owned());
    }

    /// Whether a route sends its handler's body back to the client.
    pub fn answers_with_response(&self, route_key: &str) -> bool {
        self.answered.contains(route_key)
    }

    /// Adds or replaces a route.
    pub fn insert(&mut self, route_key: impl Into<String>, handler: Handler) {
        self.routes.insert(route_key.into(), handler);
    }

    /// Removes a route.
    pub fn remove(&mut self, route_key: &str) -> Option<Handler> {
        self.routes.remove(route_key)
    }

    /// The handler of a route key.
    pub fn get(&self, route_key: &str) -> Option<&Handler> {
        self.routes.get(route_key)
    }

    /// The route keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// Picks the route for a text frame: the selection key's value if it is a string naming a
    /// route, otherwise `$default` if there is one. `None` means API Gateway would answer
    /// `{"message":"Forbidden"}`.
    pub fn select(&self, body: &str) -> Option<(&str, &Handler)> {
        let value: Option<serde_json::Value> = serde_json::from_str(body).ok();
        let key = value.as_ref().and_then(|v| v.get(&self.selection_key)).and_then(|v| v.as_str());
        let chosen = key.filter(|k| !k.starts_with('$')).and_then(|k| self.routes.get_key_value(k));
        chosen.or_else(|| self.routes.get_key_value("$default")).map(|(k, h)| (k.as_str(), h))
    }
}

/// `echo`: answers the sender with the frame's own fields, through the Management API. Used by the
/// gateway benchmark to measure a full round trip through a handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoRoute;

#[async_trait]
impl Route for EchoRoute {
    async fn handle(&self, _ctx: &MessageContext<'_>, msg: Inbound) -> Result<Option<Outbound>, RouteError> {
        let mut fields = msg.fields;
        fields.insert("type".into(), "echo".into());
        if let Some(reference) = msg.reference {
            fields.insert("ref".into(), reference.into());
        }
        Outbound::custom(fields).map(Some).map_err(RouteError::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_like_api_gateway() {
        let table = RouteTable::builtin();
        let key = |body: &str| table.select(body).map(|(k, _)| k.to_owned());
        assert_eq!(key(r#"{"action":"chat","message":"x"}"#).as_deref(), Some("chat"));
        assert_eq!(key(r#"{"action":"ping"}"#).as_deref(), Some("ping"));
        assert_eq!(key(r#"{"action":"unknown"}"#).as_deref(), Some("$default"));
        assert_eq!(key(r#"{"action":"$connect"}"#).as_deref(), Some("$default"), "special routes are not selectable");
        assert_eq!(key(r#"{"action":5}"#).as_deref(), Some("$default"));
        assert_eq!(key("not json").as_deref(), Some("$default"));
        assert_eq!(key("[]").as_deref(), Some("$default"));
        let mut without_default = RouteTable::builtin();
        without_default.remove("$default");
        assert!(without_default.select(r#"{"action":"nope"}"#).is_none());
        assert!(without_default.select(r#"{"action":"chat"}"#).is_some());
    }
}
