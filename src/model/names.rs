//! Validated names: the only way a name, version, file name or channel enters arca.
//! Each type has one constructor that validates, and `Deserialize` goes through it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a name was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} {value:?}: {rule}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub rule: &'static str,
}

/// Longest artifact name, version or file name accepted. Long enough for any real package
/// name, short enough to keep URLs, TUF target paths and database keys small.
pub const MAX_NAME_LEN: usize = 200;

macro_rules! validated {
    ($(#[$doc:meta])* $ty:ident, $what:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                match $check(s) {
                    Ok(()) => Ok($ty(s.to_owned())),
                    Err(rule) => Err(NameError { what: $what, value: s.to_owned(), rule }),
                }
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

validated!(
    /// An artifact name: lowercase `[a-z0-9][a-z0-9._-]*` segments joined by `/`, no `..`.
    ArtifactName, "artifact name", check_artifact_name
);
validated!(
    /// A version: `[A-Za-z0-9][A-Za-z0-9._+-]*` (semver and most other schemes fit).
    Version, "version", check_version
);
validated!(
    /// A file name: `[A-Za-z0-9._+-]`, not starting with `.`, no `/`.
    FileName, "file name", check_file_name
);
validated!(
    /// A channel name: `[a-z0-9][a-z0-9-]*`, at most 63 characters.
    ChannelName, "channel name", check_channel_name
);

fn check_len(s: &str, max: usize) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.len() > max {
        return Err("is too long");
    }
    Ok(())
}

fn check_artifact_name(s: &str) -> Result<(), &'static str> {
    check_len(s, MAX_NAME_LEN)?;
    for seg in s.split('/') {
        let mut bytes = seg.bytes();
        match bytes.next() {
            None => return Err("has an empty path segment"),
            Some(b) if !(b.is_ascii_lowercase() || b.is_ascii_digit()) => {
                return Err("each segment must start with a-z or 0-9");
            }
            _ => {}
        }
        if !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)) {
            return Err("may contain only a-z, 0-9, '.', '_', '-' and '/'");
        }
        if seg.contains("..") {
            return Err("must not contain '..'");
        }
    }
    Ok(())
}

fn check_version(s: &str) -> Result<(), &'static str> {
    check_len(s, MAX_NAME_LEN)?;
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("must start with a letter or digit");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
    {
        return Err("may contain only A-Z, a-z, 0-9, '.', '_', '+' and '-'");
    }
    if s.contains("..") {
        return Err("must not contain '..'");
    }
    Ok(())
}

fn check_file_name(s: &str) -> Result<(), &'static str> {
    check_len(s, MAX_NAME_LEN)?;
    if s.starts_with('.') {
        return Err("must not start with '.'");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
    {
        return Err("may contain only A-Z, a-z, 0-9, '.', '_', '+' and '-'");
    }
    Ok(())
}

fn check_channel_name(s: &str) -> Result<(), &'static str> {
    check_len(s, 63)?;
    let b = s.as_bytes();
    if !(b[0].is_ascii_lowercase() || b[0].is_ascii_digit()) {
        return Err("must start with a-z or 0-9");
    }
    if !b
        .iter()
        .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return Err("may contain only a-z, 0-9 and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn artifact_names() {
        for ok in ["app", "a/b/c", "my-app.v2", "0x_y"] {
            assert!(ok.parse::<ArtifactName>().is_ok(), "{ok}");
        }
        for bad in [
            "", "App", "a//b", "/a", "a/", "a/../b", "a..b", ".a", "-a", "a b", "a\\b", "é",
        ] {
            assert!(bad.parse::<ArtifactName>().is_err(), "{bad}");
        }
        assert!(
            "a".repeat(MAX_NAME_LEN + 1)
                .parse::<ArtifactName>()
                .is_err()
        );
        assert!(serde_json::from_str::<ArtifactName>("\"../x\"").is_err());
    }

    #[test]
    fn versions_files_channels() {
        assert!("1.2.3-rc.1+build.5".parse::<Version>().is_ok());
        for bad in ["", "-1", "1/2", "1..2", "1 2"] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
        assert!("app-1.0.tar.gz".parse::<FileName>().is_ok());
        for bad in ["", ".hidden", "a/b", "..", "a b", "a\"b"] {
            assert!(bad.parse::<FileName>().is_err(), "{bad}");
        }
        assert!("prod-eu1".parse::<ChannelName>().is_ok());
        for bad in ["", "Prod", "-x", "a_b", &"a".repeat(64)] {
            assert!(bad.parse::<ChannelName>().is_err(), "{bad}");
        }
    }

    proptest! {
        /// Whatever is accepted is a safe relative path: no empty, `.` or `..` segment, no
        /// backslash, no absolute path, and it survives a serde round trip unchanged.
        #[test]
        fn accepted_names_are_safe_paths(s in "[a-z0-9./_-]{1,24}") {
            if let Ok(n) = s.parse::<ArtifactName>() {
                prop_assert!(!n.as_str().starts_with('/'));
                for seg in n.as_str().split('/') {
                    prop_assert!(!seg.is_empty() && seg != "." && seg != "..");
                }
                let back: ArtifactName = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
                prop_assert_eq!(back, n);
            }
        }

        #[test]
        fn file_names_never_escape(s in "[ -~]{1,16}") {
            if let Ok(f) = s.parse::<FileName>() {
                prop_assert!(!f.as_str().contains('/') && !f.as_str().contains('\\') && !f.as_str().starts_with('.'));
            }
        }
    }
}
