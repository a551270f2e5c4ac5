//! Starting the container's init: `clone3` into the new namespaces, then re-execute the runtime binary
//! from its read-only handle as `testudo init`, with the sync socket as its only open descriptor beyond
//! those passed on purpose.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use testudo_linux::process::{clone3, Forked};

use crate::init::SYNC_FD_ENV;

/// User-namespace id maps the parent writes for the child (`/proc/<pid>/{uid,gid}_map` format).
pub(crate) struct IdMaps {
    pub(crate) uid: String,
    pub(crate) gid: String,
}

impl IdMaps {
    /// Writes the maps of the user namespace `pid` is in.
    pub(crate) fn write_for(&self, pid: i32) -> io::Result<()> {
        let write = |file: &str, text: &str| {
            std::fs::write(format!("/proc/{pid}/{file}"), text)
                .map_err(|e| io::Error::new(e.kind(), format!("write {file} of {pid}: {e}")))
        };
        write("uid_map", &self.uid)?;
        write("gid_map", &self.gid)
    }
}

/// The init as seen from the runtime process.
pub(crate) struct Spawned {
    /// Host pid of the init.
    pub(crate) pid: i32,
    /// The runtime's end of the sync socket.
    pub(crate) stream: UnixStream,
}

/// Clones the init with `flags` and re-executes it as `testudo init`. `keep` are descriptors the init
/// needs (fifo, console socket, preserved fds); everything else is close-on-exec already.
pub(crate) fn spawn_init(
    flags: u64,
    keep: &[BorrowedFd<'_>],
    maps: Option<&IdMaps>,
) -> io::Result<Spawned> {
    let exe = testudo_linux::exe::protected_self_exe()?;
    let (mut parent, mut child) = UnixStream::pair()?;
    let argv = [c"testudo".to_owned(), c"init".to_owned()];
    let env = [CString::new(format!("{SYNC_FD_ENV}={}", child.as_raw_fd()))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?];
    match clone3(flags)? {
        Forked::Child => {
            drop(parent);
            let error = child_exec(&mut child, keep, maps.is_some(), exe.as_fd(), &argv, &env);
            eprintln!("testudo: start the container init: {error}");
            testudo_linux::process::exit_immediately(127);
        }
        Forked::Parent(pid) => {
            drop(child);
            let pid = pid.as_raw_nonzero().get();
            if let Some(maps) = maps {
                maps.write_for(pid)?;
                parent.write_all(b"M")?;
            }
            Ok(Spawned {
                pid,
                stream: parent,
            })
        }
    }
}

/// The child's side: wait for the id maps if any, become root of the user namespace (otherwise the
/// `exec` would drop every capability), and execute the init.
fn child_exec(
    child: &mut UnixStream,
    keep: &[BorrowedFd<'_>],
    wait_for_maps: bool,
    exe: BorrowedFd<'_>,
    argv: &[CString],
    env: &[CString],
) -> io::Error {
    if wait_for_maps {
        let mut byte = [0u8; 1];
        if let Err(e) = child.read_exact(&mut byte) {
            return e;
        }
        if let Err(e) = testudo_linux::process::set_credentials(0, 0, None) {
            return e;
        }
    }
    for fd in keep.iter().copied().chain(std::iter::once(child.as_fd())) {
        if let Err(e) = testudo_linux::fd::keep_across_exec(fd) {
            return e;
        }
    }
    testudo_linux::process::execveat_fd(exe, argv, env)
}
