//! This repository's functions as `template.yaml` deploys them, and the `lambda-ws dev` built on
//! them: the functions in-process, the demo page, the development `echo` route, and the routes the
//! template declares when it is not there.

use lambda_ws_local::server::pages;
use lambda_ws_local::{Dev, Functions, GatewayOptions, RouteTable, SelectionExpression};

/// The routes this repository's `template.yaml` declares, with the function binary that serves each.
pub const ROUTES: [(&str, &str); 10] = [
    ("$connect", "connect"),
    ("$disconnect", "disconnect"),
    ("$default", "default"),
    ("subscribe", "default"),
    ("unsubscribe", "default"),
    ("history", "default"),
    ("presence", "default"),
    ("ping", "default"),
    ("chat", "chat"),
    ("chat_message", "chat"),
];

/// This repository's functions: `connect`, `disconnect`, `default` (the built-in actions and the
/// chat example) and `chat`.
pub fn functions() -> Functions {
    Functions::new()
        .connect("connect")
        .disconnect("disconnect")
        .messages("default", lambda_ws_functions::default_router())
        .messages("chat", lambda_ws_functions::chat_router())
}

/// [`ROUTES`], handled in-process (or, with `in_process` false, each invoking the function that
/// serves it in the deployment), plus the development `echo` route (always in-process).
pub fn routes(in_process: bool) -> RouteTable {
    let mut table =
        RouteTable::from_functions(SelectionExpression::body_field("action"), ROUTES, &functions(), in_process);
    table.insert("echo", pages::echo());
    table
}

/// Gateway options serving this repository's routes and the demo page.
pub fn gateway_options() -> GatewayOptions {
    GatewayOptions { routes: routes(true), endpoints: Some(crate::demo::endpoints()), ..GatewayOptions::default() }
}

/// `lambda-ws dev`: this repository's functions, the demo page and task, the `echo` route, and
/// [`ROUTES`] when there is no `template.yaml`.
pub fn dev() -> Dev {
    Dev::new("lambda-ws dev", functions())
        .routes_without_template(ROUTES)
        .route("echo", pages::echo())
        .endpoints(crate::demo::endpoints(), [("Demo page".to_owned(), "/".to_owned())])
}
