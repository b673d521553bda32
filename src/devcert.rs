//! A self-signed development certificate for `arca init --tls`: ECDSA P-256, for `localhost`
//! and `127.0.0.1`, valid for a year. Encoded here (a few DER structures) rather than with a
//! certificate crate, which the build does not otherwise need.

use anyhow::Context as _;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};

const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// A certificate and its PKCS#8 key, both PEM.
pub struct DevCert {
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn generate() -> anyhow::Result<DevCert> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("generating a P-256 key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("reading the generated key"))?;

    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&rng, &mut serial)
        .map_err(|_| anyhow::anyhow!("drawing a serial number"))?;
    serial[0] = (serial[0] & 0x7f) | 0x01; // positive, and no leading zero byte
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    let not_before = utc_time(now - day)?;
    let not_after = utc_time(now + 365 * day)?;

    let algorithm = seq(&tlv(0x06, OID_ECDSA_SHA256));
    let name = seq(&tlv(
        0x31,
        &seq(&[tlv(0x06, OID_COMMON_NAME), tlv(0x0c, b"arca development")].concat()),
    ));
    let spki = seq(&[
        seq(&[tlv(0x06, OID_EC_PUBLIC_KEY), tlv(0x06, OID_P256)].concat()),
        bit_string(pair.public_key().as_ref()),
    ]
    .concat());
    let names = seq(&[tlv(0x82, b"localhost"), tlv(0x87, &[127, 0, 0, 1])].concat());
    let extensions = tlv(
        0xa3,
        &seq(&seq(
            &[tlv(0x06, OID_SUBJECT_ALT_NAME), tlv(0x04, &names)].concat()
        )),
    );
    let tbs = seq(&[
        tlv(0xa0, &tlv(0x02, &[2])),
        tlv(0x02, &serial),
        algorithm.clone(),
        name.clone(),
        seq(&[
            tlv(0x17, not_before.as_bytes()),
            tlv(0x17, not_after.as_bytes()),
        ]
        .concat()),
        name,
        spki,
        extensions,
    ]
    .concat());
    let signature = pair
        .sign(&rng, &tbs)
        .map_err(|_| anyhow::anyhow!("signing the certificate"))?;
    let cert = seq(&[tbs, algorithm, bit_string(signature.as_ref())].concat());
    Ok(DevCert {
        cert_pem: pem("CERTIFICATE", &cert),
        key_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
    })
}

/// `YYMMDDHHMMSSZ` (UTCTime: years up to 2049).
fn utc_time(t: std::time::SystemTime) -> anyhow::Result<String> {
    let s = humantime::format_rfc3339_seconds(t).to_string(); // 2026-12-01T10:53:00Z
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    let short = digits.get(2..14).context("formatting a certificate date")?;
    Ok(format!("{short}Z"))
}

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = body.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(body);
    out
}

fn seq(body: &[u8]) -> Vec<u8> {
    tlv(0x30, body)
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    tlv(0x03, &[&[0u8][..], bytes].concat())
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
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
