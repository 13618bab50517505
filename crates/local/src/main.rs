//! `lambda-ws`: the local gateway (`lambda-ws dev`) and the contract files (`lambda-ws schema`).

// The startup banner is this command's user interface; libraries never print.
#![allow(clippy::print_stdout)]

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lambda_ws::{ChannelName, Config};
use lambda_ws_local::template::Template;
use lambda_ws_local::{Gateway, GatewayOptions, RouteTable, StoreChoice};

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
    /// Write the wire contract: the AsyncAPI 3.0 document (default), or with --typescript the
    /// TypeScript declarations the browser client ships.
    Schema(SchemaArgs),
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
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
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
    let options = GatewayOptions {
        routes,
        invoke_endpoint: args.invoke_endpoint.clone(),
        stage: args.stage,
        idle_timeout: args.idle_timeout,
        max_lifetime: args.max_lifetime,
        dev_user: args.user,
        config,
        store,
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
