//! The contract between the daemon and a container monitor (`testudo monitor`): the messages, their
//! framing on the monitor's unix socket, the on-disk record of each supervised container, and a small
//! synchronous client.
//!
//! Non-goals: no I/O policy beyond the blocking [`Client`] (an async caller frames with [`encode`] and
//! [`FrameDecoder`] itself, and receives descriptors with `recvmsg`), no container logic, no dependency
//! on any other testudo crate (both the async daemon and the synchronous monitor link it; `rustix`
//! gives the descriptor passing and the terminal resize without `unsafe`).
//!
//! # Why JSON in length-prefixed frames, not protobuf
//!
//! The monitor is a re-exec of the static `testudo` binary, once per group of containers, so its code
//! size and start-up cost are paid per group. That binary already links `serde` and `serde_json` (the
//! runtime's state files and its parent <-> init messages use them), so JSON frames add no dependency
//! and almost no code to it, and no build-time protobuf compiler to the workspace. prost messages would
//! add the prost runtime and generated code to every monitor for messages of a few hundred bytes sent a
//! few times per container lifetime, where encoding speed does not matter. The framing (a big-endian
//! `u32` length, then the body) lets the body's encoding change in a later protocol version without
//! changing how frames are found; the [`Request::Hello`] exchange says which version is spoken.
//!
//! # The protocol
//!
//! - A frame is a 4-byte big-endian length `n` followed by `n` bytes of UTF-8 JSON holding one
//!   [`Request`] (client to monitor) or one [`Response`] (monitor to client). `n` MUST NOT exceed
//!   [`MAX_FRAME`]; a peer that receives a larger length MUST close the connection (the monitor first
//!   answers with an [`ErrorKind::InvalidArgument`] error).
//! - The first request on a connection MUST be [`Request::Hello`] with the client's
//!   [`PROTOCOL_VERSION`]; the monitor answers [`Response::Hello`] with its own version and pid, or an
//!   [`ErrorKind::FailedPrecondition`] error when it does not speak that version. Other requests before
//!   the hello are refused with [`ErrorKind::FailedPrecondition`].
//! - Every request gets exactly one response, in request order. A [`Request::Wait`] is answered when
//!   the container has exited, so requests sent after it on the same connection are answered after
//!   that; a client that needs both SHOULD use a second connection.
//! - A body that is not a valid request is answered with [`ErrorKind::InvalidArgument`]; the connection
//!   stays usable because the framing is intact.
//! - A client MUST keep its write side open until it has read its responses: the monitor treats end of
//!   file as the end of the connection.
//! - [`Response::ExecStarted`] and [`Response::Attached`] carry descriptors as `SCM_RIGHTS`
//!   ancillary data on the bytes of their frame, so a client that sends [`Request::Exec`] or
//!   [`Request::Attach`] MUST read with `recvmsg` (the [`Client`] always does); the monitor is then no
//!   byte pump for exec processes. An attached client's output pipes are fed by the monitor as it
//!   logs: a client that falls a pipe buffer behind is detached (its pipes are closed), and the pipes
//!   reach end of file when the container's process has exited; a [`Request::Wait`] sent after the
//!   attach then gives the exit.
//! - [`Request::Upgrade`] re-executes the monitor as another binary in the same process. Every
//!   connection survives it, with its unanswered requests and pending answers; the upgrade's own
//!   answer ([`Response::Upgraded`], or an error when the binary cannot resume the monitor, in
//!   which case nothing has changed) is sent on the requesting connection before the answers to
//!   the requests that followed it.
//! - The monitor keeps a [`ContainerRecord`] per container at [`record_path`] in its state directory,
//!   replaced atomically (and durably) on every change of state, so a daemon that restarts learns how a
//!   container ended even if the monitor has gone.

mod client;
mod frame;
mod message;
mod record;

pub use client::{resize_terminal, Client, ClientError, ProcessStdio};
pub use frame::{decode, encode, FrameDecoder, FrameError, MAX_FRAME};
pub use message::{
    ContainerRecord, ContainerStatus, CreateContainer, ErrorKind, ErrorReply, ExecProcess,
    ExitStatus, FdRole, LogRotation, Request, Response, Termination, PROTOCOL_VERSION,
};
pub use record::{read_record, read_records, record_path, RecordError, RECORD_DIR};
