//! API tokens: 256 random bits, shown once, stored only as a SHA-256 hash and compared in
//! constant time. A token authenticates a request; it never makes anything installable.

use crate::audit::AuditAction;
use crate::model::api::{ErrorCode, RolloutVerb};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom;

/// Token roles (docs/security.md, "Tokens"): `admin` may do everything; `publisher` may push
/// and attest names its [`Scope`] covers; `promoter` may promote, roll back, act on rollouts
/// and upload approvals for the names and channels of its scope; `reporter` (agents) may post
/// reports as the agents of its scope, and list agents; `viewer` may read what needs a token
/// (the audit log, agents, tokens) and change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    Admin,
    Publisher,
    Promoter,
    Reporter,
    Viewer,
}

impl TokenRole {
    /// Every role, in the order the documentation lists them.
    pub const ALL: [TokenRole; 5] = [
        TokenRole::Admin,
        TokenRole::Publisher,
        TokenRole::Promoter,
        TokenRole::Reporter,
        TokenRole::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Publisher => "publisher",
            TokenRole::Promoter => "promoter",
            TokenRole::Reporter => "reporter",
            TokenRole::Viewer => "viewer",
        }
    }
}

impl std::fmt::Display for TokenRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TokenRole {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        TokenRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(())
    }
}

/// Every role's name, in the order the documentation lists them (for the command line).
pub const ROLES: [&str; 5] = ["admin", "publisher", "promoter", "reporter", "viewer"];

/// What a request does, with the name and channel it touches: every endpoint that needs a
/// token names its action, and [`permit`] alone decides whether a token may do it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Push (or stage the bytes of) a release of `name`.
    Push { name: &'a str },
    /// Upload an attestation about a release of `name`.
    Attest { name: &'a str },
    /// Upload an approval of a release of `name` for `channel`.
    Approve { name: &'a str, channel: &'a str },
    /// Promote a release of `name` to `channel`.
    Promote { name: &'a str, channel: &'a str },
    /// Roll `name` back in `channel`.
    Rollback { name: &'a str, channel: &'a str },
    /// Advance, pause, resume or abort the rollout of `name` in `channel`.
    Rollout {
        /// The verb of the path; `None`: no known verb (the service answers `404
        /// unknown_action`; a token refusal of it is audited as `rollout`).
        verb: Option<RolloutVerb>,
        name: &'a str,
        channel: &'a str,
    },
    /// Post an agent report.
    Report { agent: &'a str, channel: &'a str },
    /// List agents (reporters may: agents read their fleet).
    ListAgents,
    /// A read that needs a token: the audit log and its checkpoints, the tokens (named by the
    /// audit action a refusal of it writes).
    Read(AuditAction),
    /// Everything else that changes something: trust, policies, keys, tokens, checkpoints,
    /// forgetting agents (admin only).
    Admin(AuditAction),
}

impl Action<'_> {
    /// The audit log's action for a refusal of this one.
    pub fn audit_action(&self) -> AuditAction {
        match self {
            Action::Push { .. } => AuditAction::Push,
            Action::Attest { .. } => AuditAction::Attest,
            Action::Approve { .. } => AuditAction::Approve,
            Action::Promote { .. } => AuditAction::Promote,
            Action::Rollback { .. } => AuditAction::Rollback,
            // The verb comes from the path: only the known ones reach the audit log by name.
            Action::Rollout {
                verb: Some(verb), ..
            } => verb.audit_action(),
            Action::Rollout { verb: None, .. } => AuditAction::Rollout,
            Action::Report { .. } => AuditAction::Report,
            Action::ListAgents => AuditAction::ListAgents,
            Action::Read(what) | Action::Admin(what) => *what,
        }
    }

    /// What the request touches, for messages and the audit log's subject.
    pub fn subject(&self) -> String {
        match self {
            Action::Push { name } | Action::Attest { name } => (*name).into(),
            Action::Approve { name, channel }
            | Action::Promote { name, channel }
            | Action::Rollback { name, channel }
            | Action::Rollout { name, channel, .. } => format!("{name} in {channel}"),
            Action::Report { agent, channel } => format!("agent {agent} in {channel}"),
            Action::ListAgents => "agents".into(),
            Action::Read(what) | Action::Admin(what) => what.as_str().into(),
        }
    }

    /// `push team-b/x`, `promote app/x in prod`: for messages.
    fn describe(&self) -> String {
        match self {
            Action::Read(what) => format!("read {what}"),
            Action::Admin(what) => format!("do {what}"),
            Action::ListAgents => "list agents".into(),
            Action::Report { agent, channel } => {
                format!("report as agent {agent} on channel {channel}")
            }
            other => format!("{} {}", other.audit_action(), other.subject()),
        }
    }
}

/// Why a token may not do an action: `token_role` (its role never may) or `token_scope` (its
/// role may, not for this name, channel or agent). The message names the token, the action
/// and the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub code: ErrorCode,
    pub message: String,
}

/// What each role may do, for messages.
fn role_can(role: TokenRole) -> &'static str {
    match role {
        TokenRole::Admin => "everything",
        TokenRole::Publisher => "push and attest",
        TokenRole::Promoter => "promote, roll back, act on rollouts and upload approvals",
        TokenRole::Reporter => "post agent reports and list agents",
        TokenRole::Viewer => "read the audit log, agents and tokens",
    }
}

/// The one check of every endpoint: may token `id` of `role` with `scope` do `action`?
pub fn permit(id: &str, role: TokenRole, scope: &Scope, action: &Action<'_>) -> Result<(), Denied> {
    let role_ok = match role {
        TokenRole::Admin => true,
        TokenRole::Publisher => matches!(action, Action::Push { .. } | Action::Attest { .. }),
        TokenRole::Promoter => matches!(
            action,
            Action::Promote { .. }
                | Action::Rollback { .. }
                | Action::Rollout { .. }
                | Action::Approve { .. }
        ),
        TokenRole::Reporter => matches!(action, Action::Report { .. } | Action::ListAgents),
        TokenRole::Viewer => matches!(action, Action::Read(_) | Action::ListAgents),
    };
    if !role_ok {
        return Err(Denied {
            code: ErrorCode::TokenRole,
            message: format!(
                "token {id} is a {role} token: it may not {} (a {role} token may only {})",
                action.describe(),
                role_can(role)
            ),
        });
    }
    if role == TokenRole::Admin {
        return Ok(());
    }
    let (name, channel, agent) = match action {
        Action::Push { name } | Action::Attest { name } => (Some(*name), None, None),
        Action::Approve { name, channel }
        | Action::Promote { name, channel }
        | Action::Rollback { name, channel }
        | Action::Rollout { name, channel, .. } => (Some(*name), Some(*channel), None),
        Action::Report { agent, channel } => (None, Some(*channel), Some(*agent)),
        Action::ListAgents | Action::Read(_) | Action::Admin(_) => (None, None, None),
    };
    let refuse = |what: String| Denied {
        code: ErrorCode::TokenScope,
        message: format!(
            "{role} token {id} may not {}: {what} is outside its scope ({})",
            action.describe(),
            scope.describe_for(role)
        ),
    };
    if let Some(agent) = agent
        && !scope.allows_agent(agent)
    {
        return Err(refuse(format!("agent {agent}")));
    }
    if let Some(name) = name
        && !scope.allows_name(name)
    {
        return Err(refuse(format!("name {name}")));
    }
    if let Some(channel) = channel
        && !scope.allows_channel(channel)
    {
        return Err(refuse(format!("channel {channel}")));
    }
    Ok(())
}

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

/// What a token is bound to: for reporter tokens, agent ids (exact, or a prefix followed by
/// `*`, or `*` for any) and, optionally, channels (invented ids outside the patterns count for
/// nothing: their reports are refused); for publisher tokens, name globs; for promoter tokens,
/// channels and, optionally, name globs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    /// Agent id patterns; empty for every role but reporter (which report for nobody).
    pub agents: Vec<String>,
    /// Channels the token may act on; empty means every channel.
    pub channels: Vec<String>,
    /// Artifact name globs (as in the trust document's key scopes: `team-a/*`, `**`); empty
    /// means every name.
    #[serde(default)]
    pub names: Vec<String>,
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

    /// Whether the token may act on `channel`.
    pub fn allows_channel(&self, channel: &str) -> bool {
        self.channels.is_empty() || self.channels.iter().any(|c| c == channel)
    }

    /// Whether the token may act on artifact `name`.
    pub fn allows_name(&self, name: &str) -> bool {
        self.names.is_empty() || self.names.iter().any(|g| glob_match::glob_match(g, name))
    }

    /// Checks one name glob: the characters of artifact names and `*`, `?`, `[`, `]`, `{`,
    /// `}`, `,`, `!`.
    pub fn check_glob(g: &str) -> Result<(), String> {
        let valid = !g.is_empty()
            && g.len() <= 256
            && g.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'.' | b'_'
                            | b'-'
                            | b'/'
                            | b'*'
                            | b'?'
                            | b'['
                            | b']'
                            | b'{'
                            | b'}'
                            | b','
                            | b'!'
                    )
            });
        if valid {
            Ok(())
        } else {
            Err(format!(
                "name glob {g:?} is not a glob over artifact names (e.g. 'team-a/*', '**')"
            ))
        }
    }

    /// The scope in words, for the role's bindings: `names team-a/*; any channel`.
    pub fn describe_for(&self, role: TokenRole) -> String {
        let (agents, channels) = self.describe();
        let names = if self.names.is_empty() {
            "any name".to_owned()
        } else {
            format!("names {}", self.names.join(", "))
        };
        let channels = if self.channels.is_empty() {
            channels
        } else {
            format!("channels {channels}")
        };
        match role {
            TokenRole::Reporter => format!("agents {agents}; {channels}"),
            TokenRole::Publisher => names,
            TokenRole::Promoter => format!("{names}; {channels}"),
            TokenRole::Admin | TokenRole::Viewer => "unscoped".to_owned(),
        }
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
            names: vec![],
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
            names: vec![],
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

    #[test]
    fn permit_checks_role_then_scope() {
        let publisher = Scope {
            names: vec!["team-a/*".into()],
            ..Default::default()
        };
        let p =
            |a: &Action<'_>| permit("t", TokenRole::Publisher, &publisher, a).map_err(|d| d.code);
        assert_eq!(p(&Action::Push { name: "team-a/x" }), Ok(()));
        assert_eq!(
            p(&Action::Push { name: "team-b/x" }),
            Err(ErrorCode::TokenScope)
        );
        assert_eq!(
            p(&Action::Push { name: "team-a/x/y" }),
            Err(ErrorCode::TokenScope)
        );
        assert_eq!(
            p(&Action::Promote {
                name: "team-a/x",
                channel: "staging"
            }),
            Err(ErrorCode::TokenRole)
        );
        assert_eq!(
            p(&Action::Admin(AuditAction::TokenCreate)),
            Err(ErrorCode::TokenRole)
        );
        let promoter = Scope {
            channels: vec!["staging".into()],
            ..Default::default()
        };
        let q = |a: &Action<'_>| permit("t", TokenRole::Promoter, &promoter, a).map_err(|d| d.code);
        let to = |channel| Action::Promote {
            name: "app/x",
            channel,
        };
        assert_eq!(q(&to("staging")), Ok(()));
        assert_eq!(q(&to("prod")), Err(ErrorCode::TokenScope));
        assert_eq!(
            q(&Action::Push { name: "app/x" }),
            Err(ErrorCode::TokenRole)
        );
        let odd = Action::Rollout {
            verb: "x\u{1b}[2J".parse().ok(),
            name: "app/x",
            channel: "prod",
        };
        assert_eq!(odd.audit_action(), AuditAction::Rollout);
        let pause = Action::Rollout {
            verb: "pause".parse().ok(),
            name: "app/x",
            channel: "prod",
        };
        assert_eq!(pause.audit_action().as_str(), "rollout-pause");
        let v = |a: &Action<'_>| {
            permit("t", TokenRole::Viewer, &Scope::default(), a).map_err(|d| d.code)
        };
        assert_eq!(v(&Action::Read(AuditAction::ReadAudit)), Ok(()));
        assert_eq!(v(&Action::ListAgents), Ok(()));
        assert_eq!(
            v(&Action::Push { name: "app/x" }),
            Err(ErrorCode::TokenRole)
        );
        assert_eq!(
            permit("t", TokenRole::Admin, &Scope::default(), &to("prod")),
            Ok(()),
            "admin may do anything"
        );
        let denied = permit(
            "abc",
            TokenRole::Publisher,
            &publisher,
            &Action::Push { name: "team-b/x" },
        )
        .unwrap_err()
        .message;
        assert!(
            denied.contains("abc")
                && denied.contains("push team-b/x")
                && denied.contains("team-a/*"),
            "{denied}"
        );
    }
}
