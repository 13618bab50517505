//! The scheduled clean-up: remove sessions whose time has passed.
//!
//! DynamoDB's TTL deletes expired items, but up to days late; reads already ignore them, and
//! this keeps the table and its indexes small in between. `lambda-ws cleanup` runs the same code
//! by hand, optionally also asking the Management API which connections are gone.

use crate::App;
use crate::admin::{self, CleanupOptions, CleanupSummary};
use crate::store::StoreError;

/// What a clean-up run did.
pub type CleanupReport = CleanupSummary;

/// Removes every expired session and membership.
pub async fn cleanup(app: &App) -> Result<CleanupReport, StoreError> {
    admin::cleanup(app, CleanupOptions::default(), &|_| {}).await
}
