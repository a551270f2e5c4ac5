//! The content-addressed blob store and the image records that name its content.
//!
//! On disk, under the store's root:
//!
//! ```text
//! blobs/<alg>/<hex>   verified blobs, read-only (0444); a blob is only ever renamed into place
//!                     after its size and digest were checked, so a file here is always correct
//! ingest/<alg>-<hex>  a partial download of that blob, kept when a download stops so the next one
//!                     resumes at its length (the hash state is rebuilt by re-reading it); no
//!                     sidecar: the expected size is given again by each `ingest` call
//! ingest/.stage-*     private temp files of `write_blob` and layout imports
//! images.json         every image record, replaced atomically (temp + fsync + rename + fsync dir)
//! lock                the collection lock: shared by writers, exclusive by `prune`
//! images.lock         serialises the read-modify-write of images.json
//! ```
//!
//! Design decisions:
//! - One `images.json` rather than one file per image: image names contain `/`, `:` and `@`, which
//!   one-file-per-image would have to encode into file names, and `prune` gets a consistent view of
//!   every record from a single read. Stores hold hundreds of images, not millions, so rewriting
//!   the file on each change costs little.
//! - Two lock files, because a writer holding a [`Lease`] (shared on `lock`) must still be able to
//!   record its image: had `put_image` taken `lock` exclusively it would wait for its own lease.
//!   Every ingest and temp file is also `flock`ed by its writer, so `prune` removes only files that
//!   nobody is writing.
//! - `prune` does not wait for writers: while any lease, commit or record write holds `lock` it
//!   fails with [`StoreError::Busy`]. Waiting would deadlock a caller that prunes while holding a
//!   lease, and a prune run concurrently with a pull has nothing useful to wait for.
//! - A second [`Ingest`] of a digest that is already being ingested fails at once with
//!   [`StoreError::IngestBusy`] rather than waiting: the caller (the puller) knows whether it
//!   wants to wait for the other download, retry later, or give up.
//! - A caller may keep its image references elsewhere (the engine keeps them per namespace in
//!   its state database) and leave `images.json` empty: it imports with
//!   `layout::import_layout_content`, records after `pull::fetch` itself, and prunes with
//!   [`ContentStore::prune_with`], which asks it for its roots under the collection lock.
//! - Walking images (index -> manifests -> config + layers) reads manifests with
//!   [`oci_spec::image`] types directly, refusing any over [`MAX_MANIFEST_BYTES`].

mod ingest;
mod lock;
mod records;
pub(crate) mod walk;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest, DigestError};

pub use ingest::Ingest;
pub(crate) use ingest::StagedBlob;
use lock::FileLock;
pub use records::{ImageRecord, ImageTarget};
use walk::WalkError;

/// The largest manifest, index or config that the store reads into memory while walking images.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

const BLOBS_DIR: &str = "blobs";
const INGEST_DIR: &str = "ingest";
const RECORDS_FILE: &str = "images.json";
const GC_LOCK_FILE: &str = "lock";
const RECORDS_LOCK_FILE: &str = "images.lock";

/// Why a content store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done (`create directory`, `rename`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The blob is not in the store.
    #[error("blob {digest} is not in the store")]
    BlobNotFound {
        /// The blob asked for.
        digest: Digest,
    },
    /// No image has that name.
    #[error("image {name:?} is not in the store")]
    ImageNotFound {
        /// The name asked for.
        name: String,
    },
    /// An image record's name is empty or has control characters.
    #[error("invalid image name {name:?}: it is empty or has control characters")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// Content hashed to another digest than expected; nothing was stored.
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the content was supposed to have.
        expected: Digest,
        /// The digest of the content received.
        actual: Digest,
    },
    /// Content had another size than expected; nothing was stored.
    #[error("blob {digest} has {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size the content was supposed to have.
        expected: u64,
        /// The size received (for an overlong stream, the bytes read before giving up).
        actual: u64,
    },
    /// A blob is larger than the caller's limit for reading it into memory.
    #[error("blob {digest} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The blob.
        digest: Digest,
        /// The limit.
        limit: usize,
    },
    /// Another ingest of the same blob is in progress (in this or another process).
    #[error("blob {digest} is already being written by another ingest ({path})")]
    IngestBusy {
        /// The blob.
        digest: Digest,
        /// The partial file held by the other ingest.
        path: PathBuf,
    },
    /// `prune` found the store in use by a writer (a lease, a commit or a record write).
    #[error("content store {root} is in use by a writer, prune when it is done")]
    Busy {
        /// The store's root.
        root: PathBuf,
    },
    /// `images.json` cannot be parsed.
    #[error("image records {path} are corrupt")]
    Records {
        /// The records file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A manifest or index in the store cannot be parsed as its media type says.
    #[error("manifest {digest} ({media_type}) cannot be parsed")]
    BadManifest {
        /// The manifest's digest.
        digest: Digest,
        /// Its media type, as its descriptor says.
        media_type: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A descriptor inside a manifest has a digest that cannot be verified.
    #[error("manifest {parent} refers to an unsupported digest")]
    UnsupportedDigest {
        /// The manifest or index holding the descriptor.
        parent: Digest,
        /// Why the digest was refused.
        #[source]
        source: DigestError,
    },
}

impl From<WalkError> for StoreError {
    fn from(error: WalkError) -> Self {
        match error {
            WalkError::BadManifest {
                digest,
                media_type,
                source,
            } => StoreError::BadManifest {
                digest,
                media_type,
                source,
            },
            WalkError::UnsupportedDigest { parent, source } => {
                StoreError::UnsupportedDigest { parent, source }
            }
        }
    }
}

pub(crate) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// What [`ContentStore::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs that no image refers to, removed.
    pub blobs_removed: u64,
    /// Partial or temporary files in `ingest/` that no writer held, removed.
    pub ingests_removed: u64,
    /// Bytes of the removed blobs and ingests.
    pub bytes_freed: u64,
}

/// Holds off [`ContentStore::prune`] while it lives: taken by whoever writes the blobs of an
/// image before recording it, so the blobs are not collected in between.
#[derive(Debug)]
pub struct Lease {
    _lock: FileLock,
}

/// A content-addressed store of verified blobs and the image records that name them.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Opens the store at `root`, creating its directories and lock files when missing.
    pub fn open(root: &Path) -> Result<ContentStore, StoreError> {
        for dir in [root.to_owned(), root.join(BLOBS_DIR), root.join(INGEST_DIR)] {
            fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        }
        for file in [GC_LOCK_FILE, RECORDS_LOCK_FILE] {
            let path = root.join(file);
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_error("create", &path))?;
        }
        Ok(ContentStore {
            root: root.to_owned(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the blob is in the store.
    pub fn contains(&self, digest: &Digest) -> bool {
        fs::symlink_metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file())
    }

    /// Where the blob is (or would be) stored: `blobs/<alg>/<hex>`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join(BLOBS_DIR)
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound {
                digest: digest.clone(),
            },
            _ => StoreError::Io {
                action: "open",
                path,
                source,
            },
        })
    }

    /// Reads a whole blob of at most `limit` bytes (a manifest, an index, a config), verifying
    /// its digest again so that damage on disk is not parsed.
    pub fn read_blob(&self, digest: &Digest, limit: usize) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let file = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        let limit_plus_one = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        file.take(limit_plus_one)
            .read_to_end(&mut bytes)
            .map_err(io_error("read", &path))?;
        if bytes.len() > limit {
            return Err(StoreError::TooLarge {
                digest: digest.clone(),
                limit,
            });
        }
        let actual = Digest::of_with(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Stores `data` as the blob `expected` after checking its digest; atomic (temp file, fsync,
    /// rename), and a no-op when the blob is already there. On a mismatch nothing is written.
    pub fn write_blob(&self, expected: &Digest, data: &[u8]) -> Result<(), StoreError> {
        let actual = Digest::of_with(expected.algorithm(), data);
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        if self.contains(expected) {
            return Ok(());
        }
        let size = u64::try_from(data.len()).unwrap_or(u64::MAX);
        self.stage(expected, Some(size), data)?.publish(self)?;
        Ok(())
    }

    /// Starts or resumes writing the blob `expected` (of `size` bytes, when known). See [`Ingest`].
    pub fn ingest(&self, expected: &Digest, size: Option<u64>) -> Result<Ingest, StoreError> {
        Ingest::open(self, expected, size)
    }

    /// Copies `content` into a private temp file while hashing it and checks its size and
    /// digest; the returned blob is published with [`StagedBlob::publish`], or removed on drop.
    pub(crate) fn stage(
        &self,
        expected: &Digest,
        size: Option<u64>,
        content: impl Read,
    ) -> Result<StagedBlob, StoreError> {
        StagedBlob::write(self, expected, size, content)
    }

    /// Holds off [`ContentStore::prune`] until the lease is dropped; waits for a running prune.
    pub fn lease(&self) -> Result<Lease, StoreError> {
        Ok(Lease {
            _lock: FileLock::shared(&self.root.join(GC_LOCK_FILE))?,
        })
    }

    /// Records an image, replacing any record of the same name; atomic.
    pub fn put_image(&self, record: &ImageRecord) -> Result<(), StoreError> {
        if record.name.is_empty() || record.name.chars().any(char::is_control) {
            return Err(StoreError::InvalidName {
                name: record.name.clone(),
            });
        }
        let _gc = self.lease()?;
        let _records = self.records_lock()?;
        let mut all = self.images()?;
        all.retain(|r| r.name != record.name);
        all.push(record.clone());
        records::write(&self.records_path(), all)
    }

    /// The record of the image called `name`.
    pub fn image(&self, name: &str) -> Result<ImageRecord, StoreError> {
        self.images()?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| StoreError::ImageNotFound {
                name: name.to_owned(),
            })
    }

    /// Every image record, sorted by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        records::read(&self.records_path())
    }

    /// Removes the record of the image called `name` and returns it; its blobs stay until
    /// [`ContentStore::prune`].
    pub fn remove_image(&self, name: &str) -> Result<ImageRecord, StoreError> {
        let _gc = self.lease()?;
        let _records = self.records_lock()?;
        let mut all = self.images()?;
        let position =
            all.iter()
                .position(|r| r.name == name)
                .ok_or_else(|| StoreError::ImageNotFound {
                    name: name.to_owned(),
                })?;
        let removed = all.remove(position);
        records::write(&self.records_path(), all)?;
        Ok(removed)
    }

    /// Removes every blob that no image refers to (an image's target; an index's manifests; a
    /// manifest's config and layers) and every file in `ingest/` that no writer holds.
    /// Fails with [`StoreError::Busy`] while a writer holds the store (see [`Lease`]).
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        self.prune_with(|| Ok::<_, StoreError>(Vec::new()))
    }

    /// [`ContentStore::prune`], also keeping what the targets `roots` returns refer to: for
    /// callers that keep image references elsewhere (the engine, in its state database).
    /// `roots` is called with the collection lock held, so that no writer can record a new
    /// reference between its answer and the sweep.
    pub fn prune_with<E: From<StoreError>>(
        &self,
        roots: impl FnOnce() -> Result<Vec<ImageTarget>, E>,
    ) -> Result<PruneReport, E> {
        let Some(_gc) = FileLock::try_exclusive(&self.root.join(GC_LOCK_FILE))? else {
            return Err(StoreError::Busy {
                root: self.root.clone(),
            }
            .into());
        };
        let marked = self.reachable_blobs(roots()?)?;
        let mut report = PruneReport::default();
        self.sweep_blobs(&marked, &mut report)?;
        self.sweep_ingests(&mut report)?;
        Ok(report)
    }

    /// Every stored blob reachable from an image record or from `extra_roots`; blobs missing
    /// from the store are skipped (there is nothing to keep), but a stored manifest that cannot
    /// be parsed is an error, so that its children are never collected by mistake.
    fn reachable_blobs(
        &self,
        extra_roots: Vec<ImageTarget>,
    ) -> Result<HashSet<Digest>, StoreError> {
        let mut roots: Vec<ImageTarget> = self.images()?.into_iter().map(|r| r.target).collect();
        roots.extend(extra_roots);
        let mut marked = HashSet::new();
        walk::walk::<StoreError>(&roots, |node| {
            if !self.contains(&node.digest) {
                return Ok(None);
            }
            marked.insert(node.digest.clone());
            if walk::has_children(&node.media_type) {
                Ok(Some(self.read_blob(&node.digest, MAX_MANIFEST_BYTES)?))
            } else {
                Ok(None)
            }
        })?;
        Ok(marked)
    }

    fn sweep_blobs(
        &self,
        marked: &HashSet<Digest>,
        report: &mut PruneReport,
    ) -> Result<(), StoreError> {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join(BLOBS_DIR).join(algorithm.as_str());
            for (path, name) in list_dir(&dir)? {
                let Ok(digest) = Digest::parse(&format!("{algorithm}:{name}")) else {
                    continue;
                };
                if marked.contains(&digest) {
                    continue;
                }
                let size = fs::symlink_metadata(&path).map_or(0, |m| m.len());
                fs::remove_file(&path).map_err(io_error("remove", &path))?;
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        Ok(())
    }

    fn sweep_ingests(&self, report: &mut PruneReport) -> Result<(), StoreError> {
        for (path, _) in list_dir(&self.root.join(INGEST_DIR))? {
            let file = match File::open(&path) {
                Ok(file) => file,
                // Committed or removed by its writer since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("open", &path)(e)),
            };
            let metadata = file.metadata().map_err(io_error("stat", &path))?;
            // Not ours (the store only makes files here), or held by a live writer.
            if !metadata.is_file()
                || !lock::try_lock_exclusive(&file).map_err(io_error("lock", &path))?
            {
                continue;
            }
            let size = metadata.len();
            // Unlinked while locked, so a writer that opened it just before sees a stale inode
            // once it gets the lock, and starts over on a new file.
            fs::remove_file(&path).map_err(io_error("remove", &path))?;
            report.ingests_removed += 1;
            report.bytes_freed += size;
        }
        Ok(())
    }

    fn records_lock(&self) -> Result<FileLock, StoreError> {
        FileLock::exclusive(&self.root.join(RECORDS_LOCK_FILE))
    }

    fn records_path(&self) -> PathBuf {
        self.root.join(RECORDS_FILE)
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join(INGEST_DIR)
    }
}

/// The entries of `dir` as (path, file name); a missing directory is empty.
fn list_dir(dir: &Path) -> Result<Vec<(PathBuf, String)>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", dir)(e)),
    };
    let mut listed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        if let Some(name) = entry.file_name().to_str() {
            listed.push((entry.path(), name.to_owned()));
        }
    }
    Ok(listed)
}

/// Makes a rename or unlink in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))
}
