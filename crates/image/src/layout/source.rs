//! Reading a layout, from a directory or a tar file.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::{io_error, LayoutError, INDEX_FILE, OCI_LAYOUT_FILE};
use crate::digest::Digest;
use crate::store::{ContentStore, ImageTarget, StagedBlob, StoreError, MAX_MANIFEST_BYTES};

/// A layout being imported: its two small files read, its blobs where they can be taken from.
pub(super) struct LayoutSource {
    path: PathBuf,
    pub(super) oci_layout: Vec<u8>,
    pub(super) index: Vec<u8>,
    blobs: Blobs,
}

enum Blobs {
    /// Read from `blobs/` of the directory when reached.
    Dir,
    /// Every blob entry of the tar, staged (and verified) while the tar was read.
    Tar(HashMap<Digest, StagedBlob>),
}

/// What a file of a layout is, by its path.
#[derive(Debug, PartialEq, Eq)]
enum LayoutFile {
    OciLayout,
    Index,
    Blob(Digest),
}

impl LayoutSource {
    pub(super) fn open(store: &ContentStore, path: &Path) -> Result<LayoutSource, LayoutError> {
        let metadata = fs::metadata(path).map_err(io_error("open", path))?;
        if metadata.is_dir() {
            Self::open_dir(path)
        } else {
            Self::open_tar(store, path)
        }
    }

    fn open_dir(path: &Path) -> Result<LayoutSource, LayoutError> {
        let read = |name: &str, missing: LayoutError| {
            let file_path = path.join(name);
            match File::open(&file_path) {
                Ok(file) => read_limited(path, name, file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(missing),
                Err(e) => Err(io_error("open", &file_path)(e)),
            }
        };
        let oci_layout = read(
            OCI_LAYOUT_FILE,
            LayoutError::NotALayout {
                path: path.to_owned(),
            },
        )?;
        let index = read(
            INDEX_FILE,
            LayoutError::MissingIndex {
                path: path.to_owned(),
            },
        )?;
        Ok(LayoutSource {
            path: path.to_owned(),
            oci_layout,
            index,
            blobs: Blobs::Dir,
        })
    }

    fn open_tar(store: &ContentStore, path: &Path) -> Result<LayoutSource, LayoutError> {
        let file = File::open(path).map_err(io_error("open", path))?;
        let mut archive = tar::Archive::new(file);
        let mut oci_layout = None;
        let mut index = None;
        let mut staged = HashMap::new();
        let read_error = io_error("read the tar archive", path);
        let entries = match archive.entries() {
            Ok(entries) => entries,
            Err(e) => return Err(read_error(e)),
        };
        for entry in entries {
            let mut entry = entry.map_err(io_error("read the tar archive", path))?;
            let entry_path = entry
                .path()
                .map_err(io_error("read the tar archive", path))?
                .into_owned();
            let Some(kind) = classify(&entry_path) else {
                continue;
            };
            if !entry.header().entry_type().is_file() {
                return Err(LayoutError::NotAFile {
                    path: path.to_owned(),
                    entry: entry_path.display().to_string(),
                });
            }
            match kind {
                LayoutFile::OciLayout => {
                    oci_layout = Some(read_limited(path, OCI_LAYOUT_FILE, &mut entry)?);
                }
                LayoutFile::Index => index = Some(read_limited(path, INDEX_FILE, &mut entry)?),
                LayoutFile::Blob(digest) => {
                    let size = entry.size();
                    let blob = store
                        .stage(&digest, Some(size), &mut entry)
                        .map_err(|source| LayoutError::BadBlob {
                            path: path.to_owned(),
                            digest: digest.clone(),
                            source: Box::new(source),
                        })?;
                    staged.insert(digest, blob);
                }
            }
        }
        Ok(LayoutSource {
            path: path.to_owned(),
            oci_layout: oci_layout.ok_or_else(|| LayoutError::NotALayout {
                path: path.to_owned(),
            })?,
            index: index.ok_or_else(|| LayoutError::MissingIndex {
                path: path.to_owned(),
            })?,
            blobs: Blobs::Tar(staged),
        })
    }

    /// The blob `node` reaches, verified against the node's digest and size, staged in the
    /// store.
    pub(super) fn take_blob(
        &mut self,
        store: &ContentStore,
        node: &ImageTarget,
    ) -> Result<StagedBlob, LayoutError> {
        let missing = || LayoutError::MissingBlob {
            path: self.path.clone(),
            digest: node.digest.clone(),
        };
        let bad = |source| LayoutError::BadBlob {
            path: self.path.clone(),
            digest: node.digest.clone(),
            source: Box::new(source),
        };
        match &mut self.blobs {
            Blobs::Dir => {
                let relative = blob_entry(&node.digest);
                let blob_path = self.path.join(&relative);
                let metadata = match fs::symlink_metadata(&blob_path) {
                    Ok(metadata) => metadata,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
                    Err(e) => return Err(io_error("stat", &blob_path)(e)),
                };
                if !metadata.is_file() {
                    return Err(LayoutError::NotAFile {
                        path: self.path.clone(),
                        entry: relative,
                    });
                }
                let file = File::open(&blob_path).map_err(io_error("open", &blob_path))?;
                store
                    .stage(&node.digest, Some(node.size), file)
                    .map_err(bad)
            }
            Blobs::Tar(staged) => {
                let blob = staged.remove(&node.digest).ok_or_else(missing)?;
                if blob.size() != node.size {
                    return Err(bad(StoreError::SizeMismatch {
                        digest: node.digest.clone(),
                        expected: node.size,
                        actual: blob.size(),
                    }));
                }
                Ok(blob)
            }
        }
    }
}

/// `blobs/<alg>/<hex>`, the path of a blob inside a layout.
pub(super) fn blob_entry(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
}

/// Which layout file a tar entry is; `None` for anything else (directories, other files, paths
/// with `..` or a root: they are never written anywhere, only not taken).
fn classify(path: &Path) -> Option<LayoutFile> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => parts.push(part.to_str()?),
            _ => return None,
        }
    }
    match parts.as_slice() {
        [OCI_LAYOUT_FILE] => Some(LayoutFile::OciLayout),
        [INDEX_FILE] => Some(LayoutFile::Index),
        ["blobs", algorithm, hex] => Digest::parse(&format!("{algorithm}:{hex}"))
            .ok()
            .map(LayoutFile::Blob),
        _ => None,
    }
}

/// Reads a layout's small file, refusing one over the manifest limit.
fn read_limited(layout: &Path, name: &str, reader: impl Read) -> Result<Vec<u8>, LayoutError> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_MANIFEST_BYTES).unwrap_or(u64::MAX);
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error("read", &layout.join(name)))?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(LayoutError::TooLarge {
            path: layout.to_owned(),
            file: name.to_owned(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_entries_are_classified_by_their_normal_path() {
        let digest = Digest::of(b"x");
        let entry = format!("./blobs/sha256/{}", digest.hex());
        assert_eq!(
            classify(Path::new(&entry)),
            Some(LayoutFile::Blob(digest.clone()))
        );
        assert_eq!(
            classify(Path::new("oci-layout")),
            Some(LayoutFile::OciLayout)
        );
        assert_eq!(classify(Path::new("./index.json")), Some(LayoutFile::Index));
        for other in [
            "blobs/sha256".to_owned(),
            "blobs/sha256/nothex".to_owned(),
            "blobs/md5/00".to_owned(),
            format!("../blobs/sha256/{}", digest.hex()),
            format!("/blobs/sha256/{}", digest.hex()),
            "x/index.json".to_owned(),
        ] {
            assert_eq!(classify(Path::new(&other)), None, "{other}");
        }
        assert_eq!(
            blob_entry(&digest),
            format!("blobs/sha256/{}", digest.hex())
        );
    }
}
