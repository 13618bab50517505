//! Configuration from environment variables.
//!
//! Every variable is optional except the table name where a DynamoDB store is used. The README's
//! reference table lists them; [`Config::from_lookup`] lets tests and the local gateway supply
//! values without touching the process environment.

use std::time::Duration;

use crate::policy::{ChannelRules, GatewaySecrets, OriginPolicy, PolicyParseError};
use crate::session::{ChannelName, NameError};

/// A variable that is set but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required variable is missing.
    #[error("{0} must be set")]
    Missing(&'static str),
    /// A number is not a number, or out of range.
    #[error("{var} must be {expected}, got {value:?}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was.
        value: String,
    },
    /// An origin list or channel rule list is malformed.
    #[error("{var}: {source}")]
    Policy {
        /// The variable.
        var: &'static str,
        /// The parse failure.
        source: PolicyParseError,
    },
    /// A setting needs another one that is missing.
    #[error("{var} requires {needs}: {why}")]
    Requires {
        /// The variable that is set.
        var: &'static str,
        /// The variable it needs.
        needs: &'static str,
        /// Why.
        why: &'static str,
    },
    /// The default channel breaks the channel rule.
    #[error("LWS_DEFAULT_CHANNEL: {0}")]
    DefaultChannel(NameError),
}

/// Requests allowed per minute for each rate-limited action; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `$connect` attempts per source IP (successful or not).
    pub connect_per_ip: u32,
    /// `$connect` attempts per user.
    pub connect_per_user: u32,
    /// Tokens issued per user.
    pub tokens_per_user: u32,
    /// Messages per connection.
    pub messages_per_connection: u32,
}

impl RateLimits {
    /// Every limit off (local development, tests, benchmarks).
    pub const fn off() -> Self {
        Self { connect_per_ip: 0, connect_per_user: 0, tokens_per_user: 0, messages_per_connection: 0 }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { connect_per_ip: 20, connect_per_user: 20, tokens_per_user: 20, messages_per_connection: 120 }
    }
}

/// Everything a handler needs to know about its deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// DynamoDB table (`LWS_TABLE_NAME`).
    pub table_name: Option<String>,
    /// Allowed browser origins (`LWS_ALLOWED_ORIGINS`, comma-separated; unset or `*` = any).
    pub allowed_origins: OriginPolicy,
    /// Whether `$connect` requires a token (`LWS_REQUIRE_TOKEN`, default `true`).
    pub require_token: bool,
    /// How long an issued token stays valid (`LWS_TOKEN_TTL_SECS`, default 60).
    pub token_ttl: Duration,
    /// Channel joined when `$connect` names none (`LWS_DEFAULT_CHANNEL`; unset = none).
    pub default_channel: Option<ChannelName>,
    /// Who may join which channel (`LWS_CHANNEL_RULES`).
    pub channel_rules: ChannelRules,
    /// Which channels keep history for resume (`LWS_HISTORY`, e.g. `task-*=100/5m`; unset = none).
    pub history: crate::history::HistoryRules,
    /// Which channels have presence (`LWS_PRESENCE`, e.g. `room-*; lobby=500`; unset = none).
    pub presence: crate::presence::PresenceRules,
    /// The metadata keys members of a presence channel see of each other
    /// (`LWS_PRESENCE_METADATA`, comma-separated; unset = none: members see user ids only).
    pub presence_metadata: Vec<String>,
    /// Expected `requestContext.apiId` (`LWS_API_ID`); events from another API are refused.
    pub api_id: Option<String>,
    /// Shared secrets one of which `$connect` events must carry in the `X-Lws-Gateway-Secret`
    /// header (`LWS_GATEWAY_SECRET`, comma-separated for rotation; unset = no check).
    pub gateway_secrets: GatewaySecrets,
    /// Management API endpoint override (`LWS_MANAGEMENT_ENDPOINT`), needed behind a custom
    /// domain; otherwise derived from each event's domain name and stage.
    pub management_endpoint: Option<String>,
    /// How many posts the sender keeps in flight (`LWS_SEND_CONCURRENCY`, default 256).
    pub send_concurrency: usize,
    /// How long a stored session lives (`LWS_SESSION_TTL_SECS`, default 2 h 10 min: API
    /// Gateway's 2 h connection limit plus slack).
    pub session_ttl: Duration,
    /// Most channels one connection may be in (`LWS_MAX_CHANNELS`, default 16).
    pub max_channels_per_connection: usize,
    /// Most open connections one user may have (`LWS_MAX_CONNECTIONS_PER_USER`, default 20;
    /// 0 = no limit). Enforced atomically on `$connect`.
    pub max_connections_per_user: usize,
    /// WebSocket subprotocols `$connect` accepts (`LWS_SUBPROTOCOLS`, comma-separated; unset =
    /// none chosen). The first one the client offers in `Sec-WebSocket-Protocol` is answered; a
    /// client that offers only others is refused with 400.
    pub subprotocols: Vec<String>,
    /// Header the token issuer requires, as a CSRF defence (`LWS_CSRF_HEADER`, default
    /// `x-lambda-ws`; a custom header forces a CORS preflight for cross-site requests).
    pub csrf_header: String,
    /// Whether the per-IP `$connect` limit applies to loopback addresses (default `true`). The
    /// local gateway turns it off unless `--enforce-ip-limits`: every client of a developer's
    /// machine is 127.0.0.1 there, which API Gateway never sees.
    pub ip_limits_on_loopback: bool,
    /// Rate limits (`LWS_RATE_CONNECT_PER_IP`, `LWS_RATE_CONNECT_PER_USER`,
    /// `LWS_RATE_TOKENS_PER_USER`, `LWS_RATE_MESSAGES_PER_CONNECTION`, per minute).
    pub rate_limits: RateLimits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            table_name: None,
            allowed_origins: OriginPolicy::Any,
            require_token: true,
            token_ttl: Duration::from_secs(60),
            default_channel: None,
            channel_rules: ChannelRules::default(),
            history: crate::history::HistoryRules::default(),
            presence: crate::presence::PresenceRules::default(),
            presence_metadata: Vec::new(),
            api_id: None,
            gateway_secrets: GatewaySecrets::default(),
            management_endpoint: None,
            send_concurrency: 256,
            session_ttl: Duration::from_secs(2 * 3600 + 600),
            max_channels_per_connection: 16,
            max_connections_per_user: 20,
            subprotocols: Vec::new(),
            ip_limits_on_loopback: true,
            csrf_header: "x-lambda-ws".to_owned(),
            rate_limits: RateLimits::default(),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut c = Self { table_name: get("LWS_TABLE_NAME"), ..Self::default() };
        if let Some(v) = get("LWS_ALLOWED_ORIGINS") {
            c.allowed_origins =
                OriginPolicy::parse(&v).map_err(|source| ConfigError::Policy { var: "LWS_ALLOWED_ORIGINS", source })?;
        }
        if let Some(v) = get("LWS_REQUIRE_TOKEN") {
            c.require_token = parse_bool("LWS_REQUIRE_TOKEN", &v)?;
        }
        if let Some(v) = get("LWS_TOKEN_TTL_SECS") {
            c.token_ttl = Duration::from_secs(parse_num("LWS_TOKEN_TTL_SECS", &v, 1, crate::token::MAX_TTL_SECS)?);
        }
        if let Some(v) = get("LWS_DEFAULT_CHANNEL") {
            c.default_channel = Some(ChannelName::new(v).map_err(ConfigError::DefaultChannel)?);
        }
        if let Some(v) = get("LWS_CHANNEL_RULES") {
            c.channel_rules =
                ChannelRules::parse(&v).map_err(|source| ConfigError::Policy { var: "LWS_CHANNEL_RULES", source })?;
        }
        if let Some(v) = get("LWS_HISTORY") {
            c.history = crate::history::HistoryRules::parse(&v)
                .map_err(|source| ConfigError::Policy { var: "LWS_HISTORY", source })?;
        }
        if let Some(v) = get("LWS_PRESENCE") {
            c.presence = crate::presence::PresenceRules::parse(&v)
                .map_err(|source| ConfigError::Policy { var: "LWS_PRESENCE", source })?;
        }
        if let Some(v) = get("LWS_PRESENCE_METADATA") {
            c.presence_metadata = v.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect();
        }
        c.api_id = get("LWS_API_ID");
        if let Some(v) = get("LWS_GATEWAY_SECRET") {
            c.gateway_secrets = GatewaySecrets::parse(&v)
                .map_err(|source| ConfigError::Policy { var: "LWS_GATEWAY_SECRET", source })?;
        }
        c.management_endpoint = get("LWS_MANAGEMENT_ENDPOINT").map(|e| e.trim_end_matches('/').to_owned());
        if let Some(v) = get("LWS_SEND_CONCURRENCY") {
            c.send_concurrency = parse_num("LWS_SEND_CONCURRENCY", &v, 1, 10_000)? as usize;
        }
        if let Some(v) = get("LWS_SESSION_TTL_SECS") {
            c.session_ttl = Duration::from_secs(parse_num("LWS_SESSION_TTL_SECS", &v, 60, 7 * 24 * 3600)?);
        }
        if let Some(v) = get("LWS_MAX_CHANNELS") {
            c.max_channels_per_connection = parse_num("LWS_MAX_CHANNELS", &v, 1, 1000)? as usize;
        }
        if let Some(v) = get("LWS_MAX_CONNECTIONS_PER_USER") {
            c.max_connections_per_user = parse_num("LWS_MAX_CONNECTIONS_PER_USER", &v, 0, 100_000)? as usize;
        }
        if let Some(v) = get("LWS_SUBPROTOCOLS") {
            c.subprotocols = v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect();
        }
        if let Some(v) = get("LWS_CSRF_HEADER") {
            c.csrf_header = v.to_ascii_lowercase();
        }
        let limit = |var: &'static str, default: u32| -> Result<u32, ConfigError> {
            get(var).map_or(Ok(default), |v| parse_num(var, &v, 0, 1_000_000).map(|n| n as u32))
        };
        let d = RateLimits::default();
        c.rate_limits = RateLimits {
            connect_per_ip: limit("LWS_RATE_CONNECT_PER_IP", d.connect_per_ip)?,
            connect_per_user: limit("LWS_RATE_CONNECT_PER_USER", d.connect_per_user)?,
            tokens_per_user: limit("LWS_RATE_TOKENS_PER_USER", d.tokens_per_user)?,
            messages_per_connection: limit("LWS_RATE_MESSAGES_PER_CONNECTION", d.messages_per_connection)?,
        };
        Ok(c)
    }

    /// The rules a deployed function's settings must follow together: with a gateway secret (so
    /// something other than API Gateway can reach the functions), replies go only to a configured
    /// `LWS_MANAGEMENT_ENDPOINT`, never to the event's domain name, which such a caller could forge.
    /// [`App::from_env`](crate::App::from_env) calls it; the local gateway supplies its own endpoint.
    pub fn check_deployment(&self) -> Result<(), ConfigError> {
        if self.gateway_secrets.is_enabled() && self.management_endpoint.is_none() {
            return Err(ConfigError::Requires {
                var: "LWS_GATEWAY_SECRET",
                needs: "LWS_MANAGEMENT_ENDPOINT",
                why: "when something other than API Gateway can reach the functions, the event's domain name \
                      cannot be trusted as the place to post replies",
            });
        }
        Ok(())
    }

    /// The table name, or the error that says which variable to set.
    pub fn require_table(&self) -> Result<&str, ConfigError> {
        self.table_name.as_deref().ok_or(ConfigError::Missing("LWS_TABLE_NAME"))
    }
}

fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid { var, expected: "true or false", value: v.to_owned() }),
    }
}

fn parse_num(var: &'static str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    v.parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or_else(|| ConfigError::Invalid {
        var,
        expected: "a whole number in range",
        value: v.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_without_variables() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c, Config::default());
        assert_eq!(c.token_ttl, Duration::from_secs(60));
        assert!(c.require_token);
        assert_eq!(c.require_table(), Err(ConfigError::Missing("LWS_TABLE_NAME")));
    }

    #[test]
    fn reads_every_variable() {
        let c = config(&[
            ("LWS_TABLE_NAME", "ws"),
            ("LWS_ALLOWED_ORIGINS", "https://app.example.com"),
            ("LWS_REQUIRE_TOKEN", "false"),
            ("LWS_TOKEN_TTL_SECS", "30"),
            ("LWS_DEFAULT_CHANNEL", "lobby"),
            ("LWS_CHANNEL_RULES", "*=authenticated"),
            ("LWS_API_ID", "abc123"),
            ("LWS_PRESENCE", "room-*=20"),
            ("LWS_PRESENCE_METADATA", "name, avatar"),
            ("LWS_MANAGEMENT_ENDPOINT", "https://ws.example.com/prod/"),
            ("LWS_SEND_CONCURRENCY", "8"),
            ("LWS_SESSION_TTL_SECS", "600"),
            ("LWS_MAX_CHANNELS", "4"),
            ("LWS_CSRF_HEADER", "X-CSRF"),
            ("LWS_RATE_CONNECT_PER_IP", "0"),
            ("LWS_RATE_MESSAGES_PER_CONNECTION", "5"),
        ])
        .expect("valid");
        assert_eq!(c.require_table(), Ok("ws"));
        assert!(!c.allowed_origins.allows(Some("https://evil.example")));
        assert!(!c.require_token);
        assert_eq!(c.token_ttl, Duration::from_secs(30));
        assert_eq!(c.default_channel.as_ref().map(ChannelName::as_str), Some("lobby"));
        assert_eq!(c.api_id.as_deref(), Some("abc123"));
        let room = ChannelName::new("room-1").expect("name");
        assert_eq!(c.presence.rule_for(&room), Some(crate::presence::PresenceRule { listed: 20 }));
        assert_eq!(c.presence_metadata, ["name", "avatar"]);
        assert_eq!(c.management_endpoint.as_deref(), Some("https://ws.example.com/prod"));
        assert_eq!((c.send_concurrency, c.max_channels_per_connection), (8, 4));
        assert_eq!(c.session_ttl, Duration::from_secs(600));
        assert_eq!(c.csrf_header, "x-csrf");
        assert_eq!(c.rate_limits.connect_per_ip, 0);
        assert_eq!(c.rate_limits.messages_per_connection, 5);
        assert_eq!(c.rate_limits.tokens_per_user, 20);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("LWS_TOKEN_TTL_SECS", "0"),
            ("LWS_TOKEN_TTL_SECS", "soon"),
            ("LWS_REQUIRE_TOKEN", "perhaps"),
            ("LWS_DEFAULT_CHANNEL", "bad name"),
            ("LWS_CHANNEL_RULES", "nope"),
            ("LWS_PRESENCE", "room-*=0"),
            ("LWS_ALLOWED_ORIGINS", "example.com"),
            ("LWS_SEND_CONCURRENCY", "0"),
        ] {
            let err = config(&[(var, value)]).expect_err(var).to_string();
            assert!(err.contains(var), "{err}");
        }
    }
}
