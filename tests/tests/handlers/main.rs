//! Handlers driven by API Gateway-shaped events (from `events/`), against the DynamoDB engine,
//! posting through the real SDK client to a recording Management API server. Each test asserts
//! what ends up in the table and what is posted. One module per concern; the harness is here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::encodings::Body;
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_ws::clock::{Clock as _, ManualClock};
use lambda_ws::config::RateLimits;
use lambda_ws::handlers::{self, TokenRequest};
use lambda_ws::policy::{ChannelRules, OriginPolicy};
use lambda_ws::policy::{GATEWAY_SECRET_HEADER, GatewaySecrets};
use lambda_ws::{App, ChannelCheck, ChannelName, Config, DynamoDbStore, Identity, Router};
use lambda_ws_e2e::{Events, MgmtServer, dynamodb_client, fresh_dynamodb_store, management_api};
use serde_json::{Value, json};

pub(crate) const ORIGIN: &str = "https://app.example.com";

pub(crate) struct Harness {
    app: App,
    server: MgmtServer,
    events: Events,
    store: Arc<DynamoDbStore>,
    clock: Arc<ManualClock>,
}

impl Harness {
    async fn new(config: Config) -> Self {
        let store = fresh_dynamodb_store().await;
        let server = MgmtServer::start().await;
        let clock = Arc::new(ManualClock::at(lambda_ws::clock::unix_now_millis()));
        let app = App::new(config, store.clone(), management_api()).with_clock(clock.clone());
        let events = Events::for_server(&server);
        Self { app, server, events, store, clock }
    }

    async fn default() -> Self {
        Self::new(base_config()).await
    }

    async fn token(&self, user: &str, channel: Option<&str>) -> String {
        self.token_for(Identity::user(user), channel).await
    }

    async fn token_for(&self, identity: Identity, channel: Option<&str>) -> String {
        let answer = handlers::issue_token(&self.app, token_request(Some(identity), channel)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["token"].as_str().unwrap().to_owned()
    }

    async fn connect(&self, id: &str, token: Option<&str>, channel: Option<&str>) -> (i64, String) {
        let mut event = self.events.connect(id, &[("ws_token", token), ("channel", channel)], Some(ORIGIN));
        event.request_context.connected_at = self.clock.now_millis();
        status_and_body(handlers::connect(&self.app, &event).await)
    }

    /// Connects `id` as `user` into `channel` with a fresh token.
    async fn connected(&self, id: &str, user: &str, channel: &str) {
        let token = self.token(user, None).await;
        assert_eq!(self.connect(id, Some(&token), Some(channel)).await.0, 200);
    }

    async fn send_message(&self, id: &str, body: &str) -> Vec<Value> {
        self.send_message_with(&lambda_ws_functions::default_router(), id, body).await
    }

    async fn send_message_with(&self, router: &Router, id: &str, body: &str) -> Vec<Value> {
        self.server.clear();
        let response = handlers::message(&self.app, router, &self.events.message(id, body)).await;
        assert_eq!(response.status_code, 200, "messages answer 200; errors go to the client");
        self.server.posts_to(id)
    }

    /// `(pk, sk)` of every item in the table.
    async fn keys(&self) -> BTreeSet<(String, String)> {
        self.items().await.iter().map(|i| (s(i, "pk"), s(i, "sk"))).collect()
    }

    /// (connection partition, channel) of every membership: a membership item, or a session
    /// item carrying its connect channel.
    async fn memberships(&self) -> BTreeSet<(String, String)> {
        let items = self.items().await;
        let is_membership =
            |i: &HashMap<String, AttributeValue>| s(i, "sk").starts_with("chan#") || s(i, "sk") == "session";
        items
            .iter()
            .filter(|i| is_membership(i) && i.contains_key("channel"))
            .map(|i| (s(i, "pk"), s(i, "channel")))
            .collect()
    }

    async fn items(&self) -> Vec<HashMap<String, AttributeValue>> {
        let out = dynamodb_client().scan().table_name(self.store.table()).send().await.unwrap();
        out.items.unwrap_or_default()
    }

    async fn item(&self, pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
        self.items().await.into_iter().find(|i| s(i, "pk") == pk && s(i, "sk") == sk).unwrap_or_default()
    }
}

pub(crate) fn base_config() -> Config {
    Config {
        allowed_origins: OriginPolicy::parse(ORIGIN).unwrap(),
        rate_limits: RateLimits::off(),
        ..Config::default()
    }
}

pub(crate) fn token_request(identity: Option<Identity>, channel: Option<&str>) -> TokenRequest {
    TokenRequest { identity, origin: Some(ORIGIN.into()), csrf_header: true, channel: channel.map(str::to_owned) }
}

pub(crate) fn s(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
}

pub(crate) fn status_and_body(response: ApiGatewayProxyResponse) -> (i64, String) {
    let body = match response.body {
        Some(Body::Text(t)) => t,
        _ => String::new(),
    };
    (response.status_code, body)
}

pub(crate) fn key(pk: &str, sk: &str) -> (String, String) {
    (pk.to_owned(), sk.to_owned())
}

mod connect;
mod history;
mod hooks;
mod messages;
mod presence;
mod security;
// Helpers one module defines and another uses (the history and presence harnesses, the
// presence events).
use history::*;
use presence::*;
