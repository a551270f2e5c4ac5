//! cgroup v1 manager (legacy and hybrid layouts).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::fs::{self, apply_writes, collect_pids, mkdir_p};
use crate::hierarchy::{Hierarchies, OwnCgroups};
use crate::manager::{
    destroy_dirs, enable_controllers, pid_value, CgroupManager, FreezerState, HierarchyDir,
};
use crate::path::{resolve, CgroupsPath};
use crate::plan::{needs_current_memory_limit, plan_v1, Controller, V1Context};
use crate::stats::{self, Stats};
use crate::CgroupError;

/// Attempts at freezing before giving up (runc's numbers: a v1 cgroup whose processes
/// keep forking can stay FREEZING; an occasional thaw and sleep helps it through).
const FREEZE_ATTEMPTS: u32 = 1000;

/// Manages one cgroup across every v1 hierarchy, plus the cgroup2 mount in hybrid mode
/// (for the controllers that live only there, such as hugetlb on some hosts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Manager {
    hierarchies: Vec<HierarchyDir>,
    unified: Option<HierarchyDir>,
    created: Vec<PathBuf>,
}

impl V1Manager {
    /// Resolves `path` in every v1 hierarchy (and the cgroup2 mount, if any); `own` is
    /// consulted only for a relative path.
    pub fn new(
        hierarchies: &Hierarchies,
        path: &CgroupsPath,
        own: &OwnCgroups,
    ) -> Result<Self, CgroupError> {
        let mut dirs = Vec::with_capacity(hierarchies.v1.len());
        for h in &hierarchies.v1 {
            let key = h
                .controllers
                .first()
                .map(String::as_str)
                .unwrap_or_default();
            let dir = resolve(path, &h.mount, &h.root, || {
                own.v1(key)
                    .map(Path::to_path_buf)
                    .ok_or_else(|| CgroupError::OwnCgroupUnknown {
                        hierarchy: h.controllers.join(","),
                    })
            })?;
            dirs.push(HierarchyDir {
                controllers: h.controllers.clone(),
                dir,
            });
        }
        let unified = match &hierarchies.unified {
            Some(u) => Some(HierarchyDir {
                controllers: u.controllers.clone(),
                dir: resolve(path, &u.mount, &u.root, || {
                    own.unified().map(Path::to_path_buf).ok_or_else(|| {
                        CgroupError::OwnCgroupUnknown {
                            hierarchy: String::new(),
                        }
                    })
                })?,
            }),
            None => None,
        };
        Ok(Self {
            hierarchies: dirs,
            unified,
            created: Vec::new(),
        })
    }

    fn all_dirs(&self) -> impl Iterator<Item = &HierarchyDir> {
        self.hierarchies.iter().chain(self.unified.as_ref())
    }

    fn hugetlb_on_unified(&self) -> bool {
        !self.hierarchies.iter().any(|h| h.has("hugetlb"))
            && self.unified.as_ref().is_some_and(|u| u.has("hugetlb"))
    }

    /// The directory receiving `controller`'s files.
    fn dir_of(&self, controller: Controller) -> Option<PathBuf> {
        if controller == Controller::Unified {
            return self.unified.as_ref().map(|u| u.dir.path());
        }
        let name = controller.as_str();
        if let Some(h) = self.hierarchies.iter().find(|h| h.has(name)) {
            return Some(h.dir.path());
        }
        // Only these use the same file names on the cgroup2 mount as the v1 plan does.
        if matches!(controller, Controller::Hugetlb | Controller::Rdma) {
            return self
                .unified
                .as_ref()
                .filter(|u| u.has(name))
                .map(|u| u.dir.path());
        }
        None
    }

    /// The directory whose `cgroup.procs` lists the container's processes.
    fn procs_dir(&self) -> Option<PathBuf> {
        ["devices", "freezer", "memory", "pids"]
            .iter()
            .find_map(|c| self.hierarchies.iter().find(|h| h.has(c)))
            .or_else(|| self.all_dirs().next())
            .map(|h| h.dir.path())
    }

    fn freezer_dir(&self) -> Result<PathBuf, CgroupError> {
        self.dir_of(Controller::Freezer)
            .ok_or_else(|| CgroupError::NoFreezer {
                path: self.procs_dir().unwrap_or_default(),
            })
    }
}

impl CgroupManager for V1Manager {
    fn create(&mut self) -> Result<(), CgroupError> {
        let dirs: Vec<HierarchyDir> = self.all_dirs().cloned().collect();
        for h in &dirs {
            let created = mkdir_p(&h.dir)?;
            // Recorded before anything else can fail, so destroy() cleans up a half create.
            self.created.extend(created.iter().cloned());
            if h.has("cpuset") {
                if let Some(parent) = created.first().and_then(|d| d.parent()) {
                    let (cpus, mems) = cpuset_values(parent, &h.dir.mount)?;
                    for dir in &created {
                        fs::write(dir, "cpuset.cpus", &cpus)?;
                        fs::write(dir, "cpuset.mems", &mems)?;
                    }
                }
            }
        }
        if let Some(u) = &self.unified {
            enable_controllers(&u.dir, &u.controllers);
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid_value(pid)?;
        for h in self.all_dirs() {
            fs::write(&h.dir.path(), "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let mut ctx = V1Context {
            hugetlb_on_unified: self.hugetlb_on_unified(),
            current_memory_limit: None,
        };
        if needs_current_memory_limit(resources) {
            if let Some(dir) = self.dir_of(Controller::Memory) {
                let path = dir.join("memory.limit_in_bytes");
                let text = fs::read(&path)?;
                let limit = text
                    .trim()
                    .parse()
                    .map_err(|_| CgroupError::parse(&path, format!("not a number: {text:?}")))?;
                ctx.current_memory_limit = Some(limit);
            }
        }
        let writes = plan_v1(resources, &ctx)?;
        apply_writes(&writes, |c| self.dir_of(c))
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let dir = self.freezer_dir()?;
        let state = dir.join("freezer.state");
        let mut last = String::new();
        for attempt in 0..FREEZE_ATTEMPTS {
            if attempt % 50 == 49 {
                // Best effort: let processes that keep appearing settle, then try again.
                let _ = fs::write_raw(&state, "THAWED");
                std::thread::sleep(Duration::from_millis(10));
            }
            fs::write(&dir, "freezer.state", "FROZEN")?;
            if attempt % 25 == 24 {
                std::thread::sleep(Duration::from_micros(10));
            }
            last = fs::read(&state)?.trim().to_owned();
            match last.as_str() {
                "FROZEN" => return Ok(()),
                "FREEZING" => {}
                _ => {
                    return Err(CgroupError::parse(
                        &state,
                        format!("unexpected state {last:?} while freezing"),
                    ))
                }
            }
        }
        // Stuck in FREEZING: leaving it half-frozen is worse than not freezing.
        let _ = fs::write_raw(&state, "THAWED");
        Err(CgroupError::FreezeTimeout {
            path: dir,
            state: "FROZEN",
            last,
        })
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        let dir = self.freezer_dir()?;
        let state = dir.join("freezer.state");
        let mut last = String::new();
        for _ in 0..FREEZE_ATTEMPTS {
            fs::write(&dir, "freezer.state", "THAWED")?;
            last = fs::read(&state)?.trim().to_owned();
            if last == "THAWED" {
                return Ok(());
            }
        }
        Err(CgroupError::FreezeTimeout {
            path: dir,
            state: "THAWED",
            last,
        })
    }

    fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        let state = self.freezer_dir()?.join("freezer.state");
        match fs::read(&state)?.trim() {
            "THAWED" => Ok(FreezerState::Thawed),
            "FREEZING" => Ok(FreezerState::Freezing),
            "FROZEN" => Ok(FreezerState::Frozen),
            other => Err(CgroupError::parse(
                &state,
                format!("unknown state {other:?}"),
            )),
        }
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        if let Some(dir) = self.procs_dir() {
            collect_pids(&dir, &mut pids)?;
        }
        Ok(pids)
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        stats::read_v1(|c| self.dir_of(c), self.hugetlb_on_unified())
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        let leaves: Vec<PathBuf> = self.all_dirs().map(|h| h.dir.path()).collect();
        destroy_dirs(&leaves, &self.created)
    }

    fn paths(&self) -> BTreeMap<String, PathBuf> {
        let mut paths = BTreeMap::new();
        for h in &self.hierarchies {
            for c in &h.controllers {
                paths.insert(c.clone(), h.dir.path());
            }
        }
        if let Some(u) = &self.unified {
            paths.insert(String::new(), u.dir.path());
            for c in &u.controllers {
                paths.entry(c.clone()).or_insert_with(|| u.dir.path());
            }
        }
        paths
    }
}

/// `cpuset.cpus` and `cpuset.mems` of `dir`, filling them in from the nearest non-empty
/// ancestor (up to the `mount` root) when empty: a v1 task cannot join a cpuset without
/// both.
fn cpuset_values(dir: &Path, mount: &Path) -> Result<(String, String), CgroupError> {
    let mut cpus = fs::read(&dir.join("cpuset.cpus"))?.trim().to_owned();
    let mut mems = fs::read(&dir.join("cpuset.mems"))?.trim().to_owned();
    if (cpus.is_empty() || mems.is_empty()) && dir != mount {
        if let Some(parent) = dir.parent() {
            let (parent_cpus, parent_mems) = cpuset_values(parent, mount)?;
            if cpus.is_empty() {
                fs::write(dir, "cpuset.cpus", &parent_cpus)?;
                cpus = parent_cpus;
            }
            if mems.is_empty() {
                fs::write(dir, "cpuset.mems", &parent_mems)?;
                mems = parent_mems;
            }
        }
    }
    Ok((cpus, mems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hierarchy::tests::hybrid;

    fn manager(path: &str) -> V1Manager {
        let own =
            OwnCgroups::parse("4:memory:/process_api/e16f\n3:cpuset:/\n0::/\n").expect("parses");
        let path = CgroupsPath::parse(Some(Path::new(path)), "ctr").expect("valid");
        V1Manager::new(&hybrid(), &path, &own).expect("resolves")
    }

    #[test]
    fn paths_cover_every_hierarchy_and_the_unified_mount_in_hybrid_mode() {
        let paths = manager("/testudo/c1").paths();
        assert_eq!(
            paths["memory"],
            Path::new("/sys/fs/cgroup/memory/testudo/c1")
        );
        assert_eq!(
            paths["name=systemd"],
            Path::new("/sys/fs/cgroup/systemd/testudo/c1")
        );
        assert_eq!(paths[""], Path::new("/sys/fs/cgroup/unified/testudo/c1"));
        assert_eq!(
            paths["hugetlb"],
            Path::new("/sys/fs/cgroup/unified/testudo/c1")
        );
        assert!(!paths.contains_key("net_cls"));
    }

    #[test]
    fn hugetlb_is_written_on_the_unified_mount_when_v1_lacks_it() {
        let m = manager("/x");
        assert!(m.hugetlb_on_unified());
        assert_eq!(
            m.dir_of(Controller::Hugetlb),
            Some(PathBuf::from("/sys/fs/cgroup/unified/x"))
        );
        assert_eq!(m.dir_of(Controller::NetCls), None);
        assert_eq!(
            m.procs_dir(),
            Some(PathBuf::from("/sys/fs/cgroup/devices/x"))
        );
    }

    #[test]
    fn relative_paths_follow_own_cgroup_per_hierarchy() {
        let own = OwnCgroups::parse("4:memory:/process_api/e16f\n").expect("parses");
        let path = CgroupsPath::parse(Some(Path::new("c")), "ctr").expect("valid");
        let err = V1Manager::new(&hybrid(), &path, &own).expect_err("cpu missing from own");
        assert!(matches!(err, CgroupError::OwnCgroupUnknown { .. }));

        let own = OwnCgroups::parse(
            "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n4:memory:/process_api/e16f\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n",
        )
        .expect("parses");
        let m = V1Manager::new(&hybrid(), &path, &own).expect("resolves");
        let paths = m.paths();
        assert_eq!(
            paths["memory"],
            Path::new("/sys/fs/cgroup/memory/process_api/e16f/c")
        );
        assert_eq!(paths["cpu"], Path::new("/sys/fs/cgroup/cpu/c"));
    }

    #[test]
    fn empty_cpuset_levels_are_filled_from_the_nearest_non_empty_ancestor() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let a = root.join("a");
        let b = a.join("b");
        std::fs::create_dir_all(&b).expect("mkdir");
        for (dir, cpus, mems) in [
            (root, "0-1", "0"),
            (a.as_path(), "", ""),
            (b.as_path(), "", ""),
        ] {
            std::fs::write(dir.join("cpuset.cpus"), cpus).expect("write");
            std::fs::write(dir.join("cpuset.mems"), mems).expect("write");
        }
        let values = cpuset_values(&b, root).expect("filled");
        assert_eq!(values, ("0-1".to_owned(), "0".to_owned()));
        assert_eq!(
            std::fs::read_to_string(a.join("cpuset.cpus")).expect("read"),
            "0-1"
        );
        assert_eq!(
            std::fs::read_to_string(b.join("cpuset.mems")).expect("read"),
            "0"
        );
    }

    #[test]
    fn manager_round_trips_through_json_for_the_state_file() {
        let m = crate::Manager::V1(manager("/s/t"));
        let json = serde_json::to_string(&m).expect("serialises");
        assert!(json.starts_with("{\"layout\":\"v1\""), "{json}");
        let back: crate::Manager = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, m);
    }
}
