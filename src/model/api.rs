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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Defines [`ErrorCode`] from `Variant => "wire_string"` pairs, so `as_str`, `ALL` and the
/// serialised form are written once and cannot disagree.
macro_rules! error_codes {
    ($($variant:ident => $s:literal,)*) => {
        /// The stable `code` of every error answer (`{"error": {"code", "message"}}`): the
        /// wire contract clients match on, so each is listed here once (docs/api.md names them
        /// all, checked by a test) and serialised as its snake_case string.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in alphabetical order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it is answered.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $s,)*
                }
            }
        }
    };
}

error_codes! {
    AgentIdentity => "agent_identity",
    AlreadyCurrent => "already_current",
    BadDigest => "bad_digest",
    BadMediaType => "bad_media_type",
    BadMessage => "bad_message",
    BadPath => "bad_path",
    BadPolicy => "bad_policy",
    BadReason => "bad_reason",
    BadRequest => "bad_request",
    BadStatement => "bad_statement",
    BadTrustDocument => "bad_trust_document",
    BadVersion => "bad_version",
    BlobNotFound => "blob_not_found",
    BodyTimeout => "body_timeout",
    ClockFault => "clock_fault",
    DatabaseBusy => "database_busy",
    DatabaseUnavailable => "database_unavailable",
    DigestMismatch => "digest_mismatch",
    Error => "error",
    InsufficientStorage => "insufficient_storage",
    Internal => "internal",
    InvalidAgent => "invalid_agent",
    InvalidExpiry => "invalid_expiry",
    InvalidLabel => "invalid_label",
    InvalidRange => "invalid_range",
    InvalidReport => "invalid_report",
    InvalidRole => "invalid_role",
    InvalidRollout => "invalid_rollout",
    InvalidScope => "invalid_scope",
    InvalidTokenId => "invalid_token_id",
    KeyNotAllowed => "key_not_allowed",
    MethodNotAllowed => "method_not_allowed",
    MissingStatement => "missing_statement",
    NoActiveRollout => "no_active_rollout",
    NoAgent => "no_agent",
    NoArtifact => "no_artifact",
    NoEarlierRelease => "no_earlier_release",
    NoMetadata => "no_metadata",
    NoPendingKey => "no_pending_key",
    NoPolicy => "no_policy",
    NoRelease => "no_release",
    NoRollout => "no_rollout",
    NoRoute => "no_route",
    NoStatement => "no_statement",
    NoTarget => "no_target",
    NoToken => "no_token",
    NoTrustVersion => "no_trust_version",
    NoUpload => "no_upload",
    NotInHistory => "not_in_history",
    PolicyDigest => "policy_digest",
    PolicyRefused => "policy_refused",
    RangeNotSatisfiable => "range_not_satisfiable",
    RateLimited => "rate_limited",
    RollbackTargetInvalid => "rollback_target_invalid",
    RolloutState => "rollout_state",
    RootRotation => "root_rotation",
    RootThreshold => "root_threshold",
    StoreUnavailable => "store_unavailable",
    StrandedReleases => "stranded_releases",
    TokenInUse => "token_in_use",
    TokenRole => "token_role",
    TokenScope => "token_scope",
    TooLarge => "too_large",
    TooManyDownloads => "too_many_downloads",
    TooManyUploads => "too_many_uploads",
    TrustVersion => "trust_version",
    Unauthorized => "unauthorized",
    Unavailable => "unavailable",
    UnknownAction => "unknown_action",
    UnknownChannel => "unknown_channel",
    UnknownPolicy => "unknown_policy",
    UnsupportedMediaType => "unsupported_media_type",
    UntrustedKey => "untrusted_key",
    UploadFailed => "upload_failed",
    UploadMismatch => "upload_mismatch",
    VersionExists => "version_exists",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
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
    /// The phased rollout this release is in, if any: agents outside its percentage install
    /// the release the entry at `rollout.previous` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutEntry>,
    /// This entry is the release that agents outside a running rollout keep; `arca pull` and
    /// agents inside the rollout ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub previous: bool,
}

/// A rollout as its release's signed target entry carries it (integers only: canonical JSON
/// has no floats).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutEntry {
    pub id: u64,
    /// The plan's percentages.
    pub steps: Vec<u32>,
    /// Index of the current step.
    pub step: u32,
    /// The percentage of agents that take this release now (`steps[step]`).
    pub percent: u32,
    /// `running` or `paused`.
    pub state: String,
    pub step_interval_secs: u64,
    /// The failure ceiling in basis points (500 = 5%).
    pub max_failure_bp: u32,
    pub min_reports: u32,
    /// Target path of the release agents outside the percentage keep (absent for a name's
    /// first release in the channel: those agents install nothing yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
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
    /// Phase the release in (replaces the channel policy's plan for this promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::Plan>,
}

/// Answer to a promotion (also the body of its refusal, 403 `policy_refused`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromoteResponse {
    pub decision: Decision,
    /// The channel now holds the release because of this request.
    pub promoted: bool,
    /// The release was already current (a retried request changes nothing).
    pub already_current: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_version: Option<u64>,
    /// The rollout the promotion started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<u64>,
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

/// Query of `POST /api/v1/policies/{channel}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChangeQuery {
    /// Set the policy even though releases listed in the channel would no longer meet it
    /// (clients refuse them until they get what they lack, e.g. another approval).
    #[serde(default)]
    pub force: bool,
}

/// A release current in a channel that the channel's (new) policy refuses: clients that
/// re-check the policy's signature rules will not install it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrandedRelease {
    pub name: String,
    pub version: String,
    /// The failing rules, each with its reason.
    pub failures: Vec<String>,
}

/// Answer to a policy change: the new trust version and the releases it strands (only
/// non-empty when the change was forced).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyChangeResponse {
    pub version: u64,
    #[serde(default)]
    pub stranded: Vec<StrandedRelease>,
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

/// Outcome an agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportOutcome {
    /// The release is installed, current and healthy.
    Ok,
    /// The release failed to install or its health check failed; the agent went back.
    Failed,
    /// The agent could not get a release it would accept (metadata or bytes refused,
    /// server unreachable): nothing was installed. Recorded, not counted against a rollout.
    Error,
    /// The agent is alive and runs `current` (sent at start and every heartbeat interval):
    /// refreshes `last_seen` and what it runs, keeps its last outcome, counts for nothing.
    Heartbeat,
}

impl ReportOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportOutcome::Ok => "ok",
            ReportOutcome::Failed => "failed",
            ReportOutcome::Error => "error",
            ReportOutcome::Heartbeat => "heartbeat",
        }
    }
}

/// Body of `POST /api/v1/reports` (a reporting token suffices).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub agent: AgentId,
    pub channel: ChannelName,
    pub name: ArtifactName,
    /// The version the report is about (for `error`, the one the agent tried, if it knew).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    pub outcome: ReportOutcome,
    #[serde(default)]
    pub message: String,
    /// The version the agent runs now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Version>,
    /// When it happened, by the agent's clock (the server also records when it arrived).
    pub at: String,
}

/// Answer to a report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportResponse {
    /// The rollout the report counted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<u64>,
    /// The rollout halted because of it.
    #[serde(default)]
    pub halted: bool,
}

/// An agent id: `[A-Za-z0-9][A-Za-z0-9._:-]*`, at most 128 bytes (a host name, a UUID).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AgentId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(AgentId(s))
        } else {
            Err(format!(
                "agent id {s:?} must be 1-128 characters of [A-Za-z0-9._:-], starting alphanumeric"
            ))
        }
    }
}

impl std::str::FromStr for AgentId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AgentId::try_from(s.to_owned())
    }
}

impl From<AgentId> for String {
    fn from(a: AgentId) -> String {
        a.0
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Body of `POST /api/v1/rollouts/{action}` (advance, pause, resume, abort).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutAction {
    pub channel: ChannelName,
    pub name: ArtifactName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Reports of one step of a rollout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepFigures {
    pub step: u32,
    pub percent: u32,
    pub ok: u64,
    pub failed: u64,
}

/// How many of the agents known for the name (seen within `agents.stale_after`) a step of a
/// rollout reaches: the current step at the percentage it publishes, the others at the one the
/// rule (`rollout::reach`) gives them with the agents known now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReach {
    pub step: u32,
    /// The planned percentage.
    pub planned: u32,
    /// The percentage agents obey (raised above the plan so that the step holds an agent).
    pub percent: u32,
    pub agents: u64,
}

/// A rollout as `GET /api/v1/rollouts/status` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub id: u64,
    pub channel: String,
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub plan: crate::rollout::Plan,
    pub step: u32,
    pub percent: u32,
    pub state: String,
    pub step_started_at: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Distinct agents by their latest report on this release, over the whole rollout.
    pub figures: crate::rollout::Figures,
    pub failure_rate: f64,
    /// The same, by the step the agents reported in.
    pub steps: Vec<StepFigures>,
    /// What the server waits for, for a running rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Agents known for the name (seen within `agents.stale_after`).
    #[serde(default)]
    pub known_agents: u64,
    /// Every step of the plan with the known agents it holds.
    #[serde(default)]
    pub reach: Vec<StepReach>,
}

/// One agent as `GET /api/v1/agents` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentInfo {
    pub agent: String,
    pub channel: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub outcome: String,
    pub message: String,
    pub last_seen: String,
    /// Not seen (no report, no heartbeat) within the server's `agents.stale_after`.
    #[serde(default)]
    pub stale: bool,
    /// The release the channel means for this agent now (by the signed rollout plan), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted: Option<String>,
    /// It runs something other than `wanted` (a failed install, a stopped agent).
    #[serde(default)]
    pub off_release: bool,
    /// The token it last reported with (`token:<id>`) and that token's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// `admin`, `publisher`, `promoter`, `reporter` or `viewer` (docs/security.md, "Tokens").
    pub role: String,
    /// Who holds it (shown in listings and the audit log); `description` is its old name.
    #[serde(
        default,
        alias = "description",
        skip_serializing_if = "Option::is_none"
    )]
    pub label: Option<String>,
    /// Reporter tokens: the agent ids it may report as (exact, `prefix*`, or `*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    /// Reporter tokens: the channels it may report on (none: every channel); promoter tokens
    /// (required): the channels it may promote to, roll back and act on rollouts in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Publisher tokens (required) and promoter tokens (none: every name): the artifact name
    /// globs it may act on (`team-a/*`, `**`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Seconds from now until the token expires; none: it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

/// Answer to a token request: the token is shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub id: String,
    pub role: String,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// One token as `GET /api/v1/tokens` lists it (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub names: Vec<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// When it expires; absent: never.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// When it last authenticated a request (recorded at most once a minute); absent: never.
    #[serde(default)]
    pub last_used_at: Option<String>,
}

/// What is current in one channel (`GET /api/v1/channels`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelBoard {
    pub channel: ChannelName,
    /// Position in the pipeline (0: where pushes enter).
    pub position: usize,
    pub releases: Vec<CurrentRelease>,
}

/// The current release of a name in a channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurrentRelease {
    pub name: ArtifactName,
    pub version: Version,
    /// When it became current, and how (push, promote, auto-promote, rollback).
    pub since: String,
    pub action: String,
    pub actor: String,
}

/// One release, everywhere (`GET /api/v1/release?name=&version=`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseView {
    pub artifact: ArtifactInfo,
    /// Every channel of the pipeline, in order.
    pub channels: Vec<ReleaseInChannel>,
    pub statements: Vec<StatementSummary>,
}

/// Where a release stands in one channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseInChannel {
    pub channel: ChannelName,
    /// Whether this release is the channel's current one for its name.
    pub current: bool,
    /// The channel's current version of the name, if it holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<Version>,
    /// The changes of this channel that involved this release, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// A statement about a release, as stored (its signatures were checked when it arrived).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatementSummary {
    pub sha256: String,
    pub predicate_type: String,
    pub signers: Vec<Signer>,
    pub created_at: String,
}

/// A key that signed a statement, with its label and standing in the current trust document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signer {
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// active, retired, revoked, or unknown (no longer in the trust document).
    pub status: String,
}

/// One change of a channel's release of a name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: i64,
    pub version: String,
    pub action: String,
    pub actor: String,
    /// The label of the token the actor names, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_label: Option<String>,
    pub reason: Option<String>,
    pub at: String,
}

impl HistoryEntry {
    /// The actor as people read it: `token:1a2b… (ci-team-a)`.
    pub fn who(&self) -> String {
        match &self.actor_label {
            Some(l) => format!("{} ({l})", self.actor),
            None => self.actor.clone(),
        }
    }
}

/// One metadata role of one channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaStatus {
    pub channel: String,
    pub role: String,
    pub version: u64,
    pub expires: String,
    /// Seconds until it expires (negative: expired).
    pub expires_in: i64,
}

/// One key of the trust document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyStatus {
    pub keyid: String,
    pub roles: Vec<String>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after_in: Option<i64>,
}

/// `GET /api/v1/status`: the expiry of every channel's metadata and of every key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub trust_version: u64,
    pub metadata: Vec<MetaStatus>,
    pub keys: Vec<KeyStatus>,
    pub audit_entries: i64,
}

/// `GET /readyz`: each check by name, and whether this server leads the background work.
/// Ready (200) when the database and the store are `ok`; a follower is ready. Not ready (503)
/// carries the first failing check's error too (`database_unavailable`, `store_unavailable`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    /// `ok`; `unavailable` (it does not answer) or `empty` (it holds no trust document).
    pub database: String,
    /// `ok` or `unavailable` (the directory is missing, the bucket cannot be listed).
    pub store: String,
    /// This server runs the background work (re-signing, rollout ticks, sweeps).
    pub leader: bool,
    /// `sqlite` or `postgres`.
    pub engine: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// A policy decision as the server answers it (`policy::evaluate` makes it; the CLI prints it).
/// One rule's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleResult {
    pub rule: String,
    pub pass: bool,
    pub reason: String,
}

/// The outcome of evaluating a policy: allowed only if every rule passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    pub rules: Vec<RuleResult>,
    /// A break-glass approval let the promotion through a freeze.
    pub break_glass: bool,
}

impl Decision {
    /// The failing rules, one line each.
    pub fn failures(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| !r.pass)
            .map(|r| format!("{}: {}", r.rule, r.reason))
            .collect()
    }
}

/// What an operator does to a rollout: `POST /api/v1/rollouts/{verb}`, `arca rollout VERB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutVerb {
    Advance,
    Pause,
    Resume,
    Abort,
}

impl RolloutVerb {
    pub const ALL: [RolloutVerb; 4] = [
        RolloutVerb::Advance,
        RolloutVerb::Pause,
        RolloutVerb::Resume,
        RolloutVerb::Abort,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutVerb::Advance => "advance",
            RolloutVerb::Pause => "pause",
            RolloutVerb::Resume => "resume",
            RolloutVerb::Abort => "abort",
        }
    }

    /// The audit log's action for it (`rollout-pause`, ...).
    pub fn audit_action(self) -> crate::audit::AuditAction {
        use crate::audit::AuditAction;
        match self {
            RolloutVerb::Advance => AuditAction::RolloutAdvance,
            RolloutVerb::Pause => AuditAction::RolloutPause,
            RolloutVerb::Resume => AuditAction::RolloutResume,
            RolloutVerb::Abort => AuditAction::RolloutAbort,
        }
    }
}

impl std::str::FromStr for RolloutVerb {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        RolloutVerb::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/api.md, the contract clients read.
    const API_DOC: &str = include_str!("../../docs/api.md");

    /// The codes of the rows of docs/api.md's error tables: `| 4xx | `code`, ... | when |`.
    fn doc_table_codes() -> Vec<String> {
        let mut codes = Vec::new();
        for line in API_DOC.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // "", status, code(s), when, ""
            let [_, status, code, ..] = cells[..] else {
                continue;
            };
            let is_status =
                status.len() == 3 && (status.starts_with('4') || status.starts_with('5'));
            if !is_status {
                continue;
            }
            for (i, part) in code.split('`').enumerate() {
                if i % 2 == 1 {
                    codes.push(part.to_owned());
                }
            }
        }
        codes
    }

    #[test]
    fn every_error_code_is_in_the_api_doc() {
        let missing: Vec<&str> = ErrorCode::ALL
            .iter()
            .map(|c| c.as_str())
            .filter(|c| !API_DOC.contains(&format!("`{c}`")))
            .collect();
        assert!(missing.is_empty(), "docs/api.md does not name {missing:?}");
    }

    #[test]
    fn every_code_in_the_api_doc_tables_is_an_error_code() {
        let codes = doc_table_codes();
        assert!(codes.len() >= 10, "error tables not found: {codes:?}");
        let unknown: Vec<&String> = codes
            .iter()
            .filter(|c| !ErrorCode::ALL.iter().any(|e| e.as_str() == c.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "docs/api.md lists codes the server never answers: {unknown:?}"
        );
    }

    #[test]
    fn error_codes_are_unique_sorted_and_serialised_as_their_string() {
        for w in ErrorCode::ALL.windows(2) {
            assert!(w[0].as_str() < w[1].as_str(), "{} then {}", w[0], w[1]);
        }
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert_eq!(c.to_string(), c.as_str());
            let snake = c
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_');
            assert!(snake, "{c} is not snake_case");
        }
    }
}
