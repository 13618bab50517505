//! Route selection, as API Gateway does it for a WebSocket API: a route selection expression
//! (`$request.body.action`, a nested `$request.body.message.action`, or `${...}` parts such as
//! `${request.body.service}/${request.body.action}`) evaluated on each JSON frame.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use lambda_ws::Router;

/// Which function binaries run in-process, and as what: the gateway runs a route whose
/// template function (`BuildProperties: Binary`) is listed here with its handler, and invokes any
/// other through the Lambda Invoke API.
///
/// ```
/// use lambda_ws::Router;
/// use lambda_ws_local::{Functions, Handler};
///
/// let functions = Functions::new().connect("connect").disconnect("disconnect").messages("messages", Router::builtin());
/// assert!(matches!(functions.handler("messages"), Handler::Messages(_)));
/// assert!(matches!(functions.handler("report"), Handler::Invoke(name) if name == "report"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Functions {
    handlers: BTreeMap<String, Handler>,
}

impl Functions {
    /// No in-process functions.
    pub fn new() -> Self {
        Self::default()
    }

    /// `binary` is a `$connect` function (the core handler).
    pub fn connect(self, binary: impl Into<String>) -> Self {
        self.with(binary, Handler::Connect)
    }

    /// `binary` is a `$disconnect` function (the core handler).
    pub fn disconnect(self, binary: impl Into<String>) -> Self {
        self.with(binary, Handler::Disconnect)
    }

    /// `binary` is a message function with `router`, as its `main` runs it.
    pub fn messages(self, binary: impl Into<String>, router: Router) -> Self {
        self.with(binary, Handler::Messages(router))
    }

    /// `binary` runs `handler`.
    pub fn with(mut self, binary: impl Into<String>, handler: Handler) -> Self {
        self.handlers.insert(binary.into(), handler);
        self
    }

    /// What runs for `binary`: its in-process handler, or an invocation of it.
    pub fn handler(&self, binary: &str) -> Handler {
        self.handlers.get(binary).cloned().unwrap_or_else(|| Handler::Invoke(binary.to_owned()))
    }

    /// Whether `binary` runs in-process.
    pub fn runs_in_process(&self, binary: &str) -> bool {
        self.handlers.get(binary).is_some_and(|h| !matches!(h, Handler::Invoke(_)))
    }

    /// Every router of the message functions, merged: the routes the contract lists.
    pub fn routes(&self) -> Router {
        self.handlers.values().fold(Router::new(), |all, handler| match handler {
            Handler::Messages(router) => all.merge(router),
            _ => all,
        })
    }
}

/// What runs for a route key.
#[derive(Clone)]
#[non_exhaustive]
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

/// A route selection expression refused at start-up, as API Gateway would refuse it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "route selection expression {expression:?}: {why}; API Gateway accepts $request.body.<path> or text with \
     ${{request.body.<path>}} parts, e.g. ${{request.body.service}}/${{request.body.action}}"
)]
pub struct SelectionError {
    /// The expression.
    pub expression: String,
    /// What is wrong with it.
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Body(Vec<String>),
}

/// A WebSocket API's route selection expression.
///
/// `$request.body.action` selects by the `action` field; `$request.body.message.action` by a
/// nested one; `${request.body.service}/${request.body.action}` joins several with literal text.
/// Values that are not strings are stringified (`5`, `true`); a missing or null value selects
/// nothing, so the frame goes to `$default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionExpression {
    source: String,
    parts: Vec<Part>,
}

impl SelectionExpression {
    /// `$request.body.<field>`.
    pub fn body_field(field: &str) -> Self {
        Self { source: format!("$request.body.{field}"), parts: vec![Part::Body(vec![field.to_owned()])] }
    }

    /// Parses an expression, refusing what API Gateway refuses.
    pub fn parse(text: &str) -> Result<Self, SelectionError> {
        let fail = |why| SelectionError { expression: text.to_owned(), why };
        let path = |inner: &str| -> Result<Vec<String>, SelectionError> {
            let rest =
                inner.strip_prefix("request.body.").ok_or_else(|| fail("only request.body can be selected on"))?;
            let segments: Vec<String> = rest.split('.').map(str::to_owned).collect();
            let plain =
                |s: &String| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if segments.iter().all(plain) {
                Ok(segments)
            } else {
                Err(fail("a path segment is empty or not a plain name"))
            }
        };
        if !text.contains("${") {
            let inner = text.strip_prefix('$').ok_or_else(|| fail("it selects on nothing"))?;
            return Ok(Self { source: text.to_owned(), parts: vec![Part::Body(path(inner)?)] });
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| fail("a ${ is not closed"))?;
            parts.push(Part::Body(path(&after[..end])?));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.iter().any(|p| matches!(p, Part::Text(t) if t.contains(['$', '{', '}']))) {
            return Err(fail("text between the parts may not contain $, { or }"));
        }
        Ok(Self { source: text.to_owned(), parts })
    }

    /// The route key this expression selects for a frame, if it selects one.
    pub fn evaluate(&self, body: &serde_json::Value) -> Option<String> {
        let mut key = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => key.push_str(text),
                Part::Body(path) => {
                    let value = path.iter().try_fold(body, |v, segment| v.as_object()?.get(segment))?;
                    match value {
                        serde_json::Value::Null => return None,
                        serde_json::Value::String(s) => key.push_str(s),
                        other => key.push_str(&other.to_string()),
                    }
                }
            }
        }
        Some(key)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// The routes of one WebSocket API and its route selection expression.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// What selects the route (`$request.body.action`).
    pub selection: SelectionExpression,
    routes: BTreeMap<String, Handler>,
    /// Routes with a route response: their handler's body is sent back to the client.
    answered: BTreeSet<String>,
    /// The function binary that serves each route, where known (its configuration applies).
    binaries: BTreeMap<String, String>,
}

impl RouteTable {
    /// A table from `(route key, function binary)` pairs. In-process, the binaries `functions`
    /// lists run as its handlers and any other is invoked; otherwise every route invokes its
    /// function.
    pub fn from_functions<'a>(
        selection: SelectionExpression,
        routes: impl IntoIterator<Item = (&'a str, &'a str)>,
        functions: &Functions,
        in_process: bool,
    ) -> Self {
        let mut table = Self::empty(selection);
        for (route_key, binary) in routes {
            let handler = if in_process { functions.handler(binary) } else { Handler::Invoke(binary.to_owned()) };
            table.insert(route_key, handler);
            table.binaries.insert(route_key.to_owned(), binary.to_owned());
        }
        table
    }

    /// A table with no routes, selecting with `selection`.
    pub fn empty(selection: SelectionExpression) -> Self {
        Self { selection, routes: BTreeMap::new(), answered: BTreeSet::new(), binaries: BTreeMap::new() }
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

    /// Adds or replaces a route (a replaced route no longer runs as its template's function).
    pub fn insert(&mut self, route_key: impl Into<String>, handler: Handler) {
        let route_key = route_key.into();
        self.binaries.remove(&route_key);
        self.routes.insert(route_key, handler);
    }

    /// Removes a route.
    pub fn remove(&mut self, route_key: &str) -> Option<Handler> {
        self.binaries.remove(route_key);
        self.routes.remove(route_key)
    }

    /// The function binary that serves a route, if the table was built from functions.
    pub fn binary(&self, route_key: &str) -> Option<&str> {
        self.binaries.get(route_key).map(String::as_str)
    }

    /// The handler of a route key.
    pub fn get(&self, route_key: &str) -> Option<&Handler> {
        self.routes.get(route_key)
    }

    /// The route keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// Picks the route for a text frame: the key the selection expression evaluates to if it
    /// names a route, otherwise `$default` if there is one. `None` means API Gateway would answer
    /// `{"message":"Forbidden"}`.
    pub fn select(&self, body: &str) -> Option<(&str, &Handler)> {
        let value: Option<serde_json::Value> = serde_json::from_str(body).ok();
        let key = value.as_ref().and_then(|v| self.selection.evaluate(v));
        let chosen = key.filter(|k| !k.starts_with('$')).and_then(|k| self.routes.get_key_value(k.as_str()));
        chosen.or_else(|| self.routes.get_key_value("$default")).map(|(k, h)| (k.as_str(), h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selection_expressions_as_api_gateway_reads_them() {
        let plain = SelectionExpression::parse("$request.body.action").unwrap();
        assert_eq!(plain.evaluate(&json!({"action":"chat"})).as_deref(), Some("chat"));
        assert_eq!(plain.evaluate(&json!({"action":5})).as_deref(), Some("5"), "non-strings are stringified");
        assert_eq!(plain.evaluate(&json!({"action":true})).as_deref(), Some("true"));
        assert_eq!(plain.evaluate(&json!({"action":null})), None);
        assert_eq!(plain.evaluate(&json!({"other":1})), None);
        let nested = SelectionExpression::parse("$request.body.message.action").unwrap();
        assert_eq!(nested.evaluate(&json!({"message":{"action":"say"}})).as_deref(), Some("say"));
        assert_eq!(nested.evaluate(&json!({"message":"say"})), None);
        let joined = SelectionExpression::parse("${request.body.service}/${request.body.action}").unwrap();
        assert_eq!(joined.evaluate(&json!({"service":"billing","action":"pay"})).as_deref(), Some("billing/pay"));
        assert_eq!(joined.evaluate(&json!({"service":"billing"})), None, "every part must be there");
        let one = SelectionExpression::parse("v1-${request.body.action}").unwrap();
        assert_eq!(one.evaluate(&json!({"action":"ping"})).as_deref(), Some("v1-ping"));
        for bad in [
            "$request.header.x",
            "action",
            "$request.body.",
            "$request.body.a..b",
            "${request.body.action",
            "${request.querystring.x}",
            "${request.body.a}$x",
            "",
        ] {
            assert!(SelectionExpression::parse(bad).is_err(), "{bad}");
        }
    }

    /// Routes as a template declares them: `$connect`, `$disconnect`, `$default`, `ping`, `chat`.
    fn declared() -> RouteTable {
        let routes = [("$connect", "c"), ("$disconnect", "d"), ("$default", "m"), ("ping", "m"), ("chat", "m")];
        RouteTable::from_functions(SelectionExpression::body_field("action"), routes, &Functions::new(), true)
    }

    #[test]
    fn selects_like_api_gateway() {
        let table = declared();
        let key = |body: &str| table.select(body).map(|(k, _)| k.to_owned());
        assert_eq!(key(r#"{"action":"chat","message":"x"}"#).as_deref(), Some("chat"));
        assert_eq!(key(r#"{"action":"ping"}"#).as_deref(), Some("ping"));
        assert_eq!(key(r#"{"action":"unknown"}"#).as_deref(), Some("$default"));
        assert_eq!(key(r#"{"action":"$connect"}"#).as_deref(), Some("$default"), "special routes are not selectable");
        assert_eq!(key(r#"{"action":5}"#).as_deref(), Some("$default"));
        assert_eq!(key("not json").as_deref(), Some("$default"));
        assert_eq!(key("[]").as_deref(), Some("$default"));
        assert_eq!(key(r#"{"action":"chat","message":"x"}"#).as_deref(), Some("chat"));
        let mut without_default = declared();
        without_default.remove("$default");
        assert!(without_default.select(r#"{"action":"nope"}"#).is_none());
        assert!(without_default.select(r#"{"action":"chat"}"#).is_some());
    }
}
