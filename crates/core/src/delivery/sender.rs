//! The sender: resolve a target page by page, post with bounded concurrency, retry, report.

use std::collections::HashSet;
use std::future::{Future, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{self, BoxStream, FusedStream, StreamExt, TryStreamExt};
use rand::Rng as _;

use super::report::{DeliveryReport, FailedDelivery, StreamPosition};
use super::target::Target;
use super::transport::{Transport, TransportError};
use crate::clock::Clock;
use crate::history::{HistoryRule, HistoryRules, HistoryStore, stamp};
use crate::hooks::{self, DisconnectHook, Ending};
use crate::protocol::{Outbound, OutboundError};
use crate::session::{ChannelName, ConnectionId, Recipient};
use crate::store::{Cursor, Page, Removed, Segment, SessionFilter, SessionStore, StoreError};

mod close;

/// Why a send was refused before any post.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The message is invalid or over 128 KiB.
    #[error(transparent)]
    Message(#[from] OutboundError),
}

/// Tuning for the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOptions {
    /// Posts in flight at once.
    pub concurrency: usize,
    /// Attempts per recipient, first included.
    pub max_attempts: u32,
    /// First retry waits up to this long (full jitter, doubling per attempt).
    pub base_backoff: Duration,
    /// No single wait exceeds this.
    pub max_backoff: Duration,
    /// No retry starts after this much time since the send began.
    pub deadline: Duration,
    /// Recipients read from the store per page.
    pub page_size: usize,
    /// Parallel scan segments for [`Target::All`].
    pub scan_segments: u32,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            concurrency: 256,
            max_attempts: 4,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
            page_size: 500,
            scan_segments: 4,
        }
    }
}

/// Delivers messages to targets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sender {
    sessions: Arc<dyn SessionStore>,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    options: SendOptions,
    disconnect_hook: Option<Arc<dyn DisconnectHook>>,
    history: Option<HistorySetup>,
    on_removed: Option<Arc<dyn OnRemoved>>,
}

/// Told about the sessions a send found gone (410) and removed, once the send is done: how
/// presence takes them out of its channels without delivery knowing about presence.
#[async_trait::async_trait]
pub trait OnRemoved: Send + Sync + std::fmt::Debug {
    /// `removed` were removed by a send of `sender` (or closed by it).
    async fn removed(&self, sender: &Sender, removed: &[Removed]);
}

/// Where channel streams live and which channels have one.
#[derive(Debug, Clone)]
struct HistorySetup {
    store: Arc<dyn HistoryStore>,
    rules: HistoryRules,
}

/// A target resolved to one connection: either a recipient, or an id with no live session.
enum Resolved {
    Found(Recipient),
    Unknown(ConnectionId),
}

enum Outcome {
    Delivered { retries: usize },
    Gone { id: ConnectionId, retries: usize },
    Failed { failure: FailedDelivery, forbidden: bool, retries: usize },
    Unknown(ConnectionId),
    Excluded,
    ListingFailed(StoreError),
}

impl Sender {
    /// A sender over a store and a transport.
    pub fn new(
        sessions: Arc<dyn SessionStore>,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
        options: SendOptions,
    ) -> Self {
        Self { sessions, transport, clock, options, disconnect_hook: None, history: None, on_removed: None }
    }

    /// Appends every message sent to a channel that `rules` names to its stream in `store`
    /// (see [`crate::history`]). Without rules, nothing changes.
    pub fn with_history(mut self, store: Arc<dyn HistoryStore>, rules: HistoryRules) -> Self {
        self.history = (!rules.is_empty()).then_some(HistorySetup { store, rules });
        self
    }

    /// The clock the sender stamps with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Tells `listener` about the sessions a send found gone and removed (presence takes them
    /// out of its channels this way), once the send is done.
    pub fn with_removal_listener(mut self, listener: Arc<dyn OnRemoved>) -> Self {
        self.on_removed = Some(listener);
        self
    }

    /// Posts `payload` to every recipient of `target` but `exclude`, without removing the sessions
    /// it finds gone: they are in `report.gone`, for the caller to remove ([`Sender::remove_gone`]).
    /// What presence uses to announce, so that a 410 found while announcing is handled by the
    /// announcer's own loop rather than by a send inside a send.
    pub async fn post_all(&self, target: &Target, payload: Bytes, exclude: &[ConnectionId]) -> DeliveryReport {
        let started = Instant::now();
        let mut report = self.post(target, payload, exclude).await;
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    /// Removes the sessions of connections found gone (one batch) and tells the disconnect hook;
    /// returns what was removed (the removal listener is not told: the caller is).
    pub async fn remove_gone(&self, gone: &[ConnectionId]) -> Vec<Removed> {
        if gone.is_empty() {
            return Vec::new();
        }
        match self.sessions.remove_sessions(gone).await {
            Ok(removed) => {
                hooks::tell_all(self.disconnect_hook.as_deref(), &removed, Ending::Gone).await;
                removed
            }
            Err(e) => {
                tracing::warn!(gone = gone.len(), error = %e, "could not remove gone sessions");
                Vec::new()
            }
        }
    }

    /// Tells `hook` about every session a send finds gone (410) and removes.
    pub fn with_disconnect_hook(mut self, hook: Arc<dyn DisconnectHook>) -> Self {
        self.disconnect_hook = Some(hook);
        self
    }

    /// The options in use.
    pub fn options(&self) -> &SendOptions {
        &self.options
    }

    /// Sends `message` to `target`, leaving out `exclude`. The message is serialized and
    /// size-checked once, before any post.
    pub async fn send(
        &self,
        target: &Target,
        message: &Outbound,
        exclude: &[ConnectionId],
    ) -> Result<DeliveryReport, SendError> {
        let payload = message.encode()?;
        Ok(self.send_payload(target, payload, exclude).await)
    }

    /// Sends an already encoded payload (at most 128 KiB) to `target`. A channel with a history
    /// rule gets the message appended to its stream first, and every copy carries `channel`,
    /// `seq` and `epoch`; a multi-channel target sends to each such channel on its own stream
    /// (a member of two gets a copy from each) and to the others together, each connection once.
    pub async fn send_payload(&self, target: &Target, payload: Bytes, exclude: &[ConnectionId]) -> DeliveryReport {
        let Some(history) = &self.history else {
            return self.fan_out(target, payload, exclude).await;
        };
        match target {
            Target::Channel(channel) => match history.rules.rule_for(channel) {
                Some(rule) => self.send_to_stream(history, channel, rule, payload, exclude).await,
                None => self.fan_out(target, payload, exclude).await,
            },
            Target::Channels(channels) if channels.iter().any(|c| history.rules.rule_for(c).is_some()) => {
                let started = Instant::now();
                let mut plain: Vec<ChannelName> = Vec::new();
                let mut streams = Vec::new();
                for channel in channels.iter().collect::<HashSet<_>>() {
                    match history.rules.rule_for(channel) {
                        Some(rule) => {
                            streams.push(self.send_to_stream(history, channel, rule, payload.clone(), exclude))
                        }
                        None => plain.push(channel.clone()),
                    }
                }
                let plain_target = Target::Channels(plain);
                let rest = async {
                    match &plain_target {
                        Target::Channels(p) if p.is_empty() => DeliveryReport::default(),
                        _ => self.fan_out(&plain_target, payload.clone(), exclude).await,
                    }
                };
                let (reports, rest) = futures::join!(futures::future::join_all(streams), rest);
                let mut merged = reports.into_iter().fold(rest, DeliveryReport::merge);
                merged.duration_ms = started.elapsed().as_millis() as u64;
                merged
            }
            _ => self.fan_out(target, payload, exclude).await,
        }
    }

    /// Appends the message to `channel`'s stream, then sends the stamped copy to its members.
    async fn send_to_stream(
        &self,
        history: &HistorySetup,
        channel: &ChannelName,
        rule: HistoryRule,
        payload: Bytes,
        exclude: &[ConnectionId],
    ) -> DeliveryReport {
        let failed = |reason: String| DeliveryReport { incomplete: Some(reason), ..DeliveryReport::default() };
        let Ok(text) = std::str::from_utf8(&payload) else {
            return failed("the message is not UTF-8 JSON".into());
        };
        let position = match history.store.append(channel, text, rule, self.clock.now_millis()).await {
            Ok(position) => position,
            Err(e) => {
                tracing::error!(channel = %channel, error = %e, "could not append to the channel's history");
                return failed(format!("history: {e}"));
            }
        };
        let stamped = match stamp(text, channel, &position) {
            Ok(stamped) => stamped,
            Err(e) => return failed(format!("the message is not a JSON object: {e}")),
        };
        let mut report = self.fan_out(&Target::Channel(channel.clone()), Bytes::from(stamped), exclude).await;
        report.streams.push(StreamPosition { channel: channel.clone(), seq: position.seq, epoch: position.epoch });
        report
    }

    /// Posts `payload` to every recipient of `target` (no stream).
    async fn fan_out(&self, target: &Target, payload: Bytes, exclude: &[ConnectionId]) -> DeliveryReport {
        let started = Instant::now();
        let report = self.post(target, payload, exclude).await;
        self.finish(report, started).await
    }

    /// The posts of a fan-out, with retries; nothing removed yet.
    async fn post(&self, target: &Target, payload: Bytes, exclude: &[ConnectionId]) -> DeliveryReport {
        let deadline = Instant::now() + self.options.deadline;
        let exclude: HashSet<&ConnectionId> = exclude.iter().collect();
        let forbidden_logged = AtomicBool::new(false);
        let outcomes = self.resolve(target).map(|resolved| {
            let payload = payload.clone();
            let exclude = &exclude;
            async move {
                match resolved {
                    Ok(Resolved::Found(r)) if exclude.contains(&r.connection_id) => Outcome::Excluded,
                    Ok(Resolved::Found(r)) => self.deliver(&r, payload, deadline).await,
                    Ok(Resolved::Unknown(id)) => Outcome::Unknown(id),
                    Err(e) => Outcome::ListingFailed(e),
                }
            }
        });
        outcomes
            .buffer_unordered(self.options.concurrency.max(1))
            .fold(DeliveryReport::default(), |mut report, outcome| {
                record(&mut report, outcome, &forbidden_logged);
                ready(report)
            })
            .await
    }

    /// Removes the sessions a send found gone, in one batch once the posts are done rather than
    /// one delete per 410, and stamps the duration.
    async fn finish(&self, mut report: DeliveryReport, started: Instant) -> DeliveryReport {
        let removed = self.remove_gone(&report.gone).await;
        self.told_removed(&removed).await;
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    /// Tells the removal listener (presence) about removed sessions.
    pub(crate) async fn told_removed(&self, removed: &[Removed]) {
        if let (Some(listener), false) = (&self.on_removed, removed.is_empty()) {
            listener.removed(self, removed).await;
        }
    }

    /// Delivers `message` to one known recipient (e.g. the connection that sent a message) without
    /// reading the store first; retries and 410 handling are those of [`Sender::send`].
    pub async fn deliver_to(&self, recipient: &Recipient, message: &Outbound) -> Result<DeliveryReport, SendError> {
        let payload = message.encode()?;
        let started = Instant::now();
        let deadline = started + self.options.deadline;
        let mut report = DeliveryReport::default();
        record(&mut report, self.deliver(recipient, payload, deadline).await, &AtomicBool::new(false));
        Ok(self.finish(report, started).await)
    }

    /// Posts an already encoded payload to one recipient, with retries (a replayed message).
    pub async fn deliver_payload_to(&self, recipient: &Recipient, payload: Bytes) -> DeliveryReport {
        let started = Instant::now();
        let deadline = started + self.options.deadline;
        let mut report = DeliveryReport::default();
        record(&mut report, self.deliver(recipient, payload, deadline).await, &AtomicBool::new(false));
        self.finish(report, started).await
    }

    /// Posts to one recipient with retries. A 410 is reported as gone; the caller removes the
    /// session ([`Self::finish`]).
    async fn deliver(&self, recipient: &Recipient, payload: Bytes, deadline: Instant) -> Outcome {
        let id = &recipient.connection_id;
        self.with_retries(id, deadline, || self.transport.post(&recipient.endpoint, id, payload.clone())).await
    }

    /// Makes one Management API call for connection `id` (a post, a close) until it succeeds, the
    /// connection is gone, the error is final or `deadline` would pass.
    async fn with_retries<F, Fut>(&self, id: &ConnectionId, deadline: Instant, call: F) -> Outcome
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), TransportError>>,
    {
        let mut attempt: u32 = 0;
        loop {
            let error = match call().await {
                Ok(()) => {
                    return Outcome::Delivered { retries: attempt as usize };
                }
                Err(TransportError::Gone) => return Outcome::Gone { id: id.clone(), retries: attempt as usize },
                Err(e) => e,
            };
            let backoff = self.backoff(attempt);
            let may_retry =
                error.is_retryable() && attempt + 1 < self.options.max_attempts && Instant::now() + backoff < deadline;
            if !may_retry {
                let forbidden = matches!(error, TransportError::Forbidden(_));
                let failure = FailedDelivery { connection_id: id.clone(), reason: error.to_string() };
                return Outcome::Failed { failure, forbidden, retries: attempt as usize };
            }
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    /// Full jitter: a uniform wait in `[0, min(max, base * 2^attempt)]`.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.options.base_backoff.saturating_mul(1 << attempt.min(16)).min(self.options.max_backoff);
        let millis = cap.as_millis() as u64;
        Duration::from_millis(if millis == 0 { 0 } else { rand::rng().random_range(0..=millis) })
    }

    /// The recipients of `target`, streamed page by page; memory does not grow with the target
    /// except for the de-duplication set of multi-channel targets.
    fn resolve<'a>(&'a self, target: &'a Target) -> BoxStream<'a, Result<Resolved, StoreError>> {
        let now = self.clock.now_secs();
        let store = &self.sessions;
        let page = self.options.page_size;
        match target {
            Target::Connection(id) => self.lookup(std::slice::from_ref(id), now),
            Target::Connections(ids) => self.lookup(ids, now),
            Target::User(user) => {
                found(paged(move |c| async move { store.user_page(user, c.as_ref(), page, now).await }))
            }
            Target::Channel(ch) => {
                found(paged(move |c| async move { store.channel_page(ch, c.as_ref(), page, now).await }))
            }
            Target::Channels(channels) => {
                let mut seen = HashSet::new();
                let all = stream::iter(channels.iter().collect::<HashSet<_>>())
                    .map(move |ch| paged(move |c| async move { store.channel_page(ch, c.as_ref(), page, now).await }))
                    .flatten()
                    .try_filter(move |r| ready(seen.insert(r.connection_id.clone())));
                found(all)
            }
            Target::All => self.scan(SessionFilter::default(), now),
            Target::Api(api) => self.scan(SessionFilter { api_id: Some(api.clone()), ..SessionFilter::default() }, now),
            Target::Filter(filter) => self.scan(filter.clone(), now),
        }
    }

    /// A parallel scan (one stream per segment, merged) of the sessions that pass `filter`.
    fn scan(&self, filter: SessionFilter, now: i64) -> BoxStream<'_, Result<Resolved, StoreError>> {
        let store = &self.sessions;
        let page = self.options.page_size;
        let total = self.options.scan_segments.max(1);
        // A channel-prefix scan lists a connection once per matching channel.
        let dedupe = filter.channel_prefix.is_some();
        let filter = Arc::new(filter);
        let segments = (0..total).map(move |index| {
            let segment = Segment { index, total };
            let filter = filter.clone();
            paged(move |c| {
                let filter = filter.clone();
                async move { store.scan_page(segment, &filter, c.as_ref(), page, now).await }
            })
            .boxed()
        });
        let mut seen = HashSet::new();
        found(stream::select_all(segments).try_filter(move |r| ready(!dedupe || seen.insert(r.connection_id.clone()))))
    }

    fn lookup<'a>(&'a self, ids: &'a [ConnectionId], now: i64) -> BoxStream<'a, Result<Resolved, StoreError>> {
        let mut seen = HashSet::new();
        stream::iter(ids.iter().filter(move |id| seen.insert(*id)))
            .map(move |id| async move {
                Ok(match self.sessions.get_session(id, now).await? {
                    Some(s) => Resolved::Found(Recipient { connection_id: s.connection_id, endpoint: s.endpoint }),
                    None => Resolved::Unknown(id.clone()),
                })
            })
            .buffered(16)
            .boxed()
    }
}

/// Adds one outcome to a report. A 403 is logged once per send (`forbidden_logged`): it is a
/// configuration error, the same for every recipient.
fn record(report: &mut DeliveryReport, outcome: Outcome, forbidden_logged: &AtomicBool) {
    match outcome {
        Outcome::Delivered { retries } => {
            report.recipients += 1;
            report.delivered += 1;
            report.retries += retries;
        }
        Outcome::Gone { id, retries } => {
            report.recipients += 1;
            report.retries += retries;
            report.gone.push(id);
        }
        Outcome::Failed { failure, forbidden, retries } => {
            if forbidden && !forbidden_logged.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    reason = %failure.reason,
                    "the Management API refused to post (403): check execute-api:ManageConnections \
                     permission and the endpoint"
                );
            }
            report.recipients += 1;
            report.retries += retries;
            report.failed.push(failure);
        }
        Outcome::Unknown(id) => report.unknown.push(id),
        Outcome::Excluded => report.excluded += 1,
        Outcome::ListingFailed(e) => {
            tracing::error!(error = %e, "listing recipients failed; the send is incomplete");
            report.incomplete = Some(e.to_string());
        }
    }
}

fn found<'a>(
    s: impl futures::Stream<Item = Result<Recipient, StoreError>> + Send + 'a,
) -> BoxStream<'a, Result<Resolved, StoreError>> {
    s.map_ok(Resolved::Found).boxed()
}

/// Turns a page-fetching function into a stream of items that stops after the last page or the
/// first error. The next page is read while the current one is handed out ([`read_ahead`]).
fn paged<'a, T, F, Fut>(fetch: F) -> impl futures::Stream<Item = Result<T, StoreError>> + Send + 'a
where
    T: Send + 'a,
    F: Fn(Option<Cursor>) -> Fut + Send + 'a,
    Fut: Future<Output = Result<Page<T>, StoreError>> + Send + 'a,
{
    let pages = stream::try_unfold((Some(None::<Cursor>), fetch), |(cursor, fetch)| async move {
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        let page = fetch(cursor).await?;
        Ok(Some((page.items, (page.next.map(Some), fetch))))
    });
    read_ahead(pages)
}

/// Flattens a stream of pages, keeping the fetch of the next page going while the items of the
/// current one are handed out, so a page read (a DynamoDB round trip) overlaps the posts instead
/// of stalling them. At most one page is held ahead: memory stays flat. The first error ends the
/// stream (after the items read before it).
///
/// The page stream is polled each time an item is asked for, which is whenever a post finishes
/// and frees a slot, so the fetch makes progress while the posts run.
fn read_ahead<'a, T: Send + 'a>(
    pages: impl futures::Stream<Item = Result<Vec<T>, StoreError>> + Send + 'a,
) -> impl futures::Stream<Item = Result<T, StoreError>> + Send + 'a {
    let mut pages = pages.boxed().fuse();
    let mut current = Vec::new().into_iter();
    let mut ahead: Option<Result<Vec<T>, StoreError>> = None;
    let mut failed = false;
    stream::poll_fn(move |cx| {
        if failed {
            return Poll::Ready(None);
        }
        loop {
            // Start (or go on with) the next page's fetch unless one is already held.
            if ahead.is_none()
                && !pages.is_terminated()
                && let Poll::Ready(Some(page)) = pages.poll_next_unpin(cx)
            {
                ahead = Some(page);
            }
            if let Some(item) = current.next() {
                return Poll::Ready(Some(Ok(item)));
            }
            match ahead.take() {
                Some(Ok(page)) => current = page.into_iter(),
                Some(Err(e)) => {
                    failed = true;
                    return Poll::Ready(Some(Err(e)));
                }
                // The page stream ended, or its fetch is pending and will wake this task.
                None if pages.is_terminated() => return Poll::Ready(None),
                None => return Poll::Pending,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_ahead_yields_every_item_in_order_then_the_error_then_ends() {
        let broken = StoreError::Unavailable("page 4".into());
        let pages = stream::iter(vec![Ok(vec![1, 2]), Ok(vec![]), Ok(vec![3]), Err(broken.clone()), Ok(vec![4])]);
        let items: Vec<Result<i32, StoreError>> = read_ahead(pages).collect().await;
        assert_eq!(items, vec![Ok(1), Ok(2), Ok(3), Err(broken)]);
    }

    #[tokio::test]
    async fn read_ahead_holds_at_most_one_page_ahead() {
        let pulled = std::sync::atomic::AtomicUsize::new(0);
        let pages = stream::iter(0..10).map(|i| {
            pulled.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StoreError>(vec![i * 2, i * 2 + 1])
        });
        let mut items = Box::pin(read_ahead(pages));
        assert_eq!(items.next().await, Some(Ok(0)));
        assert_eq!(pulled.load(Ordering::SeqCst), 2, "the page being handed out and the next one");
        assert_eq!(items.next().await, Some(Ok(1)));
        assert_eq!(items.next().await, Some(Ok(2)));
        assert_eq!(pulled.load(Ordering::SeqCst), 3);
    }
}
