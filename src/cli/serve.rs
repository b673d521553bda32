//! `arca serve --home DIR [--listen ADDR]`

use std::path::PathBuf;

/// Serve the API and the channels' TUF repositories.
#[derive(clap::Args)]
pub struct Args {
    /// The home directory (initialised on first start if empty).
    #[arg(long, env = "ARCA_HOME", default_value = "./arca-data")]
    home: PathBuf,
    /// Address to listen on; overrides `listen` in arca.toml (`127.0.0.1:0` picks a free port).
    #[arg(long)]
    listen: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::client::install_crypto();
    // Held until the process ends: a second server on this home exits at once.
    let _lock = crate::home::HomeLock::acquire(&a.home)?;
    actix_web::rt::System::new().block_on(crate::http::serve(&a.home, a.listen))?;
    Ok(0)
}
