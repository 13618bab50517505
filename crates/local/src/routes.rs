//! Route selection, as API Gateway does it for a WebSocket API with a
//! `$request.body.<key>` selection expression.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use lambda_ws::handlers::ChatRoute;
use lambda_ws::{Inbound, MessageContext, Outbound, Route, RouteError, Router};

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
}

impl RouteTable {
    /// The routes the deployment template declares: `$connect`, `$disconnect`, `$default` (also
    /// serving `subscribe`, `unsubscribe`, `ping`), `chat`, and in development an `echo` route.
    pub fn builtin() -> Self {
        let default = Handler::Messages(Router::builtin());
        let routes = BTreeMap::from([
            ("$connect".to_owned(), Handler::Connect),
            ("$disconnect".to_owned(), Handler::Disconnect),
            ("$default".to_owned(), default.clone()),
            ("subscribe".to_owned(), default.clone()),
            ("unsubscribe".to_owned(), default.clone()),
            ("ping".to_owned(), default),
            ("chat".to_owned(), Handler::Messages(Router::new().route("chat", ChatRoute))),
            ("echo".to_owned(), Handler::Messages(Router::new().route("echo", EchoRoute))),
        ]);
        Self { selection_key: "action".to_owned(), routes }
    }

    /// The same routes, each invoking the function that serves it in the deployment: `connect`,
    /// `disconnect`, `chat`, and `default` for `$default`, `subscribe`, `unsubscribe` and `ping`.
    /// In-process-only routes (`echo`) stay in-process.
    pub fn invoking_functions(&self) -> Self {
        let mut table = self.clone();
        for (key, handler) in &mut table.routes {
            let function = match key.as_str() {
                "$connect" => "connect",
                "$disconnect" => "disconnect",
                "$default" | "subscribe" | "unsubscribe" | "ping" => "default",
                "echo" => continue,
                other => other,
            };
            *handler = Handler::Invoke(function.to_owned());
        }
        table
    }

    /// A table with no routes, selecting on `selection_key`.
    pub fn empty(selection_key: &str) -> Self {
        Self { selection_key: selection_key.to_owned(), routes: BTreeMap::new() }
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
