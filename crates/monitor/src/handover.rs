//! In-place upgrade: the state a monitor hands to the binary it re-executes, how it is checked
//! before the exec, and how the new binary takes it over.
//!
//! What survives an upgrade (everything the monitor holds between two requests):
//! - the process itself: its pid, so it stays the parent and child subreaper of its containers and
//!   exec processes, its session, working directory and stdio (`/dev/null`, the monitor log);
//! - the listening socket and every client connection, with the bytes received and not yet
//!   handled, the answers not yet written (and the descriptors that ride on them), whether the
//!   client said hello, and the exit it waits for (`Wait`, `WaitExec`);
//! - per container: its record, its init's pidfd, its output pipes or terminal master with the
//!   partial line held for each, the write end of its stdin, its log file (descriptor, size and
//!   rotation settings), the pipes of attached clients, and its exec processes (pid, pidfd, exit);
//! - whether a shutdown was asked for, and the next attach id.
//!
//! What does not: the shared read and record buffers (empty between requests), a console socket
//! (bound only during one create or exec) and the idle page release (a new binary starts with its
//! pages in).
//!
//! The handover is JSON in a memfd; descriptors cross the exec by number, with `FD_CLOEXEC`
//! cleared on exactly those (and set again by the new binary as it adopts each one, so none leaks
//! into a container created later). Children that exit while no binary runs stay zombies, their
//! pidfds readable, until the new binary's first reap sweep; the monitor needs no `SIGCHLD`, so
//! none can be lost.
//!
//! The monitor serves nothing while it upgrades: the check takes a few milliseconds (at most
//! [`CHECK_TIMEOUT`]); meanwhile containers' output waits in their pipes.
//!
//! Safety: before the exec the new binary runs once as `testudo monitor --check-resume` with the
//! handover on its stdin and must answer that it can resume it; a binary that cannot (another
//! program, an older handover version, a file that does not execute) is refused and the monitor
//! carries on unchanged. If the exec itself fails, the descriptors get `FD_CLOEXEC` back and the
//! monitor carries on too. A new binary that passed the check and then fails to resume (a
//! descriptor closed behind its back, say) cannot go back: it reports the error in the monitor
//! log and exits, and its containers are reparented as when a monitor dies.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};
use serde::{Deserialize, Serialize};
use testudo_monitor_protocol::{ContainerRecord, ErrorKind, ErrorReply, ExitStatus, LogRotation};

use crate::cri_log::Stream;

/// The version of the handover format this binary writes and resumes.
pub(crate) const HANDOVER_VERSION: u32 = 1;

/// How long the new binary may take to check the handover before it is refused.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a check that has answered is looked at until it exits.
const CHECK_POLL: Duration = Duration::from_millis(5);

/// The most a check may print: its answer is one short line.
const MAX_CHECK_ANSWER: usize = 64 * 1024;

/// A descriptor number, valid in the process that execs and in the one it becomes.
pub(crate) type Fd = RawFd;

/// Everything the monitor holds, as it crosses the exec.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Handover {
    /// [`HANDOVER_VERSION`] of the binary that wrote it.
    pub(crate) version: u32,
    /// The control socket's path (removed when the monitor exits).
    pub(crate) socket: PathBuf,
    pub(crate) listener: Fd,
    pub(crate) shutting_down: bool,
    pub(crate) connections: Vec<ConnectionState>,
    /// The connection that asked for the upgrade: the new binary answers it first.
    pub(crate) upgrading: usize,
    pub(crate) supervisor: SupervisorState,
}

/// One client connection.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ConnectionState {
    pub(crate) fd: Fd,
    /// Received bytes not yet handled (complete requests and a partial one).
    pub(crate) inbox: Vec<u8>,
    /// Answer bytes not yet written.
    pub(crate) outbox: Vec<u8>,
    /// Descriptors that ride on the next bytes of the outbox.
    pub(crate) outbox_fds: Vec<Fd>,
    pub(crate) greeted: bool,
    pub(crate) waiting_for: Option<AwaitedState>,
    pub(crate) closing: bool,
}

/// The exit a connection waits for.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum AwaitedState {
    /// Of a container.
    Container(String),
    /// Of an exec process: container id, exec id.
    Exec(String, String),
}

/// The containers and what they share.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SupervisorState {
    pub(crate) runtime_root: PathBuf,
    pub(crate) state_dir: PathBuf,
    pub(crate) next_attach: u64,
    pub(crate) containers: Vec<ContainerState>,
    /// Containers deleted whose waiters have not been answered yet, with how each ended.
    pub(crate) deleted: Vec<(String, Option<ExitStatus>)>,
}

/// One container.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ContainerState {
    pub(crate) record: ContainerRecord,
    pub(crate) pidfd: Option<Fd>,
    pub(crate) outputs: [Option<OutputState>; 2],
    pub(crate) stdin: Option<Fd>,
    pub(crate) log: LogState,
    pub(crate) taps: Vec<TapState>,
    pub(crate) execs: Vec<ExecState>,
}

/// An output pipe or terminal master.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OutputState {
    pub(crate) fd: Fd,
    pub(crate) stream: Stream,
    /// The partial line not yet logged.
    pub(crate) held: Vec<u8>,
    pub(crate) terminal: bool,
}

/// A log file being written.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LogState {
    pub(crate) path: PathBuf,
    pub(crate) fd: Fd,
    /// Bytes in the current file, for rotation.
    pub(crate) size: u64,
    pub(crate) rotation: LogRotation,
}

/// An attached client's pipe.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TapState {
    pub(crate) attach: u64,
    pub(crate) stream: Stream,
    pub(crate) fd: Fd,
}

/// An exec process.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ExecState {
    pub(crate) exec_id: String,
    pub(crate) pid: i32,
    pub(crate) pidfd: Option<Fd>,
    pub(crate) exit: Option<ExitStatus>,
}

/// What `testudo monitor --check-resume` prints: the handover version it resumes, and why it
/// cannot resume the one it was given, if it cannot.
#[derive(Debug, Serialize, Deserialize)]
struct CheckAnswer {
    handover_version: u32,
    #[serde(default)]
    error: Option<String>,
}

impl Handover {
    /// Every descriptor it names.
    fn fds(&self) -> Vec<Fd> {
        let mut fds = vec![self.listener];
        for c in &self.connections {
            fds.push(c.fd);
            fds.extend(&c.outbox_fds);
        }
        for c in &self.supervisor.containers {
            fds.extend(c.pidfd);
            fds.extend(c.outputs.iter().flatten().map(|o| o.fd));
            fds.extend(c.stdin);
            fds.push(c.log.fd);
            fds.extend(c.taps.iter().map(|t| t.fd));
            fds.extend(c.execs.iter().filter_map(|e| e.pidfd));
        }
        fds
    }

    /// Whether a binary of this version can take it over: its version, its connection to answer,
    /// and descriptors that are all distinct and above stdio.
    fn validate(&self) -> Result<(), String> {
        if self.version != HANDOVER_VERSION {
            return Err(format!(
                "handover version {} is not supported: this binary resumes version {HANDOVER_VERSION}",
                self.version
            ));
        }
        if self.upgrading >= self.connections.len() {
            return Err(format!(
                "the upgrading connection {} does not exist",
                self.upgrading
            ));
        }
        let mut seen = HashSet::new();
        for fd in self.fds() {
            if fd < 3 || !seen.insert(fd) {
                return Err(format!("descriptor {fd} is handed over twice or is stdio"));
            }
        }
        Ok(())
    }
}

/// Collects the descriptors a handover names, as it is made, so that exactly those cross the
/// exec.
#[derive(Debug, Default)]
pub(crate) struct Capture<'a> {
    fds: Vec<BorrowedFd<'a>>,
}

impl<'a> Capture<'a> {
    /// Names `fd` in the handover.
    pub(crate) fn fd(&mut self, fd: &'a impl AsFd) -> Fd {
        let fd = fd.as_fd();
        self.fds.push(fd);
        fd.as_raw_fd()
    }
}

/// Takes over the descriptors a handover names, each once, marking each close-on-exec again.
#[derive(Debug, Default)]
pub(crate) struct Adopter {
    claimed: HashSet<Fd>,
}

impl Adopter {
    /// Owns descriptor `fd` from now on.
    pub(crate) fn take(&mut self, fd: Fd) -> io::Result<OwnedFd> {
        if fd < 3 || !self.claimed.insert(fd) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("descriptor {fd} is handed over twice or is stdio"),
            ));
        }
        // Unique (checked above) and named by the handover our predecessor wrote for us: nothing
        // else in this process owns it.
        let owned = testudo_linux::fd::adopt_inherited(fd)
            .map_err(|e| io::Error::new(e.kind(), format!("descriptor {fd}: {e}")))?;
        fcntl_setfd(&owned, FdFlags::CLOEXEC)?;
        Ok(owned)
    }
}

/// Hands the monitor over to `binary`: checks that it can resume `handover`, then re-executes it
/// with the descriptors `capture` collected. Returns only if the monitor goes on as it is, with
/// the reason.
pub(crate) fn upgrade(binary: &Path, handover: &Handover, capture: &Capture<'_>) -> ErrorReply {
    let refused = |kind, message: String| ErrorReply::new(kind, message);
    if !binary.is_absolute() {
        return refused(
            ErrorKind::InvalidArgument,
            format!(
                "upgrade binary {} is not an absolute path",
                binary.display()
            ),
        );
    }
    let memfd = match write_memfd(handover) {
        Ok(memfd) => memfd,
        Err(e) => return refused(ErrorKind::Internal, format!("write the handover: {e}")),
    };
    if let Err(reason) = check(binary, &memfd) {
        return refused(
            ErrorKind::FailedPrecondition,
            format!("{} cannot resume this monitor: {reason}", binary.display()),
        );
    }
    let mut cleared = Vec::new();
    for fd in capture.fds.iter().copied().chain([memfd.as_fd()]) {
        if let Err(e) = testudo_linux::fd::keep_across_exec(fd) {
            restore_cloexec(&cleared);
            return refused(
                ErrorKind::Internal,
                format!("hand descriptor {} over: {e}", fd.as_raw_fd()),
            );
        }
        cleared.push(fd);
    }
    let e = exec(binary, memfd.as_raw_fd());
    restore_cloexec(&cleared);
    refused(
        ErrorKind::FailedPrecondition,
        format!("execute {}: {e}", binary.display()),
    )
}

fn restore_cloexec(fds: &[BorrowedFd<'_>]) {
    for fd in fds {
        if let Err(e) = fcntl_getfd(fd).and_then(|flags| fcntl_setfd(fd, flags | FdFlags::CLOEXEC))
        {
            eprintln!(
                "testudo monitor: upgrade: close-on-exec on descriptor {}: {e}",
                fd.as_raw_fd()
            );
        }
    }
}

fn write_memfd(handover: &Handover) -> io::Result<File> {
    let memfd =
        rustix::fs::memfd_create("testudo-monitor-handover", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut file = File::from(memfd);
    serde_json::to_writer(&mut file, handover)?;
    file.flush()?;
    file.rewind()?;
    Ok(file)
}

/// Runs `binary monitor --check-resume` with the handover on its stdin; `Err` says why it cannot
/// resume it.
fn check(binary: &Path, memfd: &File) -> Result<(), String> {
    // Its own open file description, so that the child's reads do not move our offset.
    let input = File::open(format!("/proc/self/fd/{}", memfd.as_raw_fd()))
        .map_err(|e| format!("reopen the handover: {e}"))?;
    let mut child = Command::new(binary)
        .args(["monitor", "--check-resume"])
        .stdin(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let answer = child.stdout.take().map(|out| read_until(out, deadline));
    let status = wait_until(&mut child, deadline)?;
    let Some(Some(answer)) = answer else {
        return Err(format!(
            "it did not answer the handover check within {} s",
            CHECK_TIMEOUT.as_secs()
        ));
    };
    let answer: CheckAnswer = serde_json::from_slice(&answer).map_err(|_| {
        format!("it is no testudo binary that resumes monitors (its handover check gave no answer, {status})")
    })?;
    match answer.error {
        Some(error) => Err(error),
        None if answer.handover_version != HANDOVER_VERSION => Err(format!(
            "it resumes handover version {}, not {HANDOVER_VERSION}",
            answer.handover_version
        )),
        None if !status.success() => Err(format!("its handover check failed ({status})")),
        None => Ok(()),
    }
}

/// Waits for the check to exit; one still running at `deadline` (it may have closed its stdout
/// and hung) is killed, so that a wrong binary never holds the monitor up for longer.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<std::process::ExitStatus, String> {
    let wait_error = |e: io::Error| format!("wait for its check: {e}");
    loop {
        if let Some(status) = child.try_wait().map_err(wait_error)? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return child.wait().map_err(wait_error);
        }
        std::thread::sleep(CHECK_POLL);
    }
}

/// Reads `out` to its end, or `None` once `deadline` has passed.
fn read_until(mut out: impl Read + AsFd, deadline: Instant) -> Option<Vec<u8>> {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let timeout = rustix::time::Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&out, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return Some(answer),
        }
        match out.read(&mut chunk) {
            Ok(0) => return Some(answer),
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                if answer.len() > MAX_CHECK_ANSWER {
                    return Some(answer);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Some(answer),
        }
    }
}

/// Re-executes `binary` as `testudo monitor --resume <memfd>`; returns only on failure.
fn exec(binary: &Path, memfd: Fd) -> io::Error {
    let invalid = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} holds a NUL byte"),
        )
    };
    let Ok(path) = CString::new(binary.as_os_str().as_bytes()) else {
        return invalid("the path");
    };
    let mut argv = vec![path.clone()];
    for arg in ["monitor", "--resume", &memfd.to_string()] {
        argv.extend(CString::new(arg));
    }
    let mut envp = Vec::new();
    for (name, value) in std::env::vars_os() {
        let mut entry = name.as_bytes().to_vec();
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        match CString::new(entry) {
            Ok(entry) => envp.push(entry),
            Err(_) => return invalid("the environment"),
        }
    }
    testudo_linux::process::execve(&path, &argv, &envp)
}

/// `testudo monitor --check-resume`: reads a handover from `input` and prints on `output` whether
/// this binary can resume it (as the JSON the upgrading monitor reads).
pub(crate) fn check_resume(mut input: impl Read, mut output: impl Write) -> io::Result<bool> {
    let mut bytes = Vec::new();
    let error = match input.read_to_end(&mut bytes) {
        Err(e) => Some(format!("read the handover: {e}")),
        Ok(_) => match serde_json::from_slice::<Handover>(&bytes) {
            Err(e) => Some(format!("parse the handover: {e}")),
            Ok(handover) => handover.validate().err(),
        },
    };
    let accepted = error.is_none();
    let answer = CheckAnswer {
        handover_version: HANDOVER_VERSION,
        error,
    };
    serde_json::to_writer(&mut output, &answer)?;
    output.write_all(b"\n")?;
    output.flush()?;
    Ok(accepted)
}

/// Reads the handover from memfd `fd`, which the new binary owns from now on and closes.
pub(crate) fn read(fd: Fd, adopter: &mut Adopter) -> io::Result<Handover> {
    let mut file = File::from(adopter.take(fd)?);
    let mut bytes = Vec::new();
    file.rewind()?;
    file.read_to_end(&mut bytes)?;
    drop(file);
    let handover: Handover = serde_json::from_slice(&bytes)?;
    handover
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(handover)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn handover(listener: Fd, connection: Fd) -> Handover {
        Handover {
            version: HANDOVER_VERSION,
            socket: "/run/m.sock".into(),
            listener,
            shutting_down: false,
            connections: vec![ConnectionState {
                fd: connection,
                inbox: Vec::new(),
                outbox: Vec::new(),
                outbox_fds: Vec::new(),
                greeted: true,
                waiting_for: None,
                closing: false,
            }],
            upgrading: 0,
            supervisor: SupervisorState {
                runtime_root: "/r".into(),
                state_dir: "/s".into(),
                next_attach: 0,
                containers: Vec::new(),
                deleted: Vec::new(),
            },
        }
    }

    fn check(input: &[u8]) -> (bool, CheckAnswer) {
        let mut output = Vec::new();
        let accepted = check_resume(input, &mut output).unwrap();
        (accepted, serde_json::from_slice(&output).unwrap())
    }

    #[test]
    fn a_handover_of_distinct_descriptors_in_this_version_is_accepted() {
        let (accepted, answer) = check(&serde_json::to_vec(&handover(3, 4)).unwrap());
        assert!(accepted);
        assert_eq!(answer.handover_version, HANDOVER_VERSION);
        assert_eq!(answer.error, None);
    }

    #[test]
    fn a_descriptor_handed_over_twice_another_version_or_garbage_is_refused() {
        let twice = serde_json::to_vec(&handover(3, 3)).unwrap();
        let mut newer = handover(3, 4);
        newer.version = HANDOVER_VERSION + 1;
        let newer = serde_json::to_vec(&newer).unwrap();
        let stdio = serde_json::to_vec(&handover(1, 4)).unwrap();
        for (input, reason) in [
            (&twice[..], "descriptor 3 is handed over twice"),
            (&newer[..], "is not supported"),
            (&stdio[..], "descriptor 1 is handed over twice or is stdio"),
            (b"{}", "parse the handover"),
        ] {
            let (accepted, answer) = check(input);
            assert!(!accepted);
            let error = answer.error.unwrap();
            assert!(error.contains(reason), "{error}");
        }
    }
}
