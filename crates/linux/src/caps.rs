//! Capability sets of the calling thread: `capset(2)` for the effective, permitted and inheritable sets,
//! `prctl(2)` for the bounding and ambient sets. Capabilities are numbers (`CAP_CHOWN` is 0); sets are
//! 64-bit masks.

use std::io;

/// The three sets that `capset(2)` writes, as bit masks indexed by capability number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    /// Capabilities in force.
    pub effective: u64,
    /// Capabilities the thread may make effective.
    pub permitted: u64,
    /// Capabilities preserved across `execve` for programs with matching file capabilities.
    pub inheritable: u64,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn low(mask: u64) -> u32 {
    (mask & 0xffff_ffff) as u32
}

fn high(mask: u64) -> u32 {
    (mask >> 32) as u32
}

/// Replaces the effective, permitted and inheritable sets of the calling thread.
pub fn set_capabilities(sets: CapabilitySets) -> io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: low(sets.effective),
            permitted: low(sets.permitted),
            inheritable: low(sets.inheritable),
        },
        CapData {
            effective: high(sets.effective),
            permitted: high(sets.permitted),
            inheritable: high(sets.inheritable),
        },
    ];
    // SAFETY: version 3 of capset reads one header and two data structs, which are valid and live.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capset,
            std::ptr::addr_of_mut!(header),
            data.as_ptr(),
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the prctl options used here (capability bounding and ambient sets) take integer arguments
    // only and write no memory of ours.
    let ret = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// Removes capability `cap` from the bounding set of the calling thread.
pub fn drop_bounding(cap: u8) -> io::Result<()> {
    prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0).map(drop)
}

/// Empties the ambient set of the calling thread.
pub fn clear_ambient() -> io::Result<()> {
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )
    .map(drop)
}

/// Adds capability `cap` to the ambient set; it must already be permitted and inheritable.
pub fn raise_ambient(cap: u8) -> io::Result<()> {
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
        libc::c_ulong::from(cap),
    )
    .map(drop)
}

/// Keeps the permitted set when the thread switches from uid 0 to another uid (`PR_SET_KEEPCAPS`).
pub fn set_keep_capabilities(keep: bool) -> io::Result<()> {
    prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(keep), 0).map(drop)
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn last_capability() -> io::Result<u8> {
    let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "cap_last_cap is not a number"))
}
