//! What one `presence` answer reads on the DynamoDB engine, counted by an SDK interceptor on the
//! store's own client: the kept counts and at most `listed + 1` users, whatever the channel's
//! size; and the clean-up's recount corrects counts a lost write left wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_ws::presence::{Presence, PresenceStore};
use lambda_ws::{ChannelName, ConnectionId, DynamoDbStore, Identity, Session};
use lambda_ws_e2e::{dynamodb_client, fresh_dynamodb_store};

const NOW: i64 = 1_795_446_000;

/// Counts the items every read returns.
#[derive(Debug, Default, Clone)]
struct ItemsRead(Arc<AtomicUsize>);

impl Intercept for ItemsRead {
    fn name(&self) -> &'static str {
        "CountItemsRead"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Ok(output) = context.output_or_error() else { return Ok(()) };
        let read = if let Some(query) = output.downcast_ref::<QueryOutput>() {
            query.scanned_count as usize
        } else if let Some(scan) = output.downcast_ref::<ScanOutput>() {
            scan.scanned_count as usize
        } else if let Some(get) = output.downcast_ref::<GetItemOutput>() {
            usize::from(get.item.is_some())
        } else {
            0
        };
        self.0.fetch_add(read, Ordering::SeqCst);
        Ok(())
    }
}

fn session(n: usize, user: Option<&str>) -> Session {
    Session {
        connection_id: ConnectionId::new(format!("conn{n:05}=")).unwrap(),
        identity: user.map(Identity::user),
        api_id: "api1".into(),
        stage: "prod".into(),
        endpoint: "https://api1.example/prod".into(),
        source_ip: "203.0.113.7".into(),
        user_agent: None,
        connected_at: NOW * 1000,
        last_seen: NOW * 1000,
        expires_at: NOW + 3600,
        metadata: BTreeMap::new(),
        bound_channel: None,
    }
}

/// The table's store, and the same store through a client that counts what it reads.
async fn stores() -> (Arc<DynamoDbStore>, DynamoDbStore, ItemsRead) {
    let plain = fresh_dynamodb_store().await;
    let read = ItemsRead::default();
    let conf = dynamodb_client().config().to_builder().interceptor(read.clone()).build();
    let counted = DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(conf), plain.table());
    (plain, counted, read)
}

/// `users` users (two connections each for the first ten) and three anonymous connections.
async fn fill(store: &DynamoDbStore, room: &ChannelName, users: usize) {
    let info = BTreeMap::from([("name".to_owned(), "A name of some length".to_owned())]);
    let mut sessions: Vec<Session> = (0..users).map(|n| session(n, Some(&format!("user{n:05}")))).collect();
    sessions.extend((0..10.min(users)).map(|n| session(50_000 + n, Some(&format!("user{n:05}")))));
    sessions.extend((0..3).map(|n| session(60_000 + n, None)));
    for chunk in sessions.chunks(50) {
        let entered = futures::future::join_all(
            chunk.iter().map(|s| store.enter(room, Presence { session: s, info: &info, expires_at: NOW + 3600 }, NOW)),
        )
        .await;
        for e in entered {
            e.unwrap();
        }
    }
}

/// One answer at 10 and at 600 users, listing up to 5 and counting only: the same reads, at
/// most the counts and `listed + 1` users. Before, every answer read every entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_presence_answer_reads_no_more_than_it_lists() {
    for users in [10usize, 600] {
        let (plain, counted, read) = stores().await;
        let room = ChannelName::new("room-big").unwrap();
        fill(&plain, &room, users).await;
        for listed in [0usize, 5] {
            read.0.store(0, Ordering::SeqCst);
            let present = counted.present(&room, listed, NOW).await.unwrap();
            let items = read.0.load(Ordering::SeqCst);
            assert_eq!(
                (present.users, present.connections, present.anonymous),
                (users, users + 10 + 3, 3),
                "{users} users, listing {listed}"
            );
            assert!(present.members.is_none(), "more users than listed");
            assert!(items <= listed + 2, "{users} users, listing {listed}: read {items} items");
        }
        // Listing them all reads them all, and only them (not the anonymous connections).
        read.0.store(0, Ordering::SeqCst);
        let all = counted.present(&room, 1000, NOW).await.unwrap();
        assert_eq!(all.members.map(|m| m.len()), Some(users));
        assert_eq!((all.users, all.connections, all.anonymous), (users, users + 10 + 3, 3));
        assert!(read.0.load(Ordering::SeqCst) <= users + 1);
    }
}

/// Counts a lost write left wrong (here set by hand) are what a large channel answers until the
/// recount (the clean-up's) corrects them; a channel whose counts are right is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_recount_corrects_counts_a_lost_write_left_wrong() {
    let (plain, _, _) = stores().await;
    let (room, quiet) = (ChannelName::new("room-drift").unwrap(), ChannelName::new("room-quiet").unwrap());
    fill(&plain, &room, 40).await;
    fill(&plain, &quiet, 20).await;
    dynamodb_client()
        .update_item()
        .table_name(plain.table())
        .key("pk", AttributeValue::S(format!("pres#{room}")))
        .key("sk", AttributeValue::S("u!".into()))
        .update_expression("SET #u = :u, #c = :c")
        .expression_attribute_names("#u", "users")
        .expression_attribute_names("#c", "conns")
        .expression_attribute_values(":u", AttributeValue::N("7777".into()))
        .expression_attribute_values(":c", AttributeValue::N("-3".into()))
        .send()
        .await
        .unwrap();
    let wrong = plain.present(&room, 5, NOW).await.unwrap();
    assert_eq!((wrong.users, wrong.connections), (7777, 9), "the kept counts, negative ones read as the least");
    assert_eq!(plain.recount().await.unwrap(), 1, "one channel corrected");
    let right = plain.present(&room, 5, NOW).await.unwrap();
    assert_eq!((right.users, right.connections, right.anonymous), (40, 53, 3));
    assert_eq!(plain.recount().await.unwrap(), 0, "nothing left to correct");
}
