//! The container's cgroup, as the runtime uses it: the host's manager (v1/hybrid or v2), kept in the
//! state record so that every later verb acts on exactly the directories `create` made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use testudo_cgroups::{
    CgroupError, CgroupManager, CgroupsPath, FreezerState, Hierarchies, Manager, Stats,
};

use crate::plan::CgroupMountSource;

/// One container's cgroup.
pub struct ContainerCgroup {
    manager: Manager,
}

impl ContainerCgroup {
    /// Resolves the spec's `cgroupsPath` (absent: `/<id>`) on this host's hierarchies.
    pub(crate) fn for_new(path: Option<&Path>, id: &str) -> Result<Self, CgroupError> {
        let hierarchies = Hierarchies::detect()?;
        let path = CgroupsPath::parse(path, id)?;
        Ok(Self {
            manager: Manager::new(&hierarchies, &path)?,
        })
    }

    /// The manager as recorded in the state file.
    pub(crate) fn from_record(record: &serde_json::Value) -> Result<Self, serde_json::Error> {
        Ok(Self {
            manager: serde_json::from_value(record.clone())?,
        })
    }

    /// What to record in the state file.
    pub(crate) fn record(&self) -> serde_json::Value {
        serde_json::to_value(&self.manager).unwrap_or_default()
    }

    /// Creates the directories.
    pub(crate) fn create(&mut self) -> Result<(), CgroupError> {
        self.manager.create()
    }

    /// Sets limits.
    pub(crate) fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.manager.apply(resources)
    }

    /// Moves `pid` in.
    pub(crate) fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        self.manager.add_process(pid)
    }

    /// Freezes the container.
    pub(crate) fn freeze(&self) -> Result<(), CgroupError> {
        self.manager.freeze()
    }

    /// Thaws the container.
    pub(crate) fn thaw(&self) -> Result<(), CgroupError> {
        self.manager.thaw()
    }

    /// Whether the freezer holds the container.
    pub(crate) fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(self.manager.freezer_state()? != FreezerState::Thawed)
    }

    /// Every pid in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.manager.pids()
    }

    /// Resource usage, shaped like runc's `events --stats`.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        self.manager.stats()
    }

    /// Removes the directories.
    pub(crate) fn destroy(&self) -> Result<(), CgroupError> {
        self.manager.destroy()
    }

    /// The hierarchies a `cgroup` mount shows inside the container: one entry per directory.
    pub(crate) fn mount_sources(&self) -> Vec<CgroupMountSource> {
        let mut by_dir: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for (controller, dir) in self.manager.paths() {
            by_dir.entry(dir).or_default().push(controller);
        }
        by_dir
            .into_iter()
            .map(|(dir, controllers)| {
                let unified = controllers.iter().any(String::is_empty);
                let names: Vec<&str> = controllers
                    .iter()
                    .map(String::as_str)
                    .filter(|c| !c.is_empty())
                    .collect();
                let name = if unified {
                    "unified".to_string()
                } else {
                    names
                        .iter()
                        .map(|c| c.trim_start_matches("name="))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                CgroupMountSource {
                    name,
                    option: if unified {
                        String::new()
                    } else {
                        names.join(",")
                    },
                    host_dir: dir,
                    unified,
                }
            })
            .collect()
    }
}
