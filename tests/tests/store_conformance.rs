//! One conformance suite, two stores: the in-memory store and the DynamoDB store on the engine
//! the test command starts. Both must behave the same for every case.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use lambda_ws::history::{HistoryRule, HistoryStore};
use lambda_ws::presence::{Member, Presence, PresenceStore, Present};
use lambda_ws::session::Recipient;
use lambda_ws::store::{Admission, Claim, Joined, Removed, Segment, SessionFilter, UserLimits};
use lambda_ws::store::{CounterStore, Cursor, Page, SessionStore, StoreError, TokenRecord, TokenStore};
use lambda_ws::{ChannelName, ConnectionId, Identity, Session};
use lambda_ws_e2e::fresh_dynamodb_store;

const NOW: i64 = 1_795_446_000;

trait Store: SessionStore + TokenStore + CounterStore + HistoryStore + PresenceStore {}
impl<T: SessionStore + TokenStore + CounterStore + HistoryStore + PresenceStore> Store for T {}

fn id(n: usize) -> ConnectionId {
    ConnectionId::new(format!("conn{n:05}=")).unwrap()
}

fn ch(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

fn session(n: usize, user: Option<&str>, expires_at: i64) -> Session {
    Session {
        connection_id: id(n),
        identity: user.map(|u| Identity::user(u).with_groups(["staff"])),
        api_id: "api1".into(),
        stage: "prod".into(),
        endpoint: format!("https://api1.example/prod{}", n % 2),
        source_ip: "203.0.113.7".into(),
        user_agent: Some("ua".into()),
        connected_at: NOW * 1000,
        last_seen: NOW * 1000,
        expires_at,
        metadata: BTreeMap::from([("plan".to_owned(), "pro".to_owned())]),
        bound_channel: n.is_multiple_of(3).then(|| ch("lobby")),
    }
}

/// Removes `id`'s session; what the store says it removed, channels sorted.
async fn remove(store: &dyn Store, id: &ConnectionId) -> Option<Removed> {
    let mut removed = store.remove_session(id).await.unwrap()?;
    removed.channels.sort();
    Some(removed)
}

/// What removing `session`, in `channels` (sorted), says.
fn removed(session: &Session, channels: &[&str]) -> Removed {
    Removed::of(session, channels.iter().map(|c| ch(c)).collect())
}

/// Reads every page, checking each respects the limit.
async fn all_pages<T, F, Fut>(limit: usize, fetch: F) -> (Vec<T>, usize)
where
    F: Fn(Option<Cursor>) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
{
    let (mut items, mut pages, mut cursor) = (Vec::new(), 0, None);
    loop {
        let page = fetch(cursor).await.expect("page");
        assert!(page.items.len() <= limit, "page of {} over limit {limit}", page.items.len());
        pages += 1;
        items.extend(page.items);
        cursor = page.next;
        if cursor.is_none() || pages > 1000 {
            return (items, pages);
        }
    }
}

fn ids(recipients: &[Recipient]) -> HashSet<String> {
    recipients.iter().map(|r| r.connection_id.to_string()).collect()
}

async fn put_get_remove(store: Arc<dyn Store>) {
    let s = session(1, Some("ann"), NOW + 100);
    assert_eq!(store.get_session(&s.connection_id, NOW).await.unwrap(), None);
    store.put_session(&s).await.unwrap();
    assert_eq!(store.get_session(&s.connection_id, NOW).await.unwrap(), Some(s.clone()), "round trip");
    let anonymous =
        Session { identity: None, user_agent: None, metadata: BTreeMap::new(), ..session(2, None, NOW + 100) };
    store.put_session(&anonymous).await.unwrap();
    assert_eq!(store.get_session(&anonymous.connection_id, NOW).await.unwrap(), Some(anonymous.clone()));
    assert_eq!(remove(&*store, &s.connection_id).await, Some(removed(&s, &[])));
    assert_eq!(store.get_session(&s.connection_id, NOW).await.unwrap(), None);
    assert_eq!(store.remove_session(&s.connection_id).await.unwrap(), None, "removal is idempotent");
    assert!(store.get_session(&anonymous.connection_id, NOW).await.unwrap().is_some(), "others untouched");
}

async fn expired_sessions_are_invisible(store: Arc<dyn Store>) {
    let s = session(3, Some("bob"), NOW);
    store.put_session(&s).await.unwrap();
    store.join(&s, &ch("lobby"), 16).await.unwrap();
    assert_eq!(store.get_session(&s.connection_id, NOW).await.unwrap(), None, "expires_at == now is expired");
    assert!(store.get_session(&s.connection_id, NOW - 1).await.unwrap().is_some());
    assert!(store.channel_page(&ch("lobby"), None, 10, NOW).await.unwrap().items.is_empty());
    assert!(store.user_page("bob", None, 10, NOW).await.unwrap().items.is_empty());
    assert!(store.channels_of(&s.connection_id, NOW).await.unwrap().is_empty());
    let (expired, _) = all_pages(10, |c| {
        let store = store.clone();
        async move { store.expired_page(c.as_ref(), 10, NOW).await }
    })
    .await;
    assert_eq!(expired, vec![s.connection_id.clone()]);
}

async fn memberships(store: Arc<dyn Store>) {
    let a = session(10, Some("ann"), NOW + 100);
    let b = session(11, None, NOW + 100);
    for s in [&a, &b] {
        store.put_session(s).await.unwrap();
    }
    store.join(&a, &ch("red"), 16).await.unwrap();
    store.join(&a, &ch("blue"), 16).await.unwrap();
    store.join(&a, &ch("blue"), 16).await.unwrap();
    store.join(&b, &ch("blue"), 16).await.unwrap();
    let mut of_a = store.channels_of(&a.connection_id, NOW).await.unwrap();
    of_a.sort();
    assert_eq!(of_a, vec![ch("blue"), ch("red")], "joining twice is one membership");
    let blue = store.channel_page(&ch("blue"), None, 10, NOW).await.unwrap();
    assert_eq!(ids(&blue.items), HashSet::from([id(10).to_string(), id(11).to_string()]));
    assert!(blue.items.iter().any(|r| r.endpoint == a.endpoint), "membership carries the endpoint");
    assert!(store.leave(&a.connection_id, &ch("blue")).await.unwrap());
    assert!(!store.leave(&a.connection_id, &ch("blue")).await.unwrap(), "second leave reports absence");
    assert_eq!(store.channels_of(&a.connection_id, NOW).await.unwrap(), vec![ch("red")]);
    assert_eq!(remove(&*store, &a.connection_id).await, Some(removed(&a, &["red"])), "says its channels");
    assert!(store.channel_page(&ch("red"), None, 10, NOW).await.unwrap().items.is_empty(), "memberships removed");
    assert!(store.channels_of(&a.connection_id, NOW).await.unwrap().is_empty());
    assert_eq!(
        ids(&store.channel_page(&ch("blue"), None, 10, NOW).await.unwrap().items),
        HashSet::from([id(11).to_string()])
    );
}

async fn pages_of_channels_users_and_all(store: Arc<dyn Store>) {
    let n = 57;
    for i in 100..100 + n {
        let user = if i % 3 == 0 { "carol" } else { "dave" };
        let s = session(i, Some(user), NOW + 100);
        store.put_session(&s).await.unwrap();
        store.join(&s, &ch("big"), 16).await.unwrap();
    }
    let expected: HashSet<String> = (100..100 + n).map(|i| id(i).to_string()).collect();
    let (members, pages) = all_pages(10, |c| {
        let store = store.clone();
        async move { store.channel_page(&ch("big"), c.as_ref(), 10, NOW).await }
    })
    .await;
    assert_eq!(members.len(), n, "no duplicates across pages");
    assert_eq!(ids(&members), expected);
    assert!(pages >= 6, "{pages} pages");
    let (carol, pages) = all_pages(4, |c| {
        let store = store.clone();
        async move { store.user_page("carol", c.as_ref(), 4, NOW).await }
    })
    .await;
    assert_eq!(ids(&carol), (100..100 + n).filter(|i| i % 3 == 0).map(|i| id(i).to_string()).collect());
    assert!(pages > 1);
    let mut everyone = HashSet::new();
    for index in 0..3 {
        let (part, _) =
            all_pages(7, |c| {
                let store = store.clone();
                async move {
                    store.scan_page(Segment { index, total: 3 }, &SessionFilter::default(), c.as_ref(), 7, NOW).await
                }
            })
            .await;
        for r in part {
            assert!(everyone.insert(r.connection_id.to_string()), "segments overlap at {}", r.connection_id);
        }
    }
    assert_eq!(everyone, expected, "segments cover all sessions");
    assert!(matches!(
        store.channel_page(&ch("big"), Some(&Cursor("not a cursor".into())), 10, NOW).await,
        Err(StoreError::BadCursor)
    ));
}

async fn tokens_are_taken_once(store: Arc<dyn Store>) {
    let record = TokenRecord {
        identity: Identity::user("erin").with_groups(["a", "b"]),
        channel: Some(ch("room")),
        expires_at: NOW + 60,
        issued_at: NOW * 1000,
    };
    store.put_token("ab12", &record).await.unwrap();
    let bare =
        TokenRecord { identity: Identity::user("fay"), channel: None, expires_at: NOW + 60, issued_at: NOW * 1000 };
    store.put_token("cd34", &bare).await.unwrap();
    assert_eq!(store.take_token("ab12").await.unwrap(), Some(record));
    assert_eq!(store.take_token("ab12").await.unwrap(), None);
    assert_eq!(store.take_token("cd34").await.unwrap(), Some(bare));
    assert_eq!(store.take_token("nope").await.unwrap(), None);
    // Tokens never show up as sessions or channel members.
    assert!(store.user_page("erin", None, 10, NOW).await.unwrap().items.is_empty());
}

async fn expired_tokens_are_purged(store: Arc<dyn Store>) {
    let record = |user: &str, expires_at| TokenRecord {
        identity: Identity::user(user),
        channel: None,
        expires_at,
        issued_at: NOW * 1000,
    };
    store.put_token("old1", &record("gus", NOW - 1)).await.unwrap();
    store.put_token("old2", &record("gus", NOW)).await.unwrap();
    store.put_token("live", &record("gus", NOW + 1)).await.unwrap();
    store.put_session(&session(1, Some("gus"), NOW + 60)).await.unwrap();
    assert_eq!(store.purge_expired_tokens(NOW, true).await.unwrap(), 2, "a dry run counts");
    assert_eq!(store.purge_expired_tokens(NOW, false).await.unwrap(), 2);
    assert_eq!(store.purge_expired_tokens(NOW, false).await.unwrap(), 0);
    assert!(store.take_token("live").await.unwrap().is_some(), "live tokens stay");
    assert!(store.take_token("old1").await.unwrap().is_none());
    assert!(store.get_session(&id(1), NOW).await.unwrap().is_some(), "sessions are not tokens");
}

async fn concurrent_token_consumers(store: Arc<dyn Store>) {
    let record =
        TokenRecord { identity: Identity::user("gus"), channel: None, expires_at: NOW + 60, issued_at: NOW * 1000 };
    store.put_token("race", &record).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_token("race").await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap().is_some());
    }
    assert_eq!(winners, 1, "exactly one of 32 concurrent consumers wins");
}

async fn counters_count_atomically(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.increment("k#1", NOW + 120).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=20).collect::<Vec<u64>>(), "every increment sees a distinct value");
    assert_eq!(store.increment("k#2", NOW + 120).await.unwrap(), 1);
}

async fn filtered_scans(store: Arc<dyn Store>) {
    // 0..12: api1 except every 4th (api2); plan pro on evens, free on odds; channels team-a (n % 3 == 0),
    // team-b (n % 2 == 0), solo (all). One expired session that would match everything.
    for n in 0..12 {
        let mut s = session(n, None, NOW + 600);
        if n % 4 == 0 {
            s.api_id = "api2".into();
        }
        s.metadata = BTreeMap::from([("plan".to_owned(), (if n % 2 == 0 { "pro" } else { "free" }).to_owned())]);
        store.put_session(&s).await.unwrap();
        for (channel, member) in [("team-a", n % 3 == 0), ("team-b", n % 2 == 0), ("solo", true)] {
            if member {
                store.join(&s, &ch(channel), 16).await.unwrap();
            }
        }
    }
    let mut stale = session(99, None, NOW - 1);
    stale.metadata = BTreeMap::from([("plan".to_owned(), "pro".to_owned())]);
    store.put_session(&stale).await.unwrap();
    store.join(&stale, &ch("team-a"), 16).await.unwrap();

    let scan = |filter: SessionFilter| {
        let store = store.clone();
        async move {
            let mut found = Vec::new();
            for index in 0..2 {
                let (part, _) = all_pages(5, |c| {
                    let (store, filter) = (store.clone(), filter.clone());
                    async move { store.scan_page(Segment { index, total: 2 }, &filter, c.as_ref(), 5, NOW).await }
                })
                .await;
                found.extend(part.into_iter().map(|r| r.connection_id.to_string()));
            }
            found.into_iter().collect::<HashSet<_>>()
        }
    };
    let expect = |pred: fn(usize) -> bool| (0..12).filter(|n| pred(*n)).map(|n| id(n).to_string()).collect();
    let pro = BTreeMap::from([("plan".to_owned(), "pro".to_owned())]);
    assert_eq!(scan(SessionFilter::default()).await, expect(|_| true));
    assert_eq!(scan(SessionFilter { api_id: Some("api2".into()), ..Default::default() }).await, expect(|n| n % 4 == 0));
    assert_eq!(scan(SessionFilter { metadata: pro.clone(), ..Default::default() }).await, expect(|n| n % 2 == 0));
    assert_eq!(
        scan(SessionFilter { channel_prefix: Some("team-".into()), ..Default::default() }).await,
        expect(|n| n % 3 == 0 || n % 2 == 0)
    );
    assert_eq!(
        scan(SessionFilter { channel_prefix: Some("team-a".into()), metadata: pro, api_id: Some("api1".into()) }).await,
        expect(|n| n % 6 == 0 && n % 4 != 0)
    );
    let nobody = BTreeMap::from([("plan".to_owned(), "gold".to_owned())]);
    assert!(scan(SessionFilter { metadata: nobody, ..Default::default() }).await.is_empty());
}

async fn a_token_binding_is_stored_with_the_session(store: Arc<dyn Store>) {
    let bound = session(3, Some("ann"), NOW + 100);
    assert_eq!(bound.bound_channel, Some(ch("lobby")));
    store.put_session(&bound).await.unwrap();
    let read = store.get_session(&bound.connection_id, NOW).await.unwrap().unwrap();
    assert_eq!(read.bound_channel, Some(ch("lobby")), "the binding survives the round trip");
}

async fn the_channel_limit_holds_under_concurrent_joins(store: Arc<dyn Store>) {
    let s = session(40, Some("ann"), NOW + 100);
    store.put_session(&s).await.unwrap();
    let joins = (0..16).map(|i| {
        let (store, s) = (store.clone(), s.clone());
        tokio::spawn(async move { store.join(&s, &ch(&format!("c{i}")), 4).await.unwrap() })
    });
    let outcomes: Vec<Joined> = futures::future::join_all(joins).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == Joined::New).count(), 4, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == Joined::Full).count(), 12, "{outcomes:?}");
    let joined = store.channels_of(&s.connection_id, NOW).await.unwrap();
    assert_eq!(joined.len(), 4, "never more memberships than the limit");
    assert_eq!(store.join(&s, &joined[0], 4).await.unwrap(), Joined::Already, "a member at the limit");
    assert_eq!(store.join(&s, &ch("more"), 4).await.unwrap(), Joined::Full);
    assert!(store.leave(&s.connection_id, &joined[0]).await.unwrap());
    assert_eq!(store.join(&s, &ch("more"), 4).await.unwrap(), Joined::New, "leaving frees a place");
    assert_eq!(store.join(&s, &ch("again"), 4).await.unwrap(), Joined::Full);
}

/// Only the connection limit.
const SLOTS: UserLimits = UserLimits { max_connections: 3, connects_per_minute: 0 };

fn claimed(claim: Claim) -> bool {
    matches!(claim, Claim::Claimed { .. })
}

async fn connection_slots_are_claimed_atomically_and_freed(store: Arc<dyn Store>) {
    let user = |n: usize| session(n, Some("slotty"), NOW + 100);
    let claims = (50..58).map(|n| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_connection(&user(n), SLOTS, NOW * 1000, NOW).await.unwrap() })
    });
    let outcomes: Vec<Claim> = futures::future::join_all(claims).await.into_iter().map(Result::unwrap).collect();
    let granted: Vec<bool> = outcomes.iter().map(|c| claimed(*c)).collect();
    assert_eq!(granted.iter().filter(|g| **g).count(), 3, "exactly the limit under concurrency: {outcomes:?}");
    assert!(outcomes.iter().all(|c| matches!(c, Claim::Claimed { slot: true } | Claim::Full)), "{outcomes:?}");
    let holders: Vec<usize> = (50..58).zip(&granted).filter(|(_, g)| **g).map(|(n, _)| n).collect();
    assert!(
        claimed(store.claim_connection(&user(holders[0]), SLOTS, NOW * 1000, NOW).await.unwrap()),
        "a holder claims again"
    );
    assert_eq!(store.claim_connection(&user(60), SLOTS, NOW * 1000, NOW).await.unwrap(), Claim::Full);
    assert_eq!(
        store.claim_connection(&session(61, None, NOW + 100), SLOTS, NOW * 1000, NOW).await.unwrap(),
        Claim::Claimed { slot: false },
        "anonymous: no slot"
    );
    assert!(claimed(
        store.claim_connection(&session(62, Some("other"), NOW + 100), SLOTS, NOW * 1000, NOW).await.unwrap()
    ));
    // Removing a session frees its slot, one at a time or in a batch.
    for n in &holders {
        store.open_session(&user(*n), Some(&ch("lobby")), true).await.unwrap();
    }
    store.remove_session(&id(holders[0])).await.unwrap();
    assert!(
        claimed(store.claim_connection(&user(60), SLOTS, NOW * 1000, NOW).await.unwrap()),
        "freed by remove_session"
    );
    store.remove_sessions(&[id(holders[1]), id(holders[2])]).await.unwrap();
    assert!(
        claimed(store.claim_connection(&user(63), SLOTS, NOW * 1000, NOW).await.unwrap()),
        "freed by remove_sessions"
    );
    assert!(claimed(store.claim_connection(&user(64), SLOTS, NOW * 1000, NOW).await.unwrap()));
    assert_eq!(store.claim_connection(&user(65), SLOTS, NOW * 1000, NOW).await.unwrap(), Claim::Full, "full again");
    // Slots of sessions that expired without a $disconnect are reclaimed.
    let later = NOW + 100;
    assert!(claimed(
        store.claim_connection(&session(66, Some("slotty"), later + 100), SLOTS, NOW * 1000, later).await.unwrap()
    ));
}

/// The per-user connect rate rides on the slot claim's write: exactly the limit under 32
/// concurrent connects, a refused claim takes no slot, and the next minute starts afresh.
async fn connects_per_user_are_counted_with_the_slot(store: Arc<dyn Store>) {
    let limits = UserLimits { max_connections: 100, connects_per_minute: 5 };
    let user = |n: usize| session(n, Some("eager"), NOW + 1000);
    let claims = (100..132).map(|n| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_connection(&user(n), limits, NOW * 1000, NOW).await.unwrap() })
    });
    let outcomes: Vec<Claim> = futures::future::join_all(claims).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes.iter().filter(|c| **c == Claim::Claimed { slot: true }).count(), 5, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|c| **c == Claim::RateLimited).count(), 27, "{outcomes:?}");
    // The refused ones took no slot: with 5 slots left of 10, five more claims fit next minute.
    let few = UserLimits { max_connections: 10, connects_per_minute: 100 };
    let next = NOW + 60;
    for n in 140..145 {
        assert!(claimed(store.claim_connection(&user(n), few, NOW * 1000, next).await.unwrap()), "claim {n}");
    }
    assert_eq!(store.claim_connection(&user(145), few, NOW * 1000, next).await.unwrap(), Claim::Full, "5 + 5 slots");
    // Without the connection limit, the count alone; with neither, nothing.
    let rate_only = UserLimits { max_connections: 0, connects_per_minute: 1 };
    let later = NOW + 600;
    assert_eq!(
        store.claim_connection(&user(146), rate_only, NOW * 1000, later).await.unwrap(),
        Claim::Claimed { slot: false }
    );
    assert_eq!(store.claim_connection(&user(147), rate_only, NOW * 1000, later).await.unwrap(), Claim::RateLimited);
    assert_eq!(
        store.claim_connection(&user(148), UserLimits::default(), NOW * 1000, later).await.unwrap(),
        Claim::Claimed { slot: false }
    );
}

/// `open_session` stores the session with its connect channel: listed in the channel, in
/// `channels_of`, matched by a channel-prefix scan, left like any other channel, removed with it.
async fn a_session_opens_with_its_connect_channel(store: Arc<dyn Store>) {
    let a = session(150, Some("ann"), NOW + 100);
    let b = session(151, None, NOW + 100);
    store.open_session(&a, Some(&ch("room-one")), false).await.unwrap();
    store.open_session(&b, None, false).await.unwrap();
    assert_eq!(store.get_session(&a.connection_id, NOW).await.unwrap(), Some(a.clone()), "round trip");
    let page = store.channel_page(&ch("room-one"), None, 10, NOW).await.unwrap();
    assert_eq!(ids(&page.items), HashSet::from([id(150).to_string()]));
    assert_eq!(page.items[0].endpoint, a.endpoint);
    assert_eq!(store.channels_of(&a.connection_id, NOW).await.unwrap(), vec![ch("room-one")]);
    assert!(store.channels_of(&b.connection_id, NOW).await.unwrap().is_empty());
    assert_eq!(store.join(&a, &ch("room-one"), 2).await.unwrap(), Joined::Already, "the connect channel counts");
    assert_eq!(store.join(&a, &ch("room-two"), 2).await.unwrap(), Joined::New);
    assert_eq!(store.join(&a, &ch("room-three"), 2).await.unwrap(), Joined::Full, "two channels in all");
    let mut of_a = store.channels_of(&a.connection_id, NOW).await.unwrap();
    of_a.sort();
    assert_eq!(of_a, vec![ch("room-one"), ch("room-two")]);
    let filter = SessionFilter { channel_prefix: Some("room-".into()), ..SessionFilter::default() };
    let (found, _) = all_pages(10, |c| {
        let (store, filter) = (store.clone(), filter.clone());
        async move { store.scan_page(Segment::WHOLE, &filter, c.as_ref(), 10, NOW).await }
    })
    .await;
    assert_eq!(ids(&found), HashSet::from([id(150).to_string()]), "prefix scan: {found:?}");
    assert!(store.leave(&a.connection_id, &ch("room-one")).await.unwrap(), "leave the connect channel");
    assert!(!store.leave(&a.connection_id, &ch("room-one")).await.unwrap(), "once");
    assert!(store.channel_page(&ch("room-one"), None, 10, NOW).await.unwrap().items.is_empty());
    assert_eq!(store.channels_of(&a.connection_id, NOW).await.unwrap(), vec![ch("room-two")]);
    assert_eq!(store.join(&a, &ch("room-three"), 2).await.unwrap(), Joined::New, "its place is free");
    assert_eq!(store.get_session(&a.connection_id, NOW).await.unwrap(), Some(a.clone()), "session unchanged");
    assert_eq!(remove(&*store, &a.connection_id).await, Some(removed(&a, &["room-three", "room-two"])));
    for name in ["room-one", "room-two", "room-three"] {
        assert!(store.channel_page(&ch(name), None, 10, NOW).await.unwrap().items.is_empty(), "{name} emptied");
    }
    assert!(store.get_session(&b.connection_id, NOW).await.unwrap().is_some(), "others untouched");
}

async fn messages_are_admitted_exactly_to_the_limit_under_concurrency(store: Arc<dyn Store>) {
    let s = session(70, Some("ann"), NOW + 100);
    store.put_session(&s).await.unwrap();
    let window = NOW / 60;
    let admits = (0..32).map(|_| {
        let (store, id) = (store.clone(), s.connection_id.clone());
        tokio::spawn(async move { store.admit_message(&id, NOW, window, 10).await.unwrap() })
    });
    let outcomes: Vec<Admission> = futures::future::join_all(admits).await.into_iter().map(Result::unwrap).collect();
    let admitted = outcomes.iter().filter(|o| matches!(o, Admission::Admitted(read) if **read == s)).count();
    assert_eq!(admitted, 10, "exactly the limit, each with the session as stored");
    assert_eq!(outcomes.iter().filter(|o| **o == Admission::Limited).count(), 22);
    assert!(
        matches!(store.admit_message(&s.connection_id, NOW, window + 1, 10).await.unwrap(), Admission::Admitted(_)),
        "next window"
    );
    assert!(
        matches!(store.admit_message(&s.connection_id, NOW, window, 0).await.unwrap(), Admission::Admitted(_)),
        "no limit"
    );
    assert_eq!(store.admit_message(&id(71), NOW, window, 10).await.unwrap(), Admission::NoSession, "unknown");
    assert_eq!(
        store.admit_message(&s.connection_id, NOW + 100, window, 10).await.unwrap(),
        Admission::NoSession,
        "expired"
    );
    assert_eq!(
        store.get_session(&s.connection_id, NOW).await.unwrap(),
        Some(s.clone()),
        "counting leaves the session as it was"
    );
    store.remove_session(&s.connection_id).await.unwrap();
    assert_eq!(
        store.admit_message(&s.connection_id, NOW, window + 1, 10).await.unwrap(),
        Admission::NoSession,
        "removed"
    );
}

async fn last_seen_follows_messages_at_most_one_write_a_minute(store: Arc<dyn Store>) {
    let s = session(72, Some("ann"), NOW + 1000);
    store.put_session(&s).await.unwrap();
    let seen = |admission: Admission| match admission {
        Admission::Admitted(session) => session.last_seen,
        other => panic!("{other:?}"),
    };
    let stored = || async { store.get_session(&s.connection_id, NOW).await.unwrap().unwrap().last_seen };
    // Counted messages set it in the count's own write.
    let later = NOW + 30;
    assert_eq!(seen(store.admit_message(&s.connection_id, later, later / 60, 10).await.unwrap()), later * 1000);
    assert_eq!(stored().await, later * 1000);
    // With nothing to count, it is written once it is a minute old, not before.
    assert_eq!(seen(store.admit_message(&s.connection_id, NOW + 80, 0, 0).await.unwrap()), later * 1000);
    assert_eq!(stored().await, later * 1000, "20 s after: not written");
    assert_eq!(seen(store.admit_message(&s.connection_id, NOW + 95, 0, 0).await.unwrap()), (NOW + 95) * 1000);
    assert_eq!(stored().await, (NOW + 95) * 1000, "65 s after: written");
}

fn rule(size: u32, secs: u64) -> HistoryRule {
    HistoryRule { size, window: std::time::Duration::from_secs(secs) }
}

/// Concurrent senders on one channel get distinct, gap-free numbers in one epoch, and every
/// message is kept under its number.
async fn sequences_are_gap_free_under_concurrent_senders(store: Arc<dyn Store>) {
    let channel = ch("task-seq");
    let now_ms = NOW * 1000;
    let appends = (0..32).map(|n| {
        let (store, channel) = (store.clone(), channel.clone());
        tokio::spawn(async move {
            store.append(&channel, &format!(r#"{{"type":"t","n":{n}}}"#), rule(100, 300), now_ms).await.unwrap()
        })
    });
    let positions: Vec<_> = futures::future::join_all(appends).await.into_iter().map(Result::unwrap).collect();
    let mut seqs: Vec<u64> = positions.iter().map(|p| p.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=32).collect::<Vec<_>>(), "distinct and gap-free");
    assert!(positions.iter().all(|p| p.epoch == positions[0].epoch && !p.epoch.is_empty()), "one epoch");
    let recent = store.recent(&channel, 0, rule(100, 300), now_ms).await.unwrap();
    assert_eq!((recent.head, recent.epoch.as_deref()), (32, Some(positions[0].epoch.as_str())));
    assert_eq!(recent.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=32).collect::<Vec<_>>());
    let by_seq: BTreeMap<u64, &str> = recent.entries.iter().map(|e| (e.seq, e.payload.as_str())).collect();
    for p in &positions {
        assert!(by_seq[&p.seq].starts_with(r#"{"type":"t""#), "kept under its own number");
    }
    let other = store.append(&ch("task-other"), r#"{"type":"t"}"#, rule(100, 300), now_ms).await.unwrap();
    assert_eq!(other.seq, 1, "each channel has its own stream");
    assert!(store.recent(&ch("task-none"), 0, rule(5, 60), now_ms).await.unwrap() == Default::default());
}

/// A window keeps the newest `size` messages, none older than its time; `recent` reads after a
/// number.
async fn history_keeps_a_window_by_size_and_time(store: Arc<dyn Store>) {
    let channel = ch("room-window");
    let now_ms = NOW * 1000;
    for n in 1..=8 {
        store.append(&channel, &format!(r#"{{"type":"t","n":{n}}}"#), rule(5, 60), now_ms + n * 1000).await.unwrap();
    }
    let seqs = |r: lambda_ws::history::Recent| r.entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    let at = now_ms + 9000;
    assert_eq!(seqs(store.recent(&channel, 0, rule(5, 60), at).await.unwrap()), vec![4, 5, 6, 7, 8], "the newest 5");
    assert_eq!(seqs(store.recent(&channel, 6, rule(5, 60), at).await.unwrap()), vec![7, 8], "after 6");
    assert_eq!(
        seqs(store.recent(&channel, 8, rule(5, 60), at).await.unwrap()),
        Vec::<u64>::new(),
        "none after the head"
    );
    assert_eq!(seqs(store.recent(&channel, 0, rule(2, 60), at).await.unwrap()), vec![7, 8], "a smaller limit");
    // Message n was sent n s after the start: 66 s after it, the first six are over a minute old.
    let later = now_ms + 66_000;
    assert_eq!(seqs(store.recent(&channel, 0, rule(5, 60), later).await.unwrap()), vec![7, 8], "older than the window");
    assert_eq!(store.recent(&channel, 0, rule(5, 60), later).await.unwrap().head, 8, "numbers go on");
}

/// A resume is `recovered` only when every number after the client's is replayed: with every kept
/// message after it expired (the scenario of a client away longer than the window), the numbers
/// are missing and the answer is false, also while the head is younger than the in-flight time.
/// A number beyond the head (`u64::MAX` included) is no position of this stream.
async fn a_resume_over_expired_messages_is_not_recovered(store: Arc<dyn Store>) {
    use lambda_ws::history::resume;
    let channel = ch("room-expired");
    let window = rule(100, 2);
    let t0 = NOW * 1000;
    let first = store.append(&channel, r#"{"type":"t","n":1}"#, window, t0).await.unwrap();
    store.append(&channel, r#"{"type":"t","n":2}"#, window, t0 + 100).await.unwrap();
    store.append(&channel, r#"{"type":"t","n":3}"#, window, t0 + 200).await.unwrap();
    let epoch = Some(first.epoch.as_str());
    let at = t0 + 3_700; // 3.5 s after the last send: everything kept has expired
    let recent = store.recent(&channel, 1, window, at).await.unwrap();
    assert_eq!((recent.head, recent.entries.len()), (3, 0), "numbers 2 and 3 taken, neither kept");
    let resumed = resume(&channel, 1, epoch, recent, window, at).unwrap();
    assert!(!resumed.recovered, "2 and 3 are lost: {resumed:?}");
    assert!(!resumed.tail_only, "older than the window: not in flight");
    assert!(resumed.messages.is_empty());
    // Still kept, the same resume recovers both.
    let recent = store.recent(&channel, 1, window, t0 + 300).await.unwrap();
    let resumed = resume(&channel, 1, epoch, recent, window, t0 + 300).unwrap();
    assert!(resumed.recovered && resumed.messages.len() == 2, "{resumed:?}");
    // Up to date is recovered with nothing to send; beyond the head is not a position.
    let recent = store.recent(&channel, 3, window, at).await.unwrap();
    assert!(resume(&channel, 3, epoch, recent, window, at).unwrap().recovered);
    for since in [4, u64::MAX] {
        let recent = store.recent(&channel, since, window, at).await.unwrap();
        let resumed = resume(&channel, since, epoch, recent, window, at).unwrap();
        assert!(!resumed.recovered && !resumed.tail_only, "since {since}: {resumed:?}");
    }
}

/// Sessions removed in a batch (a send's 410s, clean-up) say whose they were and their channels.
async fn a_batch_removal_says_who_left_which_channels(store: Arc<dyn Store>) {
    let a = session(170, Some("ann"), NOW + 100);
    let b = session(171, None, NOW + 100);
    store.open_session(&a, Some(&ch("room-a")), false).await.unwrap();
    store.join(&a, &ch("room-b"), 16).await.unwrap();
    store.open_session(&b, Some(&ch("room-a")), false).await.unwrap();
    let mut gone = store.remove_sessions(&[a.connection_id.clone(), b.connection_id.clone(), id(179)]).await.unwrap();
    gone.sort_by(|x, y| x.connection_id.cmp(&y.connection_id));
    for r in &mut gone {
        r.channels.sort();
    }
    assert_eq!(gone, vec![removed(&a, &["room-a", "room-b"]), removed(&b, &["room-a"])], "the unknown one is left out");
}

fn presence<'a>(session: &'a Session, info: &'a BTreeMap<String, String>, expires_at: i64) -> Presence<'a> {
    Presence { session, info, expires_at }
}

fn member(user: &str, connections: usize, info: &[(&str, &str)]) -> Member {
    let info = info.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Member { user_id: user.to_owned(), connections, info }
}

/// One entry per user with its connection count and public metadata; anonymous connections
/// counted, not listed; counts only above the listing size; first and last by user.
async fn presence_lists_users_and_counts_connections(store: Arc<dyn Store>) {
    let room = ch("room-p");
    let ann = BTreeMap::from([("name".to_owned(), "Ann".to_owned())]);
    let none = BTreeMap::new();
    let (a1, a2) = (session(200, Some("ann"), NOW + 100), session(201, Some("ann"), NOW + 100));
    let (b1, x1) = (session(202, Some("bob"), NOW + 100), session(203, None, NOW + 100));
    assert!(store.enter(&room, presence(&a1, &ann, NOW + 100), NOW).await.unwrap(), "ann's first connection");
    assert!(!store.enter(&room, presence(&a2, &ann, NOW + 100), NOW).await.unwrap(), "ann's second");
    assert!(store.enter(&room, presence(&b1, &none, NOW + 100), NOW).await.unwrap(), "bob's first");
    assert!(!store.enter(&room, presence(&x1, &none, NOW + 100), NOW).await.unwrap(), "anonymous is never first");
    let everyone = Present {
        users: 2,
        connections: 4,
        anonymous: 1,
        members: Some(vec![member("ann", 2, &[("name", "Ann")]), member("bob", 1, &[])]),
    };
    assert_eq!(store.present(&room, 10, NOW).await.unwrap(), everyone);
    assert_eq!(store.present(&room, 1, NOW).await.unwrap(), Present { members: None, ..everyone }, "counts only");
    assert_eq!(store.present(&ch("room-q"), 10, NOW).await.unwrap().users, 0, "another channel");
    assert!(!store.exit(&room, &a1.connection_id, Some("ann"), NOW).await.unwrap(), "ann has another");
    assert!(!store.exit(&room, &a1.connection_id, Some("ann"), NOW).await.unwrap(), "not counted twice");
    assert!(store.exit(&room, &a2.connection_id, Some("ann"), NOW).await.unwrap(), "ann's last");
    assert!(!store.exit(&room, &x1.connection_id, None, NOW).await.unwrap());
    assert!(!store.exit(&room, &a2.connection_id, Some("ann"), NOW).await.unwrap(), "gone already");
    let left = store.present(&room, 10, NOW).await.unwrap();
    assert_eq!(left, Present { users: 1, connections: 1, anonymous: 0, members: Some(vec![member("bob", 1, &[])]) });
    // A connection whose session expired without a leave (clean-up has not come by) counts as
    // gone: not counted, not listed, and it does not hold its user in the channel.
    let stale = session(204, Some("ann"), NOW + 10);
    assert!(store.enter(&room, presence(&stale, &ann, NOW + 100), NOW).await.unwrap(), "ann is back");
    let later = store.present(&room, 10, NOW + 20).await.unwrap();
    assert_eq!(later.members, Some(vec![member("bob", 1, &[])]), "ann's only connection expired");
    assert!(store.enter(&room, presence(&a2, &ann, NOW + 200), NOW + 20).await.unwrap(), "first again");
    let now = store.present(&room, 10, NOW + 20).await.unwrap();
    let expected = vec![member("ann", 1, &[("name", "Ann")]), member("bob", 1, &[])];
    assert_eq!(now.members, Some(expected), "the expired connection is not counted");
    assert!(store.exit(&room, &a2.connection_id, Some("ann"), NOW + 20).await.unwrap(), "last: the other expired");
    assert_eq!(store.present(&room, 10, NOW + 20).await.unwrap().users, 1);
}

/// A close of a user's sessions refuses every claim with a token issued until then (to the
/// millisecond), with or without per-user limits, and no one else's; a token issued after it
/// connects; a refused claim takes no slot and counts no connect; a later close moves the mark.
async fn closing_a_user_refuses_tokens_issued_before_it(store: Arc<dyn Store>) {
    let at = NOW * 1000 + 500;
    let limits = [SLOTS, UserLimits::default(), UserLimits { max_connections: 0, connects_per_minute: 5 }];
    let ann = |n: usize| session(n, Some("ann"), NOW + 100);
    for limits in limits {
        assert!(claimed(store.claim_connection(&ann(700), limits, at - 1, NOW).await.unwrap()), "before any close");
    }
    store.close_user("ann", at, NOW + 3600).await.unwrap();
    for limits in limits {
        assert_eq!(store.claim_connection(&ann(701), limits, at - 1, NOW).await.unwrap(), Claim::Closed);
        assert_eq!(store.claim_connection(&ann(701), limits, at, NOW).await.unwrap(), Claim::Closed, "same ms");
        assert!(claimed(store.claim_connection(&ann(702), limits, at + 1, NOW).await.unwrap()), "issued after");
        let bob = session(703, Some("bob"), NOW + 100);
        assert!(claimed(store.claim_connection(&bob, limits, at - 1, NOW).await.unwrap()), "another user");
    }
    // Slots: 700 and 702 hold two of three; the refused 701 took none.
    assert!(claimed(store.claim_connection(&ann(704), SLOTS, at + 2, NOW).await.unwrap()), "the third slot");
    assert_eq!(store.claim_connection(&ann(705), SLOTS, at + 3, NOW).await.unwrap(), Claim::Full);
    store.close_user("ann", at + 10, NOW + 60).await.unwrap();
    assert_eq!(store.claim_connection(&ann(702), SLOTS, at + 1, NOW).await.unwrap(), Claim::Closed, "moved");
}

/// The counts a channel larger than its listing answers are kept by the writes themselves: the
/// same as the listing's through joins, a connection joining twice, leaves, a leave of a
/// connection never counted, anonymous connections and a last leave that takes an expired
/// connection with it; and a recount finds nothing to correct.
async fn presence_counts_beyond_the_listing_are_kept_by_the_writes(store: Arc<dyn Store>) {
    let room = ch("room-k");
    let none = BTreeMap::new();
    let counts = |p: Present| (p.users, p.connections, p.anonymous);
    let sessions: Vec<Session> = (600..612).map(|n| session(n, Some(&format!("u{}", n % 5)), NOW + 100)).collect();
    for s in &sessions {
        store.enter(&room, presence(s, &none, NOW + 100), NOW).await.unwrap();
    }
    store.enter(&room, presence(&sessions[0], &none, NOW + 100), NOW).await.unwrap();
    let anonymous = [session(620, None, NOW + 100), session(621, None, NOW + 100)];
    for s in &anonymous {
        store.enter(&room, presence(s, &none, NOW + 100), NOW).await.unwrap();
        store.enter(&room, presence(s, &none, NOW + 100), NOW).await.unwrap();
    }
    let listed = store.present(&room, 10, NOW).await.unwrap();
    assert_eq!(counts(listed.clone()), (5, 14, 2), "{listed:?}");
    assert_eq!(store.present(&room, 0, NOW).await.unwrap(), Present { members: None, ..listed }, "kept counts");
    for s in &sessions[..6] {
        store.exit(&room, &s.connection_id, s.user_id(), NOW).await.unwrap();
    }
    store.exit(&room, &sessions[0].connection_id, sessions[0].user_id(), NOW).await.unwrap();
    store.exit(&room, &id(699), Some("u0"), NOW).await.unwrap();
    store.exit(&room, &anonymous[0].connection_id, None, NOW).await.unwrap();
    store.exit(&room, &anonymous[0].connection_id, None, NOW).await.unwrap();
    let listed = store.present(&room, 10, NOW).await.unwrap();
    assert_eq!(counts(listed.clone()), (5, 7, 1), "{listed:?}");
    assert_eq!(counts(store.present(&room, 1, NOW).await.unwrap()), (5, 7, 1), "kept counts after leaves");
    // u9 joins with a connection that expires; its later connection's leave is the last and takes
    // the expired one with it.
    let (stale, fresh) = (session(630, Some("u9"), NOW + 10), session(631, Some("u9"), NOW + 100));
    store.enter(&room, presence(&stale, &none, NOW + 100), NOW).await.unwrap();
    store.enter(&room, presence(&fresh, &none, NOW + 100), NOW).await.unwrap();
    assert_eq!(counts(store.present(&room, 1, NOW + 20).await.unwrap()), (6, 9, 1), "counted until taken out");
    assert!(store.exit(&room, &fresh.connection_id, Some("u9"), NOW + 20).await.unwrap(), "u9's last");
    assert!(!store.exit(&room, &stale.connection_id, Some("u9"), NOW + 20).await.unwrap(), "taken out with it");
    assert_eq!(counts(store.present(&room, 1, NOW + 20).await.unwrap()), (5, 7, 1));
    assert_eq!(store.recount().await.unwrap(), 0, "nothing to correct");
    assert_eq!(counts(store.present(&room, 0, NOW + 20).await.unwrap()), (5, 7, 1));
}

/// Of 16 concurrent first connections of one user exactly one is first; of their 16 concurrent
/// leaves exactly one is last.
async fn presence_first_and_last_hold_under_concurrency(store: Arc<dyn Store>) {
    let room = ch("room-c");
    let info = BTreeMap::new();
    let sessions: Vec<Session> = (300..316).map(|n| session(n, Some("cat"), NOW + 100)).collect();
    let entered = futures::future::join_all(
        sessions.iter().map(|s| store.enter(&room, Presence { session: s, info: &info, expires_at: NOW + 100 }, NOW)),
    )
    .await;
    assert_eq!(entered.into_iter().filter(|first| *first.as_ref().unwrap()).count(), 1, "one first");
    assert_eq!(store.present(&room, 10, NOW).await.unwrap().connections, 16);
    let kept = store.present(&room, 0, NOW).await.unwrap();
    assert_eq!((kept.users, kept.connections), (1, 16), "kept counts under concurrency");
    let left =
        futures::future::join_all(sessions.iter().map(|s| store.exit(&room, &s.connection_id, Some("cat"), NOW))).await;
    assert_eq!(left.into_iter().filter(|last| *last.as_ref().unwrap()).count(), 1, "one last");
    assert_eq!(store.present(&room, 10, NOW).await.unwrap(), Present { members: Some(vec![]), ..Present::default() });
    assert_eq!(store.present(&room, 0, NOW).await.unwrap(), Present { members: Some(vec![]), ..Present::default() });
}

/// A user's last leave racing the same user's return: a leave that says "last" is one whose
/// drop of the entry went through, so the entry there afterwards (if any) was made anew by the
/// return (its version is 1). Before, a leave whose versioned drop lost to the return still said
/// "last", and its `member_left` could follow the return's `member_joined` for a user who is
/// there. Forty races on the DynamoDB engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_a_last_leave_that_loses_to_a_return_is_not_last() {
    let store = fresh_dynamodb_store().await;
    let info = BTreeMap::new();
    let mut lost = 0;
    for round in 0..40 {
        let room = ch(&format!("room-race{round}"));
        let (a, b) = (session(400 + round, Some("eve"), NOW + 100), session(500 + round, Some("eve"), NOW + 100));
        assert!(store.enter(&room, Presence { session: &a, info: &info, expires_at: NOW + 100 }, NOW).await.unwrap());
        let leave = {
            let (store, room, id) = (store.clone(), room.clone(), a.connection_id.clone());
            tokio::spawn(async move { store.exit(&room, &id, Some("eve"), NOW).await.unwrap() })
        };
        let back = {
            let (store, room, b, info) = (store.clone(), room.clone(), b.clone(), info.clone());
            tokio::spawn(async move {
                store.enter(&room, Presence { session: &b, info: &info, expires_at: NOW + 100 }, NOW).await.unwrap()
            })
        };
        let (last, first) = (leave.await.unwrap(), back.await.unwrap());
        let item = lambda_ws_e2e::dynamodb_client()
            .get_item()
            .table_name(store.table())
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("pres#{room}")))
            .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("u#eve".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap_or_default();
        let version = item.get("v").and_then(|v| v.as_n().ok()).cloned().unwrap_or_default();
        assert_eq!(store.present(&room, 10, NOW).await.unwrap().users, 1, "eve is there");
        if last {
            assert_eq!(version, "1", "round {round}: a last leave dropped the entry; the return made it anew");
            assert!(first, "round {round}: and the return announced itself after it");
        }
        lost += usize::from(first && !last);
    }
    eprintln!("{lost} of 40 leaves found the user back before their drop");
}

/// The memory store (the local gateway's) forgets a channel's stream once every message in it
/// has expired, so a long-running gateway does not keep every channel ever sent to.
#[tokio::test]
async fn memory_drops_streams_whose_messages_all_expired() {
    let store = lambda_ws::MemoryStore::new();
    let t0 = NOW * 1000;
    for n in 0..2000 {
        store.append(&ch(&format!("room-{n}")), r#"{"type":"t"}"#, rule(10, 1), t0).await.unwrap();
    }
    assert_eq!(store.stream_count(), 2000);
    store.append(&ch("room-new"), r#"{"type":"t"}"#, rule(10, 1), t0 + 30_000).await.unwrap();
    assert_eq!(store.stream_count(), 2001, "at most one sweep a minute");
    store.append(&ch("room-last"), r#"{"type":"t"}"#, rule(10, 120), t0 + 61_000).await.unwrap();
    assert_eq!(store.stream_count(), 1, "only the live stream is left");
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(std::sync::Arc::new(lambda_ws::MemoryStore::new())).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::fresh_dynamodb_store().await).await;
                }
            )*
        }
    };
}

conformance!(
    put_get_remove,
    expired_sessions_are_invisible,
    memberships,
    pages_of_channels_users_and_all,
    tokens_are_taken_once,
    concurrent_token_consumers,
    expired_tokens_are_purged,
    counters_count_atomically,
    filtered_scans,
    a_token_binding_is_stored_with_the_session,
    the_channel_limit_holds_under_concurrent_joins,
    connection_slots_are_claimed_atomically_and_freed,
    connects_per_user_are_counted_with_the_slot,
    a_session_opens_with_its_connect_channel,
    messages_are_admitted_exactly_to_the_limit_under_concurrency,
    last_seen_follows_messages_at_most_one_write_a_minute,
    sequences_are_gap_free_under_concurrent_senders,
    history_keeps_a_window_by_size_and_time,
    a_resume_over_expired_messages_is_not_recovered,
    a_batch_removal_says_who_left_which_channels,
    presence_lists_users_and_counts_connections,
    presence_first_and_last_hold_under_concurrency,
    presence_counts_beyond_the_listing_are_kept_by_the_writes,
    closing_a_user_refuses_tokens_issued_before_it,
);

#[tokio::test]
async fn dynamodb_items_carry_the_ttl_attribute() {
    let store = fresh_dynamodb_store().await;
    let s = session(900, Some("hal"), NOW + 77);
    store.put_session(&s).await.unwrap();
    store.join(&s, &ch("ttl"), 16).await.unwrap();
    store
        .put_token(
            "tt",
            &TokenRecord { identity: Identity::user("hal"), channel: None, expires_at: NOW + 5, issued_at: NOW * 1000 },
        )
        .await
        .unwrap();
    store.increment("ttl#x", NOW + 9).await.unwrap();
    let out = lambda_ws_e2e::dynamodb_client().scan().table_name(store.table()).send().await.unwrap();
    let items = out.items.unwrap();
    assert_eq!(items.len(), 4);
    for item in items {
        let exp: i64 = item.get("expires_at").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap();
        assert!([NOW + 77, NOW + 5, NOW + 9].contains(&exp), "{item:?}");
    }
}

/// A session written before sessions carried their channels (memberships as items only, a
/// `channel_count`, no `slot` attribute) is still removed whole during an upgrade: memberships
/// found by reading the partition, the user's slot freed.
#[tokio::test]
async fn dynamodb_removes_sessions_written_by_the_previous_data_model() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let store = fresh_dynamodb_store().await;
    let client = lambda_ws_e2e::dynamodb_client();
    let old = session(910, Some("legacy"), NOW + 100);
    let limits = UserLimits { max_connections: 1, connects_per_minute: 0 };
    assert!(claimed(store.claim_connection(&old, limits, NOW * 1000, NOW).await.unwrap()));
    store.put_session(&old).await.unwrap();
    let put = |item: Vec<(&str, AttributeValue)>| {
        let request = client.put_item().table_name(store.table());
        item.into_iter().fold(request, |r, (k, v)| r.item(k, v)).send()
    };
    let text = |v: &str| AttributeValue::S(v.to_owned());
    // Rewrite the session item as the previous version stored it.
    client
        .update_item()
        .table_name(store.table())
        .key("pk", text("conn#conn00910="))
        .key("sk", text("session"))
        .update_expression("REMOVE slot SET channel_count = :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    put(vec![
        ("pk", text("conn#conn00910=")),
        ("sk", text("chan#old-room")),
        ("channel", text("old-room")),
        ("connection_id", text("conn00910=")),
        ("endpoint", text(&old.endpoint)),
        ("expires_at", AttributeValue::N((NOW + 100).to_string())),
    ])
    .await
    .unwrap();
    assert_eq!(store.channels_of(&old.connection_id, NOW).await.unwrap(), vec![ch("old-room")], "listed");
    assert_eq!(
        store.claim_connection(&session(911, Some("legacy"), NOW + 100), limits, NOW * 1000, NOW).await.unwrap(),
        Claim::Full
    );
    assert_eq!(remove(&*store, &old.connection_id).await, Some(removed(&old, &["old-room"])));
    assert!(store.channel_page(&ch("old-room"), None, 10, NOW).await.unwrap().items.is_empty(), "membership gone");
    assert!(
        claimed(
            store.claim_connection(&session(911, Some("legacy"), NOW + 100), limits, NOW * 1000, NOW).await.unwrap()
        ),
        "slot freed"
    );
}
