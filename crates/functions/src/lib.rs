//! What the Lambda binaries share: JSON logging, building the [`App`] once, and reading the token
//! issuer's HTTP request. Each binary in `src/bin/` is a thin `main` over a core handler.

use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt as _, Response};
use lambda_ws::handlers::{HttpAnswer, TokenRequest};
use lambda_ws::{App, Config, Identity};

// mimalloc instead of glibc's malloc: with glibc's, a 10,000-recipient fan-out used 1.9 s of CPU
// (a sixth of it in malloc/free); with mimalloc 1.0 s (README, "Fan-out performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Writes each send's metrics to stdout as one CloudWatch Embedded Metric Format line
/// (namespace `LWS_METRICS_NAMESPACE`, default `lambda-ws`; dimension `Function` from
/// `AWS_LAMBDA_FUNCTION_NAME`).
#[derive(Debug, Clone)]
pub struct EmfStdout {
    namespace: String,
    function: String,
}

impl EmfStdout {
    /// Reads the namespace and function name from the environment.
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Self {
            namespace: var("LWS_METRICS_NAMESPACE", lambda_ws::delivery::metrics::DEFAULT_NAMESPACE),
            function: var("AWS_LAMBDA_FUNCTION_NAME", "sender"),
        }
    }
}

impl lambda_ws::MetricsSink for EmfStdout {
    fn record(&self, target: &str, report: &lambda_ws::DeliveryReport) {
        use std::io::Write as _;
        let now = lambda_ws::clock::unix_now_millis();
        let doc = lambda_ws::delivery::metrics::emf_document(&self.namespace, &self.function, target, report, now);
        // One write per line, so the line is not interleaved with log lines.
        let line = format!("{doc}\n");
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
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
    let channel =
        request.query_string_parameters_ref().and_then(|q| q.first("channel").map(str::to_owned)).or_else(|| {
            match request.body() {
                Body::Text(text) => serde_json::from_str::<serde_json::Value>(text).ok(),
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
    use lambda_ws::Identity;

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
