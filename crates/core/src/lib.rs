//! # lambda-ws
//!
//! Real-time WebSockets for Rust on AWS Lambda, behind an API Gateway WebSocket API: sessions in
//! DynamoDB, delivery through the Management API, single-use connect tokens, origin and channel
//! policy, rate limits and a typed message protocol.
//!
//! ## Layout
//! - [`session`]: validated names ([`ConnectionId`], [`ChannelName`]), [`Identity`], [`Session`].
//! - [`protocol`]: the inbound envelope ([`Inbound`]) and outbound messages ([`Outbound`]).
//! - [`store`]: [`SessionStore`], [`TokenStore`], [`CounterStore`]; DynamoDB and in-memory.
//! - [`token`]: issue and consume connect tokens (stored as SHA-256 only).
//! - [`delivery`]: [`Transport`] (Management API), [`Target`], [`Sender`], [`DeliveryReport`].
//! - [`policy`]: origin allow-list, channel rules, the [`ChannelCheck`] hook.
//! - [`rate`]: fixed-window rate limits over counters.
//! - [`routing`]: [`Router`], [`TypedRoute`] (a request type parsed and validated before the route
//!   runs) and [`Route`] (the raw envelope), the [`MessageContext`] routes see, [`RouteError`].
//! - [`handlers`]: `$connect`, `$disconnect`, messages, token issuing, send, clean-up.
//! - [`hooks`]: an application's [`ConnectHook`](hooks::ConnectHook) (session metadata, its own
//!   refusals) and [`DisconnectHook`](hooks::DisconnectHook) (every way a session ends).
//! - [`config`]: [`Config`] from `LWS_*` environment variables.
//! - [`schema`]: the contract of a router and its messages ([`schema::Contract`]): the AsyncAPI
//!   document and TypeScript declarations.
//! - [`admin`]: operator tasks (list sessions, clean up, purge tokens) behind the `lambda-ws` command.
//! - `testing` (feature `testing`): a harness that runs your routes through the handlers on the
//!   in-memory store and records what they post.
//! - `lambda` (feature `lambda`): run each kind of function from an [`App`] in three lines.
//! - [`App`]: the dependencies handlers take, built once per process.
//!
//! A Lambda binary builds an [`App`] once and calls a handler per event; the local gateway and
//! the tests call the same handlers.

#![warn(missing_docs)]

pub mod admin;
mod app;
#[cfg(feature = "invoke-client")]
pub mod client;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod handlers;
pub mod history;
pub mod hooks;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod policy;
pub mod presence;
pub mod protocol;
pub mod rate;
pub mod routing;
pub mod schema;
pub mod session;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod token;

pub use app::App;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, ConfigError, RateLimits};
pub use delivery::{
    DeliveryReport, FailedDelivery, ManagementApi, MetricsSink, SendOptions, SendRequest, Sender, Target, Transport,
    TransportError,
};
pub use history::{HistoryRule, HistoryRules, HistoryStore};
pub use policy::{Access, ChannelCheck, ChannelRules, GATEWAY_SECRET_HEADER, GatewaySecrets, OriginPolicy};
pub use presence::{Member, PresenceRule, PresenceRules, PresenceStore};
pub use protocol::{ErrorCode, Inbound, Outbound, Reply};
pub use routing::{MessageContext, Route, RouteError, Router, TypedRoute};
pub use session::{ChannelName, ConnectionId, Identity, Recipient, Session};
pub use store::dynamodb::DynamoDbStore;
pub use store::memory::MemoryStore;
pub use store::{
    Admission, CounterStore, Cursor, Joined, Page, Removed, SessionStore, StoreError, TokenRecord, TokenStore,
};

/// Re-exported so custom routes and checks can use `#[async_trait]` without another dependency line.
pub use async_trait::async_trait;
