//! `arca serve --home DIR [--listen ADDR] [--tls-cert FILE --tls-key FILE]`

use std::path::PathBuf;

use anyhow::Context as _;

/// Serve the API and the channels' TUF repositories.
#[derive(clap::Args)]
pub struct Args {
    /// The home directory (initialised on first start if empty).
    #[arg(long, env = "ARCA_HOME", default_value = "./arca-data")]
    home: PathBuf,
    /// Address to listen on; overrides `listen` in arca.toml (`127.0.0.1:0` picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// The TLS certificate chain (PEM, leaf first); overrides `[tls] cert` in arca.toml and
    /// turns TLS on. Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM); overrides `[tls] key`. Needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::client::install_crypto();
    // Paths on the command line are the current directory's, as everywhere on it (arca.toml's
    // are the home's).
    let tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => {
            let cwd = std::env::current_dir().context("reading the current directory")?;
            Some((cwd.join(cert), cwd.join(key)))
        }
        _ => None,
    };
    // Held until the process ends: a second server on this home exits at once.
    let _lock = crate::home::HomeLock::acquire(&a.home)?;
    let overrides = crate::startup::Overrides {
        listen: a.listen,
        tls,
    };
    actix_web::rt::System::new().block_on(crate::startup::serve(&a.home, overrides))?;
    Ok(0)
}
