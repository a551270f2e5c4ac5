//! Writing a layout, as a directory or a tar file.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageIndexBuilder, MediaType, ANNOTATION_REF_NAME};

use super::source::blob_entry;
use super::{
    io_error, tag_of, LayoutError, ANNOTATION_CONTAINERD_NAME, INDEX_FILE, LAYOUT_VERSION,
    OCI_LAYOUT_FILE,
};
use crate::digest::Digest;
use crate::store::walk;
use crate::store::{ContentStore, ImageRecord, StoreError, MAX_MANIFEST_BYTES};

/// Writes the images called `names` (with every blob they reach) as an image layout at `dest`,
/// a directory or (with `as_tar`) a tar file. `dest` must not exist; it appears complete or not
/// at all.
pub fn export_layout(
    store: &ContentStore,
    names: &[&str],
    dest: &Path,
    as_tar: bool,
) -> Result<(), LayoutError> {
    let records = names
        .iter()
        .map(|name| store.image(name))
        .collect::<Result<Vec<_>, _>>()?;
    export_layout_records(store, &records, dest, as_tar)
}

/// [`export_layout`] of the images `records`, for callers that keep image references outside
/// the store; their content must be in the store.
pub fn export_layout_records(
    store: &ContentStore,
    records: &[ImageRecord],
    dest: &Path,
    as_tar: bool,
) -> Result<(), LayoutError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(LayoutError::DestinationExists {
            path: dest.to_owned(),
        });
    }
    // The blobs must not be pruned while they are copied.
    let _lease = store.lease()?;
    let roots: Vec<_> = records.iter().map(|r| r.target.clone()).collect();
    let mut blobs = Vec::new();
    walk::walk::<LayoutError>(&roots, |node| {
        if !store.contains(&node.digest) {
            return Err(StoreError::BlobNotFound {
                digest: node.digest.clone(),
            }
            .into());
        }
        blobs.push(node.digest.clone());
        if walk::has_children(&node.media_type) {
            Ok(Some(store.read_blob(&node.digest, MAX_MANIFEST_BYTES)?))
        } else {
            Ok(None)
        }
    })?;
    let index = index_document(records)?;

    let mut temp = TempPath {
        path: temp_sibling(dest),
        kept: false,
    };
    if as_tar {
        write_tar(store, &temp.path, &index, &blobs)?;
    } else {
        write_dir(store, &temp.path, &index, &blobs)?;
    }
    fs::rename(&temp.path, dest).map_err(io_error("rename", &temp.path))?;
    temp.kept = true;
    Ok(())
}

/// `index.json` naming each record twice: in full (`io.containerd.image.name`) and by tag
/// (`org.opencontainers.image.ref.name`, when the name has one).
fn index_document(records: &[ImageRecord]) -> Result<Vec<u8>, LayoutError> {
    let manifests = records
        .iter()
        .map(|record| {
            let mut annotations = HashMap::new();
            annotations.insert(ANNOTATION_CONTAINERD_NAME.to_owned(), record.name.clone());
            if let Some(tag) = tag_of(&record.name) {
                annotations.insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
            }
            let mut descriptor = record.target.descriptor();
            descriptor.set_annotations(Some(annotations));
            descriptor
        })
        .collect::<Vec<_>>();
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .unwrap_or_else(|e| unreachable!("every required index field is set: {e}"));
    serde_json::to_vec(&index).map_err(|source| LayoutError::BadIndex {
        path: PathBuf::from(INDEX_FILE),
        source,
    })
}

fn oci_layout_document() -> String {
    format!("{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}")
}

fn write_dir(
    store: &ContentStore,
    dir: &Path,
    index: &[u8],
    blobs: &[Digest],
) -> Result<(), LayoutError> {
    fs::create_dir(dir).map_err(io_error("create directory", dir))?;
    for digest in blobs {
        let path = dir.join(blob_entry(digest));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
        }
        let mut from = store.open_blob(digest)?;
        File::create(&path)
            .and_then(|mut to| io::copy(&mut from, &mut to))
            .map_err(io_error("write", &path))?;
    }
    for (name, content) in [
        (OCI_LAYOUT_FILE, oci_layout_document().as_bytes()),
        (INDEX_FILE, index),
    ] {
        let path = dir.join(name);
        fs::write(&path, content).map_err(io_error("write", &path))?;
    }
    Ok(())
}

fn write_tar(
    store: &ContentStore,
    path: &Path,
    index: &[u8],
    blobs: &[Digest],
) -> Result<(), LayoutError> {
    let file = File::create(path).map_err(io_error("create", path))?;
    let mut tar = tar::Builder::new(io::BufWriter::new(file));
    let write_error = io_error("write", path);
    let result = (|| -> io::Result<()> {
        append(&mut tar, OCI_LAYOUT_FILE, oci_layout_document().as_bytes())?;
        append(&mut tar, INDEX_FILE, index)?;
        let mut dirs = vec!["blobs".to_owned()];
        for digest in blobs {
            let dir = format!("blobs/{}", digest.algorithm().as_str());
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for dir in &dirs {
            let mut header = header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut header, format!("{dir}/"), io::empty())?;
        }
        for digest in blobs {
            let file = store.open_blob(digest).map_err(io::Error::other)?;
            let size = file.metadata()?.len();
            let mut header = header(tar::EntryType::Regular, 0o644, size);
            tar.append_data(&mut header, blob_entry(digest), file)?;
        }
        tar.into_inner()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
    })();
    result.map_err(write_error)
}

fn append(tar: &mut tar::Builder<impl Write>, name: &str, content: &[u8]) -> io::Result<()> {
    let size = u64::try_from(content.len()).unwrap_or(u64::MAX);
    let mut header = header(tar::EntryType::Regular, 0o644, size);
    tar.append_data(&mut header, name, content)
}

/// A tar header with fixed owner and time, so the same images give the same archive.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// `.<name>.tmp-<pid>` beside `dest`, so the final rename stays on one file system.
fn temp_sibling(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map_or_else(|| "layout".into(), |n| n.to_string_lossy().into_owned());
    dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// A half-written export, removed unless it was renamed into place (`kept`).
struct TempPath {
    path: PathBuf,
    kept: bool,
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_dir() => {
                let _ = fs::remove_dir_all(&self.path);
            }
            Ok(_) => {
                let _ = fs::remove_file(&self.path);
            }
            Err(_) => {}
        }
    }
}
