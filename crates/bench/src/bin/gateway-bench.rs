//! Benchmark of the local gateway, client and server in separate processes.
//!
//! ```sh
//! scripts/bench-gateway.sh            # builds with the bench profile, raises ulimit -n, runs this
//! ```
//!
//! Measures `lambda-ws dev` and, as a baseline in the same run, a bare WebSocket echo server
//! (`gateway-bench raw-echo`, axum with no events, handlers or store): start-up time, RSS with
//! N idle connections, echo throughput and latency with C closed-loop clients, and the time N
//! simultaneous closes take until every `$disconnect` has removed its session.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    idle: usize,
    clients: usize,
    seconds: u64,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("hold") {
        // `gateway-bench hold ws://… N SECONDS`: open N idle connections to a running server and
        // keep them for SECONDS (for memory profilers attached to that server).
        let url = args.get(2).cloned().ok_or("hold needs a URL")?;
        let n: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(1000);
        let secs: u64 = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(5);
        let sockets: Vec<_> = stream::iter(0..n)
            .map(|_| tokio_tungstenite::connect_async(url.clone()))
            .buffer_unordered(100)
            .filter_map(|r| async move { r.ok() })
            .collect()
            .await;
        println!("holding {} connections for {secs} s", sockets.len());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        return Ok(());
    }
    if args.get(1).map(String::as_str) == Some("raw-echo") {
        let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(0);
        return raw_echo(port).await;
    }
    let get = |flag: &str, default: u64| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let options = Options {
        idle: get("--idle", 10_000) as usize,
        clients: get("--clients", 50) as usize,
        seconds: get("--seconds", 5),
    };
    let dir = std::env::current_exe()?.parent().map(PathBuf::from).ok_or("no executable directory")?;
    println!(
        "gateway benchmark: {} idle connections, {} echo clients for {} s, {} cores",
        options.idle,
        options.clients,
        options.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let gateway = measure(&dir, Server::Gateway, &options).await?;
    let raw = measure(&dir, Server::RawEcho, &options).await?;
    println!();
    println!("| measure | lambda-ws dev | bare echo server (baseline) | ratio |");
    println!("|---|---|---|---|");
    let row = |name: &str, a: f64, b: f64, unit: &str| {
        println!("| {name} | {a:.1} {unit} | {b:.1} {unit} | {:.2}× |", a / b.max(f64::MIN_POSITIVE));
    };
    row("start-up (median of 5)", gateway.startup_ms, raw.startup_ms, "ms");
    row(&format!("RSS with {} idle connections", options.idle), gateway.idle_rss_mib, raw.idle_rss_mib, "MiB");
    row("RSS added per idle connection", gateway.per_connection_kib, raw.per_connection_kib, "KiB");
    row(&format!("echo throughput, {} clients", options.clients), gateway.echo_per_sec, raw.echo_per_sec, "msg/s");
    row("echo latency p50", gateway.p50_ms, raw.p50_ms, "ms");
    row("echo latency p99", gateway.p99_ms, raw.p99_ms, "ms");
    row(
        &format!("{} simultaneous closes, until all $disconnects ran", options.idle),
        gateway.close_ms,
        raw.close_ms,
        "ms",
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Gateway,
    RawEcho,
}

struct Figures {
    startup_ms: f64,
    idle_rss_mib: f64,
    per_connection_kib: f64,
    echo_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    close_ms: f64,
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn spawn(dir: &std::path::Path, server: Server, port: u16) -> Result<Child, Error> {
    let mut command = match server {
        Server::Gateway => {
            let mut c = Command::new(dir.join("lambda-ws"));
            c.args(["dev", "--port", &port.to_string()]);
            c
        }
        Server::RawEcho => {
            let mut c = Command::new(dir.join("gateway-bench"));
            c.args(["raw-echo", &port.to_string()]);
            c
        }
    };
    command
        .env("RUST_LOG", "warn")
        .env("LWS_REQUIRE_TOKEN", "false")
        .env("LWS_RATE_CONNECT_PER_IP", "0")
        .env("LWS_RATE_MESSAGES_PER_CONNECTION", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    Ok(command.spawn()?)
}

/// Milliseconds from spawn until the port accepts a WebSocket handshake.
async fn startup(dir: &std::path::Path, server: Server) -> Result<f64, Error> {
    let port = free_port()?;
    let started = Instant::now();
    let mut child = spawn(dir, server, port).await?;
    loop {
        if tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/local")).await.is_ok() {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err("server did not start in 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    child.kill().await?;
    Ok(ms)
}

fn rss_mib(pid: u32) -> Result<f64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or("no VmRSS")?;
    Ok(kib / 1024.0)
}

/// Live sessions as the gateway's sender sees them (`target: all`, an empty custom message).
async fn live_sessions(addr: SocketAddr) -> Result<u64, Error> {
    let body = json!({"target":"all","message":{"type":"bench_probe"}}).to_string();
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "POST /2015-03-31/functions/sender/invocations HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let json: Value = serde_json::from_str(raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("{}"))?;
    json["recipients"].as_u64().ok_or_else(|| format!("unexpected answer: {raw}").into())
}

async fn measure(dir: &std::path::Path, server: Server, options: &Options) -> Result<Figures, Error> {
    let name = if server == Server::Gateway { "lambda-ws dev" } else { "bare echo server" };
    let mut startups = Vec::new();
    for _ in 0..5 {
        startups.push(startup(dir, server).await?);
    }
    startups.sort_by(f64::total_cmp);
    let port = free_port()?;
    let child = spawn(dir, server, port).await?;
    let pid = child.id().ok_or("no pid")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let url = format!("ws://{addr}/local");
    while tokio_tungstenite::connect_async(&url).await.is_err() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Echo: closed loop, each client waits for its answer before sending again.
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let workers = (0..options.clients).map(|i| {
        let url = url.clone();
        tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await?;
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let frame = json!({"action":"echo","ref":format!("{i}-{n}"),"payload":"ping"}).to_string();
                let sent = Instant::now();
                ws.send(Message::text(frame)).await?;
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(_))) => break,
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(Error::from(e)),
                        None => return Err("closed".into()),
                    }
                }
                latencies.push(sent.elapsed().as_micros() as u64);
                n += 1;
            }
            let _ = ws.close(None).await;
            Ok::<_, Error>(latencies)
        })
    });
    let started = Instant::now();
    let mut latencies = Vec::new();
    for worker in workers.collect::<Vec<_>>() {
        latencies.extend(worker.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    let echo_per_sec = latencies.len() as f64 / elapsed;
    let p50_ms = pct(0.50).copied().unwrap_or(0) as f64 / 1000.0;
    let p99_ms = pct(0.99).copied().unwrap_or(0) as f64 / 1000.0;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Idle connections.
    let rss_before_idle = rss_mib(pid)?;
    let sockets: Vec<_> = stream::iter(0..options.idle)
        .map(|_| tokio_tungstenite::connect_async(url.clone()))
        .buffer_unordered(200)
        .filter_map(|r| async move { r.ok().map(|(ws, _)| ws) })
        .collect()
        .await;
    if sockets.len() != options.idle {
        return Err(
            format!("{name}: only {} of {} connections opened (ulimit -n?)", sockets.len(), options.idle).into()
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss_mib = rss_mib(pid)?;
    let per_connection_kib = (idle_rss_mib - rss_before_idle) * 1024.0 / options.idle as f64;

    // All close at once; done when the store has no session left (the bare server has none:
    // its figure is the time until every close handshake completed).
    let started = Instant::now();
    let closes = sockets.into_iter().map(|mut ws| async move {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    });
    futures::future::join_all(closes).await;
    if server == Server::Gateway {
        while live_sessions(addr).await? > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let close_ms = started.elapsed().as_secs_f64() * 1000.0;
    drop(child);
    println!("  measured {name}");
    Ok(Figures { startup_ms: startups[2], idle_rss_mib, per_connection_kib, echo_per_sec, p50_ms, p99_ms, close_ms })
}

/// The baseline: an axum WebSocket server with the gateway's buffer sizes that echoes every text
/// frame, nothing else.
async fn raw_echo(port: u16) -> Result<(), Error> {
    use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
    let app = axum::Router::new().route(
        "/local",
        axum::routing::get(|ws: WebSocketUpgrade| async move {
            let size = lambda_ws_local::server::SOCKET_BUFFER_BYTES;
            ws.read_buffer_size(size).write_buffer_size(size).on_upgrade(|mut socket| async move {
                while let Some(Ok(message)) = socket.recv().await {
                    let echo = match message {
                        AxumMessage::Text(t) => AxumMessage::Text(t),
                        AxumMessage::Close(_) => break,
                        _ => continue,
                    };
                    if socket.send(echo).await.is_err() {
                        break;
                    }
                }
            })
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
