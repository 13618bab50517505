//! `lambda-ws send`.

use std::process::ExitCode;

use lambda_ws::{ChannelName, ConnectionId, Outbound, SendRequest, Target};

use super::{Source, fail, progress};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
#[command(group(clap::ArgGroup::new("body").required(true).multiple(true)))]
pub(crate) struct SendArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// One or more connection ids (repeat the flag).
    #[arg(long, group = "target", num_args = 1..)]
    pub(crate) connection: Vec<String>,
    /// Every connection of this user.
    #[arg(long, group = "target")]
    pub(crate) user: Option<String>,
    /// Members of one or more channels, each connection once (repeat the flag).
    #[arg(long, group = "target", num_args = 1..)]
    pub(crate) channel: Vec<String>,
    /// Every live session.
    #[arg(long, group = "target")]
    pub(crate) all: bool,
    /// The message, JSON with a `type`, e.g. '{"type":"toast","level":"info","message":"Hi"}'.
    #[arg(long, group = "body")]
    pub(crate) message: Option<String>,
    /// Read the message from this file (`-` for standard input).
    #[arg(long, group = "body", conflicts_with = "message")]
    pub(crate) file: Option<std::path::PathBuf>,
    /// Close the targeted connections (after delivering the message, if one is given) and
    /// remove their sessions; for --user, tokens issued before now are refused.
    #[arg(long, group = "body")]
    pub(crate) close: bool,
    /// Leave these connections out.
    #[arg(long, num_args = 1..)]
    pub(crate) exclude: Vec<String>,
}

pub(crate) fn send_request(args: &SendArgs) -> Result<SendRequest, String> {
    let text = match (&args.message, &args.file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| format!("stdin: {e}"))?;
            text
        }
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        (None, None) if args.close => String::new(),
        (None, None) => return Err("give --message, --file or --close".into()),
    };
    let message: Option<Outbound> = if text.is_empty() && args.close {
        None
    } else {
        let message: Outbound = serde_json::from_str(&text).map_err(|e| format!("the message is not valid: {e}"))?;
        message.validate().map_err(|e| format!("the message is not valid: {e}"))?;
        Some(message)
    };
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
    let request = match message {
        Some(message) => SendRequest::new(target, message),
        None => SendRequest::close(target),
    };
    let request = if args.close { request.closing() } else { request };
    Ok(request.excluding(ids(&args.exclude)?))
}

pub(crate) async fn send(args: &SendArgs) -> ExitCode {
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
