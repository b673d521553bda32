//! `GET /api/v1/status` (expiry of every channel's metadata and of every key) and `GET /metrics`
//! (the same as Prometheus gauges, for alerts).

use actix_web::{HttpResponse, get, web};

use crate::service::{App, Error, status};

#[get("/api/v1/status")]
async fn get_status(app: web::Data<App>) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(status::status(&app).await?))
}

#[get("/metrics")]
async fn metrics(app: web::Data<App>) -> Result<HttpResponse, Error> {
    use std::fmt::Write;
    let s = status::status(&app).await?;
    let mut out = String::new();
    out.push_str("# HELP arca_tuf_metadata_expiry_seconds Seconds until a channel's newest metadata of a role expires.\n");
    out.push_str("# TYPE arca_tuf_metadata_expiry_seconds gauge\n");
    for m in &s.metadata {
        let _ = writeln!(
            out,
            "arca_tuf_metadata_expiry_seconds{{channel=\"{}\",role=\"{}\"}} {}",
            m.channel, m.role, m.expires_in
        );
    }
    out.push_str(
        "# HELP arca_tuf_metadata_version The newest version of a channel's metadata role.\n",
    );
    out.push_str("# TYPE arca_tuf_metadata_version gauge\n");
    for m in &s.metadata {
        let _ = writeln!(
            out,
            "arca_tuf_metadata_version{{channel=\"{}\",role=\"{}\"}} {}",
            m.channel, m.role, m.version
        );
    }
    out.push_str("# HELP arca_key_not_after_seconds Seconds until a key stops signing (keys with not_after only).\n");
    out.push_str("# TYPE arca_key_not_after_seconds gauge\n");
    for k in &s.keys {
        if let Some(left) = k.not_after_in {
            let _ = writeln!(
                out,
                "arca_key_not_after_seconds{{keyid=\"{}\",roles=\"{}\",status=\"{}\"}} {left}",
                k.keyid,
                k.roles.join(","),
                k.status
            );
        }
    }
    out.push_str("# HELP arca_trust_version The current trust document version.\n# TYPE arca_trust_version gauge\n");
    let _ = writeln!(out, "arca_trust_version {}", s.trust_version);
    out.push_str(
        "# HELP arca_audit_entries Entries in the audit log.\n# TYPE arca_audit_entries gauge\n",
    );
    let _ = writeln!(out, "arca_audit_entries {}", s.audit_entries);
    out.push_str("# HELP arca_leader Whether this server runs the background work (1) or another does (0).\n# TYPE arca_leader gauge\n");
    let _ = writeln!(out, "arca_leader {}", u8::from(app.leader.is_leader()));
    if app.db.engine() == crate::db::Engine::Postgres {
        out.push_str("# HELP arca_meta_lease Whether this server holds a metadata lease, answering polls from memory (1), or reads the database per poll (0).\n# TYPE arca_meta_lease gauge\n");
        let _ = writeln!(
            out,
            "arca_meta_lease {}",
            u8::from(app.lease.current().is_some())
        );
        out.push_str("# HELP arca_meta_lease_revocations_total Metadata leases this server gave back because a server was publishing.\n# TYPE arca_meta_lease_revocations_total counter\n");
        let _ = writeln!(
            out,
            "arca_meta_lease_revocations_total {}",
            app.lease.revoked.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    rollout_metrics(&app, &mut out).await?;
    out.push_str(&crate::tuf::clock::render_metrics());
    out.push_str(&app.counters.render());
    out.push_str(&app.transfers.render());
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Active rollouts (step, failure rate, reports) and agents per running version.
async fn rollout_metrics(app: &App, out: &mut String) -> Result<(), Error> {
    use std::fmt::Write;
    let rollouts = crate::service::rollout::list(app, None).await?;
    let versions = status::agent_versions(app).await?;
    out.push_str("# HELP arca_rollout_percent Percentage of agents an active rollout reaches now.\n# TYPE arca_rollout_percent gauge\n");
    let active: Vec<_> = rollouts
        .iter()
        .filter(|r| r.state == "running" || r.state == "paused")
        .collect();
    for r in &active {
        let _ = writeln!(
            out,
            "arca_rollout_percent{{channel=\"{}\",name=\"{}\",version=\"{}\",state=\"{}\"}} {}",
            label(&r.channel),
            label(&r.name),
            label(&r.version),
            r.state,
            r.percent
        );
    }
    out.push_str("# HELP arca_rollout_failure_rate Failed / reporting agents of an active rollout.\n# TYPE arca_rollout_failure_rate gauge\n");
    for r in &active {
        let _ = writeln!(
            out,
            "arca_rollout_failure_rate{{channel=\"{}\",name=\"{}\",version=\"{}\"}} {}",
            label(&r.channel),
            label(&r.name),
            label(&r.version),
            r.failure_rate
        );
    }
    out.push_str("# HELP arca_rollout_reporting_agents Agents that reported on an active rollout's release, by outcome.\n# TYPE arca_rollout_reporting_agents gauge\n");
    for r in &active {
        for (outcome, n) in [("ok", r.figures.ok), ("failed", r.figures.failed)] {
            let _ = writeln!(
                out,
                "arca_rollout_reporting_agents{{channel=\"{}\",name=\"{}\",version=\"{}\",outcome=\"{outcome}\"}} {n}",
                label(&r.channel),
                label(&r.name),
                label(&r.version)
            );
        }
    }
    out.push_str("# HELP arca_rollout_halted Whether the newest rollout of a name ended halted by its figures (1) or not (0).\n# TYPE arca_rollout_halted gauge\n");
    for r in &rollouts {
        let _ = writeln!(
            out,
            "arca_rollout_halted{{channel=\"{}\",name=\"{}\",version=\"{}\"}} {}",
            label(&r.channel),
            label(&r.name),
            label(&r.version),
            u8::from(r.state == "halted")
        );
    }
    out.push_str("# HELP arca_agents Agents by the version they last reported running.\n# TYPE arca_agents gauge\n");
    for (channel, name, version, n) in versions {
        let _ = writeln!(
            out,
            "arca_agents{{channel=\"{}\",name=\"{}\",version=\"{}\"}} {n}",
            label(&channel),
            label(&name),
            label(&version)
        );
    }
    // Agents off the release their channel means for them, and agents not heard from.
    let mut by_name: std::collections::BTreeMap<(String, String), (u64, u64)> = Default::default();
    let mut offset = 0u64;
    loop {
        let page = crate::service::rollout::agents(
            app,
            None,
            crate::service::rollout::MAX_AGENTS_PAGE,
            offset,
        )
        .await?;
        for a in &page {
            let e = by_name
                .entry((a.channel.clone(), a.name.clone()))
                .or_default();
            e.0 += u64::from(a.off_release);
            e.1 += u64::from(a.stale);
        }
        offset += page.len() as u64;
        if page.len() < crate::service::rollout::MAX_AGENTS_PAGE as usize {
            break;
        }
    }
    out.push_str("# HELP arca_agents_off_release Agents that run something other than the release their channel means for them (a failed install, a stopped agent).\n# TYPE arca_agents_off_release gauge\n");
    for ((channel, name), (off, _)) in &by_name {
        let _ = writeln!(
            out,
            "arca_agents_off_release{{channel=\"{}\",name=\"{}\"}} {off}",
            label(channel),
            label(name)
        );
    }
    out.push_str("# HELP arca_agents_stale Agents not heard from (report or heartbeat) within agents.stale_after.\n# TYPE arca_agents_stale gauge\n");
    for ((channel, name), (_, stale)) in &by_name {
        let _ = writeln!(
            out,
            "arca_agents_stale{{channel=\"{}\",name=\"{}\"}} {stale}",
            label(channel),
            label(name)
        );
    }
    Ok(())
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_status).service(metrics);
}
