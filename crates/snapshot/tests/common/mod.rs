//! A scratch directory for one test case, checked on the way out: no mount left under it, and
//! the directory itself removed.

#![allow(clippy::unwrap_used, dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use rustix::mount::UnmountFlags;
use tempfile::TempDir;

pub(crate) struct Scratch {
    dir: Option<TempDir>,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            dir: Some(tempfile::tempdir().unwrap()),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// A fresh, empty directory in the scratch space (a snapshotter root, a mount target).
    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        fs::create_dir_all(&path).unwrap();
        path
    }

    /// Asserts that nothing is mounted under the scratch space, then removes it and checks
    /// that it is gone.
    pub(crate) fn finish(mut self) {
        let dir = self.dir.take().unwrap();
        let path = dir.path().to_owned();
        assert_eq!(
            mounts_under(&path),
            Vec::<PathBuf>::new(),
            "mounts left behind"
        );
        dir.close().unwrap();
        assert!(!path.exists(), "{} left behind", path.display());
    }
}

impl Drop for Scratch {
    // A failing test must not leave mounts for the next ones: detach what it left, deepest first.
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            for point in mounts_under(dir.path()).into_iter().rev() {
                let _ = rustix::mount::unmount(&point, UnmountFlags::DETACH);
            }
        }
    }
}

/// Mount points at or under `dir`, in mount order, from `/proc/self/mountinfo`.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|point| point.starts_with(dir))
        .collect()
}
