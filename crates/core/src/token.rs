//! Short-lived, single-use connect tokens.
//!
//! A token is 32 random bytes, base64url without padding (43 characters). Only its SHA-256 is
//! stored, so read access to the table does not yield usable tokens. Consuming is an atomic
//! delete: of any number of concurrent `$connect`s presenting one token, exactly one wins.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::session::{ChannelName, Identity};
use crate::store::{StoreError, TokenRecord, TokenStore};

/// Length of an encoded token.
pub const TOKEN_LEN: usize = 43;

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was presented.
    #[error("token missing")]
    Missing,
    /// Malformed, unknown or already used (these are indistinguishable on purpose).
    #[error("token invalid or already used")]
    Invalid,
    /// The token existed but its time had passed.
    #[error("token expired")]
    Expired,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A freshly issued token: the secret to hand to the client and its lifetime.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The secret. Never log it.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken").field("token", &"<redacted>").field("expires_in", &self.expires_in).finish()
    }
}

/// The storage key of a token: lowercase hex SHA-256 of its text.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The longest a token may live (`LWS_TOKEN_TTL_SECS` is at most this): a close of a user's
/// sessions is remembered this long, so no token issued before it connects after it.
pub const MAX_TTL_SECS: u64 = 3600;

/// Whether `token` has the shape of one we issue (cheap reject before any store call).
pub fn is_well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Issues a token for `identity`, optionally bound to one channel, valid for `ttl_secs` from
/// `now_ms` (Unix milliseconds).
pub async fn issue(
    store: &dyn TokenStore,
    identity: Identity,
    channel: Option<ChannelName>,
    ttl_secs: u64,
    now_ms: i64,
) -> Result<IssuedToken, StoreError> {
    let now_secs = now_ms.div_euclid(1000);
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let record = TokenRecord { identity, channel, expires_at: now_secs + ttl_secs as i64, issued_at: now_ms };
    store.put_token(&token_hash(&token), &record).await?;
    Ok(IssuedToken { token, expires_in: ttl_secs })
}

/// Consumes `token`: valid once, before its expiry.
pub async fn consume(store: &dyn TokenStore, token: Option<&str>, now_secs: i64) -> Result<TokenRecord, TokenError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
    if !is_well_formed(token) {
        return Err(TokenError::Invalid);
    }
    let record = store.take_token(&token_hash(token)).await?.ok_or(TokenError::Invalid)?;
    if record.expires_at <= now_secs {
        return Err(TokenError::Expired);
    }
    Ok(record)
}

/// Puts back a token [`consume`] took, for a `$connect` refused before the token was used (the
/// per-IP limit, checked in the same round trip as the token): it stays valid until it expires.
pub async fn restore(store: &dyn TokenStore, token: &str, record: &TokenRecord) -> Result<(), StoreError> {
    store.put_token(&token_hash(token), record).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn issued_tokens_are_random_urlsafe_and_stored_hashed() {
        let store = MemoryStore::new();
        let a = issue(&store, Identity::user("u"), None, 60, 1_000_000).await.expect("issue");
        let b = issue(&store, Identity::user("u"), None, 60, 1_000_000).await.expect("issue");
        assert_ne!(a.token, b.token);
        assert!(is_well_formed(&a.token), "{}", a.token.len());
        assert_eq!(a.expires_in, 60);
        assert!(!format!("{a:?}").contains(&a.token), "Debug must not print the token");
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        // Stored under the hash, not the token.
        assert!(store.take_token(&a.token).await.expect("take").is_none());
        assert!(store.take_token(&token_hash(&a.token)).await.expect("take").is_some());
    }

    #[tokio::test]
    async fn consume_once_before_expiry() {
        let store = MemoryStore::new();
        let t = issue(&store, Identity::user("u"), None, 60, 1_000_000).await.expect("issue");
        assert_eq!(consume(&store, Some(&t.token), 1059).await.expect("valid").identity.user_id, "u");
        assert_eq!(consume(&store, Some(&t.token), 1059).await, Err(TokenError::Invalid), "replay");
        let late = issue(&store, Identity::user("u"), None, 60, 1_000_000).await.expect("issue");
        assert_eq!(consume(&store, Some(&late.token), 1060).await, Err(TokenError::Expired));
        assert_eq!(
            consume(&store, Some(&late.token), 1000).await,
            Err(TokenError::Invalid),
            "expired tokens are spent"
        );
        assert_eq!(consume(&store, None, 0).await, Err(TokenError::Missing));
        assert_eq!(consume(&store, Some(""), 0).await, Err(TokenError::Missing));
        assert_eq!(consume(&store, Some("short"), 0).await, Err(TokenError::Invalid));
    }
}
