//! OCI image layouts built by tests: layers written entry by entry (files, directories, symlinks,
//! hard links, whiteouts) or from a busybox rootfs, compressed as asked, single-platform images and
//! multi-platform indexes, each tagged with `org.opencontainers.image.ref.name`.
//!
//! It writes the formats itself (tar through the `tar` crate, gzip, zstd, JSON) instead of using
//! the image crate under test, so the tests check testudo against an independent producer; skopeo
//! then carries a layout into a registry ([`crate::Registry::push`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::rootfs::rootfs_tar;

/// `application/vnd.oci.image.index.v1+json`.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.manifest.v1+json`.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    fn compress(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => tar.to_vec(),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(tar).expect("gzip a layer");
                gz.finish().expect("gzip a layer")
            }
            Compression::Zstd => zstd::encode_all(tar, 3).expect("zstd a layer"),
        }
    }
}

/// One layer: an uncompressed tar stream and how its blob is compressed.
#[derive(Clone)]
pub struct Layer {
    entries: Vec<(tar::Header, String, Vec<u8>)>,
    from_dir: Option<Vec<u8>>,
    compression: Compression,
}

impl Layer {
    /// An empty layer, compressed with gzip unless [`Layer::compression`] says otherwise.
    pub fn new() -> Self {
        Layer {
            entries: Vec::new(),
            from_dir: None,
            compression: Compression::Gzip,
        }
    }

    /// The whole tree of `rootfs` as one layer (numeric owners, as `tar` writes it).
    pub fn from_dir(rootfs: &Path) -> Self {
        let staging = tempfile::tempdir().expect("temp dir for a layer tar");
        let tar = staging.path().join("layer.tar");
        rootfs_tar(rootfs, &tar);
        Layer {
            entries: Vec::new(),
            from_dir: Some(fs::read(&tar).expect("read the layer tar")),
            compression: Compression::Gzip,
        }
    }

    /// Sets the compression of the layer's blob.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    fn append(mut self, mut header: tar::Header, path: &str, data: &[u8]) -> Self {
        assert!(
            self.from_dir.is_none(),
            "a layer from a directory is complete"
        );
        header.set_mtime(1_700_000_000);
        self.entries.push((header, path.to_owned(), data.to_vec()));
        self
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    /// A regular file with `contents` and `mode`.
    pub fn file(self, path: &str, contents: &[u8], mode: u32) -> Self {
        let size = u64::try_from(contents.len()).expect("file size");
        self.append(
            Self::header(tar::EntryType::Regular, mode, size),
            path,
            contents,
        )
    }

    /// A directory.
    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.append(Self::header(tar::EntryType::Directory, mode, 0), path, &[])
    }

    /// A symbolic link at `path` pointing at `target`.
    pub fn symlink(self, path: &str, target: &str) -> Self {
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, 0);
        header
            .set_link_name(target)
            .unwrap_or_else(|e| panic!("link name {target}: {e}"));
        self.append(header, path, &[])
    }

    /// A hard link at `path` to the earlier entry `target`.
    pub fn hard_link(self, path: &str, target: &str) -> Self {
        let mut header = Self::header(tar::EntryType::Link, 0o644, 0);
        header
            .set_link_name(target)
            .unwrap_or_else(|e| panic!("link name {target}: {e}"));
        self.append(header, path, &[])
    }

    /// A whiteout hiding `path` of the layers below (`dir/.wh.name`).
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let marker = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&marker, &[], 0o644)
    }

    /// An opaque whiteout: `dir` hides everything the layers below had in it.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), &[], 0o644)
    }

    /// The uncompressed tar stream.
    pub fn tar(&self) -> Vec<u8> {
        if let Some(tar) = &self.from_dir {
            return tar.clone();
        }
        let mut builder = tar::Builder::new(Vec::new());
        for (header, path, data) in &self.entries {
            let mut header = header.clone();
            builder
                .append_data(&mut header, path, data.as_slice())
                .unwrap_or_else(|e| panic!("add {path} to a layer: {e}"));
        }
        builder.into_inner().expect("finish the layer tar")
    }
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

/// An image for one platform: its layers (bottom first) and the `config` section of its config.
#[derive(Clone)]
pub struct TestImage {
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// The image config's `config` object (Cmd, Env, ...).
    pub config: Value,
    /// `os`, `architecture` and optional `variant`.
    pub platform: (String, String, Option<String>),
}

impl TestImage {
    /// An image of the host's platform with `layers` and `Cmd ["/bin/sh"]`.
    pub fn new(layers: Vec<Layer>) -> Self {
        TestImage {
            layers,
            config: json!({"Cmd": ["/bin/sh"]}),
            platform: ("linux".into(), host_architecture().into(), None),
        }
    }

    /// The same image with another platform.
    pub fn platform(mut self, os: &str, architecture: &str, variant: Option<&str>) -> Self {
        self.platform = (os.into(), architecture.into(), variant.map(Into::into));
        self
    }

    /// The same image with another config section.
    pub fn config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }
}

/// A blob written into a layout, as a descriptor names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

impl BlobRef {
    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// What [`ImageLayout::add_image`] wrote for one image.
#[derive(Debug, Clone)]
pub struct WrittenImage {
    /// The manifest.
    pub manifest: BlobRef,
    /// The config blob.
    pub config: BlobRef,
    /// The layer blobs, bottom first.
    pub layers: Vec<BlobRef>,
    /// `sha256:<hex>` of each uncompressed layer.
    pub diff_ids: Vec<String>,
}

/// An OCI image layout directory in a temp dir.
pub struct ImageLayout {
    dir: tempfile::TempDir,
    index: Vec<Value>,
}

impl ImageLayout {
    /// An empty layout.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for an image layout");
        fs::create_dir_all(dir.path().join("blobs/sha256")).expect("create blobs/sha256");
        fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("write oci-layout");
        let layout = ImageLayout {
            dir,
            index: Vec::new(),
        };
        layout.write_index();
        layout
    }

    /// The layout's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the blob of `digest` is.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.path().join("blobs/sha256").join(hex)
    }

    /// Writes `bytes` as a blob of `media_type`.
    pub fn write_blob(&self, media_type: &str, bytes: &[u8]) -> BlobRef {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        fs::write(self.blob_path(&digest), bytes).expect("write a blob");
        BlobRef {
            digest,
            size: u64::try_from(bytes.len()).expect("blob size"),
            media_type: media_type.into(),
        }
    }

    fn write_image(&self, image: &TestImage) -> WrittenImage {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for layer in &image.layers {
            let tar = layer.tar();
            diff_ids.push(format!("sha256:{:x}", Sha256::digest(&tar)));
            let blob = layer.compression.compress(&tar);
            layers.push(self.write_blob(layer.compression.media_type(), &blob));
        }
        let (os, architecture, variant) = &image.platform;
        let mut config = json!({
            "architecture": architecture,
            "os": os,
            "config": image.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if let Some(v) = variant {
            config["variant"] = v.clone().into();
        }
        let config = self.write_blob(OCI_CONFIG, config.to_string().as_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(BlobRef::descriptor).collect::<Vec<_>>(),
        });
        let manifest = self.write_blob(OCI_MANIFEST, manifest.to_string().as_bytes());
        WrittenImage {
            manifest,
            config,
            layers,
            diff_ids,
        }
    }

    /// Adds a single-platform image tagged `tag`.
    pub fn add_image(&mut self, tag: &str, image: &TestImage) -> WrittenImage {
        let written = self.write_image(image);
        let mut descriptor = written.manifest.descriptor();
        descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.index.push(descriptor);
        self.write_index();
        written
    }

    /// Adds a multi-platform index of `images` tagged `tag`; returns the index blob and each image.
    pub fn add_index(&mut self, tag: &str, images: &[TestImage]) -> (BlobRef, Vec<WrittenImage>) {
        let written: Vec<WrittenImage> = images.iter().map(|i| self.write_image(i)).collect();
        let manifests: Vec<Value> = images
            .iter()
            .zip(&written)
            .map(|(image, w)| {
                let (os, architecture, variant) = &image.platform;
                let mut d = w.manifest.descriptor();
                d["platform"] = json!({"os": os, "architecture": architecture});
                if let Some(v) = variant {
                    d["platform"]["variant"] = v.clone().into();
                }
                d
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        let blob = self.write_blob(OCI_INDEX, index.to_string().as_bytes());
        let mut descriptor = blob.descriptor();
        descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.index.push(descriptor);
        self.write_index();
        (blob, written)
    }

    /// Adds `manifest` (any JSON, valid or not) as a manifest of `media_type` tagged `tag`, for
    /// tests of what a client makes of unusual or broken manifests.
    pub fn add_raw_manifest(&mut self, tag: &str, media_type: &str, manifest: &Value) -> BlobRef {
        let blob = self.write_blob(media_type, manifest.to_string().as_bytes());
        let mut descriptor = blob.descriptor();
        descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.index.push(descriptor);
        self.write_index();
        blob
    }

    fn write_index(&self) {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.index});
        fs::write(self.path().join("index.json"), index.to_string()).expect("write index.json");
    }
}

impl Default for ImageLayout {
    fn default() -> Self {
        Self::new()
    }
}

/// The host's architecture as OCI (Go's GOARCH) names it.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "x86" => "386",
        other => other,
    }
}
