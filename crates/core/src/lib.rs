//! # lambda-ws
//!
//! Real-time WebSockets for Rust on AWS Lambda, behind an API Gateway WebSocket API: sessions in
//! DynamoDB, delivery through the Management API, single-use connect tokens, origin and channel
//! policy, rate limits and a typed message protocol.
//!
//! ## Layout
//! Features sit on the store's interfaces, and delivery only delivers; the arrows run one way.
//! - [`session`]: validated names ([`ConnectionId`], [`ChannelName`]), [`Identity`], [`Session`].
//! - [`protocol`]: the inbound envelope ([`Inbound`]) and outbound messages ([`Outbound`]).
//! - [`store`]: the interfaces ([`store::SessionStore`], [`store::TokenStore`],
//!   [`store::CounterStore`], [`store::history::HistoryStore`], [`store::presence::PresenceStore`])
//!   and the two stores, [`MemoryStore`] and (feature `dynamodb`) `DynamoDbStore`. It imports
//!   none of the features below.
//! - [`token`]: issue and consume connect tokens (stored as SHA-256 only).
//! - [`history`], [`presence`], [`rate`], [`policy`]: channel streams and resume, who is in a
//!   channel, rate limits, origin and channel rules and the [`ChannelCheck`] hook.
//! - [`delivery`]: [`delivery::Transport`] ((feature `management-api`) the Management API),
//!   [`Target`], [`Sender`], [`DeliveryReport`].
//! - [`routing`]: [`Router`], [`TypedRoute`] (a request type parsed and validated before the route
//!   runs) and [`Route`] (the raw envelope), the [`MessageContext`] routes see, [`RouteError`].
//! - [`handlers`]: `$connect`, `$disconnect`, messages, token issuing, send, clean-up.
//! - [`hooks`]: an application's [`ConnectHook`] (session metadata, its own refusals) and
//!   [`DisconnectHook`] (every way a session ends).
//! - [`config`]: [`Config`] from `LWS_*` environment variables.
//! - [`schema`]: the contract of a router and its messages ([`schema::Contract`]): the AsyncAPI
//!   document and TypeScript declarations.
//! - [`admin`]: operator tasks (list sessions, clean up, purge tokens) behind the `lambda-ws` command.
//! - `testing` (feature `testing`): a harness that runs your routes through the handlers on the
//!   in-memory store and records what they post.
//! - `lambda` (feature `lambda`): run each kind of function from an [`App`] in three lines.
//! - [`App`]: the dependencies handlers take, built once per process.
//!
//! The crate root re-exports the vocabulary an app uses; the rest is reached through its module.
//!
//! ## Features
//! - `dynamodb` (default): the DynamoDB store.
//! - `management-api` (default): the Management API transport.
//! - `lambda`: the Lambda runtime adapters (needs both of the above).
//! - `invoke-client`: a typed client for code that invokes the sender function.
//! - `schema`: the contract writers ([`schema`]): the AsyncAPI document and the TypeScript
//!   declarations of a router (the `lambda-ws schema` command and your dev binary use them; a
//!   Lambda function does not). The JSON Schema of each message type is derived (`schemars`)
//!   whatever the features, since a typed route's request type is its contract.
//! - `testing`: the test harness for your routes.
//!
//! With `--no-default-features` the crate builds without the AWS SDKs (the in-memory store and
//! your own transport), as a library for tests or another host.
//!
//! A Lambda binary builds an [`App`] once and calls a handler per event; the local gateway and
//! the tests call the same handlers.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
mod app;
#[cfg(feature = "invoke-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "invoke-client")))]
pub mod client;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod handlers;
pub mod history;
pub mod hooks;
#[cfg(feature = "lambda")]
#[cfg_attr(docsrs, doc(cfg(feature = "lambda")))]
pub mod lambda;
pub mod policy;
pub mod presence;
pub mod protocol;
pub mod rate;
pub mod routing;
pub mod rules;
#[cfg(feature = "schema")]
#[cfg_attr(docsrs, doc(cfg(feature = "schema")))]
pub mod schema;
pub mod session;
pub mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod token;

// The vocabulary an app uses; everything else is reached through its module
// (`lambda_ws::store::SessionStore`, `lambda_ws::clock::ManualClock`, ...).
pub use app::App;
pub use config::{Config, ConfigError};
#[cfg(feature = "management-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "management-api")))]
pub use delivery::ManagementApi;
pub use delivery::{DeliveryReport, SendRequest, Sender, Target};
pub use hooks::{ConnectHook, DisconnectHook};
pub use policy::ChannelCheck;
pub use protocol::{ErrorCode, Inbound, Outbound, Reply};
pub use routing::{MessageContext, Route, RouteError, Router, TypedRoute};
pub use session::{ChannelName, ConnectionId, Identity, Session};
#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub use store::dynamodb::DynamoDbStore;
pub use store::memory::MemoryStore;

/// Re-exported so custom routes and checks can use `#[async_trait]` without another dependency line.
pub use async_trait::async_trait;
