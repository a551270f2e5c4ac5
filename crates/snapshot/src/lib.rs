//! Snapshots: the directories that image layers are unpacked into and that containers' root
//! filesystems are mounted from, modelled on containerd's snapshotters. A snapshot is *active*
//! (writable, one per layer being unpacked or per container), *committed* (read-only, usable as a
//! parent) or a *view* (read-only, over a committed chain). Preparing or viewing a snapshot
//! returns the [`Mount`]s that would assemble it, as data; [`mount_all`] applies them.
//!
//! Two implementations pass one test suite: [`OverlaySnapshotter`] (each snapshot holds one
//! layer's changes; a container is an overlayfs mount of its chain) and [`CopySnapshotter`]
//! (each snapshot holds a full copy of the merged tree; for hosts without overlayfs, see
//! [`overlay_supported`]).
//!
//! Non-goals: unpacking layers (`testudo-image` writes into [`Snapshotter::upper_dir`] in the
//! [`WhiteoutFormat`] the snapshotter asks for), garbage collection policy (callers remove what
//! they no longer reference), and mounting inside a container's namespaces (the runtime's job).
//!
//! Design decisions:
//! - State is a root directory with `snapshots/<n>/fs` (and `work` for overlay active
//!   snapshots) and one `metadata.json` mapping keys to records. Directories are named by small
//!   numeric ids rather than keys so that overlay's `lowerdir` list stays short (see below) and
//!   keys never become path components. Mutations hold an exclusive `flock` on `root/lock` and
//!   write the metadata atomically (temp file, fsync, rename, fsync of the directory). A
//!   directory is created before its record is written and its record is removed before the
//!   directory, so a crash leaves at worst a directory without a record, which
//!   [`Snapshotter::cleanup`] removes.
//! - overlayfs options go to the kernel in one page with `mount(2)`: 4096 bytes of
//!   `lowerdir=...`. Short paths give room for about 60 layers under a typical root; when the
//!   options do not fit, [`mount_all`] uses the new mount API and passes each lower directory as
//!   its own `lowerdir+` parameter (Linux 6.8 and later), which has no total limit but takes
//!   paths of at most 255 bytes each (longer ones are refused by name). containerd
//!   instead `chdir`s into the snapshot directory and uses relative paths, which a multithreaded
//!   daemon cannot do safely.
//! - Overlay mounts carry `index=off`: lower directories are shared by many mounts, and the
//!   inode index would tie an upper directory to the lowers it was first mounted with.
//! - The copy fallback copies with ordinary system calls (no reflinks), preserving modes,
//!   owners, extended attributes, times, symlinks, device nodes, fifos and hard links.
//! - Dependencies beyond the workspace's usual ones: `tempfile`, for the throwaway directory in
//!   which [`overlay_supported`] tries a mount.

mod copy;
mod error;
mod key;
mod mount;
mod overlay;
mod store;
mod tree;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use copy::CopySnapshotter;
pub use error::SnapshotError;
pub use key::SnapshotKey;
pub use mount::{mount_all, unmount, MountError};
pub use overlay::{overlay_supported, OverlaySnapshotter};

/// One mount that assembles a snapshot, as data (containerd's `Mount`): `fstype` is `bind` or a
/// filesystem type such as `overlay`; `options` are `mount(8)`-style words, flags (`ro`,
/// `rbind`, `nosuid`) and filesystem options (`lowerdir=...`) alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// `bind` or a filesystem type for `mount(2)`.
    pub fstype: String,
    /// The directory to bind, or the filesystem's source name.
    pub source: String,
    /// Flags and filesystem options.
    pub options: Vec<String>,
}

/// What a snapshot is for, which decides what may be done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// Read-only and final; may be the parent of other snapshots.
    Committed,
    /// Writable; may be committed.
    Active,
    /// A read-only look at a committed chain; may only be removed.
    View,
}

impl fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SnapshotKind::Committed => "committed",
            SnapshotKind::Active => "active",
            SnapshotKind::View => "view",
        })
    }
}

/// What is recorded about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The snapshot's key (a committed layer's chain ID, a container id, ...).
    pub key: String,
    /// The key of the committed snapshot it is based on.
    pub parent: Option<String>,
    /// What it is for.
    pub kind: SnapshotKind,
    /// When it was prepared (or viewed); committing keeps the time.
    pub created: SystemTime,
}

/// How a layer's deletions must be written into a snapshot's [`upper_dir`](Snapshotter::upper_dir).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WhiteoutFormat {
    /// overlayfs's own format: a deleted path becomes a character device 0:0, an opaque
    /// directory gets the `trusted.overlay.opaque="y"` attribute. The directory holds only the
    /// layer's changes.
    Overlay,
    /// The directory already holds the parent's merged tree: deleted paths are removed from it
    /// and an opaque directory's old contents are emptied.
    Remove,
}

/// A store of snapshots that returns mounts as data. Keys are validated as [`SnapshotKey`]s;
/// every method that takes one refuses an invalid key with [`SnapshotError::InvalidKey`].
pub trait Snapshotter: Send + Sync {
    /// Creates an active (writable) snapshot `key` on top of the committed `parent`, and returns
    /// the mounts that assemble it.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError>;

    /// Creates a read-only view `key` of the committed `parent` (empty without one), and returns
    /// the mounts that assemble it.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError>;

    /// The mounts of an active snapshot or a view, as `prepare` or `view` returned them.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError>;

    /// Turns the active snapshot `key` into the committed snapshot `name`; `key` is gone after.
    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError>;

    /// Removes a snapshot and its directories; refused while other snapshots have it as parent.
    fn remove(&self, key: &str) -> Result<(), SnapshotError>;

    /// What is recorded about `key`.
    fn stat(&self, key: &str) -> Result<SnapshotInfo, SnapshotError>;

    /// Every snapshot, ordered by key.
    fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError>;

    /// The directory a layer is unpacked into for the active snapshot `key`, in
    /// [`whiteout_format`](Self::whiteout_format).
    fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError>;

    /// How deletions must be written into [`upper_dir`](Self::upper_dir).
    fn whiteout_format(&self) -> WhiteoutFormat;

    /// Removes what a crash left behind (snapshot directories without a record, a half-written
    /// metadata file) and returns the paths removed.
    fn cleanup(&self) -> Result<Vec<PathBuf>, SnapshotError>;

    /// The root directory holding this snapshotter's state.
    fn root(&self) -> &Path;
}
