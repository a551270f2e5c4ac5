//! Container ids, validated once at the edge.

use std::fmt;

use thiserror::Error;

/// A container id that is safe to use as a directory name: 1 to 1024 characters from `[A-Za-z0-9_+.-]`,
/// and not `.` or `..` (the rule runc applies).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerId(String);

/// Why a string is not a valid [`ContainerId`].
#[derive(Debug, Error)]
#[error("invalid container id {0:?}: use 1 to 1024 characters from [A-Za-z0-9_+.-], not \".\" or \"..\"")]
pub struct InvalidContainerId(pub String);

impl ContainerId {
    /// Validates `id`.
    pub fn new(id: &str) -> Result<Self, InvalidContainerId> {
        let valid_chars = id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'.' | b'-'));
        if id.is_empty() || id.len() > 1024 || !valid_chars || id == "." || id == ".." {
            return Err(InvalidContainerId(id.to_string()));
        }
        Ok(Self(id.to_string()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_style_ids() {
        for id in ["a", "web-1", "x_y.z+1", "0123456789abcdef"] {
            assert!(ContainerId::new(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_ids_that_could_escape_the_state_dir() {
        for id in ["", ".", "..", "a/b", "../x", "a b", "é"] {
            assert!(ContainerId::new(id).is_err(), "{id}");
        }
        assert!(ContainerId::new(&"a".repeat(1025)).is_err());
    }
}
