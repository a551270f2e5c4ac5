//! A one-layer OCI image archive (image layout, tar'ed) of a rootfs, for `ctr image import`.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::command::{describe, output_of};
use crate::rootfs::rootfs_tar;

/// The tag that the archive's index gives the image (`org.opencontainers.image.ref.name`).
pub(crate) const REF_NAME: &str = "latest";

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A content descriptor: what the manifest and index say about a blob.
struct Blob {
    digest: String,
    size: usize,
}

impl Blob {
    fn descriptor(&self, media_type: &str) -> serde_json::Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.size})
    }
}

/// Writes to `out` an OCI image archive whose single, uncompressed layer is `rootfs`, with
/// `Cmd = ["/bin/sh"]`, tagged [`REF_NAME`].
pub(crate) fn write_oci_archive(rootfs: &Path, out: &Path) {
    let layout = tempfile::tempdir().expect("create a temp dir for the image layout");
    let blobs = layout.path().join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("create blobs/sha256");

    let layer_tar = layout.path().join("layer.tar");
    rootfs_tar(rootfs, &layer_tar);
    let layer_bytes = fs::read(&layer_tar).expect("read the layer tar");
    let layer = store(&blobs, &layer_bytes).expect("store the layer");
    fs::remove_file(&layer_tar).expect("remove the staged layer tar");

    let config = store(&blobs, &image_config(&layer.digest)).expect("store the config");
    let manifest = store(&blobs, &manifest(&config, &layer)).expect("store the manifest");
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest.digest,
            "size": manifest.size,
            "annotations": {"org.opencontainers.image.ref.name": REF_NAME}
        }]
    });
    fs::write(layout.path().join("index.json"), index.to_string()).expect("write index.json");
    fs::write(
        layout.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");

    let output = output_of(
        Command::new("tar")
            .arg("-C")
            .arg(layout.path())
            .arg("-cf")
            .arg(out)
            .args(["oci-layout", "index.json", "blobs"]),
    );
    assert!(
        output.status.success(),
        "tar the image layout into {}: {}",
        out.display(),
        describe(&output)
    );
}

/// Writes `bytes` as `blobs/sha256/<hex>` and describes it.
fn store(blobs: &Path, bytes: &[u8]) -> io::Result<Blob> {
    let hex = sha256_hex(bytes);
    fs::write(blobs.join(&hex), bytes)?;
    Ok(Blob {
        digest: format!("sha256:{hex}"),
        size: bytes.len(),
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The image config; the layer is uncompressed, so its diff id is its digest.
fn image_config(layer_digest: &str) -> Vec<u8> {
    json!({
        "architecture": crate::image_layout::host_architecture(),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
    })
    .to_string()
    .into_bytes()
}

fn manifest(config: &Blob, layer: &Blob) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(CONFIG_MEDIA_TYPE),
        "layers": [layer.descriptor(LAYER_MEDIA_TYPE)]
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::BusyboxRootfs;

    fn read_json(path: &Path) -> serde_json::Value {
        serde_json::from_slice(&fs::read(path).expect("read json")).expect("valid json")
    }

    fn blob_path(root: &Path, digest: &serde_json::Value) -> std::path::PathBuf {
        let digest = digest.as_str().expect("digest is a string");
        root.join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").expect("sha256 digest"))
    }

    #[test]
    fn sha256_matches_the_known_digest_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn archive_is_a_content_addressed_image_layout() {
        let rootfs = BusyboxRootfs::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("image.tar");
        write_oci_archive(rootfs.path(), &archive);

        let unpacked = dir.path().join("unpacked");
        fs::create_dir(&unpacked).expect("mkdir");
        let out = output_of(
            Command::new("tar")
                .arg("-C")
                .arg(&unpacked)
                .arg("-xf")
                .arg(&archive),
        );
        assert!(out.status.success(), "{}", describe(&out));

        for entry in fs::read_dir(unpacked.join("blobs/sha256")).expect("blobs") {
            let entry = entry.expect("entry");
            let bytes = fs::read(entry.path()).expect("blob");
            assert_eq!(entry.file_name().to_string_lossy(), sha256_hex(&bytes));
        }
        let index = read_json(&unpacked.join("index.json"));
        let entry = &index["manifests"][0];
        assert_eq!(
            entry["annotations"]["org.opencontainers.image.ref.name"],
            "latest"
        );
        let manifest = read_json(&blob_path(&unpacked, &entry["digest"]));
        let config = read_json(&blob_path(&unpacked, &manifest["config"]["digest"]));
        assert_eq!(config["config"]["Cmd"], json!(["/bin/sh"]));
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            manifest["layers"][0]["digest"]
        );
        assert!(blob_path(&unpacked, &manifest["layers"][0]["digest"]).is_file());
        assert_eq!(
            read_json(&unpacked.join("oci-layout"))["imageLayoutVersion"],
            "1.0.0"
        );
    }
}
