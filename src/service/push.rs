//! Push: the build statement (header) with the bytes, either in the body of the same request or
//! staged before by `POST /api/v1/uploads`. The statement is checked before a byte is read or a
//! staged upload is claimed; the bytes' digests, computed by the server, must equal the
//! statement's; only then do artifact, statement, channel entry, TUF metadata and audit entry
//! land together in one transaction. A refusal discards the bytes.

use crate::model::api::ErrorCode;
use crate::tuf::metadata::TufRole;
use arca_keys::dsse::Envelope;
use arca_store::{Blake3Digest, Expected, Sha256Digest};
use bytes::Bytes;
use chrono::Utc;
use futures::Stream;

use super::{App, Error};
use crate::audit::AuditAction;
use crate::db::{self, DbError};
use crate::model::api::{PushQuery, PushResponse, subject_name};
use crate::policy::signers as statements;
use crate::tuf::{metadata::sha256_hex, repo};

/// Default media type when the client names none.
const OCTET_STREAM: &str = "application/octet-stream";

pub async fn push<S, E>(
    app: &App,
    actor: &str,
    q: PushQuery,
    statement_bytes: Vec<u8>,
    body: S,
) -> Result<PushResponse, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let subject = subject_name(&q.name, &q.version);
    match push_inner(app, actor, &q, statement_bytes, body).await {
        Ok(r) => Ok(r),
        Err(e) => {
            if e.is_refusal() {
                app.audit_refusal(actor, AuditAction::Push, subject, &e)
                    .await;
            }
            Err(e)
        }
    }
}

async fn push_inner<S, E>(
    app: &App,
    actor: &str,
    q: &PushQuery,
    statement_bytes: Vec<u8>,
    body: S,
) -> Result<PushResponse, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    q.check_fields()?;
    let env = Envelope::from_slice(&statement_bytes)
        .map_err(|e| Error::invalid(ErrorCode::BadStatement, e.to_string()))?;
    let trust = app.trust().await?;
    let checked = statements::check_build(&trust, &env, &q.name, &q.version, Utc::now())?;
    let channel = app.cfg.first_channel().clone();

    // Immutable name@version: decide before reading the body.
    let (name, version) = (q.name.to_string(), q.version.to_string());
    let existing = app
        .db
        .call(move |c| db::artifacts::find(c, &name, &version))
        .await?;
    if let Some(a) = existing {
        // A staged upload for a version pushed meanwhile can never be used: drop its bytes.
        if let Some(id) = &q.upload
            && let Ok(staged) = super::upload::claim(app, id, actor, &q.name, &q.version).await
        {
            app.store.discard(staged).await;
            super::upload::forget(app, id).await;
        }
        return existing_answer(app, a, &checked.blake3, &channel).await;
    }

    let expected = Expected {
        blake3: Some(parse_digest::<Blake3Digest>(&checked.blake3)?),
        sha256: Some(parse_digest::<Sha256Digest>(&checked.sha256)?),
        size: None,
    };
    let (key, tuf_cfg) = (app.channel_key(channel.as_str())?.1, app.cfg.tuf.clone());
    // From before the blob is published until the transaction ends, this push pins it: a
    // concurrent push that ends without referencing the same bytes cannot delete them.
    let pin = app.pins.pin(&checked.blake3).await;
    let digests = match &q.upload {
        Some(id) => {
            // Claimed first, so that of two pushes naming it (through any servers) one
            // commits the bytes and the other is answered 404. A failed commit has removed
            // the bytes: the row goes too, and the push fails.
            let staged = super::upload::claim(app, id, actor, &q.name, &q.version).await?;
            match app.store.commit(staged, &expected).await {
                Ok(digests) => digests,
                Err(e) => {
                    super::upload::forget(app, id).await;
                    return Err(e.into());
                }
            }
        }
        None => {
            app.store
                .put_stream(body, app.cfg.store.max_blob_size, &expected)
                .await?
        }
    };

    let media_type = q
        .media_type
        .clone()
        .unwrap_or_else(|| OCTET_STREAM.to_owned());
    let statement_sha = sha256_hex(&statement_bytes);
    let signers: Vec<String> = checked.signers.iter().map(ToString::to_string).collect();
    let (name, version, file) = (
        q.name.to_string(),
        q.version.to_string(),
        q.file.to_string(),
    );
    let (actor_s, ch, blake3, sha256) = (
        actor.to_owned(),
        channel.to_string(),
        digests.blake3.hex(),
        digests.sha256.hex(),
    );
    let predicate_type = checked.statement.predicate_type.clone();
    let channel_name = channel.clone();
    let upload = q.upload.clone();
    let result = app
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            db::locks::trust(&tx)?;
            db::locks::channel(&tx, &ch)?;
            if let Some(a) = db::artifacts::find(&tx, &name, &version)? {
                return Ok(Err(a));
            }
            let id = db::artifacts::insert(
                &tx,
                &db::artifacts::NewArtifact {
                    name: &name,
                    version: &version,
                    file_name: &file,
                    blake3: &blake3,
                    sha256: &sha256,
                    size: digests.size,
                    media_type: &media_type,
                    uploaded_by: &actor_s,
                },
            )?;
            db::artifacts::insert_statement(
                &tx,
                &statement_sha,
                id,
                &predicate_type,
                &signers,
                &statement_bytes,
            )?;
            // A policy that cannot be read fails the push with it, not its rollout alone.
            let plan = super::facts::current_trust(&tx)
                .and_then(|t| super::facts::channel_policy(&tx, &t, &channel_name))
                .map_err(|e| DbError::Corrupt(e.to_string()))?
                .rollout;
            super::rollout::begin(&tx, &ch, &name, id, plan.as_ref())?;
            db::channels::record_release(&tx, &ch, &name, id, "push", &actor_s, None)?;
            let targets_version =
                repo::publish_release(&tx, &ch, &name, &key, &tuf_cfg, Utc::now())?;
            db::audit::append(
                &tx,
                &db::audit::Entry {
                    actor: &actor_s,
                    action: AuditAction::Push,
                    subject: &format!("{name}@{version}"),
                    outcome: "ok",
                    details: serde_json::json!({
                        "blake3": blake3, "sha256": sha256, "size": digests.size,
                        "channel": ch, "signers": signers, "statement": statement_sha,
                    }),
                },
            )?;
            // The staged upload is used up with the push that used it.
            if let Some(id) = &upload {
                db::uploads::remove(&tx, id)?;
            }
            let row = db::artifacts::find(&tx, &name, &version)?
                .ok_or_else(|| DbError::Corrupt("artifact vanished".into()))?;
            let statements = db::artifacts::statement_digests(&tx, id)?;
            tx.commit()?;
            Ok(Ok((row.info(statements)?, targets_version)))
        })
        .await;
    let referenced = match &result {
        Ok(Ok(_)) => true,
        Ok(Err(a)) => a.blake3 == digests.blake3.hex(),
        Err(_) => false,
    };
    drop(pin);
    if !referenced {
        remove_unreferenced(app, digests.blake3).await;
    }
    // A transaction that did not commit did not delete the claimed upload's row either (its
    // bytes were committed to the store, so nothing else is left of it).
    if let Some(id) = &q.upload
        && !matches!(result, Ok(Ok(_)))
    {
        super::upload::forget(app, id).await;
    }
    match result? {
        Ok((artifact, targets_version)) => {
            tracing::info!(artifact = %subject_name(&q.name, &q.version), blake3 = %artifact.blake3, "pushed");
            // A channel with `auto = true` may take the release at once.
            app.auto.changed(app, &q.name).await;
            Ok(PushResponse {
                artifact,
                channel,
                created: true,
                targets_version,
            })
        }
        // A concurrent push of the same name@version won the race.
        Err(a) => existing_answer(app, a, &checked.blake3, &channel).await,
    }
}

/// Deletes the blob this push published if no artifact references it (the push lost a race
/// for its `name@version`, or its transaction failed): only when no other push holds a pin on
/// the same bytes (that one references them or cleans up after itself), and after checking
/// the database under the exclusive pin, so no blob is removed that a row names or is about to.
async fn remove_unreferenced(app: &App, blake3: Blake3Digest) {
    let Some(_sole) = app.pins.sole(&blake3.hex()) else {
        return;
    };
    let hex = blake3.hex();
    match app
        .db
        .call(move |c| db::artifacts::blob_referenced(c, &hex))
        .await
    {
        Ok(true) => {}
        Ok(false) => match app.store.delete(&blake3).await {
            Ok(()) => tracing::info!(%blake3, "removed the blob of a push that stored nothing"),
            Err(e) => tracing::warn!(%blake3, error = %e, "cannot remove an unreferenced blob"),
        },
        Err(e) => tracing::warn!(%blake3, error = %e, "cannot check whether a blob is referenced"),
    }
}

/// The answer when `name@version` already exists: the same bytes are a no-op, others a conflict.
async fn existing_answer(
    app: &App,
    a: db::artifacts::ArtifactRow,
    blake3: &str,
    channel: &crate::model::ChannelName,
) -> Result<PushResponse, Error> {
    if a.blake3 != blake3 {
        return Err(Error::conflict(
            ErrorCode::VersionExists,
            format!(
                "{}@{} already exists with blake3 {}; versions are immutable",
                a.name, a.version, a.blake3
            ),
        ));
    }
    let (id, ch) = (a.id, channel.to_string());
    let (statements, targets_version) = app
        .db
        .call(move |c| {
            Ok((
                db::artifacts::statement_digests(c, id)?,
                db::tuf::latest(c, &ch, TufRole::Targets)?.map_or(0, |m| m.version),
            ))
        })
        .await?;
    Ok(PushResponse {
        artifact: a.info(statements)?,
        channel: channel.clone(),
        created: false,
        targets_version,
    })
}

fn parse_digest<T: std::str::FromStr>(s: &str) -> Result<T, Error> {
    s.parse()
        .map_err(|_| Error::invalid(ErrorCode::BadStatement, format!("invalid digest {s:?}")))
}
