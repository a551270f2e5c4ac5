//! A blocking client: one connection, one request at a time.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::frame::{decode, encode, FrameDecoder, FrameError};
use crate::message::{
    ContainerRecord, CreateContainer, ErrorKind, ErrorReply, ExitStatus, Request, Response,
    PROTOCOL_VERSION,
};

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

/// A connection to a monitor, past the version exchange.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    decoder: FrameDecoder,
    monitor_pid: i32,
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
    pub fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        let frame = encode(request)?;
        self.stream.write_all(&frame).map_err(ClientError::Io)?;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(body) = self.decoder.next_frame()? {
                return Ok(decode(body)?);
            }
            let n = self.stream.read(&mut chunk).map_err(ClientError::Io)?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.decoder.push(&chunk[..n]);
        }
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

    /// Asks the monitor to exit once it has no containers.
    pub fn shutdown(&mut self) -> Result<(), ClientError> {
        self.done("shutdown", &Request::Shutdown)
    }

    fn answer(&mut self, name: &'static str, request: &Request) -> Result<Response, ClientError> {
        match self.call(request)? {
            Response::Error(reply) => Err(ClientError::Refused(reply)),
            Response::Hello { .. } => Err(ClientError::Unexpected {
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
