//! Which namespaces the container gets, created or joined, and in which order.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};
use serde::{Deserialize, Serialize};

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
