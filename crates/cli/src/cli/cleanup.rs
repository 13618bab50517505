//! `lambda-ws cleanup`.

use std::process::ExitCode;

use lambda_ws::admin::CleanupOptions;

use super::{Source, fail, progress};

#[derive(Debug, clap::Args)]
pub(crate) struct CleanupArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// Report what would be removed; remove nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Also ask the Management API about every live session and remove those it reports gone
    /// (one request per session).
    #[arg(long)]
    pub(crate) check_connections: bool,
}

pub(crate) async fn cleanup(args: &CleanupArgs) -> ExitCode {
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
            if summary.recounted > 0 {
                println!("corrected the presence counts of {} channel(s)", summary.recounted);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
