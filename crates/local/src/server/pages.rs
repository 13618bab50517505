//! What the gateway serves besides the APIs: the browser client (`/client/websocket-manager.js`),
//! your own pages (`--pages`), and the development `echo` route.

use super::*;
use async_trait::async_trait;
use lambda_ws::{Inbound, MessageContext, Route, RouteError};

// Inside this crate, so a packaged crate carries it: the browser client as `clients/js`
// publishes it (`tests/tests/contract.rs` keeps the two identical).
const CLIENT_JS: &str = include_str!("../../assets/websocket-manager.js");

/// `GET /client/websocket-manager.js`: the browser client, so a page on the gateway's origin
/// imports it with no build step.
pub(super) async fn client_file(Path(file): Path<String>) -> Response {
    if file != "websocket-manager.js" {
        return StatusCode::NOT_FOUND.into_response();
    }
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], CLIENT_JS).into_response()
}

/// `GET /pages/<path>`: a file of [`GatewayOptions::pages`]. Only plain path segments are
/// followed (no `..`, no hidden files, no drive or root), and the file is resolved (links
/// followed) and served only if it still lies inside the folder, so nothing outside it is served.
pub(super) async fn page_file(State(shared): State<Arc<Shared>>, Path(path): Path<String>) -> Response {
    let Some(folder) = shared.options.pages.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let plain = |segment: &str| {
        let mut components = std::path::Path::new(segment).components();
        !segment.starts_with('.')
            && !segment.contains(['\\', ':'])
            && matches!((components.next(), components.next()), (Some(std::path::Component::Normal(_)), None))
    };
    if !path.split('/').all(plain) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let file = folder.join(&path);
    let kind = match file.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => "application/octet-stream",
    };
    let read = move || {
        let (folder, file) = (folder.canonicalize()?, file.canonicalize()?);
        if !file.starts_with(&folder) {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "outside the pages folder"));
        }
        std::fs::read(file)
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, kind)], body).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The development `echo` route's handler ([`EchoRoute`]).
pub fn echo() -> Handler {
    Handler::Messages(lambda_ws::Router::new().route("echo", EchoRoute))
}

/// `echo`: answers the sender with the frame's own fields, through the Management API. Used by the
/// gateway benchmark to measure a full round trip through a handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoRoute;

#[async_trait]
impl Route for EchoRoute {
    async fn handle(&self, _ctx: &MessageContext<'_>, msg: Inbound) -> Result<Option<Outbound>, RouteError> {
        let mut fields = msg.fields;
        fields.insert("type".into(), "echo".into());
        if let Some(reference) = msg.reference {
            fields.insert("ref".into(), reference.into());
        }
        Outbound::custom(fields).map(Some).map_err(RouteError::internal)
    }
}
