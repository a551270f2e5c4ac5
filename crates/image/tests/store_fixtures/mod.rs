//! Small images built in memory for the store and layout tests: real tar layers, a config, a
//! manifest, and indexes over manifests; plus a listing of a directory tree to compare a store
//! before and after a failed operation.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use testudo_image::digest::Digest;
use testudo_image::store::{ContentStore, ImageTarget};

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A blob with its descriptor.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub(crate) target: ImageTarget,
    pub(crate) bytes: Vec<u8>,
}

impl Blob {
    pub(crate) fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            target: ImageTarget {
                media_type: media_type.to_owned(),
                digest: Digest::of(&bytes),
                size: bytes.len() as u64,
            },
            bytes,
        }
    }

    pub(crate) fn digest(&self) -> &Digest {
        &self.target.digest
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.target.media_type, "digest": self.target.digest,
            "size": self.target.size})
    }
}

/// An image: its root (a manifest or an index) and every blob it reaches, root last.
#[derive(Debug, Clone)]
pub(crate) struct TestImage {
    pub(crate) blobs: Vec<Blob>,
}

impl TestImage {
    pub(crate) fn root(&self) -> &Blob {
        self.blobs.last().unwrap()
    }

    pub(crate) fn target(&self) -> ImageTarget {
        self.root().target.clone()
    }

    pub(crate) fn digests(&self) -> Vec<Digest> {
        self.blobs.iter().map(|b| b.digest().clone()).collect()
    }

    /// Writes every blob into the store.
    pub(crate) fn write_to(&self, store: &ContentStore) {
        for blob in &self.blobs {
            store.write_blob(blob.digest(), &blob.bytes).unwrap();
        }
    }

    /// The blob with this media type (the first one).
    pub(crate) fn blob(&self, media_type: &str) -> &Blob {
        self.blobs
            .iter()
            .find(|b| b.target.media_type == media_type)
            .unwrap()
    }
}

/// A tar layer holding one file `/<seed>` with the seed as content.
pub(crate) fn layer(seed: &str) -> Blob {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(seed.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, seed, seed.as_bytes()).unwrap();
    Blob::new(OCI_LAYER, tar.into_inner().unwrap())
}

/// A single-platform image whose layers are `layer(seed)` for each seed.
pub(crate) fn image(architecture: &str, seeds: &[&str]) -> TestImage {
    let layers: Vec<Blob> = seeds.iter().map(|s| layer(s)).collect();
    let config = Blob::new(
        OCI_CONFIG,
        json!({
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers",
                "diff_ids": layers.iter().map(|l| l.digest().to_string()).collect::<Vec<_>>()}
        })
        .to_string()
        .into_bytes(),
    );
    let manifest = Blob::new(
        OCI_MANIFEST,
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>()
        })
        .to_string()
        .into_bytes(),
    );
    let mut blobs = layers;
    blobs.push(config);
    blobs.push(manifest);
    TestImage { blobs }
}

/// An index over the roots of `images` (manifests or indexes).
pub(crate) fn index(images: &[&TestImage]) -> TestImage {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|image| {
            let mut d = image.root().descriptor();
            if image.root().target.media_type == OCI_MANIFEST {
                let config: serde_json::Value =
                    serde_json::from_slice(&image.blob(OCI_CONFIG).bytes).unwrap();
                d["platform"] = json!({"os": "linux", "architecture": config["architecture"]});
            }
            d
        })
        .collect();
    let root = Blob::new(
        OCI_INDEX,
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
            .to_string()
            .into_bytes(),
    );
    let mut blobs: Vec<Blob> = images.iter().flat_map(|i| i.blobs.clone()).collect();
    blobs.push(root);
    TestImage { blobs }
}

/// Writes an image layout directory: `oci-layout`, `index.json` with one entry per
/// (image, annotations), and the blobs of every image.
pub(crate) fn write_layout(dir: &Path, entries: &[(&TestImage, serde_json::Value)]) {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(image, annotations)| {
            let mut d = image.root().descriptor();
            d["annotations"] = annotations.clone();
            d
        })
        .collect();
    fs::write(
        dir.join("index.json"),
        json!({"schemaVersion": 2, "manifests": manifests}).to_string(),
    )
    .unwrap();
    for (image, _) in entries {
        for blob in &image.blobs {
            fs::write(layout_blob(dir, blob.digest()), &blob.bytes).unwrap();
        }
    }
}

/// Where a blob is in a layout directory.
pub(crate) fn layout_blob(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm().as_str())
        .join(digest.hex())
}

/// Tars a layout directory with the system tar.
pub(crate) fn tar_layout(dir: &Path, out: &Path) {
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every path under `root` with its size and mode, and for files a hash of their content.
pub(crate) fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut listing = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.is_dir() {
                pending.push(path.clone());
                format!("dir {mode:o}")
            } else {
                format!(
                    "file {mode:o} {} {}",
                    meta.len(),
                    Digest::of(&fs::read(&path).unwrap())
                )
            };
            listing.insert(path.strip_prefix(root).unwrap().to_owned(), what);
        }
    }
    listing
}
