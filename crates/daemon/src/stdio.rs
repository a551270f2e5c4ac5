//! The streams of Exec and Attach over the engine's `ProcessIo`: client messages after `start`
//! become stdin writes and terminal resizes, the process's output and then its exit become
//! responses.
//!
//! Each call gets one task that relays output and watches the client; client messages are read
//! by a second task, so that a process that does not read its input never holds up its output.
//! When the client goes away or breaks the protocol, an exec process is killed (its stdio closing
//! is not enough: a process may ignore both end of file and `SIGHUP`); an attach just detaches.

use testudo_api::containers::v1::{ExitStatus, Output, OutputStream, TerminalSize};
use testudo_engine::containers::{self as engine, ExecKill, ExitFuture, ProcessIo, TerminalResize};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::request::{terminal_size, RequestError, MAX_CHUNK};
use crate::status::CallError;

/// A client message after `start`, whatever the call.
pub(crate) enum ClientMessage {
    /// `start` again.
    Start,
    /// Bytes for the process's input.
    Stdin(Vec<u8>),
    /// The terminal's new size.
    Resize(TerminalSize),
    /// A message with nothing set.
    Empty,
}

/// A server message, whatever the call.
pub(crate) enum ServerMessage {
    Output(Output),
    Exit(ExitStatus),
}

/// How the calls differ.
pub(crate) struct Call<Req, Resp> {
    /// `exec` or `attach`, for messages.
    pub(crate) name: &'static str,
    /// The container, as the client named it, for messages.
    pub(crate) container: String,
    /// Set when `stdin` messages are refused (an exec started without `stdin`, an attach to a
    /// container created without it): the error for the container as the client named it.
    pub(crate) refuse_stdin: Option<fn(String) -> CallError>,
    pub(crate) classify: fn(Req) -> ClientMessage,
    pub(crate) respond: fn(ServerMessage) -> Resp,
}

/// How many responses may wait for the client.
const RESPONSE_BACKLOG: usize = 16;

/// Serves the rest of a call whose `start` was accepted and whose process is `io`.
pub(crate) fn serve<Req, Resp>(
    call: Call<Req, Resp>,
    requests: Streaming<Req>,
    io: ProcessIo,
) -> ReceiverStream<Result<Resp, Status>>
where
    Req: Send + 'static,
    Resp: Send + 'static,
{
    let (responses, receiver) = mpsc::channel(RESPONSE_BACKLOG);
    tokio::spawn(async move {
        let ProcessIo {
            stdin,
            output,
            resize,
            exit,
            kill,
        } = io;
        let input = Input {
            name: call.name,
            container: call.container.clone(),
            refuse_stdin: call.refuse_stdin,
            classify: call.classify,
        };
        let input = tokio::spawn(input.forward(requests, stdin, resize));
        relay(&call, output, exit, kill, input, responses).await;
    });
    ReceiverStream::new(receiver)
}

/// Why a call ended before the process's exit was sent.
enum Ended {
    /// The client cancelled or stopped listening.
    ClientGone,
    /// The call fails with this status.
    Failed(Status),
}

/// Sends output, then the exit; on an early end, kills an exec process.
async fn relay<Req, Resp>(
    call: &Call<Req, Resp>,
    mut output: mpsc::Receiver<engine::OutputChunk>,
    mut exit: ExitFuture,
    kill: Option<ExecKill>,
    mut input: JoinHandle<Result<(), Status>>,
    responses: mpsc::Sender<Result<Resp, Status>>,
) {
    let respond = call.respond;
    let mut output_open = true;
    let mut input_open = true;
    let ended = loop {
        tokio::select! {
            chunk = output.recv(), if output_open => match chunk {
                Some(chunk) => {
                    if !send_output(&responses, respond, chunk).await {
                        break Ended::ClientGone;
                    }
                }
                None => output_open = false,
            },
            code = &mut exit, if !output_open => {
                let message = match code {
                    Ok(exit_code) => Ok(respond(ServerMessage::Exit(ExitStatus { exit_code }))),
                    Err(e) => Err(Status::from(CallError::from(e))),
                };
                let _ = responses.send(message).await;
                input.abort();
                return;
            }
            done = &mut input, if input_open => match done {
                // The client closed its side: the end of input, the call goes on.
                Ok(Ok(())) => input_open = false,
                Ok(Err(status)) => break Ended::Failed(status),
                Err(e) => break Ended::Failed(Status::from(CallError::from(e))),
            },
            () = responses.closed() => break Ended::ClientGone,
        }
    };
    input.abort();
    if let Some(kill) = kill {
        if let Err(e) = kill.kill().await {
            tracing::warn!(container = %call.container, error = %crate::chain(&e), "cannot kill an exec process whose client went away");
        }
        // Collected, so that the monitor forgets the process.
        tokio::spawn(async move {
            if let Err(e) = exit.await {
                tracing::debug!(error = %crate::chain(&e), "exit of a killed exec process");
            }
        });
    }
    match ended {
        Ended::ClientGone => {
            tracing::debug!(container = %call.container, call = call.name, "client went away");
        }
        Ended::Failed(status) => {
            let _ = responses.send(Err(status)).await;
        }
    }
}

/// Sends `chunk` in pieces of at most [`MAX_CHUNK`]; false once the client is gone.
async fn send_output<Resp>(
    responses: &mpsc::Sender<Result<Resp, Status>>,
    respond: fn(ServerMessage) -> Resp,
    chunk: engine::OutputChunk,
) -> bool {
    let stream = match chunk.stream {
        engine::OutputStream::Stdout => OutputStream::Stdout,
        engine::OutputStream::Stderr => OutputStream::Stderr,
    };
    for piece in chunk.data.chunks(MAX_CHUNK) {
        let output = Output {
            stream: stream.into(),
            data: piece.to_vec(),
        };
        if responses
            .send(Ok(respond(ServerMessage::Output(output))))
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

/// Reads the client's messages after `start`.
struct Input<Req> {
    name: &'static str,
    container: String,
    refuse_stdin: Option<fn(String) -> CallError>,
    classify: fn(Req) -> ClientMessage,
}

impl<Req> Input<Req> {
    /// Writes stdin and resizes the terminal until the client closes its side (`Ok`) or sends
    /// a message it may not (`Err`, the status the call ends with). Dropping the stdin writer at
    /// the end closes an exec process's input.
    async fn forward(
        self,
        mut requests: Streaming<Req>,
        mut stdin: Option<pipe::Sender>,
        resize: Option<TerminalResize>,
    ) -> Result<(), Status> {
        while let Some(request) = requests.message().await? {
            match (self.classify)(request) {
                ClientMessage::Start => {
                    return Err(RequestError::StartTwice { call: self.name }.into_status())
                }
                ClientMessage::Empty => {
                    return Err(RequestError::EmptyMessage { call: self.name }.into_status())
                }
                ClientMessage::Stdin(bytes) => {
                    if bytes.len() > MAX_CHUNK {
                        return Err(RequestError::StdinTooLarge { size: bytes.len() }.into_status());
                    }
                    if let Some(refusal) = self.refuse_stdin {
                        return Err(Status::from(refusal(self.container.clone())));
                    }
                    let Some(writer) = stdin.as_mut() else {
                        continue;
                    };
                    if let Err(e) = writer.write_all(&bytes).await {
                        // The process closed its input or ended: later input has nowhere to go.
                        tracing::debug!(container = %self.container, error = %e, "stdin closed");
                        stdin = None;
                    }
                }
                ClientMessage::Resize(size) => {
                    let (rows, columns) = terminal_size(size).map_err(RequestError::into_status)?;
                    if let Some(terminal) = &resize {
                        if let Err(e) = terminal.resize(rows, columns) {
                            tracing::debug!(container = %self.container, error = %e, "resize a terminal");
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
