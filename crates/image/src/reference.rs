//! Image references (`busybox`, `127.0.0.1:5000/ns/app:1.0@sha256:…`), parsed with the grammar of
//! docker/distribution's `reference` package and normalised as docker does: no registry means
//! `docker.io`, and a single path component on `docker.io` lives under `library/`.
//!
//! [`ImageRef`] is a validated newtype: once built it always names a registry, a repository and a
//! tag or a digest, so the registry client never re-checks them.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The registry used when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// The host that serves the API of [`DEFAULT_REGISTRY`].
const DEFAULT_REGISTRY_API_HOST: &str = "registry-1.docker.io";

/// A registry name docker still accepts and rewrites to [`DEFAULT_REGISTRY`].
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";

/// The namespace of docker's official images.
const OFFICIAL_NAMESPACE: &str = "library";

/// docker/distribution's `NameTotalLengthMax`: the whole `registry/repository` name.
const MAX_NAME_LEN: usize = 255;

/// The longest tag the grammar allows (`[\w][\w.-]{0,127}`).
const MAX_TAG_LEN: usize = 128;

/// Why an image reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The reference is an empty string.
    #[error("invalid image reference \"\": empty")]
    Empty,
    /// The normalised `registry/repository` is too long.
    #[error("invalid image reference {input:?}: name is {len} characters, over {MAX_NAME_LEN}")]
    TooLong {
        /// The reference as given.
        input: String,
        /// Length of the normalised name.
        len: usize,
    },
    /// The registry part is not a host name, IPv4 or bracketed IPv6 address with optional port.
    #[error("invalid image reference {input:?}: bad registry {registry:?}")]
    InvalidRegistry {
        /// The reference as given.
        input: String,
        /// The registry part.
        registry: String,
    },
    /// The repository has upper-case letters, which the grammar forbids.
    #[error("invalid image reference {input:?}: repository name must be lowercase")]
    Uppercase {
        /// The reference as given.
        input: String,
    },
    /// A path component of the repository does not match the grammar.
    #[error(
        "invalid image reference {input:?}: bad path component {component:?} \
         (lowercase letters and digits, separated by '.', '_', '__' or dashes)"
    )]
    InvalidPathComponent {
        /// The reference as given.
        input: String,
        /// The offending component (empty for `a//b` or a trailing `/`).
        component: String,
    },
    /// The tag does not match `[\w][\w.-]{0,127}`.
    #[error(
        "invalid image reference {input:?}: bad tag {tag:?} \
         (up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-')"
    )]
    InvalidTag {
        /// The reference as given.
        input: String,
        /// The tag part.
        tag: String,
    },
    /// The part after `@` is not a digest this crate can verify.
    #[error("invalid image reference {input:?}: bad digest")]
    InvalidDigest {
        /// The reference as given.
        input: String,
        /// Why the digest was refused.
        #[source]
        source: DigestError,
    },
    /// The whole reference is 64 hex digits: an image id, which docker refuses as a name too.
    #[error(
        "invalid image reference {input:?}: a 64-digit hex string is an image id, not a repository name"
    )]
    ImageId {
        /// The reference as given.
        input: String,
    },
}

/// A parsed, normalised image reference.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses `input` with docker's grammar and normalisation: `busybox` becomes
    /// `docker.io/library/busybox:latest`; `host:port/ns/name@sha256:…` keeps its registry and has
    /// no tag; `name:tag@digest` keeps both (the digest is what gets pulled).
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.len() == 64
            && input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ReferenceError::ImageId {
                input: input.to_owned(),
            });
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((name, digest)) => {
                let digest =
                    Digest::parse(digest).map_err(|source| ReferenceError::InvalidDigest {
                        input: input.to_owned(),
                        source,
                    })?;
                (name, Some(digest))
            }
            None => (input, None),
        };
        let (name, tag) = split_tag(name_and_tag);
        if let Some(tag) = tag {
            if !is_tag(tag) {
                return Err(ReferenceError::InvalidTag {
                    input: input.to_owned(),
                    tag: tag.to_owned(),
                });
            }
        }
        let (registry, remainder) = split_registry(name);
        if !is_registry(registry) {
            return Err(ReferenceError::InvalidRegistry {
                input: input.to_owned(),
                registry: registry.to_owned(),
            });
        }
        let registry = if registry == LEGACY_DEFAULT_REGISTRY {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        if remainder.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                input: input.to_owned(),
            });
        }
        if let Some(bad) = remainder.split('/').find(|c| !is_path_component(c)) {
            return Err(ReferenceError::InvalidPathComponent {
                input: input.to_owned(),
                component: bad.to_owned(),
            });
        }
        let repository = if registry == DEFAULT_REGISTRY && !remainder.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{remainder}")
        } else {
            remainder.to_owned()
        };
        let len = registry.len() + 1 + repository.len();
        if len > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong {
                input: input.to_owned(),
                len,
            });
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(ImageRef {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry as written in the reference (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The `host[:port]` that serves the registry's API: `registry-1.docker.io` for `docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            DEFAULT_REGISTRY_API_HOST
        } else {
            &self.registry
        }
    }

    /// The repository inside the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `registry/repository`, without tag or digest (`docker.io/library/busybox`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag; `None` when only a digest was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The `<reference>` of `/v2/<name>/manifests/<reference>`: the digest if any, else the tag.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            // parse() always sets a tag when there is no digest.
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// The same reference pinned to `digest` (the tag, if any, is kept).
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

/// Splits `name[:tag]`: a `:` after the last `/` starts a tag; one before it belongs to a port.
fn split_tag(name_and_tag: &str) -> (&str, Option<&str>) {
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    match name_and_tag[last_slash..].rfind(':') {
        Some(i) => {
            let colon = last_slash + i;
            (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
        }
        None => (name_and_tag, None),
    }
}

/// Splits the registry off as docker's `splitDockerDomain` does: the first component is a
/// registry when it has a `.` or `:`, is `localhost`, or has upper-case letters (repositories
/// cannot); otherwise the reference is on the default registry.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

/// `host[:port]` where host is a domain name, an IPv4 address (a domain name by this grammar) or
/// a bracketed IPv6 address.
fn is_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok =
        (host.is_empty() && registry.starts_with('[')) || host.split('.').all(is_domain_component);
    port_ok && host_ok
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_domain_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`: runs of lowercase alphanumerics joined by exactly
/// one of `.`, `_`, `__` or any number of dashes.
fn is_path_component(component: &str) -> bool {
    let is_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut rest = component.as_bytes();
    loop {
        let run = rest.iter().take_while(|b| is_alnum(b)).count();
        if run == 0 {
            return false;
        }
        rest = &rest[run..];
        if rest.is_empty() {
            return true;
        }
        let sep = rest.iter().take_while(|b| !is_alnum(b)).count();
        let separator_ok =
            matches!(&rest[..sep], b"." | b"_" | b"__") || rest[..sep].iter().all(|b| *b == b'-');
        if !separator_ok {
            return false;
        }
        rest = &rest[sep..];
    }
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let bytes = tag.as_bytes();
    bytes.len() <= MAX_TAG_LEN
        && bytes.first().is_some_and(word)
        && bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-')
}

impl fmt::Display for ImageRef {
    /// The canonical form: `docker.io/library/busybox:latest`, plus `@digest` when pinned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ImageRef::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn canonical(input: &str) -> String {
        ImageRef::parse(input)
            .unwrap_or_else(|e| panic!("{input:?} refused: {e}"))
            .to_string()
    }

    #[test]
    fn the_usual_forms_normalise_as_docker_does() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("someone/app", "docker.io/someone/app:latest"),
            ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:dev", "localhost:5000/app:dev"),
            (
                "127.0.0.1:5000/ns/sub/app",
                "127.0.0.1:5000/ns/sub/app:latest",
            ),
            ("[::1]:5000/app", "[::1]:5000/app:latest"),
            ("[fe80::1]/app", "[fe80::1]/app:latest"),
            ("Registry.Example/app", "Registry.Example/app:latest"),
            ("my-registry/app", "docker.io/my-registry/app:latest"),
            ("a_b__c-d---e/x.y", "docker.io/a_b__c-d---e/x.y:latest"),
            ("app:Tag_1.2-rc", "docker.io/library/app:Tag_1.2-rc"),
            ("app:_under", "docker.io/library/app:_under"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical(input), want, "{input}");
        }
    }

    #[test]
    fn a_digest_reference_has_no_tag_and_is_fetched_by_digest() {
        let input = format!("host:5000/ns/name@sha256:{HEX}");
        let r = ImageRef::parse(&input).unwrap();
        assert_eq!(r.registry(), "host:5000");
        assert_eq!(r.api_host(), "host:5000");
        assert_eq!(r.repository(), "ns/name");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert_eq!(r.reference(), format!("sha256:{HEX}"));
        assert_eq!(r.to_string(), input);
    }

    #[test]
    fn a_tag_and_digest_reference_keeps_both_and_pulls_the_digest() {
        let r = ImageRef::parse(&format!("busybox:1.36@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), Some("1.36"));
        assert_eq!(r.reference(), format!("sha256:{HEX}"));
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox:1.36@sha256:{HEX}")
        );
    }

    #[test]
    fn docker_hub_is_reached_through_its_api_host() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.reference(), "latest");
    }

    #[test]
    fn with_digest_pins_the_reference_and_keeps_the_tag() {
        let digest = Digest::of(b"manifest");
        let r = ImageRef::parse("busybox:1.36")
            .unwrap()
            .with_digest(digest.clone());
        assert_eq!(r.digest(), Some(&digest));
        assert_eq!(r.tag(), Some("1.36"));
        assert_eq!(r.reference(), digest.to_string());
    }

    #[test]
    fn the_canonical_form_parses_back_to_the_same_reference() {
        for input in [
            "busybox",
            "localhost:5000/a/b:c",
            &format!("x.io/y@sha256:{HEX}"),
            &format!("x.io/y:t@sha256:{HEX}"),
        ] {
            let r = ImageRef::parse(input).unwrap();
            assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r);
            assert_eq!(r.to_string().parse::<ImageRef>().unwrap(), r);
        }
    }

    #[test]
    fn serde_uses_the_canonical_string_and_validates() {
        let r = ImageRef::parse("busybox").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/library/busybox:latest\"");
        assert_eq!(serde_json::from_str::<ImageRef>(&json).unwrap(), r);
        assert!(serde_json::from_str::<ImageRef>("\"Busybox\"").is_err());
    }

    #[test]
    fn invalid_references_are_refused_with_the_reason() {
        let long_tag = format!("app:{}", "t".repeat(129));
        let long_name = format!("{}/app", "a".repeat(260));
        let cases: [(&str, &str); 22] = [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("library/BusyBox", "lowercase"),
            ("host:5000/App", "lowercase"),
            ("busy box", "path component"),
            ("-busybox", "path component"),
            ("busybox-", "path component"),
            ("a..b", "path component"),
            ("a___b", "path component"),
            ("a/", "path component"),
            ("a//b", "path component"),
            ("host:5000/", "path component"),
            ("app:", "bad tag"),
            ("app:.x", "bad tag"),
            ("app:-x", "bad tag"),
            ("app:a+b", "bad tag"),
            (&long_tag, "bad tag"),
            ("app@sha256:abc", "bad digest"),
            ("app@md5:d41d8cd98f00b204e9800998ecf8427e", "bad digest"),
            ("host:port/app", "bad registry"),
            ("-host.io/app", "bad registry"),
            (HEX, "image id"),
        ];
        for (input, why) in cases {
            let err = ImageRef::parse(input).expect_err(input).to_string();
            assert!(
                err.contains(why) && err.contains(&format!("{input:?}")),
                "{input:?}: {err}"
            );
        }
        let err = ImageRef::parse(&long_name).unwrap_err().to_string();
        assert!(err.contains("over 255"), "{err}");
        for bad in ["[::1/app", "[zz]/app", "[::1]x/app", "app@a@b", "a:b:c"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_digest_error_keeps_its_cause_as_the_source() {
        let err = ImageRef::parse("app@sha256:zz").unwrap_err();
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("hex digits"), "{source}");
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let alphabet = b"aZ09:/@._-[]+ sha256:";
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let len = usize::try_from(next() % 80).unwrap();
            let input: String = (0..len)
                .map(|_| {
                    let i = usize::try_from(next()).unwrap() % alphabet.len();
                    char::from(alphabet[i])
                })
                .collect();
            if let Ok(r) = ImageRef::parse(&input) {
                assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r, "{input:?}");
            }
        }
        let good = format!("localhost:5000/a/b:c@sha256:{HEX}");
        for end in 0..=good.len() {
            let _ = ImageRef::parse(&good[..end]);
        }
        let _ = ImageRef::parse("é/ü:ß@ä");
    }
}
