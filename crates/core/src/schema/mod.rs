//! The wire contract as data (feature `schema`): JSON Schema for every message, the AsyncAPI 3.0
//! document of the WebSocket API and the sender, and TypeScript declarations for browsers.
//!
//! The schemas come from the Rust types themselves (`schemars`), so the document cannot drift from
//! what the handlers accept and send. `lambda-ws schema` writes the files; the test command checks
//! that the committed ones equal freshly generated ones. `typescript` holds the TypeScript writer.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::delivery::{DeliveryReport, SEND_CONTRACT_VERSION, SendRequest, SenderQuery};
use crate::protocol::{Inbound, MAX_MESSAGE_BYTES, Outbound, OutboundMessage, builtin_type};
use crate::routing::{RouteSpec, Router};

mod typescript;
pub use typescript::typescript;

/// The AsyncAPI version the document follows.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// The contract of an application: the AsyncAPI 3.0 document and the TypeScript declarations of
/// its router's actions, the built-in messages and its own outbound message types, and the
/// sender function's request and report.
///
/// Each typed route's request type ([`TypedRoute::Request`](crate::TypedRoute::Request)) gives its
/// action's schema, so the contract lists exactly the routes the router holds, checked by the
/// same types that parse them.
///
/// ```
/// use lambda_ws::Router;
/// use lambda_ws::schema::Contract;
///
/// /// Pushed when an invoice is paid.
/// #[derive(serde::Serialize, schemars::JsonSchema)]
/// struct InvoicePaid {
///     invoice: String,
/// }
///
/// impl lambda_ws::protocol::OutboundMessage for InvoicePaid {
///     const TYPE: &'static str = "invoice_paid";
/// }
///
/// let router = Router::builtin();
/// let contract = Contract::new(&router).info("billing", "1.2.0").outbound::<InvoicePaid>();
/// let document = contract.asyncapi();
/// assert!(document.pointer("/components/messages/invoice_paid").is_some());
/// assert!(document.pointer("/components/messages/subscribe_request").is_some());
/// assert!(contract.typescript().contains("export interface InvoicePaid {"));
/// ```
#[derive(Debug, Clone)]
pub struct Contract<'r> {
    router: &'r Router,
    title: String,
    version: String,
    description: Option<String>,
    outbound: Vec<OutboundSchema>,
}

/// An application's outbound message type: its `type` and its schema function.
#[derive(Clone, Copy)]
struct OutboundSchema(&'static str, fn(&mut SchemaGenerator) -> Schema);

impl std::fmt::Debug for OutboundSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboundSchema")
    }
}

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

impl<'r> Contract<'r> {
    /// The contract of `router`'s actions, titled `lambda-ws`.
    pub fn new(router: &'r Router) -> Self {
        Self {
            router,
            title: "lambda-ws".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: None,
            outbound: Vec::new(),
        }
    }

    /// The document's title and version (your application's).
    pub fn info(mut self, title: impl Into<String>, version: impl Into<String>) -> Self {
        self.title = title.into();
        self.version = version.into();
        self
    }

    /// The document's description, before the paragraph on the wire format.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Adds an outbound message type of your own, listed as a message the server pushes under
    /// its [`OutboundMessage::TYPE`], with `type` added to its fields.
    pub fn outbound<T: OutboundMessage + JsonSchema>(mut self) -> Self {
        self.outbound.push(OutboundSchema(T::TYPE, schema_of::<T>));
        self
    }

    /// The AsyncAPI 3.0 document.
    pub fn asyncapi(&self) -> Value {
        document(self)
    }

    /// The TypeScript declarations of every schema in the document.
    pub fn typescript(&self) -> String {
        typescript(&self.asyncapi())
    }
}

/// One action of the router, as the document lists it.
struct Action {
    name: String,
    description: String,
    /// The name of its message's schema under `#/components/schemas/`.
    schema: String,
    answers: Vec<String>,
}

/// The schema of one action's message: the envelope (`action`, `ref`) and the request's fields.
fn action_schema(action: &str, description: &str, request: Option<Value>, schemas: &Map<String, Value>) -> Value {
    let mut properties = Map::new();
    properties.insert("action".into(), json!({ "const": action }));
    properties
        .insert("ref".into(), json!({ "description": "Correlation id, echoed on the answer.", "type": "string" }));
    let mut out = json!({ "type": "object", "required": ["action"], "additionalProperties": true });
    if !description.is_empty() {
        out["description"] = json!(description);
    }
    let resolved = request.as_ref().map(|r| match referenced(r) {
        Some(name) => schemas.get(name).cloned().unwrap_or(Value::Null),
        None => r.clone(),
    });
    match resolved {
        // A plain object (a struct): its fields join the envelope's.
        Some(object) if object.get("type") == Some(&json!("object")) && object.get("allOf").is_none() => {
            if let Some(fields) = object.get("properties").and_then(Value::as_object) {
                properties.extend(fields.clone());
            }
            if let (Some(required), Some(all)) =
                (object.get("required").and_then(Value::as_array), out["required"].as_array_mut())
            {
                all.extend(required.iter().cloned());
            }
            if let Some(additional) = object.get("additionalProperties") {
                out["additionalProperties"] = additional.clone();
            }
        }
        // Anything else (an enum, a flattened type): the envelope and the request, both.
        Some(_) => {
            if let Some(request) = request {
                out["allOf"] = json!([request]);
            }
        }
        None => {}
    }
    out["properties"] = Value::Object(properties);
    out
}

/// The name of the definition a `{"$ref": "#/components/schemas/<name>"}` schema points to.
fn referenced(schema: &Value) -> Option<&str> {
    schema.get("$ref").and_then(Value::as_str).and_then(|target| target.rsplit('/').next())
}

/// An application's message schema with its constant `type` added (to its definition, when it
/// has one), as [`Outbound::message`] adds it on the wire.
fn with_type(type_name: &str, schema: Value, schemas: &mut Map<String, Value>) -> Value {
    let definition = referenced(&schema).map(str::to_owned);
    let add = |object: &mut Value| {
        if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
            properties.insert("type".into(), json!({ "const": type_name }));
        } else if let Some(map) = object.as_object_mut() {
            map.insert("properties".into(), json!({ "type": { "const": type_name } }));
        }
        match object.get_mut("required").and_then(Value::as_array_mut) {
            Some(required) => required.insert(0, json!("type")),
            None => object["required"] = json!(["type"]),
        }
    };
    match definition.and_then(|name| schemas.get_mut(&name)) {
        Some(object) => {
            add(object);
            schema
        }
        None => {
            let mut inline = schema;
            add(&mut inline);
            inline
        }
    }
}

/// Components and messages in draft-07 JSON Schema, referenced from `#/components/schemas/`.
struct Schemas {
    schemas: Map<String, Value>,
    actions: Vec<Action>,
    /// `(type, description, payload)` of every outbound message, the custom one last.
    outbound: Vec<(String, String, Value)>,
}

fn schemas(contract: &Contract<'_>) -> Schemas {
    let mut generator = SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let _ = generator.subschema_for::<Outbound>();
    let _ = generator.subschema_for::<Inbound>();
    let _ = generator.subschema_for::<SendRequest>();
    let _ = generator.subschema_for::<DeliveryReport>();
    let _ = generator.subschema_for::<SenderQuery>();
    let _ = generator.subschema_for::<crate::history::ChannelHistory>();
    let _ = generator.subschema_for::<crate::presence::ChannelPresence>();
    let own: Vec<(&str, Value)> = contract.outbound.iter().map(|o| (o.0, o.1(&mut generator).to_value())).collect();
    let specs: Vec<(String, RouteSpec, Option<Value>)> = contract
        .router
        .specs()
        .map(|(action, spec)| {
            let request = spec.request.map(|f| f(&mut generator).to_value());
            (action.to_owned(), spec, request)
        })
        .collect();
    let mut schemas = generator.take_definitions(true);
    let own: Vec<Value> =
        own.into_iter().map(|(type_name, schema)| with_type(type_name, schema, &mut schemas)).collect();
    let mut actions = Vec::new();
    for (name, spec, request) in specs {
        let mut schema_name = request_name(&name);
        if schemas.contains_key(&schema_name) {
            // A request type of the same name (`PayRequest` for `pay`) keeps its name.
            schema_name = schema_name.replace("Request", "Action");
        }
        let schema = action_schema(&name, &spec.description, request, &schemas);
        schemas.insert(schema_name.clone(), schema);
        actions.push(Action { name, description: spec.description, schema: schema_name, answers: spec.answers });
    }
    let variants = schemas.get("Outbound").and_then(|o| o.get("anyOf")).and_then(Value::as_array).cloned();
    let mut variants = variants.unwrap_or_default();
    // Your own types, before the catch-all custom message.
    let custom_at = variants.len().saturating_sub(1);
    for (i, reference) in own.into_iter().enumerate() {
        variants.insert(custom_at + i, reference);
    }
    // Any message may be sent to a channel with history: its copies carry their place there.
    for variant in &mut variants {
        // `{"$ref"}`, or `{"allOf": [{"$ref"}], "properties": {"type"}}` for a built-in type.
        let type_name = variant.pointer("/properties/type/const").and_then(Value::as_str).map(str::to_owned);
        let name = referenced(variant).or_else(|| variant.pointer("/allOf/0").and_then(referenced)).map(str::to_owned);
        let Some(definition) = name.and_then(|name| schemas.get_mut(&name)) else { continue };
        let type_name = type_name
            .or_else(|| definition.pointer("/properties/type/const").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        // Presence events take no number: they are not stream messages (nor is a replay frame,
        // whose messages carry their own).
        if builtin_type(&type_name).is_some_and(|b| !b.stream) || type_name.is_empty() {
            continue;
        }
        if let Some(properties) = definition.get_mut("properties").and_then(Value::as_object_mut) {
            for (name, schema) in stream_properties() {
                properties.entry(name).or_insert(schema);
            }
        }
    }
    let outbound = variants
        .into_iter()
        .map(|variant| {
            let resolved = referenced(&variant).and_then(|name| schemas.get(name)).cloned();
            let described = resolved.as_ref().unwrap_or(&variant);
            let type_name = described
                .pointer("/properties/type/const")
                .or_else(|| described.pointer("/properties/type/enum/0"))
                .and_then(Value::as_str)
                .unwrap_or("custom")
                .to_owned();
            let description = described.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
            (type_name, description, variant)
        })
        .collect();
    Schemas { schemas, actions, outbound }
}

/// The fields a message sent to a channel with history carries (see [`crate::history`]).
fn stream_properties() -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(
        "channel".into(),
        json!({ "type": "string", "description": "Set on copies sent to a channel with history: the channel." }),
    );
    fields.insert(
        "seq".into(),
        json!({ "type": "integer", "minimum": 1, "description": "With `channel`: the message's number in the channel's stream (resume with the last one seen)." }),
    );
    fields.insert(
        "epoch".into(),
        json!({ "type": "string", "description": "With `channel`: the stream `seq` belongs to." }),
    );
    fields
}

/// `subscribe` → `SubscribeRequest`, `chat_message` → `ChatMessageRequest`.
fn request_name(action: &str) -> String {
    let mut name: String = action
        .split(|c: char| !c.is_ascii_alphanumeric())
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    name.push_str("Request");
    name
}

/// The AsyncAPI 3.0 document of `contract`: the WebSocket API (what browsers send and receive)
/// and the sender function's request and report.
fn document(contract: &Contract<'_>) -> Value {
    let Schemas { schemas, actions, outbound } = schemas(contract);
    let mut messages = Map::new();
    let mut socket_messages = Map::new();
    let mut operations = Map::new();
    let reference = |name: &str| json!({ "$ref": format!("#/channels/socket/messages/{name}") });
    for Action { name: action, description, schema, answers } in &actions {
        let name = format!("{action}_request");
        messages.insert(
            name.clone(),
            json!({
                "name": name,
                "title": format!("{action} (browser → server)"),
                "summary": description,
                "payload": { "$ref": format!("#/components/schemas/{schema}") },
            }),
        );
        socket_messages.insert(name.clone(), json!({ "$ref": format!("#/components/messages/{name}") }));
        operations.insert(
            format!("receive_{action}"),
            json!({
                "action": "receive",
                "title": format!("Handle `{action}`"),
                "summary": description,
                "channel": { "$ref": "#/channels/socket" },
                "messages": [reference(&name)],
                "reply": {
                    "channel": { "$ref": "#/channels/socket" },
                    "messages": answers.iter().map(|a| reference(a)).collect::<Vec<_>>(),
                },
            }),
        );
    }
    messages.insert(
        "inbound".into(),
        json!({
            "name": "inbound",
            "title": "Any action (browser → server)",
            "summary": "The envelope every inbound message follows; `action` selects the route, `handler` a sub-handler.",
            "payload": { "$ref": "#/components/schemas/Inbound" },
        }),
    );
    socket_messages.insert("inbound".into(), json!({ "$ref": "#/components/messages/inbound" }));
    operations.insert(
        "receive_action".into(),
        json!({
            "action": "receive",
            "title": "Handle an application route",
            "summary": "A route of your own; unknown actions are answered with an `unknown_action` error.",
            "channel": { "$ref": "#/channels/socket" },
            "messages": [reference("inbound")],
        }),
    );
    let mut pushed = Vec::new();
    for (name, description, payload) in &outbound {
        messages.insert(
            name.clone(),
            json!({ "name": name, "title": format!("{name} (server → browser)"), "summary": description, "payload": payload }),
        );
        socket_messages.insert(name.clone(), json!({ "$ref": format!("#/components/messages/{name}") }));
        pushed.push(reference(name));
    }
    operations.insert(
        "push".into(),
        json!({
            "action": "send",
            "title": "Push a message to connections",
            "summary": "Sent through the Management API to a connection, a user, channels, a filter or everyone.",
            "channel": { "$ref": "#/channels/socket" },
            "messages": pushed,
        }),
    );
    messages.insert(
        "send_request".into(),
        json!({
            "name": "send_request",
            "title": format!("Sender request (version {SEND_CONTRACT_VERSION})"),
            "summary": "What other code passes to the sender function (also one per SQS message body, or a JSON array of them).",
            "payload": { "$ref": "#/components/schemas/SendRequest" },
        }),
    );
    messages.insert(
        "delivery_report".into(),
        json!({
            "name": "delivery_report",
            "title": "Delivery report",
            "summary": "The sender's answer to one request.",
            "payload": { "$ref": "#/components/schemas/DeliveryReport" },
        }),
    );
    messages.insert(
        "sender_query".into(),
        json!({
            "name": "sender_query",
            "title": "Sender query",
            "summary": "Instead of a send: read a channel's history or presence (answered with ChannelHistory or ChannelPresence).",
            "payload": { "$ref": "#/components/schemas/SenderQuery" },
        }),
    );
    let wire = format!(
        "Browsers connect with a single-use token and send flat JSON routed by `action`; the server pushes flat \
         JSON discriminated by `type`. Every message is at most {MAX_MESSAGE_BYTES} bytes. Generated from the \
         Rust types (lambda-ws `schema::Contract`)."
    );
    let description = match &contract.description {
        Some(text) => format!("{text}\n\n{wire}"),
        None => format!("Real-time WebSockets on AWS Lambda behind an API Gateway WebSocket API. {wire}"),
    };
    json!({
        "asyncapi": ASYNCAPI_VERSION,
        "info": { "title": contract.title, "version": contract.version, "description": description },
        "defaultContentType": "application/json",
        "servers": {
            "aws": {
                "host": "{apiId}.execute-api.{region}.amazonaws.com",
                "pathname": "/{stage}",
                "protocol": "wss",
                "description": "The deployed WebSocket API (the stack's WebSocketUrl output).",
                "variables": {
                    "apiId": { "description": "The WebSocket API id." },
                    "region": { "description": "The AWS region.", "default": "eu-west-1" },
                    "stage": { "description": "The stage.", "default": "prod" },
                },
            },
            "local": {
                "host": "127.0.0.1:3001",
                "pathname": "/local",
                "protocol": "ws",
                "description": "The local gateway, `lambda-ws dev`.",
            },
            "sender": {
                "host": "lambda.{region}.amazonaws.com",
                "protocol": "https",
                "description": "The Lambda Invoke API: other code invokes the sender function (the stack's SenderFunctionArn output).",
                "variables": { "region": { "description": "The AWS region.", "default": "eu-west-1" } },
            },
        },
        "channels": {
            "socket": {
                "address": "/",
                "title": "A browser's WebSocket connection",
                "description": "Open `wss://<api>/<stage>?ws_token=<token>&channel=<name>` with a token from `POST /ws-token`. \
                                $connect answers 400 (malformed), 401 (token missing, invalid, expired or used), \
                                403 (origin, API or channel refused) or 429 (rate limited) instead of upgrading.",
                "servers": [{ "$ref": "#/servers/aws" }, { "$ref": "#/servers/local" }],
                "messages": socket_messages,
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "properties": {
                                "ws_token": { "type": "string", "description": "A connect token (single use, short-lived)." },
                                "channel": { "$ref": "#/components/schemas/ChannelName" },
                            },
                        },
                        "bindingVersion": "0.1.0",
                    },
                },
            },
            "sender": {
                "address": "sender",
                "title": "The sender function",
                "description": "Invoke it (RequestResponse for the report, Event to queue) or send to its SQS queue.",
                "servers": [{ "$ref": "#/servers/sender" }],
                "messages": {
                    "send_request": { "$ref": "#/components/messages/send_request" },
                    "delivery_report": { "$ref": "#/components/messages/delivery_report" },
                },
            },
        },
        "operations": Value::Object({
            let mut all = operations;
            all.insert(
                "send".into(),
                json!({
                    "action": "receive",
                    "title": "Deliver a message to a target",
                    "channel": { "$ref": "#/channels/sender" },
                    "messages": [{ "$ref": "#/channels/sender/messages/send_request" }],
                    "reply": {
                        "channel": { "$ref": "#/channels/sender" },
                        "messages": [{ "$ref": "#/channels/sender/messages/delivery_report" }],
                    },
                }),
            );
            all
        }),
        "components": { "schemas": schemas, "messages": messages },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{MessageContext, RouteError, TypedRoute};

    fn builtin() -> Value {
        Contract::new(&Router::builtin()).asyncapi()
    }

    #[test]
    fn every_outbound_type_and_action_is_a_message() {
        let doc = builtin();
        let messages = doc.pointer("/components/messages").and_then(Value::as_object).cloned().unwrap_or_default();
        for name in
            crate::protocol::BUILTIN_TYPES.iter().chain(&["custom", "inbound", "send_request", "delivery_report"])
        {
            assert!(messages.contains_key(*name), "{name}");
        }
        for action in ["subscribe", "unsubscribe", "ping"] {
            assert!(messages.contains_key(&format!("{action}_request")), "{action}");
            assert!(doc.pointer(&format!("/operations/receive_{action}/reply")).is_some());
        }
        assert_eq!(doc.pointer("/components/schemas/SubscribeRequest/required"), Some(&json!(["action", "channel"])));
        assert_eq!(doc["asyncapi"], "3.0.0");
    }

    /// `{"action":"pay","invoice":"inv-1","amount_cents":1200}`
    #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Pay {
        /// The invoice.
        invoice: String,
        /// What to pay, in cents.
        amount_cents: u64,
    }

    #[derive(Debug)]
    struct PayRoute;

    #[async_trait::async_trait]
    impl TypedRoute for PayRoute {
        type Request = Pay;
        fn description(&self) -> &str {
            "Pay an invoice."
        }
        fn answers(&self) -> &[&str] {
            &["invoice_paid", "error"]
        }
        async fn handle(&self, _: &MessageContext<'_>, _: Pay) -> Result<Option<Outbound>, RouteError> {
            Ok(None)
        }
    }

    /// Pushed when an invoice is paid.
    #[derive(serde::Serialize, schemars::JsonSchema)]
    struct InvoicePaid {
        invoice: String,
    }

    impl OutboundMessage for InvoicePaid {
        const TYPE: &'static str = "invoice_paid";
    }

    #[test]
    fn an_apps_routes_and_messages_are_in_its_contract() {
        let router = Router::builtin().typed("pay", PayRoute);
        let contract = Contract::new(&router).info("billing", "2.0.0").outbound::<InvoicePaid>();
        let doc = contract.asyncapi();
        assert_eq!(doc.pointer("/info/title"), Some(&json!("billing")));
        let pay = doc.pointer("/components/schemas/PayRequest").cloned().unwrap_or_default();
        assert_eq!(pay["required"], json!(["action", "invoice", "amount_cents"]));
        assert_eq!(pay.pointer("/properties/amount_cents/minimum"), Some(&json!(0)));
        assert_eq!(pay["description"], "Pay an invoice.");
        let answers = doc.pointer("/operations/receive_pay/reply/messages").cloned().unwrap_or_default();
        assert_eq!(
            answers,
            json!([{"$ref": "#/channels/socket/messages/invoice_paid"}, {"$ref": "#/channels/socket/messages/error"}])
        );
        let pushed = doc.pointer("/components/messages/invoice_paid/payload/$ref").cloned();
        assert_eq!(pushed, Some(json!("#/components/schemas/InvoicePaid")));
        let ts = contract.typescript();
        assert!(ts.contains("export interface PayRequest {"), "{ts}");
        assert!(ts.contains("  amount_cents: number;\n"), "{ts}");
        let paid = ts.split("export interface InvoicePaid {").nth(1).and_then(|rest| rest.split('}').next());
        let paid = paid.unwrap_or_default();
        assert!(paid.contains("invoice: string;") && paid.contains("type: \"invoice_paid\""), "{ts}");
        assert!(paid.contains("seq?: number;"), "a message sent to a channel with history carries its place: {ts}");
        assert!(!builtin().to_string().contains("invoice"), "another router's contract does not list them");
    }

    #[test]
    fn typescript_follows_the_schemas() {
        let ts = typescript(&builtin());
        assert!(ts.contains("export type Level = \"success\" | \"info\" | \"warning\" | \"error\";"), "{ts}");
        assert!(ts.contains("export interface Toast {"));
        assert!(ts.contains("  level: Level;\n"));
        assert!(ts.contains("  title?: string | null;\n"));
        assert!(ts.contains("type: \"toast\""));
        assert!(ts.contains("export interface SubscribeRequest {"));
        assert!(ts.contains("  [field: string]: unknown;\n"), "open envelopes");
        assert!(!ts.contains("unknown[]unknown"));
    }
}
