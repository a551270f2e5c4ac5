//! The container's init: the runtime binary re-executed (from a read-only handle, see
//! `testudo_linux::exe`) as the first process of the container. It receives an [`InitPlan`], applies it
//! without further decisions, reports back, waits for `start` (create) and becomes the container's
//! process with `execve`.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::process::{Resource, Rlimit};
use testudo_linux::caps::{self, CapabilitySets};
use thiserror::Error;

use crate::plan::{InitNamespaces, InitPlan, NamespaceKind, ProcessPlan, SeccompPlan, StartGate};
use crate::rootfs::{self, RootfsError};
use crate::sync::{self, SyncMessage};

/// The environment variable that names the init's end of the sync socket.
pub const SYNC_FD_ENV: &str = "_TESTUDO_SYNC_FD";

/// A step of the init failed; the message travels to the runtime process and is printed there.
#[derive(Debug, Error)]
pub enum InitError {
    /// Talking to the runtime process failed.
    #[error("sync with the runtime")]
    Sync(#[source] io::Error),
    /// The runtime sent something out of order.
    #[error("unexpected message from the runtime: {0}")]
    Protocol(&'static str),
    /// The runtime closed the sync socket: it failed and reports why itself.
    #[error("the runtime went away")]
    RuntimeGone,
    /// Joining a namespace failed.
    #[error("join {kind} namespace {path}")]
    Join {
        /// The namespace kind.
        kind: &'static str,
        /// Its path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Building the root filesystem failed.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// A hook failed.
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    /// A process attribute could not be applied.
    #[error("{step}")]
    Process {
        /// What was being applied.
        step: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The program to execute does not exist or cannot be executed.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// The program exists but cannot be executed.
    #[error("exec: {path:?}")]
    NotExecutable {
        /// The program.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn step(step: impl Into<String>) -> impl FnOnce(io::Error) -> InitError {
    let step = step.into();
    move |source| InitError::Process { step, source }
}

/// Entry point of `testudo init`. Never returns: it executes the container's process or exits.
pub fn init_main() -> ! {
    let Some(mut stream) = std::env::var(SYNC_FD_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .and_then(|fd| testudo_linux::fd::adopt_inherited(fd).ok())
        .map(UnixStream::from)
    else {
        eprintln!("testudo: init must be started by the runtime");
        testudo_linux::process::exit_immediately(1);
    };
    // The sync socket must not reach the container's program.
    let _ = rustix::io::fcntl_setfd(&stream, rustix::io::FdFlags::CLOEXEC);
    let error = match run(&mut stream) {
        Ok(never) => match never {},
        Err(InitError::RuntimeGone) => testudo_linux::process::exit_immediately(1),
        Err(error) => error,
    };
    let message = chain(&error);
    if sync::send(&mut stream, &SyncMessage::Failed(message.clone())).is_err() {
        eprintln!("testudo: {message}");
    }
    testudo_linux::process::exit_immediately(1);
}

/// The error and its causes on one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

enum Never {}

fn run(stream: &mut UnixStream) -> Result<Never, InitError> {
    let plan = match sync::receive(stream).map_err(InitError::Sync)? {
        Some(SyncMessage::Plan(plan)) => plan,
        None => return Err(InitError::RuntimeGone),
        _ => return Err(InitError::Protocol("expected the plan")),
    };
    enter_namespaces(&plan.namespaces, stream)?;
    if let Some(policy) = &plan.memory_policy {
        testudo_linux::sched::set_memory_policy(policy.mode, policy.flags, &policy.nodes)
            .map_err(step("set the memory policy"))?;
    }
    if plan.new_keyring {
        join_keyring(&plan)?;
    }
    let root = match &plan.rootfs {
        Some(r) => Some(rootfs::prepare(r, plan.namespaces.new_cgroup)?),
        None => None,
    };
    if plan.runtime_hooks {
        sync::send(stream, &SyncMessage::RunRuntimeHooks).map_err(InitError::Sync)?;
        match sync::receive(stream).map_err(InitError::Sync)? {
            Some(SyncMessage::RuntimeHooksDone) => {}
            None => return Err(InitError::RuntimeGone),
            _ => return Err(InitError::Protocol("expected the end of the runtime hooks")),
        }
    }
    crate::hooks::run_all(
        "createContainer",
        &plan.create_container_hooks,
        &hook_state(&plan, "created"),
    )?;
    if let (Some(root), Some(r)) = (root, &plan.rootfs) {
        rootfs::enter(root, r)?;
    }
    // Before the read-only paths, which include /proc/sys.
    for (key, value) in &plan.sysctls {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(step(format!("write sysctl {key}")))?;
    }
    if let Some(r) = &plan.rootfs {
        rootfs::finish(r)?;
    }
    if let Some(name) = &plan.hostname {
        rustix::system::sethostname(name.as_bytes()).map_err(|e| step("set hostname")(e.into()))?;
    }
    if let Some(name) = &plan.domainname {
        rustix::system::setdomainname(name.as_bytes())
            .map_err(|e| step("set domainname")(e.into()))?;
    }
    let process = &plan.process;
    if process.terminal {
        setup_terminal(&plan)?;
    }
    apply_limits(process)?;
    rustix::process::chdir(process.cwd.as_str())
        .map_err(|e| step(format!("chdir to {}", process.cwd))(e.into()))?;
    let program = find_program(process)?;
    match plan.start {
        StartGate::Immediate => {}
        gate => {
            sync::send(stream, &SyncMessage::Ready).map_err(InitError::Sync)?;
            match gate {
                StartGate::Fifo(fifo) => wait_for_start(fifo)?,
                _ => match sync::receive(stream).map_err(InitError::Sync)? {
                    Some(SyncMessage::Start) => {}
                    None => return Err(InitError::RuntimeGone),
                    Some(_) => return Err(InitError::Protocol("expected start")),
                },
            }
            crate::hooks::run_all(
                "startContainer",
                &plan.start_container_hooks,
                &hook_state(&plan, "created"),
            )?;
        }
    }
    become_process(&plan, &program)
}

/// A keyring per container; kernels without keyrings (ENOSYS) or that deny it to this user namespace
/// (EDQUOT, EACCES) simply keep the inherited one, as runc does.
fn join_keyring(plan: &InitPlan) -> Result<(), InitError> {
    let name = CString::new(format!("_ses.{}", plan.id)).unwrap_or_default();
    match testudo_linux::process::join_session_keyring(&name) {
        Err(e)
            if !matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::EDQUOT | libc::EACCES)
            ) =>
        {
            Err(step("join a session keyring")(e))
        }
        _ => Ok(()),
    }
}

/// The state JSON for hooks run by the init, with its status filled in.
fn hook_state(plan: &InitPlan, status: &str) -> String {
    plan.hook_state
        .replacen("\"status\":\"\"", &format!("\"status\":\"{status}\""), 1)
}

/// Joins and creates namespaces in the order `InitNamespaces` describes.
fn enter_namespaces(ns: &InitNamespaces, stream: &mut UnixStream) -> Result<(), InitError> {
    for join in &ns.joins {
        let kind = join.kind.proc_name();
        let fail = |source| InitError::Join {
            kind,
            path: join.path.clone(),
            source,
        };
        let file = File::open(&join.path).map_err(fail)?;
        rustix::thread::move_into_link_name_space(file.as_fd(), None)
            .map_err(|e| fail(e.into()))?;
        if join.kind == NamespaceKind::User {
            // Our host ids mean nothing in there; root of that namespace can create files and
            // enter the namespaces it owns.
            testudo_linux::process::set_credentials(0, 0, None)
                .map_err(step("become root of the joined user namespace"))?;
        }
    }
    if ns.new_user {
        testudo_linux::process::unshare(libc::CLONE_NEWUSER)
            .map_err(step("create user namespace"))?;
        sync::send(stream, &SyncMessage::MapIds).map_err(InitError::Sync)?;
        match sync::receive(stream).map_err(InitError::Sync)? {
            Some(SyncMessage::IdsMapped) => {}
            None => return Err(InitError::RuntimeGone),
            Some(_) => return Err(InitError::Protocol("expected the id maps")),
        }
        // Root of the new namespace, so that what follows (and the final exec) keeps capabilities.
        testudo_linux::process::set_credentials(0, 0, None)
            .map_err(step("become root of the user namespace"))?;
    }
    if ns.unshare_flags != 0 {
        let flags = i32::try_from(ns.unshare_flags).unwrap_or(0);
        testudo_linux::process::unshare(flags).map_err(step("create namespaces"))?;
    }
    if ns.new_cgroup {
        // Only now, inside its cgroup, so that the namespace's root is the container's cgroup.
        testudo_linux::process::unshare(libc::CLONE_NEWCGROUP)
            .map_err(step("create cgroup namespace"))?;
    }
    if ns.new_pid {
        testudo_linux::process::unshare(libc::CLONE_NEWPID)
            .map_err(step("create pid namespace"))?;
        // The child is the namespace's first process; it is made the runtime's child (CLONE_PARENT)
        // so that a foreground run can wait for it, and carries on with the sync socket.
        let flags = u64::try_from(libc::CLONE_PARENT).unwrap_or(0);
        match testudo_linux::process::clone3(flags).map_err(step("fork into the pid namespace"))? {
            testudo_linux::process::Forked::Child => {}
            testudo_linux::process::Forked::Parent(child) => {
                let pid = child.as_raw_nonzero().get();
                let _ = sync::send(stream, &SyncMessage::Forked(pid));
                testudo_linux::process::exit_immediately(0);
            }
        }
    }
    Ok(())
}

fn setup_terminal(plan: &InitPlan) -> Result<(), InitError> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .map_err(|e| step("open /dev/ptmx")(e.into()))?;
    grantpt(&master).map_err(|e| step("grantpt")(e.into()))?;
    unlockpt(&master).map_err(|e| step("unlockpt")(e.into()))?;
    let name = ptsname(&master, Vec::new()).map_err(|e| step("ptsname")(e.into()))?;
    let pts = PathBuf::from(name.to_string_lossy().into_owned());
    if let Some((rows, cols)) = plan.process.console_size {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&master, size)
            .map_err(|e| step("set terminal size")(e.into()))?;
    }
    if plan.rootfs.is_some() {
        rootfs::bind_console(&pts)?;
    }
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&pts)
        .map_err(step(format!("open {}", pts.display())))?;
    let console = plan
        .console_fd
        .ok_or(InitError::Protocol("a terminal needs a console socket"))?;
    let console = testudo_linux::fd::adopt_inherited(console).map_err(step("console socket"))?;
    testudo_linux::fd::send_fd(&console, b"/dev/ptmx", master.as_fd())
        .map_err(step("send the terminal to the console socket"))?;
    drop(console);
    drop(master);
    rustix::process::setsid().map_err(|e| step("setsid")(e.into()))?;
    rustix::process::ioctl_tiocsctty(&slave)
        .map_err(|e| step("set controlling terminal")(e.into()))?;
    rustix::stdio::dup2_stdin(&slave).map_err(|e| step("dup terminal")(e.into()))?;
    rustix::stdio::dup2_stdout(&slave).map_err(|e| step("dup terminal")(e.into()))?;
    rustix::stdio::dup2_stderr(&slave).map_err(|e| step("dup terminal")(e.into()))?;
    Ok(())
}

fn apply_limits(process: &ProcessPlan) -> Result<(), InitError> {
    for limit in &process.rlimits {
        let new = Rlimit {
            current: Some(limit.soft).filter(|v| *v != u64::MAX),
            maximum: Some(limit.hard).filter(|v| *v != u64::MAX),
        };
        let resource = resource(limit.resource).ok_or_else(|| {
            step(format!("unknown rlimit {}", limit.resource))(io::Error::from_raw_os_error(
                libc::EINVAL,
            ))
        })?;
        rustix::process::setrlimit(resource, new)
            .map_err(|e| step(format!("set rlimit {:?}", resource))(e.into()))?;
    }
    if let Some(score) = process.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", score.to_string())
            .map_err(step(format!("set oom_score_adj {score}")))?;
    }
    Ok(())
}

fn resource(n: i32) -> Option<Resource> {
    use Resource::*;
    [
        Cpu, Fsize, Data, Stack, Core, Rss, Nproc, Nofile, Memlock, As, Locks, Sigpending,
        Msgqueue, Nice, Rtprio, Rttime,
    ]
    .into_iter()
    .find(|r| *r as i32 == n)
}

/// Finds the program the way `execvp` would, so that a missing one is reported by `create`.
fn find_program(process: &ProcessPlan) -> Result<PathBuf, InitError> {
    let name = process.args.first().cloned().unwrap_or_default();
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let path = PathBuf::from(&name);
        return match std::fs::metadata(&path) {
            Ok(_) if executable(&path) => Ok(path),
            Ok(_) => Err(InitError::NotExecutable {
                path: name,
                source: io::Error::from_raw_os_error(libc::EACCES),
            }),
            Err(source) => Err(InitError::NotExecutable { path: name, source }),
        };
    }
    let path_var = process
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path_var
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(&name))
        .find(|candidate| executable(candidate))
        .ok_or(InitError::NotFound(name))
}

/// Blocks until `start` opens the exec fifo, then tells it we are going ahead. Waiting may last, so
/// the pages this init touched are given back meanwhile.
fn wait_for_start(fifo: i32) -> Result<(), InitError> {
    let path = CString::new(format!("/proc/self/fd/{fifo}"))
        .map_err(|_| InitError::Protocol("fifo path"))?;
    let fd =
        testudo_linux::memory::open_after_releasing_pages(&path, libc::O_WRONLY | libc::O_CLOEXEC)
            .map_err(step("open the exec fifo"))?;
    let mut file = File::from(fd);
    file.write_all(b"0").map_err(step("write the exec fifo"))?;
    Ok(())
}

/// Drops privileges, installs seccomp and executes the program.
fn become_process(plan: &InitPlan, program: &Path) -> Result<Never, InitError> {
    let process = &plan.process;
    let seccomp_early = plan.seccomp.as_ref().filter(|_| !process.no_new_privileges);
    if let Some(filter) = seccomp_early {
        load_seccomp(filter)?;
    }
    apply_scheduling(process)?;
    if let Some(persona) = plan.personality {
        testudo_linux::process::set_personality(persona)
            .map_err(step(format!("set personality {persona:#x}")))?;
    }
    apply_security_labels(process)?;
    let caps_plan = process.capabilities;
    if let Some(c) = caps_plan {
        let last = caps::last_capability().map_err(step("read cap_last_cap"))?;
        for cap in 0..=last {
            if c.bounding & (1u64 << cap) == 0 {
                caps::drop_bounding(cap)
                    .map_err(step(format!("drop capability {cap} from the bounding set")))?;
            }
        }
        caps::set_keep_capabilities(true).map_err(step("keep capabilities"))?;
    }
    let groups = Some(process.additional_gids.as_slice()).filter(|_| !setgroups_denied());
    testudo_linux::process::set_credentials(process.uid, process.gid, groups)
        .map_err(step(format!("set user {}:{}", process.uid, process.gid)))?;
    if let Some(c) = caps_plan {
        caps::set_keep_capabilities(false).map_err(step("reset keep capabilities"))?;
        caps::set_capabilities(CapabilitySets {
            effective: c.effective,
            permitted: c.permitted,
            inheritable: c.inheritable,
        })
        .map_err(step("set capabilities"))?;
        caps::clear_ambient().map_err(step("clear ambient capabilities"))?;
        for cap in 0..64u8 {
            if c.ambient & (1u64 << cap) != 0 {
                // A capability the kernel refuses to make ambient is skipped, as runc does.
                let _ = caps::raise_ambient(cap);
            }
        }
    }
    if process.no_new_privileges {
        rustix::thread::set_no_new_privs(true).map_err(|e| step("set no_new_privs")(e.into()))?;
    }
    if let Some(mask) = process.umask {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
    }
    testudo_linux::fd::cloexec_from(plan.first_private_fd)
        .map_err(step("close inherited descriptors"))?;
    if seccomp_early.is_none() {
        if let Some(filter) = &plan.seccomp {
            load_seccomp(filter)?;
        }
    }
    testudo_linux::signal::reset_for_exec().map_err(step("reset signals"))?;
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| {
            step(format!("NUL byte in {s:?}"))(io::Error::from_raw_os_error(libc::EINVAL))
        })
    };
    let path = cstr(&program.to_string_lossy())?;
    let argv = process
        .args
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = process
        .env
        .iter()
        .map(|e| cstr(e))
        .collect::<Result<Vec<_>, _>>()?;
    let error = testudo_linux::process::execve(&path, &argv, &envp);
    Err(InitError::NotExecutable {
        path: program.display().to_string(),
        source: error,
    })
}

/// Scheduling policy, I/O priority and CPUs, while the init still has the capabilities they may need.
fn apply_scheduling(process: &ProcessPlan) -> Result<(), InitError> {
    let s = &process.scheduling;
    if let Some(p) = s.scheduler {
        let attr = testudo_linux::sched::SchedAttr {
            policy: p.policy,
            flags: p.flags,
            nice: p.nice,
            priority: p.priority,
            runtime: p.runtime,
            deadline: p.deadline,
            period: p.period,
        };
        testudo_linux::sched::set_scheduler(&attr)
            .map_err(step(format!("set scheduler policy {}", p.policy)))?;
    }
    if let Some((class, level)) = s.io_priority {
        testudo_linux::sched::set_io_priority(class, level).map_err(step(format!(
            "set I/O priority class {class} level {level}"
        )))?;
    }
    if let Some(cpus) = &s.cpus {
        testudo_linux::sched::set_cpu_affinity(cpus).map_err(step("set the CPU affinity"))?;
    }
    Ok(())
}

/// The AppArmor profile and SELinux label the next `execve` switches to. The spec check refused an
/// AppArmor profile on a host without AppArmor; an SELinux label is ignored where SELinux is off,
/// as runc does.
fn apply_security_labels(process: &ProcessPlan) -> Result<(), InitError> {
    if let Some(profile) = &process.apparmor_profile {
        let attr = if Path::new("/proc/self/attr/apparmor/exec").exists() {
            "/proc/self/attr/apparmor/exec"
        } else {
            "/proc/self/attr/exec"
        };
        std::fs::write(attr, format!("exec {profile}"))
            .map_err(step(format!("set AppArmor profile {profile}")))?;
    }
    if let Some(label) = process
        .selinux_label
        .as_ref()
        .filter(|_| crate::spec::selinux_enabled())
    {
        std::fs::write("/proc/thread-self/attr/exec", label)
            .map_err(step(format!("set SELinux label {label}")))?;
    }
    Ok(())
}

/// Supplementary groups cannot be set where `setgroups` is denied (an unprivileged user namespace).
fn setgroups_denied() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}

fn load_seccomp(filter: &SeccompPlan) -> Result<(), InitError> {
    let program: Vec<testudo_linux::seccomp::SockFilter> = filter
        .instructions
        .iter()
        .map(|&(code, jt, jf, k)| testudo_linux::seccomp::SockFilter { code, jt, jf, k })
        .collect();
    testudo_linux::seccomp::load_filter(&program, filter.flags)
        .map(drop)
        .map_err(step("load the seccomp filter"))
}
