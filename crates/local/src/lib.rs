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
//! - `GET /client/websocket-manager.js`: the browser client; `/pages/<file>`: your own pages; and
//!   any endpoints of your own ([`GatewayOptions::endpoints`]: the repository's command adds its
//!   demo page this way).
//!
//! ## Layout
//! - [`dev`]: [`Dev`], the gateway with your functions, hooks and `template.yaml`, from your own
//!   dev binary (the `lambda-ws` command's `dev` is one, in the `lambda-ws-cli` crate).
//! - [`events`]: API Gateway-shaped events.
//! - [`routes`]: route selection, the route table and the in-process [`Functions`].
//! - [`registry`]: open connections and the in-process transport.
//! - [`server`]: the HTTP and WebSocket endpoints.
//! - [`template`]: routes and functions read from the SAM `template.yaml`, so local and cloud match.

#![warn(missing_docs)]

pub mod dev;
pub mod events;
pub mod registry;
pub mod routes;
pub mod server;
pub mod template;

pub use dev::{Dev, DevArgs, DevError};
pub use routes::{Functions, Handler, RouteTable, SelectionError, SelectionExpression};
pub use server::{
    AppSetup, EndpointContext, Endpoints, FunctionRoles, Gateway, GatewayOptions, StoreChoice, local_aws_config,
};
