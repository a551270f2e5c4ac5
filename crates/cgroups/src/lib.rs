//! Linux control groups for one container: create them, set limits, freeze and thaw,
//! list processes, read usage, update, remove.
//!
//! It knows nothing about containers: it takes a cgroups path (OCI `linux.cgroupsPath`)
//! and OCI `linux.resources`, and works on cgroup v1 (legacy, or hybrid with a cgroup2
//! mount beside it) and cgroup v2 (unified) behind one [`CgroupManager`] trait.
//!
//! Non-goals: the systemd cgroup driver (a `slice:prefix:name` path is refused with a clear
//! error), rootless operation, threaded cgroup2 subtrees, watching for OOM events, intel
//! RDT. Loading the v2 device program is `testudo-linux`'s job; this crate only generates
//! it.
//!
//! # Design
//!
//! - **Find, resolve, plan, apply.** [`Hierarchies`] says what is mounted where (parsed
//!   from `/proc/self/mountinfo`); [`CgroupsPath`] validates the path and resolves it per
//!   hierarchy; [`plan_v1`] and [`plan_v2`] turn resources into ordered [`CgroupWrite`]s
//!   (and, on v2, a device program) without touching the system; the managers carry the
//!   plan out. Everything that decides is pure and unit-tested without root; roots are
//!   injected, so the managers also run against a temporary directory.
//! - **Few syscalls.** Start-up latency matters: creating a cgroup is one `mkdir` per
//!   hierarchy when the parent exists; values are written with one `open`+`write` each;
//!   files are read only when a decision needs them (the current memory limit, when both
//!   limit and swap change; the parent cpuset, when a new v1 cpuset level is created).
//!   v2 freezing sleeps in `poll` on `cgroup.events` instead of polling with sleeps.
//! - **Order and compatibility follow runc**: v1 controller order, memory/memsw ordering
//!   by growth or shrinkage, period/quota retries on EINVAL, shares to weight conversion,
//!   OCI swap (memory+swap) to v2 `memory.swap.max`, and stats shaped like runc's
//!   `events --stats`.
//! - **Device rules**: last matching rule wins per access bit, default deny. v1 writes
//!   `a` to `devices.deny` first and then each rule; v2 compiles the same semantics into
//!   a `BPF_PROG_TYPE_CGROUP_DEVICE` program. Note that v1 kernels ignore the access
//!   letters of an `a` (all devices) rule, while the v2 program honours them.
//! - A [`Manager`] is serializable so a runtime can keep it in its state file: it records
//!   which directories [`CgroupManager::create`] made, so a later process removes exactly
//!   those.
//!
//! Dependencies: `rustix` for `poll(2)` on `cgroup.events` (no `unsafe` here) and errno
//! values; `testudo-linux` for the `bpf(2)` wrapper.

mod devices;
mod error;
mod fs;
mod hierarchy;
mod manager;
mod path;
mod plan;
mod stats;
mod v1;
mod v2;

pub use error::CgroupError;
pub use hierarchy::{Hierarchies, Layout, OwnCgroups, UnifiedHierarchy, V1Hierarchy};
pub use manager::{CgroupManager, FreezerState, Manager};
pub use path::CgroupsPath;
pub use plan::{
    blkio_weight_to_io_weight, cpu_shares_to_weight, needs_current_memory_limit, plan_v1, plan_v2,
    CgroupWrite, Controller, IfMissing, OnEinval, V1Context, V2Plan,
};
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, CpuUsage, HugetlbStats, MemoryEntry, MemoryStats, PidsStats,
    Stats, Throttling,
};
pub use v1::V1Manager;
pub use v2::V2Manager;
