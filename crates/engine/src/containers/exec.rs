//! Exec and attach: a process's stdio as async handles, for a caller that streams them (the
//! daemon's bidirectional gRPC `Exec` and `Attach`).
//!
//! The monitor hands the process's descriptors over its socket (pipes, or a terminal's master)
//! and moves none of the bytes; here they become a stdin writer, one channel of output chunks
//! tagged with their stream, a resize handle for a terminal and a future of the exit code. A
//! gRPC adapter forwards request messages to [`ProcessIo::stdin`] and [`TerminalResize`], and
//! sends each [`OutputChunk`] and then the exit code as responses.
//!
//! Dropping a [`ProcessIo`] of an attach detaches (the container runs on); of an exec, it closes
//! the process's stdio (the process sees end of file or `SIGHUP`) and nobody collects its exit
//! but the monitor. A caller whose client went away kills an exec process with
//! [`ProcessIo::kill`] first: a process that ignores its closed stdio would otherwise run on.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use testudo_monitor_protocol::{ExecProcess, ProcessStdio};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::{ContainerError, ContainerService, CreateRequest};

/// Numbers the exec processes of this daemon; with its start time, an exec id is unique across
/// restarts too (a monitor may still run one from before).
static EXEC_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What [`ContainerService::exec`] runs, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// argv; the program is looked up in the container.
    pub args: Vec<String>,
    /// `NAME=value` entries added to the container's environment.
    pub env: Vec<String>,
    /// Working directory (the container's when absent).
    pub cwd: Option<String>,
    /// `uid` and optional `gid` in the container (the container's user when absent).
    pub user: Option<(u32, Option<u32>)>,
    /// Run it on a new terminal (its output is then one stream, stdout).
    pub tty: bool,
    /// Give it a stdin (otherwise it reads `/dev/null`); with `tty` the terminal is its input.
    pub stdin: bool,
    /// With `tty`, the terminal's size as (rows, columns) from the process's start.
    pub terminal_size: Option<(u16, u16)>,
}

/// Which output a chunk comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// stdout, or everything written on a terminal.
    Stdout,
    /// stderr.
    Stderr,
}

/// Bytes a process wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// Where they were written.
    pub stream: OutputStream,
    /// The bytes, as read.
    pub data: Vec<u8>,
}

/// The exit code of a process (128 plus the signal when killed), once it has exited.
pub type ExitFuture = Pin<Box<dyn Future<Output = Result<i32, ContainerError>> + Send>>;

/// Sets the size of a process's terminal.
#[derive(Debug, Clone)]
pub struct TerminalResize {
    master: Arc<OwnedFd>,
}

impl TerminalResize {
    /// Resizes the terminal to `rows` x `cols`; its foreground processes get `SIGWINCH`.
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        testudo_monitor_protocol::resize_terminal(self.master.as_fd(), rows, cols)
    }
}

/// Kills one exec process, through its monitor.
#[derive(Debug, Clone)]
pub struct ExecKill {
    socket: PathBuf,
    id: String,
    exec_id: String,
}

/// `SIGKILL`, the same on every Linux architecture.
const SIGKILL: i32 = 9;

impl ExecKill {
    /// Sends `SIGKILL` to the exec process; does nothing once it has exited.
    pub async fn kill(&self) -> Result<(), ContainerError> {
        let (id, exec_id) = (self.id.clone(), self.exec_id.clone());
        super::call_monitor(&self.id, &self.socket, move |client| {
            client.kill_exec(&id, &exec_id, SIGKILL)
        })
        .await
    }
}

/// The stdio of an exec'd or attached process.
pub struct ProcessIo {
    /// Writes the process's input; `None` when it has none (no `stdin`, or an attach to a
    /// container created without one). Dropping it closes an exec process's stdin.
    pub stdin: Option<pipe::Sender>,
    /// Output chunks as they come; closed once every output has ended (the process exited, or
    /// the monitor detached a client that fell behind).
    pub output: mpsc::Receiver<OutputChunk>,
    /// Resizes the terminal, when there is one.
    pub resize: Option<TerminalResize>,
    /// The exit code.
    pub exit: ExitFuture,
    /// Kills the process: set for an exec, `None` for an attach (whose process is the
    /// container's, stopped with [`ContainerService::kill`]).
    pub kill: Option<ExecKill>,
}

impl std::fmt::Debug for ProcessIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessIo")
            .field("stdin", &self.stdin.is_some())
            .field("resize", &self.resize)
            .field("kill", &self.kill)
            .finish_non_exhaustive()
    }
}

/// How many chunks may wait in [`ProcessIo::output`] before the readers stop reading (and the
/// process, or the monitor's tee, meets a full pipe).
const OUTPUT_BACKLOG: usize = 64;

impl ContainerService {
    /// Runs a process in a running container; the container's monitor is its parent.
    pub async fn exec(
        &self,
        namespace: &str,
        container: &str,
        request: ExecRequest,
    ) -> Result<ProcessIo, ContainerError> {
        let (_, record) = self.lookup(namespace, container)?;
        let socket = self.socket_of(&record);
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let exec_id = format!(
            "exec-{started}-{}",
            EXEC_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let process = ExecProcess {
            id: record.id.clone(),
            exec_id: exec_id.clone(),
            args: request.args,
            env: request.env,
            cwd: request.cwd,
            uid: request.user.map(|(uid, _)| uid),
            gid: request.user.and_then(|(_, gid)| gid),
            tty: request.tty,
            stdin: request.stdin && !request.tty,
            terminal_size: request.terminal_size,
        };
        let (_, stdio) = self
            .monitor_call(&record.id, &socket, move |client| client.exec(process))
            .await?;
        let kill = ExecKill {
            socket: socket.clone(),
            id: record.id.clone(),
            exec_id: exec_id.clone(),
        };
        let id = record.id.clone();
        let exit: ExitFuture = Box::pin(async move {
            let wait_id = id.clone();
            let status = tokio::task::spawn_blocking(move || {
                testudo_monitor_protocol::Client::connect(&socket)?.wait_exec(&wait_id, &exec_id)
            })
            .await?
            .map_err(|source| ContainerError::Monitor { id, source })?;
            Ok(status.termination.shell_code())
        });
        let mut io = process_io(&record.id, stdio, exit)?;
        io.kill = Some(kill);
        Ok(io)
    }

    /// Attaches to a container: its output from now on (it is logged all the same), its input
    /// when it was created with `stdin`, and its terminal. The exit future resolves when the
    /// container's process has exited. For a container created with `stdin_once`, this attach
    /// takes the only writer of the input: the container sees end of file when the caller
    /// drops [`ProcessIo::stdin`], and later attaches get no input.
    pub async fn attach(
        &self,
        namespace: &str,
        container: &str,
    ) -> Result<ProcessIo, ContainerError> {
        let (_, record) = self.lookup(namespace, container)?;
        let socket = self.socket_of(&record);
        let id = record.id.clone();
        let stdin_once = serde_json::from_value::<CreateRequest>(record.config.clone())
            .is_ok_and(|request| request.stdin_once);
        let stdio = self
            .monitor_call(&record.id, &socket, move |client| {
                if stdin_once {
                    client.attach_taking_stdin(&id)
                } else {
                    client.attach(&id)
                }
            })
            .await?;
        let id = record.id.clone();
        let exit: ExitFuture = Box::pin(async move {
            let wait_id = id.clone();
            let status = tokio::task::spawn_blocking(move || {
                testudo_monitor_protocol::Client::connect(&socket)?.wait(&wait_id)
            })
            .await?
            .map_err(|source| ContainerError::Monitor { id, source })?;
            Ok(status.termination.shell_code())
        });
        process_io(&record.id, stdio, exit)
    }
}

/// Turns handed-over descriptors into async handles; output readers run as tasks.
fn process_io(
    id: &str,
    stdio: ProcessStdio,
    exit: ExitFuture,
) -> Result<ProcessIo, ContainerError> {
    let failed = |what: &'static str| {
        let id = id.to_owned();
        move |source| ContainerError::Io {
            action: what,
            path: format!("stdio of container {id}").into(),
            source,
        }
    };
    let (sender, output) = mpsc::channel(OUTPUT_BACKLOG);
    let mut stdin = stdio
        .stdin
        .map(pipe::Sender::from_owned_fd)
        .transpose()
        .map_err(failed("open stdin"))?;
    let mut resize = None;
    let mut outputs = Vec::new();
    if let Some(out) = stdio.stdout {
        outputs.push((OutputStream::Stdout, out));
    }
    if let Some(err) = stdio.stderr {
        outputs.push((OutputStream::Stderr, err));
    }
    if let Some(master) = stdio.terminal {
        set_nonblocking(&master).map_err(failed("set up the terminal"))?;
        let copy = |fd: &OwnedFd| fd.try_clone().map_err(failed("set up the terminal"));
        if stdin.is_none() {
            stdin = Some(
                pipe::Sender::from_owned_fd_unchecked(copy(&master)?)
                    .map_err(failed("set up the terminal"))?,
            );
        }
        // An exec process's output is read from its master; an attach has a pipe for it.
        if outputs.is_empty() {
            outputs.push((OutputStream::Stdout, copy(&master)?));
        }
        resize = Some(TerminalResize {
            master: Arc::new(master),
        });
    }
    for (stream, fd) in outputs {
        set_nonblocking(&fd).map_err(failed("open an output"))?;
        let receiver =
            pipe::Receiver::from_owned_fd_unchecked(fd).map_err(failed("open an output"))?;
        tokio::spawn(pump(receiver, stream, sender.clone()));
    }
    Ok(ProcessIo {
        stdin,
        output,
        resize,
        exit,
        kill: None,
    })
}

/// Reads one output until its end (`EIO` on a terminal nobody holds), or until the receiver of
/// the chunks is gone.
async fn pump(mut from: pipe::Receiver, stream: OutputStream, to: mpsc::Sender<OutputChunk>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) => return,
            Ok(n) => {
                let chunk = OutputChunk {
                    stream,
                    data: buffer[..n].to_vec(),
                };
                if to.send(chunk).await.is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if e.raw_os_error() != Some(rustix::io::Errno::IO.raw_os_error()) {
                    tracing::warn!(error = %e, "read a process's output");
                }
                return;
            }
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}
