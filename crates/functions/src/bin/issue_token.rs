//! `POST /ws-token` on the HTTP API: a single-use connect token for the authenticated caller.

use lambda_http::{Request, service_fn};
use lambda_ws::handlers;
use lambda_ws_functions::{Error, http_response, token_request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_ws_functions::init_tracing();
    let app = lambda_ws_functions::app().await?;
    lambda_http::run(service_fn(|request: Request| {
        let app = app.clone();
        async move { http_response(handlers::issue_token(&app, token_request(&request, &app.config)).await) }
    }))
    .await
}
