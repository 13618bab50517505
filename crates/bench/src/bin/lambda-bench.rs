//! Deployment benchmark: the size of each function's package and its init time, against a
//! minimal `lambda_runtime` function built the same way in the same run.
//!
//! ```sh
//! scripts/build-lambdas.sh      # cargo lambda build --release for x86_64 and arm64, then this
//! ```
//!
//! * **Package size**: `target/lambda/<arch>/<function>/bootstrap.zip`, as `cargo lambda build
//!   --output-format zip` leaves it and `sam deploy` uploads it.
//! * **Init time**: from spawning the release binary of this machine's architecture to its first
//!   `GET /2018-06-01/runtime/invocation/next` on a Runtime API server this benchmark serves on
//!   loopback, with the environment Lambda gives a function (region, credentials, table name).
//!   This is what a cold start costs inside the function, after Lambda has started the process.
//!   An init that fails (`POST /runtime/init/error`) fails the benchmark.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use tokio::process::Command;
use tokio::sync::oneshot;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The functions `template.yaml` deploys.
const FUNCTIONS: [&str; 7] = ["connect", "disconnect", "default", "chat", "issue_token", "sender", "cleanup"];
const BASELINE: &str = "lambda-baseline";
const ARCHES: [&str; 2] = ["x86_64", "arm64"];
const ZIP_GOAL_BYTES: u64 = 4_000_000;
const INIT_GOAL_MS: f64 = 20.0;

/// What the runtime under test did first.
#[derive(Debug)]
enum First {
    Next(Instant),
    InitError(String),
}

type Slot = Arc<Mutex<Option<oneshot::Sender<First>>>>;

fn report(slot: &Slot, first: First) {
    if let Some(tx) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
        let _ = tx.send(first);
    }
}

async fn next(State(slot): State<Slot>) -> &'static str {
    report(&slot, First::Next(Instant::now()));
    // Never hand out an invocation: the process is killed once its init is timed.
    std::future::pending::<()>().await;
    ""
}

async fn init_error(State(slot): State<Slot>, body: String) -> &'static str {
    report(&slot, First::InitError(body));
    "{}"
}

async fn runtime_api() -> Result<(SocketAddr, Slot), Error> {
    let slot: Slot = Arc::default();
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(slot.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, slot))
}

/// Starts `binary` as Lambda would and returns the time to its first `next` request.
async fn init_once(binary: &Path, name: &str, api: SocketAddr, slot: &Slot) -> Result<Duration, Error> {
    let (tx, rx) = oneshot::channel();
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", api.to_string().as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", name),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDBENCH"),
            ("AWS_SECRET_ACCESS_KEY", "bench"),
            ("AWS_SESSION_TOKEN", "bench"),
            ("LWS_TABLE_NAME", "lambda-ws-sessions"),
            ("LWS_ALLOWED_ORIGINS", "https://app.example.com"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let first = tokio::time::timeout(Duration::from_secs(10), rx).await;
    let _ = child.kill().await;
    match first {
        Ok(Ok(First::Next(at))) => Ok(at - started),
        Ok(Ok(First::InitError(body))) => Err(format!("{name}: init failed: {body}").into()),
        Ok(Err(_)) | Err(_) => Err(format!("{name}: no request to the Runtime API within 10 s").into()),
    }
}

struct Row {
    name: &'static str,
    zips: Vec<Option<u64>>,
    init_median_ms: f64,
    init_p90_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn host_arch() -> Result<(&'static str, &'static str), Error> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(("x86_64", "x86_64-unknown-linux-gnu")),
        "aarch64" => Ok(("arm64", "aarch64-unknown-linux-gnu")),
        other => Err(format!("no Lambda architecture for a {other} host").into()),
    }
}

fn megabytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "not built".to_owned(), |b| format!("{:.2} MB", b as f64 / 1e6))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let target = PathBuf::from(
        flag("--target-dir").or_else(|| std::env::var("CARGO_TARGET_DIR").ok()).unwrap_or_else(|| "target".to_owned()),
    );
    let runs: usize = flag("--runs").and_then(|r| r.parse().ok()).unwrap_or(20).max(1);
    let (host, triple) = host_arch()?;
    let (api, slot) = runtime_api().await?;
    println!("deployment benchmark: {runs} cold starts per function on {host}, {} cores", cores());

    let mut rows = Vec::new();
    for name in std::iter::once(BASELINE).chain(FUNCTIONS) {
        let zips = ARCHES
            .iter()
            .map(|arch| std::fs::metadata(target.join("lambda").join(arch).join(name).join("bootstrap.zip")).ok())
            .map(|m| m.map(|m| m.len()))
            .collect();
        let binary = target.join(triple).join("release").join(name);
        if !binary.exists() {
            return Err(format!("{} is missing: run scripts/build-lambdas.sh", binary.display()).into());
        }
        init_once(&binary, name, api, &slot).await?; // warm the page cache
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            times.push(init_once(&binary, name, api, &slot).await?);
        }
        times.sort();
        rows.push(Row { name, zips, init_median_ms: percentile(&times, 0.5), init_p90_ms: percentile(&times, 0.9) });
        println!("  measured {name}");
    }

    let base = rows.first().map(|r| (r.zips.clone(), r.init_median_ms)).ok_or("no rows")?;
    println!();
    println!(
        "| function | zip x86_64 | zip arm64 | zip vs baseline ({host}) | init p50 | init p90 | init vs baseline |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut missed = Vec::new();
    let host_index = ARCHES.iter().position(|a| *a == host).unwrap_or(0);
    for row in &rows {
        let ratio = match (row.zips.get(host_index).copied().flatten(), base.0.get(host_index).copied().flatten()) {
            (Some(z), Some(b)) if b > 0 => format!("{:.2}×", z as f64 / b as f64),
            _ => "–".to_owned(),
        };
        println!(
            "| {} | {} | {} | {ratio} | {:.1} ms | {:.1} ms | {:.2}× |",
            row.name,
            megabytes(row.zips.first().copied().flatten()),
            megabytes(row.zips.get(1).copied().flatten()),
            row.init_median_ms,
            row.init_p90_ms,
            row.init_median_ms / base.1,
        );
        if row.name == BASELINE {
            continue;
        }
        for (arch, zip) in ARCHES.iter().zip(&row.zips) {
            match zip {
                Some(z) if *z > ZIP_GOAL_BYTES => missed.push(format!("{} {arch} zip {}", row.name, megabytes(*zip))),
                None => missed.push(format!("{} {arch} zip not built", row.name)),
                Some(_) => {}
            }
        }
        if row.init_median_ms > INIT_GOAL_MS {
            missed.push(format!("{} init {:.1} ms", row.name, row.init_median_ms));
        }
    }
    println!();
    if missed.is_empty() {
        println!("goals met: every zip ≤ 4 MB, every init ≤ 20 ms");
        Ok(())
    } else {
        Err(format!("goals missed: {}", missed.join("; ")).into())
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
