//! A self-signed development certificate for `arca init --tls`: ECDSA P-256, for `localhost`
//! and `127.0.0.1`, valid from a day ago (a client's clock a little behind) for a year.

use anyhow::Context as _;

/// A certificate and its PKCS#8 key, both PEM.
pub struct DevCert {
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn generate() -> anyhow::Result<DevCert> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("generating a P-256 key")?;
    let mut params = rcgen::CertificateParams::new(["localhost".to_owned()])
        .context("naming the certificate")?;
    params.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "arca development");
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("reading the clock")?;
    let day = std::time::Duration::from_secs(86_400);
    params.not_before = now - day;
    params.not_after = now + 365 * day;
    let cert = params
        .self_signed(&key)
        .context("signing the certificate")?;
    Ok(DevCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_development_certificate_loads_as_the_server_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let c = super::generate().unwrap();
        std::fs::write(dir.path().join("c.pem"), &c.cert_pem).unwrap();
        std::fs::write(dir.path().join("k.pem"), &c.key_pem).unwrap();
        crate::http::tls::load(&dir.path().join("c.pem"), &dir.path().join("k.pem")).unwrap();
    }
}
