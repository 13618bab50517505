//! `lambda-ws`: the local gateway (`lambda-ws dev`), operator commands (`sessions list`, `send`,
//! `cleanup`, `tokens purge`) and the contract files (`lambda-ws schema`).

// The startup banner is this command's user interface; libraries never print.
#![allow(clippy::print_stdout)]

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lambda_ws::admin::{CleanupOptions, Selection};
use lambda_ws::{ChannelName, Config, ConnectionId, Outbound, SendRequest, Target};
use lambda_ws_local::ops::{Backend, OpsError};
use lambda_ws_local::template::Template;
use lambda_ws_local::{Gateway, GatewayOptions, RouteTable, StoreChoice};

// The same allocator as the Lambda functions (see `lambda-ws-functions`), so the gateway runs the
// handlers as they run in AWS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "lambda-ws", version, about = "Real-time WebSockets for Rust on AWS Lambda")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole WebSocket API locally: WebSocket endpoint, Management API, token issuer,
    /// Lambda Invoke API and a demo page, on one port, with no AWS account.
    Dev(DevArgs),
    /// List, inspect and clean up sessions.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Send a message to a connection, a user, channels or everyone; prints the delivery report.
    Send(SendArgs),
    /// Remove expired sessions, and with --check-connections those whose connection is gone.
    Cleanup(CleanupArgs),
    /// Manage connect tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Write the wire contract: the AsyncAPI 3.0 document (default), or with --typescript the
    /// TypeScript declarations the browser client ships.
    Schema(SchemaArgs),
}

/// Where the sessions are: a DynamoDB table or a running local gateway.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Source {
    /// DynamoDB table (region, credentials and endpoint from the usual AWS environment, e.g.
    /// AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_DYNAMODB).
    #[arg(long, env = "LWS_TABLE_NAME")]
    table: Option<String>,
    /// A running `lambda-ws dev`, e.g. http://127.0.0.1:3001.
    #[arg(long)]
    gateway: Option<String>,
}

impl Source {
    async fn backend(&self) -> Result<Backend, OpsError> {
        match (&self.table, &self.gateway) {
            (_, Some(url)) => Ok(Backend::gateway(url)),
            (Some(table), None) => Backend::table(table).await,
            (None, None) => Ok(Backend::gateway("http://127.0.0.1:3001")),
        }
    }
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List live sessions (oldest first) with their user, channels and age.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    source: Source,
    /// Only members of this channel.
    #[arg(long, conflicts_with = "user")]
    channel: Option<String>,
    /// Only this user's connections.
    #[arg(long)]
    user: Option<String>,
    /// At most this many.
    #[arg(long)]
    limit: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
#[command(group(clap::ArgGroup::new("body").required(true).multiple(false)))]
struct SendArgs {
    #[command(flatten)]
    source: Source,
    /// One or more connection ids (repeat the flag).
    #[arg(long, group = "target", num_args = 1..)]
    connection: Vec<String>,
    /// Every connection of this user.
    #[arg(long, group = "target")]
    user: Option<String>,
    /// Members of one or more channels, each connection once (repeat the flag).
    #[arg(long, group = "target", num_args = 1..)]
    channel: Vec<String>,
    /// Every live session.
    #[arg(long, group = "target")]
    all: bool,
    /// The message, JSON with a `type`, e.g. '{"type":"toast","level":"info","message":"Hi"}'.
    #[arg(long, group = "body")]
    message: Option<String>,
    /// Read the message from this file (`-` for standard input).
    #[arg(long, group = "body")]
    file: Option<std::path::PathBuf>,
    /// Leave these connections out.
    #[arg(long, num_args = 1..)]
    exclude: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct CleanupArgs {
    #[command(flatten)]
    source: Source,
    /// Report what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also ask the Management API about every live session and remove those it reports gone
    /// (one request per session).
    #[arg(long)]
    check_connections: bool,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Delete connect tokens whose time has passed.
    Purge(PurgeArgs),
}

#[derive(Debug, clap::Args)]
struct PurgeArgs {
    #[command(flatten)]
    source: Source,
    /// Count them; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, clap::Args)]
struct SchemaArgs {
    /// Write TypeScript declarations instead of the AsyncAPI document.
    #[arg(long)]
    typescript: bool,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    out: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
struct DevArgs {
    /// Address to listen on. Anything but loopback needs --expose.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Apply the per-IP $connect limit (LWS_RATE_CONNECT_PER_IP) to loopback clients too. Off by
    /// default: every tab, test and script on this machine is 127.0.0.1 and would share it.
    #[arg(long)]
    enforce_ip_limits: bool,
    /// Allow --host beyond loopback: the token issuer (any user, no password), the Management and
    /// Invoke APIs and the admin endpoints become reachable from your network.
    #[arg(long)]
    expose: bool,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 3001)]
    port: u16,
    /// Stage name: the first path segment of the WebSocket and Management API URLs.
    #[arg(long, default_value = "local")]
    stage: String,
    /// User id the token issuer gives when a request does not send `x-lambda-ws-user`.
    #[arg(long, default_value = "dev-user")]
    user: String,
    /// Close connections idle this long (API Gateway: 10m). E.g. 30s, 10m.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Close connections after this long (API Gateway: 2h).
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    max_lifetime: Duration,
    /// Keep sessions in DynamoDB at this endpoint instead of in memory (e.g. http://127.0.0.1:8000).
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// Table for --dynamodb-endpoint (created if missing).
    #[arg(long, default_value = "lambda-ws-local")]
    table: String,
    /// SAM template to read the WebSocket routes from (used when the file exists; otherwise the
    /// built-in routes).
    #[arg(long, default_value = "template.yaml")]
    template: std::path::PathBuf,
    /// Invoke the route functions through this Lambda Invoke API (e.g. http://127.0.0.1:9000, where
    /// `cargo lambda watch` serves) instead of running the handlers in-process.
    #[arg(long)]
    invoke_endpoint: Option<String>,
    /// Serve your own pages from this folder at /pages/<file>, on the gateway's origin (so their
    /// `fetch("/ws-token")` is same-origin).
    #[arg(long)]
    pages: Option<std::path::PathBuf>,
}

/// `500ms`, `30s`, `10m`, `2h`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 30s, 10m or 2h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("unknown unit {unit:?}: use ms, s, m or h")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lambda_ws=info")),
        )
        .with_target(false)
        .init();
    match cli.command {
        Command::Dev(args) => dev(args).await,
        Command::Schema(args) => schema(&args),
        Command::Sessions { command: SessionsCommand::List(args) } => list_sessions(&args).await,
        Command::Send(args) => send(&args).await,
        Command::Cleanup(args) => cleanup(&args).await,
        Command::Tokens { command: TokensCommand::Purge(args) } => purge_tokens(&args).await,
    }
}

fn fail(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}

/// A spinner with a count on standard error (hidden when it is not a terminal).
fn progress(what: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

async fn list_sessions(args: &ListArgs) -> ExitCode {
    let selection = match (&args.channel, &args.user) {
        (Some(channel), _) => match ChannelName::new(channel.as_str()) {
            Ok(channel) => Selection::Channel(channel),
            Err(e) => return fail(e),
        },
        (None, Some(user)) => Selection::User(user.clone()),
        (None, None) => Selection::All,
    };
    let backend = match args.source.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let bar = progress("reading sessions");
    let result = backend.list_sessions(&selection, args.limit, &|n| bar.set_position(n as u64)).await;
    bar.finish_and_clear();
    let sessions = match result {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&sessions).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let now = lambda_ws::clock::unix_now_millis();
    let rows: Vec<[String; 6]> = sessions
        .iter()
        .map(|l| {
            let s = &l.session;
            let channels: Vec<&str> = l.channels.iter().map(ChannelName::as_str).collect();
            [
                s.connection_id.to_string(),
                s.user_id().unwrap_or("-").to_owned(),
                if channels.is_empty() { "-".to_owned() } else { channels.join(",") },
                s.source_ip.clone(),
                age((now - s.connected_at) / 1000),
                age(s.expires_at - now / 1000),
            ]
        })
        .collect();
    let header = ["CONNECTION", "USER", "CHANNELS", "SOURCE IP", "CONNECTED", "EXPIRES IN"];
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    println!("{}", line(&header.map(str::to_owned)));
    for row in &rows {
        println!("{}", line(row));
    }
    println!("{} session{}", rows.len(), if rows.len() == 1 { "" } else { "s" });
    ExitCode::SUCCESS
}

/// `95` → `1m35s`.
fn age(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

fn send_request(args: &SendArgs) -> Result<SendRequest, String> {
    let text = match (&args.message, &args.file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| format!("stdin: {e}"))?;
            text
        }
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        (None, None) => return Err("give --message or --file".into()),
    };
    let message: Outbound = serde_json::from_str(&text).map_err(|e| format!("the message is not valid: {e}"))?;
    message.validate().map_err(|e| format!("the message is not valid: {e}"))?;
    let ids = |list: &[String]| {
        list.iter().map(|id| ConnectionId::new(id.as_str()).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()
    };
    let channels = args
        .channel
        .iter()
        .map(|c| ChannelName::new(c.as_str()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let target = match (&args.connection[..], &args.user, &channels[..], args.all) {
        ([one], ..) => Target::Connection(ids(std::slice::from_ref(one))?.remove(0)),
        ([_, _, ..], ..) => Target::Connections(ids(&args.connection)?),
        ([], Some(user), ..) => Target::User(user.clone()),
        ([], None, [one], _) => Target::Channel(one.clone()),
        ([], None, [_, _, ..], _) => Target::Channels(channels.clone()),
        ([], None, [], true) => Target::All,
        _ => return Err("give one target: --connection, --user, --channel or --all".into()),
    };
    Ok(SendRequest::new(target, message).excluding(ids(&args.exclude)?))
}

async fn send(args: &SendArgs) -> ExitCode {
    let request = match send_request(args) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let backend = match args.source.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let bar = progress("sending");
    let result = backend.send(&request).await;
    bar.finish_and_clear();
    match result {
        Ok(answer) => {
            println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
            let failed = answer.get("error").is_some()
                || answer["failed"].as_array().is_some_and(|f| !f.is_empty())
                || answer.get("incomplete").is_some();
            if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => fail(e),
    }
}

async fn cleanup(args: &CleanupArgs) -> ExitCode {
    let backend = match args.source.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let options = CleanupOptions { dry_run: args.dry_run, check_connections: args.check_connections };
    let bar = progress("checking sessions");
    let result = backend.cleanup(options, &|n| bar.set_position(n as u64)).await;
    bar.finish_and_clear();
    match result {
        Ok(summary) => {
            let verb = if summary.dry_run { "would remove" } else { "removed" };
            let count = if summary.dry_run { summary.expired + summary.stale } else { summary.removed };
            println!("{verb} {count} session(s): {} expired, {} stale", summary.expired, summary.stale);
            if args.check_connections {
                println!(
                    "checked {} live connection(s); {} could not be checked and were kept",
                    summary.checked, summary.unchecked
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn purge_tokens(args: &PurgeArgs) -> ExitCode {
    let backend = match args.source.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    match backend.purge_tokens(args.dry_run).await {
        Ok(n) if args.dry_run => {
            println!("would purge {n} expired token(s)");
            ExitCode::SUCCESS
        }
        Ok(n) => {
            println!("purged {n} expired token(s)");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn schema(args: &SchemaArgs) -> ExitCode {
    let text =
        if args.typescript { lambda_ws_local::contract::typescript() } else { lambda_ws_local::contract::asyncapi() };
    match &args.out {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
    }
}

async fn dev(args: DevArgs) -> ExitCode {
    if !args.host.is_loopback() {
        if !args.expose {
            eprintln!(
                "error: --host {} would let anyone on your network mint tokens for any user, post to every \
                 connection and read the sessions; pass --expose as well if that is what you want",
                args.host
            );
            return ExitCode::FAILURE;
        }
        eprintln!(
            "warning: listening on {} (--expose): the token issuer (any user, no password), the Management API, \
             the Lambda Invoke API and /_admin/* are reachable from your network",
            args.host
        );
    }
    let mut config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if config.default_channel.is_none() {
        config.default_channel = ChannelName::new("lobby").ok();
    }
    config.ip_limits_on_loopback = args.enforce_ip_limits;
    let store = match args.dynamodb_endpoint {
        Some(endpoint) => StoreChoice::DynamoDb { endpoint, table: args.table },
        None => StoreChoice::Memory,
    };
    let store_text = match &store {
        StoreChoice::Memory => "in memory".to_owned(),
        StoreChoice::DynamoDb { endpoint, table } => format!("DynamoDB table {table} at {endpoint}"),
    };
    let in_process = args.invoke_endpoint.is_none();
    let (routes, routes_text) = if args.template.exists() {
        match Template::load(&args.template) {
            Ok(template) => {
                for route in template.invoked_routes().iter().filter(|_| in_process) {
                    eprintln!(
                        "warning: route {} runs {}, which is not built in; start with --invoke-endpoint to reach it",
                        route.route_key, route.binary
                    );
                }
                (template.route_table(in_process), format!("routes from {}", args.template.display()))
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let table = if in_process { RouteTable::builtin() } else { RouteTable::builtin_invoking_functions() };
        (table, "built-in routes".to_owned())
    };
    let limits = config.rate_limits;
    let config_limits = (
        limits.connect_per_ip,
        limits.connect_per_user,
        config.max_connections_per_user,
        limits.messages_per_connection,
    );
    let options = GatewayOptions {
        routes,
        invoke_endpoint: args.invoke_endpoint.clone(),
        stage: args.stage,
        idle_timeout: args.idle_timeout,
        max_lifetime: args.max_lifetime,
        dev_user: args.user,
        config,
        store,
        pages: args.pages,
        gateway_secret: std::env::var("LWS_GATEWAY_SECRET")
            .ok()
            .and_then(|list| list.split(',').map(str::trim).find(|s| !s.is_empty()).map(str::to_owned)),
        ..GatewayOptions::default()
    };
    let gateway = match Gateway::start(SocketAddr::new(args.host, args.port), options).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let http = gateway.http_url();
    println!();
    match &args.invoke_endpoint {
        Some(endpoint) => println!("  lambda-ws dev is running ({routes_text}, invoking functions at {endpoint})"),
        None => println!("  lambda-ws dev is running ({routes_text}, handlers in-process, sessions {store_text})"),
    }
    println!();
    println!("  Demo page          {http}/");
    println!("  WebSocket          {}?ws_token=<token>&channel=<name>", gateway.websocket_url());
    println!("  Token issuer       POST {http}/ws-token   (header x-lambda-ws: 1; x-lambda-ws-user picks the user)");
    println!(
        "  Management API     {}   (endpoint_url for apigatewaymanagementapi SDKs)",
        gateway.management_endpoint()
    );
    println!("  Lambda Invoke API  {http}   (endpoint_url for lambda SDKs; functions: sender, cleanup)");
    println!();
    let per_ip = match (config_limits.0, args.enforce_ip_limits) {
        (0, _) => "off".to_owned(),
        (n, true) => format!("{n}/min, loopback included (--enforce-ip-limits)"),
        (n, false) => format!("{n}/min, not for loopback clients (--enforce-ip-limits to apply it)"),
    };
    println!(
        "  Limits             $connect per IP {per_ip}; per user {}/min; {} connections per user; messages {}/min",
        config_limits.1, config_limits.2, config_limits.3
    );
    println!();
    println!("  Ctrl-C stops it.");
    println!();
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot wait for Ctrl-C: {e}");
    }
    println!("shutting down: closing {} connection(s)", gateway.connection_count());
    gateway.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
