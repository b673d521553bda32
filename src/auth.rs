//! API tokens: 256 random bits, shown once, stored only as a SHA-256 hash and compared in
//! constant time. A token authenticates a request; it never makes anything installable.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom;

/// Token roles: `admin` tokens may change things; `reporter` tokens (agents) may only post
/// reports, as the agents their [`Scope`] names, and list agents.
pub const ADMIN: &str = "admin";
pub const REPORTER: &str = "reporter";

/// A fresh token: (token text, token id, SHA-256 of the token).
/// Format: `arca_<16 hex id>_<43 base64url chars of secret>`.
pub fn new_token() -> anyhow::Result<(String, String, Vec<u8>)> {
    let rng = ring::rand::SystemRandom::new();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill(&mut id)
        .and_then(|_| rng.fill(&mut secret))
        .map_err(|_| anyhow::anyhow!("the secure random generator failed"))?;
    let id = hex::encode(id);
    let token = format!("arca_{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = token_hash(&token);
    Ok((token, id, hash))
}

/// The id part of a well-formed token.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("arca_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 43)
        .then_some(id)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// Constant-time comparison of a presented token with a stored hash.
pub fn matches(token: &str, stored_hash: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(token_hash(token).as_slice().ct_eq(stored_hash))
}

/// Most agent patterns, and most channels, a reporter token may carry (a declared fleet is a few
/// patterns, not an inventory).
pub const MAX_BINDINGS: usize = 64;

/// Whom a reporter token may speak for: agent ids (exact, or a prefix followed by `*`, or `*`
/// for any) and, optionally, channels. Invented ids outside the patterns count for nothing:
/// their reports are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    /// Agent id patterns; empty for admin tokens (which report for nobody).
    pub agents: Vec<String>,
    /// Channels the token may report on; empty means every channel.
    pub channels: Vec<String>,
}

impl Scope {
    /// Checks one agent pattern: an agent id, optionally ending in `*` (a prefix), or `*`.
    pub fn check_pattern(p: &str) -> Result<(), String> {
        if p.is_empty() {
            return Err("an empty agent pattern names no agent".into());
        }
        let stem = p.strip_suffix('*').unwrap_or(p);
        if stem.contains('*') {
            return Err(format!(
                "agent pattern {p:?}: `*` may only end it (e.g. `web-*`)"
            ));
        }
        if stem.is_empty() {
            return Ok(());
        }
        let valid = stem.len() <= 128
            && stem.as_bytes()[0].is_ascii_alphanumeric()
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if valid {
            Ok(())
        } else {
            Err(format!(
                "agent pattern {p:?} is not an agent id ([A-Za-z0-9._:-], starting alphanumeric) \
                 or such a prefix followed by `*`"
            ))
        }
    }

    /// Whether the token may report as `agent`.
    pub fn allows_agent(&self, agent: &str) -> bool {
        self.agents.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => agent.starts_with(prefix),
            None => p == agent,
        })
    }

    /// Whether the token may report on `channel`.
    pub fn allows_channel(&self, channel: &str) -> bool {
        self.channels.is_empty() || self.channels.iter().any(|c| c == channel)
    }

    /// `web-1, web-*` / `any channel`: for messages and listings.
    pub fn describe(&self) -> (String, String) {
        let agents = if self.agents.is_empty() {
            "no agent".to_owned()
        } else {
            self.agents.join(", ")
        };
        let channels = if self.channels.is_empty() {
            "any channel".to_owned()
        } else {
            self.channels.join(", ")
        };
        (agents, channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_match() {
        let (t, id, h) = new_token().unwrap();
        assert_eq!(token_id(&t), Some(id.as_str()));
        assert!(matches(&t, &h));
        let mut other = t.clone();
        other.pop();
        other.push('A');
        assert!(!matches(&other, &h) || other == t);
        assert_eq!(token_id("arca_zz_x"), None);
        assert_eq!(token_id("bearer"), None);
    }

    #[test]
    fn scopes_bind_agents_and_channels() {
        let s = Scope {
            agents: vec!["web-1".into(), "db-*".into()],
            channels: vec!["prod".into()],
        };
        assert!(s.allows_agent("web-1"));
        assert!(!s.allows_agent("web-10"));
        assert!(s.allows_agent("db-7"));
        assert!(!s.allows_agent("dbx"));
        assert!(s.allows_channel("prod"));
        assert!(!s.allows_channel("dev"));
        let any = Scope {
            agents: vec!["*".into()],
            channels: vec![],
        };
        assert!(any.allows_agent("anything") && any.allows_channel("dev"));
        assert!(!Scope::default().allows_agent("web-1"));
        for ok in ["*", "web-*", "host-1", "a.b:c_d-*"] {
            assert!(Scope::check_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["w*b", "**", "-x", "web/1", ""] {
            assert!(Scope::check_pattern(bad).is_err(), "{bad}");
        }
    }
}
