//! A user namespace with given id mappings, held by a descriptor, as an idmapped mount needs one.

use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{waitpid, Pid, WaitOptions};
use thiserror::Error;

use crate::process::{clone3, exit_immediately, Forked};

/// A step of making a user namespace failed.
#[derive(Debug, Error)]
#[error("{step}")]
pub struct UserNamespaceError {
    /// What was being done (`write uid_map`, …).
    pub step: &'static str,
    /// The cause.
    #[source]
    pub source: io::Error,
}

fn fail(step: &'static str) -> impl FnOnce(io::Error) -> UserNamespaceError {
    move |source| UserNamespaceError { step, source }
}

/// Creates a user namespace with the uid and gid mappings `uid_map` and `gid_map` (in the format of
/// `/proc/<pid>/uid_map`: `inside outside count` lines) and returns a descriptor of it.
///
/// A namespace is created with a process in it: a child is cloned into a new user namespace and
/// blocks on a pipe while this process writes `deny` to its `setgroups` (as runc does: nothing runs
/// in there that needs supplementary groups), then its maps, and opens its `/proc/<pid>/ns/user`. Then
/// a byte on the pipe releases the child, which exits and is reaped before this returns; the
/// descriptor alone keeps the namespace alive. If this process dies first, the child sees the pipe
/// close and exits too. The release is a byte, not the pipe's end: a child forked meanwhile by
/// another thread (a test harness's) may hold a copy of the write end.
///
/// The caller must be single-threaded (see [`clone3`]) and privileged over the ids it maps.
pub fn user_namespace_with_mappings(
    uid_map: &str,
    gid_map: &str,
) -> Result<OwnedFd, UserNamespaceError> {
    let (read_end, write_end) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| fail("create a pipe")(e.into()))?;
    let flags = u64::from(libc::CLONE_NEWUSER.unsigned_abs());
    match clone3(flags).map_err(fail("clone into a new user namespace"))? {
        Forked::Child => {
            drop(write_end);
            let mut byte = [0u8; 1];
            while let Err(rustix::io::Errno::INTR) = rustix::io::read(&read_end, &mut byte[..]) {}
            exit_immediately(0);
        }
        Forked::Parent(child) => {
            drop(read_end);
            let namespace = map_and_open(child, uid_map, gid_map);
            // A failed write (the child is gone already) leaves nothing to release.
            let _ = rustix::io::write(&write_end, &[0]);
            drop(write_end);
            // The child exits as soon as the pipe is closed; waiting does not block for long.
            let _ = waitpid(Some(child), WaitOptions::empty());
            namespace
        }
    }
}

fn map_and_open(child: Pid, uid_map: &str, gid_map: &str) -> Result<OwnedFd, UserNamespaceError> {
    let proc = format!("/proc/{}", child.as_raw_nonzero());
    std::fs::write(format!("{proc}/setgroups"), "deny").map_err(fail("write setgroups"))?;
    std::fs::write(format!("{proc}/uid_map"), uid_map).map_err(fail("write uid_map"))?;
    std::fs::write(format!("{proc}/gid_map"), gid_map).map_err(fail("write gid_map"))?;
    rustix::fs::open(
        format!("{proc}/ns/user"),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("open the user namespace")(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn a_new_user_namespace_is_returned() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let ns = user_namespace_with_mappings("0 1000 1\n", "0 2000 5\n").expect("namespace");
        let st = rustix::fs::fstat(&ns).expect("fstat");
        let own = rustix::fs::stat("/proc/self/ns/user").expect("own namespace");
        assert_eq!(st.st_dev, own.st_dev, "a namespace file");
        assert_ne!(st.st_ino, own.st_ino, "a new namespace");
    }

    #[test]
    fn an_invalid_mapping_names_the_failed_step() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let err = user_namespace_with_mappings("0 1000\n", "0 1000 1\n").expect_err("bad map");
        assert_eq!(err.step, "write uid_map");
    }
}
