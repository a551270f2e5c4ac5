//! The containers of one monitor: creating them with the runtime library so that their inits are
//! our children, holding their output pipes (or terminals), reaping them and recording how they
//! ended. Exec processes and attached clients are in [`exec`].

mod exec;
mod handover;

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::process::{pidfd_open, waitpid, Pid, PidfdFlags, WaitOptions, WaitStatus};
use testudo_monitor_protocol::{
    record_path, ContainerRecord, ContainerStatus, CreateContainer, ErrorKind, ErrorReply,
    ExitStatus, Termination, RECORD_DIR,
};
use testudo_runtime::{
    Container, ContainerId, ControlError, CreateError, CreateOptions, StateRoot,
};

use crate::cri_log::{format_record, CriLog, LineSplitter, Stream, Tag, MAX_LINE};
use crate::errors::{control_error_kind, create_error_kind};

/// How many reads of one pipe per wake-up, so one chatty container cannot starve the others.
const READS_PER_WAKE: usize = 4;

/// One output pipe of a container, or its terminal's master.
#[derive(Debug)]
struct Output {
    fd: OwnedFd,
    stream: Stream,
    splitter: LineSplitter,
    /// The master of the container's terminal: blocking (a dup handed to an attached client shares
    /// its flags, and the client expects blocking writes), so each read is preceded by a poll; it
    /// reads `EIO` once no process holds the terminal. Lines lose the `\r` the terminal adds.
    terminal: bool,
}

/// The write end of a pipe that an attached client reads one stream from.
#[derive(Debug)]
struct Tap {
    /// Which attach it belongs to: the taps of one attach are closed together.
    attach: u64,
    stream: Stream,
    fd: OwnedFd,
}

/// A container this monitor created.
#[derive(Debug)]
struct Supervised {
    record: ContainerRecord,
    /// Until the init is reaped.
    pidfd: Option<OwnedFd>,
    /// stdout and stderr (or the terminal, as stdout), until each reaches end of file.
    outputs: [Option<Output>; 2],
    /// The write end of the container's stdin pipe, held so that it sees no end of file; attached
    /// clients get a copy.
    stdin: Option<OwnedFd>,
    log: CriLog,
    /// Attached clients' pipes, fed with what is logged.
    taps: Vec<Tap>,
    /// Processes started in it with `Exec`, until their exit is collected.
    execs: Vec<exec::ExecChild>,
}

/// A descriptor the event loop should watch, and what it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watched {
    /// The init of container `index` has exited.
    Exit(usize),
    /// Output pipe `pipe` (0 stdout, 1 stderr) of container `index`.
    Output { index: usize, pipe: usize },
    /// An exec process of a container has exited.
    ExecExit,
}

/// The monitor's containers and the buffers they share.
#[derive(Debug)]
pub(crate) struct Supervisor {
    runtime_root: StateRoot,
    state_dir: PathBuf,
    containers: Vec<Supervised>,
    /// One read buffer for every pipe: per-container memory stays small.
    read_buffer: Vec<u8>,
    /// Formatted records before they are written.
    records: Vec<u8>,
    /// Containers deleted since the last [`Supervisor::take_deleted`], with how they ended, for
    /// the clients that wait for them.
    deleted: Vec<(String, Option<ExitStatus>)>,
    /// The id of the next attach.
    next_attach: u64,
}

type Reply<T> = Result<T, ErrorReply>;

fn refuse(kind: ErrorKind, message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(kind, message)
}

fn chain(error: &dyn std::error::Error) -> String {
    testudo_runtime::init::chain(error)
}

impl Supervisor {
    pub(crate) fn new(runtime_root: StateRoot, state_dir: PathBuf) -> Self {
        Self {
            runtime_root,
            state_dir,
            containers: Vec::new(),
            read_buffer: Vec::new(),
            records: Vec::new(),
            deleted: Vec::new(),
            next_attach: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }

    fn index(&self, id: &str) -> Reply<usize> {
        self.containers
            .iter()
            .position(|c| c.record.id == id)
            .ok_or_else(|| {
                refuse(
                    ErrorKind::NotFound,
                    format!("container \"{id}\" does not exist"),
                )
            })
    }

    /// The descriptors to poll, with what each is.
    pub(crate) fn watched(&self) -> Vec<(BorrowedFd<'_>, Watched)> {
        let mut fds = Vec::new();
        for (index, c) in self.containers.iter().enumerate() {
            if let Some(fd) = &c.pidfd {
                fds.push((fd.as_fd(), Watched::Exit(index)));
            }
            for (pipe, output) in c.outputs.iter().enumerate() {
                if let Some(output) = output {
                    fds.push((output.fd.as_fd(), Watched::Output { index, pipe }));
                }
            }
            for child in &c.execs {
                if let Some(fd) = child.pidfd() {
                    fds.push((fd, Watched::ExecExit));
                }
            }
        }
        fds
    }

    /// `CreateContainer`: the runtime's `create`, with the container's stdio on our pipes.
    pub(crate) fn create(&mut self, request: &CreateContainer) -> Reply<(i32, Vec<String>)> {
        let id = ContainerId::new(&request.id)
            .map_err(|e| refuse(ErrorKind::InvalidArgument, e.to_string()))?;
        if self.index(id.as_str()).is_ok() {
            return Err(refuse(
                ErrorKind::AlreadyExists,
                format!("container with id exists: {id}"),
            ));
        }
        check_request(request)?;
        let (log, log_created) =
            CriLog::open(&request.log_path, request.log_rotation).map_err(|e| {
                refuse(
                    ErrorKind::InvalidArgument,
                    format!("open log file {}: {e}", request.log_path.display()),
                )
            })?;
        let forget_log = || {
            if log_created {
                let _ = std::fs::remove_file(&request.log_path);
            }
        };
        let spawned = self
            .spawn(&id, request, log)
            .inspect_err(|_| forget_log())?;
        let pid = spawned.record.pid;
        self.containers.push(spawned);
        if let Err(e) = self.write_record(self.containers.len() - 1) {
            // Without a record the daemon could not learn how it ends: it must not run.
            let index = self.containers.len() - 1;
            self.discard(index);
            forget_log();
            return Err(refuse(
                ErrorKind::Internal,
                format!("record container {id}: {e}"),
            ));
        }
        Ok((pid, Vec::new()))
    }

    fn spawn(&self, id: &ContainerId, request: &CreateContainer, log: CriLog) -> Reply<Supervised> {
        let internal =
            |what: &str, e: io::Error| refuse(ErrorKind::Internal, format!("{what}: {e}"));
        let null = || -> Reply<OwnedFd> {
            File::open("/dev/null")
                .map(OwnedFd::from)
                .map_err(|e| internal("open /dev/null", e))
        };
        let console = if request.tty {
            Some(
                exec::ConsoleSocket::bind(&self.state_dir)
                    .map_err(|e| internal("bind the console socket", e))?,
            )
        } else {
            None
        };
        // With a terminal the init puts it on 0-2 itself: the pipes are left out.
        let (out_read, out_write) = if request.tty {
            (None, null()?)
        } else {
            let (read, write) = pipe().map_err(|e| internal("create stdout pipe", e))?;
            (Some(read), write)
        };
        let (err_read, err_write) = if request.tty {
            (None, null()?)
        } else {
            let (read, write) = pipe().map_err(|e| internal("create stderr pipe", e))?;
            (Some(read), write)
        };
        let (stdin_read, stdin_write) = if request.stdin && !request.tty {
            // Not `pipe()`: its read end does not block, and this one is the container's,
            // whose reads must wait for input rather than fail with EAGAIN.
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| internal("create stdin pipe", e.into()))?;
            (read, Some(write))
        } else {
            (null()?, None)
        };
        let options = CreateOptions {
            bundle: request.bundle.clone(),
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            ..CreateOptions::default()
        };
        let created = with_stdio([&stdin_read, &out_write, &err_write], || {
            testudo_runtime::create(&self.runtime_root, id, &options)
        })
        .map_err(|e| internal("hand stdio to the container", e))?
        .map_err(|e: CreateError| match e {
            CreateError::NoConsoleSocket => refuse(
                ErrorKind::InvalidArgument,
                "the bundle's process.terminal is true: the container needs tty",
            ),
            e => refuse(create_error_kind(&e), chain(&e)),
        })?;
        let terminal = match console.map(|c| c.receive()) {
            None => None,
            Some(Ok(master)) => Some(master),
            Some(Err(e)) => {
                self.runtime_delete(id.as_str());
                return Err(refuse(
                    e.kind,
                    format!("terminal of container {id}: {}", e.message),
                ));
            }
        };
        let pidfd = Pid::from_raw(created.pid)
            .ok_or_else(|| refuse(ErrorKind::Internal, "the runtime returned pid 0"))
            .and_then(|pid| {
                pidfd_open(pid, PidfdFlags::empty())
                    .map_err(|e| internal("open the init's pidfd", e.into()))
            });
        let pidfd = match pidfd {
            Ok(fd) => fd,
            Err(e) => {
                self.runtime_delete(id.as_str());
                return Err(e);
            }
        };
        let output = |fd: Option<OwnedFd>, stream| {
            fd.map(|fd| Output {
                fd,
                stream,
                splitter: LineSplitter::default(),
                terminal: false,
            })
        };
        let stdout = match terminal {
            Some(master) => Some(Output {
                fd: master,
                stream: Stream::Stdout,
                splitter: LineSplitter::default(),
                terminal: true,
            }),
            None => output(out_read, Stream::Stdout),
        };
        Ok(Supervised {
            record: ContainerRecord {
                id: id.to_string(),
                pid: created.pid,
                status: ContainerStatus::Created,
                bundle: request.bundle.clone(),
                log_path: request.log_path.clone(),
                created_at: SystemTime::now(),
                started_at: None,
                exit: None,
            },
            pidfd: Some(pidfd),
            outputs: [stdout, output(err_read, Stream::Stderr)],
            stdin: stdin_write,
            log,
            taps: Vec::new(),
            execs: Vec::new(),
        })
    }

    /// `Start`.
    pub(crate) fn start(&mut self, id: &str) -> Reply<Vec<String>> {
        let index = self.index(id)?;
        if self.containers[index].record.status != ContainerStatus::Created {
            return Err(refuse(
                ErrorKind::FailedPrecondition,
                format!("container {id} is not in the created state"),
            ));
        }
        let warnings = self.load(id, true)?.start().map_err(control)?;
        let record = &mut self.containers[index].record;
        record.status = ContainerStatus::Running;
        record.started_at = Some(SystemTime::now());
        self.write_record(index)
            .map_err(|e| refuse(ErrorKind::Internal, format!("record container {id}: {e}")))?;
        Ok(warnings)
    }

    /// `Kill`.
    pub(crate) fn kill(&mut self, id: &str, signal: i32, all: bool) -> Reply<()> {
        let index = self.index(id)?;
        if !(1..=64).contains(&signal) {
            return Err(refuse(
                ErrorKind::InvalidArgument,
                format!("invalid signal {signal}"),
            ));
        }
        if self.containers[index].record.exit.is_some() {
            return Err(refuse(
                ErrorKind::FailedPrecondition,
                format!("container {id} is not running"),
            ));
        }
        self.load(id, false)?.kill(signal, all).map_err(control)
    }

    /// `Delete`: the runtime's delete, then our side: the last output, the record.
    pub(crate) fn delete(&mut self, id: &str, force: bool) -> Reply<()> {
        let index = self.index(id)?;
        match Container::load(&self.runtime_root, id, true) {
            Ok(container) => container.delete(force).map_err(control)?,
            // Removed behind our back: nothing of the runtime's is left to delete.
            Err(ControlError::State(testudo_runtime::state::StateError::NotExist(_))) => {}
            Err(e) => return Err(control(e)),
        }
        if self.containers[index].record.exit.is_none() {
            // `delete` waited for the init to die; it is a zombie now, or already reaped by a sweep.
            let pid = Pid::from_raw(self.containers[index].record.pid);
            if let Ok(Some((_, status))) = waitpid(pid, WaitOptions::NOHANG) {
                self.exited(index, status);
            }
        }
        let mut c = self.containers.remove(index);
        drain_all(&mut c, &mut self.read_buffer, &mut self.records);
        self.deleted.push((c.record.id.clone(), c.record.exit));
        let path = record_path(&self.state_dir, id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(refuse(
                ErrorKind::Internal,
                format!("remove record {}: {e}", path.display()),
            )),
        }
    }

    /// How container `id` ended; `Ok(None)` while it runs.
    pub(crate) fn exit_of(&self, id: &str) -> Reply<Option<ExitStatus>> {
        Ok(self.containers[self.index(id)?].record.exit)
    }

    /// The containers deleted since the last call, with how each ended if it did.
    pub(crate) fn take_deleted(&mut self) -> Vec<(String, Option<ExitStatus>)> {
        std::mem::take(&mut self.deleted)
    }

    /// `State`.
    pub(crate) fn state(&self, id: &str) -> Reply<ContainerRecord> {
        Ok(self.containers[self.index(id)?].record.clone())
    }

    /// `List`, sorted by id.
    pub(crate) fn list(&self) -> Vec<ContainerRecord> {
        let mut records: Vec<_> = self.containers.iter().map(|c| c.record.clone()).collect();
        records.sort_by(|a, b| a.id.cmp(&b.id));
        records
    }

    /// Reads what output pipe `pipe` of container `index` holds and logs it.
    pub(crate) fn read_output(&mut self, index: usize, pipe: usize) {
        let Some(c) = self.containers.get_mut(index) else {
            return;
        };
        drain(
            c,
            pipe,
            READS_PER_WAKE,
            &mut self.read_buffer,
            &mut self.records,
        );
    }

    /// Reaps every child that has exited. Children that are not container inits (orphans
    /// reparented to us as subreaper) are reaped and forgotten.
    pub(crate) fn reap(&mut self) {
        // `wait`, not `waitpid(None)`: that is `wait4(0)`, which misses children in another
        // process group, as a process on its own terminal is (it called `setsid`).
        while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
            let pid = pid.as_raw_nonzero().get();
            let index = self
                .containers
                .iter()
                .position(|c| c.record.pid == pid && c.record.exit.is_none());
            if let Some(index) = index {
                self.exited(index, status);
                continue;
            }
            for c in &mut self.containers {
                if let Some(child) = c.execs.iter_mut().find(|e| e.is(pid)) {
                    child.exited(termination(status));
                    break;
                }
            }
        }
    }

    /// Records that container `index` ended: output first (so a waiter that reads the log finds
    /// all of it), then the exit, durably.
    fn exited(&mut self, index: usize, status: WaitStatus) {
        let termination = termination(status);
        let c = &mut self.containers[index];
        c.pidfd = None;
        drain_all(c, &mut self.read_buffer, &mut self.records);
        // Attached clients read to end of file, then learn the exit from a wait.
        c.taps.clear();
        if let Err(e) = c.log.sync() {
            report(&c.record.id, "sync log file", &e);
        }
        c.record.status = ContainerStatus::Stopped;
        c.record.exit = Some(ExitStatus {
            termination,
            at: SystemTime::now(),
        });
        if let Err(e) = self.write_record(index) {
            report(&self.containers[index].record.id, "record exit", &e);
        }
    }

    /// Kills and forgets a container whose creation could not be completed.
    fn discard(&mut self, index: usize) {
        let c = self.containers.remove(index);
        self.runtime_delete(&c.record.id);
        if let Some(pid) = Pid::from_raw(c.record.pid) {
            let _ = waitpid(Some(pid), WaitOptions::NOHANG);
        }
    }

    fn runtime_delete(&self, id: &str) {
        if let Ok(container) = Container::load(&self.runtime_root, id, true) {
            let _ = container.delete(true);
        }
    }

    fn load(&self, id: &str, lock: bool) -> Reply<Container> {
        Container::load(&self.runtime_root, id, lock).map_err(control)
    }

    /// Replaces container `index`'s record file atomically and durably.
    fn write_record(&self, index: usize) -> io::Result<()> {
        let record = &self.containers[index].record;
        let dir = self.state_dir.join(RECORD_DIR);
        let target = record_path(&self.state_dir, &record.id);
        let temp = dir.join(format!(".{}.json.tmp", record.id));
        let bytes = serde_json::to_vec(record)?;
        let mut file = File::create(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, &target)?;
        File::open(&dir)?.sync_all()
    }
}

fn termination(status: WaitStatus) -> Termination {
    match (status.exit_status(), status.terminating_signal()) {
        (_, Some(signal)) => Termination::Signaled(signal),
        (code, None) => Termination::Exited(code.unwrap_or(0)),
    }
}

fn control(error: ControlError) -> ErrorReply {
    refuse(control_error_kind(&error), chain(&error))
}

fn report(id: &str, what: &str, error: &io::Error) {
    eprintln!("testudo monitor: container {id}: {what}: {error}");
}

/// What the runtime cannot check for us.
fn check_request(request: &CreateContainer) -> Reply<()> {
    let invalid = |m: String| Err(refuse(ErrorKind::InvalidArgument, m));
    for (what, path) in [("bundle", &request.bundle), ("log path", &request.log_path)] {
        if !path.is_absolute() {
            return invalid(format!("{what} {} is not absolute", path.display()));
        }
    }
    let log_dir = request.log_path.parent().unwrap_or(Path::new("/"));
    if !log_dir.is_dir() {
        return invalid(format!(
            "log directory {} does not exist",
            log_dir.display()
        ));
    }
    if request.log_rotation.max_bytes == 0 || request.log_rotation.keep == 0 {
        return invalid("log rotation needs max_bytes and keep above 0".into());
    }
    Ok(())
}

/// An output pipe, both ends close-on-exec: the monitor's read end non-blocking, the container's
/// write end blocking.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let flags = rustix::fs::fcntl_getfl(&read)?;
    rustix::fs::fcntl_setfl(&read, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok((read, write))
}

/// Runs `f` with our stdin, stdout and stderr replaced by `stdio`, which the container's init
/// inherits, and puts ours back afterwards. The monitor is single-threaded, so nothing else writes
/// to stderr meanwhile.
fn with_stdio<T>(stdio: [&OwnedFd; 3], f: impl FnOnce() -> T) -> io::Result<T> {
    use rustix::stdio::{dup2_stderr, dup2_stdin, dup2_stdout, stderr, stdin, stdout};
    let saved = [stdin(), stdout(), stderr()].map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 3));
    let [Ok(saved_in), Ok(saved_out), Ok(saved_err)] = saved else {
        return Err(io::Error::other("duplicate the monitor's stdio"));
    };
    let swap = |fds: [&OwnedFd; 3]| -> io::Result<()> {
        dup2_stdin(fds[0])?;
        dup2_stdout(fds[1])?;
        dup2_stderr(fds[2])?;
        Ok(())
    };
    let outcome = swap(stdio).map(|()| f());
    swap([&saved_in, &saved_out, &saved_err])?;
    outcome
}

/// Reads pipe `pipe` of `c` at most `reads` times (or until it is empty, or closed) and writes the
/// records; a pipe at end of file is closed.
fn drain(
    c: &mut Supervised,
    pipe: usize,
    reads: usize,
    buffer: &mut Vec<u8>,
    records: &mut Vec<u8>,
) {
    let Supervised {
        outputs,
        log,
        record,
        taps,
        ..
    } = c;
    let Some(output) = outputs[pipe].as_mut() else {
        return;
    };
    buffer.resize(MAX_LINE, 0);
    let mut ended = false;
    for _ in 0..reads {
        if output.terminal && !exec::readable_now(output.fd.as_fd()) {
            break;
        }
        match rustix::io::read(&output.fd, &mut buffer[..]) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(n) => {
                let time = testudo_runtime::timefmt::rfc3339_nanos(SystemTime::now());
                let stream = output.stream;
                let terminal = output.terminal;
                output.splitter.feed(&buffer[..n], &mut |tag, line| {
                    let line = match (terminal, tag, line) {
                        (true, Tag::Full, [rest @ .., b'\r']) => rest,
                        _ => line,
                    };
                    format_record(records, &time, stream, tag, line);
                });
                exec::feed_taps(taps, stream, &buffer[..n], &record.id);
            }
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => break,
            // A terminal nobody holds any more.
            Err(rustix::io::Errno::IO) if output.terminal => {
                ended = true;
                break;
            }
            Err(e) => {
                report(&record.id, "read output", &e.into());
                ended = true;
                break;
            }
        }
        if records.len() >= MAX_LINE {
            write_out(log, records, &record.id);
        }
    }
    if ended {
        let time = testudo_runtime::timefmt::rfc3339_nanos(SystemTime::now());
        let stream = output.stream;
        output.splitter.finish(&mut |tag, line| {
            format_record(records, &time, stream, tag, line);
        });
        outputs[pipe] = None;
        // The attached clients of this stream see its end.
        taps.retain(|t| t.stream != stream);
    }
    write_out(log, records, &record.id);
}

/// Reads both pipes until they are empty.
fn drain_all(c: &mut Supervised, buffer: &mut Vec<u8>, records: &mut Vec<u8>) {
    for pipe in 0..2 {
        drain(c, pipe, usize::MAX, buffer, records);
    }
}

fn write_out(log: &mut CriLog, records: &mut Vec<u8>, id: &str) {
    if records.is_empty() {
        return;
    }
    if let Err(e) = log.write_records(records) {
        report(id, "write log", &e);
    }
    records.clear();
    if records.capacity() > 4 * MAX_LINE {
        *records = Vec::new();
    }
}
