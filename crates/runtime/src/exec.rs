//! `exec`: run another process inside a running container, in all of its namespaces and its cgroup,
//! with the container's seccomp filter.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use oci_spec::runtime::{Capabilities, Capability, LinuxNamespaceType, Process};
use thiserror::Error;

use crate::container::{Container, ControlError, Status};
use crate::create::{self, CreateError};
use crate::plan::{self, InitNamespaces, InitPlan, NamespaceJoin, NamespaceKind, StartGate};
use crate::spawn::spawn_init;
use crate::state::StateRoot;
use crate::sync::{self, SyncMessage};

/// What to execute and how (the flags of `exec`).
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A process JSON file (`--process`); replaces the fields below.
    pub process_file: Option<PathBuf>,
    /// argv.
    pub args: Vec<String>,
    /// Extra environment entries (`--env`).
    pub env: Vec<String>,
    /// Working directory (`--cwd`).
    pub cwd: Option<String>,
    /// `uid[:gid]` (`--user`).
    pub user: Option<(u32, Option<u32>)>,
    /// Supplementary groups (`--additional-gids`).
    pub additional_gids: Vec<u32>,
    /// Capabilities added to the container's (`--cap`).
    pub caps: Vec<String>,
    /// Allocate a terminal (`-t`).
    pub tty: bool,
    /// Set `no_new_privs` (`--no-new-privs`).
    pub no_new_privs: bool,
    /// Console socket for the terminal.
    pub console_socket: Option<PathBuf>,
    /// The terminal's size as (rows, columns), set before the process starts (OCI
    /// `process.consoleSize`), so that it never sees another.
    pub console_size: Option<(u16, u16)>,
    /// Where to write the pid.
    pub pid_file: Option<PathBuf>,
    /// Descriptors after stdio passed to the process.
    pub preserve_fds: u32,
}

/// Why `exec` failed.
#[derive(Debug, Error)]
pub enum ExecError {
    /// Loading the container failed.
    #[error(transparent)]
    Container(#[from] ControlError),
    /// Setting up the process failed (shared with `create`).
    #[error(transparent)]
    Setup(#[from] CreateError),
    /// The process file is unusable.
    #[error("invalid process file {path}")]
    ProcessFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An unknown capability name.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// No args were given.
    #[error("exec needs a command to run")]
    NoArgs,
}

/// A started exec process.
#[derive(Debug)]
pub struct Executed {
    /// Host pid (a child of the calling process).
    pub pid: i32,
    /// Warnings about clamped limits.
    pub warnings: Vec<String>,
}

fn io_step(step: &str) -> impl FnOnce(std::io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        step: step.to_string(),
        source,
    }
}

/// Puts the calling process's children back in its own pid namespace when dropped: joining the
/// container's for the exec process must not outlast `exec` in a long-lived caller (the monitor),
/// whose later containers would otherwise nest in it.
struct ChildPidNamespace {
    own: File,
}

impl Drop for ChildPidNamespace {
    fn drop(&mut self) {
        // Joining one's own pid namespace is always allowed.
        let _ = rustix::thread::move_into_link_name_space(
            self.own.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::ProcessID),
        );
    }
}

/// Builds the exec'd process from the container's process and the options, as runc does.
fn build_process(
    container_process: Option<&Process>,
    opts: &ExecOptions,
) -> Result<Process, ExecError> {
    if let Some(path) = &opts.process_file {
        let raw = crate::spec::read_limited(path).map_err(|e| ExecError::Setup(e.into()))?;
        return serde_json::from_slice(&raw).map_err(|source| ExecError::ProcessFile {
            path: path.clone(),
            source,
        });
    }
    if opts.args.is_empty() {
        return Err(ExecError::NoArgs);
    }
    let mut p = container_process.cloned().unwrap_or_default();
    p.set_args(Some(opts.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(opts.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.into());
    }
    if let Some((uid, gid)) = opts.user {
        let user = p.user_mut();
        user.set_uid(uid);
        user.set_gid(gid.unwrap_or(0));
    }
    if !opts.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(opts.additional_gids.clone()));
    }
    p.set_terminal(Some(opts.tty));
    if let Some((rows, columns)) = opts.console_size {
        // `build` cannot fail here: the builder has a default for every field.
        let size = oci_spec::runtime::BoxBuilder::default()
            .height(u64::from(rows))
            .width(u64::from(columns))
            .build()
            .ok();
        p.set_console_size(size);
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !opts.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let added: Capabilities = opts
            .caps
            .iter()
            .map(|c| {
                serde_json::from_value::<Capability>(serde_json::Value::String(c.clone()))
                    .map_err(|_| ExecError::UnknownCapability(c.clone()))
            })
            .collect::<Result<_, _>>()?;
        let add = |set: &Option<Capabilities>| -> Option<Capabilities> {
            Some(
                set.clone()
                    .unwrap_or_default()
                    .union(&added)
                    .copied()
                    .collect(),
            )
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        caps.set_inheritable(add(caps.inheritable()));
        caps.set_ambient(add(caps.ambient()));
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// Starts `opts`' process in container `id`. The caller waits for it (foreground) or not (`--detach`).
pub fn exec(root: &StateRoot, id: &str, opts: &ExecOptions) -> Result<Executed, ExecError> {
    let container = Container::load(root, id, false)?;
    match container.status() {
        Status::Running | Status::Created => {}
        Status::Paused => {
            return Err(
                ControlError::WrongStatus("cannot exec in a paused container".into()).into(),
            )
        }
        Status::Stopped | Status::Creating => {
            return Err(
                ControlError::WrongStatus("cannot exec in a stopped container".into()).into(),
            )
        }
    }
    let spec = container.spec()?;
    let process = build_process(spec.process().as_ref(), opts)?;
    if process.terminal().unwrap_or(false) && opts.console_socket.is_none() {
        return Err(CreateError::NoConsoleSocket.into());
    }
    let (process_plan, adjustments) = plan::plan_process(&process, &create::host_facts());
    let init_pid = container.record().pid;
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let ns_path =
        |kind: NamespaceKind| PathBuf::from(format!("/proc/{init_pid}/ns/{}", kind.proc_name()));
    let mut joins: Vec<NamespaceJoin> = namespaces
        .iter()
        .map(|n| NamespaceKind::from_spec(n.typ()))
        .filter(|k| *k != NamespaceKind::Pid)
        .map(|kind| NamespaceJoin {
            kind,
            path: ns_path(kind),
        })
        .collect();
    // User first: the others are owned by it. Mount last, as the paths of the others are host paths.
    joins.sort_by_key(|j| match j.kind {
        NamespaceKind::User => 0,
        NamespaceKind::Mount => 2,
        _ => 1,
    });
    // Held to the end: the caller's children are born in its own pid namespace again afterwards.
    let _pid_namespace = if namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Pid)
    {
        let own = File::open("/proc/self/ns/pid").map_err(io_step("open our pid namespace"))?;
        let path = ns_path(NamespaceKind::Pid);
        let file = File::open(&path).map_err(io_step("open the container's pid namespace"))?;
        rustix::thread::move_into_link_name_space(file.as_fd(), None)
            .map_err(|e| io_step("join the container's pid namespace")(e.into()))?;
        Some(ChildPidNamespace { own })
    } else {
        None
    };
    let first_private = 3 + opts.preserve_fds;
    let console = match (&opts.console_socket, process.terminal().unwrap_or(false)) {
        (Some(path), true) => {
            let stream =
                UnixStream::connect(path).map_err(io_step("connect to the console socket"))?;
            let fd = OwnedFd::from(stream);
            Some(
                rustix::io::fcntl_dupfd_cloexec(
                    &fd,
                    i32::try_from(first_private).unwrap_or(i32::MAX),
                )
                .map_err(|e| io_step("move descriptor")(e.into()))?,
            )
        }
        _ => None,
    };
    let plan = InitPlan {
        id: id.to_string(),
        namespaces: InitNamespaces {
            joins,
            ..InitNamespaces::default()
        },
        rootfs: None,
        hostname: None,
        domainname: None,
        sysctls: Vec::new(),
        process: process_plan,
        create_container_hooks: Vec::new(),
        start_container_hooks: Vec::new(),
        runtime_hooks: false,
        hook_state: String::new(),
        start: StartGate::Immediate,
        console_fd: console.as_ref().map(|c| c.as_raw_fd()),
        first_private_fd: first_private,
        seccomp: create::seccomp_plan(&spec)?,
        new_keyring: false,
        personality: plan::plan_personality(&spec).ok().flatten(),
        memory_policy: None,
    };
    if let Some(cpus) = process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.initial().as_deref())
        .and_then(plan::parse_id_list)
    {
        // `initial`: where the process runs until it reaches its cgroup and its final CPUs.
        testudo_linux::sched::set_cpu_affinity(&cpus).map_err(io_step("set the initial CPUs"))?;
    }
    let keep: Vec<BorrowedFd<'_>> = console.iter().map(|c| c.as_fd()).collect();
    let spawned = spawn_init(0, &keep, None).map_err(io_step("start the exec process"))?;
    let kill = |pid: i32| {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        }
    };
    if let Err(e) = container.cgroup().add_process(spawned.pid) {
        kill(spawned.pid);
        return Err(CreateError::from(e).into());
    }
    let mut stream = spawned.stream;
    let outcome = sync::send(&mut stream, &SyncMessage::Plan(Box::new(plan)))
        .map_err(io_step("send the plan"))
        .and_then(|()| sync::receive(&mut stream).map_err(io_step("read from the exec process")));
    match outcome {
        // The socket closes when the process executes its program.
        Ok(None) => {}
        Ok(Some(SyncMessage::Failed(message))) => {
            kill(spawned.pid);
            return Err(CreateError::Init(message).into());
        }
        Ok(Some(_)) => {
            kill(spawned.pid);
            return Err(
                CreateError::Init("unexpected message from the exec process".into()).into(),
            );
        }
        Err(e) => {
            kill(spawned.pid);
            return Err(e.into());
        }
    }
    if let Some(pid_file) = &opts.pid_file {
        create::write_pid_file(pid_file, spawned.pid)?;
    }
    Ok(Executed {
        pid: spawned.pid,
        warnings: adjustments.iter().map(ToString::to_string).collect(),
    })
}
