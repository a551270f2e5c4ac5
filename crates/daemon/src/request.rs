//! Requests become validated values here, before the engine sees them.

use testudo_engine::images::canonical_name;
use testudo_engine::state::Name;

/// Why a request is malformed, whatever the daemon's state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("invalid namespace name {name:?}: {reason}")]
    NamespaceName { name: String, reason: &'static str },
    #[error("invalid image reference {reference:?}")]
    Reference {
        reference: String,
        #[source]
        source: testudo_engine::images::ImageError,
    },
    #[error("the first message of an import must be `start`")]
    ImportWithoutStart,
    #[error("an import sent `start` twice")]
    ImportStartTwice,
    #[error("an import chunk of {size} bytes is larger than 1 MiB")]
    ChunkTooLarge { size: usize },
    #[error("an import message has neither `start` nor `chunk`")]
    EmptyImportMessage,
    #[error("an export needs at least one reference")]
    NoReferences,
    #[error("event topic prefix {prefix:?} does not start with /")]
    TopicPrefix { prefix: String },
}

/// The largest bytes chunk of a stream (`docs/api.md`).
pub(crate) const MAX_CHUNK: usize = 1 << 20;

/// A namespace name as the API allows it: a DNS label (1 to 63 of `[a-z0-9-]`, starting and
/// ending with a letter or digit), which the engine's own, wider rule accepts too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceName(Name);

impl NamespaceName {
    pub(crate) fn parse(name: &str) -> Result<NamespaceName, RequestError> {
        let bad = |reason| RequestError::NamespaceName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > 63 {
            return Err(bad("it is longer than 63 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("only lowercase letters, digits and '-' are allowed"));
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Err(bad("it must start and end with a letter or digit"));
        }
        Name::parse("namespace", name)
            .map(NamespaceName)
            .map_err(|_| bad("the engine refuses it"))
    }

    pub(crate) fn name(&self) -> &Name {
        &self.0
    }
}

/// An image reference that parses, in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageReference(String);

impl ImageReference {
    pub(crate) fn parse(reference: &str) -> Result<ImageReference, RequestError> {
        canonical_name(reference)
            .map(ImageReference)
            .map_err(|source| RequestError::Reference {
                reference: reference.to_owned(),
                source,
            })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn namespace_names_follow_the_dns_label_rule() {
        for good in ["default", "a", "team-7", &"x".repeat(63)] {
            assert!(NamespaceName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Acme", "a_b", "a.b", "-a", "a-", &"x".repeat(64), "a/b"] {
            assert!(NamespaceName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_short_reference_becomes_canonical_and_a_bad_one_is_refused() {
        assert_eq!(
            ImageReference::parse("busybox").unwrap().as_str(),
            "docker.io/library/busybox:latest"
        );
        let error = ImageReference::parse("Bad Ref!").unwrap_err();
        assert!(error
            .to_string()
            .starts_with("invalid image reference \"Bad Ref!\""));
    }
}
