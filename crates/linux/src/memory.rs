//! Giving memory back while a process waits: a container's init can wait a long time between
//! `create` and `start`, a container monitor sits idle most of its life, and every page either
//! keeps mapped is charged to it.
//!
//! The pages dropped are this process's clean, read-only file pages (its code and constants), the
//! part of its stack below the frames in use, and its free heap. The file pages are unmodified
//! copies of the page cache: they fault back in on use, at the cost of a minor fault each, and
//! nothing is lost. Mappings that are writable, or that hold modified pages (relocated data), are
//! left alone.
//!
//! A fault on a file page maps its neighbours too: fault-around, which maps the whole large folio
//! the page cache holds the page in (128 KiB for the binary here). So nothing may run between the
//! release and the system call that sleeps but code that is kept mapped: `release_then_syscall`
//! sits in a linker section of its own, `testudo_idle`, whose pages the release leaves alone,
//! and makes its system calls with inline assembly rather than through the C library.

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// An address range `[start, end)`.
type Range = (usize, usize);

const PAGE: usize = 4096;

/// What to release: the clean file mappings less the idle section, and the stack mapping.
struct Release {
    ranges: Vec<Range>,
    stack: Option<Range>,
}

/// Finds what to release, then gives the free heap back (after the scratch memory of the search
/// is freed, so that it is returned too).
fn prepare_release() -> io::Result<Release> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let ranges = without(&clean_read_only_mappings(&smaps), idle_section());
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
    drop(smaps);
    // SAFETY: malloc_trim only returns free heap memory to the kernel; live allocations are untouched.
    unsafe { libc::malloc_trim(0) };
    Ok(Release { ranges, stack })
}

extern "C" {
    // Defined by the linker: the bounds of the section `testudo_idle`, which holds
    // `release_then_syscall` and nothing else (its name is a C identifier, so the linker defines
    // `__start_` and `__stop_` symbols for it).
    static __start_testudo_idle: u8;
    static __stop_testudo_idle: u8;
}

/// The pages of the section that holds [`release_then_syscall`], which the release keeps mapped.
fn idle_section() -> Range {
    // Only the symbols' addresses are taken; nothing is read there.
    let start = std::ptr::addr_of!(__start_testudo_idle) as usize;
    let stop = std::ptr::addr_of!(__stop_testudo_idle) as usize;
    (start & !(PAGE - 1), stop.next_multiple_of(PAGE))
}

/// `ranges` with the pages of `keep` cut out of them.
fn without(ranges: &[Range], keep: Range) -> Vec<Range> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    for &(start, end) in ranges {
        if keep.1 <= start || end <= keep.0 {
            out.push((start, end));
            continue;
        }
        if start < keep.0 {
            out.push((start, keep.0));
        }
        if keep.1 < end {
            out.push((keep.1, end));
        }
    }
    out
}

/// System call `number` with up to four arguments, made directly rather than through the C
/// library (see [`release_then_syscall`]); returns the kernel's result, a negative errno on failure.
///
/// # Safety
/// `args` must be valid for system call `number`, and what it does to memory must be sound for
/// the caller.
#[inline(always)]
unsafe fn raw_syscall(number: libc::c_long, args: [libc::c_long; 4]) -> libc::c_long {
    #[cfg(target_arch = "x86_64")]
    {
        let ret: libc::c_long;
        // SAFETY: the caller's contract covers the call; this is the x86-64 Linux convention, in
        // which the kernel clobbers rcx and r11 only, and the call pushes nothing on the stack.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") number => ret,
                in("rdi") args[0],
                in("rsi") args[1],
                in("rdx") args[2],
                in("r10") args[3],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }
    #[cfg(target_arch = "aarch64")]
    {
        let ret: libc::c_long;
        // SAFETY: the caller's contract covers the call; this is the aarch64 Linux convention
        // (number in x8, result in x0, nothing else clobbered), and the call pushes nothing.
        unsafe {
            std::arch::asm!(
                "svc 0",
                in("x8") number,
                inlateout("x0") args[0] => ret,
                in("x1") args[1],
                in("x2") args[2],
                in("x3") args[3],
                options(nostack),
            );
        }
        ret
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // Elsewhere through the C library: correct, but its code then faults back in.
        // SAFETY: the caller's contract covers the call.
        let ret = unsafe { libc::syscall(number, args[0], args[1], args[2], args[3]) };
        if ret < 0 {
            -libc::c_long::from(
                io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EINVAL),
            )
        } else {
            ret
        }
    }
}

/// Drops the pages `release` names, then makes system call `number` with `args`, the call that
/// sleeps, and returns its result (a negative errno on failure). It lives in a section of its own,
/// which the release keeps mapped, and calls nothing: any code run after the release would map
/// 128 KiB back per fault.
///
/// # Safety
/// `args` must be valid for system call `number`, and what it does to memory must be sound for
/// the caller.
#[inline(never)]
#[link_section = "testudo_idle"]
unsafe fn release_then_syscall(
    release: &Release,
    number: libc::c_long,
    args: [libc::c_long; 4],
) -> libc::c_long {
    let dontneed = libc::c_long::from(libc::MADV_DONTNEED);
    // The part of the main thread's stack below the frames in use holds nothing live: deep calls
    // made during start-up (argument parsing, the first container) left it resident.
    let marker = 0u8;
    let sp = std::ptr::addr_of!(marker) as usize;
    if let Some((low, high)) = release.stack {
        // One page of margin below the current one holds the rest of this frame and the red zone.
        let end = (sp & !(PAGE - 1)).saturating_sub(PAGE);
        if low < sp && sp <= high && end > low {
            // SAFETY: [low, end) is the main thread's stack below the current frame and its
            // margin: no live data is there, and a later use finds zeroed pages, as fresh stack.
            unsafe {
                raw_syscall(
                    libc::SYS_madvise,
                    [
                        low as libc::c_long,
                        (end - low) as libc::c_long,
                        dontneed,
                        0,
                    ],
                )
            };
        }
    }
    for &(start, end) in &release.ranges {
        // SAFETY: the range is a private, non-writable file mapping of this process without
        // modified pages (from /proc/self/smaps): MADV_DONTNEED only drops its page-table entries
        // and the next access refaults the same file contents, so no memory Rust code relies on
        // changes.
        unsafe {
            raw_syscall(
                libc::SYS_madvise,
                [
                    start as libc::c_long,
                    (end - start) as libc::c_long,
                    dontneed,
                    0,
                ],
            )
        };
    }
    // SAFETY: the caller's contract.
    unsafe { raw_syscall(number, args) }
}

/// Gives the clean pages back (see the module docs), then waits in `poll(2)` on `fds` without a
/// timeout; returns how many have events.
pub fn poll_after_releasing_pages(fds: &mut [libc::pollfd]) -> io::Result<usize> {
    let count = libc::c_long::try_from(fds.len()).map_err(io::Error::other)?;
    let release = prepare_release()?;
    loop {
        // SAFETY: `fds` is a valid, writable array of `count` pollfd structures for the call; no
        // timeout and no signal mask (null pointers).
        let ret = unsafe {
            release_then_syscall(
                &release,
                libc::SYS_ppoll,
                [fds.as_mut_ptr() as libc::c_long, count, 0, 0],
            )
        };
        if ret >= 0 {
            return usize::try_from(ret).map_err(io::Error::other);
        }
        let err = errno(ret);
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Gives the clean pages back (see the module docs), then opens `path` with `flags`, an open that
/// may block for a long time (a fifo).
pub fn open_after_releasing_pages(path: &CStr, flags: i32) -> io::Result<OwnedFd> {
    let release = prepare_release()?;
    // SAFETY: `path` is NUL-terminated and outlives the call, which creates a descriptor only.
    let ret = unsafe {
        release_then_syscall(
            &release,
            libc::SYS_openat,
            [
                libc::c_long::from(libc::AT_FDCWD),
                path.as_ptr() as libc::c_long,
                libc::c_long::from(flags),
                0,
            ],
        )
    };
    if ret < 0 {
        return Err(errno(ret));
    }
    let fd = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The error of a raw system call's negative return.
fn errno(ret: libc::c_long) -> io::Error {
    io::Error::from_raw_os_error(i32::try_from(-ret).unwrap_or(libc::EINVAL))
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
    fn the_kept_pages_are_cut_out_of_the_ranges_released() {
        let keep = (0x3000, 0x5000);
        assert_eq!(
            without(
                &[(0x1000, 0x2000), (0x2000, 0x8000), (0x4000, 0x6000)],
                keep
            ),
            vec![
                (0x1000, 0x2000),
                (0x2000, 0x3000),
                (0x5000, 0x8000),
                (0x5000, 0x6000)
            ]
        );
        assert_eq!(without(&[(0x3000, 0x5000)], keep), vec![]);
    }

    #[test]
    fn the_idle_section_holds_the_code_that_runs_after_the_release() {
        let (start, end) = idle_section();
        let code = release_then_syscall as *const () as usize;
        assert!(
            start <= code && code < end,
            "{code:#x} not in {start:#x}-{end:#x}"
        );
        assert!(end - start <= 2 * PAGE, "{start:#x}-{end:#x}");
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
