//! This repository's application on lambda-ws: the worked chat example ([`chat`]) and the routers
//! of its message functions. Each binary in `src/bin/` is three lines over `lambda_ws::lambda`.

pub mod chat;

pub use chat::{chat_router, default_router};
