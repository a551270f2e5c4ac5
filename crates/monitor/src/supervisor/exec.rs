//! Exec processes and attached clients.
//!
//! An exec process is started with the runtime library's `exec`, so the monitor is its parent and
//! reaps it; its stdio ends (pipes, or its terminal's master) are handed to the client and not kept,
//! so the monitor moves none of its bytes. An attached client gets pipes the monitor writes what it
//! logs into (a tee), never blocking on them: a client that falls a pipe buffer behind is detached.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use testudo_monitor_protocol::{
    ContainerStatus, ErrorKind, ExecProcess, ExitStatus, FdRole, Termination,
};
use testudo_runtime::ExecOptions;

use super::{chain, pipe, refuse, with_stdio, Reply, Supervisor, Tap};
use crate::cri_log::Stream;
use crate::errors::exec_error_kind;
use crate::handover::{Adopter, Capture, ExecState};

/// An exec process of a container.
#[derive(Debug)]
pub(super) struct ExecChild {
    exec_id: String,
    pid: i32,
    /// Until it is reaped.
    pidfd: Option<OwnedFd>,
    exit: Option<ExitStatus>,
}

impl ExecChild {
    pub(super) fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// Whether this is the still running process `pid`.
    pub(super) fn is(&self, pid: i32) -> bool {
        self.pid == pid && self.exit.is_none()
    }

    /// Its part of an upgrade's handover.
    pub(super) fn capture<'a>(&'a self, capture: &mut Capture<'a>) -> ExecState {
        ExecState {
            exec_id: self.exec_id.clone(),
            pid: self.pid,
            pidfd: self.pidfd.as_ref().map(|fd| capture.fd(fd)),
            exit: self.exit,
        }
    }

    /// Takes it over from an upgrade's handover.
    pub(super) fn resume(state: ExecState, adopter: &mut Adopter) -> io::Result<Self> {
        Ok(Self {
            exec_id: state.exec_id,
            pid: state.pid,
            pidfd: state.pidfd.map(|fd| adopter.take(fd)).transpose()?,
            exit: state.exit,
        })
    }

    pub(super) fn exited(&mut self, termination: Termination) {
        self.pidfd = None;
        self.exit = Some(ExitStatus {
            termination,
            at: SystemTime::now(),
        });
    }
}

/// The descriptors handed to a client, each with what it is.
pub(crate) type HandedFds = Vec<(FdRole, OwnedFd)>;

impl Supervisor {
    /// `Exec`: the runtime's `exec`, with the process's stdio on new pipes (or a terminal) whose
    /// other ends are returned.
    pub(crate) fn exec(&mut self, request: &ExecProcess) -> Reply<(i32, HandedFds)> {
        let index = self.index(&request.id)?;
        let id = request.id.as_str();
        if self.containers[index].record.status != ContainerStatus::Running {
            return Err(refuse(
                ErrorKind::FailedPrecondition,
                format!("container {id} is not running"),
            ));
        }
        if request.exec_id.is_empty() {
            return Err(refuse(ErrorKind::InvalidArgument, "exec id is empty"));
        }
        if self.containers[index]
            .execs
            .iter()
            .any(|e| e.exec_id == request.exec_id)
        {
            return Err(refuse(
                ErrorKind::AlreadyExists,
                format!("exec process {} of container {id} exists", request.exec_id),
            ));
        }
        let internal =
            |what: &str, e: io::Error| refuse(ErrorKind::Internal, format!("{what}: {e}"));
        let null = || -> Reply<OwnedFd> {
            std::fs::File::open("/dev/null")
                .map(OwnedFd::from)
                .map_err(|e| internal("open /dev/null", e))
        };
        let console = if request.tty {
            Some(
                ConsoleSocket::bind(&self.state_dir)
                    .map_err(|e| internal("bind the console socket", e))?,
            )
        } else {
            None
        };
        // The caller's ends are blocking: the monitor never touches them.
        let blocking_pipe = || {
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| internal("create a pipe", e.into()))
        };
        let mut handed: HandedFds = Vec::new();
        let (stdin, stdout, stderr) = if request.tty {
            (null()?, null()?, null()?)
        } else {
            let stdin = if request.stdin {
                let (read, write) = blocking_pipe()?;
                handed.push((FdRole::Stdin, write));
                read
            } else {
                null()?
            };
            let (out_read, out_write) = blocking_pipe()?;
            let (err_read, err_write) = blocking_pipe()?;
            handed.push((FdRole::Stdout, out_read));
            handed.push((FdRole::Stderr, err_read));
            (stdin, out_write, err_write)
        };
        let options = ExecOptions {
            args: request.args.clone(),
            env: request.env.clone(),
            cwd: request.cwd.clone(),
            user: request.uid.map(|uid| (uid, request.gid)),
            tty: request.tty,
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            console_size: request.terminal_size.filter(|_| request.tty),
            ..ExecOptions::default()
        };
        let executed = with_stdio([&stdin, &stdout, &stderr], || {
            testudo_runtime::exec(&self.runtime_root, id, &options)
        })
        .map_err(|e| internal("hand stdio to the exec process", e))?
        .map_err(|e| refuse(exec_error_kind(&e), chain(&e)))?;
        let pid = executed.pid;
        let kill = || {
            if let Some(pid) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        };
        if let Some(console) = console {
            match console.receive() {
                Ok(master) => handed.push((FdRole::Terminal, master)),
                Err(e) => {
                    kill();
                    return Err(e);
                }
            }
        }
        let pidfd = match Pid::from_raw(pid).map(|p| pidfd_open(p, PidfdFlags::empty())) {
            Some(Ok(fd)) => fd,
            Some(Err(e)) => {
                kill();
                return Err(internal("open the exec process's pidfd", e.into()));
            }
            None => return Err(refuse(ErrorKind::Internal, "the runtime returned pid 0")),
        };
        self.containers[index].execs.push(ExecChild {
            exec_id: request.exec_id.clone(),
            pid,
            pidfd: Some(pidfd),
            exit: None,
        });
        Ok((pid, handed))
    }

    /// How exec process `exec_id` of container `id` ended; `Ok(None)` while it runs.
    pub(crate) fn exec_exit(&self, id: &str, exec_id: &str) -> Reply<Option<ExitStatus>> {
        let c = &self.containers[self.index(id)?];
        c.execs
            .iter()
            .find(|e| e.exec_id == exec_id)
            .map(|e| e.exit)
            .ok_or_else(|| {
                refuse(
                    ErrorKind::NotFound,
                    format!("exec process {exec_id} of container {id} does not exist"),
                )
            })
    }

    /// `KillExec`: `signal` to a running exec process through its pidfd; nothing once it has
    /// been reaped.
    pub(crate) fn kill_exec(&self, id: &str, exec_id: &str, signal: i32) -> Reply<()> {
        let c = &self.containers[self.index(id)?];
        let exec = c
            .execs
            .iter()
            .find(|e| e.exec_id == exec_id)
            .ok_or_else(|| {
                refuse(
                    ErrorKind::NotFound,
                    format!("exec process {exec_id} of container {id} does not exist"),
                )
            })?;
        let Some(pidfd) = exec.pidfd() else {
            return Ok(());
        };
        let signal = rustix::process::Signal::from_named_raw(signal).ok_or_else(|| {
            refuse(
                ErrorKind::InvalidArgument,
                format!("invalid signal {signal}"),
            )
        })?;
        match rustix::process::pidfd_send_signal(pidfd, signal) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(refuse(
                ErrorKind::Internal,
                format!("signal exec process {exec_id}: {e}"),
            )),
        }
    }

    /// Forgets an exec process whose exit was delivered.
    pub(crate) fn forget_exec(&mut self, id: &str, exec_id: &str) {
        if let Ok(index) = self.index(id) {
            self.containers[index]
                .execs
                .retain(|e| e.exec_id != exec_id || e.exit.is_none());
        }
    }

    /// `Attach`: a pipe per live output stream, fed from now on, and copies of the container's
    /// stdin and terminal; with `take_stdin`, the stdin itself, which the monitor then no longer
    /// holds.
    pub(crate) fn attach(&mut self, id: &str, take_stdin: bool) -> Reply<HandedFds> {
        let index = self.index(id)?;
        let internal =
            |what: &str, e: io::Error| refuse(ErrorKind::Internal, format!("{what}: {e}"));
        let c = &mut self.containers[index];
        if c.record.exit.is_some() {
            return Err(refuse(
                ErrorKind::FailedPrecondition,
                format!("container {id} is not running"),
            ));
        }
        let attach = self.next_attach;
        let mut handed: HandedFds = Vec::new();
        let mut taps = Vec::new();
        for output in c.outputs.iter().flatten() {
            // Our end does not block; the client's does.
            let (read, fd) = pipe().map_err(|e| internal("create an attach pipe", e))?;
            let flags =
                rustix::fs::fcntl_getfl(&read).map_err(|e| internal("pipe flags", e.into()))?;
            rustix::fs::fcntl_setfl(&read, flags - rustix::fs::OFlags::NONBLOCK)
                .and_then(|()| rustix::fs::fcntl_setfl(&fd, flags))
                .map_err(|e| internal("pipe flags", e.into()))?;
            let role = match output.stream {
                Stream::Stdout => FdRole::Stdout,
                Stream::Stderr => FdRole::Stderr,
            };
            handed.push((role, read));
            taps.push(Tap {
                attach,
                stream: output.stream,
                fd,
            });
        }
        let copy = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| internal("duplicate a descriptor", e))
        };
        if let Some(output) = c.outputs.iter().flatten().find(|o| o.terminal) {
            handed.push((FdRole::Terminal, copy(&output.fd)?));
        }
        // Last: once taken, the stdin must not be lost to a failure below.
        if take_stdin {
            if let Some(stdin) = c.stdin.take() {
                handed.push((FdRole::Stdin, stdin));
            }
        } else if let Some(stdin) = &c.stdin {
            handed.push((FdRole::Stdin, copy(stdin)?));
        }
        c.taps.extend(taps);
        self.next_attach += 1;
        Ok(handed)
    }
}

/// Writes `bytes` of `stream` to the attached clients' pipes; a client whose pipe is full or
/// closed is detached (all its pipes are closed).
pub(super) fn feed_taps(taps: &mut Vec<Tap>, stream: Stream, bytes: &[u8], id: &str) {
    let mut detached = Vec::new();
    for tap in taps.iter().filter(|t| t.stream == stream) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match rustix::io::write(&tap.fd, rest) {
                Ok(n) => rest = &rest[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    if e != rustix::io::Errno::PIPE {
                        eprintln!("testudo monitor: container {id}: detach a client: {e}");
                    }
                    detached.push(tap.attach);
                    break;
                }
            }
        }
    }
    if !detached.is_empty() {
        taps.retain(|t| !detached.contains(&t.attach));
    }
}

/// Whether a read of `fd` would return at once (data, end of file or an error).
pub(super) fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        match poll(&mut fds, Some(&zero)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return true,
        }
    }
}

/// A unix socket the runtime sends a new terminal's master to (its `--console-socket`), bound in
/// the state directory for one create or exec and removed when dropped.
pub(super) struct ConsoleSocket {
    listener: UnixListener,
    /// `/proc/self/fd/<dir>/console.sock`: a state directory's own path may be too long for a
    /// socket address (108 bytes); through the descriptor it is short. The runtime connects from
    /// this process, where the path resolves.
    path: PathBuf,
    _dir: OwnedFd,
}

impl ConsoleSocket {
    /// Binds `<state_dir>/console.sock` (one at a time: the monitor is single-threaded), replacing
    /// one left by a monitor that died.
    pub(super) fn bind(state_dir: &Path) -> io::Result<Self> {
        use rustix::fs::{open, Mode, OFlags};
        let dir = open(
            state_dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let path = PathBuf::from(format!(
            "/proc/self/fd/{}/console.sock",
            std::os::fd::AsRawFd::as_raw_fd(&dir)
        ));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            path,
            _dir: dir,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The master the runtime sent. It was sent before `create` or `exec` returned, so nothing is
    /// waited for: no connection means the process got no terminal.
    pub(super) fn receive(self) -> Reply<OwnedFd> {
        let (stream, _) = self.listener.accept().map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                refuse(
                    ErrorKind::InvalidArgument,
                    "no terminal was made: the bundle's process.terminal is false",
                )
            } else {
                refuse(ErrorKind::Internal, format!("accept the terminal: {e}"))
            }
        })?;
        let mut name = [0u8; 64];
        match testudo_linux::fd::recv_fd(&stream, &mut name) {
            Ok((_, Some(master))) => Ok(master),
            Ok((_, None)) => Err(refuse(
                ErrorKind::Internal,
                "the runtime sent no terminal descriptor",
            )),
            Err(e) => Err(refuse(
                ErrorKind::Internal,
                format!("receive the terminal: {e}"),
            )),
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
