//! `lambda-ws`: the local gateway (`lambda-ws dev`), operator commands (`sessions list`, `send`,
//! `cleanup`, `tokens purge`) and the contract files (`lambda-ws schema`). One module per command
//! in `cli/`; `dev` and `schema` are the gateway library's `Dev` with this repository's functions
//! (`lambda_ws_cli::repository::dev`).

// Command output is this binary's user interface; libraries never print.
#![allow(clippy::print_stdout)]

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lambda_ws_cli::repository;
use lambda_ws_local::dev::{DevArgs, SchemaArgs};

use cli::cleanup::CleanupArgs;
use cli::send::SendArgs;
use cli::sessions::SessionsCommand;
use cli::tokens::TokensCommand;

// The same allocator as the Lambda functions, so the gateway runs the handlers as they run in AWS.
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    lambda_ws_local::dev::init_logs();
    match cli.command {
        Command::Dev(args) => repository::dev().serve(args).await,
        Command::Schema(args) => repository::dev().write_schema(&args),
        Command::Sessions { command: SessionsCommand::List(args) } => cli::sessions::list_sessions(&args).await,
        Command::Sessions { command: SessionsCommand::Close(args) } => cli::sessions::close_sessions(&args).await,
        Command::Send(args) => cli::send::send(&args).await,
        Command::Cleanup(args) => cli::cleanup::cleanup(&args).await,
        Command::Tokens { command: TokensCommand::Purge(args) } => cli::tokens::purge_tokens(&args).await,
    }
}
