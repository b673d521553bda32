//! in-toto Statement v1, the payload of every arca statement (build signature, attestation,
//! approval), carried in a DSSE envelope with payload type [`PAYLOAD_TYPE`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::KeyError;

/// DSSE payload type of in-toto statements.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// One subject: the artifact (`name@version`) and its digests by algorithm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

/// An in-toto Statement v1. Unknown fields inside `predicate` are kept as they are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub predicate: serde_json::Value,
}

impl Statement {
    pub fn new(subject: Subject, predicate_type: &str, predicate: serde_json::Value) -> Self {
        Statement {
            statement_type: STATEMENT_TYPE.into(),
            subject: vec![subject],
            predicate_type: predicate_type.into(),
            predicate,
        }
    }

    /// Parses a statement payload and checks its `_type`.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let st: Statement = serde_json::from_slice(bytes).map_err(|e| KeyError::Malformed {
            what: "in-toto statement",
            reason: e.to_string(),
        })?;
        if st.statement_type != STATEMENT_TYPE {
            return Err(KeyError::Malformed {
                what: "in-toto statement",
                reason: format!(
                    "_type is {:?}, expected {STATEMENT_TYPE}",
                    st.statement_type
                ),
            });
        }
        Ok(st)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement encodes")
    }

    /// Whether some subject has exactly this name and these digests (every algorithm the subject
    /// lists must match, and both `sha256` and `blake3` must be present).
    pub fn covers(&self, name: &str, sha256: &str, blake3: &str) -> bool {
        self.subject.iter().any(|s| {
            s.name == name
                && s.digest.get("sha256").map(String::as_str) == Some(sha256)
                && s.digest.get("blake3").map(String::as_str) == Some(blake3)
                && s.digest.iter().all(|(alg, d)| match alg.as_str() {
                    "sha256" => d == sha256,
                    "blake3" => d == blake3,
                    _ => true,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subject() -> Subject {
        Subject {
            name: "app@1.0".into(),
            digest: [
                ("sha256".into(), "aa".into()),
                ("blake3".into(), "bb".into()),
            ]
            .into(),
        }
    }

    #[test]
    fn round_trip_and_cover() {
        let st = Statement::new(subject(), "https://example.com/p", json!({"x": 1}));
        let back = Statement::from_slice(&st.to_bytes()).unwrap();
        assert_eq!(back, st);
        assert!(st.covers("app@1.0", "aa", "bb"));
        assert!(!st.covers("app@1.0", "aa", "bc"));
        assert!(!st.covers("app@1.1", "aa", "bb"));
    }

    #[test]
    fn refuses_other_statement_types() {
        let mut v = serde_json::to_value(Statement::new(subject(), "p", json!({}))).unwrap();
        v["_type"] = json!("https://in-toto.io/Statement/v0.1");
        assert!(Statement::from_slice(v.to_string().as_bytes()).is_err());
        v["_type"] = json!(STATEMENT_TYPE);
        v["extra"] = json!(1);
        assert!(Statement::from_slice(v.to_string().as_bytes()).is_err());
    }
}
