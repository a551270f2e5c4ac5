//! A blocking client: one connection, one request at a time.

use std::io::{self, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use thiserror::Error;

use crate::frame::{decode, encode, FrameDecoder, FrameError};
use crate::message::{
    ContainerRecord, CreateContainer, ErrorKind, ErrorReply, ExecProcess, ExitStatus, FdRole,
    Request, Response, PROTOCOL_VERSION,
};

/// The most descriptors one response carries.
const MAX_FDS: usize = 4;

/// Why a call to the monitor failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The socket could not be connected.
    #[error("connect to monitor socket {path}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("monitor connection")]
    Io(#[source] io::Error),
    /// The monitor closed the connection before answering.
    #[error("the monitor closed the connection")]
    Closed,
    /// A frame could not be made or read.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The monitor refused the request.
    #[error(transparent)]
    Refused(ErrorReply),
    /// The descriptors that came with a response do not match what it lists.
    #[error("the monitor sent {received} descriptors with a response that lists {listed}")]
    Descriptors {
        /// How many arrived.
        received: usize,
        /// How many the response lists.
        listed: usize,
    },
    /// The monitor answered with a response that does not fit the request.
    #[error("unexpected response to {request}: {response}")]
    Unexpected {
        /// The request's name.
        request: &'static str,
        /// The response, as JSON.
        response: String,
    },
}

impl ClientError {
    /// The kind of a refusal, `None` for failures to talk at all.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Refused(reply) => Some(reply.kind),
            _ => None,
        }
    }
}

/// The stdio of a process as handed over by the monitor ([`Client::exec`], [`Client::attach`]);
/// see [`FdRole`] for what each is. Dropping it closes them (for an attach: detaches).
#[derive(Debug, Default)]
pub struct ProcessStdio {
    /// Write end of the process's stdin.
    pub stdin: Option<OwnedFd>,
    /// Read end of its stdout (of all its output on a terminal).
    pub stdout: Option<OwnedFd>,
    /// Read end of its stderr.
    pub stderr: Option<OwnedFd>,
    /// Its terminal's master.
    pub terminal: Option<OwnedFd>,
}

impl ProcessStdio {
    fn from_roles(roles: &[FdRole], fds: Vec<OwnedFd>) -> Result<Self, ClientError> {
        if roles.len() != fds.len() {
            return Err(ClientError::Descriptors {
                received: fds.len(),
                listed: roles.len(),
            });
        }
        let mut stdio = Self::default();
        for (role, fd) in roles.iter().zip(fds) {
            let slot = match role {
                FdRole::Stdin => &mut stdio.stdin,
                FdRole::Stdout => &mut stdio.stdout,
                FdRole::Stderr => &mut stdio.stderr,
                FdRole::Terminal => &mut stdio.terminal,
            };
            *slot = Some(fd);
        }
        Ok(stdio)
    }
}

/// Sets the size of the terminal whose master (or slave) is `terminal` (`TIOCSWINSZ`); the
/// kernel tells the terminal's foreground process group with `SIGWINCH`.
pub fn resize_terminal(terminal: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(terminal, size)?;
    Ok(())
}

/// A connection to a monitor, past the version exchange.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    decoder: FrameDecoder,
    monitor_pid: i32,
    /// Descriptors received with the bytes read so far for the current response.
    received: Vec<OwnedFd>,
}

impl Client {
    /// Connects to the monitor at `socket` and exchanges versions.
    pub fn connect(socket: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
        let mut client = Self {
            stream,
            decoder: FrameDecoder::new(),
            monitor_pid: 0,
            received: Vec::new(),
        };
        match client.call(&Request::Hello {
            version: PROTOCOL_VERSION,
        })? {
            Response::Hello { pid, .. } => client.monitor_pid = pid,
            other => return Err(unexpected("hello", &other)),
        }
        Ok(client)
    }

    /// The monitor's pid, as it said in its hello.
    pub fn monitor_pid(&self) -> i32 {
        self.monitor_pid
    }

    /// Sends one request and reads its response; a refusal is a response here, not an error.
    /// Descriptors that came with the response are dropped; see [`Client::call_with_fds`].
    pub fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        self.call_with_fds(request).map(|(response, _)| response)
    }

    /// Sends one request and reads its response and the descriptors that came with it.
    pub fn call_with_fds(
        &mut self,
        request: &Request,
    ) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        let frame = encode(request)?;
        self.stream.write_all(&frame).map_err(ClientError::Io)?;
        self.received.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(body) = self.decoder.next_frame()? {
                let response = decode(body)?;
                return Ok((response, std::mem::take(&mut self.received)));
            }
            let n = self.receive(&mut chunk)?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.decoder.push(&chunk[..n]);
        }
    }

    /// One `recvmsg`, keeping the descriptors that ride with the bytes.
    fn receive(&mut self, chunk: &mut [u8]) -> Result<usize, ClientError> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let message = loop {
            match recvmsg(
                self.stream.as_fd(),
                &mut [IoSliceMut::new(chunk)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(message) => break message,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(ClientError::Io(e.into())),
            }
        };
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                self.received.extend(fds);
            }
        }
        Ok(message.bytes)
    }

    /// Creates a container; returns its init's pid and the runtime's warnings.
    pub fn create(&mut self, request: CreateContainer) -> Result<(i32, Vec<String>), ClientError> {
        match self.answer("create_container", &Request::CreateContainer(request))? {
            Response::Created { pid, warnings } => Ok((pid, warnings)),
            other => Err(unexpected("create_container", &other)),
        }
    }

    /// Starts a created container; returns the poststart hooks' warnings.
    pub fn start(&mut self, id: &str) -> Result<Vec<String>, ClientError> {
        match self.answer("start", &Request::Start { id: id.into() })? {
            Response::Started { warnings } => Ok(warnings),
            other => Err(unexpected("start", &other)),
        }
    }

    /// Sends `signal` to the container's init, or to all its processes.
    pub fn kill(&mut self, id: &str, signal: i32, all: bool) -> Result<(), ClientError> {
        let request = Request::Kill {
            id: id.into(),
            signal,
            all,
        };
        self.done("kill", &request)
    }

    /// Deletes a container.
    pub fn delete(&mut self, id: &str, force: bool) -> Result<(), ClientError> {
        let request = Request::Delete {
            id: id.into(),
            force,
        };
        self.done("delete", &request)
    }

    /// One container's record.
    pub fn state(&mut self, id: &str) -> Result<ContainerRecord, ClientError> {
        match self.answer("state", &Request::State { id: id.into() })? {
            Response::State(record) => Ok(record),
            other => Err(unexpected("state", &other)),
        }
    }

    /// Every container's record.
    pub fn list(&mut self) -> Result<Vec<ContainerRecord>, ClientError> {
        match self.answer("list", &Request::List)? {
            Response::List { containers } => Ok(containers),
            other => Err(unexpected("list", &other)),
        }
    }

    /// Blocks until the container has exited.
    pub fn wait(&mut self, id: &str) -> Result<ExitStatus, ClientError> {
        match self.answer("wait", &Request::Wait { id: id.into() })? {
            Response::Exited(status) => Ok(status),
            other => Err(unexpected("wait", &other)),
        }
    }

    /// Runs a process in a running container; returns its host pid and its stdio.
    pub fn exec(&mut self, request: ExecProcess) -> Result<(i32, ProcessStdio), ClientError> {
        let (response, fds) = self.answer_with_fds("exec", &Request::Exec(request))?;
        match response {
            Response::ExecStarted { pid, fds: roles } => {
                Ok((pid, ProcessStdio::from_roles(&roles, fds)?))
            }
            other => Err(unexpected("exec", &other)),
        }
    }

    /// Blocks until exec process `exec_id` of container `id` has exited.
    pub fn wait_exec(&mut self, id: &str, exec_id: &str) -> Result<ExitStatus, ClientError> {
        let request = Request::WaitExec {
            id: id.into(),
            exec_id: exec_id.into(),
        };
        match self.answer("wait_exec", &request)? {
            Response::Exited(status) => Ok(status),
            other => Err(unexpected("wait_exec", &other)),
        }
    }

    /// Sends `signal` to exec process `exec_id` of container `id` unless it has exited.
    pub fn kill_exec(&mut self, id: &str, exec_id: &str, signal: i32) -> Result<(), ClientError> {
        let request = Request::KillExec {
            id: id.into(),
            exec_id: exec_id.into(),
            signal,
        };
        self.done("kill_exec", &request)
    }

    /// Attaches to a container: its output from now on, its input and its terminal. A
    /// [`Client::wait`] on the same connection afterwards gives its exit.
    pub fn attach(&mut self, id: &str) -> Result<ProcessStdio, ClientError> {
        self.attach_with(id, false)
    }

    /// [`Client::attach`] that takes the container's stdin: the monitor hands over its own write
    /// end and keeps none, so the container sees end of file once this client closes it.
    pub fn attach_taking_stdin(&mut self, id: &str) -> Result<ProcessStdio, ClientError> {
        self.attach_with(id, true)
    }

    fn attach_with(&mut self, id: &str, take_stdin: bool) -> Result<ProcessStdio, ClientError> {
        let request = Request::Attach {
            id: id.into(),
            take_stdin,
        };
        let (response, fds) = self.answer_with_fds("attach", &request)?;
        match response {
            Response::Attached { fds: roles } => ProcessStdio::from_roles(&roles, fds),
            other => Err(unexpected("attach", &other)),
        }
    }

    /// Upgrades the monitor in place to `binary`; returns the binary it runs now.
    pub fn upgrade(&mut self, binary: &Path) -> Result<PathBuf, ClientError> {
        let request = Request::Upgrade {
            binary: binary.to_path_buf(),
        };
        match self.answer("upgrade", &request)? {
            Response::Upgraded { pid, binary } => {
                self.monitor_pid = pid;
                Ok(binary)
            }
            other => Err(unexpected("upgrade", &other)),
        }
    }

    /// Asks the monitor to exit once it has no containers.
    pub fn shutdown(&mut self) -> Result<(), ClientError> {
        self.done("shutdown", &Request::Shutdown)
    }

    fn answer(&mut self, name: &'static str, request: &Request) -> Result<Response, ClientError> {
        self.answer_with_fds(name, request)
            .map(|(response, _)| response)
    }

    fn answer_with_fds(
        &mut self,
        name: &'static str,
        request: &Request,
    ) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        match self.call_with_fds(request)? {
            (Response::Error(reply), _) => Err(ClientError::Refused(reply)),
            (Response::Hello { .. }, _) => Err(ClientError::Unexpected {
                request: name,
                response: "hello".into(),
            }),
            other => Ok(other),
        }
    }

    fn done(&mut self, name: &'static str, request: &Request) -> Result<(), ClientError> {
        match self.answer(name, request)? {
            Response::Done => Ok(()),
            other => Err(unexpected(name, &other)),
        }
    }
}

fn unexpected(request: &'static str, response: &Response) -> ClientError {
    ClientError::Unexpected {
        request,
        response: serde_json::to_string(response).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Read;
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A one-connection server that answers each request with the next canned response.
    fn serve(path: &Path, responses: Vec<Response>) -> std::thread::JoinHandle<Vec<Request>> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut decoder = FrameDecoder::new();
            let mut seen = Vec::new();
            let mut buf = [0u8; 256];
            for response in responses {
                let request = loop {
                    if let Some(body) = decoder.next_frame().unwrap() {
                        break decode::<Request>(body).unwrap();
                    }
                    let n = stream.read(&mut buf).unwrap();
                    decoder.push(&buf[..n]);
                };
                seen.push(request);
                stream.write_all(&encode(&response).unwrap()).unwrap();
            }
            seen
        })
    }

    #[test]
    fn the_client_says_hello_first_and_turns_refusals_into_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("s");
        let server = serve(
            &socket,
            vec![
                Response::Hello {
                    version: PROTOCOL_VERSION,
                    pid: 99,
                },
                Response::Error(ErrorReply::new(ErrorKind::NotFound, "no such container")),
            ],
        );
        let mut client = Client::connect(&socket).unwrap();
        assert_eq!(client.monitor_pid(), 99);
        let error = client.start("x").unwrap_err();
        assert_eq!(error.kind(), Some(ErrorKind::NotFound));
        assert_eq!(error.to_string(), "no such container");
        assert_eq!(
            server.join().unwrap(),
            [
                Request::Hello {
                    version: PROTOCOL_VERSION
                },
                Request::Start { id: "x".into() }
            ]
        );
    }
}
