//! Channel history: streams, resume, replays and their cost.

use super::*;

// ---- channel history and resume ------------------------------------------------------------------

/// Posts as the client handles them: a replay frame's messages in its place, in order.
pub(crate) fn unpacked(posts: &[Value]) -> Vec<Value> {
    posts
        .iter()
        .flat_map(|p| match p["type"].as_str() {
            Some("replay") => p["messages"].as_array().cloned().unwrap_or_default(),
            _ => vec![p.clone()],
        })
        .collect()
}

pub(crate) fn history_config(rules: &str) -> Config {
    Config { history: lambda_ws::history::HistoryRules::parse(rules).unwrap(), ..base_config() }
}

/// Sends `{"type":"task_progress","task_id":"t","percent":n}` to `channel` through the app's sender.
pub(crate) async fn progress(h: &Harness, channel: &str, n: u32) -> lambda_ws::DeliveryReport {
    let message: lambda_ws::Outbound =
        serde_json::from_value(json!({"type":"task_progress","task_id":"t","percent":n})).unwrap();
    let target = lambda_ws::Target::Channel(ChannelName::new(channel).unwrap());
    h.app.sender().send(&target, &message, &[]).await.unwrap()
}

#[tokio::test]
async fn messages_to_a_channel_with_history_carry_their_place_and_a_resume_replays_the_rest() {
    let h = Harness::new(history_config("task-*=5/5m")).await;
    h.connected("h1", "ann", "task-1").await;
    for n in 1..=3 {
        let report = progress(&h, "task-1", n * 10).await;
        assert_eq!((report.delivered, report.streams[0].seq), (1, u64::from(n)), "{report:?}");
    }
    let live = h.server.posts_to("h1");
    let epoch = live[0]["epoch"].as_str().unwrap().to_owned();
    assert_eq!(live.iter().map(|m| m["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(live.iter().all(|m| m["channel"] == "task-1" && m["epoch"] == epoch.as_str()), "{live:?}");
    // The tab reconnects as h2, having seen 1: it gets 2 and 3, in order, then the answer.
    h.connected("h2", "ann", "lobby").await;
    let body = json!({"action":"subscribe","channel":"task-1","since":1,"epoch":epoch,"ref":"r"}).to_string();
    let answers = h.send_message("h2", &body).await;
    assert_eq!((answers.len(), answers[0]["type"].as_str()), (2, Some("replay")), "one frame for both: {answers:?}");
    let answers = unpacked(&answers);
    let kinds: Vec<(&str, Option<u64>)> =
        answers.iter().map(|m| (m["type"].as_str().unwrap(), m["seq"].as_u64())).collect();
    assert_eq!(kinds, vec![("task_progress", Some(2)), ("task_progress", Some(3)), ("reply", None)]);
    assert_eq!(answers[1]["percent"], 30, "the message as sent");
    let data = &answers[2]["data"];
    assert_eq!(
        (data["recovered"].as_bool(), data["seq"].as_u64(), data["replayed"].as_u64()),
        (Some(true), Some(3), Some(2))
    );
    // Subscribing without `since` tells the position to resume from later.
    let plain = h.send_message("h2", r#"{"action":"subscribe","channel":"task-1"}"#).await;
    assert_eq!((plain.len(), plain[0]["data"]["seq"].as_u64()), (1, Some(3)), "{plain:?}");
    assert_eq!(plain[0]["data"]["epoch"], epoch.as_str());
    // Up to date: nothing to send, recovered.
    let body = json!({"action":"subscribe","channel":"task-1","since":3,"epoch":epoch}).to_string();
    let current = h.send_message("h2", &body).await;
    assert_eq!((current.len(), current[0]["data"]["recovered"].as_bool()), (1, Some(true)));
    // `history` reads the latest without resuming.
    let read = h.send_message("h2", r#"{"action":"history","channel":"task-1","limit":2}"#).await;
    let messages = read[0]["data"]["messages"].as_array().unwrap();
    assert_eq!(messages.iter().map(|m| m["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2, 3]);
    let none = h.send_message("h2", r#"{"action":"history","channel":"lobby"}"#).await;
    assert_eq!((none[0]["code"].as_str(), none[0]["field"].as_str()), (Some("bad_request"), Some("channel")));
}

#[tokio::test]
async fn a_resume_beyond_the_window_or_from_another_epoch_is_not_recovered() {
    let h = Harness::new(history_config("task-*=5/5m")).await;
    h.connected("w1", "ann", "task-2").await;
    for n in 1..=8 {
        progress(&h, "task-2", n).await;
    }
    let epoch = h.server.posts_to("w1")[0]["epoch"].as_str().unwrap().to_owned();
    h.connected("w2", "ann", "lobby").await;
    let resume = |since: u64, epoch: &str| {
        json!({"action":"subscribe","channel":"task-2","since":since,"epoch":epoch}).to_string()
    };
    // Seen 1; 2 and 3 fell out of the window of 5.
    let answers = h.send_message("w2", &resume(1, &epoch)).await;
    assert_eq!(answers.len(), 1, "nothing replayed: {answers:?}");
    assert_eq!((answers[0]["data"]["recovered"].as_bool(), answers[0]["data"]["seq"].as_u64()), (Some(false), Some(8)));
    // Seen 3: 4..8 are all kept.
    let answers = h.send_message("w2", &resume(3, &epoch)).await;
    assert_eq!(answers.len(), 2, "one frame, one answer: {answers:?}");
    let answers = unpacked(&answers);
    assert_eq!(answers.len(), 6, "{answers:?}");
    assert_eq!(answers[5]["data"]["recovered"], true);
    // Another stream's epoch.
    let answers = h.send_message("w2", &resume(7, "0123456789ab")).await;
    assert_eq!((answers.len(), answers[0]["data"]["recovered"].as_bool()), (1, Some(false)));
    assert_eq!(answers[0]["data"]["epoch"], epoch.as_str(), "the answer names the stream to restart from");
    // Older than the window's time: 6 minutes later nothing is kept.
    h.clock.advance(360_000);
    h.connected("w3", "ann", "lobby").await;
    let answers = h.send_message("w3", &resume(7, &epoch)).await;
    assert_eq!((answers.len(), answers[0]["data"]["recovered"].as_bool()), (1, Some(false)), "{answers:?}");
}

/// Sends happening while a client resumes: every number is delivered to it, replayed or live
/// (a number seen twice is dropped by the client), none missing.
#[tokio::test]
async fn a_client_resuming_during_concurrent_sends_sees_every_message() {
    let h = Harness::new(history_config("room-*=100/5m")).await;
    h.connected("c1", "ann", "lobby").await;
    for n in 1..=4 {
        progress(&h, "room-busy", n).await;
    }
    let sends = (5..=24).map(|n| {
        let h = &h;
        async move { progress(h, "room-busy", n).await.streams[0].seq }
    });
    let body = json!({"action":"subscribe","channel":"room-busy","since":0}).to_string();
    let (router, event) = (Router::builtin(), h.events.message("c1", &body));
    let resume = handlers::message(&h.app, &router, &event);
    let (seqs, resumed) = futures::join!(futures::future::join_all(sends), resume);
    assert_eq!(resumed.status_code, 200);
    let mut given = seqs;
    given.sort_unstable();
    assert_eq!(given, (5..=24).collect::<Vec<u64>>(), "distinct, gap-free numbers");
    let posts = unpacked(&h.server.posts_to("c1"));
    let seen: BTreeSet<u64> = posts.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seen, (1..=24).collect::<BTreeSet<u64>>(), "every message reached the resuming client");
    let reply = posts.iter().find(|m| m["type"] == "reply").unwrap();
    assert_eq!(reply["data"]["recovered"], true, "{reply}");
}

/// Sends `count` custom messages of about `bytes` each to `channel`.
pub(crate) async fn fill(h: &Harness, channel: &str, count: usize, bytes: usize) {
    let target = lambda_ws::Target::Channel(ChannelName::new(channel).unwrap());
    for n in 0..count {
        let message: lambda_ws::Outbound =
            serde_json::from_value(json!({"type":"note","n":n,"text":"x".repeat(bytes)})).unwrap();
        h.app.sender().send(&target, &message, &[]).await.unwrap();
    }
}

/// A replay costs what it posts: ten `subscribe {since: 0}` of a channel with 100 kept messages
/// deliver no more frames than the connection's message limit allows, and each replay packs its
/// messages into 32 KiB frames (one billed unit each) instead of a post per message.
#[tokio::test]
async fn replays_count_against_the_message_limit_and_are_packed_into_frames() {
    let limits = RateLimits { messages_per_connection: 20, ..base_config().rate_limits };
    let h = Harness::new(Config { rate_limits: limits, ..history_config("lobby=100/5m; room-*=100/5m") }).await;
    fill(&h, "lobby", 100, 2000).await;
    h.connected("greedy", "ann", "lobby").await;
    let mut frames = 0;
    let mut replies = 0;
    let mut refused = Vec::new();
    for n in 0..10 {
        let body = json!({"action":"subscribe","channel":"lobby","since":0,"ref":format!("s{n}")}).to_string();
        let posts = h.send_message("greedy", &body).await;
        frames += posts.iter().filter(|p| p["type"] == "replay" || p["type"] == "note").count();
        replies += posts.iter().filter(|p| p["type"] == "reply").count();
        refused.extend(posts.iter().filter(|p| p["code"] == "rate_limited").map(|p| p["ref"].clone()));
        if n == 0 {
            let messages = unpacked(&posts);
            let seqs: Vec<u64> = messages.iter().filter_map(|m| m["seq"].as_u64()).collect();
            assert_eq!(seqs, (1..=100).collect::<Vec<_>>(), "the whole window, in order, once");
            assert!(posts.len() <= 9, "about 200 KB in 32 KiB frames, not 100 posts: {}", posts.len());
            assert!(posts.iter().all(|p| p.to_string().len() <= 32 * 1024), "each frame one billed unit");
        }
    }
    assert!(frames + replies <= 20, "{frames} frames and {replies} replies within a limit of 20");
    assert!(replies >= 1 && !refused.is_empty(), "the first replays, later ones are refused: {refused:?}");
    assert!(refused.iter().all(|r| r.as_str().is_some_and(|r| r.starts_with('s'))), "each with its ref");
    // A minute later the connection may ask again.
    h.clock.advance(60_000);
    let plain = h.send_message("greedy", r#"{"action":"subscribe","channel":"lobby"}"#).await;
    let epoch = plain[0]["data"]["epoch"].as_str().unwrap().to_owned();
    let body = json!({"action":"subscribe","channel":"lobby","since":90,"epoch":epoch}).to_string();
    let posts = h.send_message("greedy", &body).await;
    assert_eq!(unpacked(&posts).len(), 11, "10 messages and the answer: {posts:?}");
}

/// An answer over 128 KiB never vanishes: `history` returns as many of the latest messages as fit
/// with `more`, and pages back with `before`; any other answer that cannot be sent becomes a
/// `too_large` error carrying the client's `ref`.
#[tokio::test]
async fn answers_always_fit_or_become_a_typed_error() {
    let h = Harness::new(history_config("room-*=100/5m")).await;
    h.connected("reader", "ann", "lobby").await;
    fill(&h, "room-big", 40, 4000).await;
    let mut seen = Vec::new();
    let mut before: Option<u64> = None;
    for page in 0.. {
        assert!(page < 5, "paging ends");
        let mut body = json!({"action":"history","channel":"room-big","ref":format!("h{page}")});
        if let Some(before) = before {
            body["before"] = json!(before);
        }
        let posts = h.send_message("reader", &body.to_string()).await;
        assert_eq!((posts.len(), posts[0]["type"].as_str()), (1, Some("reply")), "{:?}", posts[0]["code"]);
        assert!(posts[0].to_string().len() <= 128 * 1024, "fits one message");
        let data = &posts[0]["data"];
        let seqs: Vec<u64> = data["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert!(!seqs.is_empty());
        seen.splice(0..0, seqs.iter().copied());
        before = seqs.first().copied();
        if data["more"] == false {
            break;
        }
        assert_eq!(data["seq"], 40, "the stream's head on every page");
    }
    assert_eq!(seen, (1..=40).collect::<Vec<_>>(), "every kept message once, across pages");

    // A route whose answer is too large: the client hears of it, with its ref.
    #[derive(Debug)]
    struct Huge;
    #[lambda_ws::async_trait]
    impl lambda_ws::Route for Huge {
        async fn handle(
            &self,
            ctx: &lambda_ws::MessageContext<'_>,
            _: lambda_ws::Inbound,
        ) -> Result<Option<lambda_ws::Outbound>, lambda_ws::RouteError> {
            Ok(Some(ctx.reply(json!({ "blob": "x".repeat(200_000) }))))
        }
    }
    let router = Router::builtin().route("huge", Huge);
    let posts = h.send_message_with(&router, "reader", r#"{"action":"huge","ref":"big-1"}"#).await;
    assert_eq!((posts[0]["code"].as_str(), posts[0]["ref"].as_str()), (Some("too_large"), Some("big-1")), "{posts:?}");
}

/// `exclude` leaves connections out of a send's live posts; in a channel with history the
/// message is still in the channel's stream, the same for every member, so an excluded member
/// reads it with `history` and a resume replays it (exclude is not access control).
#[tokio::test]
async fn an_excluded_member_is_not_posted_to_but_the_stream_still_holds_the_message() {
    let h = Harness::new(history_config("room-*=100/5m")).await;
    h.connected("ex1", "ann", "room-x").await;
    h.connected("ex2", "bob", "room-x").await;
    let target = lambda_ws::Target::Channel(ChannelName::new("room-x").unwrap());
    let message: lambda_ws::Outbound = serde_json::from_value(json!({"type":"note","text":"hi"})).unwrap();
    let excluded = [lambda_ws::ConnectionId::new("ex2").unwrap()];
    h.server.clear();
    let report = h.app.sender().send(&target, &message, &excluded).await.unwrap();
    assert_eq!((report.delivered, report.excluded), (1, 1), "{report:?}");
    assert!(h.server.posts_to("ex2").is_empty(), "not posted live");
    assert_eq!(h.server.posts_to("ex1")[0]["seq"], 1);
    let read = h.send_message("ex2", r#"{"action":"history","channel":"room-x"}"#).await;
    assert_eq!(read[0]["data"]["messages"][0]["text"], "hi", "in the stream: {read:?}");
    let resumed = unpacked(&h.send_message("ex2", r#"{"action":"subscribe","channel":"room-x","since":0}"#).await);
    assert_eq!((resumed[0]["seq"].as_u64(), resumed[1]["data"]["recovered"].as_bool()), (Some(1), Some(true)));
}

/// What a route reads of a channel goes through the checks `subscribe` makes: a connection
/// whose token is bound to one channel cannot read another through an app's own route.
#[tokio::test]
async fn an_apps_route_reads_channels_only_through_the_checks() {
    #[derive(Debug)]
    struct Peek;
    #[lambda_ws::async_trait]
    impl lambda_ws::Route for Peek {
        async fn handle(
            &self,
            ctx: &lambda_ws::MessageContext<'_>,
            msg: lambda_ws::Inbound,
        ) -> Result<Option<lambda_ws::Outbound>, lambda_ws::RouteError> {
            let channel = ctx.channel_field(&msg, "channel")?;
            let history = ctx.channel_history(&channel, None, None).await?;
            let presence = ctx.channel_presence(&channel).await?;
            Ok(Some(ctx.reply(json!({ "history": history, "presence": presence }))))
        }
    }
    let config = Config {
        presence: lambda_ws::presence::PresenceRules::parse("room-*").unwrap(),
        ..history_config("room-*=10/5m")
    };
    let h = Harness::new(config).await;
    fill(&h, "room-secret", 1, 10).await;
    let token = h.token("ann", Some("room-mine")).await;
    assert_eq!(h.connect("bound9", Some(&token), None).await.0, 200);
    let router = Router::builtin().route("peek", Peek);
    let posts = h.send_message_with(&router, "bound9", r#"{"action":"peek","channel":"room-secret","ref":"p"}"#).await;
    assert_eq!((posts[0]["code"].as_str(), posts[0]["ref"].as_str()), (Some("forbidden"), Some("p")), "{posts:?}");
    let posts = h.send_message_with(&router, "bound9", r#"{"action":"peek","channel":"room-mine"}"#).await;
    assert_eq!(posts[0]["type"], "reply", "its own channel: {posts:?}");
    let id = lambda_ws::ConnectionId::new("bound9").unwrap();
    let session = h.app.sessions.get_session(&id, h.clock.now_secs()).await.unwrap().unwrap();
    assert!(!h.app.may_join(&session, &ChannelName::new("room-secret").unwrap()).await);
    assert!(h.app.may_join(&session, &ChannelName::new("room-mine").unwrap()).await);
}

/// A client's long value in a typed request is cut in the error it gets (and the log line).
#[tokio::test]
async fn a_long_value_in_a_typed_request_is_cut_in_its_error() {
    let h = Harness::new(history_config("lobby=10/5m")).await;
    h.connected("long1", "ann", "lobby").await;
    let body = json!({"action":"subscribe","channel":"lobby","since":"9".repeat(100_000),"ref":"l"}).to_string();
    let posts = h.send_message("long1", &body).await;
    assert_eq!((posts[0]["code"].as_str(), posts[0]["field"].as_str()), (Some("bad_request"), Some("since")));
    assert!(posts[0].to_string().len() < 400, "{} bytes", posts[0].to_string().len());
    let body = json!({"action":"subscribe","channel":"lobby","since":u64::MAX,"epoch":"x"}).to_string();
    let posts = h.send_message("long1", &body).await;
    assert_eq!(posts[0]["data"]["recovered"], false, "a number past the head is no position: {posts:?}");
}
