//! TLS for the listener: a certificate resolver that re-reads the certificate and key when
//! their files change (or on SIGHUP), so that a renewed certificate is served without a
//! restart; ALPN `h2` and `http/1.1`; and, with `[tls] client_ca`, client certificates, whose
//! agent id ([`client_identity`]) lets an agent report without a token.

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

/// ALPN's name of HTTP/2, which the listener prefers to `http/1.1`.
pub const ALPN_H2: &[u8] = b"h2";

/// The rustls configuration serving the certificate of `cert` and `key`, with ALPN `h2` then
/// `http/1.1`, and its resolver (which SIGHUP tells to reload). With `client_ca`, a client
/// certificate is asked for and, when one is presented, verified against the CA certificates
/// of that PEM file (the handshake fails if it does not verify); a client without one still
/// connects, and authenticates with a token as before. Fails, naming the file, if the files
/// do not hold a certificate and its key, or `client_ca` no CA certificate.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<(rustls::ServerConfig, Arc<ReloadingCert>)> {
    let resolver = Arc::new(ReloadingCert::new(cert.to_path_buf(), key.to_path_buf())?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading the client CA {}", ca.display()))?
            {
                let c = c.with_context(|| format!("parsing the client CA {}", ca.display()))?;
                roots
                    .add(c)
                    .with_context(|| format!("the client CA {} is not usable", ca.display()))?;
            }
            if roots.is_empty() {
                anyhow::bail!("no CA certificate in the client CA {}", ca.display());
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .with_context(|| format!("the client CA {} is not usable", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()];
    Ok((config, resolver))
}

/// The identity of a connection's verified client certificate: the agent id it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity(pub String);

/// The agent id a client certificate names: its first DNS name (subject alternative name),
/// else its subject's common name, as TLS clients and service meshes name a peer. `None` when
/// it names neither (the certificate then proves nothing arca uses).
pub fn client_identity(cert: &CertificateDer<'_>) -> Option<String> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    if let Some(dns) = ee.valid_dns_names().next() {
        return Some(dns.to_owned());
    }
    common_name(ee.subject())
}

/// The first common name (OID 2.5.4.3) of a DER `Name`'s contents (the RDN sequence), if it
/// is a UTF-8, printable or IA5 string.
fn common_name(mut name: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    while !name.is_empty() {
        let (tag, set, rest) = der_tlv(name)?;
        name = rest;
        if tag != 0x31 {
            return None;
        }
        let mut set = set;
        while !set.is_empty() {
            let (tag, atv, rest) = der_tlv(set)?;
            set = rest;
            if tag != 0x30 {
                return None;
            }
            let (oid_tag, oid, value) = der_tlv(atv)?;
            let (value_tag, value, _) = der_tlv(value)?;
            // UTF8String, PrintableString, IA5String.
            if oid_tag == 0x06 && oid == CN && matches!(value_tag, 0x0c | 0x13 | 0x16) {
                return std::str::from_utf8(value).ok().map(str::to_owned);
            }
        }
    }
    None
}

/// One DER tag-length-value: (tag, value, what follows). Short and long lengths up to 4 bytes.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
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

    /// Reads the files again now, whatever their modification times (SIGHUP): the next
    /// handshakes serve what they hold. Files that do not load are logged with the error, which
    /// names the file, and the previous certificate stays in service. True if it was replaced.
    pub fn reload(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.checked = Instant::now();
        state.stamp = stamp(&self.cert, &self.key);
        self.load_into(&mut state)
    }

    fn load_into(&self, state: &mut State) -> bool {
        match load(&self.cert, &self.key) {
            Ok(k) => {
                state.current = Arc::new(k);
                tracing::info!(cert = %self.cert.display(), "reloaded the TLS certificate");
                true
            }
            Err(e) => {
                tracing::error!(
                    cert = %self.cert.display(),
                    error = format!("{e:#}"),
                    "keeping the previous TLS certificate: the new files do not load"
                );
                false
            }
        }
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
                self.load_into(&mut state);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The DER contents of a `Name` with one RDN: `(oid, string tag, value)`.
    fn name(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut atv = vec![0x06, oid.len() as u8];
        atv.extend(oid);
        atv.extend([tag, value.len() as u8]);
        atv.extend(value);
        let mut seq = vec![0x30, atv.len() as u8];
        seq.extend(atv);
        let mut set = vec![0x31, seq.len() as u8];
        set.extend(seq);
        set
    }

    #[test]
    fn the_common_name_is_read_and_anything_else_is_none() {
        const CN: &[u8] = &[0x55, 0x04, 0x03];
        const O: &[u8] = &[0x55, 0x04, 0x0a];
        assert_eq!(
            common_name(&name(CN, 0x0c, b"web-1")).as_deref(),
            Some("web-1")
        );
        let mut two = name(O, 0x0c, b"acme");
        two.extend(name(CN, 0x13, b"web-2"));
        assert_eq!(common_name(&two).as_deref(), Some("web-2"));
        assert_eq!(common_name(&name(O, 0x0c, b"acme")), None);
        // A BMPString is not read; truncated or overlong input is no name, never a panic.
        assert_eq!(common_name(&name(CN, 0x1e, b"\0w")), None);
        let whole = name(CN, 0x0c, b"web-1");
        for cut in 0..whole.len() {
            assert_eq!(common_name(&whole[..cut]), None, "cut at {cut}");
        }
        assert_eq!(common_name(&[0x31, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(common_name(&[0x31, 0x85, 1, 1, 1, 1, 1]), None);
    }
}
