//! Supervising one child: wait for it while reaping every other child that ends up ours, and
//! pass the signals a supervisor receives on to it. Used by a foreground `run`/`exec`, and by
//! `testudo reap`, the minimal init that `init: yes` puts as PID 1 in a container (as tini and
//! catatonit do): an orphan inside the container is reparented to PID 1, which must reap it or
//! it stays a zombie, and a signal sent to the container reaches PID 1 only.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{Pid, WaitOptions};
use testudo_linux::process::Forked;

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
    let pid = spawn_unblocked(program, rest).map_err(|source| ReaperError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    wait_forwarding(pid, |_| false)
}

/// Starts `program` with the signal mask and dispositions a program expects. `Command` would
/// pass on the mask that [`block_forwarded`] set, and a program that starts with SIGTERM
/// blocked never sees the TERM it is sent. An exec failure comes back through a close-on-exec
/// pipe, so it is reported here rather than as an exit code.
fn spawn_unblocked(program: &OsStr, args: &[OsString]) -> io::Result<i32> {
    let path = find_program(program)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such program"))?;
    let c = |s: &OsStr| CString::new(s.as_bytes()).map_err(io::Error::other);
    let path = c(path.as_os_str())?;
    let argv = std::iter::once(program)
        .chain(args.iter().map(OsString::as_os_str))
        .map(c)
        .collect::<io::Result<Vec<_>>>()?;
    let envp = std::env::vars_os()
        .map(|(k, v)| {
            let mut entry = k;
            entry.push("=");
            entry.push(v);
            c(&entry)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let (reader, writer) = pipe_with(PipeFlags::CLOEXEC)?;
    // Everything the child needs was prepared above; this process is single-threaded.
    match testudo_linux::process::clone3(0)? {
        Forked::Child => {
            drop(reader);
            let error = match testudo_linux::signal::reset_for_exec() {
                Ok(()) => testudo_linux::process::execve(&path, &argv, &envp),
                Err(e) => e,
            };
            let errno = error.raw_os_error().unwrap_or(libc::ENOEXEC);
            let _ = rustix::io::write(&writer, &errno.to_ne_bytes());
            testudo_linux::process::exit_immediately(127)
        }
        Forked::Parent(pid) => {
            drop(writer);
            let mut errno = [0u8; 4];
            let read = loop {
                match rustix::io::read(&reader, &mut errno) {
                    Err(rustix::io::Errno::INTR) => continue,
                    other => break other?,
                }
            };
            if read == errno.len() {
                // The child exits at once; reap it so it does not linger.
                let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
                return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
            }
            Ok(pid.as_raw_nonzero().get())
        }
    }
}

/// `program` itself when it holds a `/`, else the first executable file of that name in `PATH`
/// (the image's usual PATH when the variable is unset).
fn find_program(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
