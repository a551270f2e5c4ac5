//! Installing a seccomp filter program that another crate compiled.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
pub type SockFilter = libc::sock_filter;

const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`: the kernel returns a notification descriptor.
pub const FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;

/// Installs `program` as a seccomp filter of the calling thread with `flags`
/// (`SECCOMP_FILTER_FLAG_*`). Returns the user-notification descriptor when `flags` asks for one.
///
/// Without `no_new_privs`, the kernel requires CAP_SYS_ADMIN for this call.
pub fn load_filter(program: &[SockFilter], flags: u32) -> io::Result<Option<OwnedFd>> {
    let len =
        u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `len` valid instructions that outlive the call; the kernel copies them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::addr_of!(prog),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & FILTER_FLAG_NEW_LISTENER != 0 {
        let raw = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: with NEW_LISTENER the kernel returned a fresh descriptor that nothing else owns.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) }));
    }
    Ok(None)
}
