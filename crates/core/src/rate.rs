//! Fixed-window rate limits over a [`CounterStore`].
//!
//! Each request increments `rate#<scope>#<key>#<window>` atomically; the window is part of the key,
//! so counters never need resetting and expire by TTL. A fixed window admits at most twice the
//! limit across a window boundary, which is acceptable for abuse protection and costs one write.

use crate::store::{CounterStore, StoreError};

/// Length of a rate window.
pub use crate::store::RATE_WINDOW_SECS as WINDOW_SECS;

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `$connect` attempts per source IP.
    ConnectIp,
    /// Tokens issued per user. (Messages per connection are counted on the session item itself,
    /// by [`SessionStore::admit_message`](crate::store::SessionStore::admit_message); connects
    /// per user with the user's connection slots, by
    /// [`SessionStore::claim_connection`](crate::store::SessionStore::claim_connection).)
    Token,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Self::ConnectIp => "connect-ip",
            Self::Token => "token",
        }
    }
}

/// Counts one request against `limit` per minute; `Ok(false)` means over the limit. A limit of
/// 0 is off and touches no store.
pub async fn allow(
    counters: &dyn CounterStore,
    scope: Scope,
    key: &str,
    limit: u32,
    now_secs: i64,
) -> Result<bool, StoreError> {
    if limit == 0 {
        return Ok(true);
    }
    let window = now_secs.div_euclid(WINDOW_SECS);
    let counter = format!("{}#{key}#{window}", scope.as_str());
    let count = counters.increment(&counter, (window + 2) * WINDOW_SECS).await?;
    Ok(count <= u64::from(limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn trips_at_the_limit_and_recovers_next_window() {
        let store = MemoryStore::new();
        let t0 = 120 * 60;
        for _ in 0..3 {
            assert!(allow(&store, Scope::ConnectIp, "1.2.3.4", 3, t0).await.expect("count"));
        }
        assert!(!allow(&store, Scope::ConnectIp, "1.2.3.4", 3, t0 + 59).await.expect("count"));
        assert!(allow(&store, Scope::ConnectIp, "5.6.7.8", 3, t0).await.expect("count"), "keys are separate");
        assert!(allow(&store, Scope::Token, "1.2.3.4", 3, t0).await.expect("count"), "scopes are separate");
        assert!(allow(&store, Scope::ConnectIp, "1.2.3.4", 3, t0 + 60).await.expect("count"), "next window");
        assert!(allow(&store, Scope::ConnectIp, "1.2.3.4", 0, t0).await.expect("off"));
    }
}
