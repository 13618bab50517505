//! An application's own code on the connection lifecycle: a [`ConnectHook`] on `$connect` that
//! attaches metadata to the session (or refuses the connection on its own rule), and a
//! [`DisconnectHook`] told whenever a session ends, by `$disconnect`, by a 410 a send found, or by
//! clean-up.
//!
//! ```
//! use lambda_ws::hooks::{ConnectHook, ConnectInfo, Metadata, Refusal};
//!
//! /// Tags every session with the tenant the page connected for, and refuses unknown ones.
//! #[derive(Debug)]
//! struct Tenants;
//!
//! #[lambda_ws::async_trait]
//! impl ConnectHook for Tenants {
//!     async fn on_connect(&self, info: &ConnectInfo<'_>) -> Result<Metadata, Refusal> {
//!         match info.query("tenant") {
//!             Some(tenant @ ("acme" | "globex")) => Ok(Metadata::from([("tenant".into(), tenant.into())])),
//!             _ => Err(Refusal::new(403, "unknown tenant")),
//!         }
//!     }
//! }
//! ```
//!
//! Metadata is stored with the session and its memberships: `lambda-ws sessions list` shows it and
//! the sender's `filter` target matches on it (`{"filter": {"metadata": {"tenant": "acme"}}}`).

use std::fmt;

use async_trait::async_trait;

use crate::session::{ChannelName, ConnectionId, Identity};

pub use crate::session::Metadata;

/// What a connect hook knows about the connection being opened. Every check of `$connect` has
/// passed (origin, token, channel permission); the session is not written yet.
#[derive(Debug)]
pub struct ConnectInfo<'a> {
    /// The new connection's id.
    pub connection_id: &'a ConnectionId,
    /// Who the token was issued to, if the connection presented one.
    pub identity: Option<&'a Identity>,
    /// The channel it joins on connect, if any.
    pub channel: Option<&'a ChannelName>,
    /// The client's address as API Gateway saw it.
    pub source_ip: &'a str,
    /// The handshake's headers.
    pub headers: &'a http::HeaderMap,
    /// The connect URL's query string.
    pub query_string: &'a aws_lambda_events::query_map::QueryMap,
}

impl ConnectInfo<'_> {
    /// The first value of a query parameter (`?tenant=acme`).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_string.first(name)
    }

    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A connect hook's refusal: the HTTP status `$connect` answers (400 to 499; anything else
/// becomes 403) and a short reason for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status.
    pub status: u16,
    /// The reason, sent as `{"message": reason}`.
    pub reason: String,
}

impl Refusal {
    /// A refusal with a status (400 to 499) and reason.
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        let status = if (400..500).contains(&status) { status } else { 403 };
        Self { status, reason: reason.into() }
    }
}

/// Runs on `$connect` after every built-in check, before anything is written: returns the
/// session's metadata, or refuses the connection.
#[async_trait]
pub trait ConnectHook: Send + Sync + fmt::Debug {
    /// Decides on one connection.
    async fn on_connect(&self, info: &ConnectInfo<'_>) -> Result<Metadata, Refusal>;
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// API Gateway's `$disconnect`, with the close code and reason it reported.
    Disconnected {
        /// `disconnectStatusCode`.
        status: Option<i64>,
        /// `disconnectReason`.
        reason: Option<String>,
    },
    /// A send found the connection gone (410) and removed its session.
    Gone,
    /// Clean-up removed it: expired, or reported gone by `GET @connections`.
    CleanedUp,
    /// The sender closed it (a request with `close`: a logout, a ban, `lambda-ws sessions close`).
    Closed,
}

/// A session that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Its connection id.
    pub connection_id: ConnectionId,
    /// Its user, if it had one.
    pub user_id: Option<String>,
    /// How it ended.
    pub ending: Ending,
}

/// Told once for every session that ends, whichever way (see [`Ending`]). Runs after the session
/// is removed; what it does cannot undo or delay the removal.
#[async_trait]
pub trait DisconnectHook: Send + Sync + fmt::Debug {
    /// One session ended.
    async fn on_disconnect(&self, ended: &Ended);
}

/// Tells `hook` that each of the `removed` sessions ended the same way.
pub(crate) async fn tell_all(hook: Option<&dyn DisconnectHook>, removed: &[crate::store::Removed], ending: Ending) {
    let Some(hook) = hook else { return };
    for r in removed {
        let ended =
            Ended { connection_id: r.connection_id.clone(), user_id: r.user_id.clone(), ending: ending.clone() };
        hook.on_disconnect(&ended).await;
    }
}
