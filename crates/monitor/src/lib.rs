//! The container monitor behind `testudo monitor`: a small synchronous process that creates a group
//! of containers with the runtime library, is their parent and child subreaper, holds their output
//! pipes and writes them to CRI-format log files, reaps them, records how and when each ended, and
//! answers the daemon on its own unix socket (the protocol of `testudo-monitor-protocol`). It does not
//! depend on the daemon: it detaches from whoever started it, so containers outlive a daemon restart.
//!
//! It also runs exec processes in its containers (it is their parent and reaps them), gives a
//! container's main process a terminal, and lets clients attach to a running container.
//!
//! It can be upgraded in place: asked to, it re-executes another `testudo` binary in the same
//! process and hands it everything it holds, so its containers keep their parent, their pipes and
//! their logs ([`handover`] says what survives and how a binary that cannot resume is refused).
//!
//! Non-goals (in this version): restart policies; deciding anything about containers beyond what
//! it is asked to do; moving the bytes of exec processes.
//!
//! Design decisions:
//! - One thread, one `poll(2)` loop, no async runtime: the runtime library forks the container's init
//!   from this process, which is only sound single-threaded, and a monitor per group of containers
//!   must cost little memory (no thread stacks, no executor).
//! - Exits are seen through a pidfd per container (rustix has no `signalfd`; a pidfd also makes the
//!   wake-up specific to the process), and every wake-up ends with a `waitpid(-1, WNOHANG)` sweep, which
//!   also reaps orphans reparented to us as subreaper.
//! - The container's init inherits the monitor's stdio, so around the runtime's `create` the monitor
//!   points its own descriptors 0-2 at the container's pipes and then restores them.
//! - Memory per container is a few hundred bytes plus what its output needs: one 16 KiB read buffer is
//!   shared by all pipes, and a partial line is held only while it is incomplete.
//! - Exec processes' stdio ends (pipes, or the terminal's master) are handed to the client over the
//!   socket (`SCM_RIGHTS`) and not kept: the monitor is no byte pump, and whoever holds a master
//!   resizes it. An attached client gets pipes that the monitor tees its logging into, without
//!   blocking (a client that falls a pipe buffer behind is detached), plus copies of the container's
//!   stdin and terminal master.
//! - A terminal's master is read only after a zero-timeout poll, not made non-blocking: attached
//!   clients share its file status flags and expect blocking writes.
//! - Records are replaced atomically (temp file, `fsync`, rename, `fsync` of the directory) on every
//!   change of state; log durability is explained in `cri_log`.

mod cri_log;
mod detach;
mod errors;
mod handover;
mod server;
mod supervisor;

use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use detach::Detached;

/// Name of the monitor's own log (its stderr) in the state directory.
pub const MONITOR_LOG: &str = "monitor.log";

/// Where the monitor keeps things.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The monitor's state directory: container records and its own log.
    pub state_dir: PathBuf,
    /// The control socket it listens on.
    pub socket: PathBuf,
    /// The runtime library's state root (`--root` of `testudo`).
    pub runtime_root: PathBuf,
}

impl MonitorConfig {
    /// A configuration whose runtime root is `<state_dir>/runtime`.
    pub fn new(state_dir: PathBuf, socket: PathBuf) -> Self {
        let runtime_root = state_dir.join("runtime");
        Self {
            state_dir,
            socket,
            runtime_root,
        }
    }
}

/// Why the monitor could not be started.
#[derive(Debug, Error)]
pub enum MonitorError {
    /// A path of the configuration could not be made absolute.
    #[error("path {path}")]
    Path {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The state directory could not be prepared.
    #[error("prepare state directory {path}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another monitor answers on the socket.
    #[error("socket {0} is in use by a running monitor")]
    SocketInUse(PathBuf),
    /// The socket could not be bound.
    #[error("listen on {path}")]
    Listen {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The monitor process could not be forked off.
    #[error("start the monitor process")]
    Fork(#[source] io::Error),
}

/// Starts a monitor: prepares its state directory, listens on its socket, then forks the monitor
/// process, which detaches (new session, stdio on `/dev/null` and [`MONITOR_LOG`], working
/// directory `/`), becomes child subreaper and serves until it is shut down with no container left.
///
/// Returns in the calling process once the socket accepts connections (clients may connect at
/// once), with the monitor's pid. The monitor process never returns from this call: it exits.
/// The caller must be single-threaded (the fork copies only the calling thread); `testudo monitor`
/// calls it first thing.
pub fn run_monitor(config: &MonitorConfig) -> Result<Detached, MonitorError> {
    let absolute = |path: &Path| {
        std::path::absolute(path).map_err(|source| MonitorError::Path {
            path: path.to_path_buf(),
            source,
        })
    };
    let config = MonitorConfig {
        state_dir: absolute(&config.state_dir)?,
        socket: absolute(&config.socket)?,
        runtime_root: absolute(&config.runtime_root)?,
    };
    let records = config.state_dir.join(testudo_monitor_protocol::RECORD_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&records)
        .map_err(|source| MonitorError::StateDir {
            path: records.clone(),
            source,
        })?;
    let listener = listen(&config.socket)?;
    detach::fork_monitor(&config, listener)
}

/// glibc's malloc settings for a monitor, as `GLIBC_TUNABLES` names them: no per-thread cache
/// (tcache) and no fast bins. A chunk in either counts as in use, so `malloc_trim` cannot give its
/// page back and free neighbours cannot merge across it; the creation of a container leaves
/// hundreds of them. Measured with one idle container: heap 100 KiB with them, 24 KiB without,
/// for about 7 KiB of live data; the monitor's few allocations do not miss the caches' speed.
pub const MALLOC_TUNABLES: &str = "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0";

/// For `testudo monitor`, before [`run_monitor`]: re-executes this binary (same pid, arguments and
/// descriptors) with [`MALLOC_TUNABLES`] added to `GLIBC_TUNABLES`, which glibc reads only when a
/// program starts. Returns `Ok` without doing anything when `GLIBC_TUNABLES` already sets the tcache
/// (so after the re-execution, and in an upgraded monitor, which inherits the environment), and
/// the error if the execution failed.
pub fn reexec_with_malloc_tunables() -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;

    const VARIABLE: &str = "GLIBC_TUNABLES";
    let mut tunables = std::env::var_os(VARIABLE).unwrap_or_default();
    if tunables
        .as_bytes()
        .windows(b"glibc.malloc.tcache_count=".len())
        .any(|w| w == b"glibc.malloc.tcache_count=")
    {
        return Ok(());
    }
    if !tunables.is_empty() {
        tunables.push(":");
    }
    tunables.push(MALLOC_TUNABLES);
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "testudo".into());
    Err(std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(VARIABLE, tunables)
        .exec())
}

/// `testudo monitor --resume <fd>`: the first thing a binary does that an upgrading monitor
/// re-executed. It takes over the handover in memfd `handover` and everything it names, answers the
/// upgrade, and serves as the monitor did. It never returns: it exits when the monitor is done, or
/// at once, with the reason in the monitor log, if it cannot resume.
pub fn resume_monitor(handover: RawFd) -> ! {
    let mut adopter = handover::Adopter::default();
    let resumed = handover::read(handover, &mut adopter).and_then(|handover| {
        // Kept across exec by the kernel; set again so that a resume never depends on it.
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
        server::Server::resume(handover, &mut adopter)
    });
    let code = match resumed {
        Err(e) => {
            eprintln!("testudo monitor: resume after an upgrade: {e}");
            1
        }
        Ok(server) => {
            let socket = server.socket().to_path_buf();
            let code = match server.serve() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("testudo monitor: {e}");
                    1
                }
            };
            let _ = std::fs::remove_file(socket);
            code
        }
    };
    std::process::exit(code)
}

/// `testudo monitor --check-resume`: reads an upgrading monitor's handover on stdin and says on
/// stdout, as JSON, whether this binary can resume it; returns whether it can.
pub fn check_resume() -> io::Result<bool> {
    handover::check_resume(io::stdin().lock(), io::stdout().lock())
}

/// Binds the control socket (mode 0600), replacing a stale socket file nobody answers on.
fn listen(path: &Path) -> Result<UnixListener, MonitorError> {
    let error = |source| MonitorError::Listen {
        path: path.to_path_buf(),
        source,
    };
    if std::fs::symlink_metadata(path).is_ok() {
        if UnixStream::connect(path).is_ok() {
            return Err(MonitorError::SocketInUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(error)?;
    }
    let listener = UnixListener::bind(path).map_err(error)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(error)?;
    Ok(listener)
}
