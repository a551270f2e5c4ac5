//! The overlayfs snapshotter: each snapshot's `fs/` holds one layer's changes, and a snapshot is
//! the overlay of its `fs/` over its ancestors'.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::store::Store;
use crate::{
    mount_all, unmount, Mount, SnapshotError, SnapshotInfo, SnapshotKind, Snapshotter,
    WhiteoutFormat,
};

/// Snapshots as overlayfs layers. See the crate documentation for the directory layout and the
/// limit on the number of layers.
#[derive(Debug)]
pub struct OverlaySnapshotter {
    store: Store,
}

impl OverlaySnapshotter {
    /// Opens (creating if needed) the snapshotter whose state lives in `root`. The root's path
    /// must not contain `,`, `:` or `\`, which overlay options cannot carry unescaped.
    pub fn open(root: &Path) -> Result<OverlaySnapshotter, SnapshotError> {
        check_root(root)?;
        let store = Store::open(root)?;
        // The canonical path may differ from the one given, through symlinks.
        check_root(store.root())?;
        Ok(OverlaySnapshotter { store })
    }

    fn path(&self, id: u64) -> String {
        path_string(&self.store.fs_dir(id))
    }

    fn mounts_of(&self, kind: SnapshotKind, id: u64, ancestors: &[u64]) -> Vec<Mount> {
        let lowers: Vec<String> = ancestors.iter().map(|&a| self.path(a)).collect();
        let work = path_string(&self.store.work_dir(id));
        overlay_mounts(kind == SnapshotKind::View, &self.path(id), &work, &lowers)
    }
}

fn check_root(root: &Path) -> Result<(), SnapshotError> {
    let invalid = |reason| SnapshotError::InvalidRoot {
        root: root.to_owned(),
        reason,
    };
    let text = root.to_str().ok_or_else(|| invalid("it is not UTF-8"))?;
    if text.contains([',', ':', '\\']) {
        return Err(invalid(
            "overlay mount options cannot hold ',', ':' or '\\' in a path",
        ));
    }
    Ok(())
}

/// Store paths are UTF-8: `Store::open` checks the root, and the rest are numbers.
fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A bind mount of `source`.
pub(crate) fn bind(source: &str, read_only: bool) -> Mount {
    let options = if read_only {
        ["ro", "rbind"]
    } else {
        ["rbind", "rw"]
    };
    Mount {
        fstype: "bind".into(),
        source: source.into(),
        options: options.map(String::from).to_vec(),
    }
}

/// The mounts of an active snapshot (`read_only` false) or a view, given its `fs/` and `work/`
/// and its ancestors' `fs/`, nearest first.
fn overlay_mounts(read_only: bool, fs: &str, work: &str, lowers: &[String]) -> Vec<Mount> {
    let overlay = |options: Vec<String>| Mount {
        fstype: "overlay".into(),
        source: "overlay".into(),
        options,
    };
    let lowerdir = format!("lowerdir={}", lowers.join(":"));
    match (read_only, lowers) {
        (false, []) => vec![bind(fs, false)],
        (false, _) => vec![overlay(vec![
            "index=off".into(),
            lowerdir,
            format!("upperdir={fs}"),
            format!("workdir={work}"),
        ])],
        (true, []) => vec![bind(fs, true)],
        // overlayfs needs two lower directories when there is no upper one.
        (true, [lower]) => vec![bind(lower, true)],
        (true, _) => vec![overlay(vec!["ro".into(), "index=off".into(), lowerdir])],
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        let created = self
            .store
            .create(key, parent, SnapshotKind::Active, |id, _| {
                let work = self.store.work_dir(id);
                fs::create_dir(&work).map_err(SnapshotError::io("create", work))
            })?;
        Ok(self.mounts_of(created.kind, created.id, &created.ancestors))
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        let created = self
            .store
            .create(key, parent, SnapshotKind::View, |_, _| Ok(()))?;
        Ok(self.mounts_of(created.kind, created.id, &created.ancestors))
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
        Ok(self.mounts_of(found.kind, found.id, &found.ancestors))
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
        WhiteoutFormat::Overlay
    }

    fn cleanup(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        self.store.cleanup()
    }

    fn root(&self) -> &Path {
        self.store.root()
    }
}

/// Whether overlayfs works for snapshots under `root` (created if missing): mounts a one-file
/// overlay in a temporary directory there and looks for the file. The answer is cached per root
/// for the life of the process; any failure (no overlay module, no privilege, an upper
/// filesystem overlay refuses) is a "no".
pub fn overlay_supported(root: &Path) -> bool {
    static CHECKED: OnceLock<Mutex<HashMap<PathBuf, bool>>> = OnceLock::new();
    let mut checked = CHECKED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *checked
        .entry(root.to_owned())
        .or_insert_with(|| try_overlay(root).unwrap_or(false))
}

fn try_overlay(root: &Path) -> io::Result<bool> {
    fs::create_dir_all(root)?;
    let dir = tempfile::Builder::new()
        .prefix(".overlay-check-")
        .tempdir_in(root)?;
    let [lower, upper, work, merged] =
        ["lower", "upper", "work", "merged"].map(|d| dir.path().join(d));
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d)?;
    }
    fs::write(lower.join("probe"), b"")?;
    let overlay = Mount {
        fstype: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            "index=off".into(),
            format!("lowerdir={}", lower.display()),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ],
    };
    if mount_all(&[overlay], &merged).is_err() {
        return Ok(false);
    }
    let seen = merged.join("probe").exists();
    unmount(&merged).map_err(io::Error::other)?;
    dir.close()?;
    Ok(seen)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn lowers(ids: &[u64]) -> Vec<String> {
        ids.iter()
            .map(|id| format!("/r/snapshots/{id}/fs"))
            .collect()
    }

    #[test]
    fn a_base_snapshot_is_a_writable_bind_of_its_fs() {
        let mounts = overlay_mounts(false, "/r/snapshots/1/fs", "/r/snapshots/1/work", &[]);
        assert_eq!(
            mounts,
            vec![Mount {
                fstype: "bind".into(),
                source: "/r/snapshots/1/fs".into(),
                options: vec!["rbind".into(), "rw".into()],
            }]
        );
    }

    #[test]
    fn an_active_child_is_an_overlay_with_the_nearest_parent_first() {
        let mounts = overlay_mounts(
            false,
            "/r/snapshots/3/fs",
            "/r/snapshots/3/work",
            &lowers(&[2, 1]),
        );
        assert_eq!(
            mounts,
            vec![Mount {
                fstype: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    "index=off".into(),
                    "lowerdir=/r/snapshots/2/fs:/r/snapshots/1/fs".into(),
                    "upperdir=/r/snapshots/3/fs".into(),
                    "workdir=/r/snapshots/3/work".into(),
                ],
            }]
        );
    }

    #[test]
    fn a_view_of_one_layer_is_a_read_only_bind_of_that_layer() {
        let mounts = overlay_mounts(
            true,
            "/r/snapshots/5/fs",
            "/r/snapshots/5/work",
            &lowers(&[4]),
        );
        assert_eq!(mounts, vec![bind("/r/snapshots/4/fs", true)]);
        assert_eq!(mounts[0].options, vec!["ro".to_owned(), "rbind".to_owned()]);
    }

    #[test]
    fn a_view_of_a_chain_is_a_read_only_overlay_without_upper() {
        let mounts = overlay_mounts(
            true,
            "/r/snapshots/5/fs",
            "/r/snapshots/5/work",
            &lowers(&[4, 2]),
        );
        assert_eq!(
            mounts[0].options,
            vec![
                "ro".to_owned(),
                "index=off".to_owned(),
                "lowerdir=/r/snapshots/4/fs:/r/snapshots/2/fs".to_owned()
            ]
        );
    }

    #[test]
    fn an_empty_view_is_a_read_only_bind_of_its_own_fs() {
        let mounts = overlay_mounts(true, "/r/snapshots/6/fs", "/r/snapshots/6/work", &[]);
        assert_eq!(mounts, vec![bind("/r/snapshots/6/fs", true)]);
    }

    #[test]
    fn roots_that_overlay_options_cannot_carry_are_refused() {
        let err = OverlaySnapshotter::open(Path::new("/nonexistent/a:b")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "snapshot root /nonexistent/a:b cannot be used: overlay mount options cannot hold ',', ':' or '\\' in a path"
        );
        assert!(!Path::new("/nonexistent").exists());
    }
}
