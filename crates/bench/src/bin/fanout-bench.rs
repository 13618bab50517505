//! Fan-out benchmark: the sender reaching N members of one channel through the real Management
//! API client, against a Management API server (a separate process) that answers every post
//! after an injected latency, with sessions in the memory store or the DynamoDB engine.
//!
//! ```sh
//! scripts/bench-fanout.sh                 # starts the DynamoDB engine, builds, runs this
//! fanout-bench --sizes 1000,10000,100000 --latency-ms 20 --page-latency-ms 20 \
//!              --dynamodb-endpoint http://127.0.0.1:8000
//! ```
//!
//! The memory store runs twice: as it is, and with `--page-latency-ms` added to each page of
//! recipients it reads (a store across a network), which shows how page reads overlap posts.
//!
//! Each (store, size) runs in a child process of its own so its peak RSS is its own: the child
//! seeds the store (memory) or reads a table seeded once per size (DynamoDB), resets the peak-RSS
//! mark (`/proc/self/clear_refs`), sends one message to the channel, and reports. The baseline in
//! the same run sends the way the reference Python package does: list every recipient first,
//! then 10 workers posting one at a time, no retries. With the DynamoDB engine, a 10,000-member send
//! then runs with channel history on and off, alternating, to show what a stream adds to a send.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use futures::{StreamExt, TryStreamExt, stream};
use lambda_ws::clock::SystemClock;
use lambda_ws::delivery::{SendOptions, Transport};
use lambda_ws::history::{HistoryRules, HistoryStore};
use lambda_ws::protocol::{Level, SystemMessage};
use lambda_ws::session::Recipient;
use lambda_ws::store::SessionStore;
use lambda_ws::testing::SlowPages;
use lambda_ws::{
    ChannelName, ConnectionId, DynamoDbStore, ManagementApi, MemoryStore, Outbound, Sender, Session, Target,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

// The sender function's allocator (`lambda-ws-functions`): the benchmark measures what runs in AWS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Error = Box<dyn std::error::Error + Send + Sync>;

const CHANNEL: &str = "fanout";
const BASELINE_WORKERS: usize = 10;
/// The baseline is skipped above this size (at 20 ms and 10 workers, 100,000 posts take 200 s).
const BASELINE_MAX: usize = 10_000;
/// The channel size of the history on/off comparison (DynamoDB rows).
const HISTORY_SIZE: usize = 10_000;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(flag(&args, "--latency-ms").and_then(|v| v.parse().ok()).unwrap_or(20)).await,
        Some("seed") => seed_table(&args).await,
        Some("run") => run_child(&args).await,
        _ => orchestrate(&args).await,
    }
}

// ---- the Management API server (child process) ----------------------------------------------------

async fn serve(latency_ms: u64) -> Result<(), Error> {
    let posts = Arc::new(AtomicUsize::new(0));
    let latency = Duration::from_millis(latency_ms);
    let app = Router::new()
        .route(
            "/{stage}/@connections/{id}",
            post(move |State(posts): State<Arc<AtomicUsize>>, Path((_, _)): Path<(String, String)>| async move {
                tokio::time::sleep(latency).await;
                posts.fetch_add(1, Ordering::Relaxed);
                ""
            }),
        )
        .route(
            "/posts",
            get(|State(posts): State<Arc<AtomicUsize>>| async move { posts.load(Ordering::Relaxed).to_string() }),
        )
        .with_state(posts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

// ---- sessions ---------------------------------------------------------------------------------------

fn session(i: usize, endpoint: &str) -> Result<Session, Error> {
    Ok(Session {
        connection_id: ConnectionId::new(format!("fan{i:07}AAAAAAA="))?,
        identity: None,
        api_id: "bench".into(),
        stage: "bench".into(),
        endpoint: endpoint.to_owned(),
        source_ip: "127.0.0.1".into(),
        user_agent: None,
        connected_at: 0,
        last_seen: 0,
        expires_at: lambda_ws::clock::unix_now_secs() + 86_400,
        metadata: BTreeMap::new(),
        bound_channel: None,
    })
}

async fn seed(store: &dyn SessionStore, n: usize, endpoint: &str) -> Result<(), Error> {
    let channel = ChannelName::new(CHANNEL)?;
    stream::iter(0..n)
        .map(|i| {
            let channel = &channel;
            async move {
                let s = session(i, endpoint)?;
                store.open_session(&s, Some(channel), false).await?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<()>()
        .await
}

fn dynamodb(endpoint: &str, table: &str) -> DynamoDbStore {
    let aws = lambda_ws_local::local_aws_config();
    let conf = aws_sdk_dynamodb::config::Builder::from(&aws).endpoint_url(endpoint).build();
    DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(conf), table)
}

async fn seed_table(args: &[String]) -> Result<(), Error> {
    let endpoint = flag(args, "--dynamodb-endpoint").ok_or("--dynamodb-endpoint")?;
    let table = flag(args, "--table").ok_or("--table")?;
    let n: usize = flag(args, "--n").and_then(|v| v.parse().ok()).ok_or("--n")?;
    let mgmt = flag(args, "--mgmt").ok_or("--mgmt")?;
    let store = dynamodb(&endpoint, &table);
    store.create_table().await?;
    seed(&store, n, &mgmt).await
}

// ---- one measured send (child process) ---------------------------------------------------------------

fn status_kib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn run_child(args: &[String]) -> Result<(), Error> {
    let n: usize = flag(args, "--n").and_then(|v| v.parse().ok()).ok_or("--n")?;
    let mgmt = flag(args, "--mgmt").ok_or("--mgmt")?;
    let concurrency: usize = flag(args, "--concurrency").and_then(|v| v.parse().ok()).unwrap_or(256);
    let baseline = flag(args, "--mode").as_deref() == Some("baseline");
    let (mut store, history): (Arc<dyn SessionStore>, Arc<dyn HistoryStore>) = match flag(args, "--table") {
        Some(table) => {
            let store = Arc::new(dynamodb(&flag(args, "--dynamodb-endpoint").ok_or("--dynamodb-endpoint")?, &table));
            (store.clone(), store)
        }
        None => {
            let store = Arc::new(MemoryStore::new());
            seed(store.as_ref(), n, &mgmt).await?;
            (store.clone(), store)
        }
    };
    // With --history the channel keeps a stream: each send takes a number and keeps the message.
    let rules = if args.iter().any(|a| a == "--history") {
        HistoryRules::parse(&format!("{CHANNEL}=100/5m"))?
    } else {
        HistoryRules::default()
    };
    if let Some(ms) = flag(args, "--page-latency-ms").and_then(|v| v.parse().ok()) {
        store = Arc::new(SlowPages::new(store, Duration::from_millis(ms)));
    }
    let transport = Arc::new(ManagementApi::new(lambda_ws_local::local_aws_config()));
    let message = Outbound::System(SystemMessage::new(Level::Info, "fan-out benchmark"));
    let payload = message.encode()?;
    let rss_before = status_kib("VmRSS:").unwrap_or(0.0);
    // Reset the peak-RSS mark so the peak is that of the send alone plus what was resident.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let started = Instant::now();
    let (delivered, failed) = if baseline {
        reference_style(store.as_ref(), transport, payload).await?
    } else {
        let options = SendOptions { concurrency, ..SendOptions::default() };
        let sender = Sender::new(store, transport, Arc::new(SystemClock), options).with_history(history, rules);
        let report = sender.send_payload(&Target::Channel(ChannelName::new(CHANNEL)?), payload, &[]).await;
        (report.delivered, report.failed.len() + usize::from(report.incomplete.is_some()))
    };
    let wall = started.elapsed();
    let answer = json!({
        "wall_ms": wall.as_secs_f64() * 1000.0,
        "delivered": delivered,
        "failed": failed,
        "rss_before_mib": rss_before / 1024.0,
        "peak_rss_mib": status_kib("VmHWM:").unwrap_or(0.0) / 1024.0,
    });
    println!("{answer}");
    Ok(())
}

/// The reference package's way: read every recipient, then a pool of 10 workers posting one at a
/// time, no retries.
async fn reference_style(
    store: &dyn SessionStore,
    transport: Arc<ManagementApi>,
    payload: bytes::Bytes,
) -> Result<(usize, usize), Error> {
    let channel = ChannelName::new(CHANNEL)?;
    let now = lambda_ws::clock::unix_now_secs();
    let mut everyone: Vec<Recipient> = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.channel_page(&channel, cursor.as_ref(), 500, now).await?;
        everyone.extend(page.items);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    let queue = Arc::new(std::sync::Mutex::new(everyone));
    let workers = (0..BASELINE_WORKERS).map(|_| {
        let (queue, transport, payload) = (queue.clone(), transport.clone(), payload.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                let Some(r) = next else { return (ok, failed) };
                match transport.post(&r.endpoint, &r.connection_id, payload.clone()).await {
                    Ok(()) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
        })
    });
    let mut totals = (0, 0);
    for worker in futures::future::join_all(workers).await {
        let (ok, failed) = worker?;
        totals = (totals.0 + ok, totals.1 + failed);
    }
    Ok(totals)
}

// ---- the orchestrator -------------------------------------------------------------------------------

struct Child {
    _process: tokio::process::Child,
    addr: SocketAddr,
}

async fn start_server(latency_ms: u64) -> Result<Child, Error> {
    let exe = std::env::current_exe()?;
    let mut process = Command::new(exe)
        .args(["serve", "--latency-ms", &latency_ms.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = process.stdout.take().ok_or("no stdout")?;
    let line = BufReader::new(stdout).lines().next_line().await?.ok_or("server printed no address")?;
    Ok(Child { _process: process, addr: line.trim().parse()? })
}

async fn measure(extra: &[&str], n: usize, mgmt: &str, concurrency: usize) -> Result<Value, Error> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["run", "--n", &n.to_string(), "--mgmt", mgmt, "--concurrency", &concurrency.to_string()])
        .args(extra)
        .stderr(Stdio::inherit())
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!("run {extra:?} n={n} failed").into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn orchestrate(args: &[String]) -> Result<(), Error> {
    let sizes: Vec<usize> = flag(args, "--sizes")
        .unwrap_or_else(|| "1000,10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let latency_ms: u64 = flag(args, "--latency-ms").and_then(|v| v.parse().ok()).unwrap_or(20);
    let concurrency: usize = flag(args, "--concurrency").and_then(|v| v.parse().ok()).unwrap_or(256);
    let dynamodb_endpoint = flag(args, "--dynamodb-endpoint");
    let page_latency_ms: u64 = flag(args, "--page-latency-ms").and_then(|v| v.parse().ok()).unwrap_or(20);
    let server = start_server(latency_ms).await?;
    let mgmt = format!("http://{}/bench", server.addr);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "fan-out benchmark: one channel of N members, {latency_ms} ms per post, sender concurrency {concurrency}, \
         baseline {BASELINE_WORKERS} workers without retries, {cores} cores"
    );
    let mut rows = Vec::new();
    let mut history_table: Option<(String, String)> = None;
    let run_id = std::process::id();
    let slow_pages = format!("memory, {page_latency_ms} ms per page read");
    for store in ["memory", slow_pages.as_str(), "dynamodb"] {
        if store == "dynamodb" && dynamodb_endpoint.is_none() {
            println!("  (no --dynamodb-endpoint: DynamoDB rows skipped)");
            continue;
        }
        for &n in &sizes {
            let mut extra: Vec<String> = Vec::new();
            if let (true, Some(endpoint)) = (store == "dynamodb", &dynamodb_endpoint) {
                let table = format!("fanout-{run_id}-{n}");
                let seeded = Instant::now();
                let exe = std::env::current_exe()?;
                let status = Command::new(exe)
                    .args(["seed", "--n", &n.to_string(), "--mgmt", &mgmt, "--table", &table])
                    .args(["--dynamodb-endpoint", endpoint])
                    .status()
                    .await?;
                if !status.success() {
                    return Err(format!("seeding {table} failed").into());
                }
                println!("  seeded {n} sessions in {:.1} s", seeded.elapsed().as_secs_f64());
                if n == HISTORY_SIZE {
                    history_table = Some((table.clone(), endpoint.clone()));
                }
                extra = vec!["--table".into(), table, "--dynamodb-endpoint".into(), endpoint.clone()];
            }
            if store == slow_pages {
                extra = vec!["--page-latency-ms".into(), page_latency_ms.to_string()];
            }
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let ours = measure(&extra, n, &mgmt, concurrency).await?;
            let baseline = if n <= BASELINE_MAX {
                let mut with_mode = extra.clone();
                with_mode.extend(["--mode", "baseline"]);
                Some(measure(&with_mode, n, &mgmt, concurrency).await?)
            } else {
                None
            };
            println!("  measured {store} n={n}");
            rows.push((store, n, ours, baseline));
        }
    }
    println!();
    println!("| store | recipients | lambda-ws wall | msg/s | peak RSS | baseline wall | baseline msg/s | speed-up |");
    println!("|---|---|---|---|---|---|---|---|");
    for (store, n, ours, baseline) in &rows {
        let wall = ours["wall_ms"].as_f64().unwrap_or(f64::NAN);
        let delivered = ours["delivered"].as_u64().unwrap_or(0);
        let rate = delivered as f64 / (wall / 1000.0);
        let (b_wall, b_rate, ratio) = match baseline {
            Some(b) => {
                let bw = b["wall_ms"].as_f64().unwrap_or(f64::NAN);
                let br = b["delivered"].as_u64().unwrap_or(0) as f64 / (bw / 1000.0);
                (format!("{:.0} ms", bw), format!("{br:.0}"), format!("{:.1}×", bw / wall))
            }
            None => ("not run (≈ N × latency / 10)".to_owned(), "–".to_owned(), "–".to_owned()),
        };
        println!(
            "| {store} | {n} | {wall:.0} ms | {rate:.0} | {:.1} MiB (before the send {:.1}) | {b_wall} | {b_rate} | {ratio} |",
            ours["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
            ours["rss_before_mib"].as_f64().unwrap_or(f64::NAN),
        );
        if delivered as usize != *n || ours["failed"].as_u64() != Some(0) {
            return Err(format!("{store} n={n}: delivered {delivered} of {n}: {ours}").into());
        }
    }
    if let Some((table, endpoint)) = history_table {
        // History on against off, same table, alternating, nine each: what a stream adds to a send
        // (one send's wall varies by more than that from run to run, so the medians are compared).
        let n = HISTORY_SIZE;
        let base = ["--table", table.as_str(), "--dynamodb-endpoint", endpoint.as_str()];
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..9 {
            off.push(measure(&base, n, &mgmt, concurrency).await?["wall_ms"].as_f64().unwrap_or(f64::NAN));
            let with: Vec<&str> = base.iter().copied().chain(["--history"]).collect();
            on.push(measure(&with, n, &mgmt, concurrency).await?["wall_ms"].as_f64().unwrap_or(f64::NAN));
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (off_ms, on_ms) = (median(off.clone()), median(on.clone()));
        println!();
        println!("history (dynamodb, {n} recipients, nine sends each, alternating):");
        println!("| history | walls | median |");
        println!("|---|---|---|");
        println!("| off | {} | {off_ms:.0} ms |", off.iter().map(|w| format!("{w:.0}")).collect::<Vec<_>>().join(", "));
        println!("| on | {} | {on_ms:.0} ms |", on.iter().map(|w| format!("{w:.0}")).collect::<Vec<_>>().join(", "));
        println!("on / off: {:.3}", on_ms / off_ms);
    }
    let posts = read_post_count(server.addr).await.unwrap_or_default();
    println!();
    println!("the Management API server counted {posts} posts in all");
    Ok(())
}

/// The server's post counter, read with a bare HTTP/1.0 request.
async fn read_post_count(addr: SocketAddr) -> Result<String, Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(b"GET /posts HTTP/1.0\r\nHost: bench\r\n\r\n").await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text.rsplit("\r\n\r\n").next().unwrap_or_default().to_owned())
}
