//! Supervising one child: wait for it while reaping every other child that ends up ours, and
//! pass the signals a supervisor receives on to it. Used by a foreground `run`/`exec`, and by
//! `testudo reap`, the minimal init that `init: yes` puts as PID 1 in a container (as tini and
//! catatonit do): an orphan inside the container is reparented to PID 1, which must reap it or
//! it stays a zombie, and a signal sent to the container reaches PID 1 only.

use std::ffi::OsString;
use std::io;
use std::process::Command;

use rustix::process::{Pid, WaitOptions};

/// Signals passed on to the supervised process.
pub const FORWARDED: &[i32] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
    libc::SIGTSTP,
    libc::SIGALRM,
    libc::SIGPWR,
];

/// Why supervising failed.
#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    /// The signals cannot be blocked or waited for.
    #[error("cannot wait for signals")]
    Signals(#[source] io::Error),
    /// Waiting for children failed.
    #[error("cannot wait for the process")]
    Wait(#[source] io::Error),
    /// The supervised process is not a child any more (someone else reaped it).
    #[error("the process {0} disappeared")]
    Disappeared(i32),
    /// The program cannot be started.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `reap` was given no program.
    #[error("usage: testudo reap [--] PROGRAM [ARG]...")]
    Usage,
}

/// Blocks [`FORWARDED`] and `SIGCHLD`, so that they queue for [`wait_forwarding`]; call it
/// before the child starts, or a signal that arrives in between is handled the default way.
pub fn block_forwarded() -> Result<(), ReaperError> {
    let mut watched = FORWARDED.to_vec();
    watched.push(libc::SIGCHLD);
    testudo_linux::signal::block(&watched).map_err(ReaperError::Signals)
}

/// Waits for the child `pid`, reaping any other child on the way and forwarding each signal
/// of [`FORWARDED`] to it, unless `intercept` takes the signal (returns true); returns its
/// exit code as a shell reports it (128 + signal for a killed process). The signals must be
/// blocked ([`block_forwarded`]).
pub fn wait_forwarding(
    pid: i32,
    mut intercept: impl FnMut(i32) -> bool,
) -> Result<u8, ReaperError> {
    let mut watched = FORWARDED.to_vec();
    watched.push(libc::SIGCHLD);
    let target = Pid::from_raw(pid).ok_or(ReaperError::Disappeared(pid))?;
    loop {
        // Reap first: the child may have exited before the signals were blocked.
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((p, status))) if p == target => {
                    if let Some(code) = status.exit_status() {
                        return Ok(u8::try_from(code & 0xff).unwrap_or(1));
                    }
                    if let Some(sig) = status.terminating_signal() {
                        return Ok(u8::try_from(128 + (sig & 0x7f)).unwrap_or(255));
                    }
                }
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(rustix::io::Errno::CHILD) => return Err(ReaperError::Disappeared(pid)),
                Err(e) => return Err(ReaperError::Wait(e.into())),
            }
        }
        let (sig, _) =
            testudo_linux::signal::wait_for_signal(&watched).map_err(ReaperError::Signals)?;
        if sig != libc::SIGCHLD && !intercept(sig) {
            // The child may be gone already; its exit shows up at the next wait.
            let _ = testudo_linux::process::kill(pid, sig);
        }
    }
}

/// `testudo reap [--] PROGRAM [ARG]...`: runs the program as a child and supervises it; returns
/// its exit code for the caller to exit with.
pub fn reap(args: &[OsString]) -> Result<u8, ReaperError> {
    let args = match args.first() {
        Some(first) if first == "--" => &args[1..],
        _ => args,
    };
    let (program, rest) = args.split_first().ok_or(ReaperError::Usage)?;
    block_forwarded()?;
    // std resets the signal mask and SIGPIPE in the child, so the program starts as usual.
    let child = Command::new(program)
        .args(rest)
        .spawn()
        .map_err(|source| ReaperError::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
    let pid = i32::try_from(child.id()).map_err(|_| ReaperError::Disappeared(-1))?;
    wait_forwarding(pid, |_| false)
}
