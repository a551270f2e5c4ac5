//! File-descriptor inheritance and passing: which descriptors cross `exec`, and `SCM_RIGHTS`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Marks every descriptor numbered `first` or higher close-on-exec, so that none of the runtime's own
/// descriptors leaks into the program it executes (`close_range` with `CLOSE_RANGE_CLOEXEC`).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on descriptors; it closes nothing
    // that Rust code may still own.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every descriptor numbered 3 or higher except `keep`: for a process that detaches from
/// its starter to live long (a container monitor), so that it holds no descriptor the starter
/// happened to leave open, close-on-exec or not (`close_range`).
///
/// The caller promises that nothing in this process owns a descriptor this closes, or uses one
/// afterwards: it calls this just after forking, when all it holds is `keep` and stdio.
pub fn close_all_but(keep: BorrowedFd<'_>) -> io::Result<()> {
    let keep =
        u32::try_from(keep.as_raw_fd()).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // Below and above `keep`; a range whose first exceeds its last is empty.
    let ranges = [(3, keep.saturating_sub(1)), (keep.max(2) + 1, u32::MAX)];
    for (first, last) in ranges.into_iter().filter(|(first, last)| first <= last) {
        // SAFETY: the range holds no descriptor that Rust code owns or uses afterwards, by the
        // caller's contract; close_range touches no memory.
        let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
        if ret == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Lets `fd` survive `exec` (clears `FD_CLOEXEC`).
pub fn keep_across_exec(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = fcntl_getfd(fd)?;
    fcntl_setfd(fd, flags - FdFlags::CLOEXEC)?;
    Ok(())
}

/// Takes ownership of a descriptor number inherited across `exec` (for example named in an environment
/// variable), after checking that it is open.
///
/// The caller promises that nothing else in this process owns `raw`.
pub fn adopt_inherited(raw: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the descriptor is only borrowed for this one fcntl call, which fails with EBADF if it is
    // not open.
    fcntl_getfd(unsafe { BorrowedFd::borrow_raw(raw) })?;
    // SAFETY: the descriptor is open (checked above) and, by the caller's contract, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sends `data` and one descriptor over a unix socket (`SCM_RIGHTS`).
pub fn send_fd(socket: impl AsFd, data: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    sendmsg(
        socket,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// Receives up to `buf.len()` bytes and at most one descriptor sent with [`send_fd`].
pub fn recv_fd(socket: impl AsFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = recvmsg(
        socket,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut received = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            received = fds.next();
        }
    }
    Ok((msg.bytes, received))
}
