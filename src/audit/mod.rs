//! The audit log's rules, shared by the server (which appends and signs checkpoints) and
//! `arca audit verify` (which recomputes everything): an append-only hash chain whose every
//! entry's hash covers its fields and the previous hash, plus checkpoints — (size, head hash,
//! time) signed by the server's audit key — that pin the chain so that even someone who can
//! rewrite the database and recompute every hash is caught. Pure functions, no I/O.

use std::collections::BTreeMap;

use arca_keys::{KeyId, PublicKey, SigningKey, canonical::to_canonical_json};
use serde::{Deserialize, Serialize};

/// The hash before the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an audit entry records, one variant per action the server appends. The stored text
/// is [`AuditAction::as_str`] (the hash covers it, so these strings never change). Entries read
/// back keep their text as written ([`Entry::action`]): a log from another version of the
/// server stays readable and verifiable. docs/api.md, "Audit actions", lists them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// `arca init` made the home.
    Init,
    /// A push, or its refusal.
    Push,
    /// A statement (attestation) was uploaded, or refused.
    Attest,
    /// An approval was uploaded (refusals of approvals are `attest`, or `approve` when the
    /// token's role or scope refuses it).
    Approve,
    /// A promotion by a caller, or its refusal by the policy.
    Promote,
    /// A promotion by the auto-promotion task.
    AutoPromote,
    /// A rollback, or its refusal.
    Rollback,
    /// A rollout went to its next step.
    RolloutAdvance,
    /// A rollout step was raised to reach a known agent.
    RolloutWiden,
    RolloutPause,
    RolloutResume,
    /// A rollout's last step: the release is current for everyone.
    RolloutComplete,
    /// A rollout was halted by its failure rate.
    RolloutHalt,
    RolloutAbort,
    /// A refused rollout action (and a token refusal of an unknown rollout verb).
    Rollout,
    /// A token refusal of an agent report.
    Report,
    /// A token refusal of the agent listing.
    ListAgents,
    /// A decommissioned agent was forgotten (also a token refusal of it).
    AgentForget,
    /// A token refusal of reading the audit log.
    ReadAudit,
    /// A token refusal of reading the checkpoints.
    ReadAuditCheckpoints,
    /// A token refusal of signing a checkpoint.
    AuditCheckpoint,
    /// A token refusal of listing the tokens.
    ReadTokens,
    /// A token was created (also a token refusal of it).
    TokenCreate,
    /// A token was revoked (also a token refusal of it).
    TokenRevoke,
    /// A trust change, or its refusal.
    TrustChange,
    /// A token refusal of a trust change (`trust-change`, not `trust.change`).
    PermitTrustChange,
    /// A root-key rotation, or its refusal.
    TrustRotateRoot,
    /// A token refusal of a root-key rotation.
    PermitTrustRotateRoot,
    /// A policy change, or its refusal.
    PolicyChange,
    /// A token refusal of a policy change.
    PermitPolicyChange,
    /// A pending online key was made for a channel.
    OnlinePropose,
    /// A token refusal of proposing an online key.
    OnlineKeyPropose,
    /// A channel's next root installed the pending key, or was refused.
    OnlineRotate,
    /// A token refusal of installing a channel's next root.
    ChannelRoot,
    /// `arca restore` re-signed a channel's metadata.
    Restore,
}

impl AuditAction {
    /// Every action, in the order docs/api.md lists them.
    pub const ALL: [AuditAction; 35] = [
        AuditAction::Init,
        AuditAction::Push,
        AuditAction::Attest,
        AuditAction::Approve,
        AuditAction::Promote,
        AuditAction::AutoPromote,
        AuditAction::Rollback,
        AuditAction::RolloutAdvance,
        AuditAction::RolloutWiden,
        AuditAction::RolloutPause,
        AuditAction::RolloutResume,
        AuditAction::RolloutComplete,
        AuditAction::RolloutHalt,
        AuditAction::RolloutAbort,
        AuditAction::Rollout,
        AuditAction::Report,
        AuditAction::ListAgents,
        AuditAction::AgentForget,
        AuditAction::ReadAudit,
        AuditAction::ReadAuditCheckpoints,
        AuditAction::AuditCheckpoint,
        AuditAction::ReadTokens,
        AuditAction::TokenCreate,
        AuditAction::TokenRevoke,
        AuditAction::TrustChange,
        AuditAction::PermitTrustChange,
        AuditAction::TrustRotateRoot,
        AuditAction::PermitTrustRotateRoot,
        AuditAction::PolicyChange,
        AuditAction::PermitPolicyChange,
        AuditAction::OnlinePropose,
        AuditAction::OnlineKeyPropose,
        AuditAction::OnlineRotate,
        AuditAction::ChannelRoot,
        AuditAction::Restore,
    ];

    /// The text stored in the log (and hashed).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Init => "init",
            AuditAction::Push => "push",
            AuditAction::Attest => "attest",
            AuditAction::Approve => "approve",
            AuditAction::Promote => "promote",
            AuditAction::AutoPromote => "auto-promote",
            AuditAction::Rollback => "rollback",
            AuditAction::RolloutAdvance => "rollout-advance",
            AuditAction::RolloutWiden => "rollout-widen",
            AuditAction::RolloutPause => "rollout-pause",
            AuditAction::RolloutResume => "rollout-resume",
            AuditAction::RolloutComplete => "rollout-complete",
            AuditAction::RolloutHalt => "rollout-halt",
            AuditAction::RolloutAbort => "rollout-abort",
            AuditAction::Rollout => "rollout",
            AuditAction::Report => "report",
            AuditAction::ListAgents => "agents",
            AuditAction::AgentForget => "agent-forget",
            AuditAction::ReadAudit => "audit",
            AuditAction::ReadAuditCheckpoints => "audit-checkpoints",
            AuditAction::AuditCheckpoint => "audit-checkpoint",
            AuditAction::ReadTokens => "tokens",
            AuditAction::TokenCreate => "token-create",
            AuditAction::TokenRevoke => "token-revoke",
            AuditAction::TrustChange => "trust.change",
            AuditAction::PermitTrustChange => "trust-change",
            AuditAction::TrustRotateRoot => "trust.rotate-root",
            AuditAction::PermitTrustRotateRoot => "trust-rotate-root",
            AuditAction::PolicyChange => "policy.change",
            AuditAction::PermitPolicyChange => "policy-change",
            AuditAction::OnlinePropose => "online.propose",
            AuditAction::OnlineKeyPropose => "online-key-propose",
            AuditAction::OnlineRotate => "online.rotate",
            AuditAction::ChannelRoot => "channel-root",
            AuditAction::Restore => "restore",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuditAction {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(())
    }
}

/// One audit entry as stored and exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub outcome: String,
    /// Canonical JSON text of the details.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What an entry's hash covers: every field but the hash itself.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: i64,
    at: &'a str,
    actor: &'a str,
    action: &'a str,
    subject: &'a str,
    outcome: &'a str,
    details: &'a str,
    prev_hash: &'a str,
}

/// SHA-256 of the canonical JSON of the entry's fields and the previous hash.
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    subject: &str,
    outcome: &str,
    details: &str,
    prev_hash: &str,
) -> String {
    let h = Hashed {
        seq,
        at,
        actor,
        action,
        subject,
        outcome,
        details,
        prev_hash,
    };
    let bytes = to_canonical_json(&h).expect("strings encode");
    hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
}

impl Entry {
    pub fn computed_hash(&self) -> String {
        entry_hash(
            self.seq,
            &self.at,
            &self.actor,
            &self.action,
            &self.subject,
            &self.outcome,
            &self.details,
            &self.prev_hash,
        )
    }
}

/// A signed statement that the log had `size` entries ending in `head` at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub size: i64,
    pub head: String,
    pub at: String,
    pub keyid: String,
    /// Hex ed25519 signature over the canonical JSON of `{"at", "head", "size"}`.
    pub sig: String,
}

#[derive(Serialize)]
struct CheckpointBody<'a> {
    size: i64,
    head: &'a str,
    at: &'a str,
}

fn checkpoint_message(size: i64, head: &str, at: &str) -> Vec<u8> {
    to_canonical_json(&CheckpointBody { size, head, at }).expect("strings encode")
}

impl Checkpoint {
    pub fn sign(size: i64, head: &str, at: &str, key: &SigningKey) -> Self {
        Checkpoint {
            size,
            head: head.to_owned(),
            at: at.to_owned(),
            keyid: key.key_id().to_string(),
            sig: hex::encode(key.sign(&checkpoint_message(size, head, at))),
        }
    }

    fn verifies(&self, keys: &BTreeMap<KeyId, PublicKey>) -> bool {
        let Ok(id) = self.keyid.parse::<KeyId>() else {
            return false;
        };
        let Some(key) = keys.get(&id) else {
            return false;
        };
        hex::decode(&self.sig)
            .is_ok_and(|s| key.verify(&checkpoint_message(self.size, &self.head, &self.at), &s))
    }
}

/// The first problem found in a log, naming the entry or checkpoint.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuditError {
    #[error("entry {seq}: its hash does not match its contents (the entry was modified)")]
    Modified { seq: i64 },
    #[error("entry {seq}: it does not follow entry {prev} (an entry was removed or reordered)")]
    Broken { seq: i64, prev: i64 },
    #[error("entry {seq}: expected sequence number {expected} (an entry was removed or reordered)")]
    Gap { seq: i64, expected: i64 },
    #[error("checkpoint at size {size}: the signature does not verify with an audit key")]
    BadCheckpoint { size: i64 },
    #[error(
        "checkpoint at size {size}: the log's hash at that size is {actual}, the checkpoint signed {signed} (the log was rewritten)"
    )]
    CheckpointMismatch {
        size: i64,
        signed: String,
        actual: String,
    },
    #[error(
        "checkpoint at size {size}: the log has only {len} entries (entries were removed from its end)"
    )]
    Truncated { size: i64, len: i64 },
}

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub entries: i64,
    pub head: String,
    pub checkpoints: usize,
    /// The newest verified checkpoint's size (entries after it are covered by the chain only).
    pub checkpointed: i64,
}

/// Recomputes the chain from the first entry and checks every checkpoint against it and against
/// the audit keys. Names the first bad entry.
pub fn verify(
    entries: &[Entry],
    checkpoints: &[Checkpoint],
    audit_keys: &BTreeMap<KeyId, PublicKey>,
) -> Result<Report, AuditError> {
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut heads = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let expected = i as i64 + 1;
        if e.seq != expected {
            return Err(AuditError::Gap {
                seq: e.seq,
                expected,
            });
        }
        if e.prev_hash != prev_hash {
            return Err(AuditError::Broken {
                seq: e.seq,
                prev: e.seq - 1,
            });
        }
        if e.computed_hash() != e.hash {
            return Err(AuditError::Modified { seq: e.seq });
        }
        prev_hash = e.hash.clone();
        heads.push(e.hash.clone());
    }
    let mut checkpointed = 0;
    for c in checkpoints {
        if !c.verifies(audit_keys) {
            return Err(AuditError::BadCheckpoint { size: c.size });
        }
        if c.size > entries.len() as i64 {
            return Err(AuditError::Truncated {
                size: c.size,
                len: entries.len() as i64,
            });
        }
        let actual = if c.size == 0 {
            GENESIS_HASH.to_owned()
        } else {
            heads[c.size as usize - 1].clone()
        };
        if actual != c.head {
            return Err(AuditError::CheckpointMismatch {
                size: c.size,
                signed: c.head.clone(),
                actual,
            });
        }
        checkpointed = checkpointed.max(c.size);
    }
    Ok(Report {
        entries: entries.len() as i64,
        head: prev_hash,
        checkpoints: checkpoints.len(),
        checkpointed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The actions of docs/api.md's "Audit actions" table: `| `action` | written when |`.
    fn doc_table_actions() -> Vec<String> {
        const API_DOC: &str = include_str!("../../docs/api.md");
        let section = API_DOC
            .split_once("\n## Audit actions\n")
            .expect("docs/api.md has an \"Audit actions\" section")
            .1;
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .lines()
            .filter_map(|line| {
                let cell = line.strip_prefix("| `")?;
                Some(cell.split_once('`')?.0.to_owned())
            })
            .collect()
    }

    #[test]
    fn every_audit_action_is_in_the_api_doc_and_back() {
        let documented = doc_table_actions();
        let missing: Vec<&str> = AuditAction::ALL
            .iter()
            .map(|a| a.as_str())
            .filter(|a| !documented.iter().any(|d| d == a))
            .collect();
        assert!(missing.is_empty(), "docs/api.md does not list {missing:?}");
        let unknown: Vec<&String> = documented
            .iter()
            .filter(|d| d.parse::<AuditAction>().is_err())
            .collect();
        assert!(
            unknown.is_empty(),
            "docs/api.md lists actions the server never writes: {unknown:?}"
        );
        assert_eq!(documented.len(), AuditAction::ALL.len(), "listed twice?");
    }

    #[test]
    fn audit_actions_are_unique_and_parse_back() {
        for (i, a) in AuditAction::ALL.iter().enumerate() {
            assert_eq!(a.as_str().parse::<AuditAction>(), Ok(*a));
            assert_eq!(a.to_string(), a.as_str());
            assert!(
                !AuditAction::ALL[..i].contains(a),
                "{a} is listed twice in ALL"
            );
        }
        assert_eq!("rollout-start".parse::<AuditAction>(), Err(()));
    }

    fn chain(n: i64) -> Vec<Entry> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let details = format!("{{\"n\":{seq}}}");
                let hash = entry_hash(
                    seq,
                    "2026-01-01T00:00:00Z",
                    "t",
                    "push",
                    "a@1",
                    "ok",
                    &details,
                    &prev,
                );
                let e = Entry {
                    seq,
                    at: "2026-01-01T00:00:00Z".into(),
                    actor: "t".into(),
                    action: "push".into(),
                    subject: "a@1".into(),
                    outcome: "ok".into(),
                    details,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    #[test]
    fn honest_chain_and_checkpoint_verify() {
        let key = SigningKey::generate().unwrap();
        let keys = [(key.key_id(), key.public())].into();
        let e = chain(5);
        let cp = Checkpoint::sign(3, &e[2].hash, "2026-01-01T00:00:00Z", &key);
        let r = verify(&e, &[cp], &keys).unwrap();
        assert_eq!((r.entries, r.checkpointed), (5, 3));
    }

    #[test]
    fn every_tampering_is_named() {
        let key = SigningKey::generate().unwrap();
        let keys = [(key.key_id(), key.public())].into();
        let mut e = chain(5);
        e[2].outcome = "refused".into();
        assert_eq!(verify(&e, &[], &keys), Err(AuditError::Modified { seq: 3 }));

        let mut e = chain(5);
        e.remove(2);
        assert!(matches!(
            verify(&e, &[], &keys),
            Err(AuditError::Gap { expected: 3, .. })
        ));

        let mut e = chain(5);
        e.swap(1, 2);
        assert!(verify(&e, &[], &keys).is_err());

        // Rewritten from entry 2 on with recomputed hashes: only a checkpoint catches it.
        let honest = chain(5);
        let cp = Checkpoint::sign(4, &honest[3].hash, "t", &key);
        let mut forged = chain(5);
        forged[1].subject = "b@1".into();
        for i in 1..5 {
            forged[i].prev_hash = forged[i - 1].hash.clone();
            forged[i].hash = forged[i].computed_hash();
        }
        assert!(verify(&forged, &[], &keys).is_ok());
        assert!(matches!(
            verify(&forged, std::slice::from_ref(&cp), &keys),
            Err(AuditError::CheckpointMismatch { size: 4, .. })
        ));

        // Truncated below a checkpoint.
        assert_eq!(
            verify(&honest[..3], std::slice::from_ref(&cp), &keys),
            Err(AuditError::Truncated { size: 4, len: 3 })
        );

        // A checkpoint signed by another key.
        let other = SigningKey::generate().unwrap();
        let bad = Checkpoint::sign(4, &honest[3].hash, "t", &other);
        assert_eq!(
            verify(&honest, &[bad], &keys),
            Err(AuditError::BadCheckpoint { size: 4 })
        );
    }
}
