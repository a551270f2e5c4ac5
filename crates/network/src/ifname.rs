//! Interface names, validated as the kernel's `dev_valid_name` does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest interface name: `IFNAMSIZ` (16) less the terminating NUL.
pub const IFNAME_MAX: usize = 15;

/// A name the kernel accepts for a network interface: 1 to 15 bytes, not `.` or `..`, without
/// `/`, `:`, whitespace or NUL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

/// An interface name the kernel would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid interface name {name:?}: {reason}")]
pub struct IfNameError {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl IfName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, IfNameError> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("empty")
        } else if name.len() > IFNAME_MAX {
            Some("longer than 15 bytes")
        } else if name == "." || name == ".." {
            Some("a dot name")
        } else if name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
        {
            Some("contains '/', ':', whitespace or NUL")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(IfNameError { name, reason }),
            None => Ok(Self(name)),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for IfName {
    type Err = IfNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for IfName {
    type Error = IfNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<IfName> for String {
    fn from(name: IfName) -> Self {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_rules_for_interface_names_are_applied() {
        assert!(IfName::new("eth0").is_ok());
        assert!(IfName::new("a23456789012345").is_ok());
        for bad in [
            "",
            "a234567890123456",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\0",
        ] {
            assert!(IfName::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
