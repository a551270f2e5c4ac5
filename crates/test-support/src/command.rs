//! Running host commands with a deadline, and describing their outcome in panic messages.
//!
//! `Command::output` waits for end-of-file on stdout and stderr, which never comes when the
//! command leaves a process behind that inherited them: `runc create` and `runc run -d` hand their
//! stdio to the container's init. So output is read by threads, the wait is for the process itself,
//! and whatever the pipes held shortly after it exited is what the caller gets.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long a command may run before it is killed and reported as hung.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long to wait for the pipes to reach end-of-file once the command exited.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

type Captured = Arc<Mutex<Vec<u8>>>;

/// Runs `cmd` with stdin from /dev/null and stdout/stderr captured, killing it after `timeout`.
pub(crate) fn output_within(cmd: &mut Command, timeout: Duration) -> io::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let (eof_tx, eof_rx) = mpsc::channel();
    let stdout = drain(child.stdout.take(), eof_tx.clone());
    let stderr = drain(child.stderr.take(), eof_tx);
    let status = match wait_until(&mut child, Instant::now() + timeout)? {
        Some(status) => status,
        None => {
            // Best effort: the command is reported as hung whether or not the kill lands.
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("still running after {timeout:?}; killed"),
            ));
        }
    };
    wait_for_eofs(&eof_rx, 2);
    Ok(Output {
        status,
        stdout: snapshot(&stdout),
        stderr: snapshot(&stderr),
    })
}

/// Like [`output_within`] with the default timeout, panicking when the command cannot be run.
pub(crate) fn output_of(cmd: &mut Command) -> Output {
    let line = command_line(cmd);
    output_within(cmd, DEFAULT_TIMEOUT).unwrap_or_else(|e| panic!("`{line}`: {e}"))
}

fn wait_until(
    child: &mut std::process::Child,
    deadline: Instant,
) -> io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn wait_for_eofs(eofs: &Receiver<()>, count: usize) {
    let deadline = Instant::now() + DRAIN_GRACE;
    for _ in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        match eofs.recv_timeout(left) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// A pipe of the child: stdout or stderr.
trait Pipe: Read + Send + 'static {}
impl Pipe for ChildStdout {}
impl Pipe for ChildStderr {}

fn drain(pipe: Option<impl Pipe>, eof: Sender<()>) -> Captured {
    let captured = Captured::default();
    let Some(mut pipe) = pipe else {
        let _ = eof.send(());
        return captured;
    };
    let sink = Arc::clone(&captured);
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&chunk[..n]),
            }
        }
        // The receiver is gone when the caller stopped waiting; nothing to tell then.
        let _ = eof.send(());
    });
    captured
}

fn snapshot(captured: &Captured) -> Vec<u8> {
    captured
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The command as a shell-like line, for messages.
pub(crate) fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Exit status, stdout and stderr of `output`, for panic messages.
pub(crate) fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Panics, showing `what`, the exit status, stdout and stderr, unless `output` reports success.
///
/// For the raw [`Output`]s that [`Podman`](crate::Podman) and [`Containerd`](crate::Containerd)
/// return: `assert_success("podman run", &out)`.
pub fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        describe(output)
    );
}

/// An error and its sources joined with `: `, as a binary prints the chain in one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_captured_and_status_reported() {
        let out = output_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .expect("sh runs");
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn output_returns_when_a_left_behind_process_keeps_the_pipes_open() {
        let started = Instant::now();
        let out = output_within(
            Command::new("sh").args(["-c", "sleep 5 & echo parent done"]),
            Duration::from_secs(10),
        )
        .expect("sh runs");
        assert_eq!(out.stdout, b"parent done\n");
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn hung_command_is_killed_at_the_deadline() {
        let err = output_within(Command::new("sleep").arg("30"), Duration::from_millis(100))
            .expect_err("sleep outlives the deadline");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    #[should_panic(expected = "false failed")]
    fn assert_success_panics_on_failure() {
        let out = output_of(&mut Command::new("false"));
        assert_success("false", &out);
    }
}
