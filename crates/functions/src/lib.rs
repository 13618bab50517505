//! What the Lambda binaries share: JSON logging, building the [`App`] once, and reading the token
//! issuer's HTTP request. Each binary in `src/bin/` is a thin `main` over a core handler.

use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt as _, Response};
use lambda_ws::handlers::{HttpAnswer, TokenRequest};
use lambda_ws::{App, Config, Identity};

/// The error type the binaries return from `main`.
pub type Error = lambda_runtime::Error;

/// JSON logs to stdout (CloudWatch), level from `RUST_LOG` (default `info`), no ANSI colours,
/// no timestamps (CloudWatch adds them).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .init();
}

/// Builds the app from the environment, logging a configuration error before failing the init.
pub async fn app() -> Result<App, Error> {
    App::from_env().await.map_err(|e| {
        tracing::error!(error = %e, "invalid configuration");
        Error::from(e.to_string())
    })
}

/// Reads what the token issuer needs from an HTTP API request: the identity from a
/// JWT or Lambda authorizer, `Origin`, the CSRF header, and `channel` from the query or a JSON body.
pub fn token_request(request: &Request, config: &Config) -> TokenRequest {
    let headers = request.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let identity = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().and_then(|auth| {
            let jwt = auth.jwt.as_ref().map(|j| &j.claims);
            Identity::from_claims(|k| {
                let from_jwt = jwt.and_then(|c| c.get(k)).map(|v| serde_json::Value::String(v.clone()));
                from_jwt.or_else(|| auth.fields.get(k).cloned())
            })
        }),
        _ => None,
    };
    let channel = request
        .query_string_parameters_ref()
        .and_then(|q| q.first("channel").map(str::to_owned))
        .or_else(|| {
            match request.body() {
                Body::Text(text) => serde_json::from_str::<serde_json::Value>(text).ok(),
                Body::Binary(bytes) => serde_json::from_slice(bytes).ok(),
                _ => None,
            }
            .and_then(|v| v.get("channel").and_then(|c| c.as_str()).map(str::to_owned))
        });
    TokenRequest {
        identity,
        origin: header("origin"),
        csrf_header: header(&config.csrf_header).is_some(),
        channel,
    }
}

/// Turns a handler's answer into an HTTP response that no cache keeps.
pub fn http_response(answer: HttpAnswer) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(answer.status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Body::Text(answer.body.to_string()))?)
}
