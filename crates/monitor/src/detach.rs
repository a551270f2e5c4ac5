//! Forking the monitor process off its starter, as a shim does.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;

use testudo_linux::process::{clone3, Forked};
use testudo_runtime::StateRoot;

use crate::server::Server;
use crate::supervisor::Supervisor;
use crate::{MonitorConfig, MonitorError, MONITOR_LOG};

/// The monitor process, as its starter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detached {
    /// The monitor's pid.
    pub pid: i32,
}

/// Forks; the child becomes the monitor and exits when it is done.
pub(crate) fn fork_monitor(
    config: &MonitorConfig,
    listener: UnixListener,
) -> Result<Detached, MonitorError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(config.state_dir.join(MONITOR_LOG))
        .map_err(|source| MonitorError::StateDir {
            path: config.state_dir.join(MONITOR_LOG),
            source,
        })?;
    match clone3(0).map_err(MonitorError::Fork)? {
        Forked::Parent(pid) => Ok(Detached {
            pid: pid.as_raw_nonzero().get(),
        }),
        Forked::Child => {
            let code = match monitor_main(config, listener, log) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("testudo monitor: {e}");
                    1
                }
            };
            let _ = std::fs::remove_file(&config.socket);
            std::process::exit(code)
        }
    }
}

fn monitor_main(config: &MonitorConfig, listener: UnixListener, log: File) -> io::Result<()> {
    detach(&log)?;
    // Its stderr is the log now: the monitor holds one descriptor of it, not two.
    drop(log);
    // Whatever else its starter left open (close-on-exec or not: there is no exec here) would
    // stay open for the monitor's whole life; only the listener and stdio are its own.
    testudo_linux::fd::close_all_but(listener.as_fd())?;
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    let supervisor = Supervisor::new(
        StateRoot::new(&config.runtime_root),
        config.state_dir.clone(),
    );
    Server::new(listener, config.socket.clone(), supervisor)?.serve()
}

/// A new session without a terminal, stdio on `/dev/null` and the monitor log, and `/` as working
/// directory, so the monitor holds nothing of its starter (its other descriptors are closed next).
fn detach(log: &File) -> io::Result<()> {
    rustix::process::setsid()?;
    std::env::set_current_dir("/")?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(&null)?;
    rustix::stdio::dup2_stderr(log)?;
    Ok(())
}
