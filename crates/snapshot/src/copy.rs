//! The copying snapshotter: each snapshot's `fs/` holds the whole merged tree, copied from its
//! parent when prepared. For hosts where overlayfs cannot be used.

use std::path::{Path, PathBuf};

use crate::overlay::bind;
use crate::store::Store;
use crate::tree::copy_tree;
use crate::{Mount, SnapshotError, SnapshotInfo, SnapshotKind, Snapshotter, WhiteoutFormat};

/// Snapshots as full copies, mounted with bind mounts. Preparing a child costs a copy of its
/// parent's tree (made while holding the snapshotter's lock); layers are unpacked into the copy
/// with [`WhiteoutFormat::Remove`].
#[derive(Debug)]
pub struct CopySnapshotter {
    store: Store,
}

impl CopySnapshotter {
    /// Opens (creating if needed) the snapshotter whose state lives in `root`.
    pub fn open(root: &Path) -> Result<CopySnapshotter, SnapshotError> {
        Ok(CopySnapshotter {
            store: Store::open(root)?,
        })
    }

    fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: SnapshotKind,
    ) -> Result<Vec<Mount>, SnapshotError> {
        let created =
            self.store
                .create(key, parent, kind, |id, ancestors| match ancestors.first() {
                    Some(&parent) => copy_tree(&self.store.fs_dir(parent), &self.store.fs_dir(id)),
                    None => Ok(()),
                })?;
        Ok(self.mounts_of(created.kind, created.id))
    }

    fn mounts_of(&self, kind: SnapshotKind, id: u64) -> Vec<Mount> {
        let fs = self.store.fs_dir(id);
        vec![bind(&fs.to_string_lossy(), kind == SnapshotKind::View)]
    }
}

impl Snapshotter for CopySnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        self.create(key, parent, SnapshotKind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        self.create(key, parent, SnapshotKind::View)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let found = self.store.resolve(key)?;
        if found.kind == SnapshotKind::Committed {
            return Err(SnapshotError::WrongKind {
                key: key.to_owned(),
                kind: found.kind,
                operation: "mount",
            });
        }
        Ok(self.mounts_of(found.kind, found.id))
    }

    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
        self.store.commit(name, key)
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        self.store.remove(key)
    }

    fn stat(&self, key: &str) -> Result<SnapshotInfo, SnapshotError> {
        self.store.stat(key)
    }

    fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        self.store.list()
    }

    fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        self.store.upper_dir(key)
    }

    fn whiteout_format(&self) -> WhiteoutFormat {
        WhiteoutFormat::Remove
    }

    fn cleanup(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        self.store.cleanup()
    }

    fn root(&self) -> &Path {
        self.store.root()
    }
}
