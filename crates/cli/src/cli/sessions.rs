//! `lambda-ws sessions list` and `lambda-ws sessions close`.

use std::process::ExitCode;

use clap::Subcommand;
use lambda_ws::admin::Selection;
use lambda_ws::{ChannelName, ConnectionId, SendRequest, Target};

use super::{Source, fail, progress};

#[derive(Debug, Subcommand)]
pub(crate) enum SessionsCommand {
    /// List live sessions (oldest first) with their user, channels and age.
    List(ListArgs),
    /// Close sessions (a logout, a ban): every connection of a user, one connection, or a
    /// channel's members; for a user, tokens issued before the close are refused from now on.
    Close(CloseArgs),
}

#[derive(Debug, clap::Args)]
#[group(id = "whose", required = true, multiple = false, args = ["user", "connection", "channel"])]
pub(crate) struct CloseArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// Every connection of this user.
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// This connection.
    #[arg(long)]
    pub(crate) connection: Option<String>,
    /// Every member of this channel.
    #[arg(long)]
    pub(crate) channel: Option<String>,
    /// Print the sender's report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn close_sessions(args: &CloseArgs) -> ExitCode {
    let target = match (&args.user, &args.connection, &args.channel) {
        (Some(user), _, _) => Target::User(user.clone()),
        (_, Some(id), _) => match ConnectionId::new(id.as_str()) {
            Ok(id) => Target::Connection(id),
            Err(e) => return fail(e),
        },
        (_, _, Some(channel)) => match ChannelName::new(channel.as_str()) {
            Ok(channel) => Target::Channel(channel),
            Err(e) => return fail(e),
        },
        (None, None, None) => return fail("name --user, --connection or --channel"),
    };
    let backend = match args.source.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let report = match backend.send(&SendRequest::close(target)).await {
        Ok(report) => report,
        Err(e) => return fail(e),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    }
    if let Some(error) = report.get("error") {
        return fail(error["message"].as_str().unwrap_or("the sender refused"));
    }
    if !args.json {
        let count = |name: &str| report[name].as_array().map_or(0, Vec::len);
        let closed = report["closed"].as_u64().unwrap_or(0);
        println!(
            "closed {closed} connection{}; {} already gone, {} could not be closed",
            if closed == 1 { "" } else { "s" },
            count("gone"),
            count("failed")
        );
        if args.user.is_some() {
            println!("tokens issued to the user before now are refused");
        }
    }
    if report["failed"].as_array().is_some_and(|f| !f.is_empty()) || report.get("incomplete").is_some() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// Only members of this channel.
    #[arg(long, conflicts_with = "user")]
    pub(crate) channel: Option<String>,
    /// Only this user's connections.
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// At most this many.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn list_sessions(args: &ListArgs) -> ExitCode {
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
pub(crate) fn age(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}
