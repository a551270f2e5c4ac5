//! Snapshot keys: validated names.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::SnapshotError;

/// A snapshot's key: a layer's chain ID (`sha256:...`), a container id, any name the caller
/// chooses within these rules: 1 to [`MAX_LEN`](Self::MAX_LEN) bytes, no `/`, no NUL, no other
/// control character. Keys never become path components (snapshot directories are numbered), the
/// rules keep them printable and safe to use as file names should a caller need to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotKey(String);

impl SnapshotKey {
    /// The longest key, in bytes: room for a sha512 chain ID with its algorithm prefix.
    pub const MAX_LEN: usize = 255;

    /// Validates `key`.
    pub fn parse(key: &str) -> Result<SnapshotKey, SnapshotError> {
        let invalid = |reason| SnapshotError::InvalidKey {
            key: key.to_owned(),
            reason,
        };
        if key.is_empty() {
            return Err(invalid("it is empty"));
        }
        if key.len() > Self::MAX_LEN {
            return Err(invalid("it is longer than 255 bytes"));
        }
        if key.contains('/') {
            return Err(invalid("it contains '/'"));
        }
        if key.contains('\0') {
            return Err(invalid("it contains a NUL byte"));
        }
        if key.chars().any(char::is_control) {
            return Err(invalid("it contains a control character"));
        }
        Ok(SnapshotKey(key.to_owned()))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SnapshotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SnapshotKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SnapshotKey {
    type Error = SnapshotError;

    fn try_from(key: String) -> Result<SnapshotKey, SnapshotError> {
        SnapshotKey::parse(&key)
    }
}

impl From<SnapshotKey> for String {
    fn from(key: SnapshotKey) -> String {
        key.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(key: &str) -> String {
        SnapshotKey::parse(key).unwrap_err().to_string()
    }

    #[test]
    fn chain_ids_and_container_ids_are_keys() {
        let chain = format!("sha256:{}", "a".repeat(64));
        assert_eq!(SnapshotKey::parse(&chain).unwrap().as_str(), chain);
        assert_eq!(SnapshotKey::parse("web-1").unwrap().to_string(), "web-1");
        let longest = format!("sha512:{}", "f".repeat(128));
        assert!(SnapshotKey::parse(&longest).is_ok());
        assert!(SnapshotKey::parse(&"k".repeat(SnapshotKey::MAX_LEN)).is_ok());
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        assert_eq!(reason(""), "invalid snapshot key \"\": it is empty");
        assert_eq!(
            reason("a/b"),
            "invalid snapshot key \"a/b\": it contains '/'"
        );
        assert!(reason("a\0b").ends_with("it contains a NUL byte"));
        assert!(reason("a\nb").ends_with("it contains a control character"));
        assert!(reason(&"k".repeat(256)).ends_with("it is longer than 255 bytes"));
    }

    #[test]
    fn keys_deserialize_only_when_valid() {
        let key: SnapshotKey = serde_json::from_str("\"layer\"").unwrap();
        assert_eq!(key.as_str(), "layer");
        assert!(serde_json::from_str::<SnapshotKey>("\"../x/y\"").is_err());
    }
}
