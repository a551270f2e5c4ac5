//! `flock(2)` locks held for the life of a value.
//!
//! flock locks belong to the open file description, so two opens in one process exclude each
//! other like two processes do: threads of the daemon and separate `testudoctl` runs are treated
//! alike.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use super::{io_error, StoreError};

/// A held lock on a file; dropping it closes the file, which releases the lock.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for a shared lock on `path`.
    pub(crate) fn shared(path: &Path) -> Result<FileLock, StoreError> {
        let file = open(path)?;
        flock(&file, FlockOperation::LockShared).map_err(|e| io_error("lock", path)(e.into()))?;
        Ok(FileLock { _file: file })
    }

    /// Waits for an exclusive lock on `path`.
    pub(crate) fn exclusive(path: &Path) -> Result<FileLock, StoreError> {
        let file = open(path)?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| io_error("lock", path)(e.into()))?;
        Ok(FileLock { _file: file })
    }

    /// An exclusive lock on `path` if nobody holds any lock on it, else `None`.
    pub(crate) fn try_exclusive(path: &Path) -> Result<Option<FileLock>, StoreError> {
        let file = open(path)?;
        if try_lock_exclusive(&file).map_err(io_error("lock", path))? {
            Ok(Some(FileLock { _file: file }))
        } else {
            Ok(None)
        }
    }
}

/// Takes an exclusive lock on an open file without waiting; `false` when someone else holds one.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn open(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_error("open", path))
}
