//! Operator tasks: list sessions, remove expired and stale ones, purge expired tokens.
//!
//! The `lambda-ws` command runs these against a DynamoDB table, and the local gateway serves them
//! for its own store; library users can call them from their own tools. Each takes a progress
//! callback, called with the number of items handled so far, for long runs.

use std::collections::HashSet;

use futures::stream::{self, StreamExt as _};
use serde::{Deserialize, Serialize};

use crate::App;
use crate::delivery::TransportError;
use crate::session::{ChannelName, ConnectionId, Recipient, Session};
use crate::store::{Cursor, Page, SessionFilter, SessionStore, StoreError};

/// Session reads in flight while listing, and connection checks in flight while cleaning up.
const CONCURRENCY: usize = 32;

/// Rows read per store page.
const PAGE: usize = 500;

/// Which sessions to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every live session.
    All,
    /// Members of one channel.
    Channel(ChannelName),
    /// One user's connections.
    User(String),
}

/// A session with the channels it is in, as `sessions list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionListing {
    /// The stored session.
    #[serde(flatten)]
    pub session: Session,
    /// Its channels.
    pub channels: Vec<ChannelName>,
}

/// Live connections matching `selection` (id and endpoint, as the store's pages list them), at
/// most `limit`, each once.
pub async fn recipients(
    store: &dyn SessionStore,
    selection: &Selection,
    limit: Option<usize>,
    now: i64,
) -> Result<Vec<Recipient>, StoreError> {
    let limit = limit.unwrap_or(usize::MAX);
    let mut found: Vec<Recipient> = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page: Page<Recipient> = match selection {
            Selection::All => {
                let filter = SessionFilter::default();
                store.scan_page(crate::store::Segment::WHOLE, &filter, cursor.as_ref(), PAGE, now).await?
            }
            Selection::Channel(channel) => store.channel_page(channel, cursor.as_ref(), PAGE, now).await?,
            Selection::User(user) => store.user_page(user, cursor.as_ref(), PAGE, now).await?,
        };
        found.extend(page.items.into_iter().filter(|r| seen.insert(r.connection_id.clone())));
        cursor = page.next;
        if cursor.is_none() || found.len() >= limit {
            break;
        }
    }
    found.truncate(limit);
    Ok(found)
}

/// Live sessions matching `selection`, at most `limit`, ordered by connection time (oldest
/// first). `progress` is called with the number of sessions read so far.
pub async fn list_sessions(
    store: &dyn SessionStore,
    selection: &Selection,
    limit: Option<usize>,
    now: i64,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<SessionListing>, StoreError> {
    let ids = recipients(store, selection, limit, now).await?.into_iter().map(|r| r.connection_id);
    let mut done = 0;
    let mut listings = Vec::with_capacity(ids.len());
    let mut reads = stream::iter(ids)
        .map(|id| async move {
            let session = store.get_session(&id, now).await?;
            let channels = store.channels_of(&id, now).await?;
            Ok::<_, StoreError>(session.map(|session| SessionListing { session, channels }))
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(listing) = reads.next().await {
        // A session that expired or went away between the listing and the read is left out.
        listings.extend(listing?);
        done += 1;
        progress(done);
    }
    listings.sort_by(|a, b| {
        (a.session.connected_at, &a.session.connection_id).cmp(&(b.session.connected_at, &b.session.connection_id))
    });
    Ok(listings)
}

/// What [`cleanup`] looks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupOptions {
    /// Only count; remove nothing.
    pub dry_run: bool,
    /// Also ask the Management API about every live session (`GET @connections/{id}`) and
    /// treat those it reports gone (410) as stale. One request per session.
    pub check_connections: bool,
}

/// What a clean-up found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupSummary {
    /// Sessions whose time had passed.
    pub expired: usize,
    /// Live sessions whose connection the Management API reported gone.
    pub stale: usize,
    /// Live sessions checked with the Management API.
    pub checked: usize,
    /// Checks that failed for another reason (the session was kept).
    pub unchecked: usize,
    /// Sessions removed (0 on a dry run).
    pub removed: usize,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Channels whose kept presence counts were corrected (0 on a dry run, and without presence).
    #[serde(default)]
    pub recounted: usize,
}

/// Removes expired sessions and, with [`CleanupOptions::check_connections`], sessions whose
/// connection no longer exists. `progress` is called with the number of sessions handled.
pub async fn cleanup(
    app: &App,
    options: CleanupOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<CleanupSummary, StoreError> {
    let now = app.clock.now_secs();
    let mut summary = CleanupSummary { dry_run: options.dry_run, ..CleanupSummary::default() };
    let mut doomed: Vec<ConnectionId> = Vec::new();
    let mut cursor = None;
    loop {
        let page = app.sessions.expired_page(cursor.as_ref(), PAGE, now).await?;
        summary.expired += page.items.len();
        doomed.extend(page.items);
        progress(doomed.len());
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    if options.check_connections {
        // The listing's ids and endpoints are all a check needs: no session reads.
        let live = recipients(&*app.sessions, &Selection::All, None, now).await?;
        let transport = &app.transport;
        let mut checks = stream::iter(live)
            .map(|recipient| async move {
                let answer = transport.get_connection(&recipient.endpoint, &recipient.connection_id).await;
                (recipient.connection_id, answer)
            })
            .buffer_unordered(CONCURRENCY);
        while let Some((id, answer)) = checks.next().await {
            summary.checked += 1;
            match answer {
                Ok(_) => {}
                Err(TransportError::Gone) => {
                    summary.stale += 1;
                    doomed.push(id);
                }
                Err(e) => {
                    summary.unchecked += 1;
                    tracing::warn!(connection_id = %id, error = %e, "could not check a connection; kept");
                }
            }
            progress(summary.expired + summary.checked);
        }
    }
    if !options.dry_run && !doomed.is_empty() {
        let removed = app.sessions.remove_sessions(&doomed).await?;
        summary.removed = removed.len();
        crate::hooks::tell_all(app.disconnect_hook.as_deref(), &removed, crate::hooks::Ending::CleanedUp).await;
        app.leave_presence(&removed).await;
    }
    if !options.dry_run && !app.config.presence.is_empty() {
        summary.recounted = app.presence.recount().await?;
    }
    tracing::info!(?summary, "clean-up done");
    Ok(summary)
}

/// Deletes expired connect tokens (or counts them on a dry run); returns how many.
pub async fn purge_tokens(app: &App, dry_run: bool) -> Result<usize, StoreError> {
    let purged = app.tokens.purge_expired_tokens(app.clock.now_secs(), dry_run).await?;
    tracing::info!(purged, dry_run, "expired tokens purged");
    Ok(purged)
}
