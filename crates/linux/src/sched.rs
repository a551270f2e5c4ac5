//! Scheduling attributes of the calling thread: policy and priority (`sched_setattr`), I/O priority
//! (`ioprio_set`), CPU affinity, NUMA memory policy (`set_mempolicy`).

use std::io;

/// What `sched_setattr(2)` sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    /// `SCHED_*` policy.
    pub policy: u32,
    /// `SCHED_FLAG_*` flags.
    pub flags: u64,
    /// Nice value (SCHED_OTHER, SCHED_BATCH).
    pub nice: i32,
    /// Static priority (SCHED_FIFO, SCHED_RR).
    pub priority: u32,
    /// SCHED_DEADLINE runtime, ns.
    pub runtime: u64,
    /// SCHED_DEADLINE deadline, ns.
    pub deadline: u64,
    /// SCHED_DEADLINE period, ns.
    pub period: u64,
}

/// The kernel's `struct sched_attr`, version 1 (56 bytes).
#[repr(C)]
struct RawSchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

fn check(ret: libc::c_long) -> io::Result<()> {
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the scheduling policy and attributes of the calling thread.
pub fn set_scheduler(attr: &SchedAttr) -> io::Result<()> {
    let raw = RawSchedAttr {
        size: u32::try_from(std::mem::size_of::<RawSchedAttr>()).unwrap_or(56),
        sched_policy: attr.policy,
        sched_flags: attr.flags,
        sched_nice: attr.nice,
        sched_priority: attr.priority,
        sched_runtime: attr.runtime,
        sched_deadline: attr.deadline,
        sched_period: attr.period,
        sched_util_min: 0,
        sched_util_max: 1024,
    };
    // SAFETY: `raw` is a valid sched_attr of the size it declares, alive during the call.
    check(unsafe { libc::syscall(libc::SYS_sched_setattr, 0, std::ptr::addr_of!(raw), 0) })
}

/// Sets the I/O scheduling class (`IOPRIO_CLASS_*`) and level of the calling process.
pub fn set_io_priority(class: u32, level: u32) -> io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    let value = (class << 13) | (level & 0x1fff);
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) })
}

/// Restricts the calling thread to `cpus`.
pub fn set_cpu_affinity(cpus: &[usize]) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu);
    }
    rustix::thread::sched_setaffinity(None, &set).map_err(Into::into)
}

/// Sets the NUMA memory policy (`MPOL_*` mode, `MPOL_F_*` flags) over `nodes`.
pub fn set_memory_policy(mode: i32, flags: i32, nodes: &[usize]) -> io::Result<()> {
    let bits = u64::BITS as usize;
    let words = nodes.iter().max().map_or(1, |m| m / bits + 1);
    let mut mask = vec![0u64; words];
    for &n in nodes {
        mask[n / bits] |= 1u64 << (n % bits);
    }
    let ptr = if nodes.is_empty() {
        std::ptr::null()
    } else {
        mask.as_ptr()
    };
    let maxnode = if nodes.is_empty() {
        0
    } else {
        words * bits + 1
    };
    // SAFETY: `ptr` is NULL or points at `words` u64 words, which cover `maxnode - 1` bits.
    check(unsafe { libc::syscall(libc::SYS_set_mempolicy, mode | flags, ptr, maxnode) })
}
