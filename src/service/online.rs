//! Online-key rotation, in two steps so that the root keys can stay offline: the server makes
//! a pending key for a channel; the holders of the root keys sign the channel's next TUF root
//! naming it; installing that root re-signs the channel's targets, snapshot and timestamp with
//! the new key in the same transaction, so there is no moment in which a client following the
//! chain finds metadata its trusted root does not vouch for.

use crate::model::api::ErrorCode;
use crate::tuf::metadata::TufRole;
use arca_keys::{SigningKey, TufKey};
use chrono::Utc;

use super::{App, Error};
use crate::audit::AuditAction;
use crate::db;
use crate::model::ChannelName;
use crate::tuf::metadata::{Envelope, Root, Signed as _};
use crate::tuf::repo;

/// Makes (or replaces) the pending next online key of `channel`, sealed in the database (the
/// `online-next/CHANNEL` row, so that any server of the database can install it); returns its
/// public key.
pub async fn propose(app: &App, actor: &str, channel: &ChannelName) -> Result<TufKey, Error> {
    app.channel_key(channel.as_str())?;
    let key = SigningKey::generate().map_err(|e| Error::Internal(e.to_string()))?;
    let name = db::keys::online_next(channel.as_str());
    let sealed = app.keys.seal(&name, &key)?;
    let (actor, ch, id) = (
        actor.to_owned(),
        channel.to_string(),
        key.key_id().to_string(),
    );
    app.db
        .call(move |c| {
            let tx = c.transaction()?;
            db::keys::put(&tx, &name, &id, &sealed)?;
            db::audit::append(
                &tx,
                &db::audit::Entry {
                    actor: &actor,
                    action: AuditAction::OnlinePropose,
                    subject: &ch,
                    outcome: "ok",
                    details: serde_json::json!({ "pending_key": id }),
                },
            )?;
            tx.commit()
        })
        .await?;
    Ok(key.public().to_tuf())
}

/// Checks the next root of a rotation to `pending`: exactly the next version of the channel,
/// signed by its current root threshold and its own, root role unchanged, every online role
/// the pending key alone.
fn check(current: &Root, env: &Envelope, pending: &SigningKey) -> Result<Root, String> {
    let next: Root = env.decode().map_err(|e| e.to_string())?;
    if next.version != current.version + 1 || next.channel != current.channel {
        return Err(format!(
            "root v{} is not the next version of this channel's v{}",
            next.version, current.version
        ));
    }
    env.verify_role(current, TufRole::Root)
        .map_err(|e| format!("current root keys: {e}"))?;
    env.verify_role(&next, TufRole::Root)
        .map_err(|e| format!("its own root keys: {e}"))?;
    if next.roles.get(TufRole::Root.as_str()) != current.roles.get(TufRole::Root.as_str()) {
        return Err("the root role changed: use arca trust rotate-root".into());
    }
    let id = pending.key_id().to_string();
    for r in [TufRole::Targets, TufRole::Snapshot, TufRole::Timestamp] {
        let role = next.roles.get(r.as_str()).ok_or(format!("no {r} role"))?;
        if role.keyids != [id.clone()] || role.threshold != 1 {
            return Err(format!("the {r} role must be the pending online key {id}"));
        }
    }
    if next.keys.get(&id).and_then(|k| k.ed25519()) != Some(pending.public()) {
        return Err(format!("the root does not carry the pending key {id}"));
    }
    next.check_not_expired(Utc::now())
        .map_err(|e| e.to_string())?;
    Ok(next)
}

/// Installs `channel`'s next root naming the pending key; returns the new targets version.
pub async fn install(
    app: &App,
    actor: &str,
    channel: &ChannelName,
    env: Envelope,
) -> Result<u64, Error> {
    let result = install_inner(app, actor, channel, env).await;
    if let Err(e) = &result
        && !matches!(e, Error::Internal(_))
    {
        app.audit_refusal(actor, AuditAction::OnlineRotate, channel.to_string(), e)
            .await;
    }
    result
}

async fn install_inner(
    app: &App,
    actor: &str,
    channel: &ChannelName,
    env: Envelope,
) -> Result<u64, Error> {
    app.channel_key(channel.as_str())?;
    let (ch, actor_s, keys, tuf) = (
        channel.to_string(),
        actor.to_owned(),
        app.keys.clone(),
        app.cfg.tuf.clone(),
    );
    let (version, pending) = app
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            db::locks::trust(&tx)?;
            db::locks::channel(&tx, &ch)?;
            let Some(row) = db::keys::get(&tx, &db::keys::online_next(&ch))? else {
                return Ok(Err(Error::conflict(
                    ErrorCode::NoPendingKey,
                    format!("channel {ch} has no pending online key: ask for one first"),
                )));
            };
            let pending = keys.unseal(&row)?;
            let current = repo::latest_root(&tx, &ch)?;
            let next = match check(&current, &env, &pending) {
                Ok(r) => r,
                Err(reason) => return Ok(Err(Error::forbidden(ErrorCode::RootRotation, format!("channel {ch}'s next root refused: {reason}")))),
            };
            db::tuf::insert(&tx, &ch, TufRole::Root, next.version, &env.to_bytes(), &next.expires)?;
            // The pending key becomes the channel's key in the transaction that stores the root
            // naming it: every server signs with it from this commit on (`sealed::ChannelSigner`).
            keys.store(&tx, &db::keys::online(&ch), &pending)?;
            db::keys::delete(&tx, &db::keys::online_next(&ch))?;
            let version = repo::sign_targets(&tx, &ch, &pending, &tuf, Utc::now())?;
            db::audit::append(
                &tx,
                &db::audit::Entry {
                    actor: &actor_s,
                    action: AuditAction::OnlineRotate,
                    subject: &ch,
                    outcome: "ok",
                    details: serde_json::json!({ "key": pending.key_id().to_string(), "root_version": next.version }),
                },
            )?;
            tx.commit()?;
            Ok(Ok((version, pending)))
        })
        .await??;
    app.keys.cache(channel, std::sync::Arc::new(pending));
    tracing::info!(%channel, "online key rotated");
    Ok(version)
}
