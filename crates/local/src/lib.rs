//! # lambda-ws-local
//!
//! `lambda-ws dev`: the whole WebSocket API on one machine, with no AWS account.
//!
//! One port serves:
//! - `ws://<host>:<port>/<stage>`: the WebSocket API. Events are built as API Gateway builds them
//!   and the same core handlers run in-process, on the memory store or a DynamoDB endpoint.
//! - `http://<host>:<port>/<stage>/@connections/{id}`: the Management API (POST, GET, DELETE), so
//!   unmodified AWS SDKs work by changing only the endpoint URL.
//! - `POST /ws-token`: the token issuer, with a development identity.
//! - `POST /2015-03-31/functions/{name}/invocations`: the Lambda Invoke API for the sender and the
//!   clean-up, so backend code calling `lambda.invoke` works locally.
//! - `GET /_admin/sessions`, `POST /_admin/cleanup`, `POST /_admin/tokens/purge`: what the operator
//!   commands call with `--gateway`.
//! - `GET /`: a demo page using the browser client (this repository's gateway).
//!
//! ## Layout
//! - [`dev`]: [`Dev`], the gateway with your functions, hooks and `template.yaml`, from your own
//!   dev binary (`lambda-ws dev` is [`Dev::repository`]).
//! - [`contract`]: this repository's AsyncAPI document and TypeScript declarations (`lambda-ws schema`).
//! - [`events`]: API Gateway-shaped events.
//! - [`ops`]: the operator commands (`sessions list`, `send`, `cleanup`, `tokens purge`).
//! - [`routes`]: route selection, the route table and the in-process [`Functions`].
//! - [`registry`]: open connections and the in-process transport.
//! - [`server`]: the HTTP and WebSocket endpoints.
//! - [`template`]: routes and functions read from the SAM `template.yaml`, so local and cloud match.

#![warn(missing_docs)]

pub mod contract;
pub mod dev;
pub mod events;
pub mod ops;
pub mod registry;
pub mod routes;
pub mod server;
pub mod template;

pub use dev::{Dev, DevArgs};
pub use routes::{Functions, Handler, RouteTable, SelectionError, SelectionExpression};
pub use server::{AppSetup, Gateway, GatewayOptions, StoreChoice, local_aws_config};
