//! The sender and the Management API transport, through the real SDK client against a recording
//! server that answers 410/413/429/500/403 on demand, with sessions in the DynamoDB engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lambda_ws::clock::SystemClock;
use lambda_ws::delivery::ConnectionInfo;
use lambda_ws::delivery::{SendOptions, Transport, TransportError};
use lambda_ws::protocol::{Level, SystemMessage, Toast};
use lambda_ws::store::SessionStore;
use lambda_ws::testing::SlowPages;
use lambda_ws::{
    App, ChannelName, Config, ConnectionId, DynamoDbStore, Identity, ManagementApi, MemoryStore, Outbound, Sender,
    Session, Target, handlers,
};
use lambda_ws_e2e::{Faults, MgmtServer, fresh_dynamodb_store, management_api};
use serde_json::{Value, json};

struct Fixture {
    store: Arc<DynamoDbStore>,
    server: MgmtServer,
    sender: Sender,
    app: App,
}

async fn fixture() -> Fixture {
    let store = fresh_dynamodb_store().await;
    let server = MgmtServer::start().await;
    let options = SendOptions { base_backoff: Duration::from_millis(2), page_size: 7, ..SendOptions::default() };
    let sender = Sender::new(store.clone(), management_api(), Arc::new(SystemClock), options);
    let app = App::new(Config::default(), store.clone(), management_api());
    Fixture { store, server, sender, app }
}

impl Fixture {
    /// Stores a session for `id` (user, channels) reachable at the server.
    async fn session(&self, id: &str, user: Option<&str>, channels: &[&str]) {
        let session = live_session(id, user, self.server.endpoint("prod"));
        self.store.put_session(&session).await.unwrap();
        for c in channels {
            self.store.join(&session, &ChannelName::new(*c).unwrap(), 16).await.unwrap();
        }
    }

    async fn exists(&self, id: &str) -> bool {
        let id = ConnectionId::new(id).unwrap();
        self.store.get_session(&id, lambda_ws::clock::unix_now_secs()).await.unwrap().is_some()
    }
}

/// A session connected now, live for an hour, reachable at `endpoint`.
fn live_session(id: &str, user: Option<&str>, endpoint: String) -> Session {
    let now = lambda_ws::clock::unix_now_millis();
    Session {
        connection_id: ConnectionId::new(id).unwrap(),
        identity: user.map(Identity::user),
        api_id: "api".into(),
        stage: "prod".into(),
        endpoint,
        source_ip: "127.0.0.1".into(),
        user_agent: None,
        connected_at: now,
        last_seen: now,
        expires_at: now / 1000 + 3600,
        metadata: BTreeMap::new(),
        bound_channel: None,
    }
}

fn toast(text: &str) -> Outbound {
    Outbound::Toast(Toast::new(Level::Success, text))
}

fn cid(id: &str) -> ConnectionId {
    ConnectionId::new(id).unwrap()
}

fn channel(name: &str) -> Target {
    Target::Channel(ChannelName::new(name).unwrap())
}

fn received(server: &MgmtServer) -> Vec<String> {
    let mut ids: Vec<String> = server.posts().into_iter().map(|p| p.connection_id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn every_target_reaches_exactly_its_connections() {
    let f = fixture().await;
    f.session("a1", Some("ann"), &["red", "blue"]).await;
    f.session("a2", Some("ann"), &["red"]).await;
    f.session("b1", Some("bob"), &["blue"]).await;
    f.session("c1", None, &[]).await;
    let two = |a: &str, b: &str| vec![a.to_owned(), b.to_owned()];
    let cases: Vec<(Target, Vec<String>)> = vec![
        (Target::Connection(cid("b1")), vec!["b1".into()]),
        (Target::Connections(vec![cid("a1"), cid("c1"), cid("a1")]), two("a1", "c1")),
        (Target::User("ann".into()), two("a1", "a2")),
        (channel("red"), two("a1", "a2")),
        (
            Target::Channels(vec![ChannelName::new("red").unwrap(), ChannelName::new("blue").unwrap()]),
            vec!["a1".into(), "a2".into(), "b1".into()],
        ),
        (Target::All, vec!["a1".into(), "a2".into(), "b1".into(), "c1".into()]),
    ];
    for (target, expected) in cases {
        f.server.clear();
        let report = f.sender.send(&target, &toast("hi"), &[]).await.unwrap();
        assert_eq!(received(&f.server), expected, "{target:?}");
        assert_eq!((report.recipients, report.delivered), (expected.len(), expected.len()), "{target:?}");
        assert!(report.is_complete_success());
    }
    let body = &f.server.posts()[0].body;
    assert_eq!(body, &json!({"type":"toast","level":"success","message":"hi"}));
}

#[tokio::test]
async fn exclude_and_unknown_connections() {
    let f = fixture().await;
    f.session("x1", None, &["room"]).await;
    f.session("x2", None, &["room"]).await;
    let report = f.sender.send(&channel("room"), &toast("t"), &[cid("x1")]).await.unwrap();
    assert_eq!(received(&f.server), vec!["x2".to_owned()]);
    assert_eq!((report.excluded, report.recipients, report.delivered), (1, 1, 1));
    f.server.clear();
    let report = f.sender.send(&Target::Connections(vec![cid("x1"), cid("nobody")]), &toast("t"), &[]).await.unwrap();
    assert_eq!(report.unknown, vec![cid("nobody")]);
    assert_eq!(received(&f.server), vec!["x1".to_owned()]);
}

#[tokio::test]
async fn paged_channels_reach_every_member_once() {
    let f = fixture().await;
    for i in 0..40 {
        f.session(&format!("m{i:02}"), None, &["big", "also"]).await;
    }
    let both = Target::Channels(vec![ChannelName::new("big").unwrap(), ChannelName::new("also").unwrap()]);
    let report = f.sender.send(&both, &toast("t"), &[]).await.unwrap();
    assert_eq!(report.delivered, 40, "pages of 7, two channels, deduplicated");
    let ids = received(&f.server);
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique);
}

/// Records, at each post, how many recipient pages the store has been asked for.
#[derive(Debug)]
struct PagesAtEachPost {
    store: Arc<SlowPages>,
    seen: std::sync::Mutex<Vec<u64>>,
}

#[lambda_ws::async_trait]
impl Transport for PagesAtEachPost {
    async fn post(&self, _: &str, _: &ConnectionId, _: bytes::Bytes) -> Result<(), TransportError> {
        self.seen.lock().unwrap().push(self.store.pages_read());
        Ok(())
    }

    async fn get_connection(&self, _: &str, _: &ConnectionId) -> Result<ConnectionInfo, TransportError> {
        Err(TransportError::Other("not used".into()))
    }

    async fn disconnect(&self, _: &str, _: &ConnectionId) -> Result<(), TransportError> {
        Err(TransportError::Other("not used".into()))
    }
}

#[tokio::test]
async fn the_next_page_is_read_while_the_current_one_is_posted() {
    let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let lobby = ChannelName::new("lobby").unwrap();
    for i in 0..6 {
        let session = live_session(&format!("p{i}"), None, "http://unused".into());
        memory.put_session(&session).await.unwrap();
        memory.join(&session, &lobby, 16).await.unwrap();
    }
    let store = Arc::new(SlowPages::new(memory, Duration::from_millis(5)));
    let transport = Arc::new(PagesAtEachPost { store: store.clone(), seen: Default::default() });
    // One post at a time, two recipients per page: without read-ahead the first post would see
    // one page read, and the third (first of page 2) two.
    let options = SendOptions { concurrency: 1, page_size: 2, ..SendOptions::default() };
    let sender = Sender::new(store.clone(), transport.clone(), Arc::new(SystemClock), options);
    let report = sender.send(&Target::Channel(lobby), &toast("t"), &[]).await.unwrap();
    assert_eq!(report.delivered, 6);
    let seen = transport.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[0], 2, "page 2 is being read while page 1 is posted: {seen:?}");
    assert_eq!(seen[2], 3, "page 3 is being read while page 2 is posted: {seen:?}");
    assert!(store.pages_read() <= 4, "never more than one page ahead: {}", store.pages_read());
}

#[tokio::test]
async fn gone_connections_are_removed_and_reported() {
    let f = fixture().await;
    f.session("g1", Some("ann"), &["room"]).await;
    f.session("g2", Some("ann"), &["room"]).await;
    f.server.set_gone("g1");
    let report = f.sender.send(&channel("room"), &toast("t"), &[]).await.unwrap();
    assert_eq!(report.gone, vec![cid("g1")]);
    assert_eq!((report.recipients, report.delivered, report.retries), (2, 1, 0));
    assert!(!f.exists("g1").await, "410 removed the session");
    assert!(f.exists("g2").await);
    let again = f.sender.send(&channel("room"), &toast("t"), &[]).await.unwrap();
    assert_eq!((again.recipients, again.gone.len()), (1, 0), "its membership went too");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried() {
    let f = fixture().await;
    f.session("t1", None, &["room"]).await;
    f.session("t2", None, &["room"]).await;
    f.server.script("t1", &[429, 500]);
    f.server.script("t2", &[503]);
    let report = f.sender.send(&channel("room"), &toast("t"), &[]).await.unwrap();
    assert_eq!((report.delivered, report.retries), (2, 3));
    assert_eq!((f.server.attempts("t1"), f.server.attempts("t2")), (3, 2));
    assert!(report.failed.is_empty());
}

#[tokio::test]
async fn persistent_failures_are_reported_not_retried_forever() {
    let f = fixture().await;
    f.session("p1", None, &["room"]).await;
    f.session("p2", None, &["room"]).await;
    f.session("p3", None, &["room"]).await;
    f.server.script("p1", &[500; 10]);
    f.server.script("p2", &[403]);
    let report = f.sender.send(&channel("room"), &toast("t"), &[]).await.unwrap();
    assert_eq!(report.delivered, 1);
    assert_eq!(f.server.attempts("p1"), 4, "max_attempts");
    assert_eq!(f.server.attempts("p2"), 1, "403 is not retried");
    let mut failed: Vec<(String, String)> =
        report.failed.iter().map(|fd| (fd.connection_id.to_string(), fd.reason.clone())).collect();
    failed.sort();
    assert_eq!(failed[0].0, "p1");
    assert!(failed[0].1.contains("500"), "{}", failed[0].1);
    assert_eq!(failed[1].0, "p2");
    assert!(failed[1].1.contains("forbidden"), "{}", failed[1].1);
    assert!(f.exists("p1").await && f.exists("p2").await, "failures do not remove sessions");
}

#[tokio::test]
async fn timeouts_are_retried_within_the_deadline_and_the_next_send_succeeds() {
    let f = fixture().await;
    f.session("slow1", None, &["room"]).await;
    let transport = Arc::new(lambda_ws_e2e::management_api_with_timeout(Duration::from_millis(100)));
    let options = SendOptions {
        base_backoff: Duration::from_millis(5),
        max_attempts: 3,
        deadline: Duration::from_secs(3),
        ..SendOptions::default()
    };
    let sender = Sender::new(f.store.clone(), transport, Arc::new(SystemClock), options);
    f.server.set_faults(lambda_ws_e2e::Faults { latency: Duration::from_millis(400), ..Default::default() });
    let report = sender.send(&channel("room"), &toast("slow"), &[]).await.unwrap();
    assert_eq!((report.delivered, report.failed.len(), report.retries), (0, 1, 2), "{report:?}");
    assert_eq!(report.failed[0].reason, "timed out");
    assert!(f.exists("slow1").await, "a timeout does not remove the session");
    f.server.set_faults(lambda_ws_e2e::Faults::default());
    let report = sender.send(&channel("room"), &toast("fast"), &[]).await.unwrap();
    assert_eq!((report.delivered, report.retries), (1, 0), "the same client recovers: {report:?}");
    let last = f.server.posts_to("slow1").pop().unwrap_or_default();
    assert_eq!(last["message"], "fast");
}

#[tokio::test]
async fn oversize_messages_are_refused_before_any_post() {
    let f = fixture().await;
    f.session("o1", None, &["room"]).await;
    let big = Outbound::System(SystemMessage::new(Level::Info, "x".repeat(128 * 1024)));
    assert!(f.sender.send(&channel("room"), &big, &[]).await.is_err());
    assert_eq!(f.server.attempts("o1"), 0);
    let answer = handlers::send(&f.app, json!({"target":{"channel":"room"},"message":big})).await;
    assert_eq!(answer["error"]["code"], "too_large");
    assert_eq!(f.server.attempts("o1"), 0);
}

#[tokio::test]
async fn the_transport_maps_413_from_the_api() {
    let server = MgmtServer::start().await;
    server.script("big1", &[413]);
    let api = ManagementApi::new(lambda_ws_e2e::local_aws_config());
    let result = api.post(&server.endpoint("prod"), &cid("big1"), bytes::Bytes::from_static(b"{}")).await;
    assert_eq!(result, Err(TransportError::PayloadTooLarge));
}

#[tokio::test]
async fn sender_function_contract() {
    let f = fixture().await;
    f.session("s1", Some("ann"), &["room"]).await;
    f.session("s2", Some("bob"), &["room"]).await;
    let message = json!({"type":"task_progress","task_id":"job-1","percent":50});
    let report =
        handlers::send(&f.app, json!({"target":{"channel":"room"},"message":message,"exclude":"s2","version":1})).await;
    assert_eq!(report["delivered"], 1, "{report}");
    assert_eq!(report["excluded"], 1);
    assert_eq!(f.server.posts_to("s1"), vec![message]);
    let custom = json!({"type":"invoice_paid","id":7});
    let report = handlers::send(&f.app, json!({"target":{"user":"bob"},"message":custom})).await;
    assert_eq!(report["delivered"], 1);
    assert_eq!(f.server.posts_to("s2"), vec![custom]);
    let bad: [(Value, &str); 7] = [
        (json!({"message":{"type":"x"}}), "bad_request"),
        (json!({"target":"everyone","message":{"type":"x"}}), "bad_request"),
        (json!({"target":{"channel":"bad name"},"message":{"type":"x"}}), "bad_request"),
        (json!({"target":"all","message":{"type":"toast","level":"nope","message":"m"}}), "bad_request"),
        (json!({"target":"all","message":{"no_type":1}}), "bad_request"),
        (json!({"target":"all","message":{"type":"x"},"version":2}), "bad_request"),
        (json!("just a string"), "bad_request"),
    ];
    for (request, code) in bad {
        let answer = handlers::send(&f.app, request.clone()).await;
        assert_eq!(answer["error"]["code"], code, "{request} → {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let answer = handlers::send(&f.app, json!({"target":{"connection":"nobody"},"message":{"type":"x"}})).await;
    assert_eq!(answer["unknown"], json!(["nobody"]), "unknown connections are reported, not an error");
}

#[tokio::test]
async fn get_connection_and_delete_through_the_sdk() {
    let server = MgmtServer::start().await;
    let api = ManagementApi::new(lambda_ws_e2e::local_aws_config());
    let endpoint = server.endpoint("prod");
    let info = api.get_connection(&endpoint, &cid("Live1=")).await.unwrap();
    assert_eq!(info.source_ip.as_deref(), Some("203.0.113.7"));
    assert!(info.connected_at.is_some() && info.last_active_at.is_some());
    api.disconnect(&endpoint, &cid("Live1=")).await.unwrap();
    assert_eq!(server.deleted(), vec!["Live1=".to_owned()], "the id survives percent-encoding");
    assert_eq!(api.get_connection(&endpoint, &cid("Live1=")).await, Err(TransportError::Gone));
    let closed = ManagementApi::new(lambda_ws_e2e::local_aws_config());
    let unreachable = closed.post("http://127.0.0.1:9/prod", &cid("x"), bytes::Bytes::new()).await;
    assert!(matches!(unreachable, Err(TransportError::Network(_) | TransportError::Timeout)), "{unreachable:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_message_is_lost_under_random_faults() {
    // 5 % of posts answer 500 and 1 % 429, every answer takes 2 ms; 30 connections are gone.
    let f = fixture().await;
    let (live, gone) = (300, 30);
    for i in 0..live + gone {
        f.session(&format!("storm{i:04}="), None, &["storm"]).await;
    }
    for i in live..live + gone {
        f.server.set_gone(&format!("storm{i:04}="));
    }
    f.server.set_faults(Faults { latency: Duration::from_millis(2), server_errors: 0.05, throttles: 0.01 });
    let options = SendOptions { base_backoff: Duration::from_millis(2), max_attempts: 6, ..SendOptions::default() };
    let sender = Sender::new(f.store.clone(), management_api(), Arc::new(SystemClock), options);
    let target = Target::Channel(ChannelName::new("storm").unwrap());
    let report =
        sender.send(&target, &Outbound::System(SystemMessage::new(Level::Info, "weather")), &[]).await.unwrap();

    let injected = f.server.injected();
    assert!(injected >= 10, "the server injected faults ({injected})");
    assert_eq!(report.recipients, live + gone);
    assert_eq!(report.delivered, live, "{report:?}");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.retries, injected, "every injected fault was retried once, and nothing else");
    assert_eq!(report.gone.len(), gone);
    for i in 0..live {
        let id = format!("storm{i:04}=");
        assert_eq!(f.server.posts_to(&id).len(), 1, "{id} got the message exactly once");
    }
    for i in live..live + gone {
        assert!(!f.exists(&format!("storm{i:04}=")).await, "gone session removed");
    }
    for i in (0..live).step_by(37) {
        assert!(f.exists(&format!("storm{i:04}=")).await, "live session kept");
    }
}

/// Collects what the sender handler records.
#[derive(Debug, Default)]
struct Recorded(std::sync::Mutex<Vec<(String, usize, usize)>>);

impl lambda_ws::delivery::MetricsSink for Recorded {
    fn record(&self, target: &str, report: &lambda_ws::DeliveryReport) {
        self.0.lock().unwrap().push((target.to_owned(), report.delivered, report.gone.len()));
    }
}

#[tokio::test]
async fn sender_batches_sqs_records_and_metrics() {
    let f = fixture().await;
    f.session("b1", Some("ann"), &["news"]).await;
    f.session("b2", Some("bob"), &["news"]).await;
    f.session("b3", None, &["news"]).await;
    f.server.set_gone("b3");
    let metrics = Arc::new(Recorded::default());
    let app = f.app.clone().with_metrics(metrics.clone());

    // A batch: answers in order, a bad request does not stop the others.
    let batch = json!([
        {"target":{"channel":"news"},"message":{"type":"headline","n":1}},
        {"target":"nowhere","message":{"type":"x"}},
        {"target":{"user":"ann"},"message":{"type":"headline","n":2}},
    ]);
    let answers = handlers::send(&app, batch).await;
    assert_eq!(answers[0]["delivered"], 2, "{answers}");
    assert_eq!(answers[0]["gone"], json!(["b3"]));
    assert_eq!(answers[1]["error"]["code"], "bad_request");
    assert_eq!(answers[2]["delivered"], 1);
    assert_eq!(f.server.posts_to("b1"), vec![json!({"type":"headline","n":1}), json!({"type":"headline","n":2})]);
    assert_eq!(
        *metrics.0.lock().unwrap(),
        [("channel".to_owned(), 2, 1), ("user".to_owned(), 1, 0)],
        "one record per send, none for a refused request"
    );

    // SQS: a record whose every post fails comes back for a retry; a bad body is dropped.
    f.server.script("b2", &[500, 500, 500, 500]);
    let record = |id: &str, body: Value| {
        json!({"messageId": id, "receiptHandle": "r", "body": body.to_string(), "attributes": {},
               "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
               "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:sends", "awsRegion": "eu-west-1"})
    };
    let event = json!({"Records": [
        record("m-ok", json!({"target":{"connection":"b1"},"message":{"type":"queued"}})),
        record("m-retry", json!({"target":{"connection":"b2"},"message":{"type":"queued"}})),
        record("m-bad", json!({"target":{"connection":"b1"}})),
        {"messageId": "m-text", "body": "not json", "eventSource": "aws:sqs"},
    ]});
    let answer = handlers::send(&app, event).await;
    assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "m-retry"}]}));
    assert_eq!(f.server.posts_to("b1").last(), Some(&json!({"type":"queued"})));
    assert!(f.server.posts_to("b2").iter().all(|m| m["type"] != "queued"), "b2 never accepted the post");
}
