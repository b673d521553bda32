//! `arca init --home DIR`

use std::path::PathBuf;

/// Create a home directory.
#[derive(clap::Args)]
pub struct Args {
    /// The home directory to create.
    #[arg(long, env = "ARCA_HOME", default_value = "./arca-data")]
    home: PathBuf,
    /// Also write a self-signed development certificate (HOME/tls/) and serve HTTPS with it.
    #[arg(long)]
    tls: bool,
    /// Keep the metadata in this empty PostgreSQL database (postgres://USER@HOST:PORT/DB),
    /// initialised now and recorded in arca.toml; without it, SQLite in the home.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let report = crate::home::init(&a.home, a.database.as_deref())?;
    println!("initialised {}", a.home.display());
    if let Some(url) = &a.database {
        println!("  database     {} (PostgreSQL)", crate::db::redact(url));
    }
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
    if a.tls {
        write_dev_cert(&a.home)?;
        let cert = a.home.join("tls/cert.pem");
        println!(
            "  tls          {} (self-signed, for localhost and 127.0.0.1)",
            cert.display()
        );
        println!(
            "               clients trust it with --ca-cert {}",
            cert.display()
        );
    }
    Ok(0)
}

/// Writes `HOME/tls/cert.pem` and `HOME/tls/key.pem` (0600) and sets `[tls]` in arca.toml.
fn write_dev_cert(home: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let config = home.join(crate::config::CONFIG_FILE);
    let text = std::fs::read_to_string(&config).unwrap_or_default();
    if crate::config::Config::load(home)?.tls.is_some() {
        anyhow::bail!("{} already has a [tls] table", config.display());
    }
    let dev = crate::devcert::generate()?;
    let dir = home.join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("key.pem"))
        .with_context(|| format!("creating {}", dir.join("key.pem").display()))?;
    key.write_all(dev.key_pem.as_bytes())?;
    std::fs::write(dir.join("cert.pem"), &dev.cert_pem)
        .with_context(|| format!("writing {}", dir.join("cert.pem").display()))?;
    let sep = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    std::fs::write(
        &config,
        format!("{text}{sep}\n[tls]\ncert = \"tls/cert.pem\"\nkey = \"tls/key.pem\"\n"),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    Ok(())
}
