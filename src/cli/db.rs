//! `arca db migrate`: the database's schema, brought up to date. `arca db copy`: a SQLite
//! home moved to PostgreSQL.

use std::path::PathBuf;

use crate::config::Config;
use crate::db::{Db, redact};

/// The metadata database.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Bring the database's schema up to this binary's (PostgreSQL: under an advisory lock,
    /// once however many servers run it; SQLite: what every start does anyway).
    Migrate(MigrateArgs),
    /// Copy a SQLite home's database into an empty PostgreSQL database, verify the copy (row
    /// counts, the audit chain, every TUF metadata file) and record the URL in arca.toml, so
    /// that the home serves from PostgreSQL. Stop the server first: writes made meanwhile are
    /// not copied.
    Copy(CopyArgs),
}

#[derive(clap::Args)]
pub struct CopyArgs {
    /// The SQLite home to move (its server stopped).
    #[arg(long, env = "ARCA_HOME", default_value = "./arca-data")]
    home: PathBuf,
    /// The empty PostgreSQL database to copy into (postgres://user@host:port/db).
    #[arg(long, value_name = "URL")]
    to: String,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The home whose arca.toml names the database.
    #[arg(long, env = "ARCA_HOME", default_value = "./arca-data")]
    home: PathBuf,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Migrate(a) => migrate(a),
        Command::Copy(a) => copy(a),
    }
}

fn copy(a: CopyArgs) -> anyhow::Result<i32> {
    let cfg = Config::load(&a.home)?;
    if let Some(url) = &cfg.database.url {
        anyhow::bail!(
            "{} already runs on PostgreSQL ({}, from arca.toml or ARCA_DATABASE_URL): db copy moves a SQLite home",
            a.home.display(),
            redact(url)
        );
    }
    if !(a.to.starts_with("postgres://") || a.to.starts_with("postgresql://")) {
        anyhow::bail!("--to must be a postgres:// URL, not {:?}", redact(&a.to));
    }
    let path = crate::home::Home::new(&a.home).db();
    if !path.exists() {
        anyhow::bail!(
            "{} has no SQLite database ({} is missing)",
            a.home.display(),
            path.display()
        );
    }
    // Checked now: a copy made is recorded.
    let cfg_path = a.home.join(crate::config::CONFIG_FILE);
    crate::home::with_database_url(&cfg_path, &a.to)?;
    // The lock a server holds: a running server could write after the snapshot was taken.
    let _lock = crate::home::HomeLock::acquire(&a.home)?;
    let report = crate::db::copy::copy(&path, &a.to)?;
    crate::home::record_database_url(&cfg_path, &a.to)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "copied {} rows in {} tables into {}",
            report.rows,
            report.tables.len(),
            report.target
        );
        for t in &report.tables {
            println!("  {:<18} {}", t.table, t.rows);
        }
        println!(
            "verified: row counts, {} metadata files byte-identical, audit log of {} entries (head {}, {} checkpoint(s))",
            report.metadata_checked,
            report.audit_entries,
            report.audit_head,
            report.audit_checkpoints
        );
        println!(
            "{} now names the database: `arca serve --home {}` runs on PostgreSQL",
            cfg_path.display(),
            a.home.display()
        );
    }
    Ok(0)
}

fn migrate(a: MigrateArgs) -> anyhow::Result<i32> {
    let cfg = Config::load(&a.home)?;
    let (engine, target, (from, to)) = match &cfg.database.url {
        Some(url) => ("postgres", redact(url), Db::migrate_postgres(url)?),
        None => {
            let path = crate::home::Home::new(&a.home).db();
            if !path.exists() {
                anyhow::bail!(
                    "{} has no database ({} is missing): run `arca init --home {}` first",
                    a.home.display(),
                    path.display(),
                    a.home.display()
                );
            }
            let (from, to) = Db::migrate_sqlite(&path)?;
            ("sqlite", path.display().to_string(), (from, to))
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({"engine": engine, "database": target, "from": from, "to": to})
        );
    } else if from == to {
        println!("{target}: schema {to} is up to date");
    } else {
        println!("{target}: schema {from} -> {to}");
    }
    Ok(0)
}
