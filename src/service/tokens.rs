//! API tokens: who a request comes from ([`Caller`]) and what it may do ([`App::permit`], the
//! one check of role and scope every endpoint goes through); creation (with a label, a scope
//! and an optional expiry), listing and revocation, each audited.

use super::{App, Error};
use crate::audit::AuditAction;
use crate::auth::{Action, MAX_BINDINGS, ROLES, Scope, TokenRole};
use crate::db::{self, DbError};
use crate::model::api::ErrorCode;
use crate::model::api::{TokenInfo, TokenRequest, TokenResponse};

/// Who made a request: an authenticated token (any role; not revoked, not expired).
#[derive(Debug, Clone)]
pub struct Caller {
    /// `token:<id>`, the actor of audit entries.
    pub actor: String,
    pub token: db::tokens::TokenRow,
}

/// Who posts a report: a token, the agent id of a verified client certificate, or both (then
/// both must allow the report). The HTTP layer never builds one with neither (`401`).
#[derive(Debug, Clone)]
pub struct Reporter {
    pub token: Option<Caller>,
    /// The agent id the connection's verified client certificate names.
    pub certificate: Option<String>,
}

impl Reporter {
    /// The actor of the report and its audit entries: `token:<id>` when a token came with
    /// it, else `cert:<agent id>`.
    pub fn actor(&self) -> String {
        match (&self.token, &self.certificate) {
            (Some(c), _) => c.actor.clone(),
            (None, Some(id)) => format!("cert:{id}"),
            (None, None) => "anonymous".into(),
        }
    }
}

/// Longest expiry a token may be given: ten years (a longer one is a token that never expires,
/// which is what leaving `expires_in` out says).
const MAX_EXPIRY_SECS: u64 = 10 * 366 * 24 * 3600;

impl App {
    /// The one check of role and scope: whether `caller` may do `action`. A refusal is `403
    /// token_role` or `token_scope` naming the token, the action and the scope, and is
    /// appended to the audit log (the request was authenticated).
    pub async fn permit(&self, caller: &Caller, action: Action<'_>) -> Result<(), Error> {
        let t = &caller.token;
        let Err(denied) = crate::auth::permit(&t.id, t.role, &t.scope, &action) else {
            return Ok(());
        };
        tracing::warn!(token = %t.id, role = %t.role, code = denied.code.as_str(), "{}", denied.message);
        Err(self
            .refused(&caller.actor, &action, denied.code, denied.message)
            .await)
    }

    /// A report as `agent` over a connection whose client certificate names `certified`:
    /// refused `403 agent_identity` (audited) unless they are the same agent id.
    pub async fn permit_identity(
        &self,
        actor: &str,
        certified: &str,
        action: Action<'_>,
    ) -> Result<(), Error> {
        let Action::Report { agent, .. } = action else {
            return Ok(());
        };
        if agent == certified {
            return Ok(());
        }
        let message = format!(
            "the client certificate names agent {certified}: it may not report as agent {agent}"
        );
        tracing::warn!(certificate = %certified, agent = %agent, code = ErrorCode::AgentIdentity.as_str(), "{message}");
        Err(self
            .refused(actor, &action, ErrorCode::AgentIdentity, message)
            .await)
    }

    /// A `403 code` refusal of `action` by `actor`, appended to the audit log.
    async fn refused(
        &self,
        actor: &str,
        action: &Action<'_>,
        code: ErrorCode,
        message: String,
    ) -> Error {
        let err = Error::forbidden(code, message);
        let details = serde_json::json!({ "reason": err.to_string(), "code": code });
        self.append_refusal(
            actor.to_owned(),
            action.audit_action(),
            action.subject(),
            details,
        )
        .await;
        err
    }
}

/// How often, at most, a token's last use is written: once a minute, not once a request.
const LAST_USED_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// Checks the bearer token: known, not revoked, not expired. Records its use at most once
/// a minute.
pub async fn authenticate(app: &App, header: Option<&str>) -> Result<Caller, Error> {
    let token = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Error::Unauthorized("missing bearer token (Authorization: Bearer ...)".into())
        })?
        .trim()
        .to_owned();
    let invalid = || Error::Unauthorized("invalid token".into());
    // Logged in the request's span (with its request id); never the token itself.
    let Some(id) = crate::auth::token_id(&token).map(str::to_owned) else {
        tracing::warn!("refused a request with a malformed token");
        return Err(invalid());
    };
    let lookup_id = id.clone();
    let row = app
        .db
        .call(move |c| db::tokens::lookup(c, &lookup_id))
        .await?;
    let row = match row {
        Some((hash, row)) if crate::auth::matches(&token, &hash) => row,
        _ => {
            tracing::warn!(token_id = %id, "refused a request with an unknown or wrong token");
            return Err(invalid());
        }
    };
    let now = chrono::Utc::now();
    let parse = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    if let Some(expires) = &row.expires_at {
        // An unreadable expiry counts as expired: the row was written by us, so it is a fault.
        if parse(expires).is_none_or(|t| t <= now) {
            tracing::warn!(token_id = %id, %expires, "refused a request with an expired token");
            return Err(Error::Unauthorized(format!(
                "token {id} expired at {expires}; create a new one (arca token create)"
            )));
        }
    }
    let stale = row
        .last_used_at
        .as_deref()
        .and_then(parse)
        .is_none_or(|t| now - t >= LAST_USED_EVERY);
    if stale {
        let touch_id = id.clone();
        // Best effort: a request is not refused because its use could not be recorded.
        if let Err(e) = app.db.call(move |c| db::tokens::touch(c, &touch_id)).await {
            tracing::warn!(token_id = %id, error = %e, "cannot record the token's last use");
        }
    }
    Ok(Caller {
        actor: format!("token:{id}"),
        token: row,
    })
}

/// `POST /api/v1/tokens`.
pub async fn create(app: &App, actor: &str, req: TokenRequest) -> Result<TokenResponse, Error> {
    let Ok(role) = req.role.parse::<TokenRole>() else {
        return Err(Error::invalid(
            ErrorCode::InvalidRole,
            format!(
                "token role {:?} is not one of {}",
                req.role,
                ROLES.join(", ")
            ),
        ));
    };
    req.check_fields()?;
    let scope = Scope {
        agents: req.agents.clone(),
        channels: req.channels.clone(),
        names: req.names.clone(),
    };
    let unbound = |what: &str, bound: bool| -> Result<(), Error> {
        if bound {
            return Err(Error::invalid(
                ErrorCode::InvalidScope,
                format!("{role} tokens are not bound to {what}"),
            ));
        }
        Ok(())
    };
    unbound(
        "agents (only reporter tokens are)",
        role != TokenRole::Reporter && !scope.agents.is_empty(),
    )?;
    unbound(
        "channels (only reporter and promoter tokens are)",
        !matches!(role, TokenRole::Reporter | TokenRole::Promoter) && !scope.channels.is_empty(),
    )?;
    unbound(
        "names (only publisher and promoter tokens are)",
        !matches!(role, TokenRole::Publisher | TokenRole::Promoter) && !scope.names.is_empty(),
    )?;
    if role == TokenRole::Publisher && scope.names.is_empty() {
        return Err(Error::invalid(
            ErrorCode::InvalidScope,
            "a publisher token names what it may push (--scope GLOB, e.g. 'team-a/*'; '**' \
             for every name)",
        ));
    }
    if role == TokenRole::Promoter && scope.channels.is_empty() {
        return Err(Error::invalid(
            ErrorCode::InvalidScope,
            "a promoter token names the channels it may promote to (--channel CH, repeat \
             for several)",
        ));
    }
    if scope.names.len() > MAX_BINDINGS || scope.channels.len() > MAX_BINDINGS {
        return Err(Error::invalid(
            ErrorCode::InvalidScope,
            format!("at most {MAX_BINDINGS} name globs and {MAX_BINDINGS} channels"),
        ));
    }
    for g in &scope.names {
        Scope::check_glob(g).map_err(|e| Error::invalid(ErrorCode::InvalidScope, e))?;
    }
    for ch in &scope.channels {
        app.channel_key(ch)?;
    }
    let expires_at = match req.expires_in {
        None => None,
        Some(0) => {
            return Err(Error::invalid(
                ErrorCode::InvalidExpiry,
                "a token's expiry is a positive duration (e.g. 90d)",
            ));
        }
        Some(s) if s > MAX_EXPIRY_SECS => {
            return Err(Error::invalid(
                ErrorCode::InvalidExpiry,
                "a token expires within ten years; leave the expiry out for one that never \
                 expires",
            ));
        }
        Some(s) => {
            let secs = i64::try_from(s)
                .map_err(|_| Error::invalid(ErrorCode::InvalidExpiry, "too long"))?;
            Some(arca_keys::format_time(
                chrono::Utc::now() + chrono::Duration::seconds(secs),
            ))
        }
    };
    if role == TokenRole::Reporter {
        if scope.agents.is_empty() {
            return Err(Error::invalid(
                ErrorCode::InvalidScope,
                "a reporter token names the agents it may report as (--agent ID, a prefix \
                 such as 'web-*', or '*' for any agent)",
            ));
        }
        if scope.agents.len() > MAX_BINDINGS || scope.channels.len() > MAX_BINDINGS {
            return Err(Error::invalid(
                ErrorCode::InvalidScope,
                format!("at most {MAX_BINDINGS} agent patterns and {MAX_BINDINGS} channels"),
            ));
        }
        for p in &scope.agents {
            Scope::check_pattern(p).map_err(|e| Error::invalid(ErrorCode::InvalidScope, e))?;
        }
    }
    let (token, id, hash) = crate::auth::new_token().map_err(|e| Error::Internal(e.to_string()))?;
    let (id2, actor_s, label) = (id.clone(), actor.to_owned(), req.label.clone());
    let (scope2, expires2) = (scope.clone(), expires_at.clone());
    app.db
        .call(move |c| {
            let tx = c.transaction()?;
            db::tokens::insert(
                &tx,
                &id2,
                &hash,
                role,
                label.as_deref(),
                &scope2,
                expires2.as_deref(),
            )?;
            db::audit::append(
                &tx,
                &db::audit::Entry {
                    actor: &actor_s,
                    action: AuditAction::TokenCreate,
                    subject: &format!("token:{id2}"),
                    outcome: "ok",
                    details: serde_json::json!({
                        "role": role.as_str(), "label": label,
                        "agents": scope2.agents, "channels": scope2.channels,
                        "names": scope2.names, "expires_at": expires2,
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
        names: scope.names,
        expires_at,
    })
}

/// `GET /api/v1/tokens`: every token (never a secret), revoked ones marked.
pub async fn list(app: &App) -> Result<Vec<TokenInfo>, Error> {
    let rows = app.db.call(|c| db::tokens::list(c)).await?;
    Ok(rows
        .into_iter()
        .map(|t| TokenInfo {
            id: t.id,
            role: t.role.to_string(),
            label: t.label,
            agents: t.scope.agents,
            channels: t.scope.channels,
            names: t.scope.names,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
        })
        .collect())
}

/// `DELETE /api/v1/tokens/{id}`: revokes a token at once. Returns its role.
pub async fn revoke(app: &App, actor: &str, id: String) -> Result<String, Error> {
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(
            ErrorCode::InvalidTokenId,
            format!("{id:?} is not a token id (16 hex digits)"),
        ));
    }
    if actor == format!("token:{id}") {
        return Err(Error::conflict(
            ErrorCode::TokenInUse,
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
                        action: AuditAction::TokenRevoke,
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
        .ok_or_else(|| Error::not_found(ErrorCode::NoToken, format!("no token with id {id}")))?;
    tracing::info!(token = %id, %role, "token revoked");
    Ok(role)
}
