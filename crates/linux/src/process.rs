//! Process creation and replacement: `clone3` with namespace flags, `execve`/`execveat`, `personality`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use rustix::process::Pid;

/// Which side of a [`clone3`] the caller is on.
#[derive(Debug)]
pub enum Forked {
    /// The new process.
    Child,
    /// The calling process; holds the new process's pid.
    Parent(Pid),
}

/// The kernel's `struct clone_args` (version 0, 64 bytes), as `clone3(2)` reads it.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// Creates a child process like `fork`, in the new namespaces named by `flags` (`CLONE_NEW*`,
/// `CLONE_PARENT`), with `SIGCHLD` as its exit signal (with `CLONE_PARENT` the kernel takes the
/// caller's own exit signal instead, and requires none to be given).
///
/// The caller must be single-threaded: the child starts with a copy of only the calling thread, so any
/// lock held by another thread would stay locked forever in it.
pub fn clone3(flags: u64) -> io::Result<Forked> {
    let parent = u64::try_from(libc::CLONE_PARENT).unwrap_or(0);
    let mut args = CloneArgs {
        flags,
        exit_signal: if flags & parent == 0 {
            libc::SIGCHLD as u64
        } else {
            0
        },
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid, initialised `clone_args` of the size passed; no stack is given, so the
    // child runs on a copy of the caller's stack exactly like `fork`, and no CLONE_VM/CLONE_THREAD flag can
    // be smuggled in by callers without them sharing memory (documented as fork-like above).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            ptr::addr_of_mut!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => {
            let raw =
                i32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            Pid::from_raw(raw)
                .map(Forked::Parent)
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
        }
    }
}

/// Builds the NULL-terminated pointer array that `execve` expects; the strings must outlive it.
fn c_array(items: &[CString]) -> Vec<*const libc::c_char> {
    items
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// Replaces the process image with the program at `path`. Returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let argv = c_array(argv);
    let envp = c_array(envp);
    // SAFETY: `path` is NUL-terminated, and `argv`/`envp` are NULL-terminated arrays of pointers to
    // NUL-terminated strings that stay alive (borrowed from the callers' slices) during the call.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// Replaces the process image with the program that `fd` refers to (`execveat` with `AT_EMPTY_PATH`).
/// Returns only on failure.
pub fn execveat_fd(fd: BorrowedFd<'_>, argv: &[CString], envp: &[CString]) -> io::Error {
    let argv = c_array(argv);
    let envp = c_array(envp);
    // SAFETY: as for `execve`; the empty path is a valid NUL-terminated string and `fd` is a live descriptor.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
}

/// Sets the execution domain of the calling process (`personality(2)`), e.g. `PER_LINUX32`.
pub fn set_personality(persona: u32) -> io::Result<()> {
    // SAFETY: personality takes a plain integer and touches no memory of ours.
    let ret = unsafe { libc::personality(libc::c_ulong::from(persona)) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets the real, effective and saved user and group ids and the supplementary groups of the calling
/// process, groups first (they need CAP_SETGID, which a switch of uid may drop).
///
/// Uses the C library's wrappers, which apply the change to every thread, as POSIX requires.
pub fn set_credentials(uid: u32, gid: u32, groups: Option<&[u32]>) -> io::Result<()> {
    if let Some(groups) = groups {
        // SAFETY: the pointer and length describe a live slice of gid_t (u32) values.
        if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresgid(gid, gid, gid) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresuid(uid, uid, uid) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Ends the calling process at once with `code`, without running exit handlers or flushing buffers:
/// for a forked child, whose buffers are copies of its parent's.
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust-managed memory.
    unsafe { libc::_exit(code) }
}

/// Gives the calling process a new session keyring named `name` (`KEYCTL_JOIN_SESSION_KEYRING`), so
/// that a container does not share the host's keys.
pub fn join_session_keyring(name: &CStr) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl reads the NUL-terminated name only during the call.
    let ret =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends signal `signal` (any number, real-time ones included) to the process behind `pidfd`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: a NULL siginfo asks the kernel to fill it in as kill(2) would; no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends signal `signal` to process `pid` (`kill(2)`), for signal numbers that `rustix` does not name.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    if unsafe { libc::kill(pid, signal) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Moves the calling process into new namespaces (`unshare(2)`); for namespaces that apply to
/// future children only (pid, time), this is how a parent prepares them.
///
/// The caller must be single-threaded for mount and user namespaces.
pub fn unshare(flags: i32) -> io::Result<()> {
    // SAFETY: unshare takes a flag word; sharing assumptions of other threads are the caller's
    // contract (documented above).
    if unsafe { libc::unshare(flags) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The `CLONE_NEW*` type of the namespace that `fd` refers to (`ioctl(NS_GET_NSTYPE)`, Linux
/// 4.11); fails with `ENOTTY` when `fd` is not a namespace file.
pub fn namespace_type(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // _IO(0xb7, 0x3) from <linux/nsfs.h>.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor's namespace.
    let kind = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE) };
    if kind == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(kind)
}
