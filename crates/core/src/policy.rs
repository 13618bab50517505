//! Who may connect from where, and who may join which channel.
//!
//! - [`OriginPolicy`]: the `Origin` allow-list that stops cross-site WebSocket hijacking.
//! - [`ChannelRules`]: ordered rules mapping channel patterns to an [`Access`] level.
//! - [`ChannelCheck`]: a hook for application-specific checks (e.g. "is this user a member of
//!   project 42?"), consulted after the rules allow.
//! - [`GatewaySecrets`]: an optional shared secret `$connect` events must carry.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::rules::Rules;
pub use crate::rules::{pattern_matches, valid_pattern};
use crate::session::{ChannelName, Identity};

/// Why a policy value from configuration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyParseError {
    /// An origin pattern is not `scheme://host[:port]`.
    #[error("invalid origin pattern {0:?}: expected scheme://host[:port], e.g. https://*.example.com")]
    Origin(String),
    /// A channel rule is not `pattern=access`.
    #[error("invalid channel rule {0:?}: expected pattern=access, e.g. public-*=all or staff=groups:admin|staff")]
    Rule(String),
    /// A history rule is not `pattern=size/window`.
    #[error(
        "invalid history rule {0:?}: expected pattern=size/window, e.g. task-*=100/5m (size 1-1000, window up to 24h)"
    )]
    History(String),
    /// A presence rule is not `pattern` or `pattern=listed`.
    #[error(
        "invalid presence rule {0:?}: expected pattern or pattern=listed, e.g. room-* or lobby=500 (listed 1-1000)"
    )]
    Presence(String),
    /// A gateway secret is too short or has characters a header cannot carry unchanged.
    #[error("each secret must be at least 32 characters of A-Z a-z 0-9 . _ ~ + / = -")]
    Secret,
}

/// A normalized origin: lowercase scheme and host, explicit port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(raw: &str) -> Option<Self> {
        let (scheme, rest) = raw.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        // An Origin has no path; tolerate a single trailing slash in configuration.
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return None;
        }
        // `[::1]:8080` keeps its brackets as the host; otherwise the last `:` starts the port.
        let (host, port) = if authority.starts_with('[') {
            let end = authority.find(']')? + 1;
            match &authority[end..] {
                "" => (&authority[..end], default_port),
                p => (&authority[..end], p.strip_prefix(':')?.parse().ok()?),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return None;
        }
        Some(Self { scheme, host: host.to_ascii_lowercase(), port })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginPattern {
    Exact(Origin),
    /// `https://*.example.com` matches any subdomain of example.com, not example.com itself and
    /// not `evilexample.com`.
    Subdomains(Origin),
}

/// Which browser origins may open a connection or request a token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OriginPolicy {
    /// Any origin, and requests without one (development default; log a warning in production).
    #[default]
    Any,
    /// Only these origins; a request without an `Origin` header is refused.
    List(Vec<String>),
}

impl OriginPolicy {
    /// Parses a comma-separated list; empty or `*` means [`OriginPolicy::Any`].
    pub fn parse(list: &str) -> Result<Self, PolicyParseError> {
        let items: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if items.is_empty() || items == ["*"] {
            return Ok(Self::Any);
        }
        for item in &items {
            parse_pattern(item).ok_or_else(|| PolicyParseError::Origin((*item).to_owned()))?;
        }
        Ok(Self::List(items.into_iter().map(str::to_owned).collect()))
    }

    /// Whether a request with this `Origin` header (or none) is allowed.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let patterns = match self {
            Self::Any => return true,
            Self::List(patterns) => patterns,
        };
        let Some(origin) = origin.and_then(Origin::parse) else {
            return false;
        };
        patterns.iter().filter_map(|p| parse_pattern(p)).any(|pattern| match pattern {
            OriginPattern::Exact(o) => o == origin,
            OriginPattern::Subdomains(o) => {
                o.scheme == origin.scheme
                    && o.port == origin.port
                    && origin.host.len() > o.host.len() + 1
                    && origin.host.ends_with(&o.host)
                    && origin.host.as_bytes()[origin.host.len() - o.host.len() - 1] == b'.'
            }
        })
    }
}

fn parse_pattern(raw: &str) -> Option<OriginPattern> {
    match raw.split_once("://*.") {
        Some((scheme, rest)) => Origin::parse(&format!("{scheme}://{rest}")).map(OriginPattern::Subdomains),
        None => Origin::parse(raw).map(OriginPattern::Exact),
    }
}

/// Who may join a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone, including connections without a token.
    All,
    /// Any connection with an identity.
    Authenticated,
    /// Only these user ids.
    Users(Vec<String>),
    /// Users in at least one of these groups.
    Groups(Vec<String>),
    /// Nobody.
    None,
}

impl Access {
    /// Whether `identity` satisfies this access level.
    pub fn admits(&self, identity: Option<&Identity>) -> bool {
        match (self, identity) {
            (Self::All, _) => true,
            (Self::None, _) | (_, None) => false,
            (Self::Authenticated, Some(_)) => true,
            (Self::Users(users), Some(id)) => users.contains(&id.user_id),
            (Self::Groups(groups), Some(id)) => id.groups.iter().any(|g| groups.contains(g)),
        }
    }
}

impl FromStr for Access {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let list = |v: &str| -> Result<Vec<String>, ()> {
            let items: Vec<String> = v.split('|').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
            if items.is_empty() { Err(()) } else { Ok(items) }
        };
        match s.trim() {
            "all" => Ok(Self::All),
            "authenticated" => Ok(Self::Authenticated),
            "none" => Ok(Self::None),
            other => match other.split_once(':') {
                Some(("users", v)) => list(v).map(Self::Users),
                Some(("groups", v)) => list(v).map(Self::Groups),
                _ => Err(()),
            },
        }
    }
}

/// Ordered channel rules (`LWS_CHANNEL_RULES`); the first rule whose pattern matches decides.
///
/// With no rules every channel is open to everyone. With rules, a channel no rule matches is
/// refused, so adding a rule never silently opens the rest (end the list with `*=...` to choose
/// a default).
pub type ChannelRules = Rules<Access>;

impl Rules<Access> {
    /// Parses `pattern=access` rules separated by `;`, e.g.
    /// `public-*=all; staff=groups:admin|staff; dm-*=authenticated; *=none`.
    pub fn parse(text: &str) -> Result<Self, PolicyParseError> {
        Rules::parse_with(text, |access| access?.parse().ok(), PolicyParseError::Rule)
    }

    /// Whether `identity` may join `channel` under these rules.
    pub fn admits(&self, identity: Option<&Identity>, channel: &ChannelName) -> bool {
        if self.is_empty() {
            return true;
        }
        self.rule_for(channel).is_some_and(|access| access.admits(identity))
    }
}

/// The header a deployment's front sends with each `$connect` when a gateway secret is set.
pub const GATEWAY_SECRET_HEADER: &str = "x-lws-gateway-secret";

/// Shared secrets, one of which a `$connect` event must carry in [`GATEWAY_SECRET_HEADER`].
///
/// Not needed behind API Gateway's Lambda proxy integrations, where the function's resource
/// policy already decides who may invoke it. It is for deployments where something else can
/// reach the handlers (an HTTP integration to a shared service, a function URL, a proxy).
/// Several secrets may be configured at once so one can be rotated without downtime.
///
/// Only SHA-256 digests are kept, and a presented value is compared against every one of them
/// in constant time, so neither the match nor its position leaks through timing.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct GatewaySecrets(Vec<[u8; 32]>);

impl fmt::Debug for GatewaySecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GatewaySecrets({} configured)", self.0.len())
    }
}

impl GatewaySecrets {
    /// Fewest characters a secret may have.
    pub const MIN_LEN: usize = 32;

    /// Parses a comma-separated list. Each secret must be at least [`Self::MIN_LEN`] characters
    /// of `A-Z a-z 0-9 . _ ~ + / = -` (what fits in a header value unchanged, e.g. base64).
    pub fn parse(list: &str) -> Result<Self, PolicyParseError> {
        let mut digests = Vec::new();
        for secret in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._~+/=-".contains(&b);
            if secret.len() < Self::MIN_LEN || !secret.bytes().all(allowed) {
                return Err(PolicyParseError::Secret);
            }
            digests.push(Sha256::digest(secret.as_bytes()).into());
        }
        Ok(Self(digests))
    }

    /// Whether any secret is configured (no secret = no check).
    pub fn is_enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `presented` is acceptable: always when no secret is configured, otherwise when
    /// it equals one of the secrets. Every configured secret is compared, in constant time.
    pub fn verify(&self, presented: Option<&str>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Some(presented) = presented else { return false };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let matched = self.0.iter().fold(Choice::from(0), |acc, known| acc | known.ct_eq(&digest));
        matched.into()
    }
}

/// An application's own channel check, consulted after [`ChannelRules`] allow a join, on
/// `$connect` and on `subscribe` alike.
///
/// ```
/// use lambda_ws::{ChannelCheck, ChannelName, Identity};
///
/// #[derive(Debug)]
/// struct OwnRoomOnly;
///
/// #[lambda_ws::async_trait]
/// impl ChannelCheck for OwnRoomOnly {
///     async fn allows(&self, identity: Option<&Identity>, channel: &ChannelName) -> bool {
///         match channel.as_str().strip_prefix("user-") {
///             Some(owner) => identity.is_some_and(|i| i.user_id == owner),
///             None => true,
///         }
///     }
/// }
/// ```
#[async_trait]
pub trait ChannelCheck: Send + Sync + fmt::Debug {
    /// Whether `identity` may join `channel`.
    async fn allows(&self, identity: Option<&Identity>, channel: &ChannelName) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_secrets_accept_any_configured_one_and_nothing_else() {
        let a = "A".repeat(32);
        let b = "b1/+=._~-".repeat(4);
        let secrets = GatewaySecrets::parse(&format!("{a}, {b}")).expect("parses");
        assert!(secrets.is_enabled());
        assert!(secrets.verify(Some(&a)) && secrets.verify(Some(&b)), "either secret, for rotation");
        for wrong in [None, Some(""), Some(&a[..31]), Some(&*format!("{a}A")), Some(&*"a".repeat(32))] {
            assert!(!secrets.verify(wrong), "{wrong:?}");
        }
        assert!(GatewaySecrets::default().verify(None), "no secret configured: no check");
        assert_eq!(format!("{secrets:?}"), "GatewaySecrets(2 configured)", "never printed");
        for bad in ["short", &format!("{}!", "x".repeat(40)), &format!("{a},{}", "y".repeat(31))] {
            assert_eq!(GatewaySecrets::parse(bad), Err(PolicyParseError::Secret), "{bad}");
        }
    }

    #[test]
    fn origin_list_matches_exactly_with_default_ports() {
        let p = OriginPolicy::parse("https://app.example.com, http://localhost:3000").expect("parses");
        assert!(p.allows(Some("https://app.example.com")));
        assert!(p.allows(Some("https://APP.example.com:443")));
        assert!(p.allows(Some("http://localhost:3000")));
        assert!(!p.allows(Some("http://app.example.com")), "scheme differs");
        assert!(!p.allows(Some("https://app.example.com:8443")), "port differs");
        assert!(!p.allows(Some("http://localhost:3001")));
        assert!(!p.allows(Some("https://app.example.com.evil.io")));
        assert!(!p.allows(Some("null")));
        assert!(!p.allows(None), "a listed policy refuses requests without Origin");
    }

    #[test]
    fn subdomain_patterns_refuse_lookalikes() {
        let p = OriginPolicy::parse("https://*.example.com").expect("parses");
        assert!(p.allows(Some("https://a.example.com")));
        assert!(p.allows(Some("https://a.b.example.com")));
        assert!(!p.allows(Some("https://example.com")));
        assert!(!p.allows(Some("https://evilexample.com")));
        assert!(!p.allows(Some("https://a.example.com.evil.io")));
        assert!(!p.allows(Some("http://a.example.com")));
    }

    #[test]
    fn any_policy_and_bad_patterns() {
        assert_eq!(OriginPolicy::parse("").expect("empty"), OriginPolicy::Any);
        assert_eq!(OriginPolicy::parse(" * ").expect("star"), OriginPolicy::Any);
        assert!(OriginPolicy::Any.allows(None));
        for bad in ["example.com", "ftp://x.com", "https://x.com/path", "https://", "https://x.com:notaport"] {
            assert!(OriginPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    fn ch(name: &str) -> ChannelName {
        ChannelName::new(name).expect("valid channel")
    }

    #[test]
    fn channel_rules_first_match_decides() {
        let rules =
            ChannelRules::parse("public-*=all; staff=groups:admin|staff; dm-*=authenticated; vip=users:ann|bob")
                .expect("parses");
        let ann = Identity::user("ann");
        let admin = Identity::user("zed").with_groups(["admin"]);
        assert!(rules.admits(None, &ch("public-news")));
        assert!(!rules.admits(None, &ch("dm-1")));
        assert!(rules.admits(Some(&ann), &ch("dm-1")));
        assert!(rules.admits(Some(&admin), &ch("staff")));
        assert!(!rules.admits(Some(&ann), &ch("staff")));
        assert!(rules.admits(Some(&ann), &ch("vip")));
        assert!(!rules.admits(Some(&admin), &ch("vip")));
        assert!(!rules.admits(Some(&admin), &ch("unlisted")), "no matching rule refuses");
        assert!(ChannelRules::default().admits(None, &ch("anything")), "no rules admit all");
        let closed = ChannelRules::parse("*=none").expect("parses");
        assert!(!closed.admits(Some(&admin), &ch("x")));
    }

    #[test]
    fn bad_channel_rules_are_refused() {
        for bad in ["lobby", "lobby=maybe", "a*b=all", "bad name=all", "x=users:", "x=groups:|"] {
            assert!(ChannelRules::parse(bad).is_err(), "{bad}");
        }
    }
}
