//! The SAM template, the workspace and the code cannot drift apart: every function names a
//! binary that exists, every binary is deployed, every route reaches a handler, every built-in
//! action has a route, and the table matches what the store expects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use lambda_ws::Router;
use lambda_ws::store::dynamodb::{CHANNEL_INDEX, INDEX_PROJECTION, TTL_ATTRIBUTE, USER_INDEX};
use lambda_ws_cli::repository;
use lambda_ws_functions::chat::ChatRoute;
use lambda_ws_local::Handler;
use lambda_ws_local::template::Template;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template() -> Template {
    Template::load(&root().join("template.yaml")).unwrap()
}

#[test]
fn every_function_is_a_workspace_binary_and_every_binary_is_deployed() {
    let deployed: BTreeSet<String> = template().functions.into_iter().map(|f| f.binary).collect();
    let built: BTreeSet<String> = std::fs::read_dir(root().join("crates/functions/src/bin"))
        .unwrap()
        .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(str::to_owned))
        .collect();
    assert_eq!(deployed, built);
    let manifest = std::fs::read_to_string(root().join("crates/functions/Cargo.toml")).unwrap();
    for binary in &built {
        assert!(manifest.contains(&format!("name = \"{binary}\"")), "{binary} is declared in Cargo.toml");
    }
}

#[test]
fn every_route_reaches_an_in_process_handler() {
    let t = template();
    assert_eq!(t.selection.as_str(), "$request.body.action");
    assert!(t.invoked_routes(&repository::functions()).is_empty(), "{:?}", t.invoked_routes(&repository::functions()));
    let routes: Vec<(&str, &str)> = t.routes.iter().map(|r| (r.route_key.as_str(), r.binary.as_str())).collect();
    assert_eq!(
        routes,
        [
            ("$connect", "connect"),
            ("$default", "default"),
            ("$disconnect", "disconnect"),
            ("chat", "chat"),
            ("chat_message", "chat"),
            ("history", "default"),
            ("ping", "default"),
            ("presence", "default"),
            ("subscribe", "default"),
            ("unsubscribe", "default"),
        ]
    );
}

#[test]
fn the_gateway_serves_the_same_routes_from_the_template_as_built_in() {
    let from_template = template().route_table(&repository::functions(), true);
    let builtin = repository::routes(true);
    // `echo` is the development route `lambda-ws dev` adds on top of the template's.
    let deployed: Vec<&str> = builtin.keys().filter(|k| *k != "echo").collect();
    assert_eq!(from_template.keys().collect::<Vec<_>>(), deployed);
    for action in Router::builtin().actions() {
        match from_template.get(action) {
            Some(Handler::Messages(router)) => assert!(router.get(action).is_some(), "{action} handled"),
            other => panic!("{action}: {other:?}"),
        }
    }
    for action in ChatRoute::ACTIONS {
        match from_template.get(action) {
            Some(Handler::Messages(router)) => assert!(router.get(action).is_some(), "{action} handled"),
            other => panic!("{action}: {other:?}"),
        }
    }
    match from_template.get("$default") {
        Some(Handler::Messages(router)) => {
            assert!(
                ChatRoute::ACTIONS.iter().all(|a| router.get(a).is_some()),
                "handler-selected chat reaches $default"
            )
        }
        other => panic!("$default: {other:?}"),
    }
}

#[test]
fn the_table_matches_the_store() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let doc = &yaml_rust2::YamlLoader::load_from_str(&text).unwrap()[0];
    let table = &doc["Resources"]["SessionsTable"]["Properties"];
    let strings = |y: &yaml_rust2::Yaml| -> Vec<String> {
        y.as_vec().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    let keys = |y: &yaml_rust2::Yaml| -> Vec<(String, String)> {
        y.as_vec()
            .unwrap()
            .iter()
            .map(|k| (k["AttributeName"].as_str().unwrap().to_owned(), k["KeyType"].as_str().unwrap().to_owned()))
            .collect()
    };
    let pair = |a: &str, b: &str| vec![(a.to_owned(), "HASH".to_owned()), (b.to_owned(), "RANGE".to_owned())];
    assert_eq!(keys(&table["KeySchema"]), pair("pk", "sk"));
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(table["TimeToLiveSpecification"]["AttributeName"].as_str(), Some(TTL_ATTRIBUTE));
    let indexes = table["GlobalSecondaryIndexes"].as_vec().unwrap();
    let expected = [(CHANNEL_INDEX, "channel"), (USER_INDEX, "user_id")];
    assert_eq!(indexes.len(), expected.len());
    for (index, (name, hash)) in indexes.iter().zip(expected) {
        assert_eq!(index["IndexName"].as_str(), Some(name));
        assert_eq!(keys(&index["KeySchema"]), pair(hash, "pk"));
        assert_eq!(index["Projection"]["ProjectionType"].as_str(), Some("INCLUDE"));
        assert_eq!(strings(&index["Projection"]["NonKeyAttributes"]), INDEX_PROJECTION);
    }
}

#[test]
fn the_shipped_channel_rules_are_closed() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let doc = &yaml_rust2::YamlLoader::load_from_str(&text).unwrap()[0];
    let default = doc["Parameters"]["ChannelRules"]["Default"].as_str().unwrap().to_owned();
    let samconfig = std::fs::read_to_string(root().join("samconfig.toml")).unwrap();
    let overridden =
        samconfig.lines().find_map(|l| l.trim().strip_prefix("\"ChannelRules=")).map(|v| v.trim_end_matches("\","));
    assert_eq!(overridden, Some(default.as_str()), "samconfig.toml deploys the same closed rules");
    let rules = lambda_ws::policy::ChannelRules::parse(&default).unwrap();
    let anyone = lambda_ws::Identity::user("mallory");
    let name = |n: &str| lambda_ws::ChannelName::new(n).unwrap();
    for closed in ["user-alice", "staff", "admin", "task-1"] {
        assert!(!rules.admits(Some(&anyone), &name(closed)), "{closed} is not open to every token holder");
    }
    assert!(rules.admits(None, &name("lobby")) && rules.admits(Some(&anyone), &name("general")));
    assert!(rules.admits(Some(&anyone), &name("room-2")) && !rules.admits(None, &name("room-2")));
}
