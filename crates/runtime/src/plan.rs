//! The container's init plan: everything the init process must do, decided in the runtime process from
//! the spec as plain data, sent to the init, and applied there without further decisions.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, PosixRlimitType, Process, Spec};
use serde::{Deserialize, Serialize};

use crate::idmap::{MountIdmap, MountIdmapError};
use crate::mount_options::{self, MountFlags};

/// A namespace kind with its `clone` flag and `/proc/<pid>/ns` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceKind {
    /// user
    User,
    /// pid
    Pid,
    /// mnt
    Mount,
    /// net
    Network,
    /// ipc
    Ipc,
    /// uts
    Uts,
    /// cgroup
    Cgroup,
    /// time
    Time,
}

impl NamespaceKind {
    /// From the spec's namespace type.
    pub fn from_spec(t: LinuxNamespaceType) -> Self {
        match t {
            LinuxNamespaceType::User => Self::User,
            LinuxNamespaceType::Pid => Self::Pid,
            LinuxNamespaceType::Mount => Self::Mount,
            LinuxNamespaceType::Network => Self::Network,
            LinuxNamespaceType::Ipc => Self::Ipc,
            LinuxNamespaceType::Uts => Self::Uts,
            LinuxNamespaceType::Cgroup => Self::Cgroup,
            LinuxNamespaceType::Time => Self::Time,
        }
    }

    /// The `CLONE_NEW*` flag.
    pub fn clone_flag(self) -> u64 {
        let flag = match self {
            Self::User => libc::CLONE_NEWUSER,
            Self::Pid => libc::CLONE_NEWPID,
            Self::Mount => libc::CLONE_NEWNS,
            Self::Network => libc::CLONE_NEWNET,
            Self::Ipc => libc::CLONE_NEWIPC,
            Self::Uts => libc::CLONE_NEWUTS,
            Self::Cgroup => libc::CLONE_NEWCGROUP,
            Self::Time => 0x80,
        };
        u64::from(flag.unsigned_abs())
    }

    /// The file name under `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Pid => "pid",
            Self::Mount => "mnt",
            Self::Network => "net",
            Self::Ipc => "ipc",
            Self::Uts => "uts",
            Self::Cgroup => "cgroup",
            Self::Time => "time",
        }
    }
}

/// A namespace the init joins with `setns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceJoin {
    /// Its kind.
    pub kind: NamespaceKind,
    /// The namespace file.
    pub path: PathBuf,
}

/// How the container's namespaces come to be. Usually `clone3` creates the new ones at once and the
/// init joins the others. When a user namespace is joined while others are created, or created
/// while others are joined, the order matters (a namespace belongs to the user namespace its creator
/// was in): then the init is cloned into none, joins, creates the user namespace, creates the rest,
/// and forks once more for a new pid namespace ("staged").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSetup {
    /// `CLONE_NEW*` flags for `clone3`.
    pub clone_flags: u64,
    /// A pid namespace the runtime joins before cloning (it only takes effect for children).
    pub pid_join: Option<PathBuf>,
    /// A user namespace created by `clone3`, whose id maps the runtime writes right away.
    pub new_user_at_clone: bool,
    /// A new time namespace (created by the runtime before cloning, to set its offsets).
    pub new_time: bool,
    /// What the init itself does.
    pub init: InitNamespaces,
}

/// The namespace steps of the init, in this order: join, create the user namespace, create the
/// others, create the cgroup namespace (once inside its cgroup), create the pid namespace and fork.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitNamespaces {
    /// Namespaces to join, user namespace first.
    pub joins: Vec<NamespaceJoin>,
    /// Create a user namespace (the runtime writes its id maps on request).
    pub new_user: bool,
    /// `CLONE_NEW*` flags of other namespaces to create with `unshare`.
    pub unshare_flags: u64,
    /// Create a cgroup namespace.
    pub new_cgroup: bool,
    /// Create a pid namespace, and fork so that the child is its first process.
    pub new_pid: bool,
}

/// Why a set of namespaces cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// The container has no mount namespace of its own.
    #[error("a container needs a mount namespace")]
    NoMountNamespace,
}

/// Decides how each of the spec's namespaces is entered.
pub fn plan_namespaces(namespaces: &[LinuxNamespace]) -> Result<NamespaceSetup, NamespaceError> {
    let path_of = |n: &LinuxNamespace| n.path().clone().filter(|p| !p.as_os_str().is_empty());
    let is_new = |t| {
        namespaces
            .iter()
            .any(|n| n.typ() == t && path_of(n).is_none())
    };
    let is_joined = |t| {
        namespaces
            .iter()
            .any(|n| n.typ() == t && path_of(n).is_some())
    };
    if !namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Mount)
    {
        return Err(NamespaceError::NoMountNamespace);
    }
    let others = || {
        namespaces
            .iter()
            .filter(|n| n.typ() != LinuxNamespaceType::User)
    };
    let staged = (is_joined(LinuxNamespaceType::User) && others().any(|n| path_of(n).is_none()))
        || (is_new(LinuxNamespaceType::User)
            && others().any(|n| n.typ() != LinuxNamespaceType::Pid && path_of(n).is_some()));
    let mut setup = NamespaceSetup {
        clone_flags: 0,
        pid_join: None,
        new_user_at_clone: !staged && is_new(LinuxNamespaceType::User),
        new_time: is_new(LinuxNamespaceType::Time),
        init: InitNamespaces {
            new_user: staged && is_new(LinuxNamespaceType::User),
            new_cgroup: is_new(LinuxNamespaceType::Cgroup),
            new_pid: staged && is_new(LinuxNamespaceType::Pid),
            ..InitNamespaces::default()
        },
    };
    for n in namespaces {
        let kind = NamespaceKind::from_spec(n.typ());
        match (path_of(n), kind) {
            (Some(path), NamespaceKind::Pid) => setup.pid_join = Some(path),
            (Some(path), _) => setup.init.joins.push(NamespaceJoin { kind, path }),
            // Time and cgroup namespaces are created at other moments (see the fields above).
            (None, NamespaceKind::Time | NamespaceKind::Cgroup) => {}
            (None, NamespaceKind::User | NamespaceKind::Pid) if staged => {}
            (None, _) if staged => setup.init.unshare_flags |= kind.clone_flag(),
            (None, _) => setup.clone_flags |= kind.clone_flag(),
        }
    }
    setup
        .init
        .joins
        .sort_by_key(|j| j.kind != NamespaceKind::User);
    Ok(setup)
}

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

/// A device node to create in the container's `/dev`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePlan {
    /// Path inside the container.
    pub path: String,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub file_type: u32,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A cgroup hierarchy to show inside the container at `<destination>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMountSource {
    /// Directory name under the mount point (`memory`, `cpu,cpuacct`, `systemd`, `unified`).
    pub name: String,
    /// The `-o` option that mounts this hierarchy (`memory`, `name=systemd`); empty for cgroup2.
    pub option: String,
    /// The container's own cgroup directory in this hierarchy on the host.
    pub host_dir: PathBuf,
    /// True for the cgroup2 hierarchy.
    pub unified: bool,
}

/// What kind of mount a spec mount is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A bind mount of a host path.
    Bind,
    /// A new filesystem instance (proc, tmpfs, devpts, mqueue, sysfs…).
    Filesystem,
    /// The cgroup hierarchies.
    Cgroup(Vec<CgroupMountSource>),
}

/// One mount of the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// Destination inside the container.
    pub destination: String,
    /// Source (host path for binds, device or fs name otherwise).
    pub source: String,
    /// Filesystem type.
    pub fstype: String,
    /// What kind of mount.
    pub kind: MountKind,
    /// Flags and data from the options.
    pub options: MountFlags,
    /// How the bind mount is idmapped, if it is.
    pub idmap: Option<MountIdmap>,
    /// Descriptor, inherited by the init, of the detached and idmapped tree that the runtime
    /// process prepared for this mount (see [`crate::idmap`]); the init attaches it in place of a
    /// bind mount of the source.
    pub idmapped_tree_fd: Option<i32>,
}

/// How the init builds the root filesystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsPlan {
    /// Host path of the root filesystem.
    pub root: PathBuf,
    /// Remount `/` read-only at the end.
    pub readonly: bool,
    /// Propagation of `/` in the container's mount namespace.
    pub propagation: u64,
    /// The mounts, in spec order.
    pub mounts: Vec<MountPlan>,
    /// Device nodes (defaults, then the spec's).
    pub devices: Vec<DevicePlan>,
    /// Paths hidden from the container.
    pub masked_paths: Vec<String>,
    /// Paths made read-only.
    pub readonly_paths: Vec<String>,
    /// Use `MS_MOVE` + `chroot` instead of `pivot_root`.
    pub no_pivot: bool,
}

/// A hook the init runs itself (createContainer, startContainer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookPlan {
    /// Program path.
    pub path: String,
    /// argv.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Timeout in seconds.
    pub timeout: Option<i64>,
}

/// A compiled seccomp filter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeccompPlan {
    /// Instructions as (code, jt, jf, k).
    pub instructions: Vec<(u16, u8, u8, u32)>,
    /// `SECCOMP_FILTER_FLAG_*`.
    pub flags: u32,
}

/// What lets a set-up init go on to execute its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartGate {
    /// `create`: a later `start` opens the exec fifo (this descriptor of it).
    Fifo(i32),
    /// `run`: the runtime process sends `Start` on the sync socket.
    Message,
    /// `exec`: nothing; execute as soon as set up.
    Immediate,
}

/// Everything the init does, in one message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitPlan {
    /// The container id.
    pub id: String,
    /// Namespaces to join and create.
    pub namespaces: InitNamespaces,
    /// Root filesystem set-up; `None` for `exec`.
    pub rootfs: Option<RootfsPlan>,
    /// Hostname.
    pub hostname: Option<String>,
    /// Domain name.
    pub domainname: Option<String>,
    /// Sysctls, written under `/proc/sys` inside the container.
    pub sysctls: Vec<(String, String)>,
    /// The process to execute.
    pub process: ProcessPlan,
    /// Hooks run in the container's namespaces before `pivot_root`.
    pub create_container_hooks: Vec<HookPlan>,
    /// Hooks run after `start`, before the process is executed.
    pub start_container_hooks: Vec<HookPlan>,
    /// The runtime has createRuntime/prestart hooks to run once the namespaces exist.
    pub runtime_hooks: bool,
    /// The state JSON given to hooks on stdin (without status, which the init adds).
    pub hook_state: String,
    /// What the init waits for once set up, before it executes the process.
    pub start: StartGate,
    /// Descriptor of the console socket, when a terminal is requested.
    pub console_fd: Option<i32>,
    /// First descriptor number that is not passed to the process (3 + preserved fds).
    pub first_private_fd: u32,
    /// Seccomp filter.
    pub seccomp: Option<SeccompPlan>,
    /// Join a new session keyring named after the container.
    pub new_keyring: bool,
    /// `personality(2)` persona (`linux.personality`).
    pub personality: Option<u32>,
    /// NUMA memory policy.
    pub memory_policy: Option<MemoryPolicyPlan>,
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

/// The devices every container gets in `/dev` (runtime spec, "Default Devices").
fn default_devices() -> Vec<DevicePlan> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| DevicePlan {
        path: format!("/dev/{name}"),
        file_type: libc::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Plans the root filesystem from the spec; `cgroup_sources` describes the hierarchies that a mount of
/// type `cgroup` shows. Fails on a mount whose id mappings cannot be applied.
pub fn plan_rootfs(
    spec: &Spec,
    rootfs: PathBuf,
    bundle: &Path,
    no_pivot: bool,
    cgroup_sources: &[CgroupMountSource],
) -> Result<RootfsPlan, MountIdmapError> {
    let linux = spec.linux().as_ref();
    let mut mounts = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let options = mount_options::parse(m.options().as_deref().unwrap_or_default());
        let fstype = m.typ().clone().unwrap_or_default();
        let kind = mount_kind(&fstype, &options, cgroup_sources);
        let source = m.source().as_ref().map(|s| {
            // Bind sources may be relative to the bundle.
            if kind == MountKind::Bind && s.is_relative() {
                bundle.join(s)
            } else {
                s.clone()
            }
        });
        mounts.push(MountPlan {
            destination: m.destination().display().to_string(),
            source: source.map(|s| s.display().to_string()).unwrap_or_default(),
            idmap: crate::idmap::plan_mount_idmap(m, kind == MountKind::Bind, linux)?,
            fstype,
            kind,
            options,
            idmapped_tree_fd: None,
        });
    }
    let mut devices = default_devices();
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let path = d.path().display().to_string();
        devices.retain(|existing| existing.path != path);
        let file_type = match d.typ() {
            oci_spec::runtime::LinuxDeviceType::B => libc::S_IFBLK,
            oci_spec::runtime::LinuxDeviceType::P => libc::S_IFIFO,
            _ => libc::S_IFCHR,
        };
        devices.push(DevicePlan {
            path,
            file_type,
            major: u64::try_from(d.major()).unwrap_or(0),
            minor: u64::try_from(d.minor()).unwrap_or(0),
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    Ok(RootfsPlan {
        root: rootfs,
        readonly: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        propagation: linux
            .and_then(|l| l.rootfs_propagation().as_deref())
            .and_then(mount_options::propagation_flag)
            .unwrap_or(libc::MS_SLAVE | libc::MS_REC),
        mounts,
        devices,
        masked_paths: linux
            .and_then(|l| l.masked_paths().clone())
            .unwrap_or_default(),
        readonly_paths: linux
            .and_then(|l| l.readonly_paths().clone())
            .unwrap_or_default(),
        no_pivot,
    })
}

/// What kind of mount a spec mount of type `fstype` with these options is: the cgroup types first,
/// then a `bind`/`rbind` option or type `bind`.
pub fn mount_kind(
    fstype: &str,
    options: &MountFlags,
    cgroup_sources: &[CgroupMountSource],
) -> MountKind {
    if fstype == "cgroup" || fstype == "cgroup2" {
        MountKind::Cgroup(cgroup_sources.to_vec())
    } else if options.flags & libc::MS_BIND != 0 || fstype == "bind" {
        MountKind::Bind
    } else {
        MountKind::Filesystem
    }
}

/// The spec's resources with the device-cgroup rules every container needs appended, as runc does:
/// the default devices, the terminal devices, and each device the spec creates (the spec's own
/// rules come first, so a later allow wins over an earlier deny-all).
pub fn effective_resources(spec: &Spec) -> Option<oci_spec::runtime::LinuxResources> {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
    let linux = spec.linux().as_ref()?;
    let mut resources = linux.resources().clone().unwrap_or_default();
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some("rwm".to_string()));
        r
    };
    let mut devices = resources.devices().clone().unwrap_or_default();
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        devices.push(rule(LinuxDeviceType::C, Some(major), Some(minor)));
    }
    devices.push(rule(LinuxDeviceType::C, Some(136), None));
    for d in linux.devices().iter().flatten() {
        let typ = match d.typ() {
            LinuxDeviceType::U => LinuxDeviceType::C,
            other => other,
        };
        devices.push(rule(typ, Some(d.major()), Some(d.minor())));
    }
    resources.set_devices(Some(devices));
    Some(resources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{PosixRlimitBuilder, ProcessBuilder};

    fn facts() -> HostFacts {
        HostFacts {
            last_cap: 40,
            rlimits: vec![(libc::RLIMIT_NOFILE as i32, 1024, 524_288)],
            oom_score_adj: 0,
        }
    }

    #[test]
    fn hard_rlimits_above_the_current_ones_are_clamped_and_reported() {
        let limit = PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(1_048_576u64)
            .hard(1_048_576u64)
            .build()
            .expect("rlimit");
        let process = ProcessBuilder::default()
            .rlimits(vec![limit])
            .oom_score_adj(-998)
            .build()
            .expect("process");
        let (plan, adjustments) = plan_process(&process, &facts());
        assert_eq!(plan.rlimits[0].hard, 524_288);
        assert_eq!(plan.rlimits[0].soft, 524_288);
        assert_eq!(plan.oom_score_adj, Some(0));
        assert_eq!(adjustments.len(), 2);
        assert!(adjustments[0]
            .to_string()
            .starts_with("RLIMIT_NOFILE hard limit 1048576 clamped"));
    }

    fn namespaces(json: &str) -> Vec<LinuxNamespace> {
        serde_json::from_str(json).expect("namespaces")
    }

    #[test]
    fn new_namespaces_are_cloned_and_joined_ones_entered_user_first() {
        let setup = plan_namespaces(&namespaces(
            r#"[{"type":"mount"},{"type":"pid","path":"/p"},{"type":"network","path":"/n"},
                {"type":"uts"},{"type":"cgroup"},{"type":"time"}]"#,
        ))
        .expect("plan");
        assert_eq!(
            setup.clone_flags,
            NamespaceKind::Mount.clone_flag() | NamespaceKind::Uts.clone_flag()
        );
        assert_eq!(setup.pid_join, Some(PathBuf::from("/p")));
        assert_eq!(setup.init.joins.len(), 1);
        assert!(setup.init.new_cgroup && setup.new_time && !setup.new_user_at_clone);
        assert_eq!(setup.init.unshare_flags, 0);
    }

    #[test]
    fn a_joined_user_namespace_stages_the_new_ones_in_the_init() {
        let setup = plan_namespaces(&namespaces(
            r#"[{"type":"mount"},{"type":"pid"},{"type":"user","path":"/u"},{"type":"network","path":"/n"}]"#,
        ))
        .expect("plan");
        assert_eq!(setup.clone_flags, 0);
        assert_eq!(setup.init.joins[0].kind, NamespaceKind::User);
        assert_eq!(setup.init.unshare_flags, NamespaceKind::Mount.clone_flag());
        assert!(setup.init.new_pid && !setup.init.new_user);
    }

    #[test]
    fn a_new_user_namespace_with_joined_ones_is_created_by_the_init_after_joining() {
        let setup = plan_namespaces(&namespaces(
            r#"[{"type":"mount"},{"type":"pid"},{"type":"user"},{"type":"network","path":"/n"}]"#,
        ))
        .expect("plan");
        assert_eq!(setup.clone_flags, 0);
        assert!(setup.init.new_user && setup.init.new_pid && !setup.new_user_at_clone);
        assert_eq!(setup.init.joins[0].kind, NamespaceKind::Network);
        // Without joins the user namespace is simply cloned.
        let plain =
            plan_namespaces(&namespaces(r#"[{"type":"mount"},{"type":"user"}]"#)).expect("plan");
        assert!(plain.new_user_at_clone && !plain.init.new_user);
    }

    #[test]
    fn a_container_without_a_mount_namespace_is_refused() {
        assert!(matches!(
            plan_namespaces(&namespaces(r#"[{"type":"pid"}]"#)),
            Err(NamespaceError::NoMountNamespace)
        ));
    }

    #[test]
    fn a_spec_without_a_nofile_limit_gets_1024_and_keeps_the_hard_limit() {
        let process = ProcessBuilder::default()
            .rlimits(vec![])
            .build()
            .expect("process");
        let (plan, adjustments) = plan_process(&process, &facts());
        let nofile = i32::try_from(libc::RLIMIT_NOFILE).expect("fits");
        assert_eq!(
            plan.rlimits,
            vec![RlimitPlan {
                resource: nofile,
                soft: 1024,
                hard: 524_288
            }]
        );
        assert!(adjustments.is_empty());
    }

    #[test]
    fn id_lists_with_ranges() {
        assert_eq!(parse_id_list("0-3,7"), Some(vec![0, 1, 2, 3, 7]));
        assert_eq!(parse_id_list("5"), Some(vec![5]));
        for bad in ["", "a", "3-1", "1,,x", "-1"] {
            assert_eq!(parse_id_list(bad), None, "{bad}");
        }
    }

    #[test]
    fn scheduling_fields_map_to_kernel_values() {
        let process: Process = serde_json::from_str(
            r#"{"user":{"uid":0,"gid":0},"cwd":"/","scheduler":{"policy":"SCHED_BATCH","nice":5,"flags":["SCHED_RESET_ON_FORK"]},
                "ioPriority":{"class":"IOPRIO_CLASS_IDLE","priority":0},"execCPUAffinity":{"final":"0"}}"#,
        )
        .expect("process");
        let plan = plan_scheduling(&process);
        assert_eq!(
            plan.scheduler,
            Some(SchedulerPlan {
                policy: 3,
                flags: 1,
                nice: 5,
                ..SchedulerPlan::default()
            })
        );
        assert_eq!(plan.io_priority, Some((3, 0)));
        assert_eq!(plan.cpus, Some(vec![0]));
    }

    #[test]
    fn spec_devices_replace_defaults_with_the_same_path() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.0","linux":{"devices":[{"path":"/dev/null","type":"c","major":1,"minor":3,"fileMode":432}]},
                "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                          {"destination":"/data","type":"bind","source":"/tmp","options":["rbind","ro"]},
                          {"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup"}]}"#,
        )
        .expect("spec");
        let plan = plan_rootfs(&spec, "/r".into(), Path::new("/b"), false, &[]).expect("plan");
        let null: Vec<_> = plan
            .devices
            .iter()
            .filter(|d| d.path == "/dev/null")
            .collect();
        assert_eq!(null.len(), 1);
        assert_eq!(null[0].mode, 0o660);
        assert_eq!(plan.mounts[0].kind, MountKind::Filesystem);
        assert_eq!(plan.mounts[1].kind, MountKind::Bind);
        assert_eq!(
            plan.mounts[1].options.flags,
            libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY
        );
        assert_eq!(plan.mounts[2].kind, MountKind::Cgroup(vec![]));
        assert_eq!(plan.propagation, libc::MS_SLAVE | libc::MS_REC);
    }

    #[test]
    fn an_idmapped_bind_is_planned_with_its_mappings_and_no_descriptor_yet() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.2.0","linux":{},
                "mounts":[{"destination":"/data","source":"data","options":["rbind","ridmap"],
                           "uidMappings":[{"containerID":1000,"hostID":0,"size":1}],
                           "gidMappings":[{"containerID":1000,"hostID":0,"size":1}]},
                          {"destination":"/plain","source":"/tmp","options":["bind"]}]}"#,
        )
        .expect("spec");
        let plan = plan_rootfs(&spec, "/r".into(), Path::new("/b"), false, &[]).expect("plan");
        let idmapped = &plan.mounts[0];
        assert_eq!(idmapped.kind, MountKind::Bind);
        assert_eq!(idmapped.source, "/b/data");
        assert_eq!(
            idmapped.idmap,
            Some(MountIdmap {
                namespace: crate::idmap::IdmapNamespace::Mappings {
                    uid: "1000 0 1\n".into(),
                    gid: "1000 0 1\n".into(),
                },
                recursive: true,
            })
        );
        assert_eq!(idmapped.idmapped_tree_fd, None);
        assert_eq!(plan.mounts[1].idmap, None);
    }

    #[test]
    fn mappings_on_a_tmpfs_make_the_plan_fail() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.2.0","mounts":[{"destination":"/scratch","type":"tmpfs","source":"tmpfs",
                "uidMappings":[{"containerID":0,"hostID":1000,"size":1}],
                "gidMappings":[{"containerID":0,"hostID":1000,"size":1}]}]}"#,
        )
        .expect("spec");
        let err =
            plan_rootfs(&spec, "/r".into(), Path::new("/b"), false, &[]).expect_err("refused");
        assert!(
            matches!(err, MountIdmapError::NotBind { ref destination } if destination == "/scratch")
        );
    }

    #[test]
    fn default_and_spec_devices_are_allowed_after_the_spec_rules() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.0","linux":{"resources":{"devices":[{"allow":false,"access":"rwm"}]},
                "devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229}]}}"#,
        )
        .expect("spec");
        let devices = effective_resources(&spec)
            .and_then(|r| r.devices().clone())
            .expect("devices");
        assert!(!devices[0].allow());
        let allowed: Vec<_> = devices[1..]
            .iter()
            .map(|d| (d.major(), d.minor()))
            .collect();
        assert!(allowed.contains(&(Some(1), Some(3))), "/dev/null");
        assert!(allowed.contains(&(Some(136), None)), "pts");
        assert_eq!(allowed.last(), Some(&(Some(10), Some(229))));
    }
}
