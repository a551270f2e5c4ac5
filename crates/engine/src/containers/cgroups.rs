//! The containers' cgroup directories as the engine sees them: the per-namespace level under
//! the cgroup parent, which no single container owns, and the memory controller's OOM count.
//!
//! The runtime creates the container's level (`<cgroup parent>/<namespace>/<id>`, or
//! `<cgroup parent>/<namespace>/<cell id>/<id>` in a cell) in every hierarchy and removes, on
//! delete, the levels it made itself; a namespace or cell level made for one container and used
//! by a second would outlive both, so the engine removes it once it is empty.

use std::io;
use std::path::{Path, PathBuf};

use testudo_cgroups::Hierarchies;

/// Where the cgroup parent sits in each mounted hierarchy.
#[derive(Debug, Clone, Default)]
pub(super) struct CgroupDirs {
    /// `<mount>/<cgroup parent>` for every v1 hierarchy and the cgroup2 mount.
    parents: Vec<PathBuf>,
    /// The same for the hierarchy with the memory controller (v1), or the cgroup2 mount when it
    /// carries it.
    memory: Option<PathBuf>,
}

/// `cgroup` (an absolute cgroup path) below a hierarchy mounted at `mount` whose root is `root`.
fn below(mount: &Path, root: &Path, cgroup: &Path) -> Option<PathBuf> {
    let rel = cgroup.strip_prefix(root).ok()?;
    Some(mount.join(rel))
}

impl CgroupDirs {
    /// The directories of `cgroup_parent` on this host; none if no hierarchy can be found (the
    /// engine then skips the clean-up and the OOM check).
    pub(super) fn detect(cgroup_parent: &Path) -> Self {
        let hierarchies = match Hierarchies::detect() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "no cgroup hierarchy found");
                return Self::default();
            }
        };
        let parent = Path::new("/").join(cgroup_parent);
        let mut dirs = Self::default();
        for h in &hierarchies.v1 {
            if let Some(dir) = below(&h.mount, &h.root, &parent) {
                if h.has("memory") {
                    dirs.memory = Some(dir.clone());
                }
                dirs.parents.push(dir);
            }
        }
        if let Some(u) = &hierarchies.unified {
            if let Some(dir) = below(&u.mount, &u.root, &parent) {
                if dirs.memory.is_none() && hierarchies.unified_has("memory") {
                    dirs.memory = Some(dir.clone());
                }
                dirs.parents.push(dir);
            }
        }
        dirs
    }

    /// Removes, in every hierarchy, the container's cgroup `level` (relative to the cgroup
    /// parent) if the runtime left it (its monitor died before it could delete the container)
    /// and then each level above it up to the parent; a level that is not empty (another
    /// container's cgroup, a live process) stays.
    pub(super) fn remove_levels(&self, level: &Path) {
        for parent in &self.parents {
            for dir in level.ancestors().filter(|l| !l.as_os_str().is_empty()) {
                let dir = parent.join(dir);
                match std::fs::remove_dir(&dir) {
                    Ok(()) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound
                                | io::ErrorKind::DirectoryNotEmpty
                                | io::ErrorKind::ResourceBusy
                        ) => {}
                    Err(e) => {
                        tracing::warn!(path = %dir.display(), error = %e, "cannot remove a cgroup");
                    }
                }
            }
        }
    }

    /// How many processes the kernel's OOM killer killed in the memory cgroup of the
    /// container at `level` since it was made (`oom_kill` of v1 `memory.oom_control` or v2
    /// `memory.events`); 0 if unknown.
    pub(super) fn oom_kills(&self, level: &Path) -> u64 {
        let Some(memory) = &self.memory else {
            return 0;
        };
        let dir = memory.join(level);
        ["memory.oom_control", "memory.events"]
            .iter()
            .find_map(|file| std::fs::read_to_string(dir.join(file)).ok())
            .map_or(0, |text| oom_kill_count(&text))
    }
}

/// The `oom_kill N` line of a flat-keyed cgroup file.
fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.strip_prefix("oom_kill "))
        .find_map(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oom_kill_count_is_read_from_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v1), 2);
        assert_eq!(oom_kill_count(v2), 1);
        assert_eq!(oom_kill_count("oom_kill_disable 0\n"), 0);
    }

    #[test]
    fn a_cgroup_outside_a_bind_mounted_root_is_not_below_it() {
        let mount = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(
            below(mount, Path::new("/"), Path::new("/testudo")),
            Some(PathBuf::from("/sys/fs/cgroup/memory/testudo"))
        );
        assert_eq!(
            below(mount, Path::new("/user.slice"), Path::new("/testudo")),
            None
        );
    }
}
