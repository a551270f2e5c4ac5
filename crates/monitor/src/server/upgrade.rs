//! The server's part of an in-place upgrade (see [`crate::handover`]): its listener and
//! connections cross the exec with the containers.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use testudo_monitor_protocol::{ErrorReply, Response};

use super::{Awaited, Connection, Server};
use crate::handover::{
    self, Adopter, AwaitedState, Capture, ConnectionState, Handover, HANDOVER_VERSION,
};
use crate::supervisor::Supervisor;

impl Server {
    /// Hands everything over to `binary`, for connection `upgrading`; returns only if this binary
    /// goes on serving, with the reason.
    pub(super) fn upgrade(&self, upgrading: usize, binary: &Path) -> ErrorReply {
        let mut capture = Capture::default();
        let mut connections = Vec::new();
        let mut upgrading_index = 0;
        for (i, c) in self.connections.iter().enumerate() {
            if c.closed {
                continue;
            }
            if i == upgrading {
                upgrading_index = connections.len();
            }
            connections.push(capture_connection(c, &mut capture));
        }
        let handover = Handover {
            version: HANDOVER_VERSION,
            socket: self.socket.clone(),
            listener: capture.fd(&self.listener),
            shutting_down: self.shutting_down,
            connections,
            upgrading: upgrading_index,
            supervisor: self.supervisor.capture(&mut capture),
        };
        handover::upgrade(binary, &handover, &capture)
    }

    /// The server a handover describes, with the answer to the upgrade queued.
    pub(crate) fn resume(handover: Handover, adopter: &mut Adopter) -> io::Result<Self> {
        let listener = UnixListener::from(adopter.take(handover.listener)?);
        let supervisor = Supervisor::resume(handover.supervisor, adopter)?;
        let mut server = Self::new(listener, handover.socket, supervisor)?;
        server.shutting_down = handover.shutting_down;
        for c in handover.connections {
            server.connections.push(resume_connection(c, adopter)?);
        }
        let binary = std::fs::read_link("/proc/self/exe")?;
        let answer = Response::Upgraded {
            pid: server.pid,
            binary,
        };
        server.connections[handover.upgrading].queue(&answer);
        Ok(server)
    }

    /// The socket path, to remove once the monitor is done.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }
}

fn capture_connection<'a>(c: &'a Connection, capture: &mut Capture<'a>) -> ConnectionState {
    ConnectionState {
        fd: capture.fd(&c.stream),
        inbox: c.inbox.pending_bytes().to_vec(),
        outbox: c.outbox.clone(),
        outbox_fds: c.outbox_fds.iter().map(|fd| capture.fd(fd)).collect(),
        greeted: c.greeted,
        waiting_for: c.waiting_for.as_ref().map(|awaited| match awaited {
            Awaited::Container(id) => AwaitedState::Container(id.clone()),
            Awaited::Exec(id, exec_id) => AwaitedState::Exec(id.clone(), exec_id.clone()),
        }),
        closing: c.closing,
    }
}

fn resume_connection(c: ConnectionState, adopter: &mut Adopter) -> io::Result<Connection> {
    let stream = UnixStream::from(adopter.take(c.fd)?);
    let mut connection = Connection::new(stream);
    connection.inbox.push(&c.inbox);
    connection.outbox = c.outbox;
    connection.outbox_fds = c
        .outbox_fds
        .into_iter()
        .map(|fd| adopter.take(fd))
        .collect::<io::Result<_>>()?;
    connection.greeted = c.greeted;
    connection.waiting_for = c.waiting_for.map(|awaited| match awaited {
        AwaitedState::Container(id) => Awaited::Container(id),
        AwaitedState::Exec(id, exec_id) => Awaited::Exec(id, exec_id),
    });
    connection.closing = c.closing;
    Ok(connection)
}
