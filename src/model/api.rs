//! Wire types shared by the server, the CLI and the agent, so the two sides cannot drift.

use serde::{Deserialize, Serialize};

use super::{ArtifactName, ChannelName, FileName, Version};

/// API prefix of every JSON endpoint.
pub const API: &str = "/api/v1";
/// Request header that carries the base64 of the build statement's DSSE envelope on a push.
pub const STATEMENT_HEADER: &str = "arca-statement";
/// Predicate type of arca's minimal build statement.
pub const BUILD_PREDICATE: &str = "https://arca.dev/build/v1";
/// SLSA provenance v1, accepted as a build statement too.
pub const SLSA_PROVENANCE: &str = "https://slsa.dev/provenance/v1";

/// Whether a predicate type makes a statement a build signature.
pub fn is_build_predicate(predicate_type: &str) -> bool {
    predicate_type == BUILD_PREDICATE || predicate_type == SLSA_PROVENANCE
}

/// The subject name of an artifact in statements: `name@version`.
pub fn subject_name(name: &ArtifactName, version: &Version) -> String {
    format!("{name}@{version}")
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Query of `POST /api/v1/artifacts` (the body is the artifact's bytes).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushQuery {
    pub name: ArtifactName,
    pub version: Version,
    pub file: FileName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// A staged upload (from `POST /api/v1/uploads`) holding the bytes; the body is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
}

/// Query of `POST /api/v1/uploads` (the body is the artifact's bytes). The signer is named up
/// front so that the server can refuse a key that may not push this name before reading a byte.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    pub name: ArtifactName,
    pub version: Version,
    pub signer: arca_keys::KeyId,
}

/// Answer to an upload: the bytes are stored and hashed, but visible nowhere until a push
/// names this upload with a build statement whose digests match.
#[derive(Debug, Serialize, Deserialize)]
pub struct UploadResponse {
    pub upload: String,
    pub blake3: String,
    pub sha256: String,
    pub size: u64,
}

/// The predicate of arca's minimal build statement.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildPredicate {
    pub file_name: FileName,
    pub size: u64,
}

/// One artifact as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactInfo {
    pub name: ArtifactName,
    pub version: Version,
    pub file_name: FileName,
    pub size: u64,
    pub sha256: String,
    pub blake3: String,
    pub media_type: String,
    pub uploaded_by: String,
    pub created_at: String,
    /// SHA-256 of each statement envelope about this artifact.
    pub statements: Vec<String>,
}

/// Answer to a push.
#[derive(Debug, Serialize, Deserialize)]
pub struct PushResponse {
    pub artifact: ArtifactInfo,
    /// The channel the artifact entered.
    pub channel: ChannelName,
    /// False when the same bytes were already registered under this `name@version`.
    pub created: bool,
    /// The channel's targets metadata version that lists the release.
    pub targets_version: u64,
}

/// Answer to a trust change.
#[derive(Debug, Serialize, Deserialize)]
pub struct TrustChangeResponse {
    pub version: u64,
}

/// The `custom` field of a TUF target that arca publishes: what arca's own client checks on
/// top of TUF (signed by the targets role with the rest of the entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetCustom {
    pub name: ArtifactName,
    pub version: Version,
    pub blake3: String,
    /// SHA-256 of each statement envelope (fetch from `/api/v1/statements/{sha256}`).
    pub statements: Vec<String>,
    /// The trust document version current when this entry was published; a client must know
    /// at least this version before it checks the statements.
    pub trust_version: u64,
}

/// Body of `POST /api/v1/promotions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub name: ArtifactName,
    pub version: Version,
    pub to: ChannelName,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Answer to a promotion (also the body of its refusal, 403 `policy_refused`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromoteResponse {
    pub decision: crate::policy::Decision,
    /// The channel now holds the release because of this request.
    pub promoted: bool,
    /// The release was already current (a retried request changes nothing).
    pub already_current: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_version: Option<u64>,
}

/// Body of `POST /api/v1/rollbacks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub name: ArtifactName,
    pub channel: ChannelName,
    /// A version the channel held before; default: the release before the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Version>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Answer to a rollback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackResponse {
    pub from: Version,
    pub to: Version,
    pub targets_version: u64,
}

/// Body of `POST /api/v1/policies/{channel}`: the policy file and the next trust document,
/// root-signed, whose `policies` pins the file's SHA-256 for the channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    pub policy: String,
    pub trust: arca_keys::SignedEnvelope,
}

/// Answer to a statement upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatementResponse {
    pub sha256: String,
    pub predicate_type: String,
    pub signers: Vec<String>,
    /// Channels the release entered by itself because of it (`auto` policies).
    pub auto_promoted: Vec<String>,
}

/// Body of `POST /api/v1/trust/rotation`: the next trust document with new root keys, and every
/// channel's next TUF root naming the same keys, each signed by the threshold of the old and
/// of the new root keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootRotation {
    pub trust: arca_keys::SignedEnvelope,
    pub roots: std::collections::BTreeMap<String, crate::tuf::metadata::Envelope>,
}

/// A release current in a channel with a build statement signed by a given key
/// (`GET /api/v1/keys/{keyid}/releases`), listed when that key is revoked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReliantRelease {
    pub channel: String,
    pub name: String,
    pub version: String,
}
