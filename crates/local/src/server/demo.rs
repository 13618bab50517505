//! The demo: the page at `/` (the browser client and the chat example), its long task
//! (`POST /demo/task`), the development `echo` route, and your own pages (`--pages`).

use super::*;
use async_trait::async_trait;
use lambda_ws::{Inbound, MessageContext, Route, RouteError};

use super::issuer::dev_identity;

/// Starts a fake long task for the caller: `task_progress` every 150 ms to all their tabs, then
/// a toast. Shows the sender driving a progress bar.
pub(super) async fn demo_task(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let user = dev_identity(&shared, &headers).user_id;
    let task_id = format!("task-{}", &new_id()[..6]);
    let sender = shared.app.sender();
    let id = task_id.clone();
    tokio::spawn(async move {
        let target = Target::User(user);
        for step in 0..=10u8 {
            let done = step == 10;
            let mut progress = TaskProgress::new(id.clone(), step * 10);
            progress.message = Some(if done { "done".into() } else { format!("step {step} of 10") });
            progress.done = Some(done);
            let progress = Outbound::TaskProgress(progress);
            let _ = sender.send(&target, &progress, &[]).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let mut toast = Toast::new(Level::Success, format!("{id} finished"));
        toast.title = Some("Task complete".into());
        toast.timeout_ms = Some(4000);
        let toast = Outbound::Toast(toast);
        let _ = sender.send(&target, &toast, &[]).await;
    });
    json_response(202, &json!({ "task_id": task_id }))
}

// Inside this crate, so a packaged crate carries them. `assets/websocket-manager.js` is the
// browser client as `clients/js` publishes it; `tests/tests/contract.rs` keeps the two identical.
const DEMO_HTML: &str = include_str!("../../assets/demo/index.html");
const CLIENT_JS: &str = include_str!("../../assets/websocket-manager.js");
const DEMO_UI_JS: &str = include_str!("../../assets/demo/demo-ui.js");

pub(super) async fn demo_page(State(shared): State<Arc<Shared>>) -> Html<String> {
    Html(DEMO_HTML.replace("{{STAGE}}", &shared.options.stage))
}

pub(super) async fn client_file(Path(file): Path<String>) -> Response {
    let body = match file.as_str() {
        "websocket-manager.js" => CLIENT_JS,
        "demo-ui.js" => DEMO_UI_JS,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], body).into_response()
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

/// The development `echo` route's handler.
pub(crate) fn echo() -> Handler {
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
