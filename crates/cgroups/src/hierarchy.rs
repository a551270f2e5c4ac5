//! What is mounted where: cgroup v1 hierarchies and the cgroup2 mount, from
//! `/proc/self/mountinfo`, and the process's own cgroups, from `/proc/self/cgroup`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::CgroupError;

const MOUNTINFO: &str = "/proc/self/mountinfo";
const OWN_CGROUPS: &str = "/proc/self/cgroup";

/// cgroup v1 controllers this crate recognises in mount options; anything else there is a
/// mount option (`rw`, `xattr`, `release_agent=...`) or a named hierarchy (`name=...`).
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// One mounted cgroup v1 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Hierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/cpu,cpuacct`.
    pub mount: PathBuf,
    /// The cgroup of the hierarchy that is mounted there (`/` unless bind-mounted).
    pub root: PathBuf,
    /// Controllers it carries, e.g. `["cpu", "cpuacct"]`, or its name, e.g.
    /// `["name=systemd"]`.
    pub controllers: Vec<String>,
}

impl V1Hierarchy {
    /// Whether this hierarchy carries `controller` (or is the named hierarchy `name=...`).
    #[must_use]
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The cgroup2 mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnifiedHierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup` or `/sys/fs/cgroup/unified`.
    pub mount: PathBuf,
    /// The cgroup that is mounted there (`/` unless bind-mounted).
    pub root: PathBuf,
    /// The controllers listed in its `cgroup.controllers`.
    pub controllers: Vec<String>,
}

/// How the host organises its cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Legacy or hybrid: v1 controller hierarchies, maybe a cgroup2 mount beside them
    /// holding the controllers not bound to v1.
    V1,
    /// Unified: cgroup2 only.
    V2,
}

/// The cgroup hierarchies mounted on this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchies {
    /// v1 hierarchies, one per mounted hierarchy (bind mounts of the same one are skipped).
    pub v1: Vec<V1Hierarchy>,
    /// The cgroup2 mount, if any.
    pub unified: Option<UnifiedHierarchy>,
}

impl Hierarchies {
    /// Reads `/proc/self/mountinfo` and, if cgroup2 is mounted, its `cgroup.controllers`.
    pub fn detect() -> Result<Self, CgroupError> {
        let text =
            std::fs::read_to_string(MOUNTINFO).map_err(|e| CgroupError::read(MOUNTINFO, e))?;
        Self::from_mountinfo(&text, |mount| {
            let path = mount.join("cgroup.controllers");
            std::fs::read_to_string(&path).map_err(|e| CgroupError::read(path, e))
        })
    }

    /// Parses mountinfo `text`; `read_controllers` returns the content of
    /// `cgroup.controllers` for a cgroup2 mount point.
    pub fn from_mountinfo(
        text: &str,
        read_controllers: impl FnOnce(&Path) -> Result<String, CgroupError>,
    ) -> Result<Self, CgroupError> {
        let mut v1: Vec<V1Hierarchy> = Vec::new();
        let mut unified: Option<(PathBuf, PathBuf)> = None;
        for line in text.lines() {
            let Some(mount) = parse_mountinfo_line(line) else {
                continue;
            };
            match mount.fstype {
                "cgroup" => {
                    let controllers: Vec<String> = mount
                        .super_options
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .map(str::to_owned)
                        .collect();
                    if controllers.is_empty() || v1.iter().any(|h| h.controllers == controllers) {
                        continue;
                    }
                    v1.push(V1Hierarchy {
                        mount: mount.mount_point,
                        root: mount.root,
                        controllers,
                    });
                }
                "cgroup2" if unified.is_none() => unified = Some((mount.mount_point, mount.root)),
                _ => {}
            }
        }
        let unified = match unified {
            Some((mount, root)) => {
                let controllers = read_controllers(&mount)?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                Some(UnifiedHierarchy {
                    mount,
                    root,
                    controllers,
                })
            }
            None => None,
        };
        if v1.is_empty() && unified.is_none() {
            return Err(CgroupError::NoHierarchy);
        }
        Ok(Self { v1, unified })
    }

    /// V2 when only cgroup2 carries controllers, V1 otherwise (legacy or hybrid).
    #[must_use]
    pub fn layout(&self) -> Layout {
        let v1_controllers = self
            .v1
            .iter()
            .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
        if v1_controllers || self.unified.is_none() {
            Layout::V1
        } else {
            Layout::V2
        }
    }

    /// The v1 hierarchy carrying `controller`.
    #[must_use]
    pub fn v1_hierarchy(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1.iter().find(|h| h.has(controller))
    }

    /// Whether `controller` is available on the cgroup2 mount.
    #[must_use]
    pub fn unified_has(&self, controller: &str) -> bool {
        self.unified
            .as_ref()
            .is_some_and(|u| u.controllers.iter().any(|c| c == controller))
    }
}

struct MountEntry<'a> {
    root: PathBuf,
    mount_point: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

/// `id parent maj:min root mount-point options [optional...] - fstype source super-options`
fn parse_mountinfo_line(line: &str) -> Option<MountEntry<'_>> {
    let mut fields = line.split(' ');
    let root = fields.nth(3)?;
    let mount_point = fields.next()?;
    // Skip the mount options and the optional fields up to the separator.
    fields.by_ref().find(|f| *f == "-")?;
    let fstype = fields.next()?;
    let _source = fields.next()?;
    let super_options = fields.next()?;
    Some(MountEntry {
        root: PathBuf::from(unescape_octal(root)),
        mount_point: PathBuf::from(unescape_octal(mount_point)),
        fstype,
        super_options,
    })
}

/// Undoes the kernel's `\NNN` escaping of space, tab, newline and backslash.
fn unescape_octal(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(digits) = bytes.get(i + 1..i + 4) {
                if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                    let value = digits
                        .iter()
                        .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                    if let Ok(byte) = u8::try_from(value) {
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The calling process's cgroups, from `/proc/self/cgroup`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnCgroups {
    /// `(controllers or name, path)` per v1 hierarchy.
    v1: Vec<(Vec<String>, PathBuf)>,
    /// The cgroup2 path (`0::/path`).
    unified: Option<PathBuf>,
}

impl OwnCgroups {
    /// Reads `/proc/self/cgroup`.
    pub fn read() -> Result<Self, CgroupError> {
        let text =
            std::fs::read_to_string(OWN_CGROUPS).map_err(|e| CgroupError::read(OWN_CGROUPS, e))?;
        Self::parse(&text)
    }

    /// Parses the text of a `/proc/<pid>/cgroup` file.
    pub fn parse(text: &str) -> Result<Self, CgroupError> {
        let mut own = Self::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(CgroupError::parse(OWN_CGROUPS, format!("line {line:?}")));
            };
            let path = PathBuf::from(path.trim_end_matches(" (deleted)"));
            if id == "0" && controllers.is_empty() {
                own.unified = Some(path);
            } else {
                let names = controllers.split(',').map(str::to_owned).collect();
                own.v1.push((names, path));
            }
        }
        Ok(own)
    }

    /// The process's cgroup in the v1 hierarchy carrying `controller` (or `name=...`).
    #[must_use]
    pub fn v1(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(names, _)| names.iter().any(|n| n == controller))
            .map(|(_, p)| p.as_path())
    }

    /// The process's cgroup2 path.
    #[must_use]
    pub fn unified(&self) -> Option<&Path> {
        self.unified.as_deref()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// This machine's layout: v1 controllers one per hierarchy, name=systemd, and a
    /// cgroup2 mount at /sys/fs/cgroup/unified carrying only hugetlb.
    pub(crate) const HYBRID_MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd legacy layout as on older distributions: co-mounted controllers, optional
    /// fields, extra super options.
    const CO_MOUNTED_MOUNTINFO: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,net_cls,net_prio
31 25 0:28 /docker/abc /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
32 25 0:28 /docker/abc /mnt/again\\040here rw,relatime shared:15 - cgroup cgroup rw,memory
";

    const V2_MOUNTINFO: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    pub(crate) fn hybrid() -> Hierarchies {
        Hierarchies::from_mountinfo(HYBRID_MOUNTINFO, |_| Ok("hugetlb\n".into()))
            .expect("fixture parses")
    }

    #[test]
    fn hybrid_layout_lists_each_v1_controller_and_the_unified_mount() {
        let h = hybrid();
        assert_eq!(h.layout(), Layout::V1);
        let names: Vec<&str> = h.v1.iter().map(|h| h.controllers[0].as_str()).collect();
        assert_eq!(
            names,
            [
                "cpu",
                "cpuacct",
                "cpuset",
                "memory",
                "devices",
                "freezer",
                "blkio",
                "pids",
                "name=systemd"
            ]
        );
        let u = h.unified.as_ref().expect("unified");
        assert_eq!(u.mount, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(u.controllers, ["hugetlb"]);
        assert!(h.unified_has("hugetlb"));
        assert!(h.v1_hierarchy("hugetlb").is_none());
        assert!(h.v1_hierarchy("net_cls").is_none());
        assert_eq!(
            h.v1_hierarchy("memory").map(|m| m.mount.as_path()),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
    }

    #[test]
    fn co_mounted_controllers_share_one_hierarchy_and_bind_mounts_are_skipped() {
        let h =
            Hierarchies::from_mountinfo(CO_MOUNTED_MOUNTINFO, |_| unreachable!()).expect("parses");
        assert_eq!(h.layout(), Layout::V1);
        assert!(h.unified.is_none());
        assert_eq!(h.v1.len(), 4);
        let cpu = h.v1_hierarchy("cpuacct").expect("cpuacct");
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
        assert_eq!(cpu.mount, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(
            h.v1_hierarchy("name=systemd")
                .map(|s| s.controllers.clone()),
            Some(vec!["name=systemd".to_owned()])
        );
        let memory = h.v1_hierarchy("memory").expect("memory");
        assert_eq!(memory.root, Path::new("/docker/abc"));
        assert_eq!(memory.mount, Path::new("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn unified_only_is_v2_with_controllers_from_the_reader() {
        let h = Hierarchies::from_mountinfo(V2_MOUNTINFO, |mount| {
            assert_eq!(mount, Path::new("/sys/fs/cgroup"));
            Ok("cpuset cpu io memory hugetlb pids rdma misc\n".into())
        })
        .expect("parses");
        assert_eq!(h.layout(), Layout::V2);
        assert!(h.v1.is_empty());
        assert!(h.unified_has("memory"));
        assert!(!h.unified_has("devices"));
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        let err = Hierarchies::from_mountinfo(
            "22 27 0:21 / /proc rw - proc proc rw\n",
            |_| unreachable!(),
        )
        .expect_err("no cgroups");
        assert!(matches!(err, CgroupError::NoHierarchy));
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_octal("/mnt/a\\040b\\134c"), "/mnt/a b\\c");
        assert_eq!(unescape_octal("/plain"), "/plain");
        assert_eq!(unescape_octal("/trailing\\04"), "/trailing\\04");
    }

    #[test]
    fn own_cgroups_parse_v1_named_and_unified_entries() {
        let own = OwnCgroups::parse(
            "9:name=systemd:/\n4:memory:/process_api/e16f\n2:cpu,cpuacct:/x\n0::/u (deleted)\n",
        )
        .expect("parses");
        assert_eq!(own.v1("memory"), Some(Path::new("/process_api/e16f")));
        assert_eq!(own.v1("cpuacct"), Some(Path::new("/x")));
        assert_eq!(own.v1("name=systemd"), Some(Path::new("/")));
        assert_eq!(own.v1("pids"), None);
        assert_eq!(own.unified(), Some(Path::new("/u")));
        assert!(OwnCgroups::parse("garbage\n").is_err());
    }
}
