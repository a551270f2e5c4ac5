//! The containers' part of an in-place upgrade (see [`crate::handover`]).

use std::fs::File;
use std::io;

use testudo_runtime::StateRoot;

use super::{exec::ExecChild, Output, Supervised, Supervisor, Tap};
use crate::cri_log::{CriLog, LineSplitter};
use crate::handover::{
    Adopter, Capture, ContainerState, LogState, OutputState, SupervisorState, TapState,
};

impl Supervisor {
    /// Its state for the handover; the descriptors it names go into `capture`.
    pub(crate) fn capture<'a>(&'a self, capture: &mut Capture<'a>) -> SupervisorState {
        SupervisorState {
            runtime_root: self.runtime_root.path().to_path_buf(),
            state_dir: self.state_dir.clone(),
            next_attach: self.next_attach,
            containers: self
                .containers
                .iter()
                .map(|c| capture_container(c, capture))
                .collect(),
            deleted: self.deleted.clone(),
        }
    }

    /// Takes over the containers of a handover.
    pub(crate) fn resume(state: SupervisorState, adopter: &mut Adopter) -> io::Result<Self> {
        let mut supervisor = Self::new(StateRoot::new(state.runtime_root), state.state_dir);
        supervisor.next_attach = state.next_attach;
        supervisor.deleted = state.deleted;
        for c in state.containers {
            supervisor.containers.push(resume_container(c, adopter)?);
        }
        Ok(supervisor)
    }
}

fn capture_container<'a>(c: &'a Supervised, capture: &mut Capture<'a>) -> ContainerState {
    let (path, file, size, rotation) = c.log.parts();
    let output = |o: &'a Option<Output>, capture: &mut Capture<'a>| {
        o.as_ref().map(|o| OutputState {
            fd: capture.fd(&o.fd),
            stream: o.stream,
            held: o.splitter.held().to_vec(),
            terminal: o.terminal,
        })
    };
    ContainerState {
        record: c.record.clone(),
        pidfd: c.pidfd.as_ref().map(|fd| capture.fd(fd)),
        outputs: [
            output(&c.outputs[0], capture),
            output(&c.outputs[1], capture),
        ],
        stdin: c.stdin.as_ref().map(|fd| capture.fd(fd)),
        log: LogState {
            path: path.to_path_buf(),
            fd: capture.fd(file),
            size,
            rotation,
        },
        taps: c
            .taps
            .iter()
            .map(|t| TapState {
                attach: t.attach,
                stream: t.stream,
                fd: capture.fd(&t.fd),
            })
            .collect(),
        execs: c.execs.iter().map(|e| e.capture(capture)).collect(),
    }
}

fn resume_container(c: ContainerState, adopter: &mut Adopter) -> io::Result<Supervised> {
    let [stdout, stderr] = c.outputs;
    let mut output = |o: Option<OutputState>| -> io::Result<Option<Output>> {
        o.map(|o| {
            Ok(Output {
                fd: adopter.take(o.fd)?,
                stream: o.stream,
                splitter: LineSplitter::holding(o.held),
                terminal: o.terminal,
            })
        })
        .transpose()
    };
    let outputs = [output(stdout)?, output(stderr)?];
    let log = CriLog::from_parts(
        c.log.path,
        File::from(adopter.take(c.log.fd)?),
        c.log.size,
        c.log.rotation,
    );
    let taps = c
        .taps
        .into_iter()
        .map(|t| {
            Ok(Tap {
                attach: t.attach,
                stream: t.stream,
                fd: adopter.take(t.fd)?,
            })
        })
        .collect::<io::Result<_>>()?;
    let execs = c
        .execs
        .into_iter()
        .map(|e| ExecChild::resume(e, adopter))
        .collect::<io::Result<_>>()?;
    Ok(Supervised {
        record: c.record,
        pidfd: c.pidfd.map(|fd| adopter.take(fd)).transpose()?,
        outputs,
        stdin: c.stdin.map(|fd| adopter.take(fd)).transpose()?,
        log,
        taps,
        execs,
    })
}
