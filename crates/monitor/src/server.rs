//! The event loop: one `poll(2)` over the listening socket, the client connections, the
//! containers' output pipes and their inits' pidfds. Requests are handled one at a time, to the end,
//! so operations on the monitor's containers are serialised.

mod upgrade;

use std::io::{self, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use testudo_monitor_protocol::{
    decode, encode, ErrorKind, ErrorReply, FrameDecoder, FrameError, Request, Response, MAX_FRAME,
    PROTOCOL_VERSION,
};

use crate::supervisor::{Supervisor, Watched};

/// A client may have this much sent and not yet answered before it is cut off.
const MAX_PENDING_INPUT: usize = 2 * MAX_FRAME;

/// One client connection.
#[derive(Debug)]
struct Connection {
    stream: UnixStream,
    inbox: FrameDecoder,
    outbox: Vec<u8>,
    /// Descriptors to send with the next bytes of the outbox (`SCM_RIGHTS`); closed once sent.
    outbox_fds: Vec<OwnedFd>,
    greeted: bool,
    /// The exit that answers this connection's current request.
    waiting_for: Option<Awaited>,
    /// Stop reading; close once the outbox is written.
    closing: bool,
    closed: bool,
}

impl Connection {
    fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            inbox: FrameDecoder::new(),
            outbox: Vec::new(),
            outbox_fds: Vec::new(),
            greeted: false,
            waiting_for: None,
            closing: false,
            closed: false,
        }
    }

    fn queue(&mut self, response: &Response) {
        match encode(response) {
            Ok(frame) => self.outbox.extend_from_slice(&frame),
            Err(e) => {
                let reply = ErrorReply::new(ErrorKind::Internal, format!("response: {e}"));
                if let Ok(frame) = encode(&Response::Error(reply)) {
                    self.outbox.extend_from_slice(&frame);
                }
            }
        }
        self.flush();
    }

    /// Queues `response` with descriptors that ride on its bytes.
    fn queue_with_fds(&mut self, response: &Response, fds: Vec<OwnedFd>) {
        self.outbox_fds.extend(fds);
        self.queue(response);
    }

    /// One write of the outbox; the pending descriptors go with it.
    fn write_some(&mut self) -> io::Result<usize> {
        if self.outbox_fds.is_empty() {
            return self.stream.write(&self.outbox);
        }
        let fds: Vec<BorrowedFd<'_>> = self.outbox_fds.iter().map(AsFd::as_fd).collect();
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        let n = sendmsg(
            &self.stream,
            &[IoSlice::new(&self.outbox)],
            &mut control,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        )?;
        self.outbox_fds.clear();
        Ok(n)
    }

    fn flush(&mut self) {
        while !self.outbox.is_empty() {
            match self.write_some() {
                Ok(n) => {
                    self.outbox.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
        self.outbox = Vec::new();
        if self.closing {
            self.closed = true;
        }
    }

    /// Reads what has arrived; end of file or an error closes the connection.
    fn receive(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => self.inbox.push(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
        if self.inbox.pending() > MAX_PENDING_INPUT {
            self.closed = true;
        }
    }

    fn interest(&self) -> PollFlags {
        let mut flags = PollFlags::empty();
        if !self.closing {
            flags |= PollFlags::IN;
        }
        if !self.outbox.is_empty() {
            flags |= PollFlags::OUT;
        }
        flags
    }
}

/// What a request comes to.
enum Outcome {
    Reply(Response),
    /// A response and the descriptors that go with it.
    ReplyWithFds(Response, Vec<OwnedFd>),
    /// Answer when this has exited.
    WaitFor(Awaited),
    /// Re-execute the monitor as this binary.
    Upgrade(PathBuf),
}

/// An exit a connection waits for.
#[derive(Debug, Clone)]
enum Awaited {
    /// Of a container.
    Container(String),
    /// Of an exec process: container id, exec id.
    Exec(String, String),
}

/// What a descriptor in the poll set belongs to.
#[derive(Debug, Clone, Copy)]
enum Source {
    Listener,
    Connection(usize),
    Container(Watched),
}

/// The monitor's state while it serves.
pub(crate) struct Server {
    listener: UnixListener,
    /// The listener's path, removed when the monitor exits.
    socket: PathBuf,
    connections: Vec<Connection>,
    supervisor: Supervisor,
    shutting_down: bool,
    pid: i32,
    /// No event came for [`IDLE`]: the next wait gives the clean pages back first.
    pages_released: std::cell::Cell<bool>,
}

/// After this long without an event the monitor gives its clean code pages and free heap back
/// (`testudo_linux::memory::release_clean_pages`): a monitor is idle nearly all its life, and its
/// pages would otherwise stay charged to it; they fault back in from the page cache when the next
/// event comes.
const IDLE: rustix::time::Timespec = rustix::time::Timespec {
    tv_sec: 1,
    tv_nsec: 0,
};

impl Server {
    pub(crate) fn new(
        listener: UnixListener,
        socket: PathBuf,
        supervisor: Supervisor,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            socket,
            connections: Vec::new(),
            supervisor,
            shutting_down: false,
            pid: rustix::process::getpid().as_raw_nonzero().get(),
            pages_released: std::cell::Cell::new(false),
        })
    }

    /// Serves until a shutdown was asked for and no container is left. It first reaps and
    /// handles the requests already received, which a monitor resumed after an upgrade may hold.
    pub(crate) fn serve(mut self) -> io::Result<()> {
        self.resolve_exits();
        for i in 0..self.connections.len() {
            self.process(i);
        }
        self.connections.retain(|c| !c.closed);
        loop {
            if self.shutting_down && self.supervisor.is_empty() {
                self.flush_all();
                return Ok(());
            }
            let ready = self.wait()?;
            for (source, events) in ready {
                self.dispatch(source, events);
            }
            self.resolve_exits();
            self.connections.retain(|c| !c.closed);
        }
    }

    /// Polls and returns the sources with events.
    fn wait(&self) -> io::Result<Vec<(Source, PollFlags)>> {
        let mut sources = vec![(self.listener.as_fd(), PollFlags::IN, Source::Listener)];
        for (i, c) in self.connections.iter().enumerate() {
            sources.push((c.stream.as_fd(), c.interest(), Source::Connection(i)));
        }
        let watched = self.supervisor.watched();
        sources.extend(
            watched.iter().map(|&(fd, w): &(BorrowedFd<'_>, Watched)| {
                (fd, PollFlags::IN, Source::Container(w))
            }),
        );
        let mut fds: Vec<PollFd<'_>> = sources
            .iter()
            .map(|(fd, flags, _)| PollFd::from_borrowed_fd(*fd, *flags))
            .collect();
        loop {
            if self.pages_released.get() {
                // Idle: sleep with the pages given back (see [`IDLE`]).
                let mut raw: Vec<libc::pollfd> = fds
                    .iter()
                    .zip(&sources)
                    .map(|(_, (fd, flags, _))| libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: i16::try_from(flags.bits()).unwrap_or(0),
                        revents: 0,
                    })
                    .collect();
                testudo_linux::memory::poll_after_releasing_pages(&mut raw)?;
                // The events are read again by an ordinary poll, which now returns at once.
                self.pages_released.set(false);
                continue;
            }
            match poll(&mut fds, Some(&IDLE)) {
                Ok(0) => self.pages_released.set(true),
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.pages_released.set(false);
        Ok(fds
            .iter()
            .zip(&sources)
            .filter(|(fd, _)| !fd.revents().is_empty())
            .map(|(fd, (_, _, source))| (*source, fd.revents()))
            .collect())
    }

    fn dispatch(&mut self, source: Source, events: PollFlags) {
        match source {
            Source::Listener => self.accept(),
            Source::Connection(i) => {
                let c = &mut self.connections[i];
                if events.contains(PollFlags::OUT) {
                    c.flush();
                }
                if events.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                    c.receive();
                }
                self.process(i);
            }
            // Exits are collected by the sweep after every wake-up.
            Source::Container(Watched::Exit(_) | Watched::ExecExit) => {}
            Source::Container(Watched::Output { index, pipe }) => {
                self.supervisor.read_output(index, pipe);
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.connections.push(Connection::new(stream));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Handles connection `i`'s complete requests until one must wait for an exit.
    fn process(&mut self, i: usize) {
        loop {
            let c = &mut self.connections[i];
            if c.closed || c.closing || c.waiting_for.is_some() {
                return;
            }
            let outcome = match c.inbox.next_frame() {
                Ok(None) => return,
                Ok(Some(body)) => match decode::<Request>(body) {
                    Ok(request) => {
                        let greeted = c.greeted;
                        let outcome = handle(
                            &mut self.supervisor,
                            &mut self.shutting_down,
                            self.pid,
                            greeted,
                            request,
                        );
                        let c = &mut self.connections[i];
                        if matches!(outcome, Outcome::Reply(Response::Hello { .. })) {
                            c.greeted = true;
                        }
                        outcome
                    }
                    Err(e) => Outcome::Reply(invalid(&e)),
                },
                Err(e @ FrameError::TooLarge { .. }) => {
                    c.closing = true;
                    Outcome::Reply(invalid(&e))
                }
                Err(e @ FrameError::Malformed { .. }) => Outcome::Reply(invalid(&e)),
            };
            let c = &mut self.connections[i];
            match outcome {
                Outcome::Reply(response) => c.queue(&response),
                Outcome::ReplyWithFds(response, fds) => c.queue_with_fds(&response, fds),
                Outcome::WaitFor(awaited) => c.waiting_for = Some(awaited),
                Outcome::Upgrade(binary) => {
                    // Returns only if this binary goes on serving.
                    let refusal = self.upgrade(i, &binary);
                    self.connections[i].queue(&Response::Error(refusal));
                }
            }
        }
    }

    /// Reaps exited children and answers the connections waiting for them.
    fn resolve_exits(&mut self) {
        self.supervisor.reap();
        let deleted = self.supervisor.take_deleted();
        let waiting: Vec<usize> = (0..self.connections.len())
            .filter(|&i| self.connections[i].waiting_for.is_some())
            .collect();
        for i in waiting {
            let response = match self.connections[i].waiting_for.clone() {
                None => continue,
                Some(Awaited::Container(id)) => {
                    let exit = match deleted.iter().find(|(d, _)| *d == id) {
                        Some((_, exit)) => Ok(*exit),
                        None => self.supervisor.exit_of(&id),
                    };
                    match exit {
                        Ok(Some(status)) => Response::Exited(status),
                        Ok(None) if deleted.iter().all(|(d, _)| *d != id) => continue,
                        Ok(None) | Err(_) => Response::Error(ErrorReply::new(
                            ErrorKind::FailedPrecondition,
                            format!("container {id} was deleted before it exited"),
                        )),
                    }
                }
                Some(Awaited::Exec(id, exec_id)) => {
                    match self.supervisor.exec_exit(&id, &exec_id) {
                        Ok(Some(status)) => {
                            self.supervisor.forget_exec(&id, &exec_id);
                            Response::Exited(status)
                        }
                        Ok(None) => continue,
                        Err(_) => Response::Error(ErrorReply::new(
                            ErrorKind::FailedPrecondition,
                            format!(
                                "container {id} was deleted before exec process {exec_id} exited"
                            ),
                        )),
                    }
                }
            };
            let c = &mut self.connections[i];
            c.waiting_for = None;
            c.queue(&response);
            self.process(i);
        }
    }

    fn flush_all(&mut self) {
        for c in &mut self.connections {
            // Best effort: a client that does not read its last answer is not waited for.
            let _ = c.stream.set_nonblocking(false);
            c.flush();
        }
    }
}

fn invalid(error: &dyn std::error::Error) -> Response {
    Response::Error(ErrorReply::new(
        ErrorKind::InvalidArgument,
        testudo_runtime::init::chain(error),
    ))
}

/// Carries out one request.
fn handle(
    supervisor: &mut Supervisor,
    shutting_down: &mut bool,
    pid: i32,
    greeted: bool,
    request: Request,
) -> Outcome {
    let refused =
        |kind, message: String| Outcome::Reply(Response::Error(ErrorReply::new(kind, message)));
    let reply = |result: Result<Response, ErrorReply>| {
        Outcome::Reply(result.unwrap_or_else(Response::Error))
    };
    match request {
        Request::Hello { version } if version == PROTOCOL_VERSION => {
            Outcome::Reply(Response::Hello {
                version: PROTOCOL_VERSION,
                pid,
            })
        }
        Request::Hello { version } => refused(
            ErrorKind::FailedPrecondition,
            format!("protocol version {version} is not supported: this monitor speaks {PROTOCOL_VERSION}"),
        ),
        _ if !greeted => refused(
            ErrorKind::FailedPrecondition,
            "the first request must be hello".into(),
        ),
        Request::CreateContainer(_) if *shutting_down => refused(
            ErrorKind::FailedPrecondition,
            "the monitor is shutting down".into(),
        ),
        Request::CreateContainer(create) => reply(
            supervisor
                .create(&create)
                .map(|(pid, warnings)| Response::Created { pid, warnings }),
        ),
        Request::Start { id } => reply(
            supervisor
                .start(&id)
                .map(|warnings| Response::Started { warnings }),
        ),
        Request::Kill { id, signal, all } => {
            reply(supervisor.kill(&id, signal, all).map(|()| Response::Done))
        }
        Request::Delete { id, force } => reply(supervisor.delete(&id, force).map(|()| Response::Done)),
        Request::State { id } => reply(supervisor.state(&id).map(Response::State)),
        Request::List => Outcome::Reply(Response::List {
            containers: supervisor.list(),
        }),
        Request::Wait { id } => match supervisor.exit_of(&id) {
            Ok(Some(status)) => Outcome::Reply(Response::Exited(status)),
            Ok(None) => Outcome::WaitFor(Awaited::Container(id)),
            Err(e) => Outcome::Reply(Response::Error(e)),
        },
        Request::Exec(exec) => match supervisor.exec(&exec) {
            Ok((pid, handed)) => {
                let (roles, fds) = handed.into_iter().unzip();
                Outcome::ReplyWithFds(Response::ExecStarted { pid, fds: roles }, fds)
            }
            Err(e) => Outcome::Reply(Response::Error(e)),
        },
        Request::WaitExec { id, exec_id } => match supervisor.exec_exit(&id, &exec_id) {
            Ok(Some(status)) => {
                supervisor.forget_exec(&id, &exec_id);
                Outcome::Reply(Response::Exited(status))
            }
            Ok(None) => Outcome::WaitFor(Awaited::Exec(id, exec_id)),
            Err(e) => Outcome::Reply(Response::Error(e)),
        },
        Request::KillExec {
            id,
            exec_id,
            signal,
        } => reply(
            supervisor
                .kill_exec(&id, &exec_id, signal)
                .map(|()| Response::Done),
        ),
        Request::Attach { id, take_stdin } => match supervisor.attach(&id, take_stdin) {
            Ok(handed) => {
                let (roles, fds) = handed.into_iter().unzip();
                Outcome::ReplyWithFds(Response::Attached { fds: roles }, fds)
            }
            Err(e) => Outcome::Reply(Response::Error(e)),
        },
        Request::Shutdown => {
            *shutting_down = true;
            Outcome::Reply(Response::Done)
        }
        Request::Upgrade { binary } => Outcome::Upgrade(binary),
    }
}
