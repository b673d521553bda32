//! `arca db migrate`: the database's schema, brought up to date.

use std::path::PathBuf;

use crate::config::Config;
use crate::db::{Db, redact};

/// The metadata database.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Bring the database's schema up to this binary's (PostgreSQL: under an advisory lock,
    /// once however many servers run it; SQLite: what every start does anyway).
    Migrate(MigrateArgs),
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
    }
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
