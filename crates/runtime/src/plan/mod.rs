//! The container's init plan: everything the init process must do, decided in the runtime process from
//! the spec as plain data, sent to the init, and applied there without further decisions.

mod namespaces;
mod process;
mod rootfs;

pub use namespaces::*;
pub use process::*;
pub use rootfs::*;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

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
    use crate::idmap::{MountIdmap, MountIdmapError};
    use oci_spec::runtime::{LinuxNamespace, PosixRlimitType, Process};
    use oci_spec::runtime::{PosixRlimitBuilder, ProcessBuilder};
    use std::path::{Path, PathBuf};

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
