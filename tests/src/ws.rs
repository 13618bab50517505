//! The one WebSocket test client: tokens from a gateway's issuer, handshakes, frames and closes,
//! as the end-to-end suites and the command's tests use them against `lambda-ws dev`.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use lambda_ws_local::Gateway;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The origin the test pages claim (the gateways under test allow it).
pub const ORIGIN: &str = "http://app.localhost:8080";

/// A minimal HTTP/1.1 request to the gateway: (status, JSON body, or null).
pub async fn http(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(gw.addr()).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", gw.addr());
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A connect token for `user` from the gateway's issuer (from [`ORIGIN`]).
pub async fn token(gw: &Gateway, user: &str) -> String {
    let headers = [("x-lambda-ws", "1"), ("x-lambda-ws-user", user), ("origin", ORIGIN)];
    let (status, body) = http(gw, "POST", "/ws-token", &headers, "").await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("a token").to_owned()
}

/// A handshake with `query`; the refusal's status when the gateway refuses it.
pub async fn try_connect(gw: &Gateway, query: &str, origin: Option<&str>) -> Result<Ws, u16> {
    let mut request = format!("{}?{query}", gw.websocket_url()).into_client_request().expect("request");
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse().expect("origin"));
    }
    request.headers_mut().insert("user-agent", "gateway-test/1".parse().expect("user agent"));
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

/// `user` connected into `channel` with a fresh token.
pub async fn connect(gw: &Gateway, user: &str, channel: &str) -> Ws {
    let token = token(gw, user).await;
    try_connect(gw, &format!("ws_token={token}&channel={channel}"), Some(ORIGIN)).await.expect("connected")
}

/// The next JSON text frame, within 5 s (pings and pongs skipped).
pub async fn next_json(ws: &mut Ws) -> Value {
    next_json_within(ws, Duration::from_secs(5)).await
}

/// The next JSON text frame, within `limit` (pings and pongs skipped).
pub async fn next_json_within(ws: &mut Ws, limit: Duration) -> Value {
    loop {
        let frame = tokio::time::timeout(limit, ws.next()).await.expect("a frame in time");
        match frame.expect("socket open").expect("frame") {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The close code the server sends, within 5 s (other frames skipped; 1006 for a dropped socket).
pub async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("close in time");
        match frame {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return 1006,
        }
    }
}

/// Sends `value` as a text frame.
pub async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.expect("send");
}

/// The connection's own id, from a `ping`'s `pong`.
pub async fn connection_id(ws: &mut Ws) -> String {
    send(ws, serde_json::json!({"action":"ping","ref":"id"})).await;
    let pong = next_json(ws).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    pong["connection_id"].as_str().expect("an id").to_owned()
}
