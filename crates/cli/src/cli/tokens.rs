//! `lambda-ws tokens purge`.

use std::process::ExitCode;

use clap::Subcommand;

use super::{Source, fail};

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Delete connect tokens whose time has passed.
    Purge(PurgeArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct PurgeArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// Count them; delete nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

pub(crate) async fn purge_tokens(args: &PurgeArgs) -> ExitCode {
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
