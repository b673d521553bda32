//! The command line: one file per subcommand, each with its own `Args` and `run()`.

mod agent;
mod attest;
mod audit;
mod backup;
mod change;
mod db;
mod init;
mod key;
mod ls;
mod passphrase;
mod policy;
mod promote;
mod pull;
mod push;
mod rollout;
mod serve;
mod show;
mod trust;
mod tuf_client;

use std::io::IsTerminal;

use clap::{Args, Parser, Subcommand};

use crate::model::{ArtifactName, Version};

/// arca: a secure artifact repository and promotion service.
#[derive(Parser)]
#[command(name = "arca", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a home: config, database, online keys, development root key, admin token, root.json.
    Init(init::Args),
    /// Serve the API and every channel's TUF repository (initialising the home if it is empty).
    Serve(serve::Args),
    /// Generate and inspect keys.
    #[command(subcommand)]
    Key(key::Command),
    /// Change and inspect the trust document (root-signed keys, roles, scopes).
    #[command(subcommand)]
    Trust(trust::Command),
    /// Change and inspect channel policies (root-signed).
    #[command(subcommand)]
    Policy(policy::Command),
    /// Upload an artifact with its build signature into the first channel.
    Push(push::Args),
    /// Sign and upload an attestation about a release (tests, scan, SBOM: any predicate type).
    Attest(attest::AttestArgs),
    /// Approve a release for a channel.
    Approve(attest::ApproveArgs),
    /// Promote a release into a channel if its policy allows it now.
    Promote(promote::PromoteArgs),
    /// Return a channel to a release it held before.
    Rollback(promote::RollbackArgs),
    /// List every change of a name in a channel.
    History(promote::HistoryArgs),
    /// What is current in every channel (or one).
    Ls(ls::Args),
    /// One release: the artifact, where it stands in each channel, its statements, its history.
    Show(show::Args),
    /// Fetch a channel's release of NAME, verify everything, and write it to DIR.
    Pull(pull::Args),
    /// Watch and steer phased rollouts.
    #[command(subcommand)]
    Rollout(rollout::Command),
    /// Which agents run what (from their reports).
    Agents(rollout::AgentsArgs),
    /// Follow a channel: install the release meant for this machine, check health, report.
    Agent(agent::Args),
    /// API tokens: create (admin, publisher, promoter, reporter, viewer), list, revoke.
    #[command(subcommand)]
    Token(rollout::TokenCommand),
    /// Verify and export the tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::Command),
    /// A generic TUF client (the command protocol of TUF's conformance suite).
    TufClient(tuf_client::Args),
    /// Copy a home while its server runs: keys, config, root.json, admin token, the SQLite
    /// database (PostgreSQL: pg_dump) and a manifest of sha256s.
    Backup(backup::BackupArgs),
    /// Restore a backup into a new home, re-signing every channel's metadata past it.
    Restore(backup::RestoreArgs),
    /// The metadata database: migrate its schema.
    #[command(subcommand)]
    Db(db::Command),
}

/// `NAME@VERSION` on the command line.
#[derive(Clone, Debug)]
pub struct Release {
    pub name: ArtifactName,
    pub version: Version,
}

impl std::str::FromStr for Release {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, v) = s
            .rsplit_once('@')
            .ok_or_else(|| format!("{s:?} is not NAME@VERSION"))?;
        Ok(Release {
            name: n
                .parse()
                .map_err(|e: crate::model::NameError| e.to_string())?,
            version: v
                .parse()
                .map_err(|e: crate::model::NameError| e.to_string())?,
        })
    }
}

/// `NAME` or `NAME@VERSION` on the command line: one way to name a release everywhere.
#[derive(Clone, Debug)]
pub struct NameRef {
    pub name: ArtifactName,
    pub version: Option<Version>,
}

impl std::str::FromStr for NameRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains('@') {
            let r: Release = s.parse()?;
            return Ok(NameRef {
                name: r.name,
                version: Some(r.version),
            });
        }
        Ok(NameRef {
            name: s
                .parse()
                .map_err(|e: crate::model::NameError| e.to_string())?,
            version: None,
        })
    }
}

/// Flags every client command takes.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// The arca server's URL (`host:port` means `http://host:port`).
    #[arg(long, env = "ARCA_SERVER", default_value = "http://127.0.0.1:8480",
          value_parser = crate::client::server_url)]
    pub server: String,
    /// API token (for commands that change something).
    #[arg(long, env = "ARCA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A CA certificate (PEM) to trust for an HTTPS server, besides the system's roots.
    #[arg(long, env = "ARCA_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// A client certificate (PEM) to present to an HTTPS server that asks for one (`[tls]
    /// client_ca`); an agent's certificate lets it report without a token. Needs --client-key.
    #[arg(
        long,
        env = "ARCA_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(
        long,
        env = "ARCA_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<std::path::PathBuf>,
}

impl ClientArgs {
    pub fn client(&self) -> anyhow::Result<crate::client::ApiClient> {
        if let Some(ca) = &self.ca_cert {
            crate::client::trust_ca(ca);
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            crate::client::use_client_cert(cert, key);
        }
        crate::client::ApiClient::new(&self.server, self.token.clone())
    }
}

/// This client's state directory for `server`: `$HOME/.local/state/arca/<server host:port>`
/// (trusted metadata, verified audit checkpoints). `flag` names the option that overrides it.
pub fn state_dir(server: &str, flag: &str) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    let home = std::env::var_os("HOME").with_context(|| format!("HOME is not set; pass {flag}"))?;
    let host: String = server
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(std::path::PathBuf::from(home)
        .join(".local/state/arca")
        .join(host))
}

/// A progress bar for a transfer of `len` bytes, only when stderr is a terminal.
pub fn progress(len: u64, quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    Some(bar)
}

/// Runs the command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Init(a) => init::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Key(c) => key::run(c),
        Command::Trust(c) => block_on(trust::run(c)),
        Command::Policy(c) => block_on(policy::run(c)),
        Command::Push(a) => block_on(push::run(a)),
        Command::Attest(a) => block_on(attest::attest(a)),
        Command::Approve(a) => block_on(attest::approve(a)),
        Command::Promote(a) => block_on(promote::promote(a)),
        Command::Rollback(a) => block_on(promote::rollback(a)),
        Command::History(a) => block_on(promote::history(a)),
        Command::Ls(a) => block_on(ls::run(a)),
        Command::Show(a) => block_on(show::run(a)),
        Command::Pull(a) => block_on(pull::run(a)),
        Command::TufClient(a) => block_on(tuf_client::run(a)),
        Command::Db(c) => db::run(c),
        Command::Backup(a) => backup::run_backup(a),
        Command::Restore(a) => backup::run_restore(a),
        Command::Audit(c) => block_on(audit::run(c)),
        Command::Rollout(c) => block_on(rollout::run(c)),
        Command::Agents(a) => block_on(rollout::agents(a)),
        Command::Agent(a) => block_on(agent::run(a)),
        Command::Token(c) => block_on(rollout::token(c)),
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<i32>>>(f: F) -> anyhow::Result<i32> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(f)
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
