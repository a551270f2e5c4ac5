//! `create`: from a bundle to an init that waits for `start`.
//!
//! Order matters for cleanup: the bundle is checked before anything exists; then the state directory,
//! the cgroup and the init are created, each registered with a guard that undoes them all if a later
//! step fails, so a failed `create` leaves nothing behind.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use oci_spec::runtime::Spec;
use thiserror::Error;

use crate::cgroup::ContainerCgroup;
use crate::hooks::{self, HookError};
use crate::id::ContainerId;
use crate::idmap;
use crate::plan::{self, HookPlan, HostFacts, InitPlan, SeccompPlan, StartGate};
use crate::spawn::{spawn_init, IdMaps};
use crate::spec::{self, SpecError};
use crate::state::{process_stat, ContainerDir, ContainerRecord, Phase, StateError, StateRoot};
use crate::sync::{self, SyncMessage};

/// Options of `create` (and `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Where to write the init's pid.
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the terminal's master descriptor.
    pub console_socket: Option<PathBuf>,
    /// Number of descriptors after stdio passed to the container (plus `LISTEN_FDS`).
    pub preserve_fds: u32,
    /// Use `chroot` instead of `pivot_root`.
    pub no_pivot: bool,
    /// Do not give the container its own session keyring.
    pub no_new_keyring: bool,
}

/// Why `create` failed.
#[derive(Debug, Error)]
pub enum CreateError {
    /// The id is invalid.
    #[error(transparent)]
    Id(#[from] crate::id::InvalidContainerId),
    /// The bundle is unusable.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The state directory could not be created or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The cgroup could not be set up.
    #[error(transparent)]
    Cgroup(#[from] testudo_cgroups::CgroupError),
    /// The seccomp profile cannot be compiled.
    #[error(transparent)]
    Seccomp(#[from] testudo_seccomp::SeccompError),
    /// A hook failed.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// An idmapped mount could not be prepared.
    #[error(transparent)]
    IdmappedMount(#[from] idmap::IdmappedMountError),
    /// A system call of the runtime process failed.
    #[error("{step}")]
    Io {
        /// What was being done.
        step: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The init reported a failure.
    #[error("{0}")]
    Init(String),
    /// The init exited without saying why.
    #[error("container init exited before it was ready")]
    InitExited,
    /// The init ended without reporting, with this wait status.
    #[error("container init {0} before it was ready")]
    InitDied(String),
    /// A combination of namespaces this runtime does not support.
    #[error(transparent)]
    Namespaces(#[from] plan::NamespaceError),
    /// A feature this runtime does not support yet.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A terminal was requested without a way to hand it over.
    #[error("process.terminal is set but no --console-socket was given")]
    NoConsoleSocket,
}

fn io_step(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> CreateError {
    let step = step.into();
    move |source| CreateError::Io { step, source }
}

/// The result of a successful `create`.
#[derive(Debug)]
pub struct Created {
    /// Host pid of the container's init (a child of the calling process).
    pub pid: i32,
    /// Things the runtime changed from the spec (clamped limits), for the caller to report.
    pub warnings: Vec<String>,
    hook_state: String,
    poststart: Option<Vec<oci_spec::runtime::Hook>>,
}

/// What a `create` has made so far; undone on drop unless disarmed.
struct Rollback {
    dir: ContainerDir,
    cgroup: ContainerCgroup,
    pid: Option<i32>,
    armed: bool,
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            }
        }
        let _ = self.cgroup.destroy();
        let _ = self.dir.remove();
    }
}

/// Facts about this process that planning needs.
pub(crate) fn host_facts() -> HostFacts {
    use rustix::process::{getrlimit, Resource};
    let resources = [
        Resource::Cpu,
        Resource::Fsize,
        Resource::Data,
        Resource::Stack,
        Resource::Core,
        Resource::Rss,
        Resource::Nproc,
        Resource::Nofile,
        Resource::Memlock,
        Resource::As,
        Resource::Locks,
        Resource::Sigpending,
        Resource::Msgqueue,
        Resource::Nice,
        Resource::Rtprio,
        Resource::Rttime,
    ];
    HostFacts {
        last_cap: testudo_linux::caps::last_capability().unwrap_or(40),
        rlimits: resources
            .into_iter()
            .map(|r| {
                let l = getrlimit(r);
                (
                    r as i32,
                    l.current.unwrap_or(u64::MAX),
                    l.maximum.unwrap_or(u64::MAX),
                )
            })
            .collect(),
        oom_score_adj: std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
    }
}

/// The state JSON for hooks (`status` left empty for the sender to fill).
pub(crate) fn hook_state(
    id: &str,
    pid: i32,
    bundle: &Path,
    annotations: &BTreeMap<String, String>,
) -> String {
    serde_json::json!({
        "ociVersion": "1.2.0",
        "id": id,
        "status": "",
        "pid": pid,
        "bundle": bundle,
        "annotations": annotations,
    })
    .to_string()
}

/// Compiles the spec's seccomp profile, if any.
pub(crate) fn seccomp_plan(spec: &Spec) -> Result<Option<SeccompPlan>, CreateError> {
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let program = testudo_seccomp::compile(profile)?;
    if program.needs_listener() {
        return Err(CreateError::Unsupported(
            "seccomp SCMP_ACT_NOTIFY is not supported yet",
        ));
    }
    Ok(Some(SeccompPlan {
        instructions: program
            .instructions()
            .iter()
            .map(|i| (i.code, i.jt, i.jf, i.k))
            .collect(),
        flags: program.flags(),
    }))
}

/// The spec's annotations, sorted.
pub(crate) fn annotations(spec: &Spec) -> BTreeMap<String, String> {
    spec.annotations()
        .as_ref()
        .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Moves `fd` to a number at or above `min`, so it cannot shadow a preserved descriptor.
fn above(fd: OwnedFd, min: u32) -> Result<OwnedFd, CreateError> {
    if u32::try_from(fd.as_raw_fd()).unwrap_or(0) >= min {
        return Ok(fd);
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, i32::try_from(min).unwrap_or(i32::MAX))
        .map_err(|e| io_step("move descriptor")(e.into()))
}

/// Creates the container `id` from `opts.bundle`; its init waits for `start`.
pub fn create(
    root: &StateRoot,
    id: &ContainerId,
    opts: &CreateOptions,
) -> Result<Created, CreateError> {
    create_gated(root, id, opts, Gate::Fifo).map(|(created, _)| created)
}

/// `run`: creates the container and starts it at once, without the exec fifo (the init is told
/// on the sync socket), then runs the poststart hooks; their failures are warnings.
pub fn create_and_start(
    root: &StateRoot,
    id: &ContainerId,
    opts: &CreateOptions,
) -> Result<Created, CreateError> {
    let (mut created, stream) = create_gated(root, id, opts, Gate::Message)?;
    let started = stream.ok_or(CreateError::InitExited).and_then(|mut s| {
        sync::send(&mut s, &SyncMessage::Start).map_err(io_step("start the init"))
    });
    if let Err(e) = started {
        // Created but not started: nothing of it may stay.
        if let Ok(container) = crate::container::Container::load(root, id.as_str(), true) {
            let _ = container.delete(true);
        }
        return Err(e);
    }
    let poststart = hooks::from_spec(created.poststart.as_ref());
    let state = created
        .hook_state
        .replacen("\"status\":\"\"", "\"status\":\"running\"", 1);
    if let Err(e) = hooks::run_all("poststart", &poststart, &state) {
        created.warnings.push(crate::init::chain(&e));
    }
    Ok(created)
}

/// How the init of a new container is told to go on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    Fifo,
    Message,
}

fn create_gated(
    root: &StateRoot,
    id: &ContainerId,
    opts: &CreateOptions,
    gate: Gate,
) -> Result<(Created, Option<UnixStream>), CreateError> {
    let bundle = spec::load_bundle(&opts.bundle)?;
    let spec = &bundle.spec;
    let linux = spec.linux().as_ref().ok_or(SpecError::MissingLinux)?;
    let process = spec.process().as_ref().ok_or(SpecError::MissingProcess)?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() {
        return Err(CreateError::NoConsoleSocket);
    }
    let namespaces = plan::plan_namespaces(linux.namespaces().as_deref().unwrap_or_default())?;
    let seccomp = seccomp_plan(spec)?;

    let (mut rollback, mut record) = make_state(root, id, &bundle)?;
    let (dir, cgroup) = (&rollback.dir, &rollback.cgroup);
    if let Some(resources) = plan::effective_resources(spec) {
        cgroup.apply(&resources)?;
    }
    let listen_fds: u32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let first_private = 3 + opts.preserve_fds + listen_fds;
    let fifo = match gate {
        Gate::Fifo => Some(make_fifo(dir, first_private)?),
        Gate::Message => None,
    };
    let console = match (&opts.console_socket, terminal) {
        (Some(path), true) => {
            let stream = UnixStream::connect(path).map_err(io_step(format!(
                "connect to console socket {}",
                path.display()
            )))?;
            Some(above(OwnedFd::from(stream), first_private)?)
        }
        _ => None,
    };
    let (mut process_plan, adjustments) = plan::plan_process(process, &host_facts());
    if listen_fds > 0 {
        process_plan.env.push(format!("LISTEN_FDS={listen_fds}"));
        process_plan.env.push("LISTEN_PID=1".to_string());
    }
    let mut rootfs_plan = plan::plan_rootfs(
        spec,
        bundle.rootfs.clone(),
        &bundle.path,
        opts.no_pivot,
        &cgroup.mount_sources(),
    )
    .map_err(SpecError::from)?;
    // Before the runtime enters the namespaces its children take (see `idmap`).
    let idmapped_trees = idmap::detach_idmapped_sources(&mut rootfs_plan, first_private)?;

    enter_namespaces_for_children(&namespaces, linux)?;
    let maps = IdMaps {
        uid: idmap::id_map_text(linux.uid_mappings().as_deref()),
        gid: idmap::id_map_text(linux.gid_mappings().as_deref()),
    };
    let keep: Vec<BorrowedFd<'_>> = fifo
        .iter()
        .chain(console.iter())
        .chain(idmapped_trees.iter())
        .map(|f| f.as_fd())
        .collect();
    let at_clone = namespaces.new_user_at_clone.then_some(&maps);
    let spawned = spawn_init(namespaces.clone_flags, &keep, at_clone)
        .map_err(io_step("start the container init"))?;
    // The init has its own copies now.
    drop(idmapped_trees);
    rollback.pid = Some(spawned.pid);
    let mut stream = spawned.stream;
    cgroup.add_process(spawned.pid)?;
    let (_, start) = process_stat(spawned.pid).ok_or(CreateError::InitExited)?;
    record.pid = spawned.pid;
    record.pid_start = start;
    dir.write_record(&record)?;

    let state_json = hook_state(id.as_str(), spawned.pid, &bundle.path, &record.annotations);
    let spec_hooks = spec.hooks().as_ref();
    let runtime_hooks: Vec<_> = [
        ("prestart", spec_hooks.and_then(|h| h.prestart().as_ref())),
        (
            "createRuntime",
            spec_hooks.and_then(|h| h.create_runtime().as_ref()),
        ),
    ]
    .into_iter()
    .map(|(stage, list)| (stage, hooks::from_spec(list)))
    .filter(|(_, h)| !h.is_empty())
    .collect();
    let init_plan = InitPlan {
        id: id.to_string(),
        namespaces: namespaces.init,
        rootfs: Some(rootfs_plan),
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        domainname: spec.domainname().clone().filter(|h| !h.is_empty()),
        sysctls: linux
            .sysctl()
            .as_ref()
            .map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        process: process_plan,
        create_container_hooks: hooks::from_spec(
            spec_hooks.and_then(|h| h.create_container().as_ref()),
        ),
        start_container_hooks: hooks::from_spec(
            spec_hooks.and_then(|h| h.start_container().as_ref()),
        ),
        runtime_hooks: !runtime_hooks.is_empty(),
        hook_state: state_json.clone(),
        start: fifo
            .as_ref()
            .map_or(StartGate::Message, |f| StartGate::Fifo(f.as_raw_fd())),
        console_fd: console.as_ref().map(|c| c.as_raw_fd()),
        first_private_fd: first_private,
        seccomp,
        new_keyring: !opts.no_new_keyring,
        personality: plan::plan_personality(spec).ok().flatten(),
        memory_policy: plan::plan_memory_policy(spec),
    };
    sync::send(&mut stream, &SyncMessage::Plan(Box::new(init_plan)))
        .map_err(io_step("send the plan to the init"))?;
    let pid = wait_until_ready(
        &mut stream,
        &mut rollback,
        &runtime_hooks,
        &state_json,
        &maps,
    )?;
    if pid != record.pid {
        record.pid = pid;
        record.pid_start = process_stat(pid).ok_or(CreateError::InitExited)?.1;
    }
    record.phase = Phase::Created;
    rollback.dir.write_record(&record)?;
    if let Some(pid_file) = &opts.pid_file {
        write_pid_file(pid_file, pid)?;
    }
    rollback.armed = false;
    let created = Created {
        pid,
        warnings: adjustments.iter().map(ToString::to_string).collect(),
        hook_state: state_json,
        poststart: spec_hooks.and_then(|h| h.poststart().clone()),
    };
    Ok((created, (gate == Gate::Message).then_some(stream)))
}

/// Creates the state directory, its first record and the cgroup, returning them armed for rollback.
fn make_state(
    root: &StateRoot,
    id: &ContainerId,
    bundle: &spec::Bundle,
) -> Result<(Rollback, ContainerRecord), CreateError> {
    let spec = &bundle.spec;
    let linux = spec.linux().as_ref().ok_or(SpecError::MissingLinux)?;
    let dir = root.create(id)?;
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let hook_list = |f: fn(&oci_spec::runtime::Hooks) -> &Option<Vec<oci_spec::runtime::Hook>>| {
        hooks::from_spec(spec.hooks().as_ref().and_then(|h| f(h).as_ref()))
    };
    let mut record = ContainerRecord {
        id: id.to_string(),
        oci_version: spec.version().clone(),
        bundle: bundle.path.clone(),
        rootfs: bundle.rootfs.clone(),
        phase: Phase::Creating,
        pid: 0,
        pid_start: 0,
        creator_pid: me,
        creator_start: process_stat(me).map_or(0, |(_, s)| s),
        created: crate::timefmt::rfc3339_nanos(SystemTime::now()),
        cgroup: serde_json::Value::Null,
        annotations: annotations(spec),
        poststart: hook_list(|h| h.poststart()),
        poststop: hook_list(|h| h.poststop()),
    };
    let written = ContainerCgroup::for_new(linux.cgroups_path().as_deref(), id.as_str())
        .map_err(CreateError::from)
        .and_then(|cgroup| {
            record.cgroup = cgroup.record();
            dir.write_record(&record)?;
            dir.write_config(&bundle.raw)?;
            Ok(cgroup)
        });
    let mut cgroup = match written {
        Ok(cgroup) => cgroup,
        Err(e) => {
            let _ = dir.remove();
            return Err(e);
        }
    };
    let created = cgroup.create();
    // Recorded even after a partial failure, so the rollback (or a later delete) removes what exists.
    record.cgroup = cgroup.record();
    let rollback = Rollback {
        dir,
        cgroup,
        pid: None,
        armed: true,
    };
    created?;
    Ok((rollback, record))
}

/// Creates the exec fifo the init blocks on until `start`, and an `O_PATH` descriptor of it above
/// the descriptors passed to the container.
fn make_fifo(dir: &ContainerDir, first_private: u32) -> Result<OwnedFd, CreateError> {
    let path = dir.fifo_path();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &path,
        rustix::fs::Mode::from_raw_mode(0o622),
    )
    .map_err(|e| io_step("create the exec fifo")(e.into()))?;
    let fifo = rustix::fs::open(
        &path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| io_step("open the exec fifo")(e.into()))?;
    above(fifo, first_private)
}

/// Enters the namespaces that only take effect for children (a joined pid namespace, a new time
/// namespace with its offsets), before cloning.
fn enter_namespaces_for_children(
    namespaces: &plan::NamespaceSetup,
    linux: &oci_spec::runtime::Linux,
) -> Result<(), CreateError> {
    if let Some(pid_ns) = &namespaces.pid_join {
        let file = File::open(pid_ns)
            .map_err(io_step(format!("open pid namespace {}", pid_ns.display())))?;
        rustix::thread::move_into_link_name_space(file.as_fd(), None)
            .map_err(|e| io_step(format!("join pid namespace {}", pid_ns.display()))(e.into()))?;
    }
    if namespaces.new_time {
        enter_new_time_namespace(linux)?;
    }
    Ok(())
}

/// Serves the init until it reports ready: writes id maps and runs the runtime-namespace hooks
/// when it asks, follows it into a new pid namespace. Returns the pid of the container's process.
fn wait_until_ready(
    stream: &mut UnixStream,
    rollback: &mut Rollback,
    runtime_hooks: &[(&'static str, Vec<HookPlan>)],
    state_json: &str,
    maps: &IdMaps,
) -> Result<i32, CreateError> {
    let mut pid = rollback.pid.ok_or(CreateError::InitExited)?;
    loop {
        let message = match sync::receive(stream) {
            Ok(Some(message)) => message,
            // The init died: say how, which is the only clue (an OOM kill, a signal).
            Ok(None) | Err(_) => return Err(init_death(pid)),
        };
        match message {
            SyncMessage::MapIds => {
                maps.write_for(pid).map_err(io_step("write the id maps"))?;
                sync::send(stream, &SyncMessage::IdsMapped).map_err(io_step("resume the init"))?;
            }
            SyncMessage::Forked(child) => {
                // The forking init exits at once; its child, made ours by CLONE_PARENT, goes on.
                if let Some(old) = rustix::process::Pid::from_raw(pid) {
                    let _ =
                        rustix::process::waitpid(Some(old), rustix::process::WaitOptions::empty());
                }
                pid = child;
                rollback.pid = Some(child);
            }
            SyncMessage::RunRuntimeHooks => {
                let state = state_json.replacen("\"status\":\"\"", "\"status\":\"creating\"", 1);
                for (stage, list) in runtime_hooks {
                    hooks::run_all(stage, list, &state)?;
                }
                sync::send(stream, &SyncMessage::RuntimeHooksDone)
                    .map_err(io_step("resume the init"))?;
            }
            SyncMessage::Ready => return Ok(pid),
            SyncMessage::Failed(message) => return Err(CreateError::Init(message)),
            _ => return Err(CreateError::Init("unexpected message from the init".into())),
        }
    }
}

/// Reaps the init (our child) and describes how it ended.
fn init_death(pid: i32) -> CreateError {
    use rustix::process::{waitpid, Pid, WaitOptions};
    let Some(pid) = Pid::from_raw(pid) else {
        return CreateError::InitExited;
    };
    match waitpid(Some(pid), WaitOptions::empty()) {
        Ok(Some((_, status))) => {
            if let Some(signal) = status.terminating_signal() {
                let hint = if signal == libc::SIGKILL {
                    " (out of memory?)"
                } else {
                    ""
                };
                CreateError::InitDied(format!("was killed by signal {signal}{hint}"))
            } else {
                CreateError::InitDied(format!(
                    "exited with status {}",
                    status.exit_status().unwrap_or(-1)
                ))
            }
        }
        _ => CreateError::InitExited,
    }
}

/// Creates the time namespace for this process's future children and sets its offsets, which the
/// kernel accepts only before any process has entered it.
fn enter_new_time_namespace(linux: &oci_spec::runtime::Linux) -> Result<(), CreateError> {
    testudo_linux::process::unshare(0x80).map_err(io_step("create time namespace"))?;
    let mut offsets = String::new();
    for (clock, offset) in linux.time_offsets().iter().flatten() {
        offsets.push_str(&format!(
            "{clock} {} {}\n",
            offset.secs().unwrap_or(0),
            offset.nanosecs().unwrap_or(0)
        ));
    }
    if !offsets.is_empty() {
        std::fs::write("/proc/self/timens_offsets", offsets)
            .map_err(io_step("write time namespace offsets"))?;
    }
    Ok(())
}

/// Writes the pid file atomically (temp file and rename in the same directory), as runc does.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<(), CreateError> {
    let path =
        std::path::absolute(path).map_err(io_step(format!("pid file {}", path.display())))?;
    let temp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    std::fs::write(&temp, pid.to_string())
        .map_err(io_step(format!("write pid file {}", temp.display())))?;
    std::fs::rename(&temp, &path).map_err(io_step(format!("write pid file {}", path.display())))
}
