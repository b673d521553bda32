//! API tokens: 256 random bits, shown once, stored only as a SHA-256 hash and compared in
//! constant time. A token authenticates a request; it never makes anything installable.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom;

/// A fresh token: (token text, token id, SHA-256 of the token).
/// Format: `arca_<16 hex id>_<43 base64url chars of secret>`.
pub fn new_token() -> anyhow::Result<(String, String, Vec<u8>)> {
    let rng = ring::rand::SystemRandom::new();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill(&mut id)
        .and_then(|_| rng.fill(&mut secret))
        .map_err(|_| anyhow::anyhow!("the secure random generator failed"))?;
    let id = hex::encode(id);
    let token = format!("arca_{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = token_hash(&token);
    Ok((token, id, hash))
}

/// The id part of a well-formed token.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("arca_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 43)
        .then_some(id)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// Constant-time comparison of a presented token with a stored hash.
pub fn matches(token: &str, stored_hash: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(token_hash(token).as_slice().ct_eq(stored_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_match() {
        let (t, id, h) = new_token().unwrap();
        assert_eq!(token_id(&t), Some(id.as_str()));
        assert!(matches(&t, &h));
        let mut other = t.clone();
        other.pop();
        other.push('A');
        assert!(!matches(&other, &h) || other == t);
        assert_eq!(token_id("arca_zz_x"), None);
        assert_eq!(token_id("bearer"), None);
    }
}
