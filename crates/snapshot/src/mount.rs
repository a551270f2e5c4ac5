//! Applying [`Mount`] data: each mount is first turned into a [`MountPlan`] (pure), which a thin
//! layer hands to the kernel.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use crate::Mount;

/// The most option bytes `mount(2)` reads, including the terminating NUL: one page, and 4096 is
/// the smallest page size Linux runs with.
const MOUNT_DATA_LIMIT: usize = 4096;

/// The longest string `fsconfig(2)` takes as one value, in bytes (it copies at most 256 with
/// the NUL).
const FSCONFIG_VALUE_LIMIT: usize = 255;

/// Why mounts could not be applied or removed. [`mount_all`] leaves nothing mounted when it
/// fails.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// An option cannot be used with this kind of mount.
    #[error("cannot mount {fstype} {device:?}: option {option:?} {reason}")]
    BadOption {
        /// The mount's type.
        fstype: String,
        /// The mount's source (`mount(8)`'s device).
        device: String,
        /// The option.
        option: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The filesystem options do not fit in what `mount(2)` accepts, and this filesystem has no
    /// other way to receive them here.
    #[error(
        "cannot mount {fstype} {device:?}: its options are {len} bytes, more than mount(2) takes"
    )]
    OptionsTooLong {
        /// The mount's type.
        fstype: String,
        /// The mount's source (`mount(8)`'s device).
        device: String,
        /// Length of the joined options.
        len: usize,
    },
    /// One value is too long for `fsconfig(2)`, which the options must go through because
    /// they are too long for `mount(2)`.
    #[error("cannot mount {fstype} {device:?}: the value of {key} is {len} bytes, more than fsconfig(2) takes")]
    ValueTooLong {
        /// The mount's type.
        fstype: String,
        /// The mount's source (`mount(8)`'s device).
        device: String,
        /// The parameter (`lowerdir+` for one lower directory).
        key: String,
        /// The value's length.
        len: usize,
    },
    /// The kernel refused the mount.
    #[error("cannot mount {fstype} {device:?} on {}", target.display())]
    Mount {
        /// The mount's type.
        fstype: String,
        /// The mount's source (`mount(8)`'s device).
        device: String,
        /// Where it was to be mounted.
        target: PathBuf,
        /// The system's error.
        #[source]
        error: io::Error,
    },
    /// The kernel refused to unmount (`EBUSY` while something uses the mount).
    #[error("cannot unmount {}", target.display())]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The system's error.
        #[source]
        error: io::Error,
    },
}

/// One parameter for `fsconfig(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FsParameter {
    Flag(String),
    Value(String, String),
}

/// How one [`Mount`] is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountPlan {
    /// A bind mount; a bind ignores every flag but `MS_REC` on creation, so read-only and the
    /// like take a second, remounting call.
    Bind {
        source: PathBuf,
        recursive: bool,
        remount: Option<MountFlags>,
    },
    /// `mount(2)` with the options joined into one data string.
    Legacy {
        fstype: String,
        source: String,
        flags: MountFlags,
        data: String,
    },
    /// The new mount API (`fsopen`, `fsconfig`, `fsmount`, `move_mount`), for overlay options
    /// too long for `mount(2)`: each lower directory is its own `lowerdir+` parameter.
    FsConfig {
        fstype: String,
        parameters: Vec<FsParameter>,
        attributes: MountAttrFlags,
    },
}

/// The `mount(8)` words that are flags rather than filesystem options: (word, flags it sets,
/// flags it clears).
const FLAG_WORDS: &[(&str, MountFlags, MountFlags)] = &[
    ("ro", MountFlags::RDONLY, MountFlags::empty()),
    ("rw", MountFlags::empty(), MountFlags::RDONLY),
    ("nosuid", MountFlags::NOSUID, MountFlags::empty()),
    ("suid", MountFlags::empty(), MountFlags::NOSUID),
    ("nodev", MountFlags::NODEV, MountFlags::empty()),
    ("dev", MountFlags::empty(), MountFlags::NODEV),
    ("noexec", MountFlags::NOEXEC, MountFlags::empty()),
    ("exec", MountFlags::empty(), MountFlags::NOEXEC),
    ("noatime", MountFlags::NOATIME, MountFlags::empty()),
    ("nodiratime", MountFlags::NODIRATIME, MountFlags::empty()),
    ("relatime", MountFlags::RELATIME, MountFlags::empty()),
    ("strictatime", MountFlags::STRICTATIME, MountFlags::empty()),
];

/// Decides how `mount` is applied, refusing options that do not fit it.
pub(crate) fn plan(mount: &Mount) -> Result<MountPlan, MountError> {
    let bad = |option: &str, reason| MountError::BadOption {
        fstype: mount.fstype.clone(),
        device: mount.source.clone(),
        option: option.to_owned(),
        reason,
    };
    let is_bind = mount.fstype == "bind";
    let mut flags = MountFlags::empty();
    let mut recursive = false;
    let mut data = Vec::new();
    for option in &mount.options {
        if let Some((_, set, clear)) = FLAG_WORDS.iter().find(|(w, _, _)| w == option) {
            flags = (flags | *set) - *clear;
        } else if option == "bind" || option == "rbind" {
            if !is_bind {
                return Err(bad(option, "is only for bind mounts"));
            }
            recursive |= option == "rbind";
        } else if is_bind {
            return Err(bad(option, "is not a bind mount option"));
        } else {
            data.push(option.as_str());
        }
    }
    if is_bind {
        return Ok(MountPlan::Bind {
            source: PathBuf::from(&mount.source),
            recursive,
            remount: (!flags.is_empty()).then_some(flags | MountFlags::BIND),
        });
    }
    let data = data.join(",");
    if data.len() < MOUNT_DATA_LIMIT {
        return Ok(MountPlan::Legacy {
            fstype: mount.fstype.clone(),
            source: mount.source.clone(),
            flags,
            data,
        });
    }
    if mount.fstype != "overlay" {
        return Err(MountError::OptionsTooLong {
            fstype: mount.fstype.clone(),
            device: mount.source.clone(),
            len: data.len(),
        });
    }
    let mut parameters = vec![FsParameter::Value("source".into(), mount.source.clone())];
    for option in data.split(',') {
        match option.split_once('=') {
            Some(("lowerdir", dirs)) => parameters.extend(
                dirs.split(':')
                    .map(|dir| FsParameter::Value("lowerdir+".into(), dir.into())),
            ),
            Some((key, value)) => parameters.push(FsParameter::Value(key.into(), value.into())),
            None => parameters.push(FsParameter::Flag(option.into())),
        }
    }
    if let Some(FsParameter::Value(key, value)) = parameters
        .iter()
        .find(|p| matches!(p, FsParameter::Value(_, value) if value.len() > FSCONFIG_VALUE_LIMIT))
    {
        return Err(MountError::ValueTooLong {
            fstype: mount.fstype.clone(),
            device: mount.source.clone(),
            key: key.clone(),
            len: value.len(),
        });
    }
    Ok(MountPlan::FsConfig {
        fstype: mount.fstype.clone(),
        parameters,
        attributes: attributes(flags),
    })
}

/// The `MOUNT_ATTR_*` equivalents of per-mount `MS_*` flags.
fn attributes(flags: MountFlags) -> MountAttrFlags {
    [
        (MountFlags::RDONLY, MountAttrFlags::MOUNT_ATTR_RDONLY),
        (MountFlags::NOSUID, MountAttrFlags::MOUNT_ATTR_NOSUID),
        (MountFlags::NODEV, MountAttrFlags::MOUNT_ATTR_NODEV),
        (MountFlags::NOEXEC, MountAttrFlags::MOUNT_ATTR_NOEXEC),
        (MountFlags::NOATIME, MountAttrFlags::MOUNT_ATTR_NOATIME),
        (
            MountFlags::NODIRATIME,
            MountAttrFlags::MOUNT_ATTR_NODIRATIME,
        ),
        (
            MountFlags::STRICTATIME,
            MountAttrFlags::MOUNT_ATTR_STRICTATIME,
        ),
    ]
    .into_iter()
    .filter(|(flag, _)| flags.contains(*flag))
    .fold(MountAttrFlags::empty(), |all, (_, attr)| all | attr)
}

/// Mounts `mounts` on `target` in order (later ones stack on earlier ones). Every mount is
/// planned before the first is made; if one fails, those already made are unmounted.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), MountError> {
    let plans = mounts.iter().map(plan).collect::<Result<Vec<_>, _>>()?;
    for (done, (mount, plan)) in mounts.iter().zip(&plans).enumerate() {
        if let Err(error) = apply(plan, target) {
            for _ in 0..done {
                let _ = rustix::mount::unmount(target, UnmountFlags::empty());
            }
            return Err(MountError::Mount {
                fstype: mount.fstype.clone(),
                device: mount.source.clone(),
                target: target.to_owned(),
                error,
            });
        }
    }
    Ok(())
}

/// Unmounts the topmost mount on `target`; fails (`EBUSY`) rather than detaching a mount in use.
pub fn unmount(target: &Path) -> Result<(), MountError> {
    rustix::mount::unmount(target, UnmountFlags::empty()).map_err(|e| MountError::Unmount {
        target: target.to_owned(),
        error: e.into(),
    })
}

fn apply(plan: &MountPlan, target: &Path) -> io::Result<()> {
    match plan {
        MountPlan::Bind {
            source,
            recursive,
            remount,
        } => {
            let flags = if *recursive {
                MountFlags::BIND | MountFlags::REC
            } else {
                MountFlags::BIND
            };
            rustix::mount::mount(source.as_path(), target, "", flags, None)?;
            if let Some(remount) = remount {
                if let Err(e) = rustix::mount::mount_remount(target, *remount, "") {
                    let _ = rustix::mount::unmount(target, UnmountFlags::empty());
                    return Err(e.into());
                }
            }
            Ok(())
        }
        MountPlan::Legacy {
            fstype,
            source,
            flags,
            data,
        } => {
            let data = CString::new(data.as_str())?;
            rustix::mount::mount(
                source.as_str(),
                target,
                fstype.as_str(),
                *flags,
                Some(data.as_c_str()),
            )?;
            Ok(())
        }
        MountPlan::FsConfig {
            fstype,
            parameters,
            attributes,
        } => {
            let fs = rustix::mount::fsopen(fstype.as_str(), FsOpenFlags::FSOPEN_CLOEXEC)?;
            for parameter in parameters {
                match parameter {
                    FsParameter::Flag(key) => rustix::mount::fsconfig_set_flag(&fs, key.as_str())?,
                    FsParameter::Value(key, value) => {
                        rustix::mount::fsconfig_set_string(&fs, key.as_str(), value.as_str())?;
                    }
                }
            }
            rustix::mount::fsconfig_create(&fs)?;
            let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, *attributes)?;
            rustix::mount::move_mount(
                &mnt,
                "",
                rustix::fs::CWD,
                target,
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn mount(fstype: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            fstype: fstype.into(),
            source: source.into(),
            options: options.iter().map(|o| (*o).to_owned()).collect(),
        }
    }

    #[test]
    fn a_writable_rbind_needs_no_remount() {
        assert_eq!(
            plan(&mount("bind", "/s/1/fs", &["rbind", "rw"])).unwrap(),
            MountPlan::Bind {
                source: "/s/1/fs".into(),
                recursive: true,
                remount: None,
            }
        );
    }

    #[test]
    fn a_read_only_bind_is_remounted_read_only() {
        assert_eq!(
            plan(&mount("bind", "/s/1/fs", &["ro", "rbind", "nosuid"])).unwrap(),
            MountPlan::Bind {
                source: "/s/1/fs".into(),
                recursive: true,
                remount: Some(MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID),
            }
        );
    }

    #[test]
    fn overlay_options_become_flags_and_one_data_string() {
        let overlay = mount(
            "overlay",
            "overlay",
            &["ro", "index=off", "lowerdir=/s/2/fs:/s/1/fs", "nodev"],
        );
        assert_eq!(
            plan(&overlay).unwrap(),
            MountPlan::Legacy {
                fstype: "overlay".into(),
                source: "overlay".into(),
                flags: MountFlags::RDONLY | MountFlags::NODEV,
                data: "index=off,lowerdir=/s/2/fs:/s/1/fs".into(),
            }
        );
    }

    #[test]
    fn overlay_options_over_a_page_go_one_lower_at_a_time() {
        let lowers: Vec<String> = (0..200)
            .map(|n| format!("/root/snapshots/{n}/fs"))
            .collect();
        let lowerdir = format!("lowerdir={}", lowers.join(":"));
        assert!(lowerdir.len() >= MOUNT_DATA_LIMIT);
        let overlay = mount(
            "overlay",
            "overlay",
            &[
                "index=off",
                &lowerdir,
                "upperdir=/u",
                "workdir=/w",
                "rw",
                "userxattr",
            ],
        );
        let MountPlan::FsConfig {
            fstype,
            parameters,
            attributes,
        } = plan(&overlay).unwrap()
        else {
            panic!("expected the new mount API");
        };
        assert_eq!(fstype, "overlay");
        assert_eq!(attributes, MountAttrFlags::empty());
        let value = |k: &str, v: &str| FsParameter::Value(k.into(), v.into());
        assert_eq!(parameters[0], value("source", "overlay"));
        assert_eq!(parameters[1], value("index", "off"));
        assert_eq!(parameters[2], value("lowerdir+", "/root/snapshots/0/fs"));
        assert_eq!(
            parameters[201],
            value("lowerdir+", "/root/snapshots/199/fs")
        );
        assert_eq!(parameters[202], value("upperdir", "/u"));
        assert_eq!(parameters[203], value("workdir", "/w"));
        assert_eq!(parameters[204], FsParameter::Flag("userxattr".into()));
        assert_eq!(parameters.len(), 205);
    }

    #[test]
    fn read_only_becomes_a_mount_attribute_on_the_new_api() {
        let lowerdir = format!("lowerdir={}", vec!["/l"; 2000].join(":"));
        let plan = plan(&mount("overlay", "overlay", &["ro", "nosuid", &lowerdir])).unwrap();
        let MountPlan::FsConfig { attributes, .. } = plan else {
            panic!("expected the new mount API");
        };
        assert_eq!(
            attributes,
            MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NOSUID
        );
    }

    #[test]
    fn a_lower_directory_too_long_for_fsconfig_is_refused() {
        let long = format!("/{}", "d".repeat(300));
        let lowerdir = format!("lowerdir={}", vec![long.as_str(); 20].join(":"));
        let err = plan(&mount("overlay", "overlay", &[&lowerdir])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot mount overlay \"overlay\": the value of lowerdir+ is 301 bytes, more than fsconfig(2) takes"
        );
    }

    #[test]
    fn long_options_of_other_filesystems_are_refused() {
        let long = "x".repeat(MOUNT_DATA_LIMIT);
        let err = plan(&mount("tmpfs", "tmpfs", &[&long])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot mount tmpfs \"tmpfs\": its options are 4096 bytes, more than mount(2) takes"
        );
    }

    #[test]
    fn options_that_do_not_fit_the_mount_are_refused() {
        let err = plan(&mount("bind", "/src", &["rbind", "lowerdir=/x"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot mount bind \"/src\": option \"lowerdir=/x\" is not a bind mount option"
        );
        let err = plan(&mount("overlay", "overlay", &["rbind"])).unwrap_err();
        assert!(err
            .to_string()
            .ends_with("option \"rbind\" is only for bind mounts"));
    }
}
