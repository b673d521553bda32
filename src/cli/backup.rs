//! `arca backup` and `arca restore` (the work is `crate::backup`'s).

use std::path::PathBuf;

use crate::backup;

/// Copy a home while its server runs.
#[derive(clap::Args)]
pub struct BackupArgs {
    /// The home to copy.
    #[arg(long, env = "ARCA_HOME", default_value = "./arca-data")]
    home: PathBuf,
    /// The directory to write the backup to (new, or empty).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Print the manifest as JSON.
    #[arg(long)]
    json: bool,
}

/// Restore a backup into a new home and re-sign every channel's metadata past it.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The home to create (missing, or an empty directory).
    #[arg(long, env = "ARCA_HOME", default_value = "./arca-data")]
    home: PathBuf,
    /// The backup directory (`arca backup --out`).
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

const BLOBS_NOTE: &str = "blobs are not copied (content-addressed and immutable): back up the blob store separately, or rely on the object store's versioning";

pub fn run_backup(a: BackupArgs) -> anyhow::Result<i32> {
    let r = backup::backup(&a.home, &a.out)?;
    let m = &r.manifest;
    let db_note = match &m.database {
        Some(url) => format!(
            "not copied: PostgreSQL {url}: back it up with pg_dump (e.g. `pg_dump --format=custom --dbname URL`) at the same time"
        ),
        None => format!(
            "arca.db (SQLite online backup, schema {})",
            m.schema_version
        ),
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "out": a.out,
                "manifest": m,
                "database": db_note,
                "blobs": BLOBS_NOTE,
            })
        );
        return Ok(0);
    }
    println!("backed up {} to {}", a.home.display(), a.out.display());
    println!("  database   {db_note}");
    println!(
        "  files      {} (sha256 in {}/{})",
        m.files.len(),
        a.out.display(),
        backup::MANIFEST
    );
    for (ch, roles) in &m.channels {
        let v = |r: &str| roles.get(r).copied().unwrap_or_default();
        println!(
            "  {ch:<10} targets {} snapshot {} timestamp {}",
            v("targets"),
            v("snapshot"),
            v("timestamp")
        );
    }
    println!("  blobs      {BLOBS_NOTE}");
    Ok(0)
}

pub fn run_restore(a: RestoreArgs) -> anyhow::Result<i32> {
    let r = backup::restore(&a.home, &a.from, chrono::Utc::now())?;
    let over_floor: Vec<&str> = r
        .channels
        .iter()
        .filter(|c| c.restored.values().any(|v| *v >= r.floor))
        .map(|c| c.channel.as_str())
        .collect();
    for ch in &over_floor {
        eprintln!(
            "warning: channel {ch} had versions at or above the Unix time {}: its new versions only pass the restored ones by one (docs/security.md, \"Rollback protection\")",
            r.floor
        );
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "home": a.home,
                "from": a.from,
                "engine": r.manifest.engine,
                "backup_created": r.manifest.created,
                "floor": r.floor,
                "channels": r.channels,
            })
        );
        return Ok(0);
    }
    println!(
        "restored {} into {} (backup of {}, {})",
        a.from.display(),
        a.home.display(),
        r.manifest.created,
        r.manifest.engine
    );
    for c in &r.channels {
        let v = |role: &str| c.restored.get(role).copied().unwrap_or_default();
        println!(
            "  {:<10} targets {} -> {}, snapshot {} -> {}, timestamp {} -> {}",
            c.channel,
            v("targets"),
            c.targets,
            v("snapshot"),
            c.snapshot,
            v("timestamp"),
            c.timestamp
        );
    }
    println!("  blobs      not restored: put the blob store back before serving");
    Ok(0)
}
