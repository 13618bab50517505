//! Events in the shape API Gateway sends to Lambda proxy integrations of a WebSocket API.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use http::HeaderMap;
use rand::Rng as _;
use serde_json::{Map, Value, json};

/// What every event of one connection shares.
#[derive(Debug, Clone)]
pub struct EventContext {
    /// The connection id.
    pub connection_id: String,
    /// When it connected, Unix milliseconds.
    pub connected_at: i64,
    /// `host:port` of the gateway (API Gateway's `domainName`; here with the port, so endpoints
    /// built from it work). Shared by every connection of the gateway.
    pub domain_name: Arc<str>,
    /// The stage.
    pub stage: Arc<str>,
    /// The API id.
    pub api_id: Arc<str>,
    /// The client's address.
    pub source_ip: String,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
}

/// A random id in API Gateway's style: 15 letters and digits and a trailing `=`.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut id: String = (0..15).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    id.push('=');
    id
}

fn request_time(now_ms: i64) -> String {
    // `23/Nov/2026:15:00:00 +0000`, as API Gateway writes it.
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = now_ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000", MONTHS[(m - 1) as usize], rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// An ISO-8601 UTC timestamp with milliseconds, as the Management API returns them.
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms.rem_euclid(1000))
}

/// A raw query string (`a=1&b=x%20y&a=2`) as API Gateway's multi-value parameters: `+` and
/// `%XX` decoded, invalid escapes kept as written, invalid UTF-8 replaced.
pub fn parse_query(raw: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(percent_decode(k)).or_default().push(percent_decode(v));
    }
    map
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl EventContext {
    fn request_context(&self, route_key: &str, event_type: &str, now_ms: i64) -> Map<String, Value> {
        let request_id = new_id();
        let mut identity = json!({ "sourceIp": self.source_ip });
        if let Some(ua) = &self.user_agent {
            identity["userAgent"] = json!(ua);
        }
        let ctx = json!({
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": request_time(now_ms),
            "messageDirection": "IN",
            "stage": &*self.stage,
            "connectedAt": self.connected_at,
            "requestTimeEpoch": now_ms,
            "identity": identity,
            "requestId": request_id,
            "domainName": &*self.domain_name,
            "connectionId": self.connection_id,
            "apiId": &*self.api_id,
        });
        match ctx {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// The `$connect` event, with the handshake's headers and query string.
    pub fn connect(&self, headers: &HeaderMap, query: &HashMap<String, Vec<String>>, now_ms: i64) -> Value {
        let mut single = Map::new();
        let mut multi: Map<String, Value> = Map::new();
        for (name, value) in headers {
            let Ok(value) = value.to_str() else { continue };
            let name = canonical_header(name.as_str());
            single.insert(name.clone(), json!(value));
            match multi.get_mut(&name) {
                Some(Value::Array(values)) => values.push(json!(value)),
                _ => {
                    multi.insert(name, json!([value]));
                }
            }
        }
        let mut event = json!({
            "headers": single,
            "multiValueHeaders": multi,
            "requestContext": self.request_context("$connect", "CONNECT", now_ms),
            "isBase64Encoded": false,
        });
        if !query.is_empty() {
            let first: Map<String, Value> =
                query.iter().filter_map(|(k, v)| v.last().map(|v| (k.clone(), json!(v)))).collect();
            event["queryStringParameters"] = Value::Object(first);
            event["multiValueQueryStringParameters"] = json!(query);
        }
        event
    }

    /// A MESSAGE event for `route_key` with the frame's text.
    pub fn message(&self, route_key: &str, body: &str, now_ms: i64) -> Value {
        let mut ctx = self.request_context(route_key, "MESSAGE", now_ms);
        ctx.insert("messageId".into(), json!(new_id()));
        json!({ "requestContext": ctx, "body": body, "isBase64Encoded": false })
    }

    /// The `$disconnect` event with the close code and reason.
    pub fn disconnect(&self, status: u16, reason: &str, now_ms: i64) -> Value {
        let mut ctx = self.request_context("$disconnect", "DISCONNECT", now_ms);
        ctx.insert("disconnectStatusCode".into(), json!(status));
        ctx.insert("disconnectReason".into(), json!(reason));
        json!({
            "headers": { "Host": &*self.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": "" },
            "multiValueHeaders": {
                "Host": [&*self.domain_name], "x-api-key": [""], "X-Forwarded-For": [""], "x-restapi": [""]
            },
            "requestContext": ctx,
            "isBase64Encoded": false,
        })
    }
}

/// `sec-websocket-key` → `Sec-WebSocket-Key`, as API Gateway forwards header names.
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| match part {
            "websocket" => "WebSocket".to_owned(),
            "ip" => "IP".to_owned(),
            _ => {
                let mut chars = part.chars();
                chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Parses an event built here into the typed request the handlers take.
pub fn typed(event: &Value) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
    ApiGatewayWebsocketProxyRequest::deserialize(event)
}

use serde::Deserialize as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_api_gateway_ids() {
        let id = new_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
        assert!(lambda_ws::ConnectionId::new(id.clone()).is_ok());
        assert_ne!(id, new_id());
    }

    #[test]
    fn times_are_formatted_like_api_gateway() {
        // 2026-11-23T15:00:00.123Z
        let ms = 1_795_446_000_123;
        assert_eq!(iso8601(ms), "2026-11-23T15:00:00.123Z");
        assert_eq!(request_time(ms), "23/Nov/2026:15:00:00 +0000");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn events_deserialize_into_the_handler_types() {
        let ctx = EventContext {
            connection_id: "abcdefghijklmno=".into(),
            connected_at: 1,
            domain_name: "127.0.0.1:3001".into(),
            stage: "local".into(),
            api_id: "local".into(),
            source_ip: "127.0.0.1".into(),
            user_agent: Some("ua".into()),
        };
        let mut headers = HeaderMap::new();
        headers.insert("sec-websocket-key", "k".parse().unwrap_or_else(|_| http::HeaderValue::from_static("k")));
        headers.insert("origin", http::HeaderValue::from_static("http://x"));
        let query = HashMap::from([("channel".to_owned(), vec!["lobby".to_owned()])]);
        let connect = typed(&ctx.connect(&headers, &query, 5)).map_err(|e| e.to_string());
        let connect = connect.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(connect.request_context.event_type.as_deref(), Some("CONNECT"));
        assert_eq!(connect.query_string_parameters.first("channel"), Some("lobby"));
        assert_eq!(connect.headers.get("origin").and_then(|v| v.to_str().ok()), Some("http://x"));
        assert_eq!(connect.request_context.domain_name.as_deref(), Some("127.0.0.1:3001"));
        let message = typed(&ctx.message("chat", "{}", 6)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(message.request_context.route_key.as_deref(), Some("chat"));
        assert!(message.request_context.message_id.is_some());
        let gone = typed(&ctx.disconnect(1001, "Going away", 7)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gone.request_context.disconnect_status_code, Some(1001));
        assert_eq!(canonical_header("sec-websocket-key"), "Sec-WebSocket-Key");
        assert_eq!(canonical_header("x-forwarded-for"), "X-Forwarded-For");
    }
}
