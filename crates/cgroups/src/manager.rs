//! The `CgroupManager` role and the manager that picks v1 or v2 for this host.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::fs;
use crate::hierarchy::{Hierarchies, Layout, OwnCgroups};
use crate::path::{CgroupDir, CgroupsPath};
use crate::stats::Stats;
use crate::v1::V1Manager;
use crate::v2::V2Manager;
use crate::CgroupError;

/// Whether a cgroup's processes are frozen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FreezerState {
    /// Running.
    Thawed,
    /// Being frozen: some processes may still run.
    Freezing,
    /// Every process is frozen.
    Frozen,
}

/// Everything a runtime does with one container's cgroup(s).
///
/// Call order for a new container: [`create`](Self::create), [`apply`](Self::apply),
/// then [`add_process`](Self::add_process) (v1 cpuset and real-time CPU limits must be in
/// place before a task joins).
pub trait CgroupManager {
    /// Creates the cgroup in every hierarchy used (`mkdir -p`), remembering the levels it
    /// created so that [`destroy`](Self::destroy) removes exactly those.
    fn create(&mut self) -> Result<(), CgroupError>;

    /// Moves process `pid` (and its threads) into the cgroup in every hierarchy.
    fn add_process(&self, pid: i32) -> Result<(), CgroupError>;

    /// Sets the limits of `resources`; usable again later to update them.
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError>;

    /// Freezes every process; returns once the kernel reports the cgroup frozen.
    fn freeze(&self) -> Result<(), CgroupError>;

    /// Thaws every process; returns once the kernel reports the cgroup thawed.
    fn thaw(&self) -> Result<(), CgroupError>;

    /// The current freezer state.
    fn freezer_state(&self) -> Result<FreezerState, CgroupError>;

    /// Every pid in the cgroup, sub-cgroups included.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;

    /// Resource usage.
    fn stats(&self) -> Result<Stats, CgroupError>;

    /// Removes the cgroup, the cgroups below it, and the parent levels that
    /// [`create`](Self::create) made and that are now unused. Already removed directories
    /// are fine; a cgroup still busy (its last task exiting) is retried briefly.
    fn destroy(&self) -> Result<(), CgroupError>;

    /// Controller name to directory (`""` is the cgroup2 directory), for the state file.
    fn paths(&self) -> BTreeMap<String, PathBuf>;
}

/// The manager for this host's layout. Serializable, so that a runtime can keep it in its
/// state file and act on the same cgroup from a later process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "layout", rename_all = "lowercase")]
pub enum Manager {
    /// Legacy or hybrid hierarchy.
    V1(V1Manager),
    /// Unified hierarchy.
    V2(V2Manager),
}

impl Manager {
    /// Resolves `path` on the hierarchies of this host, reading `/proc/self/cgroup` only
    /// if `path` is relative.
    pub fn new(hierarchies: &Hierarchies, path: &CgroupsPath) -> Result<Self, CgroupError> {
        let own = match path {
            CgroupsPath::Relative(_) => OwnCgroups::read()?,
            CgroupsPath::Absolute(_) => OwnCgroups::default(),
        };
        Self::with_own_cgroups(hierarchies, path, &own)
    }

    /// Like [`Manager::new`], with the caller's own cgroups given.
    pub fn with_own_cgroups(
        hierarchies: &Hierarchies,
        path: &CgroupsPath,
        own: &OwnCgroups,
    ) -> Result<Self, CgroupError> {
        Ok(match hierarchies.layout() {
            Layout::V1 => Self::V1(V1Manager::new(hierarchies, path, own)?),
            Layout::V2 => Self::V2(V2Manager::new(hierarchies, path, own)?),
        })
    }

    fn inner(&self) -> &dyn CgroupManager {
        match self {
            Self::V1(m) => m,
            Self::V2(m) => m,
        }
    }
}

impl CgroupManager for Manager {
    fn create(&mut self) -> Result<(), CgroupError> {
        match self {
            Self::V1(m) => m.create(),
            Self::V2(m) => m.create(),
        }
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        self.inner().add_process(pid)
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.inner().apply(resources)
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.inner().freeze()
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.inner().thaw()
    }

    fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        self.inner().freezer_state()
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.inner().pids()
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        self.inner().stats()
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        self.inner().destroy()
    }

    fn paths(&self) -> BTreeMap<String, PathBuf> {
        self.inner().paths()
    }
}

/// A cgroup's directory in one hierarchy, with the controllers that hierarchy carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HierarchyDir {
    pub(crate) controllers: Vec<String>,
    pub(crate) dir: CgroupDir,
}

impl HierarchyDir {
    pub(crate) fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The text to write to `cgroup.procs` for `pid`.
pub(crate) fn pid_value(pid: i32) -> Result<String, CgroupError> {
    if pid <= 0 {
        return Err(CgroupError::invalid("pid", pid, "must be positive"));
    }
    Ok(pid.to_string())
}

/// Enables `controllers` in the `cgroup.subtree_control` of every level above the cgroup
/// (cgroup2 only offers a controller's files where the parent enabled it).
pub(crate) fn enable_controllers(dir: &CgroupDir, controllers: &[String]) {
    if controllers.is_empty() {
        return;
    }
    let all = controllers
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut parents = vec![dir.mount.clone()];
    parents.extend(dir.levels());
    parents.pop();
    for parent in parents {
        if fs::write(&parent, "cgroup.subtree_control", &all).is_err() {
            // One unavailable controller fails the whole write (a threaded subtree, a
            // delegation boundary): enable the others one by one; a resource that needs a
            // missing one fails later, naming its file.
            for controller in controllers {
                let _ = fs::write(&parent, "cgroup.subtree_control", &format!("+{controller}"));
            }
        }
    }
}

/// Removes each hierarchy's cgroup (`leaves`), then the parent levels in `created` that
/// are unused, deepest first. Goes through every directory even after a failure, and
/// reports the first one.
pub(crate) fn destroy_dirs(leaves: &[PathBuf], created: &[PathBuf]) -> Result<(), CgroupError> {
    let mut first_error = None;
    for leaf in leaves {
        if let Err(e) = fs::remove_tree(leaf) {
            first_error.get_or_insert(e);
        }
    }
    for dir in created.iter().rev().filter(|d| !leaves.contains(d)) {
        if let Err(e) = fs::remove_if_unused(dir) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
