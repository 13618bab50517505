//! The WebSocket API: the upgrade (`$connect`), each connection's loop, frames to routes, and
//! `$disconnect`.

use super::*;

pub(super) async fn upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    mut headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    headers.remove(GATEWAY_SECRET_HEADER);
    if let Some(secret) = shared.options.gateway_secret.as_deref().and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(GATEWAY_SECRET_HEADER, secret);
    }
    let ctx = EventContext {
        connection_id: new_id(),
        connected_at: now_ms(),
        domain_name: shared.domain.clone(),
        stage: shared.stage.clone(),
        api_id: shared.api_id.clone(),
        source_ip: peer.ip().to_string(),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    let event = ctx.connect(&headers, &parse_query(query.as_deref()), ctx.connected_at);
    let RouteAnswer { status, body, subprotocol } =
        invoke_route(&shared, "$connect", &event).await.unwrap_or_else(|| RouteAnswer::status(200));
    if !(200..300).contains(&status) {
        tracing::info!(status, connection_id = %ctx.connection_id, "$connect refused the upgrade");
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    // Small I/O buffers: tungstenite's 128 KiB defaults would cost 256 KiB per connection once
    // touched. A buffer is a read chunk, not a limit: 32 KiB frames still arrive whole.
    // A `$connect` that answers `Sec-WebSocket-Protocol` completes the handshake with that
    // subprotocol (if the client offered it); otherwise none is chosen, and a client that asked
    // for one fails the connection, as with API Gateway.
    let ws = match subprotocol {
        Some(protocol) => ws.protocols([protocol]),
        None => ws,
    };
    // Postable from the moment `$connect` succeeded, as with API Gateway: a post that comes before
    // the socket task starts waits in the outbox (a 410 then would remove a live session).
    let connection = Arc::new(Connection::new(ctx));
    shared.registry.insert(&connection.ctx.connection_id, connection.clone());
    let failed = (shared.clone(), connection.clone());
    ws.read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(lambda_ws::protocol::MAX_MESSAGE_BYTES)
        .on_failed_upgrade(move |error| {
            // The client went away during the handshake: the connection ends there.
            let (shared, connection) = failed;
            tracing::debug!(connection_id = %connection.ctx.connection_id, %error, "upgrade failed");
            tokio::spawn(async move { end_connection(&shared, &connection, 1006, "").await });
        })
        .on_upgrade(move |socket| run_connection(shared, connection, socket))
}

/// Takes a connection out of the registry and runs `$disconnect` for it.
async fn end_connection(shared: &Shared, connection: &Connection, status: u16, reason: &str) {
    shared.registry.remove(&connection.ctx.connection_id);
    connection.end();
    let event = connection.ctx.disconnect(status, reason, now_ms());
    Box::pin(invoke_route(shared, "$disconnect", &event)).await;
}

/// Runs the handler of `route_key`; `None` when the route does not exist. With a gateway secret,
/// every event carries it (messages and `$disconnect` too), as a front that adds it would.
async fn invoke_route(shared: &Shared, route_key: &str, event: &Value) -> Option<RouteAnswer> {
    let handler = shared.routes.get(route_key)?;
    let app = shared.app_of(shared.routes.binary(route_key));
    let mut signed;
    let event = match shared.options.gateway_secret.as_deref() {
        Some(secret) => {
            signed = event.clone();
            if !signed["headers"].is_object() {
                signed["headers"] = json!({});
            }
            signed["headers"][GATEWAY_SECRET_HEADER] = json!(secret);
            &signed
        }
        None => event,
    };
    let typed = match events::typed(event) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "event does not deserialize");
            return Some(RouteAnswer::status(500));
        }
    };
    let response = match handler {
        Handler::Connect => handlers::connect(app, &typed).await,
        Handler::Disconnect => handlers::disconnect(app, &typed).await,
        Handler::Messages(router) => handlers::message(app, router, &typed).await,
        Handler::Invoke(function) => return Some(invoke_function(shared, function, event).await),
    };
    let body = match response.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t,
        _ => String::new(),
    };
    let subprotocol =
        response.headers.get(header::SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Some(RouteAnswer { status: u16::try_from(response.status_code).unwrap_or(500), body, subprotocol })
}

/// What a route's integration answered: status, body and, from `$connect`, the
/// `Sec-WebSocket-Protocol` header that completes the handshake with a subprotocol.
#[derive(Debug)]
struct RouteAnswer {
    status: u16,
    body: String,
    subprotocol: Option<String>,
}

impl RouteAnswer {
    fn status(status: u16) -> Self {
        Self { status, body: String::new(), subprotocol: None }
    }
}

/// Invokes a route's function through the Lambda Invoke API, as API Gateway's Lambda proxy
/// integration does; a failed invocation answers 500 (502 for an unreachable endpoint).
async fn invoke_function(shared: &Shared, function: &str, event: &Value) -> RouteAnswer {
    let Some(lambda) = &shared.lambda else {
        tracing::error!(function, "route invokes a function but no --invoke-endpoint is set");
        return RouteAnswer::status(500);
    };
    let result = lambda
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
        .send()
        .await;
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            let text = aws_sdk_lambda::error::DisplayErrorContext(&e).to_string();
            tracing::error!(function, error = %text, "invoke failed");
            return RouteAnswer::status(502);
        }
    };
    if let Some(kind) = out.function_error() {
        tracing::error!(function, kind, "function failed");
        return RouteAnswer::status(500);
    }
    let answer: Value = out.payload().and_then(|p| serde_json::from_slice(p.as_ref()).ok()).unwrap_or(Value::Null);
    let status = answer.get("statusCode").and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok()).unwrap_or(200);
    let body = answer.get("body").and_then(Value::as_str).unwrap_or_default().to_owned();
    let headers = answer.get("headers").and_then(Value::as_object);
    let subprotocol = headers
        .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol")))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_owned);
    RouteAnswer { status, body, subprotocol }
}

/// How many frames of one connection may run their routes at once.
pub(crate) const MAX_FRAMES_IN_FLIGHT: usize = 32;

/// Serves one open WebSocket until it closes, then runs `$disconnect`.
///
/// This future lives as long as the connection, so it is kept small: one socket (not a split
/// pair), one timer for the nearer of the idle and lifetime deadlines, and the `$disconnect`
/// invocation boxed so its (large) state is only allocated when the connection ends.
async fn run_connection(shared: Arc<Shared>, connection: Arc<Connection>, mut socket: WebSocket) {
    let ctx = &connection.ctx;
    let ends_at = Instant::now() + shared.options.max_lifetime;
    let mut idle_deadline = Instant::now() + shared.options.idle_timeout;
    // Each frame runs its route in a task of its own; at most MAX_FRAMES_IN_FLIGHT of one
    // connection at a time. The socket is read only holding a permit for the next frame, so a
    // client sending faster than its routes finish waits in its own TCP window, not in memory.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_FRAMES_IN_FLIGHT));
    let mut permit: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let (status, reason): (u16, String) = loop {
        // tokio::select! drops the branch futures before a handler runs, so handlers may use the
        // socket the `recv` future borrowed.
        tokio::select! {
            acquired = in_flight.clone().acquire_owned(), if permit.is_none() => {
                permit = acquired.ok();
            }
            frame = socket.recv(), if permit.is_some() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Ok(Message::Binary(_))) => {
                        // API Gateway rejects binary frames and disconnects the client with 1003.
                        break Box::pin(close(&mut socket, 1003, "Binary frames are not supported", "Binary frames are not supported")).await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        idle_deadline = Instant::now() + shared.options.idle_timeout;
                        continue;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        // Answer the close (RFC 6455 §5.5.1) so the client sees its own code, not
                        // 1006; `$disconnect` reports the client's code and reason (1005: none).
                        let ended = frame.as_ref().map_or((1005, String::new()), |f| (f.code, f.reason.to_string()));
                        let _ = tokio::time::timeout(Duration::from_secs(1), futures::SinkExt::close(&mut socket)).await;
                        break ended;
                    }
                    Some(Err(e)) => break Box::pin(socket_error(&mut socket, &ctx.connection_id, e)).await,
                    None => break (1006, String::new()),
                };
                idle_deadline = Instant::now() + shared.options.idle_timeout;
                connection.last_active_at.store(now_ms(), Ordering::Relaxed);
                let held = permit.take();
                let (shared, connection) = (shared.clone(), connection.clone());
                tokio::spawn(async move {
                    handle_frame(shared, connection, text).await;
                    drop(held);
                });
            }
            out = connection.next() => match out {
                Outgoing::Text(payload) => {
                    // Management API posts of non-UTF-8 data arrive as binary frames.
                    let message = match Utf8Bytes::try_from(payload.clone()) {
                        Ok(text) => Message::Text(text),
                        Err(_) => Message::Binary(payload),
                    };
                    // A client that stops reading must not hold this loop (and its timers): a
                    // write that cannot finish in time ends the connection.
                    match tokio::time::timeout(shared.options.write_timeout, socket.send(message)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break (1006, String::new()),
                        Err(_) => break (1006, "Client is not reading".to_owned()),
                    }
                }
                Outgoing::Close(code, why) => break Box::pin(close(&mut socket, code, why, why)).await,
            },
            () = tokio::time::sleep_until(idle_deadline.min(ends_at)) => {
                let why = if idle_deadline <= ends_at { "Idle timeout" } else { "Connection lifetime reached" };
                break Box::pin(close(&mut socket, 1001, "Going away", why)).await;
            }
        }
    };
    drop(socket);
    end_connection(&shared, &connection, status, &reason).await;
}

/// Sends a close frame (giving up after a second if the client is not reading); returns the
/// status and reason `$disconnect` reports.
async fn close(socket: &mut WebSocket, code: u16, frame_reason: &'static str, reason: &str) -> (u16, String) {
    let frame = Message::Close(Some(CloseFrame { code, reason: frame_reason.into() }));
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(frame)).await;
    (code, reason.to_owned())
}

/// A read error: an oversize frame or message closes with 1009, as API Gateway does.
async fn socket_error(socket: &mut WebSocket, id: &str, error: axum::Error) -> (u16, String) {
    let text = error.to_string();
    if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
        return close(socket, 1009, "Message too big", "Message too big").await;
    }
    tracing::debug!(connection_id = %id, error = %text, "socket error");
    (1006, String::new())
}

async fn handle_frame(shared: Arc<Shared>, connection: Arc<Connection>, text: String) {
    let ctx = &connection.ctx;
    let Some((route_key, _)) = shared.routes.select(&text) else {
        let frame = json!({ "message": "Forbidden", "connectionId": ctx.connection_id, "requestId": new_id() });
        let _ = shared.registry.post(&ctx.connection_id, Bytes::from(frame.to_string()));
        return;
    };
    let event = ctx.message(route_key, &text, now_ms());
    let answer = invoke_route(&shared, route_key, &event).await;
    // A route response sends the handler's body back (API Gateway sends nothing for an empty one).
    if let Some(RouteAnswer { body, .. }) = answer.filter(|a| !a.body.is_empty())
        && shared.routes.answers_with_response(route_key)
    {
        let _ = shared.registry.post(&ctx.connection_id, Bytes::from(body));
    }
}
