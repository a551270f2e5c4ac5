//! The root filesystem: mounts, devices, masked and read-only paths.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::idmap::{MountIdmap, MountIdmapError};
use crate::mount_options::{self, MountFlags};

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
