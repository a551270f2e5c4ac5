//! Giving memory back while a process waits: a container's init can wait a long time between
//! `create` and `start`, a container monitor sits idle most of its life, and every page either
//! keeps mapped is charged to it.

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// An address range `[start, end)`.
type Range = (usize, usize);

/// Drops this process's clean, read-only file pages (its code and constants) and free heap: for a
/// process about to sit idle, whose resident pages are charged to it while it waits.
///
/// The pages dropped are unmodified copies of the page cache: they fault back in on use, at the cost
/// of a minor fault each, and nothing is lost. Mappings that are writable, or that hold modified pages
/// (relocated data), are left alone. Each fault maps its neighbours too ("fault-around", 16 pages),
/// so the callers below go to sleep with a raw system call straight after the release: every
/// function called in between would bring a good part of the code back.
fn clean_ranges() -> io::Result<(Vec<Range>, Option<Range>)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let ranges = clean_read_only_mappings(&smaps);
    let stack = smaps
        .lines()
        .find(|l| l.ends_with("[stack]"))
        .and_then(|l| l.split_ascii_whitespace().next())
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            Some((
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            ))
        });
    // SAFETY: malloc_trim only returns free heap memory to the kernel; live allocations are untouched.
    unsafe { libc::malloc_trim(0) };
    Ok((ranges, stack))
}

#[inline(always)]
fn release(ranges: &[Range], stack: Option<Range>) {
    // The part of the main thread's stack below the frames in use holds nothing live: deep
    // calls made during start-up (argument parsing, the first container) left it resident.
    let marker = 0u8;
    let sp = std::ptr::addr_of!(marker) as usize;
    if let Some((low, _)) = stack.filter(|&(low, high)| low < sp && sp <= high) {
        // Four pages of margin for the frames the calls below still push.
        let end = (sp & !4095).saturating_sub(4 * 4096);
        if end > low {
            // SAFETY: [low, end) is the main thread's stack below the current frame and its
            // margin: no live data is there; a later use finds zeroed pages, as fresh stack.
            unsafe { libc::syscall(libc::SYS_madvise, low, end - low, libc::MADV_DONTNEED) };
        }
    }
    for &(start, end) in ranges {
        // SAFETY: the range is a private, non-writable file mapping of this process without modified
        // pages (from /proc/self/smaps); MADV_DONTNEED only drops its page-table entries and the next
        // access refaults the same file contents, so no memory that Rust code relies on changes.
        unsafe { libc::syscall(libc::SYS_madvise, start, end - start, libc::MADV_DONTNEED) };
    }
}

/// Gives the clean pages back (see [`clean_ranges`]), then waits in `poll(2)` on `fds` without a
/// timeout; returns how many have events.
pub fn poll_after_releasing_pages(fds: &mut [libc::pollfd]) -> io::Result<usize> {
    let count = libc::nfds_t::try_from(fds.len()).map_err(io::Error::other)?;
    let (ranges, stack) = clean_ranges()?;
    release(&ranges, stack);
    loop {
        // SAFETY: `fds` is a valid, writable array of `count` pollfd structures for the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_ppoll,
                fds.as_mut_ptr(),
                count,
                0usize,
                0usize,
                0usize,
            )
        };
        if ret >= 0 {
            return usize::try_from(ret).map_err(io::Error::other);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Gives the clean pages back (see [`clean_ranges`]), then opens `path` with `flags`, an open that
/// may block for a long time (a fifo).
pub fn open_after_releasing_pages(path: &CStr, flags: i32) -> io::Result<OwnedFd> {
    let (ranges, stack) = clean_ranges()?;
    release(&ranges, stack);
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Address ranges of mappings in `/proc/self/smaps` text that are private, file-backed, not writable
/// and hold no anonymous (modified) pages.
fn clean_read_only_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let perms = fields.next().unwrap_or("");
            let inode = fields.nth(2).unwrap_or("0");
            let eligible = perms.len() == 4
                && perms.as_bytes()[1] != b'w'
                && perms.ends_with('p')
                && inode != "0";
            current = match (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                (Ok(s), Ok(e)) if eligible => Some((s, e)),
                _ => None,
            };
        } else if first == "Anonymous:" {
            if let Some(range) = current.take() {
                if fields.next() == Some("0") {
                    out.push(range);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_are_released() {
        let smaps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fe:01 1234 /usr/bin/testudo
Rss:                 100 kB
Anonymous:             0 kB
55d0a0100000-55d0a0300000 r-xp 00100000 fe:01 1234 /usr/bin/testudo
Anonymous:             0 kB
55d0a0300000-55d0a0310000 r--p 00300000 fe:01 1234 /usr/bin/testudo
Anonymous:            12 kB
55d0a0310000-55d0a0320000 rw-p 00310000 fe:01 1234 /usr/bin/testudo
Anonymous:             0 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Anonymous:            16 kB
7ffd00030000-7ffd00032000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";
        assert_eq!(
            clean_read_only_mappings(smaps),
            vec![
                (0x55d0_a000_0000, 0x55d0_a010_0000),
                (0x55d0_a010_0000, 0x55d0_a030_0000)
            ]
        );
    }

    #[test]
    fn the_process_keeps_running_after_its_pages_were_released() {
        let fd = open_after_releasing_pages(c"/proc/self/status", libc::O_RDONLY | libc::O_CLOEXEC)
            .expect("open");
        let text = std::fs::read_to_string(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .expect("read");
        assert!(text.contains("VmRSS"));
    }
}
