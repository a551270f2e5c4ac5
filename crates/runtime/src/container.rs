//! The verbs that act on an existing container: `state`, `list`, `start`, `kill`, `delete`, `pause`,
//! `resume`, `ps`, `update`, `events`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxResources, Spec};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use serde::Serialize;
use thiserror::Error;

use crate::cgroup::ContainerCgroup;
use crate::hooks::{self, HookError};
use crate::id::ContainerId;
use crate::spec::{self, SpecError};
use crate::state::{process_alive, ContainerDir, ContainerRecord, Phase, StateError, StateRoot};

/// The lifecycle status of a container, as the runtime spec names it (plus `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is still running.
    Creating,
    /// The init waits for `start`.
    Created,
    /// The process runs.
    Running,
    /// The cgroup is frozen.
    Paused,
    /// The process has exited.
    Stopped,
}

impl Status {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        }
    }
}

/// Why a verb on an existing container failed.
#[derive(Debug, Error)]
pub enum ControlError {
    /// The id is invalid.
    #[error(transparent)]
    Id(#[from] crate::id::InvalidContainerId),
    /// State directory trouble, including "does not exist".
    #[error(transparent)]
    State(#[from] StateError),
    /// The stored spec is unusable.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] testudo_cgroups::CgroupError),
    /// A hook failed.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// The verb does not apply in the container's current status.
    #[error("{0}")]
    WrongStatus(String),
    /// The container's process is not running.
    #[error("container not running")]
    NotRunning,
    /// A system call failed.
    #[error("{step}")]
    Io {
        /// What was being done.
        step: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io_step(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControlError {
    let step = step.into();
    move |source| ControlError::Io { step, source }
}

/// The `state` document (runtime spec "State", with runc's extra `rootfs`, `created`, `owner`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateDocument {
    /// Spec version of the container.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host pid of the init, 0 when stopped.
    pub pid: i32,
    /// Lifecycle status.
    pub status: Status,
    /// Bundle path.
    pub bundle: PathBuf,
    /// Root filesystem path.
    pub rootfs: PathBuf,
    /// Creation time.
    pub created: String,
    /// Owner (empty for root, as runc).
    pub owner: String,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A container loaded from its state directory.
pub struct Container {
    dir: ContainerDir,
    record: ContainerRecord,
    cgroup: ContainerCgroup,
}

impl Container {
    /// Loads container `id`; `lock` takes its exclusive lock first.
    pub fn load(root: &StateRoot, id: &str, lock: bool) -> Result<Self, ControlError> {
        let id = ContainerId::new(id)?;
        let mut dir = root.open(&id)?;
        if lock {
            dir = dir.locked()?;
        }
        let record = dir
            .record()?
            .ok_or_else(|| StateError::NotExist(id.to_string()))?;
        let cgroup =
            ContainerCgroup::from_record(&record.cgroup).map_err(|source| StateError::Corrupt {
                path: dir.path().join("state.json"),
                source,
            })?;
        Ok(Self {
            dir,
            record,
            cgroup,
        })
    }

    /// The stored record.
    pub fn record(&self) -> &ContainerRecord {
        &self.record
    }

    /// The current status, from the init's liveness, the exec fifo and the freezer.
    pub fn status(&self) -> Status {
        let r = &self.record;
        if r.phase == Phase::Creating {
            return if process_alive(r.creator_pid, r.creator_start) {
                Status::Creating
            } else {
                Status::Stopped
            };
        }
        if !process_alive(r.pid, r.pid_start) {
            return Status::Stopped;
        }
        if self.dir.fifo_path().exists() {
            return Status::Created;
        }
        if self.cgroup.is_frozen().unwrap_or(false) {
            return Status::Paused;
        }
        Status::Running
    }

    /// The `state` document.
    pub fn state(&self) -> StateDocument {
        let status = self.status();
        StateDocument {
            oci_version: self.record.oci_version.clone(),
            id: self.record.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.record.pid
            },
            status,
            bundle: self.record.bundle.clone(),
            rootfs: self.record.rootfs.clone(),
            created: self.record.created.clone(),
            owner: String::new(),
            annotations: self.record.annotations.clone(),
        }
    }

    /// The spec the container was created from.
    pub fn spec(&self) -> Result<Spec, ControlError> {
        let path = self.dir.config_path();
        let raw = spec::read_limited(&path)?;
        Ok(spec::parse_spec(&path, &raw)?)
    }

    /// The container's cgroup.
    pub fn cgroup(&self) -> &ContainerCgroup {
        &self.cgroup
    }

    fn hook_state(&self, status: Status) -> String {
        crate::create::hook_state(
            &self.record.id,
            self.record.pid,
            &self.record.bundle,
            &self.record.annotations,
        )
        .replacen(
            "\"status\":\"\"",
            &format!("\"status\":\"{}\"", status.as_str()),
            1,
        )
    }

    /// `start`: lets the waiting init execute the container's process, then runs poststart hooks.
    /// Returns the warnings of failed poststart hooks.
    pub fn start(&self) -> Result<Vec<String>, ControlError> {
        match self.status() {
            Status::Created => {}
            Status::Stopped => {
                return Err(ControlError::WrongStatus(
                    "cannot start a container that has stopped".into(),
                ))
            }
            Status::Creating => {
                return Err(ControlError::WrongStatus(
                    "cannot start a container that is still being created".into(),
                ))
            }
            Status::Running | Status::Paused => {
                return Err(ControlError::WrongStatus(
                    "cannot start an already running container".into(),
                ))
            }
        }
        // Before the fifo is opened: that lets the init go on, and a short-lived process can be
        // gone (and reaped) before a later `pidfd_open`.
        let pidfd = self.pidfd()?;
        let fifo_path = self.dir.fifo_path();
        let mut fifo = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo_path)
            .map_err(io_step("open the exec fifo"))?;
        loop {
            let mut fds = [
                PollFd::new(&fifo, PollFlags::IN),
                PollFd::new(&pidfd, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io_step("wait for the init")(e.into())),
            }
            if !fds[0].revents().is_empty() {
                let mut byte = [0u8; 1];
                match fifo.read(&mut byte) {
                    Ok(1) => break,
                    Ok(_) => {
                        return Err(ControlError::WrongStatus(
                            "container init exited before start".into(),
                        ))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(io_step("read the exec fifo")(e)),
                }
            }
            if !fds[1].revents().is_empty() {
                return Err(ControlError::WrongStatus(
                    "container init exited before start".into(),
                ));
            }
        }
        std::fs::remove_file(&fifo_path).map_err(io_step("remove the exec fifo"))?;
        let state = self.hook_state(Status::Running);
        let warnings = match hooks::run_all("poststart", &self.record.poststart, &state) {
            Ok(()) => Vec::new(),
            Err(e) => vec![crate::init::chain(&e)],
        };
        Ok(warnings)
    }

    fn pidfd(&self) -> Result<std::os::fd::OwnedFd, ControlError> {
        let pid = Pid::from_raw(self.record.pid).ok_or(ControlError::NotRunning)?;
        let fd = match pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::SRCH) => return Err(ControlError::NotRunning),
            Err(e) => return Err(io_step("open the init's pidfd")(e.into())),
        };
        // The pid might have been reused between the status check and pidfd_open.
        if !process_alive(self.record.pid, self.record.pid_start) {
            return Err(ControlError::NotRunning);
        }
        Ok(fd)
    }

    /// `kill`: sends `signal` to the init, or with `all` to every process of the container.
    pub fn kill(&self, signal: i32, all: bool) -> Result<(), ControlError> {
        if all {
            for pid in self.cgroup.pids()? {
                let _ = testudo_linux::process::kill(pid, signal);
            }
            return Ok(());
        }
        match self.status() {
            Status::Stopped | Status::Creating => return Err(ControlError::NotRunning),
            _ => {}
        }
        let pidfd = self.pidfd()?;
        match testudo_linux::process::pidfd_send_signal(pidfd.as_fd(), signal) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(ControlError::NotRunning),
            Err(e) => Err(io_step(format!("send signal {signal}"))(e)),
        }
    }

    /// `pause`: freezes every process of the container.
    pub fn pause(&self) -> Result<(), ControlError> {
        match self.status() {
            Status::Running | Status::Created => Ok(self.cgroup.freeze()?),
            Status::Paused => Err(ControlError::WrongStatus("container already paused".into())),
            _ => Err(ControlError::NotRunning),
        }
    }

    /// `resume`: thaws a paused container.
    pub fn resume(&self) -> Result<(), ControlError> {
        match self.status() {
            Status::Paused => Ok(self.cgroup.thaw()?),
            Status::Stopped | Status::Creating => Err(ControlError::NotRunning),
            _ => Err(ControlError::WrongStatus("container not paused".into())),
        }
    }

    /// `update`: applies new resource limits and stores them with the spec.
    pub fn update(&self, resources: &LinuxResources) -> Result<(), ControlError> {
        if self.status() == Status::Stopped {
            return Err(ControlError::NotRunning);
        }
        self.cgroup.apply(resources)?;
        let mut spec = self.spec()?;
        if let Some(linux) = spec.linux_mut() {
            let mut merged = linux.resources().clone().unwrap_or_default();
            merge_resources(&mut merged, resources);
            linux.set_resources(Some(merged));
        }
        let bytes = serde_json::to_vec(&spec)
            .map_err(|e| io_step("serialise the spec")(std::io::Error::other(e)))?;
        self.dir.write_config(&bytes)?;
        Ok(())
    }

    /// `delete`: removes a stopped (or, with `force`, any) container.
    pub fn delete(self, force: bool) -> Result<(), ControlError> {
        let status = self.status();
        match status {
            Status::Stopped | Status::Created => {}
            Status::Creating if !force => {
                return Err(ControlError::WrongStatus(format!(
                    "cannot delete container {} that is still being created",
                    self.record.id
                )))
            }
            Status::Running | Status::Paused if !force => {
                return Err(ControlError::WrongStatus(format!(
                    "cannot delete container {} that is not stopped: {}",
                    self.record.id,
                    status.as_str()
                )))
            }
            _ => {}
        }
        if status != Status::Stopped {
            self.kill_everything()?;
        }
        self.cgroup.destroy()?;
        // Poststop failures are warnings: the container is gone either way (runtime spec).
        let state = self.hook_state(Status::Stopped);
        let hook_result = hooks::run_all("poststop", &self.record.poststop, &state);
        self.dir.remove()?;
        hook_result.map_err(Into::into)
    }

    /// SIGKILLs every process of the container and waits until they are gone.
    fn kill_everything(&self) -> Result<(), ControlError> {
        let frozen = self.cgroup.is_frozen().unwrap_or(false);
        let pidfd = self.pidfd().ok();
        for pid in self.cgroup.pids().unwrap_or_default() {
            let _ = testudo_linux::process::kill(pid, libc::SIGKILL);
        }
        if let Some(fd) = &pidfd {
            let _ = testudo_linux::process::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        }
        if frozen {
            self.cgroup.thaw()?;
        }
        if let Some(fd) = pidfd {
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            let _ = poll(
                &mut fds,
                Some(&rustix::time::Timespec {
                    tv_sec: 10,
                    tv_nsec: 0,
                }),
            );
        }
        // Processes that died still leave the cgroup a moment later.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.cgroup.pids().unwrap_or_default().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

/// Removes the state of a container whose state directory has no record (a `create` that died before
/// writing one); `Ok(false)` if there was no such directory.
pub fn remove_orphan_state(root: &StateRoot, id: &str) -> Result<bool, ControlError> {
    let id = ContainerId::new(id)?;
    let dir = match root.open(&id) {
        Ok(dir) => dir.locked()?,
        Err(StateError::NotExist(_)) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if dir.record()?.is_some() {
        return Ok(false);
    }
    dir.remove()?;
    Ok(true)
}

/// Overlays the limits set in `update` onto `base`.
fn merge_resources(base: &mut LinuxResources, update: &LinuxResources) {
    if update.memory().is_some() {
        base.set_memory(*update.memory());
    }
    if update.cpu().is_some() {
        base.set_cpu(update.cpu().clone());
    }
    if update.pids().is_some() {
        base.set_pids(*update.pids());
    }
    if update.block_io().is_some() {
        base.set_block_io(update.block_io().clone());
    }
    if update.hugepage_limits().is_some() {
        base.set_hugepage_limits(update.hugepage_limits().clone());
    }
    if update.unified().is_some() {
        base.set_unified(update.unified().clone());
    }
}

/// The states of every container under `root`, skipping state directories without a record.
pub fn list(root: &StateRoot) -> Result<Vec<StateDocument>, ControlError> {
    let mut out = Vec::new();
    for id in root.list()? {
        match Container::load(root, id.as_str(), false) {
            Ok(c) => out.push(c.state()),
            Err(ControlError::State(StateError::NotExist(_))) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
