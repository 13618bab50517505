//! Closing connections: what the sender does for a request with `close: true`.

use std::collections::HashSet;
use std::future::ready;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use futures::StreamExt as _;

use super::{Outcome, Resolved, Sender, record};
use crate::delivery::report::DeliveryReport;
use crate::delivery::target::Target;
use crate::hooks::{self, Ending};
use crate::session::ConnectionId;
use crate::token::MAX_TTL_SECS;

impl Sender {
    /// Closes every connection `target` names but `exclude`, with the Management API's
    /// `DELETE @connections/{id}` (retried as posts are), and removes their sessions: presence
    /// announces `member_left` for users with no connection left, and the disconnect hook is told
    /// [`Ending::Closed`]. For a user target, tokens issued to the user until now are refused at
    /// `$connect` from now on (the mark is written before any connection is closed, so a tab
    /// reconnecting meanwhile with a token it already held cannot slip in).
    ///
    /// The report counts `closed`; connections already gone are in `gone` (their sessions
    /// removed as well), ones that could not be closed in `failed` (their sessions kept).
    pub async fn close(&self, target: &Target, exclude: &[ConnectionId]) -> DeliveryReport {
        let started = Instant::now();
        let deadline = started + self.options.deadline;
        let mut report = DeliveryReport { closed: Some(0), ..DeliveryReport::default() };
        if let Target::User(user) = target {
            let now_ms = self.clock.now_millis();
            let keep_until = now_ms.div_euclid(1000).saturating_add(MAX_TTL_SECS as i64);
            if let Err(e) = self.sessions.close_user(user, now_ms, keep_until).await {
                tracing::error!(error = %e, "could not mark the user's sessions closed; earlier tokens still connect");
                report.incomplete = Some(format!("earlier tokens are not refused: {e}"));
            }
        }
        let exclude: HashSet<&ConnectionId> = exclude.iter().collect();
        let outcomes = self.resolve(target).map(|resolved| {
            let exclude = &exclude;
            async move {
                match resolved {
                    Ok(Resolved::Found(r)) if exclude.contains(&r.connection_id) => (None, Outcome::Excluded),
                    Ok(Resolved::Found(r)) => {
                        let id = &r.connection_id;
                        let outcome =
                            self.with_retries(id, deadline, || self.transport.disconnect(&r.endpoint, id)).await;
                        (Some(r.connection_id), outcome)
                    }
                    Ok(Resolved::Unknown(id)) => (None, Outcome::Unknown(id)),
                    Err(e) => (None, Outcome::ListingFailed(e)),
                }
            }
        });
        let forbidden_logged = AtomicBool::new(false);
        let (mut report, closed) = outcomes
            .buffer_unordered(self.options.concurrency.max(1))
            .fold((report, Vec::new()), |(mut report, mut closed), (id, outcome)| {
                match (id, outcome) {
                    // A close is not a delivery: this request's deliveries are its message's.
                    (Some(id), Outcome::Delivered { retries }) => {
                        report.recipients += 1;
                        report.retries += retries;
                        closed.push(id);
                    }
                    (_, outcome) => record(&mut report, outcome, &forbidden_logged),
                }
                ready((report, closed))
            })
            .await;
        report.closed = Some(closed.len());
        if !closed.is_empty() {
            match self.sessions.remove_sessions(&closed).await {
                Ok(removed) => {
                    hooks::tell_all(self.disconnect_hook.as_deref(), &removed, Ending::Closed).await;
                    self.told_removed(&removed).await;
                }
                Err(e) => tracing::warn!(closed = closed.len(), error = %e, "could not remove closed sessions"),
            }
        }
        self.finish(report, started).await
    }
}
