//! API tokens: creation (with a label and, for reporter tokens, the agents and channels they
//! may speak for), listing and revocation, each audited.

use super::{App, Error};
use crate::auth::{ADMIN, MAX_BINDINGS, REPORTER, Scope};
use crate::db::{self, DbError};
use crate::model::api::{TokenInfo, TokenRequest, TokenResponse};

/// `POST /api/v1/tokens`.
pub async fn create(app: &App, actor: &str, req: TokenRequest) -> Result<TokenResponse, Error> {
    if req.role != ADMIN && req.role != REPORTER {
        return Err(Error::invalid(
            "invalid_role",
            format!("token role {:?} is not admin or reporter", req.role),
        ));
    }
    req.check_fields()?;
    let scope = Scope {
        agents: req.agents.clone(),
        channels: req.channels.clone(),
    };
    if req.role == ADMIN && (!scope.agents.is_empty() || !scope.channels.is_empty()) {
        return Err(Error::invalid(
            "invalid_scope",
            "admin tokens are not bound to agents or channels; bind reporter tokens",
        ));
    }
    if req.role == REPORTER {
        if scope.agents.is_empty() {
            return Err(Error::invalid(
                "invalid_scope",
                "a reporter token names the agents it may report as (--agent ID, a prefix \
                 such as 'web-*', or '*' for any agent)",
            ));
        }
        if scope.agents.len() > MAX_BINDINGS || scope.channels.len() > MAX_BINDINGS {
            return Err(Error::invalid(
                "invalid_scope",
                format!("at most {MAX_BINDINGS} agent patterns and {MAX_BINDINGS} channels"),
            ));
        }
        for p in &scope.agents {
            Scope::check_pattern(p).map_err(|e| Error::invalid("invalid_scope", e))?;
        }
        for ch in &scope.channels {
            app.channel_key(ch)?;
        }
    }
    let (token, id, hash) = crate::auth::new_token().map_err(|e| Error::Internal(e.to_string()))?;
    let (role, id2, actor_s, label) = (
        req.role.clone(),
        id.clone(),
        actor.to_owned(),
        req.label.clone(),
    );
    let scope2 = scope.clone();
    app.db
        .call(move |c| {
            let tx = c.transaction()?;
            db::tokens::insert(&tx, &id2, &hash, &role, label.as_deref(), &scope2)?;
            db::audit::append(
                &tx,
                &db::audit::Entry {
                    actor: &actor_s,
                    action: "token-create",
                    subject: &format!("token:{id2}"),
                    outcome: "ok",
                    details: serde_json::json!({
                        "role": role, "label": label,
                        "agents": scope2.agents, "channels": scope2.channels,
                    }),
                },
            )?;
            tx.commit()?;
            Ok::<_, DbError>(())
        })
        .await?;
    tracing::info!(token = %id, role = %req.role, "token created");
    Ok(TokenResponse {
        id,
        role: req.role,
        token,
        label: req.label,
        agents: scope.agents,
        channels: scope.channels,
    })
}

/// `GET /api/v1/tokens`: every token (never a secret), revoked ones marked.
pub async fn list(app: &App) -> Result<Vec<TokenInfo>, Error> {
    let rows = app.db.call(|c| db::tokens::list(c)).await?;
    Ok(rows
        .into_iter()
        .map(|t| TokenInfo {
            id: t.id,
            role: t.role,
            label: t.label,
            agents: t.scope.agents,
            channels: t.scope.channels,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        })
        .collect())
}

/// `DELETE /api/v1/tokens/{id}`: revokes a token at once. Returns its role.
pub async fn revoke(app: &App, actor: &str, id: String) -> Result<String, Error> {
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(
            "invalid_token_id",
            format!("{id:?} is not a token id (16 hex digits)"),
        ));
    }
    if actor == format!("token:{id}") {
        return Err(Error::conflict(
            "token_in_use",
            "a token cannot revoke itself; use another admin token",
        ));
    }
    let (id2, actor_s) = (id.clone(), actor.to_owned());
    let role = app
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            let role = db::tokens::revoke(&tx, &id2)?;
            if let Some(role) = &role {
                db::audit::append(
                    &tx,
                    &db::audit::Entry {
                        actor: &actor_s,
                        action: "token-revoke",
                        subject: &format!("token:{id2}"),
                        outcome: "ok",
                        details: serde_json::json!({
                            "role": role, "label": db::tokens::label(&tx, &id2)?,
                        }),
                    },
                )?;
            }
            tx.commit()?;
            Ok::<_, DbError>(role)
        })
        .await?
        .ok_or_else(|| Error::not_found("no_token", format!("no token with id {id}")))?;
    tracing::info!(token = %id, %role, "token revoked");
    Ok(role)
}
