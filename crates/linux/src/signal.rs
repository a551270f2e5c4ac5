//! Signal masks and dispositions around `exec`, and synchronous waiting for signals.

use std::io;
use std::mem::MaybeUninit;

fn empty_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the whole set it is given.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        set.assume_init()
    }
}

fn set_of(signals: &[i32]) -> libc::sigset_t {
    let mut set = empty_set();
    for &signal in signals {
        // SAFETY: `set` is initialised; an invalid signal number only makes sigaddset fail.
        unsafe { libc::sigaddset(&mut set, signal) };
    }
    set
}

fn sigprocmask(how: libc::c_int, set: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: `set` is an initialised signal set; the old mask is not requested.
    let ret = unsafe { libc::sigprocmask(how, set, std::ptr::null_mut()) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks `signals` for the calling thread, so that they queue up for [`wait_for_signal`].
pub fn block(signals: &[i32]) -> io::Result<()> {
    sigprocmask(libc::SIG_BLOCK, &set_of(signals))
}

/// Waits until one of `signals` (which must be blocked) is pending and returns its number and, for
/// `SIGCHLD` and signals sent with `kill`, the sending pid.
pub fn wait_for_signal(signals: &[i32]) -> io::Result<(i32, i32)> {
    let set = set_of(signals);
    let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
    loop {
        // SAFETY: `set` is initialised and `info` is a writable siginfo_t.
        let signal = unsafe { libc::sigwaitinfo(&set, info.as_mut_ptr()) };
        if signal == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: sigwaitinfo filled `info` in; si_pid is valid for the signals it reports here.
        let pid = unsafe { info.assume_init_ref().si_pid() };
        return Ok((signal, pid));
    }
}

/// Restores what a freshly started program expects: no blocked signal and the default action for every
/// signal this process ignored (the Rust runtime ignores `SIGPIPE`, and ignored signals stay ignored
/// across `exec`).
pub fn reset_for_exec() -> io::Result<()> {
    for signal in 1..libc::SIGRTMIN() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL involves no handler code; failures (for reserved signals) are ignored.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    sigprocmask(libc::SIG_SETMASK, &empty_set())
}
