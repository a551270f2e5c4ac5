//! The graph of an image: an index points at manifests (or nested indexes), a manifest at its
//! config and layers. Kept small and private so it can move onto the manifest module's parser.

use std::collections::HashSet;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::ImageTarget;
use crate::digest::{Digest, DigestError};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Why a node's children could not be listed.
#[derive(Debug)]
pub(crate) enum WalkError {
    BadManifest {
        digest: Digest,
        media_type: String,
        source: serde_json::Error,
    },
    UnsupportedDigest {
        parent: Digest,
        source: DigestError,
    },
}

/// Whether blobs of this media type point at other blobs.
pub(crate) fn has_children(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_INDEX | DOCKER_LIST | OCI_MANIFEST | DOCKER_MANIFEST
    )
}

/// The blobs that `node`, whose content is `bytes`, points at: an index's manifests, a
/// manifest's config then layers, nothing for other media types.
pub(crate) fn children(node: &ImageTarget, bytes: &[u8]) -> Result<Vec<ImageTarget>, WalkError> {
    let bad = |source| WalkError::BadManifest {
        digest: node.digest.clone(),
        media_type: node.media_type.clone(),
        source,
    };
    let descriptors: Vec<Descriptor> = match node.media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => serde_json::from_slice::<ImageIndex>(bytes)
            .map_err(bad)?
            .manifests()
            .clone(),
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let manifest = serde_json::from_slice::<ImageManifest>(bytes).map_err(bad)?;
            std::iter::once(manifest.config())
                .chain(manifest.layers())
                .cloned()
                .collect()
        }
        _ => Vec::new(),
    };
    descriptors
        .iter()
        .map(|d| {
            ImageTarget::from_descriptor(d).map_err(|source| WalkError::UnsupportedDigest {
                parent: node.digest.clone(),
                source,
            })
        })
        .collect()
}

/// Visits every node reachable from `roots` once, depth first in document order. `visit`
/// returns the node's content when its children should be followed.
pub(crate) fn walk<E: From<WalkError>>(
    roots: &[ImageTarget],
    mut visit: impl FnMut(&ImageTarget) -> Result<Option<Vec<u8>>, E>,
) -> Result<(), E> {
    let mut seen = HashSet::new();
    let mut pending: Vec<ImageTarget> = roots.iter().rev().cloned().collect();
    while let Some(node) = pending.pop() {
        if !seen.insert(node.digest.clone()) {
            continue;
        }
        if let Some(bytes) = visit(&node)? {
            pending.extend(children(&node, &bytes)?.into_iter().rev());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn target(media_type: &str, content: &[u8]) -> ImageTarget {
        ImageTarget {
            media_type: media_type.into(),
            digest: Digest::of(content),
            size: content.len() as u64,
        }
    }

    fn descriptor(t: &ImageTarget) -> serde_json::Value {
        json!({"mediaType": t.media_type, "digest": t.digest, "size": t.size})
    }

    #[test]
    fn a_manifest_points_at_its_config_then_its_layers() {
        let config = target("application/vnd.oci.image.config.v1+json", b"{}");
        let layer = target("application/vnd.oci.image.layer.v1.tar", b"layer");
        let bytes = json!({"schemaVersion": 2, "config": descriptor(&config),
            "layers": [descriptor(&layer)]})
        .to_string();
        for media_type in [OCI_MANIFEST, DOCKER_MANIFEST] {
            let node = target(media_type, bytes.as_bytes());
            assert_eq!(
                children(&node, bytes.as_bytes()).unwrap(),
                vec![config.clone(), layer.clone()]
            );
        }
    }

    #[test]
    fn an_index_points_at_its_manifests_and_a_layer_at_nothing() {
        let manifest = target(OCI_MANIFEST, b"m");
        let bytes = json!({"schemaVersion": 2, "manifests": [descriptor(&manifest)]}).to_string();
        for media_type in [OCI_INDEX, DOCKER_LIST] {
            let node = target(media_type, bytes.as_bytes());
            assert_eq!(
                children(&node, bytes.as_bytes()).unwrap(),
                vec![manifest.clone()]
            );
        }
        let layer = target("application/vnd.oci.image.layer.v1.tar", b"x");
        assert!(children(&layer, b"x").unwrap().is_empty());
        assert!(!has_children(&layer.media_type));
    }

    #[test]
    fn a_manifest_that_is_not_its_media_type_is_an_error() {
        let node = target(OCI_MANIFEST, b"{}");
        assert!(matches!(
            children(&node, b"{\"manifests\": []}"),
            Err(WalkError::BadManifest { .. })
        ));
    }

    #[test]
    fn walk_visits_shared_blobs_once() {
        let layer = target("application/vnd.oci.image.layer.v1.tar", b"shared");
        let config = target("application/vnd.oci.image.config.v1+json", b"{}");
        let manifest = json!({"schemaVersion": 2, "config": descriptor(&config),
            "layers": [descriptor(&layer), descriptor(&layer)]})
        .to_string();
        let root = target(OCI_MANIFEST, manifest.as_bytes());
        let mut visited = Vec::new();
        walk::<WalkError>(&[root.clone(), root.clone()], |node| {
            visited.push(node.digest.clone());
            Ok(has_children(&node.media_type).then(|| manifest.clone().into_bytes()))
        })
        .unwrap();
        assert_eq!(visited, vec![root.digest, config.digest, layer.digest]);
    }
}
