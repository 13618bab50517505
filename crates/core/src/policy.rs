//! Who may connect from where, and who may join which channel.
//!
//! - [`OriginPolicy`]: the `Origin` allow-list that stops cross-site WebSocket hijacking.
//! - [`ChannelRules`]: ordered rules mapping channel patterns to an [`Access`] level.
//! - [`ChannelCheck`]: a hook for application-specific checks (e.g. "is this user a member of
//!   project 42?"), consulted after the rules allow.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;

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

/// One rule: a channel pattern (exact, or a prefix ending in `*`) and its access level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRule {
    /// `lobby`, `team-*` or `*`.
    pub pattern: String,
    /// Who the rule admits.
    pub access: Access,
}

impl ChannelRule {
    fn matches(&self, channel: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => self.pattern == channel,
        }
    }
}

/// Ordered channel rules; the first rule whose pattern matches decides.
///
/// With no rules every channel is open to everyone. With rules, a channel no rule matches is
/// refused, so adding a rule never silently opens the rest (end the list with `*=...` to choose
/// a default).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelRules(pub Vec<ChannelRule>);

impl ChannelRules {
    /// Parses `pattern=access` rules separated by `;`, e.g.
    /// `public-*=all; staff=groups:admin|staff; dm-*=authenticated; *=none`.
    pub fn parse(text: &str) -> Result<Self, PolicyParseError> {
        let mut rules = Vec::new();
        for raw in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || PolicyParseError::Rule(raw.to_owned());
            let (pattern, access) = raw.split_once('=').ok_or_else(bad)?;
            let pattern = pattern.trim();
            let stem = pattern.strip_suffix('*').unwrap_or(pattern);
            if stem.contains('*') || (!stem.is_empty() && ChannelName::new(stem).is_err()) {
                return Err(bad());
            }
            let access = access.parse().map_err(|()| bad())?;
            rules.push(ChannelRule { pattern: pattern.to_owned(), access });
        }
        Ok(Self(rules))
    }

    /// Whether `identity` may join `channel` under these rules.
    pub fn admits(&self, identity: Option<&Identity>, channel: &ChannelName) -> bool {
        if self.0.is_empty() {
            return true;
        }
        self.0.iter().find(|r| r.matches(channel.as_str())).is_some_and(|r| r.access.admits(identity))
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
