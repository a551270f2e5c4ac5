//! cgroup v2 manager (unified layout).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use serde::{Deserialize, Serialize};
use testudo_linux::bpf::{attach_cgroup_device_program, load_cgroup_device_program, BpfInsn};

use crate::devices::DEVICE_PROGRAM_LICENSE;
use crate::fs::{self, apply_writes, collect_pids, mkdir_p};
use crate::hierarchy::{Hierarchies, OwnCgroups};
use crate::manager::{
    destroy_dirs, enable_controllers, pid_value, CgroupManager, FreezerState, HierarchyDir,
};
use crate::path::{resolve, CgroupsPath};
use crate::plan::plan_v2;
use crate::stats::{self, Stats};
use crate::CgroupError;

/// How long to wait for `cgroup.events` to report the requested freezer state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound of one wait for a `cgroup.events` change notification, after which the
/// file is read again anyway.
const EVENTS_POLL_SLICE: Duration = Duration::from_millis(100);

/// Manages one cgroup on the unified hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2Manager {
    cgroup: HierarchyDir,
    created: Vec<PathBuf>,
}

impl V2Manager {
    /// Resolves `path` on the cgroup2 mount; `own` is consulted only for a relative path.
    pub fn new(
        hierarchies: &Hierarchies,
        path: &CgroupsPath,
        own: &OwnCgroups,
    ) -> Result<Self, CgroupError> {
        let unified = hierarchies
            .unified
            .as_ref()
            .ok_or(CgroupError::NoHierarchy)?;
        let dir = resolve(path, &unified.mount, &unified.root, || {
            own.unified()
                .map(Path::to_path_buf)
                .ok_or_else(|| CgroupError::OwnCgroupUnknown {
                    hierarchy: String::new(),
                })
        })?;
        Ok(Self {
            cgroup: HierarchyDir {
                controllers: unified.controllers.clone(),
                dir,
            },
            created: Vec::new(),
        })
    }

    fn dir(&self) -> PathBuf {
        self.cgroup.dir.path()
    }

    /// Sets `cgroup.freeze` and waits until `cgroup.events` agrees.
    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.dir();
        let value = if frozen { "1" } else { "0" };
        match fs::write(&dir, "cgroup.freeze", value) {
            Err(CgroupError::MissingFile { .. }) => {
                return Err(CgroupError::NoFreezer { path: dir })
            }
            other => other?,
        }
        wait_for_frozen(&dir, frozen)
    }

    fn install_device_program(&self, program: &[BpfInsn]) -> Result<(), CgroupError> {
        let dir = self.dir();
        let cgroup = File::open(&dir).map_err(|e| CgroupError::read(&dir, e))?;
        let attach = load_cgroup_device_program(program, DEVICE_PROGRAM_LICENSE)
            .and_then(|prog| attach_cgroup_device_program(cgroup.as_fd(), prog.as_fd()));
        attach.map_err(|source| CgroupError::DeviceFilter { path: dir, source })
    }
}

/// The `frozen` value of `cgroup.events`, read through `file` (`None`: no such key, the
/// kernel has no v2 freezer).
fn read_frozen(file: &File, path: &Path) -> Result<Option<bool>, CgroupError> {
    let mut buf = [0u8; 256];
    let len = file
        .read_at(&mut buf, 0)
        .map_err(|e| CgroupError::read(path, e))?;
    let text = String::from_utf8_lossy(&buf[..len]);
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("frozen "))
        .map(|v| v.trim() == "1"))
}

/// Waits for `cgroup.events` to say `frozen` is `want`. The kernel signals changes to the
/// file with POLLPRI, so this sleeps in poll rather than spinning.
fn wait_for_frozen(dir: &Path, want: bool) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.events");
    let file = File::open(&path).map_err(|e| CgroupError::read(&path, e))?;
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    loop {
        match read_frozen(&file, &path)? {
            Some(frozen) if frozen == want => return Ok(()),
            Some(_) => {}
            None => {
                return Err(CgroupError::NoFreezer {
                    path: dir.to_path_buf(),
                })
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CgroupError::FreezeTimeout {
                path: dir.to_path_buf(),
                state: if want { "frozen" } else { "thawed" },
                last: format!("frozen {}", u8::from(!want)),
            });
        }
        let slice = left.min(EVENTS_POLL_SLICE);
        let timeout = Timespec::try_from(slice).unwrap_or(Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(&file, PollFlags::PRI)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(CgroupError::read(&path, e.into())),
        }
    }
}

impl CgroupManager for V2Manager {
    fn create(&mut self) -> Result<(), CgroupError> {
        let created = mkdir_p(&self.cgroup.dir)?;
        self.created.extend(created);
        enable_controllers(&self.cgroup.dir, &self.cgroup.controllers);
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        fs::write(&self.dir(), "cgroup.procs", &pid_value(pid)?)
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let plan = plan_v2(resources)?;
        let dir = self.dir();
        apply_writes(&plan.writes, |_| Some(dir.clone()))?;
        if let Some(program) = &plan.device_program {
            self.install_device_program(program)?;
        }
        Ok(())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        let dir = self.dir();
        let Some(wanted) = fs::read_optional(&dir.join("cgroup.freeze"))? else {
            return Err(CgroupError::NoFreezer { path: dir });
        };
        if wanted.trim() == "0" {
            return Ok(FreezerState::Thawed);
        }
        let path = dir.join("cgroup.events");
        let file = File::open(&path).map_err(|e| CgroupError::read(&path, e))?;
        match read_frozen(&file, &path)? {
            Some(true) => Ok(FreezerState::Frozen),
            _ => Ok(FreezerState::Freezing),
        }
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        collect_pids(&self.dir(), &mut pids)?;
        Ok(pids)
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        stats::read_v2(&self.dir())
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        destroy_dirs(&[self.dir()], &self.created)
    }

    fn paths(&self) -> BTreeMap<String, PathBuf> {
        BTreeMap::from([(String::new(), self.dir())])
    }
}
