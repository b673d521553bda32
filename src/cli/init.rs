//! `arca init --home DIR`

use std::path::PathBuf;

/// Create a home directory.
#[derive(clap::Args)]
pub struct Args {
    /// The home directory to create.
    #[arg(long, env = "ARCA_HOME", default_value = "./arca-data")]
    home: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let report = crate::home::init(&a.home)?;
    println!("initialised {}", a.home.display());
    println!(
        "  root key     {} ({}/keys/root.key: move it offline for production)",
        report.root_key_id,
        a.home.display()
    );
    println!("  admin token  {}/admin.token", a.home.display());
    println!(
        "  pinned root  {}/root.json (give this file to clients)",
        a.home.display()
    );
    println!(
        "  channels     {}",
        report
            .channels
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(" -> ")
    );
    Ok(0)
}
