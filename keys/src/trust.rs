//! The trust document: the versioned, root-signed list of keys, their roles, scopes and status,
//! and each channel's policy digest. Version N+1 is valid only when signed by the threshold of
//! version N's root keys, and also of its own root keys when those change (TUF's root rotation
//! rule). Clients walk the chain from the root they pin and never accept a skipped version.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{KeyError, KeyId, PublicKey, SignedEnvelope, TufKey};

/// `_type` of a trust document.
pub const TRUST_TYPE: &str = "arca-trust";

/// What a key may sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Signs trust documents and channel root metadata (offline).
    Root,
    /// Signs build statements for the artifact names its scope covers.
    Builder,
    /// Signs approvals for the channels its scope names.
    Approver,
    /// Signs attestations (tests, scans, SBOMs).
    Attestor,
    /// The server's key that signs audit-log checkpoints (online).
    Audit,
}

impl std::str::FromStr for Role {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "root" => Ok(Role::Root),
            "builder" => Ok(Role::Builder),
            "approver" => Ok(Role::Approver),
            "attestor" => Ok(Role::Attestor),
            "audit" => Ok(Role::Audit),
            other => Err(KeyError::InvalidTrust(format!(
                "unknown role {other:?} (root, builder, approver, attestor, audit)"
            ))),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Root => "root",
            Role::Builder => "builder",
            Role::Approver => "approver",
            Role::Attestor => "attestor",
            Role::Audit => "audit",
        })
    }
}

/// A key's standing. `Retired` keys stay valid for what they signed before retirement;
/// `Revoked` keys are valid for nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Retired,
    Revoked,
}

/// One key of the trust document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub public: TufKey,
    pub roles: BTreeSet<Role>,
    /// Name globs (builders: `app/*`, `**`) or channel names (approvers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    pub status: KeyStatus,
    /// After this instant (`YYYY-MM-DDTHH:MM:SSZ`) the key signs nothing new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Who or what holds the key ("ci-team-a", "alice"), shown instead of the bare id. Signed
    /// with the rest, so only the root keys can name a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The key that took over this key's roles when it was rotated (`arca trust rotate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<KeyId>,
}

/// Longest key label: a name for people, not a description.
pub const MAX_LABEL_LEN: usize = 64;

/// Whether `label` may name a key: 1 to [`MAX_LABEL_LEN`] printable ASCII characters (canonical
/// JSON escapes nothing else, so every canonicaliser agrees on it), no leading or trailing space.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "label {label:?} must be 1 to {MAX_LABEL_LEN} characters"
        ));
    }
    if !label.bytes().all(|b| (0x20..0x7f).contains(&b)) || label.trim() != label {
        return Err(format!(
            "label {label:?} must be printable ASCII without leading or trailing spaces"
        ));
    }
    Ok(())
}

impl KeyEntry {
    /// Whether the key may sign something new at `now` in `role`.
    pub fn can_sign(&self, role: Role, now: DateTime<Utc>) -> bool {
        self.status == KeyStatus::Active
            && self.roles.contains(&role)
            && self
                .not_after
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_none_or(|t| now <= t)
    }

    /// Whether the scope covers `name`: some glob matches (`*` within a path segment, `**` across).
    pub fn covers_name(&self, name: &str) -> bool {
        self.scope.iter().any(|g| glob_match::glob_match(g, name))
    }
}

/// The root keys and how many of them must sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootRole {
    pub keyids: BTreeSet<KeyId>,
    pub threshold: u32,
}

/// The trust document (the `signed` part; it travels in a [`SignedEnvelope`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustDocument {
    #[serde(rename = "_type")]
    pub doc_type: String,
    pub version: u64,
    pub root: RootRole,
    pub keys: BTreeMap<KeyId, KeyEntry>,
    /// Channel name -> SHA-256 of its policy file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, String>,
}

impl TrustDocument {
    /// `id`, followed by its label when it has one: `1a2b… (ci-team-a)`.
    pub fn describe_key(&self, id: &KeyId) -> String {
        match self.keys.get(id).and_then(|e| e.label.as_deref()) {
            Some(l) => format!("{id} ({l})"),
            None => id.to_string(),
        }
    }

    /// Version 1: the given root keys and threshold, nothing else.
    pub fn genesis(root_keys: &[PublicKey], threshold: u32) -> Self {
        let keys = root_keys
            .iter()
            .map(|k| {
                (
                    k.key_id(),
                    KeyEntry {
                        public: k.to_tuf(),
                        roles: [Role::Root].into(),
                        scope: Vec::new(),
                        status: KeyStatus::Active,
                        not_after: None,
                        label: None,
                        replaced_by: None,
                    },
                )
            })
            .collect();
        TrustDocument {
            doc_type: TRUST_TYPE.into(),
            version: 1,
            root: RootRole {
                keyids: root_keys.iter().map(PublicKey::key_id).collect(),
                threshold,
            },
            keys,
            policies: BTreeMap::new(),
        }
    }

    /// The next version: a copy with `version + 1`, ready to be changed and signed.
    pub fn next(&self) -> Self {
        let mut n = self.clone();
        n.version += 1;
        n
    }

    /// The public keys of the root role.
    pub fn root_keys(&self) -> Result<BTreeMap<KeyId, PublicKey>, KeyError> {
        self.root
            .keyids
            .iter()
            .map(|id| {
                let entry = self.keys.get(id).ok_or_else(|| {
                    KeyError::InvalidTrust(format!("root key {id} is not listed in keys"))
                })?;
                Ok((id.clone(), PublicKey::from_tuf(&entry.public)?))
            })
            .collect()
    }

    /// Every listed key that is not revoked, by id (for verifying what was signed in the past).
    pub fn public_keys(&self) -> Result<BTreeMap<KeyId, PublicKey>, KeyError> {
        self.keys_where(|e| e.status != KeyStatus::Revoked)
    }

    /// Every listed key, revoked ones included (to say why a signature does not count).
    pub fn all_public_keys(&self) -> Result<BTreeMap<KeyId, PublicKey>, KeyError> {
        self.keys_where(|_| true)
    }

    fn keys_where(
        &self,
        keep: impl Fn(&KeyEntry) -> bool,
    ) -> Result<BTreeMap<KeyId, PublicKey>, KeyError> {
        self.keys
            .iter()
            .filter(|(_, e)| keep(e))
            .map(|(id, e)| Ok((id.clone(), PublicKey::from_tuf(&e.public)?)))
            .collect()
    }

    /// Structural rules every version must meet.
    pub fn validate(&self) -> Result<(), KeyError> {
        let bad = |m: String| Err(KeyError::InvalidTrust(m));
        if self.doc_type != TRUST_TYPE {
            return bad(format!(
                "_type is {:?}, expected {TRUST_TYPE}",
                self.doc_type
            ));
        }
        if self.version == 0 {
            return bad("version must be at least 1".into());
        }
        for (id, entry) in &self.keys {
            let computed = PublicKey::from_tuf(&entry.public)?.key_id();
            if &computed != id {
                return Err(KeyError::KeyIdMismatch {
                    claimed: id.clone(),
                    computed,
                });
            }
            if entry.roles.is_empty() {
                return bad(format!("key {id} has no role"));
            }
            if let Some(l) = &entry.label {
                check_label(l).map_err(|m| KeyError::InvalidTrust(format!("key {id}: {m}")))?;
            }
            if let Some(t) = &entry.not_after
                && DateTime::parse_from_rfc3339(t).is_err()
            {
                return bad(format!("key {id}: not_after {t:?} is not a timestamp"));
            }
            if entry.roles.contains(&Role::Builder) && entry.scope.is_empty() {
                return bad(format!(
                    "builder key {id} has no scope (name globs, e.g. app/* or **)"
                ));
            }
            if entry.roles.contains(&Role::Approver) && entry.scope.is_empty() {
                return bad(format!(
                    "approver key {id} has no scope (channel names, or *)"
                ));
            }
            if entry.scope.iter().any(|g| g.is_empty() || g.contains("..")) {
                return bad(format!("key {id} has an empty or '..' scope pattern"));
            }
        }
        for id in &self.root.keyids {
            match self.keys.get(id) {
                Some(e) if e.roles.contains(&Role::Root) && e.status == KeyStatus::Active => {}
                _ => {
                    return bad(format!(
                        "root key {id} must be listed, active, with role root"
                    ));
                }
            }
        }
        let n = self.root.keyids.len() as u32;
        if self.root.threshold == 0 || self.root.threshold > n {
            return bad(format!(
                "root threshold {} is impossible with {n} root key(s)",
                self.root.threshold
            ));
        }
        Ok(())
    }

    /// Verifies version 1 against the root keys and threshold a client pins.
    pub fn verify_genesis(
        env: &SignedEnvelope,
        pinned_keys: &BTreeMap<KeyId, PublicKey>,
        pinned_threshold: u32,
    ) -> Result<TrustDocument, KeyError> {
        let doc: TrustDocument = env.decode("trust document")?;
        doc.validate()?;
        if doc.version != 1 {
            return Err(KeyError::VersionSkip {
                current: 0,
                got: doc.version,
            });
        }
        let pinned_ids: BTreeSet<KeyId> = pinned_keys.keys().cloned().collect();
        if doc.root.keyids != pinned_ids || doc.root.threshold != pinned_threshold {
            return Err(KeyError::InvalidTrust(
                "version 1 names other root keys than the pinned root".into(),
            ));
        }
        env.verify_threshold("root", pinned_keys, pinned_threshold)?;
        Ok(doc)
    }

    /// Verifies that `env` is a valid successor of `self`: exactly the next version, signed by
    /// the threshold of this version's root keys, and of its own root keys if they changed.
    pub fn verify_successor(&self, env: &SignedEnvelope) -> Result<TrustDocument, KeyError> {
        let next: TrustDocument = env.decode("trust document")?;
        next.validate()?;
        if next.version != self.version + 1 {
            return Err(KeyError::VersionSkip {
                current: self.version,
                got: next.version,
            });
        }
        env.verify_threshold("root (current)", &self.root_keys()?, self.root.threshold)?;
        if next.root != self.root {
            env.verify_threshold("root (new)", &next.root_keys()?, next.root.threshold)?;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;

    fn builder_entry(k: &SigningKey, scope: &str) -> KeyEntry {
        KeyEntry {
            public: k.public().to_tuf(),
            roles: [Role::Builder].into(),
            scope: vec![scope.into()],
            status: KeyStatus::Active,
            not_after: None,
            label: None,
            replaced_by: None,
        }
    }

    #[test]
    fn successor_needs_current_root_threshold() {
        let root = SigningKey::generate().unwrap();
        let v1 = TrustDocument::genesis(&[root.public()], 1);
        let b = SigningKey::generate().unwrap();
        let mut v2 = v1.next();
        v2.keys.insert(b.key_id(), builder_entry(&b, "app/*"));

        let good = SignedEnvelope::sign(&v2, &[&root]).unwrap();
        assert_eq!(v1.verify_successor(&good).unwrap().version, 2);

        let by_builder = SignedEnvelope::sign(&v2, &[&b]).unwrap();
        assert!(matches!(
            v1.verify_successor(&by_builder),
            Err(KeyError::ThresholdNotMet { .. })
        ));

        let mut v3 = v2.next();
        v3.version = 4;
        let skip = SignedEnvelope::sign(&v3, &[&root]).unwrap();
        assert!(matches!(
            v2.verify_successor(&skip),
            Err(KeyError::VersionSkip { .. })
        ));
        // Replaying the same version is a skip backwards.
        assert!(v2.verify_successor(&good).is_err());
    }

    #[test]
    fn root_rotation_needs_old_and_new_thresholds() {
        let old = SigningKey::generate().unwrap();
        let v1 = TrustDocument::genesis(&[old.public()], 1);
        let new: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap()).collect();
        let mut v2 = TrustDocument::genesis(&new.iter().map(|k| k.public()).collect::<Vec<_>>(), 2);
        v2.version = 2;

        let only_old = SignedEnvelope::sign(&v2, &[&old]).unwrap();
        assert!(v1.verify_successor(&only_old).is_err());
        let only_new = SignedEnvelope::sign(&v2, &[&new[0], &new[1]]).unwrap();
        assert!(v1.verify_successor(&only_new).is_err());
        let one_new = SignedEnvelope::sign(&v2, &[&old, &new[0]]).unwrap();
        assert!(v1.verify_successor(&one_new).is_err());
        let both = SignedEnvelope::sign(&v2, &[&old, &new[0], &new[2]]).unwrap();
        assert!(v1.verify_successor(&both).is_ok());
    }

    #[test]
    fn validation_catches_structural_errors() {
        let root = SigningKey::generate().unwrap();
        let mut doc = TrustDocument::genesis(&[root.public()], 1);
        doc.root.threshold = 2;
        assert!(doc.validate().is_err());

        let mut doc = TrustDocument::genesis(&[root.public()], 1);
        let b = SigningKey::generate().unwrap();
        let mut e = builder_entry(&b, "app/*");
        e.scope.clear();
        doc.keys.insert(b.key_id(), e);
        assert!(doc.validate().is_err());

        // An entry filed under another key's id.
        let mut doc = TrustDocument::genesis(&[root.public()], 1);
        doc.keys.insert(root.key_id(), builder_entry(&b, "**"));
        assert!(matches!(
            doc.validate(),
            Err(KeyError::InvalidTrust(_) | KeyError::KeyIdMismatch { .. })
        ));
    }

    #[test]
    fn genesis_must_match_the_pinned_root() {
        let root = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let v1 = TrustDocument::genesis(&[root.public()], 1);
        let pinned: BTreeMap<_, _> = [(root.key_id(), root.public())].into();
        let env = SignedEnvelope::sign(&v1, &[&root]).unwrap();
        assert!(TrustDocument::verify_genesis(&env, &pinned, 1).is_ok());
        let forged =
            SignedEnvelope::sign(&TrustDocument::genesis(&[other.public()], 1), &[&other]).unwrap();
        assert!(TrustDocument::verify_genesis(&forged, &pinned, 1).is_err());
    }

    #[test]
    fn scope_and_status_rules() {
        let b = SigningKey::generate().unwrap();
        let mut e = builder_entry(&b, "app/*");
        assert!(e.covers_name("app/web"));
        assert!(!e.covers_name("app/web/x"));
        assert!(!e.covers_name("other"));
        e.scope = vec!["**".into()];
        assert!(e.covers_name("a/b/c"));
        let now = Utc::now();
        assert!(e.can_sign(Role::Builder, now));
        assert!(!e.can_sign(Role::Approver, now));
        e.not_after = Some("2000-01-01T00:00:00Z".into());
        assert!(!e.can_sign(Role::Builder, now));
        e.not_after = None;
        e.status = KeyStatus::Retired;
        assert!(!e.can_sign(Role::Builder, now));
    }
}
