//! Presence: who is in a channel, joins and leaves, races, counts.

use super::*;

// ---- presence -------------------------------------------------------------------------------------

/// Names every user's session (`name`, public) and tags it with a secret members must not see.
#[derive(Debug)]
pub(crate) struct Names;

#[lambda_ws::async_trait]
impl lambda_ws::hooks::ConnectHook for Names {
    async fn on_connect(
        &self,
        info: &lambda_ws::hooks::ConnectInfo<'_>,
    ) -> Result<lambda_ws::hooks::Metadata, lambda_ws::hooks::Refusal> {
        let name = info.identity.map(|i| i.user_id.to_uppercase()).unwrap_or_default();
        Ok(lambda_ws::hooks::Metadata::from([("name".to_owned(), name), ("secret".to_owned(), "s3".to_owned())]))
    }
}

pub(crate) async fn presence_harness(rules: &str) -> Harness {
    let config = Config {
        presence: lambda_ws::presence::PresenceRules::parse(rules).unwrap(),
        presence_metadata: vec!["name".to_owned()],
        require_token: false,
        session_ttl: std::time::Duration::from_secs(600),
        ..base_config()
    };
    let mut h = Harness::new(config).await;
    h.app = h.app.clone().with_connect_hook(Arc::new(Names));
    h
}

/// The presence events posted to `id` since the last clear, as `(type, user)`.
pub(crate) fn presence_events(h: &Harness, id: &str) -> Vec<(String, String)> {
    h.server
        .posts_to(id)
        .iter()
        .filter(|m| m["type"] == "member_joined" || m["type"] == "member_left")
        .map(|m| {
            let user = m["member"]["user_id"].as_str().or(m["user_id"].as_str()).unwrap_or_default();
            (m["type"].as_str().unwrap_or_default().to_owned(), user.to_owned())
        })
        .collect()
}

pub(crate) fn event(kind: &str, user: &str) -> (String, String) {
    (kind.to_owned(), user.to_owned())
}

/// A `subscribe` racing the connection's `$disconnect` leaves nothing behind: no membership item
/// and no presence entry listing a user who is gone (before, a join written after the
/// disconnect looked outlived it for the session's whole lifetime). Forty races on DynamoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscribe_racing_its_disconnect_leaves_no_member_behind() {
    let h = presence_harness("room-*").await;
    let router = Router::builtin();
    for round in 0..40 {
        let id = format!("race{round}");
        h.connected(&id, &format!("u{round}"), "lobby").await;
        let room = format!("room-r{round}");
        let body = json!({"action":"subscribe","channel":room}).to_string();
        let (message, disconnect) = (h.events.message(&id, &body), h.events.disconnect(&id));
        let subscribe = handlers::message(&h.app, &router, &message);
        // The disconnect starts a little later each round, so the races sweep the subscribe's
        // steps (a session read, the channel set, the membership, the presence entry).
        let gone = async {
            tokio::time::sleep(std::time::Duration::from_micros(1000 * round)).await;
            handlers::disconnect(&h.app, &disconnect).await
        };
        let (_, gone) = futures::join!(subscribe, gone);
        assert_eq!(gone.status_code, 200);
        let left: Vec<_> = h.keys().await.into_iter().filter(|(pk, _)| *pk == format!("conn#{id}")).collect();
        assert!(left.is_empty(), "round {round}: {left:?} outlived the connection");
        let present = h.app.presence.present(&ChannelName::new(&room).unwrap(), 10, h.clock.now_secs()).await;
        assert_eq!(present.unwrap().users, 0, "round {round}: a gone user is listed in {room}");
    }
}

#[tokio::test]
async fn presence_follows_each_user_through_connect_subscribe_unsubscribe_disconnect_and_a_410() {
    let h = presence_harness("room-*").await;
    h.connected("p1", "ann", "room-1").await;
    h.server.clear();
    h.connected("p2", "bob", "room-1").await;
    let joined = h.server.posts_to("p1");
    assert_eq!(joined.len(), 1, "{joined:?}");
    assert_eq!(
        joined[0],
        json!({"type":"member_joined","channel":"room-1","member":{"user_id":"bob","connections":1,"info":{"name":"BOB"}}}),
        "the public part of the metadata only"
    );
    assert!(h.server.posts_to("p2").is_empty(), "the joiner is not told of itself");
    // Bob's second tab, by subscribe, and an anonymous connection: counted, not announced.
    h.connected("p3", "bob", "lobby").await;
    h.server.clear();
    h.send_message("p3", r#"{"action":"subscribe","channel":"room-1"}"#).await;
    assert_eq!(h.connect("p4", None, Some("room-1")).await.0, 200);
    assert!(presence_events(&h, "p1").is_empty(), "not a new user");
    let answer = h.send_message("p1", r#"{"action":"presence","channel":"room-1","ref":"w"}"#).await;
    assert_eq!(
        answer[0]["data"],
        json!({"channel":"room-1","users":2,"connections":4,"anonymous":1,"members":[
            {"user_id":"ann","connections":1,"info":{"name":"ANN"}},
            {"user_id":"bob","connections":2,"info":{"name":"BOB"}},
        ]})
    );
    // Bob's tabs leave one way and another; only the last is announced.
    h.server.clear();
    h.send_message("p3", r#"{"action":"unsubscribe","channel":"room-1"}"#).await;
    assert!(presence_events(&h, "p1").is_empty(), "bob still has p2");
    assert_eq!(handlers::disconnect(&h.app, &h.events.disconnect("p2")).await.status_code, 200);
    assert_eq!(presence_events(&h, "p1"), vec![event("member_left", "bob")]);
    // A connection found gone by a send leaves too.
    h.connected("p5", "cat", "room-1").await;
    h.server.set_gone("p5");
    h.server.clear();
    progress(&h, "room-1", 50).await;
    assert_eq!(presence_events(&h, "p1"), vec![event("member_left", "cat")], "{:?}", h.server.posts_to("p1"));
    let answer = h.send_message("p1", r#"{"action":"presence","channel":"room-1"}"#).await;
    assert_eq!((answer[0]["data"]["users"].as_u64(), answer[0]["data"]["connections"].as_u64()), (Some(1), Some(2)));
    // No presence, and not allowed: typed errors.
    let none = h.send_message("p1", r#"{"action":"presence","channel":"lobby"}"#).await;
    assert_eq!((none[0]["code"].as_str(), none[0]["field"].as_str()), (Some("bad_request"), Some("channel")));
    // Everyone gone: nothing of the channel's presence is left in the table.
    for id in ["p1", "p3", "p4"] {
        assert_eq!(handlers::disconnect(&h.app, &h.events.disconnect(id)).await.status_code, 200);
    }
    let left: Vec<_> = h.keys().await.into_iter().filter(|(pk, _)| pk.starts_with("pres#")).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn clean_up_announces_the_users_it_removes_and_large_channels_answer_counts_only() {
    let h = presence_harness("room-*=1").await;
    h.connected("q1", "dan", "room-2").await;
    h.clock.advance(300_000);
    h.connected("q2", "eve", "room-2").await;
    let answer = h.send_message("q2", r#"{"action":"presence","channel":"room-2"}"#).await;
    assert_eq!(
        answer[0]["data"],
        json!({"channel":"room-2","users":2,"connections":2,"anonymous":0}),
        "above 1: counts"
    );
    // Dan's session (10 minutes) expires without a $disconnect; eve's has 5 minutes left.
    h.clock.advance(360_000);
    h.server.clear();
    let report = handlers::cleanup(&h.app).await.unwrap();
    assert_eq!(report.removed, 1, "{report:?}");
    assert_eq!(presence_events(&h, "q2"), vec![event("member_left", "dan")]);
    let answer = h.send_message("q2", r#"{"action":"presence","channel":"room-2"}"#).await;
    assert_eq!(answer[0]["data"]["members"], json!([{"user_id":"eve","connections":1,"info":{"name":"EVE"}}]));
}

/// Backend code reads what browsers read: the sender answers history and presence queries.
#[tokio::test]
async fn the_sender_answers_history_and_presence_queries() {
    let config = Config {
        history: lambda_ws::history::HistoryRules::parse("room-*=3/5m").unwrap(),
        presence: lambda_ws::presence::PresenceRules::parse("room-*").unwrap(),
        ..base_config()
    };
    let h = Harness::new(config).await;
    h.connected("s1", "ann", "room-9").await;
    for n in 1..=4 {
        progress(&h, "room-9", n * 10).await;
    }
    let history = handlers::send(&h.app, json!({"version":1,"query":{"history":{"channel":"room-9","limit":2}}})).await;
    assert_eq!(history["seq"], 4, "{history}");
    let percents: Vec<u64> =
        history["messages"].as_array().unwrap().iter().map(|m| m["percent"].as_u64().unwrap()).collect();
    assert_eq!(percents, vec![30, 40], "the latest two, oldest first");
    assert_eq!(history["messages"][1]["seq"], 4);
    let presence = handlers::send(&h.app, json!({"query":{"presence":{"channel":"room-9"}}})).await;
    assert_eq!(
        presence,
        json!({"channel":"room-9","users":1,"connections":1,"anonymous":0,"members":[{"user_id":"ann","connections":1,"info":{}}]})
    );
    let none = handlers::send(&h.app, json!({"query":{"presence":{"channel":"lobby"}}})).await;
    assert_eq!(none["error"]["code"], "bad_request", "{none}");
    let bad = handlers::send(&h.app, json!({"query":{"history":{"channel":"not a channel"}}})).await;
    assert_eq!(bad["error"]["code"], "bad_request", "{bad}");
    let batch = handlers::send(
        &h.app,
        json!([{"query":{"presence":{"channel":"room-9"}}},
        {"target":{"channel":"room-9"},"message":{"type":"system","level":"info","message":"m"}}]),
    )
    .await;
    assert_eq!((batch[0]["users"].as_u64(), batch[1]["delivered"].as_u64()), (Some(1), Some(1)), "{batch}");
}
