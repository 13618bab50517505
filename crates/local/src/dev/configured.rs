//! The configuration each function runs with under the dev gateway: the environment its
//! template gives it (parameters from their defaults or `--parameter-overrides`), with any `LWS_*`
//! variable set in the shell over it; without a template, the shell's variables and the dev
//! defaults. What it applied is listed at start-up.

use std::collections::{BTreeMap, BTreeSet};

use lambda_ws::{ChannelName, Config};

use super::{DEV_HISTORY, DEV_PRESENCE, DevError};
use crate::server::FunctionRoles;
use crate::template::environment::{Environment, Resolved};

/// What the gateway runs each function with, and the lines that say so.
#[derive(Debug)]
pub(super) struct Configured {
    /// The gateway's own configuration (its `$connect` function's, or the shell's).
    pub(super) base: Config,
    /// Each function's, by binary.
    pub(super) functions: BTreeMap<String, Config>,
    /// Which binaries serve the issuer, the sender and the clean-up.
    pub(super) roles: FunctionRoles,
    /// The start-up listing.
    pub(super) lines: Vec<String>,
}

/// Without a template: the shell's variables, with the dev defaults for what they leave unset.
pub(super) fn without_template(shell: &dyn Fn(&str) -> Option<String>) -> Result<Configured, DevError> {
    let mut config =
        Config::from_lookup(shell).map_err(|source| DevError::Config { origin: "shell".into(), source })?;
    let mut lines =
        vec!["no template: LWS_* variables from the shell, and these defaults for what they leave unset".into()];
    if shell("LWS_HISTORY").is_none() {
        // Resume out of the box: the demo's chat, chat rooms and task channels keep history.
        config.history = lambda_ws::history::HistoryRules::parse(DEV_HISTORY).unwrap_or_default();
        lines.push(format!("LWS_HISTORY={DEV_HISTORY}"));
    }
    if shell("LWS_PRESENCE").is_none() {
        // Who is here, out of the box: the demo's chat and chat rooms list their members.
        config.presence = lambda_ws::presence::PresenceRules::parse(DEV_PRESENCE).unwrap_or_default();
        lines.push(format!("LWS_PRESENCE={DEV_PRESENCE}"));
    }
    if config.default_channel.is_none() {
        config.default_channel = ChannelName::new("lobby").ok();
        lines.push("LWS_DEFAULT_CHANNEL=lobby".into());
    }
    Ok(Configured { base: config, functions: BTreeMap::new(), roles: FunctionRoles::default(), lines })
}

/// From a template's environment: each function's variables (the shell's `LWS_*` over them).
pub(super) fn from_template(
    env: &Environment,
    template: &str,
    connect_binary: Option<&str>,
    shell: &dyn Fn(&str) -> Option<String>,
) -> Result<Configured, DevError> {
    let mut functions = BTreeMap::new();
    for f in &env.functions {
        let lookup = |name: &str| shell(name).or_else(|| f.value(name).map(str::to_owned));
        let config = Config::from_lookup(lookup)
            .map_err(|source| DevError::Config { origin: format!("{template}, function {}", f.logical_id), source })?;
        functions.insert(f.binary.clone(), config);
    }
    let base = connect_binary.and_then(|b| functions.get(b)).cloned().map_or_else(
        || Config::from_lookup(shell).map_err(|source| DevError::Config { origin: "shell".into(), source }),
        Ok,
    )?;
    let roles = FunctionRoles {
        issuer: env
            .functions
            .iter()
            .find(|f| f.http_paths.iter().any(|p| p.ends_with("/ws-token")))
            .map(|f| f.binary.clone()),
        sender: env
            .functions
            .iter()
            .find(|f| f.binary == "sender" || f.binary.ends_with("-sender"))
            .map(|f| f.binary.clone()),
        cleanup: env.functions.iter().find(|f| f.scheduled || f.binary.ends_with("cleanup")).map(|f| f.binary.clone()),
    };
    let overridden: Vec<String> =
        env.parameters.iter().filter(|(_, _, o)| *o).map(|(name, value, _)| format!("{name}={value}")).collect();
    let mut lines = vec![format!(
        "from {template}: parameters {}; an LWS_* variable set in the shell wins",
        if overridden.is_empty() {
            "at their defaults".to_owned()
        } else {
            format!("at their defaults but {}", overridden.join(", "))
        }
    )];
    lines.extend(listing(env, shell));
    Ok(Configured { base, functions, roles, lines })
}

/// One line per `LWS_*` variable: its value and where it came from, with the functions it applies
/// to when they differ.
fn listing(env: &Environment, shell: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let names: BTreeSet<&str> = env
        .functions
        .iter()
        .flat_map(|f| f.variables.keys().map(String::as_str))
        .filter(|name| name.starts_with("LWS_"))
        .collect();
    let mut lines = Vec::new();
    for name in names {
        if let Some(value) = shell(name) {
            lines.push(format!("{name}={value}   (shell)"));
            continue;
        }
        let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for f in &env.functions {
            let text = match f.variables.get(name) {
                Some(Resolved::Value { value, origin }) if value.is_empty() => format!("{name}=\"\"   ({origin})"),
                Some(Resolved::Value { value, origin }) => format!("{name}={value}   ({origin})"),
                Some(Resolved::Resource(resource)) => format!("{name}: the gateway's own ({resource})"),
                Some(Resolved::Unresolved(why)) => format!("{name}: not set ({why})"),
                None => continue,
            };
            seen.entry(text).or_default().push(&f.binary);
        }
        let every = seen.len() == 1 && seen.values().all(|fs| fs.len() == env.functions.len());
        for (text, binaries) in seen {
            lines.push(if every { text } else { format!("{text}   [{}]", binaries.join(", ")) });
        }
    }
    lines
}
