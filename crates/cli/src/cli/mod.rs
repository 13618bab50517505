//! The operator commands, one module each, and what they share: where the sessions are, errors,
//! progress.

pub(crate) mod cleanup;
pub(crate) mod send;
pub(crate) mod sessions;
pub(crate) mod tokens;

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lambda_ws_cli::ops::{Backend, OpsError};

/// Where the sessions are: a DynamoDB table or a running local gateway.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Source {
    /// DynamoDB table (region, credentials and endpoint from the usual AWS environment, e.g.
    /// AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_DYNAMODB).
    #[arg(long, env = "LWS_TABLE_NAME")]
    pub(crate) table: Option<String>,
    /// A running `lambda-ws dev`, e.g. http://127.0.0.1:3001.
    #[arg(long)]
    pub(crate) gateway: Option<String>,
}

impl Source {
    pub(crate) async fn backend(&self) -> Result<Backend, OpsError> {
        match (&self.table, &self.gateway) {
            (_, Some(url)) => Ok(Backend::gateway(url)),
            (Some(table), None) => Backend::table(table).await,
            (None, None) => Ok(Backend::gateway("http://127.0.0.1:3001")),
        }
    }
}

pub(crate) fn fail(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}

/// A spinner with a count on standard error (hidden when it is not a terminal).
pub(crate) fn progress(what: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
