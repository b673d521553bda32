//! The reads that promotion, rollback, rollouts, auto-promotion, push and policy checks share,
//! inside the caller's transaction: the current trust document, a channel's policy, the
//! statements about a release that count, a promotion's decision, and whether an earlier
//! release may become current again. Nothing here writes.

use crate::db::Sql;
use crate::model::api::ErrorCode;
use arca_keys::dsse::Envelope;
use arca_keys::{SignedEnvelope, TrustDocument};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

use super::Error;
use crate::db::{self, artifacts::ArtifactRow};
use crate::model::{ArtifactName, ChannelName, Version};
use crate::policy::{self, Decision, Facts, Policy, StatementFacts};

/// The trust document as the database holds it now.
pub fn current_trust(c: &dyn Sql) -> Result<TrustDocument, Error> {
    trust_from(db::trust::latest(c)?)
}

/// The trust document of a row of `db::trust::LATEST`.
pub fn trust_from(latest: Option<(u64, Vec<u8>)>) -> Result<TrustDocument, Error> {
    let (_, bytes) = latest.ok_or_else(|| Error::Internal("no trust document".into()))?;
    SignedEnvelope::from_slice(&bytes)
        .and_then(|e| e.decode("trust document"))
        .map_err(|e| Error::Internal(e.to_string()))
}

/// The policy the trust document pins for `channel`.
pub fn channel_policy(
    c: &dyn Sql,
    trust: &TrustDocument,
    channel: &ChannelName,
) -> Result<Policy, Error> {
    let sha = trust.policies.get(channel.as_str()).ok_or_else(|| {
        Error::not_found(
            ErrorCode::NoPolicy,
            format!("trust v{} pins no policy for {channel}", trust.version),
        )
    })?;
    let parsed = || PARSED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = parsed().get(sha) {
        return Ok(p.clone());
    }
    let body = db::policies::get(c, sha)?
        .ok_or_else(|| Error::Internal(format!("policy {sha} missing")))?;
    let policy = Policy::from_toml(&body).map_err(|e| Error::Internal(e.to_string()))?;
    if crate::tuf::metadata::sha256_hex(body.as_bytes()) == *sha {
        let mut kept = parsed();
        if kept.len() >= KEPT_POLICIES {
            kept.clear();
        }
        kept.insert(sha.clone(), policy.clone());
    }
    Ok(policy)
}

/// Policies parsed so far, by digest. A policy is the content its digest names, so one read,
/// checked against its digest and parsed is that digest's policy for good: a promotion reads
/// the policy of its channel, and the auto-promotion check every auto channel's, with neither a
/// round trip nor a parse each.
static PARSED: std::sync::Mutex<std::collections::BTreeMap<String, Policy>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Policies kept at most (a trust document pins one per channel; older ones age out).
const KEPT_POLICIES: usize = 256;

/// The statements about `a` that are validly signed and about exactly these bytes.
pub fn statement_facts(
    c: &dyn Sql,
    trust: &TrustDocument,
    a: &ArtifactRow,
) -> Result<Vec<StatementFacts>, Error> {
    Ok(statements(c, trust, a)?.0)
}

/// [`statement_facts`], and the digests of every statement about `a` (valid or not), in the
/// order its target entry lists them.
fn statements(
    c: &dyn Sql,
    trust: &TrustDocument,
    a: &ArtifactRow,
) -> Result<(Vec<StatementFacts>, Vec<String>), Error> {
    statements_in(db::artifacts::statements_of(c, a.id)?, trust, a)
}

fn statements_in(
    stored: Vec<(String, Vec<u8>)>,
    trust: &TrustDocument,
    a: &ArtifactRow,
) -> Result<(Vec<StatementFacts>, Vec<String>), Error> {
    let (name, version) = names(a)?;
    let (mut facts, mut digests) = (Vec::new(), Vec::new());
    for (sha, bytes) in stored {
        digests.push(sha.clone());
        let Ok(env) = Envelope::from_slice(&bytes) else {
            continue;
        };
        if let Some(f) =
            StatementFacts::about(&env, sha, trust, &name, &version, &a.sha256, &a.blake3)
        {
            facts.push(f);
        }
    }
    Ok((facts, digests))
}

fn names(a: &ArtifactRow) -> Result<(ArtifactName, Version), Error> {
    let bad = |e: crate::model::NameError| Error::Internal(e.to_string());
    Ok((
        a.name.parse().map_err(bad)?,
        a.version.parse().map_err(bad)?,
    ))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A promotion's decision, and what it was made on that the promotion goes on to use.
pub struct Evaluation {
    pub decision: Decision,
    /// `a` is already the current release in the channel.
    pub already: bool,
    /// The channel's current release of the name, if any.
    pub current: Option<i64>,
    /// The digests of every statement about `a`, as its target entry lists them.
    pub statements: Vec<String>,
    /// The name's latest rollout in the channel (any state).
    pub last_rollout: Option<db::rollouts::RolloutRow>,
}

/// What deciding a promotion of `a` into `to` reads besides the trust document and the
/// policy: the statements about `a`, the current release of its name in `to` and in the
/// policy's `from` channel, and the name's latest rollout in `to`. One round trip.
pub struct Reads {
    statements: Vec<(String, Vec<u8>)>,
    current: HashMap<String, (ArtifactRow, String)>,
    pub last_rollout: Option<db::rollouts::RolloutRow>,
}

pub fn reads(
    c: &dyn Sql,
    a: &ArtifactRow,
    to: &ChannelName,
    policy: &Policy,
) -> Result<Reads, Error> {
    let (to_s, from_s) = (to.as_str(), policy.from.as_ref().map(|f| f.as_str()));
    let mut channels: Vec<&dyn db::ToParam> = vec![&a.name, &to_s];
    if let Some(from) = &from_s {
        channels.push(from);
    }
    let (current_sql, rollout_sql) = (
        db::channels::current_in_sql(channels.len() - 1),
        db::rollouts::latest_sql(),
    );
    let rows = c.query_all(&[
        (db::artifacts::STATEMENTS_OF, crate::params![a.id]),
        (&current_sql, &channels),
        (&rollout_sql, crate::params![to.as_str(), &a.name]),
    ])?;
    Ok(Reads {
        statements: db::artifacts::statements_from(&rows[0])?,
        current: db::channels::current_in_from(&rows[1])?,
        last_rollout: db::rollouts::latest_from(&rows[2])?,
    })
}

/// Evaluates promoting `a` into `to` now under `policy` (the one `trust` pins for `to`).
pub fn evaluate(
    c: &dyn Sql,
    trust: &TrustDocument,
    policy: &Policy,
    a: &ArtifactRow,
    to: &ChannelName,
    now: DateTime<Utc>,
) -> Result<Evaluation, Error> {
    let r = reads(c, a, to, policy)?;
    evaluate_with(trust, policy, a, to, now, r)
}

/// [`evaluate`] on what [`reads`] read.
pub fn evaluate_with(
    trust: &TrustDocument,
    policy: &Policy,
    a: &ArtifactRow,
    to: &ChannelName,
    now: DateTime<Utc>,
    reads: Reads,
) -> Result<Evaluation, Error> {
    let (name, version) = names(a)?;
    let (statements, digests) = statements_in(reads.statements, trust, a)?;
    let mut current = reads.current;
    let here = current.get(to.as_str()).cloned();
    let already = here.as_ref().is_some_and(|(cur, _)| cur.id == a.id);
    let current_version: Option<Version> = match &here {
        Some((cur, _)) => Some(names(cur)?.1),
        None => None,
    };
    // Release times are kept to the second; counting the soak from the next whole second
    // never lets it end early.
    let since = match &policy.from {
        Some(from) => current
            .remove(from.as_str())
            .filter(|(cur, _)| cur.id == a.id)
            .and_then(|(_, at)| parse_time(&at))
            .map(|t| t + chrono::Duration::seconds(1)),
        None => None,
    };
    let facts = Facts {
        channel: to,
        name: &name,
        version: &version,
        statements: &statements,
        trust,
        current_in_from_since: since,
        current_in_channel: current_version.as_ref(),
        now,
    };
    Ok(Evaluation {
        decision: policy::evaluate(policy, &facts),
        already,
        current: here.map(|(cur, _)| cur.id),
        statements: digests,
        last_rollout: reads.last_rollout,
    })
}

/// Whether an earlier release may become current again: its build signature must still be
/// valid now (a key revoked since then no longer counts). `Some(reasons)` when it may not.
pub fn still_valid(
    c: &dyn Sql,
    a: &ArtifactRow,
    channel: &ChannelName,
) -> Result<Option<String>, Error> {
    let trust = current_trust(c)?;
    let facts = statement_facts(c, &trust, a)?;
    let (name, version) = names(a)?;
    let builders = policy::evaluate(
        &Policy::from_toml("").expect("the empty policy parses"),
        &Facts {
            channel,
            name: &name,
            version: &version,
            statements: &facts,
            trust: &trust,
            current_in_from_since: None,
            current_in_channel: None,
            now: Utc::now(),
        },
    );
    Ok((!builders.allowed).then(|| builders.failures().join("; ")))
}
