//! The process the init becomes: limits, capabilities, scheduling, and what the host forces to be
//! clamped.

use oci_spec::runtime::{PosixRlimitType, Process, Spec};
use serde::{Deserialize, Serialize};

/// One resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RlimitPlan {
    /// `RLIMIT_*` number.
    pub resource: i32,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Capability sets as masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityPlan {
    /// Bounding set.
    pub bounding: u64,
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Ambient set.
    pub ambient: u64,
}

/// Scheduling of the process: policy, I/O priority, CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulingPlan {
    /// `sched_setattr`.
    pub scheduler: Option<SchedulerPlan>,
    /// `ioprio_set`: (class, level).
    pub io_priority: Option<(u32, u32)>,
    /// CPUs the process runs on (`execCPUAffinity.final`).
    pub cpus: Option<Vec<usize>>,
}

/// What `sched_setattr(2)` sets, in the kernel's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerPlan {
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

/// The NUMA memory policy of the container (`linux.memoryPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryPolicyPlan {
    /// `MPOL_*` mode.
    pub mode: i32,
    /// `MPOL_F_*` flags.
    pub flags: i32,
    /// Nodes.
    pub nodes: Vec<usize>,
}

/// Parses a CPU or node list such as `0-3,7`.
pub fn parse_id_list(text: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if a > b || b - a > 65536 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The scheduling part of a process.
pub fn plan_scheduling(process: &Process) -> SchedulingPlan {
    use oci_spec::runtime::{IOPriorityClass, LinuxSchedulerFlag, LinuxSchedulerPolicy};
    let scheduler = process.scheduler().as_ref().map(|s| {
        let policy = match s.policy() {
            LinuxSchedulerPolicy::SchedOther => 0,
            LinuxSchedulerPolicy::SchedFifo => 1,
            LinuxSchedulerPolicy::SchedRr => 2,
            LinuxSchedulerPolicy::SchedBatch => 3,
            LinuxSchedulerPolicy::SchedIso => 4,
            LinuxSchedulerPolicy::SchedIdle => 5,
            LinuxSchedulerPolicy::SchedDeadline => 6,
        };
        let flags = s.flags().iter().flatten().fold(0u64, |acc, f| {
            acc | match f {
                LinuxSchedulerFlag::SchedResetOnFork => 0x01,
                LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
                LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
                LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
                LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
                LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
                LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
            }
        });
        SchedulerPlan {
            policy,
            flags,
            nice: s.nice().unwrap_or(0),
            priority: u32::try_from(s.priority().unwrap_or(0)).unwrap_or(0),
            runtime: s.runtime().unwrap_or(0),
            deadline: s.deadline().unwrap_or(0),
            period: s.period().unwrap_or(0),
        }
    });
    let io_priority = process.io_priority().as_ref().map(|p| {
        let class = match p.class() {
            IOPriorityClass::IoprioClassRt => 1,
            IOPriorityClass::IoprioClassBe => 2,
            IOPriorityClass::IoprioClassIdle => 3,
        };
        (class, u32::try_from(p.priority()).unwrap_or(0))
    });
    let cpus = process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.cpu_affinity_final().as_deref())
        .and_then(parse_id_list);
    SchedulingPlan {
        scheduler,
        io_priority,
        cpus,
    }
}

/// The `personality(2)` persona of `linux.personality`; `Err` names an unknown flag.
pub fn plan_personality(spec: &Spec) -> Result<Option<u32>, String> {
    use oci_spec::runtime::LinuxPersonalityDomain;
    let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) else {
        return Ok(None);
    };
    let mut persona = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    for flag in p.flags().iter().flatten() {
        persona |= match flag.as_str() {
            "UNAME26" => 0x0020000,
            "ADDR_NO_RANDOMIZE" => 0x0040000,
            "FDPIC_FUNCPTRS" => 0x0080000,
            "MMAP_PAGE_ZERO" => 0x0100000,
            "ADDR_COMPAT_LAYOUT" => 0x0200000,
            "READ_IMPLIES_EXEC" => 0x0400000,
            "ADDR_LIMIT_32BIT" => 0x0800000,
            "SHORT_INODE" => 0x1000000,
            "WHOLE_SECONDS" => 0x2000000,
            "STICKY_TIMEOUTS" => 0x4000000,
            "ADDR_LIMIT_3GB" => 0x8000000,
            other => return Err(other.to_string()),
        };
    }
    Ok(Some(persona))
}

/// The container's memory policy, if the spec sets one.
pub fn plan_memory_policy(spec: &Spec) -> Option<MemoryPolicyPlan> {
    use oci_spec::runtime::{MemoryPolicyFlagType, MemoryPolicyModeType};
    let policy = spec.linux().as_ref()?.memory_policy().as_ref()?;
    let mode = match policy.mode() {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    };
    let flags = policy.flags().iter().flatten().fold(0, |acc, f| {
        acc | match f {
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
        }
    });
    let nodes = policy
        .nodes()
        .as_deref()
        .and_then(parse_id_list)
        .unwrap_or_default();
    Some(MemoryPolicyPlan { mode, flags, nodes })
}

/// The process the init becomes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessPlan {
    /// argv; `args[0]` is looked up in `PATH` inside the container when it has no `/`.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// umask, when given.
    pub umask: Option<u32>,
    /// Capabilities; `None` leaves them as they are.
    pub capabilities: Option<CapabilityPlan>,
    /// Sets `no_new_privs`.
    pub no_new_privileges: bool,
    /// Resource limits.
    pub rlimits: Vec<RlimitPlan>,
    /// Whether the process gets a pseudo-terminal.
    pub terminal: bool,
    /// Terminal size (rows, columns).
    pub console_size: Option<(u16, u16)>,
    /// `oom_score_adj`, when given.
    pub oom_score_adj: Option<i32>,
    /// Scheduling policy, I/O priority and CPUs.
    pub scheduling: SchedulingPlan,
    /// AppArmor profile to execute the process under (only set where AppArmor is enabled).
    pub apparmor_profile: Option<String>,
    /// SELinux label to execute the process with (only set where SELinux is enabled).
    pub selinux_label: Option<String>,
}

/// Facts about the runtime process and host that planning depends on, injected for tests.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// Highest capability number the kernel knows.
    pub last_cap: u8,
    /// Current (soft, hard) limits of the runtime process, by `RLIMIT_*` number.
    pub rlimits: Vec<(i32, u64, u64)>,
    /// The runtime process's `oom_score_adj`.
    pub oom_score_adj: i32,
}

/// A decision that changed what the spec asked for, reported as a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adjustment {
    /// A hard rlimit above the current one was lowered.
    RlimitClamped {
        /// `RLIMIT_*` name.
        name: String,
        /// What the spec asked for.
        requested: u64,
        /// What the container gets.
        granted: u64,
    },
    /// An `oomScoreAdj` below the current one was raised to it.
    OomScoreClamped {
        /// What the spec asked for.
        requested: i32,
        /// What the container gets.
        granted: i32,
    },
}

impl std::fmt::Display for Adjustment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RlimitClamped { name, requested, granted } => write!(
                f,
                "{name} hard limit {requested} clamped to the current {granted}: raising it needs CAP_SYS_RESOURCE"
            ),
            Self::OomScoreClamped { requested, granted } => write!(
                f,
                "oomScoreAdj {requested} clamped to the current {granted}: lowering it needs CAP_SYS_RESOURCE"
            ),
        }
    }
}

/// The `RLIMIT_*` number of a spec rlimit type.
pub fn rlimit_number(t: PosixRlimitType) -> i32 {
    let n = match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    };
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The soft `RLIMIT_NOFILE` of a process whose spec sets none.
pub const DEFAULT_NOFILE: u64 = 1024;

/// Plans the process part, shared by `create` and `exec`; returns the warnings for what was clamped.
pub fn plan_process(process: &Process, facts: &HostFacts) -> (ProcessPlan, Vec<Adjustment>) {
    let mut adjustments = Vec::new();
    let capabilities = process.capabilities().as_ref().map(|c| CapabilityPlan {
        bounding: crate::caps::mask(c.bounding().as_ref(), facts.last_cap),
        effective: crate::caps::mask(c.effective().as_ref(), facts.last_cap),
        permitted: crate::caps::mask(c.permitted().as_ref(), facts.last_cap),
        inheritable: crate::caps::mask(c.inheritable().as_ref(), facts.last_cap),
        ambient: crate::caps::mask(c.ambient().as_ref(), facts.last_cap),
    });
    let mut rlimits = Vec::new();
    for limit in process.rlimits().iter().flatten() {
        let resource = rlimit_number(limit.typ());
        let current = facts.rlimits.iter().find(|(r, _, _)| *r == resource);
        let mut hard = limit.hard();
        let mut soft = limit.soft();
        if let Some(&(_, _, current_hard)) = current {
            if hard > current_hard {
                adjustments.push(Adjustment::RlimitClamped {
                    name: limit.typ().to_string(),
                    requested: hard,
                    granted: current_hard,
                });
                hard = current_hard;
                soft = soft.min(hard);
            }
        }
        rlimits.push(RlimitPlan {
            resource,
            soft,
            hard,
        });
    }
    let nofile = i32::try_from(libc::RLIMIT_NOFILE).unwrap_or(7);
    if !rlimits.iter().any(|r| r.resource == nofile) {
        // A spec without RLIMIT_NOFILE would hand the runtime's own (often huge) limit to the
        // container; programs that loop over every descriptor then crawl. Give the classic 1024
        // soft limit and keep the hard one the runtime has, as containerd and podman do.
        let current_hard = facts
            .rlimits
            .iter()
            .find(|(r, _, _)| *r == nofile)
            .map_or(DEFAULT_NOFILE, |&(_, _, hard)| hard);
        rlimits.push(RlimitPlan {
            resource: nofile,
            soft: DEFAULT_NOFILE.min(current_hard),
            hard: current_hard,
        });
    }
    let mut oom_score_adj = process.oom_score_adj();
    if let Some(requested) = oom_score_adj {
        if requested < facts.oom_score_adj {
            adjustments.push(Adjustment::OomScoreClamped {
                requested,
                granted: facts.oom_score_adj,
            });
            oom_score_adj = Some(facts.oom_score_adj);
        }
    }
    let user = process.user();
    let plan = ProcessPlan {
        args: process.args().clone().unwrap_or_default(),
        env: process.env().clone().unwrap_or_default(),
        cwd: process.cwd().display().to_string(),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        capabilities,
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        rlimits,
        terminal: process.terminal().unwrap_or(false),
        console_size: process.console_size().map(|b| {
            (
                u16::try_from(b.height()).unwrap_or(u16::MAX),
                u16::try_from(b.width()).unwrap_or(u16::MAX),
            )
        }),
        oom_score_adj,
        scheduling: plan_scheduling(process),
        apparmor_profile: process.apparmor_profile().clone().filter(|p| !p.is_empty()),
        selinux_label: process.selinux_label().clone().filter(|l| !l.is_empty()),
    };
    (plan, adjustments)
}
