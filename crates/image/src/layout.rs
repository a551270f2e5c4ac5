//! Import and export of OCI image layouts (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), as a
//! directory or a tar file, so images move between stores and tools without a registry.
//! See <https://github.com/opencontainers/image-spec/blob/main/image-layout.md>.
//!
//! Design decisions:
//! - An import checks everything before anything becomes visible: every blob reachable from
//!   `index.json` is copied into a private staged file of the store while its size and digest are
//!   checked, and only when the whole layout is complete and correct are the blobs published and
//!   the images recorded. A bad layout leaves the store as it was. A lease holds off `prune`
//!   between the blobs appearing and the records naming them.
//! - A tar is read in one pass (its entries may come in any order), staging every blob entry;
//!   those that no image reaches are dropped at the end.
//! - Names: `io.containerd.image.name` (a full name, as containerd writes it) wins; then
//!   `org.opencontainers.image.ref.name`, taken as a full name when it has a `/`, `:` or `@`, and
//!   otherwise as a tag of the caller's `default_name` (`latest` -> `<default_name>:latest`); an
//!   entry with neither takes `default_name` itself. An entry that cannot be named is refused.
//! - An export writes both annotations (`ref.name` the tag, as containerd and skopeo expect it),
//!   into a temp sibling of the destination renamed into place at the end.

mod export;
mod source;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageIndex, OciLayout, ANNOTATION_REF_NAME};

pub use export::{export_layout, export_layout_records};
use source::LayoutSource;

use crate::digest::{Digest, DigestError};
use crate::store::walk::{self, WalkError};
use crate::store::{ContentStore, ImageRecord, ImageTarget, StoreError, MAX_MANIFEST_BYTES};

/// The annotation in which containerd keeps an image's full name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

const OCI_LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LAYOUT_VERSION: &str = "1.0.0";

/// Why an import or export of an image layout failed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A file system operation on the layout failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The source has no `oci-layout` file.
    #[error("{path} is not an OCI image layout: it has no oci-layout file")]
    NotALayout {
        /// The layout.
        path: PathBuf,
    },
    /// The `oci-layout` file is not valid JSON of its kind.
    #[error("{path} has an invalid oci-layout file")]
    BadLayoutFile {
        /// The layout.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The layout is of a version this crate does not read.
    #[error("{path} has unsupported image layout version {version:?}")]
    UnsupportedVersion {
        /// The layout.
        path: PathBuf,
        /// The version it declares.
        version: String,
    },
    /// The layout has no `index.json`.
    #[error("{path} has no index.json")]
    MissingIndex {
        /// The layout.
        path: PathBuf,
    },
    /// `index.json` is not a valid image index.
    #[error("{path} has an invalid index.json")]
    BadIndex {
        /// The layout.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A layout file or manifest is larger than what is read into memory.
    #[error("{file} in {path} is larger than {limit} bytes")]
    TooLarge {
        /// The layout.
        path: PathBuf,
        /// The file (`index.json`, a blob's digest).
        file: String,
        /// The limit.
        limit: usize,
    },
    /// A blob that the index reaches is not in the layout.
    #[error("blob {digest} is missing from {path}")]
    MissingBlob {
        /// The layout.
        path: PathBuf,
        /// The blob.
        digest: Digest,
    },
    /// A blob of the layout is not what its digest or descriptor says.
    #[error("blob {digest} in {path} is invalid")]
    BadBlob {
        /// The layout.
        path: PathBuf,
        /// The blob.
        digest: Digest,
        /// What is wrong with it (digest or size mismatch) or why it could not be copied.
        #[source]
        source: Box<StoreError>,
    },
    /// A blob entry of the layout is not a regular file (a link, a device).
    #[error("{entry} in {path} is not a regular file")]
    NotAFile {
        /// The layout.
        path: PathBuf,
        /// The entry.
        entry: String,
    },
    /// A manifest or index cannot be parsed as its media type says.
    #[error("manifest {digest} ({media_type}) cannot be parsed")]
    BadManifest {
        /// The manifest's digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A descriptor's digest cannot be verified (an unsupported algorithm, a malformed digest).
    #[error("a descriptor in {parent} has an unsupported digest")]
    UnsupportedDigest {
        /// `index.json`, or the digest of the manifest holding the descriptor.
        parent: String,
        /// Why the digest was refused.
        #[source]
        source: DigestError,
    },
    /// An entry of `index.json` has no name and no default name was given.
    #[error("image {digest} in {path} has no name: give a default name")]
    Unnamed {
        /// The layout.
        path: PathBuf,
        /// The entry's manifest or index.
        digest: Digest,
    },
    /// Two entries of `index.json` have the same name.
    #[error("{path} has two images named {name:?}")]
    DuplicateName {
        /// The layout.
        path: PathBuf,
        /// The name.
        name: String,
    },
    /// The export destination exists already.
    #[error("{path} exists already")]
    DestinationExists {
        /// The destination.
        path: PathBuf,
    },
    /// The content store failed (an image not found, a blob not found, a write failed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<WalkError> for LayoutError {
    fn from(error: WalkError) -> Self {
        match error {
            WalkError::BadManifest {
                digest,
                media_type,
                source,
            } => LayoutError::BadManifest {
                digest,
                media_type,
                source,
            },
            WalkError::UnsupportedDigest { parent, source } => LayoutError::UnsupportedDigest {
                parent: parent.to_string(),
                source,
            },
        }
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayoutError {
    let path = path.to_owned();
    move |source| LayoutError::Io {
        action,
        path,
        source,
    }
}

/// Imports every image of the layout at `source` (a directory or a tar file) into `store`, and
/// returns the records made. Every blob is verified while it is copied; on any error the store
/// is left as it was. `default_name` names entries that carry only a tag, or nothing (see the
/// module docs).
pub fn import_layout(
    store: &ContentStore,
    source: &Path,
    default_name: Option<&str>,
) -> Result<Vec<ImageRecord>, LayoutError> {
    let _lease = store.lease()?;
    let records = import_layout_content(store, source, default_name)?;
    for record in &records {
        store.put_image(record)?;
    }
    Ok(records)
}

/// [`import_layout`] without writing the records into the store: for callers that keep
/// image references elsewhere. Hold a [`ContentStore::lease`] from before the call until the
/// records are kept, so that a prune cannot take the blobs in between.
pub fn import_layout_content(
    store: &ContentStore,
    source: &Path,
    default_name: Option<&str>,
) -> Result<Vec<ImageRecord>, LayoutError> {
    let _lease = store.lease()?;
    let mut layout = LayoutSource::open(store, source)?;
    check_layout_version(source, &layout.oci_layout)?;
    let index: ImageIndex =
        serde_json::from_slice(&layout.index).map_err(|source_error| LayoutError::BadIndex {
            path: source.to_owned(),
            source: source_error,
        })?;
    let entries = name_entries(source, &index, default_name)?;
    let roots: Vec<ImageTarget> = entries.iter().map(|(_, target)| target.clone()).collect();

    let mut staged = Vec::new();
    walk::walk::<LayoutError>(&roots, |node| {
        let follow = walk::has_children(&node.media_type);
        if follow && usize::try_from(node.size).map_or(true, |size| size > MAX_MANIFEST_BYTES) {
            return Err(LayoutError::TooLarge {
                path: source.to_owned(),
                file: node.digest.to_string(),
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let blob = layout.take_blob(store, node)?;
        let content = if follow {
            Some(blob.read(MAX_MANIFEST_BYTES)?)
        } else {
            None
        };
        staged.push(blob);
        Ok(content)
    })?;

    for blob in staged {
        blob.publish(store)?;
    }
    Ok(entries
        .into_iter()
        .map(|(name, target)| ImageRecord::new(name, target))
        .collect())
}

fn check_layout_version(path: &Path, oci_layout: &[u8]) -> Result<(), LayoutError> {
    let layout: OciLayout =
        serde_json::from_slice(oci_layout).map_err(|source| LayoutError::BadLayoutFile {
            path: path.to_owned(),
            source,
        })?;
    let version = layout.image_layout_version();
    if version.split('.').next() == Some("1") {
        Ok(())
    } else {
        Err(LayoutError::UnsupportedVersion {
            path: path.to_owned(),
            version: version.clone(),
        })
    }
}

/// The name and target of every entry of the index, in its order.
fn name_entries(
    path: &Path,
    index: &ImageIndex,
    default_name: Option<&str>,
) -> Result<Vec<(String, ImageTarget)>, LayoutError> {
    let mut names = HashSet::new();
    let mut entries = Vec::new();
    for descriptor in index.manifests() {
        let target = ImageTarget::from_descriptor(descriptor).map_err(|source| {
            LayoutError::UnsupportedDigest {
                parent: INDEX_FILE.to_owned(),
                source,
            }
        })?;
        let name =
            entry_name(descriptor.annotations().as_ref(), default_name).ok_or_else(|| {
                LayoutError::Unnamed {
                    path: path.to_owned(),
                    digest: target.digest.clone(),
                }
            })?;
        if !names.insert(name.clone()) {
            return Err(LayoutError::DuplicateName {
                path: path.to_owned(),
                name,
            });
        }
        entries.push((name, target));
    }
    Ok(entries)
}

/// The name of an index entry from its annotations (see the module docs for the rules).
fn entry_name(
    annotations: Option<&HashMap<String, String>>,
    default_name: Option<&str>,
) -> Option<String> {
    let annotation = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .filter(|value| !value.is_empty())
    };
    if let Some(name) = annotation(ANNOTATION_CONTAINERD_NAME) {
        return Some(name.clone());
    }
    match annotation(ANNOTATION_REF_NAME) {
        Some(reference) if reference.contains(['/', ':', '@']) => Some(reference.clone()),
        Some(tag) => default_name.map(|name| format!("{name}:{tag}")),
        None => default_name.map(str::to_owned),
    }
}

/// The tag of an image name (`example.com:5000/app:1.0` -> `1.0`), if it has one and no digest.
fn tag_of(name: &str) -> Option<&str> {
    if name.contains('@') {
        return None;
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':').map(|(_, tag)| tag)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_containerd_name_wins_over_the_ref_name() {
        let a = annotations(&[
            (ANNOTATION_CONTAINERD_NAME, "docker.io/library/busybox:1.36"),
            (ANNOTATION_REF_NAME, "1.36"),
        ]);
        assert_eq!(
            entry_name(Some(&a), Some("other")).as_deref(),
            Some("docker.io/library/busybox:1.36")
        );
    }

    #[test]
    fn a_bare_tag_needs_the_default_name() {
        let a = annotations(&[(ANNOTATION_REF_NAME, "latest")]);
        assert_eq!(
            entry_name(Some(&a), Some("example.com/app")).as_deref(),
            Some("example.com/app:latest")
        );
        assert_eq!(entry_name(Some(&a), None), None);
    }

    #[test]
    fn a_full_ref_name_is_taken_as_it_is() {
        for full in ["example.com/app:1", "busybox:latest", "app@sha256:00"] {
            let a = annotations(&[(ANNOTATION_REF_NAME, full)]);
            assert_eq!(entry_name(Some(&a), Some("d")).as_deref(), Some(full));
        }
    }

    #[test]
    fn an_entry_without_names_takes_the_default_name_or_none() {
        assert_eq!(entry_name(None, Some("app")).as_deref(), Some("app"));
        assert_eq!(entry_name(Some(&HashMap::new()), None), None);
        let empty = annotations(&[(ANNOTATION_CONTAINERD_NAME, "")]);
        assert_eq!(entry_name(Some(&empty), None), None);
    }

    #[test]
    fn the_tag_is_after_the_last_slash_and_absent_with_a_digest() {
        assert_eq!(tag_of("example.com:5000/app:1.0"), Some("1.0"));
        assert_eq!(tag_of("example.com:5000/app"), None);
        assert_eq!(tag_of("busybox:latest"), Some("latest"));
        assert_eq!(tag_of("app:1@sha256:00"), None);
    }

    #[test]
    fn layout_versions_other_than_1_are_refused() {
        let path = Path::new("l");
        assert!(check_layout_version(path, br#"{"imageLayoutVersion":"1.0.0"}"#).is_ok());
        let err = check_layout_version(path, br#"{"imageLayoutVersion":"2.0.0"}"#).unwrap_err();
        assert!(
            err.to_string().contains("unsupported image layout version"),
            "{err}"
        );
        assert!(matches!(
            check_layout_version(path, b"{}"),
            Err(LayoutError::BadLayoutFile { .. })
        ));
    }

    #[test]
    fn two_entries_with_one_name_are_refused() {
        let index: ImageIndex = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                 "digest": Digest::of(b"a"), "size": 1,
                 "annotations": {ANNOTATION_REF_NAME: "v1"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                 "digest": Digest::of(b"b"), "size": 1,
                 "annotations": {ANNOTATION_REF_NAME: "v1"}},
            ]
        }))
        .unwrap();
        let err = name_entries(Path::new("l"), &index, Some("app")).unwrap_err();
        assert!(
            matches!(err, LayoutError::DuplicateName { ref name, .. } if name == "app:v1"),
            "{err}"
        );
    }
}
