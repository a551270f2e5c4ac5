//! Loading a bundle's `config.json` and checking it before anything is created.
//!
//! Unknown properties are ignored, as the runtime spec requires ("MUST NOT generate an error if they
//! encounter an unknown property"); unknown values of known properties (a namespace type, capability,
//! rlimit or seccomp action the spec does not define) and values that cannot work are errors.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use thiserror::Error;

/// Largest `config.json` accepted; real ones are a few kilobytes.
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// Why a bundle's configuration cannot be used.
#[derive(Debug, Error)]
pub enum SpecError {
    /// The bundle directory or its config cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `config.json` is larger than [`MAX_CONFIG_SIZE`].
    #[error("{path} is too large ({size} bytes, the limit is {MAX_CONFIG_SIZE})")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// `config.json` is not valid JSON or has a value of the wrong type or an unknown value.
    #[error("invalid {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// `ociVersion` is not a 1.x version.
    #[error("unsupported ociVersion {0:?}: this runtime implements 1.x")]
    UnsupportedVersion(String),
    /// The config names no root filesystem.
    #[error("config.json has no root")]
    MissingRoot,
    /// The root filesystem is not a directory.
    #[error("rootfs {path} does not exist or is not a directory")]
    RootfsMissing {
        /// The resolved path.
        path: PathBuf,
    },
    /// The config has no `process`, or it has no args.
    #[error("config.json has no process args")]
    MissingProcess,
    /// `process.cwd` is relative.
    #[error("process cwd {0:?} is not an absolute path")]
    RelativeCwd(String),
    /// The config has no `linux` section.
    #[error("config.json has no linux section")]
    MissingLinux,
    /// A namespace type is listed twice.
    #[error("namespace {0} is listed more than once")]
    DuplicateNamespace(String),
    /// A namespace path to join does not exist.
    #[error("namespace path {path} for {kind} does not exist")]
    NamespacePathMissing {
        /// The namespace type.
        kind: String,
        /// The path.
        path: PathBuf,
    },
    /// A new user namespace needs uid and gid mappings.
    #[error("a new user namespace needs uidMappings and gidMappings")]
    MissingIdMappings,
    /// Mappings are given but the container has no new user namespace.
    #[error("uidMappings/gidMappings are set but the config creates no user namespace")]
    MappingsWithoutUserNamespace,
    /// A mount destination is relative.
    #[error("mount destination {0:?} is not an absolute path")]
    RelativeMountDestination(String),
    /// A sysctl would change a host-wide value.
    #[error("sysctl {key:?} is not allowed: {reason}")]
    SysctlNotAllowed {
        /// The sysctl.
        key: String,
        /// What it would need.
        reason: &'static str,
    },
    /// The hostname or domainname is set without a UTS namespace.
    #[error("setting the {0} needs a new uts namespace")]
    NeedsUtsNamespace(&'static str),
    /// Time offsets without a new time namespace.
    #[error("timeOffsets need a new time namespace")]
    NeedsTimeNamespace,
    /// `linux.personality.flags` has a flag the kernel does not define.
    #[error("unknown personality flag {0:?}")]
    UnknownPersonalityFlag(String),
    /// An AppArmor profile is requested on a host without AppArmor.
    #[error("process.apparmorProfile is set but AppArmor is not enabled on this host")]
    AppArmorDisabled,
    /// A CPU or node list cannot be read.
    #[error("invalid {field} {value:?}: want a list like 0-3,7")]
    InvalidIdList {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A field this runtime does not implement (yet) is set.
    #[error("{0} is not supported by this runtime")]
    Unsupported(&'static str),
    /// A mount's id mappings cannot be applied.
    #[error(transparent)]
    MountIdmap(#[from] crate::idmap::MountIdmapError),
    /// `rootfsPropagation` is not a propagation word.
    #[error("unknown rootfsPropagation {0:?}")]
    UnknownPropagation(String),
}

/// A bundle with its parsed, checked configuration.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub path: PathBuf,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
    /// The configuration.
    pub spec: Spec,
    /// The configuration's bytes, stored with the container's state.
    pub raw: Vec<u8>,
}

/// Reads `<bundle>/config.json`, parses and validates it.
pub fn load_bundle(bundle: &Path) -> Result<Bundle, SpecError> {
    let path = std::path::absolute(bundle).map_err(|source| SpecError::Read {
        path: bundle.to_path_buf(),
        source,
    })?;
    let config = path.join("config.json");
    let raw = read_limited(&config)?;
    let spec = parse_spec(&config, &raw)?;
    let rootfs = validate(&spec, &path)?;
    Ok(Bundle {
        path,
        rootfs,
        spec,
        raw,
    })
}

/// Reads a spec file with the size limit applied.
pub fn read_limited(path: &Path) -> Result<Vec<u8>, SpecError> {
    let read_err = |source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut raw = Vec::new();
    file.take(MAX_CONFIG_SIZE + 1)
        .read_to_end(&mut raw)
        .map_err(read_err)?;
    if raw.len() as u64 > MAX_CONFIG_SIZE {
        let size = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(raw.len() as u64);
        return Err(SpecError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    Ok(raw)
}

/// Parses spec bytes read from `path`.
pub fn parse_spec(path: &Path, raw: &[u8]) -> Result<Spec, SpecError> {
    serde_json::from_slice(raw).map_err(|source| SpecError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks a spec for `create`; returns the absolute rootfs path.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<PathBuf, SpecError> {
    if !spec.version().starts_with("1.") {
        return Err(SpecError::UnsupportedVersion(spec.version().clone()));
    }
    let root = spec.root().as_ref().ok_or(SpecError::MissingRoot)?;
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(SpecError::RootfsMissing { path: rootfs });
    }
    let process = spec.process().as_ref().ok_or(SpecError::MissingProcess)?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(SpecError::MissingProcess);
    }
    if !process.cwd().is_absolute() {
        return Err(SpecError::RelativeCwd(process.cwd().display().to_string()));
    }
    let linux = spec.linux().as_ref().ok_or(SpecError::MissingLinux)?;
    let mut seen = HashSet::new();
    let mut new_ns = HashSet::new();
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(SpecError::DuplicateNamespace(ns.typ().to_string()));
        }
        match ns.path() {
            Some(path) if !path.as_os_str().is_empty() => {
                if !path.exists() {
                    return Err(SpecError::NamespacePathMissing {
                        kind: ns.typ().to_string(),
                        path: path.clone(),
                    });
                }
            }
            _ => {
                new_ns.insert(ns.typ());
            }
        }
    }
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_ns.contains(&LinuxNamespaceType::User) {
        let complete = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            && linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if !complete {
            return Err(SpecError::MissingIdMappings);
        }
    } else if has_maps {
        return Err(SpecError::MappingsWithoutUserNamespace);
    }
    for mount in spec.mounts().iter().flatten() {
        if !mount.destination().is_absolute() {
            return Err(SpecError::RelativeMountDestination(
                mount.destination().display().to_string(),
            ));
        }
        let options = crate::mount_options::parse(mount.options().as_deref().unwrap_or_default());
        let fstype = mount.typ().as_deref().unwrap_or_default();
        let is_bind =
            crate::plan::mount_kind(fstype, &options, &[]) == crate::plan::MountKind::Bind;
        crate::idmap::plan_mount_idmap(mount, is_bind, Some(linux))?;
    }
    let has = |t: LinuxNamespaceType| seen.contains(&t);
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            check_sysctl(key, &has)?;
        }
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(SpecError::NeedsUtsNamespace("hostname"));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(SpecError::NeedsUtsNamespace("domainname"));
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty())
        && !new_ns.contains(&LinuxNamespaceType::Time)
    {
        return Err(SpecError::NeedsTimeNamespace);
    }
    let lists = [
        (
            "execCPUAffinity.initial",
            process
                .exec_cpu_affinity()
                .as_ref()
                .and_then(|a| a.initial().clone()),
        ),
        (
            "execCPUAffinity.final",
            process
                .exec_cpu_affinity()
                .as_ref()
                .and_then(|a| a.cpu_affinity_final().clone()),
        ),
        (
            "memoryPolicy.nodes",
            linux
                .memory_policy()
                .as_ref()
                .and_then(|m| m.nodes().clone()),
        ),
    ];
    for (field, value) in lists {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            if crate::plan::parse_id_list(&value).is_none() {
                return Err(SpecError::InvalidIdList { field, value });
            }
        }
    }
    if let Err(flag) = crate::plan::plan_personality(spec) {
        return Err(SpecError::UnknownPersonalityFlag(flag));
    }
    if linux.intel_rdt().is_some() {
        return Err(SpecError::Unsupported("linux.intelRdt (resctrl)"));
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(SpecError::Unsupported("linux.netDevices"));
    }
    if process
        .apparmor_profile()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
        && !apparmor_enabled()
    {
        return Err(SpecError::AppArmorDisabled);
    }
    if let Some(p) = linux.rootfs_propagation() {
        if crate::mount_options::propagation_flag(p).is_none() {
            return Err(SpecError::UnknownPropagation(p.clone()));
        }
    }
    Ok(rootfs)
}

/// Whether the kernel has AppArmor enabled.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Whether the kernel has SELinux enabled (its filesystem is mounted).
pub fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// Allows only sysctls that belong to a namespace the container has, as runc does.
fn check_sysctl(key: &str, has: &impl Fn(LinuxNamespaceType) -> bool) -> Result<(), SpecError> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let deny = |reason| {
        Err(SpecError::SysctlNotAllowed {
            key: key.to_string(),
            reason,
        })
    };
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return if has(LinuxNamespaceType::Ipc) {
            Ok(())
        } else {
            deny("it needs an ipc namespace")
        };
    }
    if key.starts_with("net.") {
        return if has(LinuxNamespaceType::Network) {
            Ok(())
        } else {
            deny("it needs a network namespace")
        };
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return if has(LinuxNamespaceType::Uts) {
            Ok(())
        } else {
            deny("it needs a uts namespace")
        };
    }
    deny("it is not namespaced and would change the host")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_json(extra: &str) -> String {
        format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
            "process":{{"user":{{"uid":0,"gid":0}},"args":["/bin/true"],"cwd":"/"}},
            "linux":{{"namespaces":[{{"type":"mount"}},{{"type":"pid"}}]{extra}}}}}"#
        )
    }

    fn bundle(json: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("rootfs")).expect("rootfs");
        std::fs::write(dir.path().join("config.json"), json).expect("config");
        dir
    }

    #[test]
    fn accepts_a_minimal_bundle() {
        let dir = bundle(&spec_json(""));
        let b = load_bundle(dir.path()).expect("valid");
        assert_eq!(b.rootfs, dir.path().join("rootfs"));
    }

    #[test]
    fn ignores_unknown_properties_but_rejects_unknown_values() {
        let dir = bundle(&spec_json(r#","somethingNew":{"x":1}"#));
        assert!(load_bundle(dir.path()).is_ok());
        let dir = bundle(&spec_json("").replace("\"pid\"", "\"bogus\""));
        let err = load_bundle(dir.path()).expect_err("unknown namespace type");
        assert!(matches!(err, SpecError::Parse { .. }), "{err}");
    }

    #[test]
    fn rejects_truncated_and_oversized_configs() {
        let json = spec_json("");
        let dir = bundle(&json[..json.len() / 2]);
        assert!(matches!(
            load_bundle(dir.path()),
            Err(SpecError::Parse { .. })
        ));
        let big = format!(
            "{}{}",
            " ".repeat(usize::try_from(MAX_CONFIG_SIZE).expect("fits")),
            json
        );
        let dir = bundle(&big);
        assert!(matches!(
            load_bundle(dir.path()),
            Err(SpecError::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_a_missing_rootfs_and_bad_versions() {
        let dir = bundle(&spec_json(""));
        std::fs::remove_dir(dir.path().join("rootfs")).expect("rm");
        assert!(matches!(
            load_bundle(dir.path()),
            Err(SpecError::RootfsMissing { .. })
        ));
        let dir = bundle(&spec_json("").replace("1.0.2", "2.0.0"));
        assert!(matches!(
            load_bundle(dir.path()),
            Err(SpecError::UnsupportedVersion(_))
        ));
    }

    #[test]
    fn invalid_mount_id_mappings_are_refused_naming_the_mount() {
        let with_mount = |mount: &str| {
            spec_json("").replace(r#""linux":"#, &format!(r#""mounts":[{mount}],"linux":"#))
        };
        let maps = r#""uidMappings":[{"containerID":0,"hostID":1000,"size":1}],"gidMappings":[{"containerID":0,"hostID":1000,"size":1}]"#;
        let dir = bundle(&with_mount(&format!(
            r#"{{"destination":"/scratch","type":"tmpfs","source":"tmpfs",{maps}}}"#
        )));
        let err = load_bundle(dir.path()).expect_err("tmpfs with mappings");
        assert_eq!(
            err.to_string(),
            "mount /scratch: id mappings are only supported for bind mounts"
        );
        let dir = bundle(&with_mount(
            r#"{"destination":"/data","source":"/tmp","options":["bind"],"gidMappings":[{"containerID":0,"hostID":1000,"size":1}]}"#,
        ));
        let err = load_bundle(dir.path()).expect_err("gid only");
        assert!(err.to_string().starts_with("mount /data: "), "{err}");
        let dir = bundle(&with_mount(
            r#"{"destination":"/data","source":"/tmp","options":["bind","idmap"]}"#,
        ));
        let err = load_bundle(dir.path()).expect_err("no user namespace");
        assert!(err.to_string().contains("idmap option"), "{err}");
        let dir = bundle(&with_mount(&format!(
            r#"{{"destination":"/data","source":"/tmp","options":["rbind","ridmap"],{maps}}}"#
        )));
        assert!(load_bundle(dir.path()).is_ok());
    }

    #[test]
    fn sysctls_need_their_namespace() {
        let dir = bundle(&spec_json(r#","sysctl":{"net.ipv4.ip_forward":"1"}"#));
        let err = load_bundle(dir.path()).expect_err("no netns");
        assert!(err.to_string().contains("network namespace"), "{err}");
        let dir = bundle(&spec_json(r#","sysctl":{"vm.swappiness":"1"}"#));
        assert!(load_bundle(dir.path()).is_err());
        let dir = bundle(
            &spec_json(r#","sysctl":{"kernel.shmmax":"1"}"#)
                .replace(r#"{"type":"pid"}"#, r#"{"type":"pid"},{"type":"ipc"}"#),
        );
        assert!(load_bundle(dir.path()).is_ok());
    }

    #[test]
    fn duplicate_namespaces_and_user_namespaces_without_mappings() {
        let dir = bundle(&spec_json("").replace(r#"{"type":"pid"}"#, r#"{"type":"mount"}"#));
        assert!(matches!(
            load_bundle(dir.path()),
            Err(SpecError::DuplicateNamespace(_))
        ));
        let dir = bundle(&spec_json("").replace(r#"{"type":"pid"}"#, r#"{"type":"user"}"#));
        assert!(matches!(
            load_bundle(dir.path()),
            Err(SpecError::MissingIdMappings)
        ));
    }
}
