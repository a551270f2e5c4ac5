//! The requests, the responses and the values they carry.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// What a client asks of the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The first request of a connection: the client's protocol version.
    Hello {
        /// [`PROTOCOL_VERSION`] of the client.
        version: u32,
    },
    /// Creates a container whose init waits for [`Request::Start`].
    CreateContainer(CreateContainer),
    /// Starts a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Sends a signal to the container's init, or with `all` to each of its processes.
    Kill {
        /// Container id.
        id: String,
        /// Signal number.
        signal: i32,
        /// Signal every process of the container, not only its init.
        all: bool,
    },
    /// Removes a stopped or created container (any container with `force`) and its record.
    Delete {
        /// Container id.
        id: String,
        /// Kill it first if it is running.
        force: bool,
    },
    /// The record of one container.
    State {
        /// Container id.
        id: String,
    },
    /// The records of every container of the monitor.
    List,
    /// Answered when the container has exited, with how it ended.
    Wait {
        /// Container id.
        id: String,
    },
    /// The monitor refuses new containers and exits once it has none left.
    Shutdown,
    /// Runs another process in a running container (the runtime's `exec`); the monitor is its
    /// parent and reaps it. The answer, [`Response::ExecStarted`], carries the process's stdio.
    Exec(ExecProcess),
    /// Answered when exec process `exec_id` of container `id` has exited, with its exit; the monitor
    /// then forgets it.
    WaitExec {
        /// Container id.
        id: String,
        /// The exec process's id, as given in [`ExecProcess::exec_id`].
        exec_id: String,
    },
    /// Hands the client the container's output from now on (the monitor keeps logging it) and its
    /// input; the answer is [`Response::Attached`]. Closing the descriptors detaches.
    Attach {
        /// Container id.
        id: String,
        /// Hand over the monitor's own write end of the container's stdin instead of a copy,
        /// keeping none: the container sees end of file once this client closes it, and later
        /// attaches get no stdin (docker's `StdinOnce`).
        #[serde(default)]
        take_stdin: bool,
    },
    /// Sends `signal` to exec process `exec_id` of container `id` through the monitor's pidfd of
    /// it (so never to another process that reuses its pid); answered [`Response::Done`], also
    /// when it has already exited.
    KillExec {
        /// Container id.
        id: String,
        /// The exec process's id, as given in [`ExecProcess::exec_id`].
        exec_id: String,
        /// Signal number.
        signal: i32,
    },
    /// Re-executes the monitor as `binary` (an absolute path of a `testudo` binary) with its
    /// state handed over: same pid, same children, same descriptors, same connections. The
    /// answer, [`Response::Upgraded`], comes from the new binary; a binary that cannot resume the
    /// monitor is refused ([`ErrorKind::FailedPrecondition`]) and the monitor goes on unchanged.
    Upgrade {
        /// The binary to re-execute.
        binary: PathBuf,
    },
}

/// What [`Request::Exec`] runs, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecProcess {
    /// Container id.
    pub id: String,
    /// The exec process's id, unique among the container's exec processes the monitor knows.
    pub exec_id: String,
    /// argv; the program is looked up in the container.
    pub args: Vec<String>,
    /// `NAME=value` entries added to the container's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory in the container (the container's when absent).
    #[serde(default)]
    pub cwd: Option<String>,
    /// User id in the container (the container's when absent).
    #[serde(default)]
    pub uid: Option<u32>,
    /// Group id in the container (0 when `uid` is given without it).
    #[serde(default)]
    pub gid: Option<u32>,
    /// Run it on a new terminal, whose master is handed over as [`FdRole::Terminal`].
    #[serde(default)]
    pub tty: bool,
    /// Give it a stdin pipe handed over as [`FdRole::Stdin`] (without a terminal), instead of
    /// `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
    /// The size of its terminal as (rows, columns) from its start; the runtime's default when
    /// absent.
    #[serde(default)]
    pub terminal_size: Option<(u16, u16)>,
}

/// What a descriptor handed over with [`Response::ExecStarted`] or [`Response::Attached`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FdRole {
    /// The write end of the process's stdin.
    Stdin,
    /// The read end of its stdout (for a terminal: of everything it writes).
    Stdout,
    /// The read end of its stderr.
    Stderr,
    /// The master of its terminal: writing it is the process's input, `TIOCSWINSZ` on it resizes
    /// the terminal ([`resize_terminal`](crate::resize_terminal)). For an exec process it is also
    /// where the output is read; an attached client reads the output from [`FdRole::Stdout`]
    /// instead, as the monitor reads the master to log it.
    Terminal,
}

/// What [`Request::CreateContainer`] needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateContainer {
    /// Container id (the runtime's id rules apply).
    pub id: String,
    /// Absolute path of the OCI bundle.
    pub bundle: PathBuf,
    /// Absolute path of the CRI-format log file; its directory must exist.
    pub log_path: PathBuf,
    /// When to rotate the log file.
    #[serde(default)]
    pub log_rotation: LogRotation,
    /// Give the container a terminal: the bundle's `process.terminal` must be true. Its output is
    /// logged as one stream, stdout.
    #[serde(default)]
    pub tty: bool,
    /// Give the container a stdin pipe that the monitor holds open (the container sees no end of
    /// file), instead of `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
}

/// Size-based rotation of a log file: `log` is renamed to `log.1`, `log.1` to `log.2`, …, and
/// `log.<keep>` is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRotation {
    /// The log file is rotated before a record would take it past this size (a record is never
    /// split across files, so a file holding one record may be larger).
    pub max_bytes: u64,
    /// How many rotated files to keep, at least 1.
    pub keep: u32,
}

impl Default for LogRotation {
    /// kubelet's defaults: 10 MiB, five files in all.
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            keep: 4,
        }
    }
}

/// What the monitor answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// The answer to [`Request::Hello`].
    Hello {
        /// [`PROTOCOL_VERSION`] of the monitor.
        version: u32,
        /// The monitor's pid.
        pid: i32,
    },
    /// The container was created.
    Created {
        /// Host pid of its init.
        pid: i32,
        /// What the runtime changed from the spec (clamped limits).
        warnings: Vec<String>,
    },
    /// The container was started.
    Started {
        /// Failures of poststart hooks.
        warnings: Vec<String>,
    },
    /// The request was carried out (kill, delete, shutdown).
    Done,
    /// One container's record.
    State(ContainerRecord),
    /// Every container's record.
    List {
        /// Sorted by id.
        containers: Vec<ContainerRecord>,
    },
    /// The container (or the exec process) has exited.
    Exited(ExitStatus),
    /// The exec process runs. Its stdio rides with this frame as `SCM_RIGHTS` descriptors, in the
    /// order of `fds`; the monitor keeps no copy.
    ExecStarted {
        /// Host pid of the process.
        pid: i32,
        /// What each handed-over descriptor is.
        fds: Vec<FdRole>,
    },
    /// The client is attached. The descriptors ride with this frame as `SCM_RIGHTS`, in the order
    /// of `fds`: one output pipe per stream (one, [`FdRole::Stdout`], for a terminal), the
    /// container's stdin when it was created with one (and no attach took it), and for a terminal
    /// its master.
    Attached {
        /// What each handed-over descriptor is.
        fds: Vec<FdRole>,
    },
    /// The monitor runs `binary` now, with everything it held before [`Request::Upgrade`].
    Upgraded {
        /// The monitor's pid (unchanged).
        pid: i32,
        /// The binary it runs, as the kernel names it (`/proc/self/exe`).
        binary: PathBuf,
    },
    /// The request failed.
    Error(ErrorReply),
}

/// Where a container is in its life, as the monitor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerStatus {
    /// The init waits for start.
    Created,
    /// The container's process runs.
    Running,
    /// The init has exited; see [`ContainerRecord::exit`].
    Stopped,
}

/// What the monitor knows about a container; also its on-disk record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Container id.
    pub id: String,
    /// Host pid of the init (kept after it exits, for the record).
    pub pid: i32,
    /// Lifecycle status.
    pub status: ContainerStatus,
    /// The bundle it was created from.
    pub bundle: PathBuf,
    /// Its log file.
    pub log_path: PathBuf,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it was started.
    pub started_at: Option<SystemTime>,
    /// How it ended, once it has.
    pub exit: Option<ExitStatus>,
}

/// How and when a container's init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code or signal.
    pub termination: Termination,
    /// When the monitor reaped it.
    pub at: SystemTime,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    /// It called `exit` with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl Termination {
    /// The shell's convention: the code, or 128 plus the signal.
    pub fn shell_code(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled(signal) => 128 + signal,
        }
    }
}

/// Why a request failed, as the daemon maps it to a gRPC status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No container with that id.
    NotFound,
    /// A container with that id exists.
    AlreadyExists,
    /// The request itself is wrong (bad id, bundle, path, frame).
    InvalidArgument,
    /// The request does not apply in the current state.
    FailedPrecondition,
    /// The monitor or the system failed.
    Internal,
}

/// A failed request: its kind and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// One line, lowercase, no trailing period.
    pub message: String,
}

impl ErrorReply {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrorReply {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json_that_round_trips() {
        let request = Request::Kill {
            id: "c1".into(),
            signal: 15,
            all: false,
        };
        let json = serde_json::to_string(&request).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"request":"kill","id":"c1","signal":15,"all":false}"#
        );
        let back: Request = serde_json::from_str(&json).unwrap_or(Request::List);
        assert_eq!(back, request);
    }

    #[test]
    fn a_create_request_may_leave_out_the_optional_fields() {
        let json = r#"{"request":"create_container","id":"c","bundle":"/b","log_path":"/l"}"#;
        let request: Request = serde_json::from_str(json).unwrap_or(Request::List);
        assert_eq!(
            request,
            Request::CreateContainer(CreateContainer {
                id: "c".into(),
                bundle: "/b".into(),
                log_path: "/l".into(),
                log_rotation: LogRotation::default(),
                tty: false,
                stdin: false,
            })
        );
    }

    #[test]
    fn a_signal_death_reads_as_the_shell_reports_it() {
        assert_eq!(Termination::Signaled(9).shell_code(), 137);
        assert_eq!(Termination::Exited(7).shell_code(), 7);
    }
}
