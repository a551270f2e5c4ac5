//! Manifests, indexes and image configs: parsed from untrusted bytes with a size limit, the
//! media type checked against the content, and the platform chosen from an index.
//!
//! Docker's schema 2 manifest and manifest list are the same JSON as the OCI image manifest and
//! index (only the media type strings differ), so both parse into the `oci_spec` types; Docker's
//! media types then appear as `MediaType::Other(..)`. Schema 1 is refused: it is deprecated,
//! signed with a scheme nothing verifies any more, and the reference registry no longer serves it.
//!
//! A document whose declared media type, own `mediaType` field and shape (`manifests` vs
//! `layers`) disagree is refused, as containerd does: an ambiguous document could be read as an
//! index by one tool and as an image by another.

use std::fmt;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::de::IgnoredAny;

use crate::compression::LayerCompression;
use crate::digest::{Digest, DigestError};

mod platform;

pub use platform::{select_platform, Platform};

/// The largest manifest, index or image config accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Media type of an OCI image manifest.
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a Docker schema 2 image manifest.
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker schema 2 manifest list.
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// The `Accept` header of a manifest request: every kind [`parse_manifest`] understands.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

const DOCKER_SCHEMA1_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// A parsed manifest document: one image, or an index of images.
// Unboxed as agreed in the crate's API: a manifest is parsed a few times per pull, its size is
// irrelevant next to the layers it names.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An OCI image manifest or Docker schema 2 manifest.
    Image(ImageManifest),
    /// An OCI image index or Docker manifest list.
    Index(ImageIndex),
}

/// Why a manifest, index, config, platform or media type was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The document is larger than [`MAX_MANIFEST_BYTES`].
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was being parsed ("manifest", "image config").
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A Docker schema 1 manifest.
    #[error(
        "docker schema 1 manifests are not supported; push the image again with a current client"
    )]
    SchemaOne,
    /// A manifest media type this crate does not handle.
    #[error("unsupported manifest media type {media_type:?}")]
    UnknownMediaType {
        /// The media type.
        media_type: String,
    },
    /// The declared media type, the document's `mediaType` and its shape disagree.
    #[error("manifest declared as {declared} but its {evidence} says {found}")]
    MediaTypeMismatch {
        /// The kind claimed first (by the caller's media type, else by the `mediaType` field).
        declared: ManifestKind,
        /// What contradicts it: "mediaType field" or "content".
        evidence: &'static str,
        /// The kind that evidence indicates.
        found: ManifestKind,
    },
    /// Neither a media type nor the content tells what the document is.
    #[error("cannot tell whether the document is an image manifest or an index: no media type, no \"layers\" and no \"manifests\"")]
    UnknownKind,
    /// A document with both `layers` and `manifests`.
    #[error("the document has both \"layers\" and \"manifests\"")]
    Ambiguous,
    /// `schemaVersion` is not 2.
    #[error("unsupported schema version {version} in the {kind}")]
    SchemaVersion {
        /// What was parsed.
        kind: ManifestKind,
        /// The version found.
        version: u64,
    },
    /// The bytes are not the expected JSON.
    #[error("invalid {what} json")]
    Json {
        /// What was being parsed.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A descriptor's digest is not a verifiable digest.
    #[error("invalid digest {digest:?} in a descriptor")]
    InvalidDigest {
        /// The digest as written.
        digest: String,
        /// Why it was refused.
        #[source]
        source: DigestError,
    },
    /// An image config's `rootfs.diff_ids` holds a bad digest.
    #[error("invalid diff id {diff_id:?} in the image config")]
    InvalidDiffId {
        /// The diff id as written.
        diff_id: String,
        /// Why it was refused.
        #[source]
        source: DigestError,
    },
    /// An image config whose `rootfs.type` is not `layers`.
    #[error("image config rootfs type is {found:?}, expected \"layers\"")]
    RootfsType {
        /// The type found.
        found: String,
    },
    /// A platform string that is not `os/architecture[/variant]`.
    #[error("invalid platform {input:?}: expected os/architecture[/variant]")]
    InvalidPlatform {
        /// The string as given.
        input: String,
    },
    /// No manifest in the index runs on the wanted platform.
    #[error("no manifest for {want} in the index; available: {}", list_or_none(.available))]
    NoMatchingPlatform {
        /// The platform asked for.
        want: Platform,
        /// The platforms the index offers, in index order.
        available: Vec<String>,
    },
    /// The manifest picked from an index is an index again.
    #[error("manifest {digest} picked from the index is itself an index")]
    NestedIndex {
        /// Its digest.
        digest: Digest,
    },
    /// A layer media type this crate cannot unpack.
    #[error("unsupported layer media type {media_type:?}")]
    UnknownLayerMediaType {
        /// The media type.
        media_type: String,
    },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// Whether a document is an image manifest or an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker schema 2).
    Image,
    /// An index (OCI image index or Docker manifest list).
    Index,
}

impl fmt::Display for ManifestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ManifestKind::Image => "image manifest",
            ManifestKind::Index => "index",
        })
    }
}

impl ManifestKind {
    /// The kind a manifest media type names; `None` for a type this crate does not handle.
    pub fn of_media_type(media_type: &str) -> Option<ManifestKind> {
        match media_type {
            MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST => Some(ManifestKind::Image),
            MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
            _ => None,
        }
    }
}

/// Just enough of a manifest to tell what it is before parsing it for real.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u64>,
    media_type: Option<String>,
    manifests: Option<IgnoredAny>,
    layers: Option<IgnoredAny>,
    config: Option<IgnoredAny>,
}

/// `type/subtype` without parameters (`; charset=utf-8`), lowercased.
fn essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Parses a manifest or index.
///
/// `media_type` is the registry's `Content-Type` or the descriptor's media type; `None` (or a
/// generic `application/json`) means the kind is taken from the document itself.
pub fn parse_manifest(media_type: Option<&str>, bytes: &[u8]) -> Result<Manifest, ManifestError> {
    check_size("manifest", bytes)?;
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        what: "manifest",
        source,
    })?;
    let declared = media_type.map(essence).filter(|m| m != "application/json");
    let field = probe.media_type.as_deref().map(essence);
    let is_schema_one = |m: &Option<String>| {
        m.as_deref()
            .is_some_and(|m| DOCKER_SCHEMA1_MEDIA_TYPES.contains(&m))
    };
    if probe.schema_version == Some(1) || is_schema_one(&declared) || is_schema_one(&field) {
        return Err(ManifestError::SchemaOne);
    }
    let kind_of = |m: Option<String>| -> Result<Option<ManifestKind>, ManifestError> {
        m.map(|m| {
            ManifestKind::of_media_type(&m).ok_or(ManifestError::UnknownMediaType { media_type: m })
        })
        .transpose()
    };
    let declared = kind_of(declared)?;
    let field = kind_of(field)?;
    let shape = match (
        probe.manifests.is_some(),
        probe.layers.is_some() || probe.config.is_some(),
    ) {
        (true, true) => return Err(ManifestError::Ambiguous),
        (true, false) => Some(ManifestKind::Index),
        (false, true) => Some(ManifestKind::Image),
        (false, false) => None,
    };
    let kind = agree(declared, field, shape)?;
    let manifest = match kind {
        ManifestKind::Image => {
            let image: ImageManifest = parse_json("image manifest", bytes)?;
            check_schema_version(kind, image.schema_version())?;
            descriptor_digest(image.config())?;
            for layer in image.layers() {
                descriptor_digest(layer)?;
            }
            Manifest::Image(image)
        }
        ManifestKind::Index => {
            let index: ImageIndex = parse_json("index", bytes)?;
            check_schema_version(kind, index.schema_version())?;
            for entry in index.manifests() {
                descriptor_digest(entry)?;
            }
            Manifest::Index(index)
        }
    };
    Ok(manifest)
}

/// The one kind that the declared media type, the `mediaType` field and the shape all allow.
fn agree(
    declared: Option<ManifestKind>,
    field: Option<ManifestKind>,
    shape: Option<ManifestKind>,
) -> Result<ManifestKind, ManifestError> {
    let first = declared.or(field).ok_or(ManifestError::UnknownKind);
    let first = match (first, shape) {
        (Ok(kind), _) => kind,
        (Err(_), Some(shape)) => return Ok(shape),
        (Err(e), None) => return Err(e),
    };
    if let Some(found) = field.filter(|f| *f != first) {
        return Err(ManifestError::MediaTypeMismatch {
            declared: first,
            evidence: "mediaType field",
            found,
        });
    }
    if let Some(found) = shape.filter(|s| *s != first) {
        return Err(ManifestError::MediaTypeMismatch {
            declared: first,
            evidence: "content",
            found,
        });
    }
    Ok(first)
}

fn check_size(what: &'static str, bytes: &[u8]) -> Result<(), ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            what,
            size: bytes.len(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    Ok(())
}

fn check_schema_version(kind: ManifestKind, version: u32) -> Result<(), ManifestError> {
    if version == 2 {
        Ok(())
    } else {
        Err(ManifestError::SchemaVersion {
            kind,
            version: u64::from(version),
        })
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, ManifestError> {
    serde_json::from_slice(bytes).map_err(|source| ManifestError::Json { what, source })
}

/// Parses an image config (OCI `application/vnd.oci.image.config.v1+json` or Docker's
/// `application/vnd.docker.container.image.v1+json`, the same JSON), checking its `rootfs`.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfiguration, ManifestError> {
    check_size("image config", bytes)?;
    let config: ImageConfiguration = parse_json("image config", bytes)?;
    if config.rootfs().typ() != "layers" {
        return Err(ManifestError::RootfsType {
            found: config.rootfs().typ().clone(),
        });
    }
    diff_ids(&config)?;
    Ok(config)
}

/// The config's `rootfs.diff_ids`, validated: the digests of the uncompressed layers, base first.
pub fn diff_ids(config: &ImageConfiguration) -> Result<Vec<Digest>, ManifestError> {
    config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|id| {
            Digest::parse(id).map_err(|source| ManifestError::InvalidDiffId {
                diff_id: id.clone(),
                source,
            })
        })
        .collect()
}

/// A descriptor's digest, validated as one this crate can verify.
pub fn descriptor_digest(descriptor: &Descriptor) -> Result<Digest, ManifestError> {
    Digest::try_from(descriptor.digest()).map_err(|source| ManifestError::InvalidDigest {
        digest: descriptor.digest().to_string(),
        source,
    })
}

/// The compression of a layer blob of `media_type`: the OCI layer types (including the
/// non-distributable ones) and Docker's. Anything else, encrypted layers included, is refused.
pub fn layer_compression(media_type: &str) -> Result<LayerCompression, ManifestError> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar" => Ok(LayerCompression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(LayerCompression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Ok(LayerCompression::Zstd),
        other => Err(ManifestError::UnknownLayerMediaType {
            media_type: other.to_owned(),
        }),
    }
}

/// The OCI ChainIDs of a layer stack: `chain[0] = diff[0]`, then
/// `chain[n] = sha256(chain[n-1] + " " + diff[n])`. A ChainID names a stack of layers applied
/// in order, so it keys a snapshot shared by every image built on the same layers.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(super) fn digest_of(tag: &str) -> String {
        Digest::of(tag.as_bytes()).to_string()
    }

    fn image_json(media_type: Option<&str>, config_type: &str, layer_type: &str) -> String {
        let media_type = media_type
            .map(|m| format!("\"mediaType\": \"{m}\","))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion": 2, {media_type}
                "config": {{"mediaType": "{config_type}", "size": 7, "digest": "{}"}},
                "layers": [{{"mediaType": "{layer_type}", "size": 9, "digest": "{}"}}]}}"#,
            digest_of("config"),
            digest_of("layer"),
        )
    }

    pub(super) fn index_json(media_type: Option<&str>, platforms: &[&str]) -> String {
        let media_type = media_type
            .map(|m| format!("\"mediaType\": \"{m}\","))
            .unwrap_or_default();
        let entries: Vec<String> = platforms
            .iter()
            .map(|p| {
                let mut parts = p.split('/');
                let os = parts.next().unwrap();
                let arch = parts.next().unwrap();
                let variant = parts
                    .next()
                    .map(|v| format!(", \"variant\": \"{v}\""))
                    .unwrap_or_default();
                format!(
                    r#"{{"mediaType": "{MEDIA_TYPE_OCI_MANIFEST}", "size": 1, "digest": "{}",
                        "platform": {{"os": "{os}", "architecture": "{arch}"{variant}}}}}"#,
                    digest_of(p)
                )
            })
            .collect();
        format!(
            r#"{{"schemaVersion": 2, {media_type} "manifests": [{}]}}"#,
            entries.join(",")
        )
    }

    #[test]
    fn an_oci_manifest_parses_with_or_without_a_declared_type() {
        let json = image_json(
            Some(MEDIA_TYPE_OCI_MANIFEST),
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        );
        for declared in [
            None,
            Some(MEDIA_TYPE_OCI_MANIFEST),
            Some("application/json"),
        ] {
            let Manifest::Image(m) = parse_manifest(declared, json.as_bytes()).unwrap() else {
                panic!("not an image");
            };
            assert_eq!(m.layers().len(), 1);
            assert_eq!(
                descriptor_digest(m.config()).unwrap().to_string(),
                digest_of("config")
            );
        }
    }

    #[test]
    fn a_docker_schema2_manifest_parses_into_the_oci_types() {
        let json = image_json(
            Some(MEDIA_TYPE_DOCKER_MANIFEST),
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        );
        let declared = format!("{MEDIA_TYPE_DOCKER_MANIFEST}; charset=utf-8");
        let Manifest::Image(m) = parse_manifest(Some(&declared), json.as_bytes()).unwrap() else {
            panic!("not an image");
        };
        let layer_type = m.layers()[0].media_type().to_string();
        assert_eq!(
            layer_compression(&layer_type).unwrap(),
            LayerCompression::Gzip
        );
        assert_eq!(
            m.config().media_type(),
            &oci_spec::image::MediaType::Other(
                "application/vnd.docker.container.image.v1+json".to_owned()
            )
        );
    }

    #[test]
    fn a_docker_manifest_list_parses_as_an_index() {
        let json = index_json(
            Some(MEDIA_TYPE_DOCKER_MANIFEST_LIST),
            &["linux/amd64", "linux/arm/v7"],
        );
        let parsed = parse_manifest(Some(MEDIA_TYPE_DOCKER_MANIFEST_LIST), json.as_bytes());
        let Manifest::Index(index) = parsed.unwrap() else {
            panic!("not an index");
        };
        assert_eq!(index.manifests().len(), 2);
    }

    #[test]
    fn schema1_is_refused_by_name() {
        let json = r#"{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}"#;
        for declared in [
            None,
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
        ] {
            let err = parse_manifest(declared, json.as_bytes()).unwrap_err();
            assert!(matches!(err, ManifestError::SchemaOne), "{err}");
            assert!(err.to_string().contains("schema 1"), "{err}");
        }
    }

    #[test]
    fn an_oversized_manifest_is_refused_before_parsing() {
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        let err = parse_manifest(None, &big).unwrap_err();
        assert!(matches!(err, ManifestError::TooLarge { .. }), "{err}");
        assert!(matches!(
            parse_config(&big).unwrap_err(),
            ManifestError::TooLarge { .. }
        ));
    }

    #[test]
    fn unknown_and_contradicting_media_types_are_refused() {
        let image = image_json(None, "a/b", "application/vnd.oci.image.layer.v1.tar");
        let err = parse_manifest(
            Some("application/vnd.oci.artifact.manifest.v1+json"),
            image.as_bytes(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unsupported manifest media type"),
            "{err}"
        );
        let err = parse_manifest(Some(MEDIA_TYPE_OCI_INDEX), image.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "manifest declared as index but its content says image manifest"
        );
        let labelled_index = image_json(Some(MEDIA_TYPE_OCI_INDEX), "a/b", "c/d");
        let err =
            parse_manifest(Some(MEDIA_TYPE_OCI_MANIFEST), labelled_index.as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("mediaType field says index"),
            "{err}"
        );
        let both = r#"{"schemaVersion": 2, "manifests": [], "layers": []}"#;
        assert!(matches!(
            parse_manifest(None, both.as_bytes()).unwrap_err(),
            ManifestError::Ambiguous
        ));
        let neither = r#"{"schemaVersion": 2}"#;
        assert!(matches!(
            parse_manifest(None, neither.as_bytes()).unwrap_err(),
            ManifestError::UnknownKind
        ));
    }

    #[test]
    fn bad_json_versions_and_digests_are_refused_by_name() {
        let err = parse_manifest(None, b"{not json").unwrap_err();
        assert_eq!(err.to_string(), "invalid manifest json");
        let v3 = index_json(None, &[]).replace("\"schemaVersion\": 2", "\"schemaVersion\": 3");
        let err = parse_manifest(None, v3.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "unsupported schema version 3 in the index");
        let md5 = image_json(None, "a/b", "c/d")
            .replace(&digest_of("layer"), "md5:d41d8cd98f00b204e9800998ecf8427e");
        let err = parse_manifest(None, md5.as_bytes()).unwrap_err();
        assert!(matches!(err, ManifestError::InvalidDigest { .. }), "{err}");
        let missing_layers = r#"{"schemaVersion": 2, "config": {}}"#;
        let err = parse_manifest(None, missing_layers.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "invalid image manifest json");
    }

    const CONFIG: &str = r#"{"architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": [DIFF]}}"#;

    #[test]
    fn an_image_config_parses_and_its_diff_ids_are_validated() {
        let good = CONFIG.replace("DIFF", &format!("\"{}\"", digest_of("layer")));
        let config = parse_config(good.as_bytes()).unwrap();
        assert_eq!(diff_ids(&config).unwrap(), vec![Digest::of(b"layer")]);
        let exposed = config.config().as_ref().unwrap().exposed_ports().clone();
        assert_eq!(exposed, Some(vec!["80/tcp".to_owned()]));
        let bad = CONFIG.replace("DIFF", "\"sha256:nope\"");
        let err = parse_config(bad.as_bytes()).unwrap_err();
        assert!(matches!(err, ManifestError::InvalidDiffId { .. }), "{err}");
        let wrong_type = good.replace("\"layers\"", "\"tarballs\"");
        let err = parse_config(wrong_type.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("\"tarballs\""), "{err}");
    }

    #[test]
    fn layer_media_types_map_to_their_compression() {
        let cases = [
            (
                "application/vnd.oci.image.layer.v1.tar",
                LayerCompression::None,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                LayerCompression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                LayerCompression::Zstd,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                LayerCompression::None,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                LayerCompression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                LayerCompression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar",
                LayerCompression::None,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                LayerCompression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.zstd",
                LayerCompression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                LayerCompression::Gzip,
            ),
        ];
        for (media_type, want) in cases {
            assert_eq!(layer_compression(media_type).unwrap(), want, "{media_type}");
        }
        let err =
            layer_compression("application/vnd.oci.image.layer.v1.tar+gzip+encrypted").unwrap_err();
        assert!(err.to_string().contains("+encrypted"), "{err}");
    }

    #[test]
    fn chain_ids_match_the_hand_computed_values() {
        let diffs = [Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c")];
        let chain = chain_ids(&diffs);
        // sha256("sha256:<sha256 of a> sha256:<sha256 of b>"), then that with c, by sha256sum.
        assert_eq!(chain[0], diffs[0]);
        assert_eq!(
            chain[1].hex(),
            "51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676"
        );
        assert_eq!(
            chain[2].hex(),
            "2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106"
        );
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn arbitrary_and_truncated_bytes_never_panic_the_parsers() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let samples = [
            image_json(Some(MEDIA_TYPE_OCI_MANIFEST), "a/b", "c/d"),
            index_json(Some(MEDIA_TYPE_OCI_INDEX), &["linux/amd64", "linux/arm/v7"]),
            CONFIG.replace("DIFF", &format!("\"{}\"", digest_of("x"))),
        ];
        let declared = [
            None,
            Some(MEDIA_TYPE_OCI_MANIFEST),
            Some(MEDIA_TYPE_OCI_INDEX),
        ];
        for sample in &samples {
            let bytes = sample.as_bytes();
            for end in 0..bytes.len() {
                for d in declared {
                    let _ = parse_manifest(d, &bytes[..end]);
                }
                let _ = parse_config(&bytes[..end]);
            }
            for _ in 0..200 {
                let mut mutated = bytes.to_vec();
                for _ in 0..1 + next() % 4 {
                    let at = usize::try_from(next()).unwrap() % mutated.len();
                    mutated[at] = u8::try_from(next() & 0xff).unwrap();
                }
                let _ = parse_manifest(None, &mutated);
                let _ = parse_config(&mutated);
            }
        }
        for _ in 0..300 {
            let len = usize::try_from(next() % 300).unwrap();
            let noise: Vec<u8> = (0..len)
                .map(|_| u8::try_from(next() & 0xff).unwrap())
                .collect();
            let _ = parse_manifest(None, &noise);
            let _ = parse_config(&noise);
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_manifest(None, deep.as_bytes()).is_err());
        assert!(parse_config(deep.as_bytes()).is_err());
    }
}
