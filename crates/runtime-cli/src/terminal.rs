//! A terminal for a foreground `run` or `exec` without `--console-socket`: the runtime listens on a
//! console socket of its own, receives the pty master from the init like any client would, and copies
//! between it and its own stdio.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::JoinHandle;

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize, OptionalActions, Termios};

/// A console socket in a private temporary directory.
pub(crate) struct OwnConsole {
    dir: PathBuf,
    listener: UnixListener,
}

impl OwnConsole {
    /// Listens on a fresh socket.
    pub(crate) fn new() -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("testudo-console-{}", std::process::id()));
        std::fs::create_dir(&dir)?;
        match UnixListener::bind(dir.join("sock")) {
            Ok(listener) => Ok(Self { dir, listener }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// The socket path to hand to `create`/`exec`.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// Takes the pty master the init sent.
    pub(crate) fn receive_master(&self) -> io::Result<OwnedFd> {
        let (stream, _) = self.listener.accept()?;
        let mut buf = [0u8; 64];
        let (_, fd) = testudo_linux::fd::recv_fd(&stream, &mut buf)?;
        fd.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the console socket received no descriptor",
            )
        })
    }
}

impl Drop for OwnConsole {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Copies stdin to the master and the master to stdout until the container's side closes; puts a
/// terminal stdin in raw mode meanwhile (restored on drop).
pub(crate) struct Proxy {
    output: Option<JoinHandle<()>>,
    saved: Option<Termios>,
    master: OwnedFd,
}

impl Proxy {
    /// Starts copying.
    pub(crate) fn start(master: OwnedFd) -> io::Result<Self> {
        let stdin = io::stdin();
        let saved = tcgetattr(&stdin).ok();
        if let Some(original) = &saved {
            let mut raw = original.clone();
            raw.make_raw();
            tcsetattr(&stdin, OptionalActions::Now, &raw)?;
            if let Ok(size) = tcgetwinsize(&stdin) {
                let _ = tcsetwinsize(&master, size);
            }
        }
        let mut from_master = std::fs::File::from(master.try_clone()?);
        let output = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut out = io::stdout();
            // EIO means every slave descriptor is closed: the container's side is done.
            while let Ok(n @ 1..) = from_master.read(&mut buf) {
                if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
        });
        let mut to_master = std::fs::File::from(master.try_clone()?);
        // Input stops with our stdin or when the process exits; the thread is not waited for.
        std::thread::spawn(move || {
            let _ = io::copy(&mut io::stdin(), &mut to_master);
        });
        Ok(Self {
            output: Some(output),
            saved,
            master,
        })
    }

    /// Copies our terminal's size to the container's (on SIGWINCH).
    pub(crate) fn resize(&self) {
        if let Ok(size) = tcgetwinsize(io::stdin()) {
            let _ = tcsetwinsize(self.master.as_fd(), size);
        }
    }

    /// Waits until everything the container wrote has been copied.
    pub(crate) fn finish(mut self) {
        if let Some(output) = self.output.take() {
            let _ = output.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(io::stdin(), OptionalActions::Now, saved);
        }
    }
}
