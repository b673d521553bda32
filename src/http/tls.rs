//! TLS for the listener: a certificate resolver that re-reads the certificate and key when
//! their files change, so that a renewed certificate is served without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often, at most, a handshake looks at the files' modification times.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The rustls configuration serving the certificate of `cert` and `key`, with ALPN
/// `http/1.1` (actix-http is built without HTTP/2). Fails if the files do not hold a certificate and its key.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let resolver = ReloadingCert::new(cert.to_path_buf(), key.to_path_buf())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves the certificate last read from `cert` and `key`; on a handshake, at most once a
/// second, re-reads them if either file's modification time or size changed. New files
/// that do not parse, or whose key does not match the certificate, are logged and the
/// previous certificate is kept (a renewal writing the two files one after the other is
/// picked up once both are written).
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    current: Arc<CertifiedKey>,
    stamp: Stamp,
    checked: Instant,
}

/// The two files' modification times and sizes.
type Stamp = [Option<(SystemTime, u64)>; 2];

impl ReloadingCert {
    pub fn new(cert: PathBuf, key: PathBuf) -> anyhow::Result<Self> {
        let stamp = stamp(&cert, &key);
        let current = Arc::new(load(&cert, &key)?);
        Ok(ReloadingCert {
            cert,
            key,
            state: Mutex::new(State {
                current,
                stamp,
                checked: Instant::now(),
            }),
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= CHECK_EVERY {
            state.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now != state.stamp {
                state.stamp = now;
                match load(&self.cert, &self.key) {
                    Ok(k) => {
                        state.current = Arc::new(k);
                        tracing::info!(cert = %self.cert.display(), "reloaded the TLS certificate");
                    }
                    Err(e) => tracing::error!(
                        cert = %self.cert.display(),
                        error = format!("{e:#}"),
                        "keeping the previous TLS certificate: the new files do not load"
                    ),
                }
            }
        }
        Some(state.current.clone())
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    [one(cert), one(key)]
}

/// Reads a PEM certificate chain and its private key, checking that they belong together.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing the TLS certificate {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("no certificate in {}", cert.display());
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the TLS key {}", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .with_context(|| format!("unsupported TLS key {}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().with_context(|| {
        format!(
            "the key {} does not match {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(certified)
}
