//! What can go wrong with a snapshot operation.

use std::io;
use std::path::PathBuf;

use crate::SnapshotKind;

/// Why a snapshotter operation failed. The snapshotter's state is unchanged after any of these,
/// except that an interrupted removal may leave a directory for [`cleanup`](crate::Snapshotter::cleanup).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A key breaks the [`SnapshotKey`](crate::SnapshotKey) rules.
    #[error("invalid snapshot key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The root directory cannot hold this snapshotter's state.
    #[error("snapshot root {} cannot be used: {reason}", root.display())]
    InvalidRoot {
        /// The root as given.
        root: PathBuf,
        /// Why not.
        reason: &'static str,
    },
    /// No snapshot has this key.
    #[error("snapshot {key:?} does not exist")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// A snapshot with this key exists already.
    #[error("snapshot {key:?} already exists")]
    AlreadyExists {
        /// The key asked for.
        key: String,
    },
    /// The operation is not one this kind of snapshot allows (committing a view, mounting a
    /// committed snapshot, unpacking into a view).
    #[error("cannot {operation} {kind} snapshot {key:?}")]
    WrongKind {
        /// The snapshot.
        key: String,
        /// What it is.
        kind: SnapshotKind,
        /// What was asked: "commit", "mount", "unpack into".
        operation: &'static str,
    },
    /// The parent given to `prepare` or `view` is not committed.
    #[error("cannot base a snapshot on {kind} snapshot {parent:?}: parents must be committed")]
    ParentNotCommitted {
        /// The parent's key.
        parent: String,
        /// What it is.
        kind: SnapshotKind,
    },
    /// Other snapshots are based on the one to remove.
    #[error("snapshot {key:?} is the parent of {}", quoted(children))]
    HasChildren {
        /// The snapshot.
        key: String,
        /// The keys of its children, sorted.
        children: Vec<String>,
    },
    /// The metadata names a parent that has no record.
    #[error("snapshot metadata is inconsistent: parent {parent:?} of {key:?} has no record")]
    BrokenChain {
        /// The snapshot whose parent is missing.
        key: String,
        /// The missing parent.
        parent: String,
    },
    /// The metadata file cannot be parsed or encoded.
    #[error("snapshot metadata {} is corrupt", path.display())]
    CorruptMetadata {
        /// The metadata file.
        path: PathBuf,
        /// What the JSON codec said.
        #[source]
        source: serde_json::Error,
    },
    /// The metadata file was written by a build with another format.
    #[error("snapshot metadata {} has version {version}, this build reads version 1", path.display())]
    UnknownVersion {
        /// The metadata file.
        path: PathBuf,
        /// The version it declares.
        version: u32,
    },
    /// A file-system operation on the snapshotter's own state failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done: "create", "remove", "lock", "read", "write", "rename".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// Copying a parent's tree into a new snapshot failed at this entry.
    #[error("cannot copy {} into the new snapshot", path.display())]
    Copy {
        /// The entry of the parent's tree.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

fn quoted(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SnapshotError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| SnapshotError::Io {
            action,
            path,
            source,
        }
    }
}
