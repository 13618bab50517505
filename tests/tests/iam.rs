//! Least privilege, checked against the code: each function's handler runs its cases through a
//! DynamoDB client that records every operation it sends (an SDK interceptor), and the recorded
//! actions must equal the DynamoDB actions that function's policy in `template.yaml` grants: a
//! handler that starts using an action its policy lacks fails here, and so does a policy that
//! grants one its handler never uses. Index access is granted only to functions that query one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemInput;
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemInput;
use aws_sdk_dynamodb::operation::get_item::GetItemInput;
use aws_sdk_dynamodb::operation::put_item::PutItemInput;
use aws_sdk_dynamodb::operation::query::QueryInput;
use aws_sdk_dynamodb::operation::scan::ScanInput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_ws::clock::{Clock as _, ManualClock};
use lambda_ws::handlers::{self, TokenRequest};
use lambda_ws::policy::OriginPolicy;
use lambda_ws::{App, Config, DynamoDbStore, Identity, Router};
use lambda_ws_e2e::{Events, MgmtServer, dynamodb_client, fresh_dynamodb_store, management_api};
use serde_json::json;
use yaml_rust2::Yaml;

const ORIGIN: &str = "https://app.example.com";

/// What a handler asked DynamoDB to do: `dynamodb:<Operation>` (from the operation's input type),
/// whether it queried an index, and the prefixes (`conn#*`) of the table partition keys it
/// touched (what `dynamodb:LeadingKeys` conditions on).
#[derive(Debug, Clone, Default)]
struct Recorded(Arc<Mutex<Used>>);

/// Actions, whether an index was queried, partition-key prefixes.
type Used = (BTreeSet<String>, bool, BTreeSet<String>);

/// `conn#*` for a partition key `conn#abc=`.
fn key_prefix(pk: Option<&AttributeValue>) -> String {
    let pk = pk.and_then(|v| v.as_s().ok()).map(String::as_str).unwrap_or("(no pk)");
    pk.split_once('#').map_or_else(|| pk.to_owned(), |(prefix, _)| format!("{prefix}#*"))
}

impl Intercept for Recorded {
    fn name(&self) -> &'static str {
        "RecordOperations"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        let mut keys: Vec<String> = Vec::new();
        let operation = if let Some(get) = input.downcast_ref::<GetItemInput>() {
            keys.push(key_prefix(get.key().and_then(|k| k.get("pk"))));
            "GetItem"
        } else if let Some(put) = input.downcast_ref::<PutItemInput>() {
            keys.push(key_prefix(put.item().and_then(|k| k.get("pk"))));
            "PutItem"
        } else if let Some(update) = input.downcast_ref::<UpdateItemInput>() {
            keys.push(key_prefix(update.key().and_then(|k| k.get("pk"))));
            "UpdateItem"
        } else if let Some(delete) = input.downcast_ref::<DeleteItemInput>() {
            keys.push(key_prefix(delete.key().and_then(|k| k.get("pk"))));
            "DeleteItem"
        } else if let Some(batch) = input.downcast_ref::<BatchWriteItemInput>() {
            for request in batch.request_items().into_iter().flat_map(|items| items.values().flatten()) {
                let pk = match (request.put_request(), request.delete_request()) {
                    (Some(put), _) => put.item().get("pk"),
                    (_, Some(delete)) => delete.key().get("pk"),
                    _ => None,
                };
                keys.push(key_prefix(pk));
            }
            "BatchWriteItem"
        } else if input.downcast_ref::<BatchGetItemInput>().is_some() {
            "BatchGetItem"
        } else if input.downcast_ref::<ScanInput>().is_some() {
            "Scan"
        } else if let Some(query) = input.downcast_ref::<QueryInput>() {
            if query.index_name().is_some() {
                self.0.lock().unwrap().1 = true;
            } else {
                keys.push(key_prefix(query.expression_attribute_values().and_then(|v| v.get(":pk"))));
            }
            "Query"
        } else {
            "an operation this test does not know (add it)"
        };
        let mut recorded = self.0.lock().unwrap();
        recorded.0.insert(format!("dynamodb:{operation}"));
        recorded.2.extend(keys);
        Ok(())
    }
}

impl Recorded {
    fn actions(&self) -> Used {
        self.0.lock().unwrap().clone()
    }
}

/// A Management API client that records which `@connections` methods it calls.
#[derive(Debug)]
struct Methods {
    inner: Arc<lambda_ws::ManagementApi>,
    methods: Arc<Mutex<BTreeSet<String>>>,
}

#[lambda_ws::async_trait]
impl lambda_ws::delivery::Transport for Methods {
    async fn post(
        &self,
        endpoint: &str,
        connection: &lambda_ws::ConnectionId,
        payload: bytes::Bytes,
    ) -> Result<(), lambda_ws::delivery::TransportError> {
        self.methods.lock().unwrap().insert("POST".into());
        self.inner.post(endpoint, connection, payload).await
    }

    async fn get_connection(
        &self,
        endpoint: &str,
        connection: &lambda_ws::ConnectionId,
    ) -> Result<lambda_ws::delivery::ConnectionInfo, lambda_ws::delivery::TransportError> {
        self.methods.lock().unwrap().insert("GET".into());
        self.inner.get_connection(endpoint, connection).await
    }

    async fn disconnect(
        &self,
        endpoint: &str,
        connection: &lambda_ws::ConnectionId,
    ) -> Result<(), lambda_ws::delivery::TransportError> {
        self.methods.lock().unwrap().insert("DELETE".into());
        self.inner.disconnect(endpoint, connection).await
    }
}

/// One function's world: a fresh table, an app whose store records what it sends, and a plain
/// store over the same table to set the scene with.
struct Function {
    recorded: Recorded,
    /// The `@connections` methods the recorded app called (the setup app's calls are not kept).
    methods: Arc<Mutex<BTreeSet<String>>>,
    app: App,
    setup: App,
    server: MgmtServer,
    events: Events,
    clock: Arc<ManualClock>,
}

impl Function {
    async fn new() -> Self {
        let plain = fresh_dynamodb_store().await;
        let recorded = Recorded::default();
        let conf = dynamodb_client().config().to_builder().interceptor(recorded.clone()).build();
        let store = Arc::new(DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(conf), plain.table()));
        let config = Config {
            allowed_origins: OriginPolicy::parse(ORIGIN).unwrap(),
            max_connections_per_user: 2,
            // Channels with history: sends to them append to their streams, subscribes read them.
            history: lambda_ws::history::HistoryRules::parse("lobby=10/5m; news=10/5m").unwrap(),
            // Channels with presence: joins and leaves are counted there and announced.
            presence: lambda_ws::presence::PresenceRules::parse("lobby; news").unwrap(),
            rate_limits: lambda_ws::config::RateLimits {
                messages_per_connection: 5,
                ..lambda_ws::config::RateLimits::default()
            },
            ..Config::default()
        };
        let clock = Arc::new(ManualClock::at(lambda_ws::clock::unix_now_millis()));
        let server = MgmtServer::start().await;
        let methods = Arc::new(Mutex::new(BTreeSet::new()));
        let transport = Arc::new(Methods { inner: management_api(), methods: methods.clone() });
        let app = App::new(config.clone(), store, transport).with_clock(clock.clone());
        let setup = App::new(config, plain, management_api()).with_clock(clock.clone());
        let events = Events::for_server(&server);
        Self { recorded, methods, app, setup, server, events, clock }
    }

    async fn token(&self, app: &App, user: &str, channel: Option<&str>) -> String {
        let request = TokenRequest {
            identity: Some(Identity::user(user)),
            origin: Some(ORIGIN.into()),
            csrf_header: true,
            channel: channel.map(str::to_owned),
        };
        let answer = handlers::issue_token(app, request).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["token"].as_str().unwrap().to_owned()
    }

    /// Connects `id` as `user` into `channel`, through the plain app (not recorded).
    async fn connected(&self, id: &str, user: &str, channel: &str) {
        let token = self.token(&self.setup, user, None).await;
        let mut event =
            self.events.connect(id, &[("ws_token", Some(&token)), ("channel", Some(channel))], Some(ORIGIN));
        event.request_context.connected_at = self.clock.now_millis();
        assert_eq!(handlers::connect(&self.setup, &event).await.status_code, 200);
    }

    async fn message(&self, router: &Router, id: &str, body: serde_json::Value) {
        let event = self.events.message(id, &body.to_string());
        assert_eq!(handlers::message(&self.app, router, &event).await.status_code, 200);
    }
}

/// Runs every case of one function's handler and returns what it asked DynamoDB to do.
async fn exercise(binary: &str) -> Used {
    let f = Function::new().await;
    exercise_with(&f, binary).await
}

/// Runs every case of one function's handler on `f`.
async fn exercise_with(f: &Function, binary: &str) -> Used {
    match binary {
        "issue_token" => {
            f.token(&f.app, "ann", None).await;
            f.token(&f.app, "ann", Some("room-1")).await;
        }
        "connect" => {
            // A member whose connection is gone: announcing ann's arrival finds it and removes it.
            f.connected("g1", "bob", "lobby").await;
            f.server.set_gone("g1");
            for (n, channel) in ["lobby", "news", "lobby"].into_iter().enumerate() {
                let token = f.token(&f.setup, "ann", None).await;
                let query = [("ws_token", Some(token.as_str())), ("channel", Some(channel))];
                let status = handlers::connect(&f.app, &f.events.connect(&format!("c{n}"), &query, Some(ORIGIN))).await;
                assert_eq!(status.status_code, if n < 2 { 200 } else { 429 }, "the third is over the user's limit");
            }
            f.clock.advance(3 * 3600 * 1000);
            let token = f.token(&f.setup, "ann", None).await;
            let event = f.events.connect("c9", &[("ws_token", Some(&token))], Some(ORIGIN));
            assert_eq!(handlers::connect(&f.app, &event).await.status_code, 200, "expired slots are reclaimed");
        }
        "disconnect" => {
            // In its connect channel only; in a channel joined later too; unknown. Bob stays in
            // the lobby, so ann's leaving is announced to him.
            f.connected("d0", "bob", "lobby").await;
            f.connected("d1", "ann", "lobby").await;
            assert_eq!(handlers::disconnect(&f.app, &f.events.disconnect("d1")).await.status_code, 200);
            f.connected("d2", "ann", "lobby").await;
            let subscribe = json!({"action":"subscribe","channel":"news"}).to_string();
            let event = f.events.message("d2", &subscribe);
            assert_eq!(handlers::message(&f.setup, &Router::builtin(), &event).await.status_code, 200);
            assert_eq!(handlers::disconnect(&f.app, &f.events.disconnect("d2")).await.status_code, 200);
            assert_eq!(handlers::disconnect(&f.app, &f.events.disconnect("d9")).await.status_code, 200);
        }
        "default" | "chat" => {
            let router = if binary == "default" {
                lambda_ws_functions::default_router()
            } else {
                lambda_ws_functions::chat_router()
            };
            f.connected("m1", "ann", "lobby").await;
            f.connected("m2", "bob", "lobby").await;
            if binary == "default" {
                f.message(&router, "m1", json!({"action":"ping"})).await;
                f.message(&router, "m1", json!({"action":"subscribe","channel":"news"})).await;
                f.message(&router, "m1", json!({"action":"subscribe","channel":"news"})).await;
                f.message(&router, "m1", json!({"action":"unsubscribe","channel":"news"})).await;
                // From another connection: m1's messages are counted up to its limit of 5.
                f.connected("m3", "cat", "lobby").await;
                f.message(&router, "m3", json!({"action":"presence","channel":"lobby"})).await;
            }
            f.server.set_gone("m2");
            f.message(&router, "m1", json!({"action":"chat","message":"hi"})).await;
            for _ in 0..5 {
                f.message(&router, "m1", json!({"action":"chat","message":"over the limit"})).await;
            }
        }
        "sender" => {
            f.connected("s1", "ann", "lobby").await;
            f.connected("s2", "bob", "news").await;
            f.server.set_gone("s2");
            let message = json!({"type":"system","level":"info","message":"m"});
            for target in [
                json!({"connection":"s1"}),
                json!({"user":"ann"}),
                json!({"channel":"lobby"}),
                json!({"channels":["lobby","news"]}),
                json!("all"),
                json!({"filter":{"channel_prefix":"lo"}}),
            ] {
                handlers::send(&f.app, json!({"target": target, "message": message})).await;
            }
            // Closing a user's sessions: the close mark on the user item, DELETE on each connection.
            f.connected("s3", "cat", "lobby").await;
            handlers::send(&f.app, json!({"target": {"user": "cat"}, "close": true})).await;
        }
        "cleanup" => {
            f.connected("x1", "ann", "lobby").await;
            f.token(&f.setup, "ann", None).await;
            // A minute past the session's (and its presence entry's) expiry.
            f.clock.advance((2 * 3600 + 600 + 60) * 1000);
            // Bob, there now, is told that ann (expired) left.
            f.connected("x2", "bob", "lobby").await;
            handlers::cleanup(&f.app).await.unwrap();
        }
        other => panic!("no cases for {other}: add them here"),
    }
    f.recorded.actions()
}

/// Each function's grants in `template.yaml`: its DynamoDB actions, whether it may read the
/// indexes, the partition-key prefixes its table statements allow (`dynamodb:LeadingKeys`), and
/// the `@connections` methods it may call.
struct Grant {
    actions: BTreeSet<String>,
    indexes: bool,
    leading_keys: BTreeSet<String>,
    methods: BTreeSet<String>,
}

/// A template of the repository, by its path from the repository's root.
fn template(path: &str) -> Yaml {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    yaml_rust2::YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap()).unwrap().remove(0)
}

/// The `@connections` methods a managed policy of the template allows (`POST` from
/// `.../${StageName}/POST/@connections/*`).
fn connection_methods(doc: &Yaml, policy: &str) -> BTreeSet<String> {
    let statements = doc["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"].as_vec().cloned();
    let mut methods = BTreeSet::new();
    for statement in statements.unwrap_or_default() {
        let text = format!("{:?}", statement["Resource"]);
        for method in ["GET", "POST", "DELETE", "*"] {
            if text.contains(&format!("/{method}/@connections/")) {
                methods.insert(method.to_owned());
            }
        }
    }
    methods
}

fn granted(path: &str) -> BTreeMap<String, Grant> {
    let doc = template(path);
    let mut functions = BTreeMap::new();
    for (_, resource) in doc["Resources"].as_hash().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap().to_owned();
        let policies = resource["Properties"]["Policies"].as_vec().cloned().unwrap_or_default();
        assert!(
            policies.iter().all(|p| p["DynamoDBCrudPolicy"].is_badvalue() && p["DynamoDBReadPolicy"].is_badvalue()),
            "{binary}: no whole-table SAM policy templates"
        );
        let (mut actions, mut indexes, mut leading_keys, mut methods) =
            (BTreeSet::new(), false, BTreeSet::new(), BTreeSet::new());
        for policy in &policies {
            // `!Ref ManageConnectionsPolicy` reads as the plain name (the tag is dropped).
            if let Some(name) = policy.as_str().or_else(|| policy["Ref"].as_str()) {
                methods.extend(connection_methods(&doc, name));
            }
        }
        for statement in policies.iter().flat_map(|p| p["Statement"].as_vec().cloned().unwrap_or_default()) {
            let listed = match &statement["Action"] {
                Yaml::Array(list) => list.iter().filter_map(Yaml::as_str).map(str::to_owned).collect(),
                Yaml::String(one) => vec![one.clone()],
                _ => Vec::new(),
            };
            let dynamodb: Vec<String> = listed.into_iter().filter(|a| a.starts_with("dynamodb:")).collect();
            if dynamodb.is_empty() {
                continue;
            }
            assert!(dynamodb.iter().all(|a| !a.contains('*')), "{binary}: no wildcard actions");
            actions.extend(dynamodb);
            let resources = format!("{:?}", statement["Resource"]);
            if resources.contains("/index/") {
                indexes = true;
                assert!(
                    statement["Action"]
                        .as_vec()
                        .is_some_and(|a| a.iter().all(|a| a.as_str() == Some("dynamodb:Query"))),
                    "{binary}: an index statement grants Query only"
                );
                continue;
            }
            // Every table statement names the key prefixes it may touch.
            let keys = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"].as_vec();
            let keys = keys.unwrap_or_else(|| panic!("{binary}: a table statement without dynamodb:LeadingKeys"));
            leading_keys.extend(keys.iter().filter_map(Yaml::as_str).map(str::to_owned));
        }
        functions.insert(binary, Grant { actions, indexes, leading_keys, methods });
    }
    functions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_is_granted_exactly_the_dynamodb_actions_its_handler_uses() {
    let granted = granted("template.yaml");
    assert_eq!(granted.len(), 7, "{:?}", granted.keys());
    let mut mismatches = Vec::new();
    for (binary, grant) in &granted {
        let (used, index_used, keys_used) = exercise(binary).await;
        if used != grant.actions || index_used != grant.indexes {
            mismatches.push(format!(
                "{binary}: handler uses {used:?} (indexes: {index_used}); template grants {:?} (indexes: {})",
                grant.actions, grant.indexes
            ));
        }
        if keys_used != grant.leading_keys {
            mismatches.push(format!(
                "{binary}: handler touches keys {keys_used:?}; template's dynamodb:LeadingKeys are {:?}",
                grant.leading_keys
            ));
        }
    }
    assert!(mismatches.is_empty(), "template.yaml and the handlers disagree:\n{}", mismatches.join("\n"));
}

/// The `@connections` methods each function may call are those its handler calls: every function
/// that reaches connections only posts (replies, fan-outs, presence events), so none may read or
/// close one. Recorded from the requests the real SDK client sends to the test Management API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_may_call_exactly_the_connection_methods_its_handler_uses() {
    let granted = granted("template.yaml");
    let mut mismatches = Vec::new();
    for (binary, grant) in &granted {
        let used = connection_methods_used(binary).await;
        if used != grant.methods {
            mismatches.push(format!("{binary}: handler calls {used:?}; template grants {:?}", grant.methods));
        }
    }
    assert!(mismatches.is_empty(), "template.yaml and the handlers disagree:\n{}", mismatches.join("\n"));
}

/// The invoices example's functions run the same handlers as the repository's (its messages
/// function the built-in actions plus routes that read the session and fan out, as `default`
/// does), so its template grants each exactly what the repository's grants the same handler:
/// actions, index access, key prefixes and `@connections` methods.
#[test]
fn the_invoices_template_grants_what_the_same_handlers_use() {
    let root = granted("template.yaml");
    let invoices = granted("examples/invoices/template.yaml");
    let same = [
        ("invoices-connect", "connect"),
        ("invoices-disconnect", "disconnect"),
        ("invoices-messages", "default"),
        ("invoices-sender", "sender"),
        ("invoices-cleanup", "cleanup"),
        ("invoices-issue-token", "issue_token"),
    ];
    for (theirs, ours) in same {
        let (a, b) = (&invoices[theirs], &root[ours]);
        assert_eq!(
            (&a.actions, a.indexes, &a.leading_keys, &a.methods),
            (&b.actions, b.indexes, &b.leading_keys, &b.methods),
            "{theirs} against {ours}"
        );
    }
    let notify = &invoices["invoices-notify"];
    assert!(notify.actions.is_empty() && notify.methods.is_empty(), "notify only invokes the sender");
    assert_eq!(invoices.len(), same.len() + 1, "{:?}", invoices.keys());
}

/// The HTTP methods one function's cases sent to the Management API.
async fn connection_methods_used(binary: &str) -> BTreeSet<String> {
    let f = Function::new().await;
    let _ = exercise_with(&f, binary).await;
    f.methods.lock().unwrap().clone()
}
