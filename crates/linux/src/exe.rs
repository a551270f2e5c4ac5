//! A read-only handle on the running executable, to re-execute the runtime without exposing a
//! writable binary to the container (CVE-2019-5736, the `/proc/self/exe` attack).
//!
//! A process that runs inside a container after having been started from the host binary can be reached
//! through `/proc/<pid>/exe`; if that link leads to a writable file, the container can overwrite the
//! runtime. Re-executing through a detached, read-only bind mount of the binary makes every such open
//! fail with `EROFS`, and costs three system calls instead of copying the binary. Where mounts are not
//! permitted, a sealed memory file with a copy of the binary is used instead.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::mount::{set_mount_attributes, MOUNT_ATTR_RDONLY};

use rustix::fs::{memfd_create, MemfdFlags, SealFlags};
use rustix::mount::{open_tree, OpenTreeFlags};

/// Returns a close-on-exec descriptor of this process's executable that cannot be opened for writing
/// through it or through the `/proc/<pid>/exe` link of a program executed from it.
pub fn protected_self_exe() -> io::Result<OwnedFd> {
    match read_only_bind_of_self() {
        Ok(fd) => Ok(fd),
        Err(err)
            if matches!(
                err.raw_os_error(),
                Some(libc::EPERM | libc::ENOSYS | libc::EINVAL)
            ) =>
        {
            sealed_copy_of_self()
        }
        Err(err) => Err(err),
    }
}

fn read_only_bind_of_self() -> io::Result<OwnedFd> {
    let fd = open_tree(
        rustix::fs::CWD,
        "/proc/self/exe",
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    set_mount_attributes(fd.as_fd(), MOUNT_ATTR_RDONLY, 0, false)?;
    Ok(fd)
}

fn sealed_copy_of_self() -> io::Result<OwnedFd> {
    let memfd = memfd_create("testudo", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut source = File::open("/proc/self/exe")?;
    let mut target = File::from(memfd);
    io::copy(&mut source, &mut target)?;
    rustix::fs::fcntl_add_seals(
        &target,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    Ok(OwnedFd::from(target))
}
