//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Failure to find, create, configure, inspect or remove a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup or `/proc` file could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a value (EINVAL, EBUSY, EPERM...).
    #[error("failed to write {value:?} to {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The value written.
        value: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The control file does not exist: this kernel does not provide the knob, or its
    /// controller is not enabled for the cgroup.
    #[error("cannot write {value:?} to {path}: no such file (unsupported by this kernel or controller not enabled)")]
    MissingFile {
        /// The file.
        path: PathBuf,
        /// The value that was to be written.
        value: String,
    },
    /// A resource needs a controller that is not mounted on this host.
    #[error("cannot set {file}: cgroup controller {controller} is not mounted")]
    NotMounted {
        /// The controller.
        controller: &'static str,
        /// The control file that was to be written.
        file: String,
    },
    /// A file read from cgroupfs or `/proc` did not have the expected format.
    #[error("unexpected content in {path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// No cgroup hierarchy is mounted.
    #[error("no cgroup filesystem is mounted (see /proc/self/mountinfo)")]
    NoHierarchy,
    /// The cgroups path is invalid or could escape its hierarchy.
    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The cgroups path has the systemd `slice:prefix:name` form.
    #[error("cgroups path {path:?} has the systemd form slice:prefix:name, but the systemd cgroup driver is not available")]
    SystemdDriverUnavailable {
        /// The path as given.
        path: String,
    },
    /// A relative cgroups path needs the process's own cgroup in a hierarchy that
    /// `/proc/self/cgroup` does not list.
    #[error("/proc/self/cgroup lists no cgroup for hierarchy {hierarchy:?}")]
    OwnCgroupUnknown {
        /// Controller list or name of the hierarchy ("" for cgroup v2).
        hierarchy: String,
    },
    /// The process's own cgroup lies outside the part of the hierarchy mounted here.
    #[error("own cgroup {cgroup} is outside the hierarchy root {root} mounted at {mount}")]
    OutsideMount {
        /// Own cgroup from `/proc/self/cgroup`.
        cgroup: PathBuf,
        /// The mount's root within the hierarchy.
        root: PathBuf,
        /// The mount point.
        mount: PathBuf,
    },
    /// A resource value is invalid.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidValue {
        /// The OCI field, e.g. `memory.swappiness`.
        field: &'static str,
        /// The value.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// `linux.resources.unified` was given on a cgroup v1 host.
    #[error("linux.resources.unified needs cgroup v2, but this host uses cgroup v1")]
    UnifiedOnV1,
    /// A cgroup directory could not be created.
    #[error("failed to create cgroup {path}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup directory could not be removed.
    #[error("failed to remove cgroup {path}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The cgroup has no freezer (v1 freezer not mounted, or no `cgroup.freeze`).
    #[error("cgroup {path} cannot be frozen: no freezer")]
    NoFreezer {
        /// The cgroup directory (v2) or the intended freezer directory.
        path: PathBuf,
    },
    /// The cgroup did not reach the requested freezer state in time.
    #[error("cgroup {path} did not become {state} (last seen {last:?})")]
    FreezeTimeout {
        /// The cgroup directory.
        path: PathBuf,
        /// The state asked for.
        state: &'static str,
        /// The last state read.
        last: String,
    },
    /// The device filter program could not be installed (cgroup v2).
    #[error("failed to install the device filter on {path}")]
    DeviceFilter {
        /// The cgroup directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: testudo_linux::bpf::BpfError,
    },
}

impl CgroupError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Read {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Self::Parse {
            path: path.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(field: &'static str, value: impl ToString, reason: &'static str) -> Self {
        Self::InvalidValue {
            field,
            value: value.to_string(),
            reason,
        }
    }
}
