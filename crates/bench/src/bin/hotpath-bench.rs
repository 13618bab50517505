//! Hot-path benchmark: `$connect`, one message through a route, `$disconnect` and a channel send,
//! with a fixed latency added to every DynamoDB call, for two builds in one run.
//!
//! ```sh
//! scripts/bench-hotpaths.sh                 # builds this tree and a baseline, starts the engine, runs this
//! hotpath-bench --dynamodb-endpoint http://127.0.0.1:8000 --latency-ms 10 \
//!               --build "baseline=/path/to/baseline/bin" --build "this build=target/release"
//! ```
//!
//! Each build is measured as a black box, through the programs a user runs: its `lambda-ws dev`
//! gateway keeps sessions in the DynamoDB engine, and its `fanout-bench` sends to a channel. Both
//! talk to the engine through a proxy in this process, which makes every call take
//! `--latency-ms` in all (a store across a network: it waits out what the engine did not use), asks every call for its consumed capacity
//! (`ReturnConsumedCapacity: TOTAL`) and records when each call started and ended. A measured
//! operation is the calls made between its start and its end:
//!
//! - *round trips* are the sequential ones: a call that starts while another is in flight
//!   overlaps it and does not count again;
//! - *capacity* is what the engine reports, plus one write unit for each conditional write it
//!   refused (DynamoDB charges those; the engine reports nothing for them). Index writes are not
//!   reported by the engine and are not included.
//!
//! Operations, each `--iterations` times per build, one at a time: `$connect` with a fresh token
//! into a channel (the WebSocket handshake), a `ping` (sent until its `pong` arrives), and
//! `$disconnect` (the client closes; measured until the store is quiet). Then one send to a
//! channel of `--recipients` members (seeded by the build's own `fanout-bench seed`, straight to
//! the engine), through the proxy, to a Management API server answering after `--latency-ms`.
//!
//! With `--presence`, the last build is measured once more with the channel given presence
//! (`LWS_PRESENCE`) and another user's connection resident in it, so every `$connect` is a first
//! join announced to that member and every `$disconnect` a last leave. Then, for every build,
//! one `presence` answer in a channel of 10 and of 2,000 users (seeded straight into the engine
//! through this tree's store, one connection each, plus the asking connection): what it reads,
//! whatever the channel's size (a build without presence is left out).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::{SinkExt as _, StreamExt as _, TryStreamExt as _};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

type Error = Box<dyn std::error::Error + Send + Sync>;

const ORIGIN: &str = "http://bench.localhost";
const CHANNEL: &str = "bench";
/// How long the store must be quiet before a `$disconnect` counts as finished.
const QUIET: Duration = Duration::from_millis(300);
/// Operations whose requests take `ReturnConsumedCapacity`.
const WITH_CAPACITY: [&str; 10] = [
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactGetItems",
    "TransactWriteItems",
];
const READS: [&str; 5] = ["GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"];

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn flags(args: &[String], name: &str) -> Vec<String> {
    args.windows(2).filter(|w| w[0] == name).map(|w| w[1].clone()).collect()
}

// ---- the latency and capacity proxy ------------------------------------------------------------

/// One store call as the proxy saw it.
#[derive(Debug, Clone)]
struct Call {
    op: String,
    started: Instant,
    ended: Instant,
    read_units: f64,
    write_units: f64,
}

#[derive(Debug)]
struct Proxy {
    upstream: String,
    latency: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
    calls: Mutex<Vec<Call>>,
    in_flight: Mutex<usize>,
}

impl Proxy {
    fn calls_since(&self, from: Instant) -> Vec<Call> {
        self.calls.lock().map(|c| c.iter().filter(|c| c.started >= from).cloned().collect()).unwrap_or_default()
    }

    fn busy(&self) -> bool {
        self.in_flight.lock().map(|n| *n > 0).unwrap_or(false)
    }

    fn last_activity(&self) -> Option<Instant> {
        self.calls.lock().ok()?.iter().map(|c| c.ended).max()
    }

    /// Waits until no call is in flight and none started for [`QUIET`]; returns when the last ended.
    async fn quiet_after(&self, from: Instant) -> Instant {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let last = self.last_activity().filter(|t| *t >= from).unwrap_or(from);
            if !self.busy() && last.elapsed() >= QUIET {
                return last;
            }
        }
    }
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    match try_forward(&proxy, request).await {
        Ok(response) => response,
        Err(e) => {
            let mut response = Response::new(Body::from(format!("proxy: {e}")));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

async fn try_forward(proxy: &Proxy, request: Request) -> Result<Response, Error> {
    let (parts, body) = request.into_parts();
    let op = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("?")
        .to_owned();
    let mut body = body.collect().await?.to_bytes();
    if WITH_CAPACITY.contains(&op.as_str())
        && let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&body)
    {
        fields.insert("ReturnConsumedCapacity".into(), json!("TOTAL"));
        body = Bytes::from(serde_json::to_vec(&fields)?);
    }
    // Counted in flight until this call ends, also when its caller goes away mid-call (a gateway
    // stopped while a store call was out): then the future is dropped, and the guard with it.
    let in_flight = InFlight::enter(proxy);
    let started = Instant::now();
    let mut upstream = hyper::Request::builder().method(parts.method).uri(&proxy.upstream);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = proxy.client.request(upstream.body(Full::new(body))?).await;
    // Every call takes the configured time in all, the engine's own included (as long as the
    // engine is faster), so N sequential calls take N times it.
    wait_until(started + proxy.latency).await;
    let ended = Instant::now();
    drop(in_flight);
    let (parts, body) = answer?.into_parts();
    let body = body.collect().await?.to_bytes();
    let units = consumed(&body, parts.status.as_u16());
    let (read_units, write_units) = if READS.contains(&op.as_str()) { (units, 0.0) } else { (0.0, units) };
    if let Ok(mut calls) = proxy.calls.lock() {
        calls.push(Call { op, started, ended, read_units, write_units });
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// One call in flight through the proxy, for as long as it lives.
struct InFlight<'a>(&'a Proxy);

impl<'a> InFlight<'a> {
    fn enter(proxy: &'a Proxy) -> Self {
        if let Ok(mut n) = proxy.in_flight.lock() {
            *n += 1;
        }
        Self(proxy)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut n) = self.0.in_flight.lock() {
            *n = n.saturating_sub(1);
        }
    }
}

/// Waits until `deadline`, to a fraction of a millisecond: the timer's 1 ms ticks would add up
/// to a millisecond to every call, so the last stretch yields instead of sleeping.
async fn wait_until(deadline: Instant) {
    let coarse = deadline.checked_sub(Duration::from_micros(1500));
    if let Some(coarse) = coarse.filter(|c| *c > Instant::now()) {
        tokio::time::sleep_until(coarse.into()).await;
    }
    while Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}

/// Capacity units in an answer: `ConsumedCapacity` (an object, or a list for batches), or one
/// unit for a refused conditional write.
fn consumed(body: &[u8], status: u16) -> f64 {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else { return 0.0 };
    if status == 400 && answer["__type"].as_str().is_some_and(|t| t.ends_with("ConditionalCheckFailedException")) {
        return 1.0;
    }
    let units = |v: &Value| v["CapacityUnits"].as_f64().unwrap_or(0.0);
    match &answer["ConsumedCapacity"] {
        Value::Array(list) => list.iter().map(units).sum(),
        one @ Value::Object(_) => units(one),
        _ => 0.0,
    }
}

async fn start_proxy(upstream: String, latency: Duration) -> Result<(Arc<Proxy>, SocketAddr), Error> {
    let proxy = Arc::new(Proxy {
        upstream,
        latency,
        client: Client::builder(TokioExecutor::new()).build_http(),
        calls: Mutex::new(Vec::new()),
        in_flight: Mutex::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().fallback(forward).with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((proxy, addr))
}

// ---- what one operation cost ---------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Cost {
    wall_ms: f64,
    /// Of the wall time, how long a store call was in flight.
    store_ms: f64,
    /// The calls in order: `A ‖ B` overlapped, `A → B` one after the other.
    sequence: String,
    round_trips: usize,
    calls: usize,
    read_units: f64,
    write_units: f64,
}

/// The calls in `[from, to]`: sequential round trips (a call starting after every earlier one
/// ended), and their capacity.
fn cost(calls: &[Call], from: Instant, to: Instant, wall: Duration) -> Cost {
    let mut window: Vec<&Call> = calls.iter().filter(|c| c.started >= from && c.started <= to).collect();
    window.sort_by_key(|c| c.started);
    let mut round_trips = 0;
    let mut busy_until: Option<Instant> = None;
    for call in &window {
        if busy_until.is_none_or(|t| call.started >= t) {
            round_trips += 1;
        }
        busy_until = Some(busy_until.map_or(call.ended, |t| t.max(call.ended)));
    }
    Cost {
        wall_ms: wall.as_secs_f64() * 1000.0,
        store_ms: in_store_ms(&window),
        sequence: sequence(&window),
        round_trips,
        calls: window.len(),
        read_units: window.iter().map(|c| c.read_units).sum(),
        write_units: window.iter().map(|c| c.write_units).sum(),
    }
}

/// `UpdateItem ‖ DeleteItem → PutItem`: calls that overlap joined by `‖`, rounds by `→`.
fn sequence(window: &[&Call]) -> String {
    let mut rounds: Vec<Vec<&str>> = Vec::new();
    let mut busy_until: Option<Instant> = None;
    for call in window {
        match rounds.last_mut() {
            Some(round) if busy_until.is_some_and(|t| call.started < t) => round.push(&call.op),
            _ => rounds.push(vec![&call.op]),
        }
        busy_until = Some(busy_until.map_or(call.ended, |t| t.max(call.ended)));
    }
    let rounds: Vec<String> = rounds
        .iter()
        .map(|ops| {
            let mut counted: Vec<(&str, usize)> = Vec::new();
            for op in ops {
                match counted.iter_mut().find(|(o, _)| o == op) {
                    Some((_, n)) => *n += 1,
                    None => counted.push((op, 1)),
                }
            }
            let parts: Vec<String> =
                counted.iter().map(|(op, n)| if *n > 1 { format!("{op} ×{n}") } else { (*op).to_owned() }).collect();
            parts.join(" ‖ ")
        })
        .collect();
    // Runs of the same round: `Query (×21, one after another)`.
    let mut runs: Vec<(String, usize)> = Vec::new();
    for round in rounds {
        match runs.last_mut() {
            Some((last, n)) if *last == round => *n += 1,
            _ => runs.push((round, 1)),
        }
    }
    let parts: Vec<String> = runs
        .into_iter()
        .map(|(round, n)| if n > 1 { format!("{round} (×{n}, one after another)") } else { round })
        .collect();
    if parts.is_empty() { "none".to_owned() } else { parts.join(" → ") }
}

/// How long at least one call was in flight, in milliseconds.
fn in_store_ms(window: &[&Call]) -> f64 {
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for call in window {
        current = match current {
            Some((start, end)) if call.started <= end => Some((start, end.max(call.ended))),
            Some((start, end)) => {
                total += end - start;
                Some((call.started, call.ended))
            }
            None => Some((call.started, call.ended)),
        };
    }
    if let Some((start, end)) = current {
        total += end - start;
    }
    total.as_secs_f64() * 1000.0
}

/// Median wall time and round trips; mean capacity (per operation).
fn summary(costs: &[Cost]) -> Cost {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let n = costs.len().max(1) as f64;
    Cost {
        wall_ms: median(costs.iter().map(|c| c.wall_ms).collect()),
        store_ms: median(costs.iter().map(|c| c.store_ms).collect()),
        sequence: costs.last().map(|c| c.sequence.clone()).unwrap_or_default(),
        round_trips: median(costs.iter().map(|c| c.round_trips as f64).collect()) as usize,
        calls: median(costs.iter().map(|c| c.calls as f64).collect()) as usize,
        read_units: costs.iter().map(|c| c.read_units).sum::<f64>() / n,
        write_units: costs.iter().map(|c| c.write_units).sum::<f64>() / n,
    }
}

// ---- driving one build -----------------------------------------------------------------------

struct Gateway {
    _process: Child,
    addr: SocketAddr,
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start_gateway(bin: &Path, dynamodb: SocketAddr, table: &str, env: &[(&str, &str)]) -> Result<Gateway, Error> {
    let port = free_port()?;
    let mut process = Command::new(bin.join("lambda-ws"))
        .args(["dev", "--port", &port.to_string(), "--enforce-ip-limits", "--table", table])
        .args(["--dynamodb-endpoint", &format!("http://{dynamodb}"), "--template", "no-template.yaml"])
        // Every limit on, as deployed, and high enough that the benchmark never reaches one.
        .env("LWS_ALLOWED_ORIGINS", ORIGIN)
        .env("LWS_RATE_CONNECT_PER_IP", "1000000")
        .env("LWS_RATE_CONNECT_PER_USER", "1000000")
        .env("LWS_RATE_TOKENS_PER_USER", "1000000")
        .env("LWS_RATE_MESSAGES_PER_CONNECTION", "1000000")
        .env("LWS_MAX_CONNECTIONS_PER_USER", "100")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = process.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if line.contains("is running") {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(Gateway { _process: process, addr: SocketAddr::from(([127, 0, 0, 1], port)) });
        }
    }
    Err(format!("{} dev exited before it was running", bin.display()).into())
}

async fn issue_token(addr: SocketAddr, user: &str) -> Result<String, Error> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "POST /ws-token HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nOrigin: {ORIGIN}\r\nx-lambda-ws: 1\r\n\
         x-lambda-ws-user: {user}\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let answer: Value = serde_json::from_str(body).map_err(|e| format!("token answer {raw:?}: {e}"))?;
    Ok(answer["token"].as_str().ok_or_else(|| format!("no token in {answer}"))?.to_owned())
}

/// Picks one operation's figures out of a build's results.
type Pick = fn(&Measured) -> Cost;

#[derive(Debug, Default)]
struct Measured {
    connect: Vec<Cost>,
    message: Vec<Cost>,
    disconnect: Vec<Cost>,
    send: Option<Cost>,
}

/// Opens a connection for `user` into the benchmark's channel.
async fn open(
    proxy: &Proxy,
    gateway: &Gateway,
    user: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>, Error> {
    let token = issue_token(gateway.addr, user).await?;
    let _ = proxy.quiet_after(Instant::now()).await;
    let url = format!("ws://{}/local", gateway.addr);
    let mut request = format!("{url}?ws_token={token}&channel={CHANNEL}").into_client_request()?;
    request.headers_mut().insert("origin", ORIGIN.parse()?);
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

async fn measure_sessions(
    proxy: &Proxy,
    gateway: &Gateway,
    iterations: usize,
    resident: bool,
) -> Result<Measured, Error> {
    let mut measured = Measured::default();
    let url = format!("ws://{}/local", gateway.addr);
    // Another user's connection in the channel, reading what it is sent (presence events).
    let _resident = if resident {
        let mut ws = open(proxy, gateway, "bench-resident").await?;
        Some(tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} }))
    } else {
        None
    };
    for i in 0..iterations + 1 {
        let token = issue_token(gateway.addr, "bench-user").await?;
        // Let the token's write leave the window.
        let _ = proxy.quiet_after(Instant::now()).await;
        let mut request = format!("{url}?ws_token={token}&channel={CHANNEL}").into_client_request()?;
        request.headers_mut().insert("origin", ORIGIN.parse()?);
        let from = Instant::now();
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
        let connected = from.elapsed();
        let to = Instant::now();
        let connect = cost(&proxy.calls_since(from), from, to, connected);

        let from = Instant::now();
        ws.send(Message::text(r#"{"action":"ping"}"#)).await?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await?.ok_or("socket ended")??;
            if let Message::Text(text) = frame
                && serde_json::from_str::<Value>(&text)?["type"] == "pong"
            {
                break;
            }
        }
        let answered = from.elapsed();
        let to = Instant::now();
        let message = cost(&proxy.calls_since(from), from, to, answered);

        let from = Instant::now();
        ws.close(None).await?;
        let last = proxy.quiet_after(from).await;
        let disconnect = cost(&proxy.calls_since(from), from, last, last.saturating_duration_since(from));
        // The first round warms the gateway and the user's slot item; it is not counted.
        if i > 0 {
            measured.connect.push(connect);
            measured.message.push(message);
            measured.disconnect.push(disconnect);
        }
    }
    Ok(measured)
}

async fn run_tool(bin: &Path, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(bin.join("fanout-bench")).args(args).stderr(Stdio::inherit()).output().await?;
    if !out.status.success() {
        return Err(format!("fanout-bench {args:?} failed").into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn measure_send(
    proxy: &Proxy,
    bin: &Path,
    engine: &str,
    proxy_addr: SocketAddr,
    mgmt: &str,
    table: &str,
    recipients: usize,
) -> Result<Cost, Error> {
    let n = recipients.to_string();
    run_tool(bin, &["seed", "--n", &n, "--mgmt", mgmt, "--table", table, "--dynamodb-endpoint", engine]).await?;
    let proxied = format!("http://{proxy_addr}");
    let from = Instant::now();
    let out =
        run_tool(bin, &["run", "--n", &n, "--mgmt", mgmt, "--table", table, "--dynamodb-endpoint", &proxied]).await?;
    let to = Instant::now();
    let report: Value = serde_json::from_str(out.trim())?;
    if report["delivered"].as_u64() != Some(recipients as u64) {
        return Err(format!("the send delivered {} of {recipients}", report["delivered"]).into());
    }
    let wall = Duration::from_secs_f64(report["wall_ms"].as_f64().unwrap_or(0.0) / 1000.0);
    Ok(cost(&proxy.calls_since(from), from, to, wall))
}

// ---- one presence answer ---------------------------------------------------------------------

/// Users in the channel for the presence rows, the asking connection's among them.
const PRESENCE_SIZES: [usize; 2] = [10, 2_000];

/// Enters users `from..to` into the benchmark channel's presence, straight into the engine.
async fn seed_presence(engine: &str, table: &str, from: usize, to: usize) -> Result<(), Error> {
    use lambda_ws::presence::{Presence, PresenceStore as _};
    let aws = lambda_ws_local::local_aws_config();
    let conf = aws_sdk_dynamodb::config::Builder::from(&aws).endpoint_url(engine).build();
    let store = lambda_ws::DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(conf), table);
    let channel = lambda_ws::ChannelName::new(CHANNEL)?;
    let until = lambda_ws::clock::unix_now_secs() + 3600;
    let info = std::collections::BTreeMap::new();
    futures::stream::iter(from..to)
        .map(|i| {
            let (store, channel, info) = (&store, &channel, &info);
            async move {
                let session = lambda_ws::Session {
                    connection_id: lambda_ws::ConnectionId::new(format!("pres{i:07}AAAAAAA="))?,
                    identity: Some(lambda_ws::Identity::user(format!("member-{i:05}"))),
                    api_id: "bench".into(),
                    stage: "bench".into(),
                    endpoint: "http://127.0.0.1:1/bench".into(),
                    source_ip: "127.0.0.1".into(),
                    user_agent: None,
                    connected_at: 0,
                    last_seen: 0,
                    expires_at: until,
                    metadata: std::collections::BTreeMap::new(),
                    bound_channel: None,
                };
                store.enter(channel, Presence { session: &session, info, expires_at: until }, 0).await?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
}

/// One `presence` answer's cost at each of [`PRESENCE_SIZES`] users, the mean of `iterations`
/// asks; `None` for a build whose gateway has no `presence` action.
async fn measure_presence_answers(
    proxy: &Proxy,
    bin: &Path,
    engine: &str,
    proxy_addr: SocketAddr,
    table: &str,
    iterations: usize,
) -> Result<Option<Vec<Cost>>, Error> {
    let gateway = start_gateway(bin, proxy_addr, table, &[("LWS_PRESENCE", CHANNEL)]).await?;
    let mut ws = open(proxy, &gateway, "bench-asker").await?;
    let mut seeded = 1; // the asker
    let mut costs = Vec::new();
    for size in PRESENCE_SIZES {
        seed_presence(engine, table, seeded, size).await?;
        seeded = size;
        let mut asks = Vec::new();
        for _ in 0..iterations.max(1) {
            let _ = proxy.quiet_after(Instant::now()).await;
            let from = Instant::now();
            ws.send(Message::text(format!(r#"{{"action":"presence","channel":"{CHANNEL}","ref":"p"}}"#))).await?;
            let answer = loop {
                let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await?.ok_or("socket ended")??;
                if let Message::Text(text) = frame {
                    let value: Value = serde_json::from_str(&text)?;
                    if value["ref"] == "p" {
                        break value;
                    }
                }
            };
            let answered = from.elapsed();
            // `reply {data: {channel, users, ...}}`; a build without presence answers an error.
            if answer["type"] != "reply" {
                return Ok(None);
            }
            if answer["data"]["users"].as_u64() != Some(size as u64) {
                return Err(format!("presence answered {} users of {size}", answer["data"]["users"]).into());
            }
            asks.push(cost(&proxy.calls_since(from), from, Instant::now(), answered));
        }
        costs.push(summary(&asks));
    }
    Ok(Some(costs))
}

async fn start_management(bin: &Path, latency_ms: u64) -> Result<(Child, String), Error> {
    let mut process = Command::new(bin.join("fanout-bench"))
        .args(["serve", "--latency-ms", &latency_ms.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = process.stdout.take().ok_or("no stdout")?;
    let line = BufReader::new(stdout).lines().next_line().await?.ok_or("no address")?;
    Ok((process, format!("http://{}/bench", line.trim())))
}

// ---- the report ---------------------------------------------------------------------------------

/// DynamoDB on-demand prices (us-east-1, per million request units).
const PRICE_PER_MILLION_WRITES: f64 = 0.625;
const PRICE_PER_MILLION_READS: f64 = 0.125;

fn dollars_per_million(c: &Cost) -> f64 {
    c.write_units * PRICE_PER_MILLION_WRITES + c.read_units * PRICE_PER_MILLION_READS
}

/// One row of the report's table: operation, build and the cost.
fn table_row(op: &str, name: &str, c: &Cost) -> String {
    format!(
        "| {op} | {name} | {:.1} ms | {:.1} ms | {} | {} | {:.1} | {:.1} | {:.2} | {} |",
        c.wall_ms,
        c.store_ms,
        c.round_trips,
        c.calls,
        c.read_units,
        c.write_units,
        dollars_per_million(c),
        c.sequence,
    )
}

/// One operation of build `name` (`n`) over build `base` (`b`): wall, round trips, capacity.
fn ratio(label: &str, name: &str, base: &str, n: &Cost, b: &Cost) -> String {
    let units = |c: &Cost| c.read_units + c.write_units;
    format!(
        "{label}: {name} / {base}: wall {:.2}, round trips {} -> {}, capacity {:.2}",
        n.wall_ms / b.wall_ms,
        b.round_trips,
        n.round_trips,
        units(n) / units(b),
    )
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let engine = flag(&args, "--dynamodb-endpoint").ok_or("--dynamodb-endpoint is required")?;
    let latency_ms: u64 = flag(&args, "--latency-ms").and_then(|v| v.parse().ok()).unwrap_or(10);
    let iterations: usize = flag(&args, "--iterations").and_then(|v| v.parse().ok()).unwrap_or(30);
    let recipients: usize = flag(&args, "--recipients").and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let builds: Vec<(String, PathBuf)> = flags(&args, "--build")
        .iter()
        .filter_map(|b| b.split_once('=').map(|(name, dir)| (name.to_owned(), PathBuf::from(dir))))
        .collect();
    if builds.is_empty() {
        return Err("give at least one --build name=directory (holding lambda-ws and fanout-bench)".into());
    }
    let (proxy, proxy_addr) = start_proxy(engine.clone(), Duration::from_millis(latency_ms)).await?;
    let (_mgmt_process, mgmt) = start_management(&builds[0].1, latency_ms).await?;
    println!(
        "hot-path benchmark: {latency_ms} ms added to every store call, {iterations} rounds per build, \
         a {recipients}-member channel send"
    );
    let run = std::process::id();
    let mut results = Vec::new();
    for (index, (name, bin)) in builds.iter().enumerate() {
        let table = format!("hotpath-{run}-{index}");
        let gateway = start_gateway(bin, proxy_addr, &table, &[]).await?;
        let mut measured = measure_sessions(&proxy, &gateway, iterations, false).await?;
        drop(gateway);
        let table = format!("hotpath-send-{run}-{index}");
        measured.send = Some(measure_send(&proxy, bin, &engine, proxy_addr, &mgmt, &table, recipients).await?);
        println!("  measured {name}");
        results.push((name.clone(), measured));
    }
    let plain = results.len();
    if args.iter().any(|a| a == "--presence")
        && let Some((name, bin)) = builds.last()
    {
        let table = format!("hotpath-presence-{run}");
        let gateway = start_gateway(bin, proxy_addr, &table, &[("LWS_PRESENCE", CHANNEL)]).await?;
        let measured = measure_sessions(&proxy, &gateway, iterations, true).await?;
        println!("  measured {name} with presence");
        results.push((format!("{name}, channel with presence"), measured));
    }
    let mut answers: Vec<(String, Vec<Cost>)> = Vec::new();
    if args.iter().any(|a| a == "--presence") {
        for (index, (name, bin)) in builds.iter().enumerate() {
            let table = format!("hotpath-answer-{run}-{index}");
            match measure_presence_answers(&proxy, bin, &engine, proxy_addr, &table, iterations.min(10)).await? {
                Some(costs) => answers.push((name.clone(), costs)),
                None => println!("  {name} has no presence action: left out of the presence rows"),
            }
        }
    }
    println!();
    println!(
        "| operation | build | wall (median) | of which in the store | sequential store round trips | store calls | \
         read units | write units | $ per million | the calls |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let ops: [(&str, Pick); 4] = [
        ("`$connect`", |m| summary(&m.connect)),
        ("message (`ping`)", |m| summary(&m.message)),
        ("`$disconnect`", |m| summary(&m.disconnect)),
        ("channel send", |m| m.send.clone().unwrap_or_default()),
    ];
    for (label, pick) in ops {
        for (name, measured) in &results {
            if label == "channel send" && measured.send.is_none() {
                continue;
            }
            let op = if label == "channel send" { format!("send to {recipients} members") } else { label.to_owned() };
            println!("{}", table_row(&op, name, &pick(measured)));
        }
    }
    for (name, costs) in &answers {
        for (size, c) in PRESENCE_SIZES.iter().zip(costs) {
            println!("{}", table_row(&format!("one `presence`, {size} users"), name, c));
        }
    }
    if let (Some((with, presence)), Some((without, plain_build))) = (results.get(plain), results.get(plain - 1)) {
        println!();
        for (label, pick) in &ops[..3] {
            println!("{}", ratio(label, with, without, &pick(presence), &pick(plain_build)));
        }
    }
    for (name, costs) in &answers {
        if let [small, large] = &costs[..] {
            println!();
            println!(
                "one `presence`, {name}: {} users / {} users: read units {:.2}, wall {:.2}",
                PRESENCE_SIZES[1],
                PRESENCE_SIZES[0],
                large.read_units / small.read_units,
                large.wall_ms / small.wall_ms
            );
        }
    }
    if let [(first, base), rest @ ..] = &results[..plain] {
        for (name, measured) in rest {
            println!();
            for (label, pick) in ops {
                println!("{}", ratio(label, name, first, &pick(measured), &pick(base)));
            }
        }
    }
    Ok(())
}
