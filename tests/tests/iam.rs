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
use lambda_ws::handlers::{self, TokenRequest};
use lambda_ws::policy::OriginPolicy;
use lambda_ws::{App, Config, DynamoDbStore, Identity, ManualClock, Router};
use lambda_ws_e2e::{Events, MgmtServer, dynamodb_client, fresh_dynamodb_store, management_api};
use serde_json::json;
use yaml_rust2::Yaml;

const ORIGIN: &str = "https://app.example.com";

/// What a handler asked DynamoDB to do: `dynamodb:<Operation>` (from the operation's input type),
/// and whether it queried an index.
#[derive(Debug, Clone, Default)]
struct Recorded(Arc<Mutex<(BTreeSet<String>, bool)>>);

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
        let operation = if input.downcast_ref::<GetItemInput>().is_some() {
            "GetItem"
        } else if input.downcast_ref::<PutItemInput>().is_some() {
            "PutItem"
        } else if input.downcast_ref::<UpdateItemInput>().is_some() {
            "UpdateItem"
        } else if input.downcast_ref::<DeleteItemInput>().is_some() {
            "DeleteItem"
        } else if input.downcast_ref::<BatchWriteItemInput>().is_some() {
            "BatchWriteItem"
        } else if input.downcast_ref::<BatchGetItemInput>().is_some() {
            "BatchGetItem"
        } else if input.downcast_ref::<ScanInput>().is_some() {
            "Scan"
        } else if let Some(query) = input.downcast_ref::<QueryInput>() {
            self.0.lock().unwrap().1 |= query.index_name().is_some();
            "Query"
        } else {
            "an operation this test does not know (add it)"
        };
        self.0.lock().unwrap().0.insert(format!("dynamodb:{operation}"));
        Ok(())
    }
}

impl Recorded {
    fn actions(&self) -> (BTreeSet<String>, bool) {
        self.0.lock().unwrap().clone()
    }
}

/// One function's world: a fresh table, an app whose store records what it sends, and a plain
/// store over the same table to set the scene with.
struct Function {
    recorded: Recorded,
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
            history: lambda_ws::HistoryRules::parse("lobby=10/5m; news=10/5m").unwrap(),
            // Channels with presence: joins and leaves are counted there and announced.
            presence: lambda_ws::PresenceRules::parse("lobby; news").unwrap(),
            rate_limits: lambda_ws::RateLimits { messages_per_connection: 5, ..lambda_ws::RateLimits::default() },
            ..Config::default()
        };
        let clock = Arc::new(ManualClock::at(lambda_ws::clock::unix_now_millis()));
        let server = MgmtServer::start().await;
        let app = App::new(config.clone(), store, management_api()).with_clock(clock.clone());
        let setup = App::new(config, plain, management_api()).with_clock(clock.clone());
        let events = Events::for_server(&server);
        Self { recorded, app, setup, server, events, clock }
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
        let event = self.events.connect(id, &[("ws_token", Some(&token)), ("channel", Some(channel))], Some(ORIGIN));
        assert_eq!(handlers::connect(&self.setup, &event).await.status_code, 200);
    }

    async fn message(&self, router: &Router, id: &str, body: serde_json::Value) {
        let event = self.events.message(id, &body.to_string());
        assert_eq!(handlers::message(&self.app, router, &event).await.status_code, 200);
    }
}

/// Runs every case of one function's handler and returns what it asked DynamoDB to do.
async fn exercise(binary: &str) -> (BTreeSet<String>, bool) {
    let f = Function::new().await;
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
            // In its connect channel only; in a channel joined later too; unknown.
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
        }
        "cleanup" => {
            f.connected("x1", "ann", "lobby").await;
            f.token(&f.setup, "ann", None).await;
            f.clock.advance(3 * 3600 * 1000);
            handlers::cleanup(&f.app).await.unwrap();
        }
        other => panic!("no cases for {other}: add them here"),
    }
    f.recorded.actions()
}

/// Each function's DynamoDB actions and whether it may read the indexes, from `template.yaml`.
fn granted() -> BTreeMap<String, (BTreeSet<String>, bool)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let doc = yaml_rust2::YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap()).unwrap().remove(0);
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
        let (mut actions, mut indexes) = (BTreeSet::new(), false);
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
            indexes |= resources.contains("/index/");
        }
        functions.insert(binary, (actions, indexes));
    }
    functions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_is_granted_exactly_the_dynamodb_actions_its_handler_uses() {
    let granted = granted();
    assert_eq!(granted.len(), 7, "{:?}", granted.keys());
    let mut mismatches = Vec::new();
    for (binary, (allowed, index_allowed)) in &granted {
        let (used, index_used) = exercise(binary).await;
        if used != *allowed || index_used != *index_allowed {
            mismatches.push(format!(
                "{binary}: handler uses {used:?} (indexes: {index_used}); template grants {allowed:?} (indexes: {index_allowed})"
            ));
        }
    }
    assert!(mismatches.is_empty(), "template.yaml and the handlers disagree:\n{}", mismatches.join("\n"));
}
