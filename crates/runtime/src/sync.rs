//! Messages between the runtime process and the container's init over their socket pair: a 4-byte
//! little-endian length, then JSON. Stream sockets keep large plans (a seccomp program is up to 32 KiB)
//! out of datagram size limits.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

use crate::plan::InitPlan;

/// Largest message accepted; a plan is a few kilobytes plus the seccomp program.
const MAX_MESSAGE: u32 = 8 << 20;

/// A message on the sync socket.
#[derive(Debug, Serialize, Deserialize)]
pub enum SyncMessage {
    /// Runtime to init: what to do.
    Plan(Box<InitPlan>),
    /// Init to runtime: namespaces and mounts exist; run prestart and createRuntime hooks.
    RunRuntimeHooks,
    /// Runtime to init: the runtime hooks succeeded.
    RuntimeHooksDone,
    /// Init to runtime: set-up is complete (create: waiting for start; exec: about to execute).
    Ready,
    /// Init to runtime: set-up failed.
    Failed(String),
    /// Runtime to init (`run`): execute the process now.
    Start,
    /// Init to runtime: it created a user namespace; write its id maps.
    MapIds,
    /// Runtime to init: the id maps are written.
    IdsMapped,
    /// Init to runtime: it forked into a new pid namespace; this (host) pid is the container's
    /// process from now on, and the sender exits.
    Forked(i32),
}

/// Writes one message.
pub fn send(stream: &mut UnixStream, message: &SyncMessage) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    let len =
        u32::try_from(body.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame)
}

/// Reads one message; `Ok(None)` when the peer closed the socket (for exec: the program was executed).
pub fn receive(stream: &mut UnixStream) -> io::Result<Option<SyncMessage>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "sync message too large",
        ));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof_is_none() {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        send(&mut a, &SyncMessage::Failed("boom".into())).expect("send");
        send(&mut a, &SyncMessage::Ready).expect("send");
        drop(a);
        assert!(matches!(receive(&mut b).expect("r"), Some(SyncMessage::Failed(m)) if m == "boom"));
        assert!(matches!(
            receive(&mut b).expect("r"),
            Some(SyncMessage::Ready)
        ));
        assert!(receive(&mut b).expect("eof").is_none());
    }
}
