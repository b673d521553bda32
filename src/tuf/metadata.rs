//! TUF metadata as arca writes and reads it (TUF specification 1.0; the subset python-tuf's
//! `ngclient` needs). Parsing is lenient about fields arca does not know, as the specification
//! asks; signatures are always checked over the raw `signed` object, never a re-encoding.

use std::collections::BTreeMap;

use arca_keys::{PublicKey, SigningKey, canonical::to_canonical_json};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The TUF specification version arca's metadata follows.
pub const SPEC_VERSION: &str = "1.0.31";

/// The four top-level TUF roles: the names of the metadata files (`{role}.json`), of the
/// `roles` in root metadata, of each file's `_type`, and of the `role` column the database
/// stores them under.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TufRole {
    Root,
    Targets,
    Snapshot,
    Timestamp,
}

impl TufRole {
    /// Every role, root first, in the order their files depend on one another.
    pub const ALL: [TufRole; 4] = [
        TufRole::Root,
        TufRole::Targets,
        TufRole::Snapshot,
        TufRole::Timestamp,
    ];

    /// The role's name as TUF spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            TufRole::Root => "root",
            TufRole::Targets => "targets",
            TufRole::Snapshot => "snapshot",
            TufRole::Timestamp => "timestamp",
        }
    }

    /// The role named `s`, if it is one of the four.
    pub fn parse(s: &str) -> Option<TufRole> {
        TufRole::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for TufRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As the role's string, so logs that print roles read as before.
impl std::fmt::Debug for TufRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<TufRole> for String {
    fn from(r: TufRole) -> String {
        r.as_str().to_owned()
    }
}

impl Serialize for TufRole {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Errors of reading and verifying TUF metadata.
#[derive(Debug, thiserror::Error)]
pub enum TufError {
    #[error("{role} metadata is malformed: {reason}")]
    Malformed { role: String, reason: String },
    #[error("{role} metadata: {valid} valid signature(s), threshold {threshold}")]
    Threshold {
        role: String,
        valid: usize,
        threshold: u32,
    },
    #[error("{role} metadata expired at {expires}")]
    Expired { role: String, expires: String },
    #[error("{role} metadata version {got} where {expected} was required")]
    BadVersion {
        role: String,
        expected: String,
        got: u64,
    },
    #[error("{role} rollback: version {got} is older than the trusted version {trusted}")]
    Rollback {
        role: String,
        trusted: u64,
        got: u64,
    },
    #[error("{what}: length or hash does not match the signed metadata")]
    HashMismatch { what: String },
    #[error("{what} exceeds its length limit of {limit} bytes")]
    TooLong { what: String, limit: u64 },
    /// TUF's slow-retrieval attack: a mirror that trickles bytes to hold a client forever.
    #[error(
        "{what}: too slow, {received} bytes in {secs:.1} s, below the minimum rate of {rate} bytes/s (ARCA_MIN_RATE)"
    )]
    TooSlow {
        what: String,
        received: u64,
        secs: f64,
        rate: u64,
    },
    #[error("{0}")]
    Other(String),
}

/// A key as TUF metadata lists it; `tuf::keys` verifies the types python-tuf verifies. Other
/// fields (`keyid_hash_algorithms`) are accepted and ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaKey {
    pub keytype: String,
    pub scheme: String,
    pub keyval: BTreeMap<String, String>,
}

impl MetaKey {
    pub fn from_public(k: &PublicKey) -> Self {
        let tuf = k.to_tuf();
        MetaKey {
            keytype: tuf.keytype,
            scheme: tuf.scheme,
            keyval: [("public".to_owned(), tuf.keyval.public)].into(),
        }
    }

    /// The ed25519 public key, if that is what this is.
    pub fn ed25519(&self) -> Option<PublicKey> {
        if self.keytype != "ed25519" || self.scheme != "ed25519" {
            return None;
        }
        let raw = hex::decode(self.keyval.get("public")?).ok()?;
        PublicKey::from_bytes(&raw).ok()
    }
}

/// The keys and threshold of one top-level role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Root {
    #[serde(rename = "_type")]
    pub kind: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub consistent_snapshot: bool,
    pub keys: BTreeMap<String, MetaKey>,
    pub roles: BTreeMap<String, RoleKeys>,
    /// The channel this root belongs to (absent in the shared root every channel starts from).
    /// Generic TUF clients ignore it; arca's client requires it to name the channel it asked for.
    #[serde(
        rename = "x-arca-channel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub channel: Option<String>,
}

impl Root {
    /// A root must delegate exactly the four top-level roles, each with a threshold of at
    /// least one (TUF 4.3; python-tuf refuses any other root as it reads it).
    fn malformed_roles(&self) -> Option<String> {
        let names: Vec<&str> = self.roles.keys().map(String::as_str).collect();
        let mut top: Vec<&str> = TufRole::ALL.iter().map(|r| r.as_str()).collect();
        top.sort_unstable();
        if names != top {
            return Some(format!("roles {names:?}: a root names exactly {top:?}"));
        }
        self.roles
            .iter()
            .find(|(_, r)| r.threshold == 0)
            .map(|(name, _)| format!("role {name} has a threshold of 0"))
    }
}

/// Version (and optionally length and hashes) of a metadata file, as snapshot and timestamp list it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(rename = "_type")]
    pub kind: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub targets: BTreeMap<String, TargetFile>,
    /// The roles this one delegates to (TUF 4.5), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
}

/// A targets role's delegations: the keys, and either roles by name or hashed bins (TAP 15).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delegations {
    pub keys: BTreeMap<String, MetaKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<DelegatedRole>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succinct_roles: Option<SuccinctRoles>,
}

/// One delegated role: who signs it, and which target paths it is trusted for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DelegatedRole {
    pub name: String,
    pub keyids: Vec<String>,
    pub threshold: u32,
    #[serde(default)]
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
}

/// `2^bit_length` bins named `{name_prefix}-{hex}`, one key set for all (TAP 15): a target
/// belongs to the bin of the first `bit_length` bits of its path's SHA-256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuccinctRoles {
    pub keyids: Vec<String>,
    pub threshold: u32,
    pub bit_length: u32,
    pub name_prefix: String,
}

impl Delegations {
    /// The roles trusted for `path`, in order, each with whether it is terminating (bins are).
    pub fn roles_for(&self, path: &str) -> Vec<(String, bool)> {
        if let Some(roles) = &self.roles {
            return roles
                .iter()
                .filter(|r| r.is_delegated_path(path))
                .map(|r| (r.name.clone(), r.terminating))
                .collect();
        }
        match &self.succinct_roles {
            Some(bins) => vec![(bins.role_for(path), true)],
            None => Vec::new(),
        }
    }

    /// The keys and threshold of the delegated role `name`, if this delegates it.
    pub fn keys_of(&self, name: &str) -> Option<RoleKeys> {
        if let Some(roles) = &self.roles {
            return roles.iter().find(|r| r.name == name).map(|r| RoleKeys {
                keyids: r.keyids.clone(),
                threshold: r.threshold,
            });
        }
        let bins = self.succinct_roles.as_ref()?;
        bins.is_bin(name).then(|| RoleKeys {
            keyids: bins.keyids.clone(),
            threshold: bins.threshold,
        })
    }

    /// What python-tuf refuses in delegations as it reads them (the reason).
    fn malformed(&self) -> Option<String> {
        match (&self.roles, &self.succinct_roles) {
            (Some(_), Some(_)) => {
                return Some("delegations with both roles and succinct_roles".into());
            }
            (None, None) => {
                return Some("delegations with neither roles nor succinct_roles".into());
            }
            _ => {}
        }
        if let Some(bins) = &self.succinct_roles
            && (bins.threshold == 0 || !(1..=32).contains(&bins.bit_length))
        {
            return Some(
                "succinct_roles with a threshold of 0 or a bit_length outside 1..=32".into(),
            );
        }
        let roles = self.roles.as_deref().unwrap_or_default();
        let mut names = std::collections::BTreeSet::new();
        for r in roles {
            if !names.insert(r.name.as_str()) {
                return Some(format!("delegated role {} appears twice", r.name));
            }
            if TufRole::parse(&r.name).is_some() {
                return Some(format!("a delegated role cannot be named {}", r.name));
            }
            if r.threshold == 0 {
                return Some(format!("delegated role {} has a threshold of 0", r.name));
            }
            if r.paths.is_some() == r.path_hash_prefixes.is_some() {
                return Some(format!(
                    "delegated role {} needs exactly one of paths and path_hash_prefixes",
                    r.name
                ));
            }
        }
        None
    }
}

impl DelegatedRole {
    /// Whether this role is trusted for `path`: a pattern of `paths` matches it segment by
    /// segment (`*`, `?` and `[...]` never cross a `/`), or its SHA-256 starts with one of
    /// `path_hash_prefixes`.
    pub fn is_delegated_path(&self, path: &str) -> bool {
        if let Some(patterns) = &self.paths {
            return patterns.iter().any(|p| path_matches(p, path));
        }
        let hash = sha256_hex(path.as_bytes());
        self.path_hash_prefixes
            .iter()
            .flatten()
            .any(|prefix| hash.starts_with(prefix.as_str()))
    }
}

impl SuccinctRoles {
    fn suffix_len(&self) -> usize {
        format!("{:x}", (1u64 << self.bit_length) - 1).len()
    }

    /// The bin `path` belongs to.
    pub fn role_for(&self, path: &str) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, path.as_bytes());
        let first = u32::from_be_bytes(digest.as_ref()[..4].try_into().expect("4 bytes"));
        let bin = u64::from(first) >> (32 - self.bit_length);
        format!(
            "{}-{bin:0width$x}",
            self.name_prefix,
            width = self.suffix_len()
        )
    }

    /// Whether `name` is one of these bins.
    pub fn is_bin(&self, name: &str) -> bool {
        let Some(suffix) = name
            .strip_prefix(self.name_prefix.as_str())
            .and_then(|s| s.strip_prefix('-'))
        else {
            return false;
        };
        suffix.len() == self.suffix_len()
            && suffix
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            && u64::from_str_radix(suffix, 16).is_ok_and(|n| n < 1u64 << self.bit_length)
    }
}

/// Whether `path` matches `pattern` as python-tuf matches delegated paths: the same number of
/// `/`-separated segments, each matched by `fnmatch` (`*`, `?`, `[seq]`, `[!seq]`).
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let (p, t): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == t.len()
        && p.iter()
            .zip(&t)
            .all(|(p, t)| fnmatch(p.as_bytes(), t.as_bytes()))
}

/// Shell-style matching of one segment (Python's `fnmatch.fnmatchcase`).
fn fnmatch(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') => (0..=text.len()).any(|i| fnmatch(&pattern[1..], &text[i..])),
        Some(b'?') => !text.is_empty() && fnmatch(&pattern[1..], &text[1..]),
        Some(b'[') => match class(&pattern[1..]) {
            Some((matches, rest)) => {
                !text.is_empty() && matches(text[0]) && fnmatch(rest, &text[1..])
            }
            // No closing bracket: a literal '['.
            None => text.first() == Some(&b'[') && fnmatch(&pattern[1..], &text[1..]),
        },
        Some(c) => text.first() == Some(c) && fnmatch(&pattern[1..], &text[1..]),
    }
}

/// A `[...]` class after its `[`: a test of one byte, and the pattern after the `]`.
#[allow(clippy::type_complexity)]
fn class(after: &[u8]) -> Option<(Box<dyn Fn(u8) -> bool + '_>, &[u8])> {
    let (negate, body) = match after.first() {
        Some(b'!') => (true, &after[1..]),
        _ => (false, after),
    };
    // A ']' first is part of the class.
    let end = 1 + body.get(1..)?.iter().position(|&b| b == b']')?;
    let (set, rest) = (&body[..end], &body[end + 1..]);
    let set = if set.is_empty() { return None } else { set };
    let test = move |c: u8| {
        let mut i = 0;
        let mut found = false;
        while i < set.len() {
            if i + 2 < set.len() && set[i + 1] == b'-' {
                found |= (set[i]..=set[i + 2]).contains(&c);
                i += 3;
            } else {
                found |= set[i] == c;
                i += 1;
            }
        }
        found != negate
    };
    Some((Box::new(test), rest))
}

macro_rules! meta_list {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct $ty {
            #[serde(rename = "_type")]
            pub kind: String,
            pub spec_version: String,
            pub version: u64,
            pub expires: String,
            pub meta: BTreeMap<String, MetaFile>,
        }
    };
}
meta_list!(
    /// Snapshot: the version of every targets file.
    Snapshot
);
meta_list!(
    /// Timestamp: the version (length, hashes) of the current snapshot.
    Timestamp
);

/// Common accessors of the four roles.
pub trait Signed: Serialize + DeserializeOwned {
    const ROLE: TufRole;
    fn version(&self) -> u64;
    fn expires(&self) -> &str;

    fn expires_at(&self) -> Result<DateTime<Utc>, TufError> {
        parse_time(self.expires()).ok_or_else(|| TufError::Malformed {
            role: Self::ROLE.into(),
            reason: format!("expires {:?} is not YYYY-MM-DDTHH:MM:SSZ", self.expires()),
        })
    }

    /// What the specification requires of a well-formed file of this role beyond its
    /// fields' types (the reason, if it is not): nothing in general; see `Root`.
    fn malformed(&self) -> Option<String> {
        None
    }

    fn check_not_expired(&self, now: DateTime<Utc>) -> Result<(), TufError> {
        if self.expires_at()? <= now {
            return Err(TufError::Expired {
                role: Self::ROLE.into(),
                expires: self.expires().into(),
            });
        }
        Ok(())
    }
}

macro_rules! signed_role {
    ($ty:ty, $role:expr) => {
        signed_role!($ty, $role, |_: &$ty| None);
    };
    ($ty:ty, $role:expr, $malformed:expr) => {
        impl Signed for $ty {
            const ROLE: TufRole = $role;
            fn version(&self) -> u64 {
                self.version
            }
            fn expires(&self) -> &str {
                &self.expires
            }
            fn malformed(&self) -> Option<String> {
                $malformed(self)
            }
        }
    };
}
signed_role!(Root, TufRole::Root, Root::malformed_roles);
signed_role!(Targets, TufRole::Targets, |t: &Targets| t
    .delegations
    .as_ref()
    .and_then(Delegations::malformed));
signed_role!(Snapshot, TufRole::Snapshot);
signed_role!(Timestamp, TufRole::Timestamp);

/// `expires` exactly as TUF writes it.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if s.len() != 20 || !s.ends_with('Z') {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// One signature in a metadata file (key ids kept as strings: other repositories may use
/// other key id schemes, and an unknown key simply does not count).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaSignature {
    pub keyid: String,
    pub sig: String,
}

/// A metadata file: raw `signed` plus signatures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub signed: serde_json::Value,
    pub signatures: Vec<MetaSignature>,
}

impl Envelope {
    /// Serialises and signs `signed` with each key.
    pub fn sign<T: Serialize>(signed: &T, keys: &[&SigningKey]) -> Self {
        let signed = serde_json::to_value(signed).expect("metadata encodes");
        let msg = to_canonical_json(&signed).expect("metadata has no floats");
        let signatures = keys
            .iter()
            .map(|k| MetaSignature {
                keyid: k.key_id().to_string(),
                sig: hex::encode(k.sign(&msg)),
            })
            .collect();
        Envelope { signed, signatures }
    }

    /// [`Envelope::sign`] with keys held by the CLI (files or tokens), any of which may fail
    /// to sign; the first failure is the error and no envelope is made.
    pub fn sign_with<T: Serialize>(
        signed: &T,
        keys: &[&dyn arca_keys::Signer],
    ) -> Result<Self, arca_keys::KeyError> {
        let signed = serde_json::to_value(signed)
            .map_err(|e| arca_keys::KeyError::Canonical(e.to_string()))?;
        let msg = to_canonical_json(&signed)?;
        let signatures = keys
            .iter()
            .map(|k| {
                Ok(MetaSignature {
                    keyid: k.key_id().to_string(),
                    sig: hex::encode(k.sign(&msg)?),
                })
            })
            .collect::<Result<_, arca_keys::KeyError>>()?;
        Ok(Envelope { signed, signatures })
    }

    /// Parses a metadata file; `role` (a role or a file name) names it in errors.
    pub fn from_slice(role: impl Into<String>, bytes: &[u8]) -> Result<Self, TufError> {
        serde_json::from_slice(bytes).map_err(|e| TufError::Malformed {
            role: role.into(),
            reason: e.to_string(),
        })
    }

    /// The bytes that are served: canonical JSON of the whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        to_canonical_json(self).expect("metadata has no floats")
    }

    /// Signs `signed` and returns the file's bytes directly: the same bytes as
    /// `Envelope::sign(..).to_bytes()`, but `signed` is canonicalised once, not twice (the
    /// canonical form of `{"signatures", "signed"}` is the two members in that order).
    pub fn sign_to_bytes<T: Serialize>(signed: &T, keys: &[&SigningKey]) -> Vec<u8> {
        Self::signed_bytes(
            &to_canonical_json(signed).expect("metadata has no floats"),
            keys,
        )
    }

    /// The file's bytes for an already canonical `signed` (`msg`), signed with each key.
    pub fn signed_bytes(msg: &[u8], keys: &[&SigningKey]) -> Vec<u8> {
        let signatures: Vec<MetaSignature> = keys
            .iter()
            .map(|k| MetaSignature {
                keyid: k.key_id().to_string(),
                sig: hex::encode(k.sign(msg)),
            })
            .collect();
        let sigs = to_canonical_json(&signatures).expect("signatures encode");
        let mut out = Vec::with_capacity(msg.len() + sigs.len() + 32);
        out.extend_from_slice(b"{\"signatures\":");
        out.extend_from_slice(&sigs);
        out.extend_from_slice(b",\"signed\":");
        out.extend_from_slice(msg);
        out.push(b'}');
        out
    }

    /// Decodes `signed` as role `T`, checking `_type`.
    pub fn decode<T: Signed>(&self) -> Result<T, TufError> {
        let kind = self.signed.get("_type").and_then(|v| v.as_str());
        if kind != Some(T::ROLE.as_str()) {
            return Err(TufError::Malformed {
                role: T::ROLE.into(),
                reason: format!("_type is {kind:?}, expected {:?}", T::ROLE.as_str()),
            });
        }
        // A major version other than the specification's 1 is another format (python-tuf
        // refuses it too).
        let spec = self.signed.get("spec_version").and_then(|v| v.as_str());
        if spec.and_then(|v| v.split('.').next()) != Some("1") {
            return Err(TufError::Malformed {
                role: T::ROLE.into(),
                reason: format!("unsupported spec_version {spec:?}"),
            });
        }
        let decoded: T =
            serde_json::from_value(self.signed.clone()).map_err(|e| TufError::Malformed {
                role: T::ROLE.into(),
                reason: e.to_string(),
            })?;
        match decoded.malformed() {
            Some(reason) => Err(TufError::Malformed {
                role: T::ROLE.into(),
                reason,
            }),
            None => Ok(decoded),
        }
    }

    /// Verifies that the threshold of `role`'s keys in `root` signed this file.
    pub fn verify_role(&self, root: &Root, role: TufRole) -> Result<(), TufError> {
        let keys = root
            .roles
            .get(role.as_str())
            .ok_or_else(|| TufError::Malformed {
                role: TufRole::Root.into(),
                reason: format!("no {role} role"),
            })?;
        self.verify_keys(&root.keys, keys, role.as_str())
    }

    /// Verifies that the threshold of `keys` (named in `known`) signed this file of `role`: a
    /// top-level role under its root, or a delegated one under its delegator's delegations.
    pub fn verify_keys(
        &self,
        known: &BTreeMap<String, MetaKey>,
        keys: &RoleKeys,
        role: &str,
    ) -> Result<(), TufError> {
        let msg = to_canonical_json(&self.signed).map_err(|e| TufError::Malformed {
            role: role.into(),
            reason: e.to_string(),
        })?;
        // A file whose signatures repeat a key id is refused outright, as python-tuf does.
        let mut ids = std::collections::BTreeSet::new();
        if let Some(again) = self.signatures.iter().find(|s| !ids.insert(&s.keyid)) {
            return Err(TufError::Malformed {
                role: role.into(),
                reason: format!("two signatures name key {}", again.keyid),
            });
        }
        // Each key counts once, whatever ids it is listed under; keys of a type arca cannot
        // verify count for nothing (and are no error).
        let mut valid = std::collections::BTreeSet::new();
        let mut counted = std::collections::BTreeSet::new();
        for s in &self.signatures {
            if !keys.keyids.contains(&s.keyid) {
                continue;
            }
            let Some(key) = known.get(&s.keyid).and_then(super::keys::Verifier::of) else {
                continue;
            };
            if hex::decode(&s.sig).is_ok_and(|sig| key.verify(&msg, &sig))
                && counted.insert(key.material())
            {
                valid.insert(s.keyid.clone());
            }
        }
        if keys.threshold == 0 || valid.len() < keys.threshold as usize {
            return Err(TufError::Threshold {
                role: role.into(),
                valid: valid.len(),
                threshold: keys.threshold,
            });
        }
        Ok(())
    }
}

/// SHA-256 hex of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_their_tuf_names() {
        let names: Vec<&str> = TufRole::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["root", "targets", "snapshot", "timestamp"]);
        for r in TufRole::ALL {
            assert_eq!(TufRole::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
            assert_eq!(format!("{r}"), r.as_str());
            assert_eq!(format!("{r:?}"), format!("{:?}", r.as_str()));
        }
        assert_eq!(TufRole::parse("mirror"), None);
        assert_eq!(Root::ROLE, TufRole::Root);
        assert_eq!(Timestamp::ROLE, TufRole::Timestamp);
    }

    #[test]
    fn sign_to_bytes_equals_sign_then_encode() {
        let key = SigningKey::generate().unwrap();
        let doc = serde_json::json!({"_type": "targets", "version": 3, "targets": {"b": {"length": 1}, "a": {}}});
        assert_eq!(
            Envelope::sign_to_bytes(&doc, &[&key]),
            Envelope::sign(&doc, &[&key]).to_bytes()
        );
    }

    /// A root whose targets role lists `ids` (each naming `keys[i]`) with `threshold`, and a
    /// targets file signed by `signers` under the ids given.
    fn signed_by(
        keys: &[(&str, MetaKey)],
        threshold: u32,
        signers: &[(&str, &SigningKey)],
    ) -> (Root, Envelope) {
        let root = Root {
            kind: "root".into(),
            spec_version: SPEC_VERSION.into(),
            version: 1,
            expires: "2100-01-01T00:00:00Z".into(),
            consistent_snapshot: true,
            keys: keys
                .iter()
                .map(|(id, k)| (id.to_string(), k.clone()))
                .collect(),
            roles: [(
                "targets".to_owned(),
                RoleKeys {
                    keyids: keys.iter().map(|(id, _)| id.to_string()).collect(),
                    threshold,
                },
            )]
            .into(),
            channel: None,
        };
        let signed = serde_json::json!({"_type": "targets", "version": 1});
        let msg = to_canonical_json(&signed).unwrap();
        let signatures = signers
            .iter()
            .map(|(id, k)| MetaSignature {
                keyid: id.to_string(),
                sig: hex::encode(k.sign(&msg)),
            })
            .collect();
        (root, Envelope { signed, signatures })
    }

    #[test]
    fn a_threshold_counts_each_key_once_and_skips_unknown_key_types() {
        let (a, b) = (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        );
        let (ka, kb) = (
            MetaKey::from_public(&a.public()),
            MetaKey::from_public(&b.public()),
        );
        let unknown = MetaKey {
            keytype: "ed448".into(),
            scheme: "ed448".into(),
            keyval: [("public".to_owned(), "00".repeat(57))].into(),
        };
        // One key listed under two ids, signing under both: one key, below a threshold of 2.
        let (root, env) = signed_by(
            &[("a1", ka.clone()), ("a2", ka.clone())],
            2,
            &[("a1", &a), ("a2", &a)],
        );
        assert!(matches!(
            env.verify_role(&root, TufRole::Targets),
            Err(TufError::Threshold { valid: 1, .. })
        ));
        // Two keys: met.
        let (root, env) = signed_by(
            &[("a", ka.clone()), ("b", kb.clone())],
            2,
            &[("a", &a), ("b", &b)],
        );
        env.verify_role(&root, TufRole::Targets).unwrap();
        // A key of an unknown type is listed and "signs": skipped, not an error.
        let (root, env) = signed_by(
            &[("a", ka.clone()), ("x", unknown)],
            1,
            &[("x", &b), ("a", &a)],
        );
        env.verify_role(&root, TufRole::Targets).unwrap();
        // Two signatures naming one key id: the file is refused, even above the threshold.
        let (root, env) = signed_by(
            &[("a", ka), ("b", kb)],
            1,
            &[("a", &a), ("b", &b), ("a", &a)],
        );
        assert!(matches!(
            env.verify_role(&root, TufRole::Targets),
            Err(TufError::Malformed { .. })
        ));
    }

    #[test]
    fn delegated_paths_match_segment_by_segment_as_python_tuf_does() {
        for (pattern, path, expected) in [
            ("deleg/*.txt", "deleg/file.txt", true),
            ("deleg/*", "deleg/a/b.txt", false),
            ("*", "a/b", false),
            ("*.txt", "dir/x.txt", false),
            ("a/?.txt", "a/b.txt", true),
            ("a/?.txt", "a/bb.txt", false),
            ("a/?", "a//", false),
            ("a/[ab].txt", "a/b.txt", true),
            ("a/[!ab].txt", "a/b.txt", false),
            ("a/[a-c]x", "a/bx", true),
            ("a/[]x", "a/[]x", true),
            ("a/b", "a/b", true),
            ("", "", true),
        ] {
            assert_eq!(path_matches(pattern, path), expected, "{pattern} ~ {path}");
        }
    }

    #[test]
    fn succinct_bins_take_the_leading_bits_of_the_paths_sha256() {
        let bins = |bit_length| SuccinctRoles {
            keyids: vec![],
            threshold: 1,
            bit_length,
            name_prefix: "bin".into(),
        };
        let hash = sha256_hex(b"app/x/x.bin");
        assert_eq!(
            bins(4).role_for("app/x/x.bin"),
            format!("bin-{}", &hash[..1])
        );
        assert_eq!(
            bins(8).role_for("app/x/x.bin"),
            format!("bin-{}", &hash[..2])
        );
        let first = u8::from_str_radix(&hash[..2], 16).unwrap();
        assert_eq!(
            bins(1).role_for("app/x/x.bin"),
            format!("bin-{}", first >> 7)
        );
        assert!(bins(4).is_bin("bin-f"));
        assert!(!bins(4).is_bin("bin-10"), "one hex digit for 16 bins");
        assert!(!bins(4).is_bin("bin-F"));
        assert!(!bins(3).is_bin("bin-8"), "8 bins: 0 to 7");
        assert!(!bins(4).is_bin("other-1"));
    }
}
