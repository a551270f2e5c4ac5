//! OCI mount options (`"ro"`, `"nosuid"`, `"rbind"`, `"rslave"`, `"size=64k"`…) turned into the flags and
//! data of `mount(2)`, the way runc reads them: known words become flags, everything else is passed to the
//! filesystem as data.

use serde::{Deserialize, Serialize};

/// The decisions one mount's options lead to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountFlags {
    /// `MS_*` flags for the mount call.
    pub flags: u64,
    /// `MS_*` flags that an explicit option cleared (for example `rw`, `suid`), kept to override defaults.
    pub cleared: u64,
    /// Propagation changes applied after mounting (`MS_SHARED`, `MS_SLAVE`…, with `MS_REC`).
    pub propagation: Vec<u64>,
    /// `MOUNT_ATTR_*` flags to set recursively (`rro`, `rnosuid`…).
    pub recursive_set: u64,
    /// `MOUNT_ATTR_*` flags to clear recursively (`rrw`, `rsuid`…).
    pub recursive_clear: u64,
    /// Filesystem-specific options, comma-separated.
    pub data: String,
    /// `tmpcopyup` (runc's extension): a tmpfs starts with a copy of what the image has at its
    /// destination.
    pub copy_up: bool,
    /// `idmap` or `ridmap` (runc's extensions): the bind mount is idmapped, with the mount's own
    /// mappings or else the container's; the last of the two words wins.
    pub idmap: Option<IdmapOption>,
}

/// Which of runc's idmap options a mount has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdmapOption {
    /// `idmap`: only the top mount of the bind is idmapped.
    Top,
    /// `ridmap`: every mount of an `rbind` tree is idmapped.
    Recursive,
}

const MS_RDONLY: u64 = libc::MS_RDONLY;
const MS_NOSUID: u64 = libc::MS_NOSUID;
const MS_NODEV: u64 = libc::MS_NODEV;
const MS_NOEXEC: u64 = libc::MS_NOEXEC;
const MS_SYNCHRONOUS: u64 = libc::MS_SYNCHRONOUS;
const MS_REMOUNT: u64 = libc::MS_REMOUNT;
const MS_MANDLOCK: u64 = libc::MS_MANDLOCK;
const MS_DIRSYNC: u64 = libc::MS_DIRSYNC;
const MS_NOATIME: u64 = libc::MS_NOATIME;
const MS_NODIRATIME: u64 = libc::MS_NODIRATIME;
const MS_BIND: u64 = libc::MS_BIND;
const MS_REC: u64 = libc::MS_REC;
const MS_SILENT: u64 = libc::MS_SILENT;
const MS_UNBINDABLE: u64 = libc::MS_UNBINDABLE;
const MS_PRIVATE: u64 = libc::MS_PRIVATE;
const MS_SLAVE: u64 = libc::MS_SLAVE;
const MS_SHARED: u64 = libc::MS_SHARED;
const MS_RELATIME: u64 = libc::MS_RELATIME;
const MS_I_VERSION: u64 = libc::MS_I_VERSION;
const MS_STRICTATIME: u64 = libc::MS_STRICTATIME;
const MS_LAZYTIME: u64 = libc::MS_LAZYTIME;
const MS_NOSYMFOLLOW: u64 = 256;

const ATTR_RDONLY: u64 = 0x1;
const ATTR_NOSUID: u64 = 0x2;
const ATTR_NODEV: u64 = 0x4;
const ATTR_NOEXEC: u64 = 0x8;
const ATTR_RELATIME: u64 = 0x0;
const ATTR_NOATIME: u64 = 0x10;
const ATTR_STRICTATIME: u64 = 0x20;
const ATTR_NODIRATIME: u64 = 0x80;
/// The access-time field of the attributes: setting one value needs the whole field cleared.
const ATTR_ATIME_FIELD: u64 = 0x70;
const ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// (option, set?, flag) for the plain flags.
const FLAGS: &[(&str, bool, u64)] = &[
    ("async", false, MS_SYNCHRONOUS),
    ("atime", false, MS_NOATIME),
    ("bind", true, MS_BIND),
    ("defaults", true, 0),
    ("dev", false, MS_NODEV),
    ("diratime", false, MS_NODIRATIME),
    ("dirsync", true, MS_DIRSYNC),
    ("exec", false, MS_NOEXEC),
    ("iversion", true, MS_I_VERSION),
    ("lazytime", true, MS_LAZYTIME),
    ("loud", false, MS_SILENT),
    ("mand", true, MS_MANDLOCK),
    ("noatime", true, MS_NOATIME),
    ("nodev", true, MS_NODEV),
    ("nodiratime", true, MS_NODIRATIME),
    ("noexec", true, MS_NOEXEC),
    ("noiversion", false, MS_I_VERSION),
    ("nolazytime", false, MS_LAZYTIME),
    ("nomand", false, MS_MANDLOCK),
    ("norelatime", false, MS_RELATIME),
    ("nostrictatime", false, MS_STRICTATIME),
    ("nosuid", true, MS_NOSUID),
    ("rbind", true, MS_BIND | MS_REC),
    ("relatime", true, MS_RELATIME),
    ("remount", true, MS_REMOUNT),
    ("ro", true, MS_RDONLY),
    ("rw", false, MS_RDONLY),
    ("nosymfollow", true, MS_NOSYMFOLLOW),
    ("symfollow", false, MS_NOSYMFOLLOW),
    ("silent", true, MS_SILENT),
    ("strictatime", true, MS_STRICTATIME),
    ("suid", false, MS_NOSUID),
    ("sync", true, MS_SYNCHRONOUS),
];

const PROPAGATION: &[(&str, u64)] = &[
    ("private", MS_PRIVATE),
    ("rprivate", MS_PRIVATE | MS_REC),
    ("shared", MS_SHARED),
    ("rshared", MS_SHARED | MS_REC),
    ("slave", MS_SLAVE),
    ("rslave", MS_SLAVE | MS_REC),
    ("unbindable", MS_UNBINDABLE),
    ("runbindable", MS_UNBINDABLE | MS_REC),
];

/// (option, set?, attribute) for the recursive `mount_setattr` options.
const RECURSIVE: &[(&str, bool, u64)] = &[
    ("rro", true, ATTR_RDONLY),
    ("rrw", false, ATTR_RDONLY),
    ("rnosuid", true, ATTR_NOSUID),
    ("rsuid", false, ATTR_NOSUID),
    ("rnodev", true, ATTR_NODEV),
    ("rdev", false, ATTR_NODEV),
    ("rnoexec", true, ATTR_NOEXEC),
    ("rexec", false, ATTR_NOEXEC),
    ("rnodiratime", true, ATTR_NODIRATIME),
    ("rdiratime", false, ATTR_NODIRATIME),
    ("rnosymfollow", true, ATTR_NOSYMFOLLOW),
    ("rsymfollow", false, ATTR_NOSYMFOLLOW),
];

/// (option, access-time value) for the recursive access-time options. The field holds one value,
/// so the `no` forms pick the value they leave: `ratime` and `rnostrictatime` the kernel's
/// default (relatime), `rnorelatime` strict updates.
const RECURSIVE_ATIME: &[(&str, u64)] = &[
    ("rrelatime", ATTR_RELATIME),
    ("ratime", ATTR_RELATIME),
    ("rnostrictatime", ATTR_RELATIME),
    ("rnoatime", ATTR_NOATIME),
    ("rstrictatime", ATTR_STRICTATIME),
    ("rnorelatime", ATTR_STRICTATIME),
];

/// The propagation flag of a `rootfsPropagation` value, `None` if the word is unknown.
pub fn propagation_flag(word: &str) -> Option<u64> {
    PROPAGATION
        .iter()
        .find(|(w, _)| *w == word)
        .map(|(_, f)| *f)
}

/// Reads a mount's options.
pub fn parse<S: AsRef<str>>(options: &[S]) -> MountFlags {
    let mut out = MountFlags::default();
    let mut data = Vec::new();
    for option in options {
        let option = option.as_ref();
        if let Some(&(_, set, flag)) = FLAGS.iter().find(|(w, _, _)| *w == option) {
            if set {
                out.flags |= flag;
                out.cleared &= !flag;
            } else {
                out.flags &= !flag;
                out.cleared |= flag;
            }
        } else if let Some(flag) = propagation_flag(option) {
            out.propagation.push(flag);
        } else if let Some(&(_, set, attr)) = RECURSIVE.iter().find(|(w, _, _)| *w == option) {
            if set {
                out.recursive_set |= attr;
            } else {
                out.recursive_clear |= attr;
            }
        } else if let Some(&(_, value)) = RECURSIVE_ATIME.iter().find(|(w, _)| *w == option) {
            out.recursive_set = (out.recursive_set & !ATTR_ATIME_FIELD) | value;
            out.recursive_clear |= ATTR_ATIME_FIELD;
        } else if option == "tmpcopyup" {
            out.copy_up = true;
        } else if option == "idmap" {
            out.idmap = Some(IdmapOption::Top);
        } else if option == "ridmap" {
            out.idmap = Some(IdmapOption::Recursive);
        } else if !option.is_empty() {
            data.push(option);
        }
    }
    out.data = data.join(",");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursive_access_time_options_set_the_whole_field() {
        let m = parse(&["rbind", "rnoatime"]);
        assert_eq!(m.recursive_set, ATTR_NOATIME);
        assert_eq!(m.recursive_clear, ATTR_ATIME_FIELD);
        let m = parse(&["rnoatime", "rrelatime", "rnosymfollow"]);
        assert_eq!(m.recursive_set, ATTR_RELATIME | ATTR_NOSYMFOLLOW);
        assert_eq!(m.recursive_clear, ATTR_ATIME_FIELD);
        let m = parse(&["rnorelatime", "rsymfollow"]);
        assert_eq!(m.recursive_set, ATTR_STRICTATIME);
        assert_eq!(m.recursive_clear, ATTR_ATIME_FIELD | ATTR_NOSYMFOLLOW);
        assert!(m.data.is_empty());
    }

    #[test]
    fn known_words_become_flags_and_the_rest_data() {
        let m = parse(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(m.flags, MS_NOSUID | MS_STRICTATIME);
        assert_eq!(m.data, "mode=755,size=65536k");
        assert!(m.propagation.is_empty());
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let m = parse(&["ro", "rw", "nodev", "dev"]);
        assert_eq!(m.flags, 0);
        assert_eq!(m.cleared, MS_RDONLY | MS_NODEV);
    }

    #[test]
    fn tmpcopyup_is_not_passed_to_the_filesystem() {
        let m = parse(&["rw", "nosuid", "tmpcopyup", "mode=1777"]);
        assert!(m.copy_up);
        assert_eq!(m.data, "mode=1777");
        assert!(!parse(&["nosuid"]).copy_up);
    }

    #[test]
    fn idmap_options_are_recognised_and_the_last_wins() {
        assert_eq!(parse(&["bind", "idmap"]).idmap, Some(IdmapOption::Top));
        let m = parse(&["rbind", "idmap", "ridmap"]);
        assert_eq!(m.idmap, Some(IdmapOption::Recursive));
        assert_eq!(m.data, "");
        assert_eq!(parse(&["bind"]).idmap, None);
    }

    #[test]
    fn rbind_propagation_and_recursive_attributes() {
        let m = parse(&["rbind", "rprivate", "rro", "rnosuid"]);
        assert_eq!(m.flags, MS_BIND | MS_REC);
        assert_eq!(m.propagation, vec![MS_PRIVATE | MS_REC]);
        assert_eq!(m.recursive_set, ATTR_RDONLY | ATTR_NOSUID);
    }
}
