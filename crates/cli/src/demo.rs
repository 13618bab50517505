//! The demo: the page at `/` (the browser client and the chat example), its script at
//! `/demo/demo-ui.js`, and its long task (`POST /demo/task`), served as gateway endpoints.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use lambda_ws::protocol::{Level, TaskProgress, Toast};
use lambda_ws::{App, Outbound, Target};
use lambda_ws_local::server::dev_identity;
use lambda_ws_local::{EndpointContext, Endpoints};

// Inside this crate, so a packaged crate carries them.
const DEMO_HTML: &str = include_str!("../assets/demo/index.html");
const DEMO_UI_JS: &str = include_str!("../assets/demo/demo-ui.js");

/// The demo's endpoints: `GET /`, `GET /demo/demo-ui.js` and `POST /demo/task`.
pub fn endpoints() -> Endpoints {
    Endpoints::new(|ctx: &EndpointContext| {
        let page = DEMO_HTML.replace("{{STAGE}}", &ctx.stage);
        let (app, dev_user) = (ctx.app.clone(), ctx.dev_user.clone());
        Router::new()
            .route("/", get(move || async move { Html(page) }))
            .route("/demo/demo-ui.js", get(demo_ui))
            .route("/demo/task", post(move |headers: HeaderMap| task(app, dev_user, headers)))
    })
}

async fn demo_ui() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], DEMO_UI_JS).into_response()
}

/// Starts a fake long task for the caller: `task_progress` every 150 ms to all their tabs, then
/// a toast. Shows the sender driving a progress bar.
async fn task(app: App, dev_user: String, headers: HeaderMap) -> Response {
    let user = dev_identity(&headers, &dev_user).user_id;
    let task_id = format!("task-{}", &random_suffix());
    let sender = app.sender();
    let id = task_id.clone();
    tokio::spawn(async move {
        let target = Target::User(user);
        for step in 0..=10u8 {
            let done = step == 10;
            let mut progress = TaskProgress::new(id.clone(), step * 10);
            progress.message = Some(if done { "done".into() } else { format!("step {step} of 10") });
            progress.done = Some(done);
            let _ = sender.send(&target, &Outbound::TaskProgress(progress), &[]).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let mut toast = Toast::new(Level::Success, format!("{id} finished"));
        toast.title = Some("Task complete".into());
        toast.timeout_ms = Some(4000);
        let _ = sender.send(&target, &Outbound::Toast(toast), &[]).await;
    });
    let body = serde_json::json!({ "task_id": task_id }).to_string();
    (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Six characters for a task id.
fn random_suffix() -> String {
    lambda_ws_local::events::new_id().chars().filter(char::is_ascii_alphanumeric).take(6).collect()
}
