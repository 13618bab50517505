//! # lambda-ws-cli
//!
//! The `lambda-ws` command: `dev` (the local gateway with this repository's functions, routes and
//! demo page), the operator commands (`sessions list|close`, `send`, `cleanup`, `tokens purge`) and
//! `schema` (the contract files). The gateway itself is the `lambda-ws-local` library; this crate
//! is what depends on both it and this repository's functions, so the arrows run one way.
//!
//! ## Layout
//! - [`repository`]: this repository's function set, routes and [`Dev`](lambda_ws_local::Dev).
//! - [`demo`]: the demo page, its script and its fake long task, served as gateway endpoints.
//! - [`contract`]: this repository's AsyncAPI document and TypeScript declarations.
//! - [`ops`]: the operator commands, against a table or a running gateway.

#![warn(missing_docs)]

pub mod contract;
pub mod demo;
pub mod ops;
pub mod repository;
