//! The handlers: plain async functions over an [`App`](crate::App), called by the Lambda
//! binaries, the local gateway and the tests alike.

mod cleanup;
mod connect;
mod disconnect;
mod message;
mod send;
mod token;

pub use cleanup::{CleanupReport, cleanup};
pub use connect::{ConnectRefusal, connect};
pub use disconnect::disconnect;
pub use message::message;
pub use send::{SendRefusal, deliver, send, send_response};
pub use token::{HttpAnswer, TokenRequest, issue_token};

use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
};
use aws_lambda_events::encodings::Body;

use crate::config::Config;

/// A proxy response with a JSON body.
pub(crate) fn respond(status: u16, body: &serde_json::Value) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response.body = Some(Body::Text(body.to_string()));
    response.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

/// The Management API endpoint that reaches connections of the event's API and stage:
/// `LWS_MANAGEMENT_ENDPOINT` if set (custom domains), otherwise `https://<domainName>/<stage>`
/// (`http://` for a local gateway on loopback).
pub fn management_endpoint(config: &Config, ctx: &ApiGatewayWebsocketProxyRequestContext) -> Option<String> {
    if let Some(endpoint) = &config.management_endpoint {
        return Some(endpoint.clone());
    }
    let domain = ctx.domain_name.as_deref().filter(|d| !d.is_empty())?;
    let stage = ctx.stage.as_deref().unwrap_or_default();
    let host = domain.rsplit_once(':').map_or(domain, |(h, _)| h);
    let scheme = if matches!(host, "localhost" | "127.0.0.1" | "[::1]") { "http" } else { "https" };
    Some(format!("{scheme}://{domain}/{stage}"))
}

/// Whether the event comes from the configured API (always true when none is configured).
pub(crate) fn api_id_matches(config: &Config, ctx: &ApiGatewayWebsocketProxyRequestContext) -> bool {
    config.api_id.as_deref().is_none_or(|expected| ctx.apiid.as_deref() == Some(expected))
}

/// The checks every WebSocket event passes before anything else, `$connect`, messages and
/// `$disconnect` alike: the API id (when configured) and the gateway secret (when configured),
/// so a forged event cannot act for a connection. The refusal is a 403 reason.
pub(crate) fn check_event(config: &Config, event: &ApiGatewayWebsocketProxyRequest) -> Result<(), &'static str> {
    if !api_id_matches(config, &event.request_context) {
        return Err("unexpected API");
    }
    let secret = event.headers.get(crate::policy::GATEWAY_SECRET_HEADER).and_then(|v| v.to_str().ok());
    if !config.gateway_secrets.verify(secret) {
        return Err("invalid request");
    }
    Ok(())
}

/// A client-controlled string as it may appear in logs and error texts: at most 64 characters,
/// control characters (newlines, escape codes) escaped, so it cannot forge log lines or flood them.
pub fn loggable(text: &str) -> String {
    crate::routing::bounded(text, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_is_bounded_and_escaped_for_logs() {
        assert_eq!(loggable("chat"), "chat");
        assert_eq!(loggable("a\nlevel=error forged\u{1b}[31m"), "a\\nlevel=error forged\\u{1b}[31m");
        let long = loggable(&"x".repeat(128 * 1024));
        assert_eq!(long.chars().count(), 65, "64 characters and an ellipsis");
        assert!(!loggable("\r\n\t").contains(['\r', '\n', '\t']));
    }

    #[test]
    fn endpoints_follow_the_domain() {
        let mut ctx = ApiGatewayWebsocketProxyRequestContext::default();
        ctx.domain_name = Some("abc.execute-api.eu-west-1.amazonaws.com".into());
        ctx.stage = Some("prod".into());
        let config = Config::default();
        assert_eq!(
            management_endpoint(&config, &ctx).as_deref(),
            Some("https://abc.execute-api.eu-west-1.amazonaws.com/prod")
        );
        ctx.domain_name = Some("127.0.0.1:3001".into());
        ctx.stage = Some("local".into());
        assert_eq!(management_endpoint(&config, &ctx).as_deref(), Some("http://127.0.0.1:3001/local"));
        let custom = Config { management_endpoint: Some("https://ws.example.com/v1".into()), ..Config::default() };
        assert_eq!(management_endpoint(&custom, &ctx).as_deref(), Some("https://ws.example.com/v1"));
        ctx.domain_name = None;
        assert_eq!(management_endpoint(&config, &ctx), None);
    }
}
