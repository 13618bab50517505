//! The scheduled clean-up: remove sessions whose time has passed.
//!
//! DynamoDB's TTL deletes expired items, but up to days late; reads already ignore them, and
//! this keeps the table and its indexes small in between.

use serde::{Deserialize, Serialize};

use crate::App;
use crate::store::StoreError;

/// What a clean-up run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// Pages of the table read.
    pub pages: usize,
    /// Sessions (with their memberships) removed.
    pub removed: usize,
}

/// Removes every expired session and membership.
pub async fn cleanup(app: &App) -> Result<CleanupReport, StoreError> {
    let now = app.clock.now_secs();
    let mut report = CleanupReport::default();
    let mut cursor = None;
    loop {
        let page = app.sessions.expired_page(cursor.as_ref(), 500, now).await?;
        report.pages += 1;
        for id in page.items {
            app.sessions.remove_session(&id).await?;
            report.removed += 1;
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    tracing::info!(removed = report.removed, pages = report.pages, "clean-up done");
    Ok(report)
}
