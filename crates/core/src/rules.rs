//! One table of channel rules for every feature that has them: `pattern[=value]` rules separated
//! by `;`, first match wins. A pattern is a channel name, or a prefix followed by `*` (`*` alone
//! matches every channel).
//!
//! The channel rules (`LWS_CHANNEL_RULES`: who may join), the history rules (`LWS_HISTORY`: what a
//! channel keeps) and the presence rules (`LWS_PRESENCE`: who is listed) are each a [`Rules`] of
//! their own value type, parsed by one parser and matched by one lookup.

use crate::policy::PolicyParseError;
use crate::session::ChannelName;

/// Ordered `(pattern, value)` rules; the first whose pattern matches a channel applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules<R>(Vec<(String, R)>);

impl<R> Default for Rules<R> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<R> Rules<R> {
    /// Rules from `(pattern, value)` pairs, in order (each pattern checked).
    pub fn new(rules: impl IntoIterator<Item = (String, R)>) -> Result<Self, String> {
        let rules: Vec<(String, R)> = rules.into_iter().collect();
        match rules.iter().find(|(pattern, _)| !valid_pattern(pattern)) {
            Some((pattern, _)) => Err(pattern.clone()),
            None => Ok(Self(rules)),
        }
    }

    /// Parses `pattern[=value]; ...`: `value` reads the text after `=` (`None` when there is
    /// none) and says `None` for what it refuses; `error` makes the error for a refused rule
    /// from its text.
    pub fn parse_with(
        text: &str,
        value: impl Fn(Option<&str>) -> Option<R>,
        error: impl Fn(String) -> PolicyParseError,
    ) -> Result<Self, PolicyParseError> {
        let mut rules = Vec::new();
        for raw in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (pattern, text) = match raw.split_once('=') {
                Some((pattern, text)) => (pattern.trim(), Some(text.trim())),
                None => (raw, None),
            };
            let rule = value(text).filter(|_| valid_pattern(pattern)).ok_or_else(|| error(raw.to_owned()))?;
            rules.push((pattern.to_owned(), rule));
        }
        Ok(Self(rules))
    }

    /// The value of the first rule whose pattern matches `channel`.
    pub fn rule_for(&self, channel: &ChannelName) -> Option<R>
    where
        R: Clone,
    {
        self.0.iter().find(|(pattern, _)| pattern_matches(pattern, channel.as_str())).map(|(_, rule)| rule.clone())
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rules in order, as `(pattern, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &R)> {
        self.0.iter().map(|(pattern, rule)| (pattern.as_str(), rule))
    }
}

/// Whether a channel pattern (a name, or a prefix ending in `*`) matches `channel`.
pub fn pattern_matches(pattern: &str, channel: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => pattern == channel,
    }
}

/// Whether `pattern` is a channel name, or a prefix of one followed by a single `*` (`*` alone
/// matches every channel).
pub fn valid_pattern(pattern: &str) -> bool {
    let stem = pattern.strip_suffix('*').unwrap_or(pattern);
    !stem.contains('*') && (stem.is_empty() || ChannelName::new(stem).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn first_match_wins_and_bad_rules_are_refused() {
        let rules: Rules<u32> =
            Rules::parse_with("room-1=1; room-*=2; *=3", |v| v?.parse().ok(), PolicyParseError::Rule)
                .unwrap_or_default();
        let of = |name: &str| rules.rule_for(&channel(name));
        assert_eq!((of("room-1"), of("room-2"), of("lobby")), (Some(1), Some(2), Some(3)));
        for bad in ["room-*", "room=x", "ro*m=1", "bad name=1", "**=1"] {
            assert!(Rules::<u32>::parse_with(bad, |v| v?.parse().ok(), PolicyParseError::Rule).is_err(), "{bad}");
        }
        let bare: Rules<bool> =
            Rules::parse_with("lobby; team-*", |v| Some(v.is_none()), PolicyParseError::Rule).unwrap_or_default();
        assert_eq!(bare.rule_for(&channel("team-a")), Some(true));
        assert!(bare.rule_for(&channel("other")).is_none());
        assert!(Rules::<u32>::default().is_empty());
    }
}
