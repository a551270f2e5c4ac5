//! Exec and Attach, the two bidirectional calls, as a pair of halves: [`ProcessInput`] sends the
//! process's input and its terminal's size, [`ProcessOutput`] yields its output and then how it
//! ended. The halves are independent, so a caller can read output while it waits for input.
//!
//! The first message of the call (`start`) is sent by [`Client::exec`] or [`Client::attach`];
//! dropping (or [`ProcessInput::close`]) the input half closes the client's side of the stream,
//! which closes the process's standard input. Dropping the output half cancels the call: the
//! daemon kills an exec process and detaches an attach.

use std::pin::Pin;

use futures_util::stream::{self, Stream, StreamExt};
use testudo_api::containers::v1::{
    attach_request, attach_response, exec_request, exec_response, AttachRequest, AttachResponse,
    AttachStart, ExecRequest, ExecResponse, ExecStart, Output, OutputStream, TerminalSize,
};
use tokio::sync::mpsc;

use crate::{Client, ClientError, MAX_CHUNK};

/// How many input messages may wait for the connection.
const INPUT_BACKLOG: usize = 16;

/// What the daemon sends on an Exec or Attach call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEvent {
    /// Bytes the process wrote.
    Output {
        /// Which stream; with a terminal, always stdout.
        stream: OutputStream,
        /// The bytes, as written.
        data: Vec<u8>,
    },
    /// How the process ended (its exit status, or 128 + N when killed by signal N); the last
    /// event.
    Exit(i32),
}

/// A client message after `start`, whatever the call.
enum Input {
    Stdin(Vec<u8>),
    Resize(TerminalSize),
}

/// Sends a process's input and its terminal's size.
#[derive(Debug)]
pub struct ProcessInput {
    call: &'static str,
    sender: mpsc::Sender<Input>,
}

impl ProcessInput {
    /// Sends `bytes` to the process's standard input, in chunks the API allows.
    pub async fn write(&self, bytes: &[u8]) -> Result<(), ClientError> {
        for chunk in bytes.chunks(MAX_CHUNK) {
            self.send(Input::Stdin(chunk.to_vec())).await?;
        }
        Ok(())
    }

    /// Sets the size of the process's terminal; the daemon ignores it without one.
    pub async fn resize(&self, columns: u16, rows: u16) -> Result<(), ClientError> {
        let size = TerminalSize {
            columns: columns.into(),
            rows: rows.into(),
        };
        self.send(Input::Resize(size)).await
    }

    /// Closes the client's side of the call, as dropping does: the process's standard input
    /// sees end of file, and no further resize can be sent.
    pub fn close(self) {}

    async fn send(&self, input: Input) -> Result<(), ClientError> {
        self.sender
            .send(input)
            .await
            .map_err(|_| ClientError::CallEnded { call: self.call })
    }
}

/// Yields a process's output and then its exit.
pub struct ProcessOutput {
    events: Pin<Box<dyn Stream<Item = Result<ProcessEvent, ClientError>> + Send>>,
}

impl std::fmt::Debug for ProcessOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessOutput").finish_non_exhaustive()
    }
}

impl ProcessOutput {
    /// The next event; `None` once the daemon ended the call (after [`ProcessEvent::Exit`], or
    /// without it when the daemon detached a client that fell behind).
    pub async fn next(&mut self) -> Result<Option<ProcessEvent>, ClientError> {
        self.events.next().await.transpose()
    }
}

/// The messages after `start`, as the call's request type.
fn requests<Req>(
    start: Req,
    receiver: mpsc::Receiver<Input>,
    wrap: fn(Input) -> Req,
) -> impl Stream<Item = Req> + Send + 'static
where
    Req: Send + 'static,
{
    let rest = stream::unfold(receiver, move |mut receiver| async move {
        receiver.recv().await.map(|input| (wrap(input), receiver))
    });
    stream::once(async move { start }).chain(rest)
}

fn output_event(output: Output) -> ProcessEvent {
    ProcessEvent::Output {
        stream: output.stream(),
        data: output.data,
    }
}

impl Client {
    /// Runs a process in a running container, as `start` says; returns once it runs.
    pub async fn exec(
        &mut self,
        start: ExecStart,
    ) -> Result<(ProcessInput, ProcessOutput), ClientError> {
        let (sender, receiver) = mpsc::channel(INPUT_BACKLOG);
        let start = ExecRequest {
            message: Some(exec_request::Message::Start(start)),
        };
        let wrap = |input| ExecRequest {
            message: Some(match input {
                Input::Stdin(bytes) => exec_request::Message::Stdin(bytes),
                Input::Resize(size) => exec_request::Message::Resize(size),
            }),
        };
        let responses = self
            .containers
            .exec(requests(start, receiver, wrap))
            .await?
            .into_inner();
        let events =
            responses.map(|response: Result<ExecResponse, tonic::Status>| {
                match response?.message {
                    Some(exec_response::Message::Output(output)) => Ok(output_event(output)),
                    Some(exec_response::Message::Exit(exit)) => {
                        Ok(ProcessEvent::Exit(exit.exit_code))
                    }
                    None => Err(ClientError::MissingField { field: "message" }),
                }
            });
        let input = ProcessInput {
            call: "exec",
            sender,
        };
        let output = ProcessOutput {
            events: Box::pin(events),
        };
        Ok((input, output))
    }

    /// Attaches to the main process of container `container` (an id or a name) of `namespace`:
    /// its output from now on, its input when it was created with `stdin`. A CREATED container
    /// may be attached before it is started, so that none of its output is missed.
    pub async fn attach(
        &mut self,
        namespace: &str,
        container: &str,
    ) -> Result<(ProcessInput, ProcessOutput), ClientError> {
        let (sender, receiver) = mpsc::channel(INPUT_BACKLOG);
        let start = AttachRequest {
            message: Some(attach_request::Message::Start(AttachStart {
                namespace: namespace.to_owned(),
                container: container.to_owned(),
            })),
        };
        let wrap = |input| AttachRequest {
            message: Some(match input {
                Input::Stdin(bytes) => attach_request::Message::Stdin(bytes),
                Input::Resize(size) => attach_request::Message::Resize(size),
            }),
        };
        let responses = self
            .containers
            .attach(requests(start, receiver, wrap))
            .await?
            .into_inner();
        let events =
            responses.map(|response: Result<AttachResponse, tonic::Status>| {
                match response?.message {
                    Some(attach_response::Message::Output(output)) => Ok(output_event(output)),
                    Some(attach_response::Message::Exit(exit)) => {
                        Ok(ProcessEvent::Exit(exit.exit_code))
                    }
                    None => Err(ClientError::MissingField { field: "message" }),
                }
            });
        let input = ProcessInput {
            call: "attach",
            sender,
        };
        let output = ProcessOutput {
            events: Box::pin(events),
        };
        Ok((input, output))
    }
}
