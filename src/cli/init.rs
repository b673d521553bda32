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
    /// Keep the blobs in this object store (s3://BUCKET/PREFIX, gs://..., az://...), recorded
    /// in arca.toml as `[store] url`; without it, HOME/blobs.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// An option of the object store (`[store] options`, e.g. `aws_region=eu-west-1`);
    /// repeatable.
    #[arg(long = "store-option", value_name = "KEY=VALUE", value_parser = key_value)]
    store_options: Vec<(String, String)>,
    /// Write the home of a further server on an existing database (with --database, --store
    /// and --master-key): the same database, store, pipeline and pinned root, a copy of the
    /// master key; no keys, no token, no change to the database.
    #[arg(long, requires = "database")]
    join: bool,
    /// With --join: the master key file of the database's servers (copied to HOME/master.key).
    #[arg(long, value_name = "FILE", env = "ARCA_MASTER_KEY_FILE")]
    master_key: Option<PathBuf>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    if a.join {
        return join(a);
    }
    if !a.store_options.is_empty() && a.store.is_none() {
        anyhow::bail!("--store-option needs --store URL");
    }
    if let Some(url) = &a.store {
        if crate::home::Home::new(&a.home).is_initialised() {
            anyhow::bail!("{} is already initialised", a.home.display());
        }
        crate::home::record_store(&a.home, url, &a.store_options)?;
    }
    let report = crate::home::init(&a.home, a.database.as_deref())?;
    println!("initialised {}", a.home.display());
    if let Some(url) = &a.database {
        println!("  database     {} (PostgreSQL)", crate::db::redact(url));
    }
    if let Some(url) = &a.store {
        println!("  store        {url}");
    }
    println!(
        "  master key   {} (seals the server's keys in the database: back it up, keep it private)",
        crate::keyring::master_key_path(&a.home, &crate::config::Config::load(&a.home)?).display()
    );
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
    println!("  channels     {}", pipeline(&report.channels));
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

/// `arca init --join`: a home for a further server on an existing database.
fn join(a: Args) -> anyhow::Result<i32> {
    let database = a.database.as_deref().unwrap_or_default();
    let Some(master) = &a.master_key else {
        anyhow::bail!(
            "--join needs --master-key FILE (or ARCA_MASTER_KEY_FILE): the master key of the database's servers"
        );
    };
    if a.tls {
        anyhow::bail!("--join writes no certificate: give the server its own [tls] after joining");
    }
    let report = crate::home::join(
        &a.home,
        database,
        a.store.as_deref(),
        &a.store_options,
        master,
    )?;
    println!("joined {}", a.home.display());
    println!(
        "  database     {} (PostgreSQL)",
        crate::db::redact(database)
    );
    println!("  store        {}", a.store.as_deref().unwrap_or_default());
    println!(
        "  master key   {} (a copy of {})",
        report.master_key.display(),
        master.display()
    );
    println!("  pinned root  {}/root.json", a.home.display());
    println!("  channels     {}", pipeline(&report.channels));
    println!("  serve it with: arca serve --home {}", a.home.display());
    Ok(0)
}

/// The channels in promotion order, as `dev -> staging -> prod`.
fn pipeline(channels: &[crate::model::ChannelName]) -> String {
    channels
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(" -> ")
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
