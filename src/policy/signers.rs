//! Checking statements and their signers against the trust document: pure functions, no I/O,
//! used by the server (at push time) and by arca's client (before it installs anything).
//! Refusals are [`SignerError`]s; the server answers them through `service::Error`.

use arca_keys::dsse::Envelope;
use arca_keys::intoto::{PAYLOAD_TYPE, Statement};
use arca_keys::{KeyId, Role, TrustDocument};
use chrono::{DateTime, Utc};

use crate::model::api::{is_build_predicate, subject_name};
use crate::model::{ArtifactName, Version};

/// Why a statement or its signer is refused. Each carries the message the client sees.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignerError {
    /// Not a well-formed statement about the release (400 `bad_statement`).
    #[error("{0}")]
    BadStatement(String),
    /// Signed by no key of the trust document (403 `untrusted_key`).
    #[error("{0}")]
    UntrustedKey(String),
    /// Signed only by keys that may not sign it now: revoked, retired, not a builder, out of
    /// scope (403 `key_not_allowed`).
    #[error("{0}")]
    KeyNotAllowed(String),
    /// The trust document's keys cannot be read (a fault: 500).
    #[error("{0}")]
    Trust(String),
}

/// A statement that passed the checks.
#[derive(Debug)]
pub struct Checked {
    pub statement: Statement,
    pub sha256: String,
    pub blake3: String,
    /// Keys that signed it and may sign this kind of statement for this name now.
    pub signers: Vec<KeyId>,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The in-toto statement inside a DSSE envelope (payload type and statement type checked).
pub fn open_statement(env: &Envelope) -> Result<Statement, SignerError> {
    if env.payload_type != PAYLOAD_TYPE {
        return Err(SignerError::BadStatement(format!(
            "payload type is {:?}, expected {PAYLOAD_TYPE}",
            env.payload_type
        )));
    }
    let payload = env
        .payload_bytes()
        .map_err(|e| SignerError::BadStatement(e.to_string()))?;
    Statement::from_slice(&payload).map_err(|e| SignerError::BadStatement(e.to_string()))
}

/// Decodes a DSSE envelope holding an in-toto statement about `name@version`, and returns the
/// digests its subject names.
pub fn parse_subject(
    env: &Envelope,
    name: &ArtifactName,
    version: &Version,
) -> Result<(Statement, String, String), SignerError> {
    let st = open_statement(env)?;
    let subject = subject_name(name, version);
    let s = st
        .subject
        .iter()
        .find(|s| s.name == subject)
        .ok_or_else(|| {
            SignerError::BadStatement(format!("statement has no subject named {subject}"))
        })?;
    let digest = |alg: &str| {
        s.digest
            .get(alg)
            .filter(|d| is_hex64(d))
            .cloned()
            .ok_or_else(|| {
                SignerError::BadStatement(format!("subject {subject} lacks a valid {alg} digest"))
            })
    };
    let (sha256, blake3) = (digest("sha256")?, digest("blake3")?);
    Ok((st, sha256, blake3))
}

/// Whether `id` may sign a build of `name` now; otherwise the reason, naming the key.
pub fn builder_may_sign(
    trust: &TrustDocument,
    id: &KeyId,
    name: &ArtifactName,
    now: DateTime<Utc>,
) -> Result<(), SignerError> {
    let Some(entry) = trust.keys.get(id) else {
        return Err(SignerError::UntrustedKey(format!(
            "key {id} is not in trust document v{}",
            trust.version
        )));
    };
    let key = trust.describe_key(id);
    let reason = if entry.status == arca_keys::KeyStatus::Revoked {
        format!("key {key} is revoked (trust v{})", trust.version)
    } else if let Some(next) = entry
        .replaced_by
        .as_ref()
        .filter(|_| !entry.can_sign(Role::Builder, now))
    {
        format!(
            "key {key} was retired and replaced by {}: sign with the new key",
            trust.describe_key(next)
        )
    } else if !entry.can_sign(Role::Builder, now) {
        format!("key {id} is not an active builder key")
    } else if !entry.covers_name(name.as_str()) {
        format!(
            "key {id} may sign only {} (not {name})",
            entry.scope.join(", ")
        )
    } else {
        return Ok(());
    };
    Err(SignerError::KeyNotAllowed(reason))
}

/// Checks a build statement: an in-toto statement with a build predicate about
/// `name@version`, signed by at least one active builder key whose scope covers `name`.
/// A refusal names each signing key and why it does not count.
pub fn check_build(
    trust: &TrustDocument,
    env: &Envelope,
    name: &ArtifactName,
    version: &Version,
    now: DateTime<Utc>,
) -> Result<Checked, SignerError> {
    let (statement, sha256, blake3) = parse_subject(env, name, version)?;
    if !is_build_predicate(&statement.predicate_type) {
        return Err(SignerError::BadStatement(format!(
            "predicate type {} is not a build predicate",
            statement.predicate_type
        )));
    }
    // Verify against every listed key, revoked ones included, so a refusal can say "revoked".
    let keys = trust
        .all_public_keys()
        .map_err(|e| SignerError::Trust(e.to_string()))?;
    let valid = env
        .valid_signers(&keys)
        .map_err(|e| SignerError::BadStatement(e.to_string()))?;
    let mut signers = Vec::new();
    let mut reasons = Vec::new();
    for id in &valid {
        match builder_may_sign(trust, id, name, now) {
            Ok(()) => signers.push(id.clone()),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    if signers.is_empty() {
        let claimed: Vec<&str> = env.signatures.iter().map(|s| s.keyid.as_str()).collect();
        if reasons.is_empty() {
            return Err(SignerError::UntrustedKey(format!(
                "no valid signature by a key in trust document v{} (signed by: {})",
                trust.version,
                if claimed.is_empty() {
                    "nobody".to_owned()
                } else {
                    claimed.join(", ")
                }
            )));
        }
        return Err(SignerError::KeyNotAllowed(reasons.join("; ")));
    }
    Ok(Checked {
        statement,
        sha256,
        blake3,
        signers,
    })
}

/// The client's check of a published release: some statement among `envelopes` is a build
/// statement about `name@version` with exactly these digests, validly signed by a key that the
/// trust document lists as a builder covering `name` and has not revoked (a retired key still
/// vouches for what it signed before). Returns the signer, or every reason it found none.
pub fn verify_release_build(
    trust: &TrustDocument,
    envelopes: &[Envelope],
    name: &ArtifactName,
    version: &Version,
    sha256: &str,
    blake3: &str,
) -> Result<KeyId, String> {
    // Every listed key, so that a revoked signer is named as such (and still refused).
    let keys = trust.all_public_keys().map_err(|e| e.to_string())?;
    let mut reasons = Vec::new();
    for env in envelopes {
        let Ok((st, s_sha, s_b3)) = parse_subject(env, name, version) else {
            continue;
        };
        if !is_build_predicate(&st.predicate_type) {
            continue;
        }
        if s_sha != sha256 || s_b3 != blake3 {
            reasons.push(format!(
                "a build statement names other digests (sha256 {s_sha})"
            ));
            continue;
        }
        let valid = env.valid_signers(&keys).map_err(|e| e.to_string())?;
        if valid.is_empty() {
            reasons.push(format!(
                "build statement signed by {} which trust v{} does not accept",
                env.signatures
                    .iter()
                    .map(|s| s.keyid.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                trust.version
            ));
        }
        for id in valid {
            let e = &trust.keys[&id];
            if e.status == arca_keys::KeyStatus::Revoked {
                reasons.push(format!("key {id} is revoked (trust v{})", trust.version));
            } else if e.roles.contains(&Role::Builder) && e.covers_name(name.as_str()) {
                return Ok(id);
            }
            reasons.push(format!("key {id} is not a builder key for {name}"));
        }
    }
    if reasons.is_empty() {
        reasons.push(format!("no build statement about {name}@{version}"));
    }
    Err(reasons.join("; "))
}
