//! Lambda functions in three lines (feature `lambda`): each kind of function runs from an
//! [`App`] (and a [`Router`] for messages), with JSON logs and, for the sender, CloudWatch EMF
//! metrics.
//!
//! ```no_run
//! use lambda_ws::{Router, lambda};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), lambda::Error> {
//!     let app = lambda::app().await?;
//!     lambda::messages(app, Router::builtin()).await
//! }
//! ```
//!
//! [`app`] starts the JSON logs (level from `RUST_LOG`, default `info`) and reads the
//! configuration from `LWS_*` variables; add hooks and checks to it before running
//! (`lambda::app().await?.with_connect_hook(MyHook)`).

mod emf;

pub use emf::EmfStdout;

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt as _, Response};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

use crate::handlers::{self, HttpAnswer, TokenRequest};
use crate::routing::Router;
use crate::{App, Config, Identity};

/// The error a function's `main` returns.
pub type Error = lambda_runtime::Error;

/// JSON logs to stdout (CloudWatch), level from `RUST_LOG` (default `info`), no ANSI colours and
/// no timestamps (CloudWatch adds them). Does nothing if a subscriber is already set.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
}

/// Starts the logs and builds the app from the environment; a configuration error is logged and
/// fails the function's init.
pub async fn app() -> Result<App, Error> {
    init_tracing();
    App::from_env().await.map_err(|e| {
        tracing::error!(error = %e, "invalid configuration");
        Error::from(e.to_string())
    })
}

/// Runs a `$connect` function.
pub async fn connect(app: App) -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let app = app.clone();
        async move { Ok::<_, Error>(handlers::connect(&app, &event.payload).await) }
    }))
    .await
}

/// Runs a `$disconnect` function.
pub async fn disconnect(app: App) -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let app = app.clone();
        async move { Ok::<_, Error>(handlers::disconnect(&app, &event.payload).await) }
    }))
    .await
}

/// Runs a message function (`$default` or your own route keys) with `router`.
pub async fn messages(app: App, router: Router) -> Result<(), Error> {
    let (app, router) = (Arc::new(app), Arc::new(router));
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let (app, router) = (Arc::clone(&app), Arc::clone(&router));
        async move { Ok::<_, Error>(handlers::message(&app, &router, &event.payload).await) }
    }))
    .await
}

/// Runs the token issuer behind an HTTP API (`POST /ws-token`).
pub async fn issuer(app: App) -> Result<(), Error> {
    lambda_http::run(service_fn(|request: Request| {
        let app = app.clone();
        async move { http_response(handlers::issue_token(&app, token_request(&request, &app.config)).await) }
    }))
    .await
}

/// Runs the sender: a single request, a batch, or SQS messages; each send's metrics go to the log
/// in CloudWatch's Embedded Metric Format ([`EmfStdout`]).
pub async fn sender(app: App) -> Result<(), Error> {
    let app = app.with_metrics(Arc::new(EmfStdout::from_env()));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let app = app.clone();
        async move { Ok::<_, Error>(handlers::send(&app, event.payload).await) }
    }))
    .await
}

/// Runs the scheduled clean-up. A store failure fails the invocation, so the schedule's retries
/// and alarms see it.
pub async fn cleanup(app: App) -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| {
        let app = app.clone();
        async move { handlers::cleanup(&app).await.map_err(Error::from) }
    }))
    .await
}

/// Reads what the token issuer needs from an HTTP API request: the identity from a JWT or Lambda
/// authorizer, `Origin`, the CSRF header, and `channel` from the query or a JSON body.
pub fn token_request(request: &Request, config: &Config) -> TokenRequest {
    let headers = request.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let identity = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().and_then(|auth| {
            let jwt = auth.jwt.as_ref().map(|j| &j.claims);
            Identity::from_claims(|k| {
                let from_jwt = jwt.and_then(|c| c.get(k)).map(|v| Value::String(v.clone()));
                from_jwt.or_else(|| auth.fields.get(k).cloned())
            })
        }),
        _ => None,
    };
    let channel =
        request.query_string_parameters_ref().and_then(|q| q.first("channel").map(str::to_owned)).or_else(|| {
            match request.body() {
                Body::Text(text) => serde_json::from_str::<Value>(text).ok(),
                Body::Binary(bytes) => serde_json::from_slice(bytes).ok(),
                _ => None,
            }
            .and_then(|v| v.get("channel").and_then(|c| c.as_str()).map(str::to_owned))
        });
    TokenRequest { identity, origin: header("origin"), csrf_header: header(&config.csrf_header).is_some(), channel }
}

/// Turns a handler's answer into an HTTP response that no cache keeps.
pub fn http_response(answer: HttpAnswer) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(answer.status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Body::Text(answer.body.to_string()))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Identity};

    fn sample(edit: impl FnOnce(&mut serde_json::Value)) -> Request {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/issue-token.json");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut event: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        edit(&mut event);
        lambda_http::request::from_str(&event.to_string()).unwrap_or_else(|e| panic!("sample event: {e}"))
    }

    #[test]
    fn reads_identity_origin_csrf_and_channel_from_an_http_api_event() {
        let request = token_request(&sample(|_| {}), &Config::default());
        let expected = Identity::user("5f8e2c1a-7b3d-4e9f-a0c6-1d2e3f4a5b6c").with_groups(["staff", "editors"]);
        assert_eq!(request.identity, Some(expected));
        assert_eq!(request.origin.as_deref(), Some("https://app.example.com"));
        assert!(request.csrf_header);
        assert_eq!(request.channel.as_deref(), Some("lobby"));
    }

    #[test]
    fn missing_authorizer_or_header_is_seen_as_such() {
        let request = sample(|e| {
            e["requestContext"]["authorizer"] = serde_json::Value::Null;
            e["headers"].as_object_mut().map(|h| h.remove("x-lambda-ws"));
            e["queryStringParameters"] = serde_json::Value::Null;
            e["rawQueryString"] = "".into();
            e["body"] = r#"{"channel":"from-body"}"#.into();
        });
        let request = token_request(&request, &Config::default());
        assert_eq!(request.identity, None);
        assert!(!request.csrf_header);
        assert_eq!(request.channel.as_deref(), Some("from-body"));
    }

    #[test]
    fn lambda_authorizer_context_is_an_identity_too() {
        let request = sample(|e| {
            e["requestContext"]["authorizer"] = serde_json::json!({"lambda": {"user_id": "u-9", "groups": "a,b"}});
        });
        let identity = token_request(&request, &Config::default()).identity;
        assert_eq!(identity, Some(Identity::user("u-9").with_groups(["a", "b"])));
    }

    #[test]
    fn responses_are_json_and_uncached() {
        let answer = HttpAnswer { status: 429, body: serde_json::json!({"error":{"code":"rate_limited"}}) };
        let response = http_response(answer).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["content-type"], "application/json");
    }
}
