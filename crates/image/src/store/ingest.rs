//! Writing blobs: resumable ingests of downloads, and staged temp files of whole blobs. Both end
//! the same way: size and digest checked, then fsync and rename into `blobs/`.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::lock::try_lock_exclusive;
use super::{io_error, sync_dir, ContentStore, StoreError};
use crate::digest::{Digest, DigestWriter};

const COPY_BUFFER_BYTES: usize = 256 << 10;

/// A resumable write of one blob into the store.
///
/// Its partial file, `ingest/<alg>-<hex>`, is locked (`flock`) while the `Ingest` lives, so a
/// second ingest of the same digest fails with [`StoreError::IngestBusy`] and `prune` leaves it
/// alone. Dropping an `Ingest` without committing keeps the partial: the next
/// [`ContentStore::ingest`] of the digest resumes at [`Ingest::offset`], re-reading the partial to
/// rebuild the hash state. Writes hash as they go; [`Ingest::commit`] verifies.
#[derive(Debug)]
pub struct Ingest {
    store: ContentStore,
    expected: Digest,
    size: Option<u64>,
    path: PathBuf,
    file: File,
    hasher: DigestWriter,
}

impl Ingest {
    pub(super) fn open(
        store: &ContentStore,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<Ingest, StoreError> {
        let path = store.ingest_dir().join(format!(
            "{}-{}",
            expected.algorithm().as_str(),
            expected.hex()
        ));
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_error("open", &path))?;
            if !try_lock_exclusive(&file).map_err(io_error("lock", &path))? {
                return Err(StoreError::IngestBusy {
                    digest: expected.clone(),
                    path,
                });
            }
            // prune may have unlinked the partial between our open and our lock: then the
            // locked inode is no longer the one at `path`, and we open again.
            let ours = file.metadata().map_err(io_error("stat", &path))?;
            let current = fs::symlink_metadata(&path);
            if !current.is_ok_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev()) {
                continue;
            }
            let mut ingest = Ingest {
                store: store.clone(),
                expected: expected.clone(),
                size,
                path,
                file,
                hasher: DigestWriter::new(expected.algorithm()),
            };
            ingest.resume(ours.len())?;
            return Ok(ingest);
        }
    }

    /// Rebuilds the hash state from the `len` bytes already in the partial; a partial longer
    /// than the expected size cannot be right, so it starts over.
    fn resume(&mut self, len: u64) -> Result<(), StoreError> {
        if self.size.is_some_and(|size| len > size) {
            return self.restart();
        }
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| io::copy(&mut (&self.file).take(len), &mut self.hasher))
            .and_then(|_| self.file.seek(SeekFrom::Start(len)))
            .map_err(io_error("read", &self.path))?;
        Ok(())
    }

    /// How many bytes are already written: resume the download from here (HTTP `Range`).
    pub fn offset(&self) -> u64 {
        self.hasher.bytes_written()
    }

    /// Where the partial is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Discards what was written so far (for a server that ignored `Range`).
    pub fn restart(&mut self) -> Result<(), StoreError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)))
            .map_err(io_error("truncate", &self.path))?;
        self.hasher = DigestWriter::new(self.expected.algorithm());
        Ok(())
    }

    /// Checks the size (when known) and digest of what was written and renames it into
    /// `blobs/`, returning the blob's path; a no-op success when the blob is already stored. On a
    /// mismatch the partial is deleted and the error names what was expected and what arrived.
    pub fn commit(self) -> Result<PathBuf, StoreError> {
        let Ingest {
            store,
            expected,
            size,
            path,
            file,
            hasher,
        } = self;
        let written = hasher.bytes_written();
        let checked = match size {
            Some(size) if size != written => Err(StoreError::SizeMismatch {
                digest: expected.clone(),
                expected: size,
                actual: written,
            }),
            _ => check_digest(&expected, hasher.finish()),
        };
        if let Err(e) = checked {
            // Still locked by us, so no other ingest is using it.
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        publish(&store, &file, &path, &expected)
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let after = self.offset().saturating_add(buf.len() as u64);
        if let Some(size) = self.size.filter(|&size| after > size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {} is longer than its {size} bytes", self.expected),
            ));
        }
        let written = self.file.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn check_digest(expected: &Digest, actual: Digest) -> Result<(), StoreError> {
    if &actual == expected {
        Ok(())
    } else {
        Err(StoreError::DigestMismatch {
            expected: expected.clone(),
            actual,
        })
    }
}

/// Makes the verified file at `from` the blob `digest`: read-only, fsynced, renamed into
/// `blobs/<alg>/`, directory fsynced. When the blob is already there, `from` is just removed.
fn publish(
    store: &ContentStore,
    file: &File,
    from: &Path,
    digest: &Digest,
) -> Result<PathBuf, StoreError> {
    let to = store.blob_path(digest);
    let dir = to.parent().unwrap_or(store.root());
    fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
    // A running prune finishes before the blob appears, so it cannot sweep it half-way.
    let _lease = store.lease()?;
    if store.contains(digest) {
        fs::remove_file(from).map_err(io_error("remove", from))?;
        return Ok(to);
    }
    file.set_permissions(Permissions::from_mode(0o444))
        .and_then(|()| file.sync_all())
        .map_err(io_error("sync", from))?;
    fs::rename(from, &to).map_err(io_error("rename", from))?;
    sync_dir(dir)?;
    Ok(to)
}

static STAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A whole blob copied into a private, locked temp file in `ingest/` and verified, waiting to
/// be published; dropped unpublished, its file is removed. Lets an import check every blob of a
/// layout before any of them becomes visible.
#[derive(Debug)]
pub(crate) struct StagedBlob {
    path: PathBuf,
    file: File,
    digest: Digest,
    size: u64,
    published: bool,
}

impl StagedBlob {
    pub(super) fn write(
        store: &ContentStore,
        expected: &Digest,
        size: Option<u64>,
        content: impl Read,
    ) -> Result<StagedBlob, StoreError> {
        let path = store.ingest_dir().join(format!(
            ".stage-{}-{}",
            std::process::id(),
            STAGE_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error("create", &path))?;
        let mut staged = StagedBlob {
            path,
            file,
            digest: expected.clone(),
            size: 0,
            published: false,
        };
        // A new file nobody else knows yet: the lock only tells prune that it is in use.
        try_lock_exclusive(&staged.file).map_err(io_error("lock", &staged.path))?;
        let mut hasher = DigestWriter::new(expected.algorithm());
        // One byte past the expected size is enough to know the content is too long.
        let mut content = content.take(size.map_or(u64::MAX, |s| s.saturating_add(1)));
        let mut buffer = vec![0; COPY_BUFFER_BYTES];
        loop {
            let n = match content.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error("read the content of", &staged.path)(e)),
            };
            staged
                .file
                .write_all(&buffer[..n])
                .map_err(io_error("write", &staged.path))?;
            hasher.update(&buffer[..n]);
        }
        let written = hasher.bytes_written();
        if let Some(size) = size.filter(|&size| size != written) {
            return Err(StoreError::SizeMismatch {
                digest: expected.clone(),
                expected: size,
                actual: written,
            });
        }
        check_digest(expected, hasher.finish())?;
        staged.size = written;
        Ok(staged)
    }

    /// The verified size.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The whole content, when it is at most `limit` bytes.
    pub(crate) fn read(&self, limit: usize) -> Result<Vec<u8>, StoreError> {
        if usize::try_from(self.size).map_or(true, |size| size > limit) {
            return Err(StoreError::TooLarge {
                digest: self.digest.clone(),
                limit,
            });
        }
        fs::read(&self.path).map_err(io_error("read", &self.path))
    }

    /// Moves the blob into the store.
    pub(crate) fn publish(mut self, store: &ContentStore) -> Result<PathBuf, StoreError> {
        let path = publish(store, &self.file, &self.path, &self.digest)?;
        self.published = true;
        Ok(path)
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.path);
        }
    }
}
