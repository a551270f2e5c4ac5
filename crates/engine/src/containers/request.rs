//! What a client asks for when it creates a container, and its translation into the OCI runtime
//! spec: pure functions, unit-tested without root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, Spec,
};
use serde::{Deserialize, Serialize};

use testudo_network::PortMapping;

use super::ContainerError;
use crate::networks::NetworkChoice;

/// Where the testudo binary is bind-mounted in a container with `init: true`.
pub const INIT_PATH: &str = "/.testudo-init";

/// The CFS period that a CPU limit in millicores is expressed against (docker's and kubelet's).
pub const CPU_PERIOD_MICROS: u64 = 100_000;

/// A request to create a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// Its name, unique in the namespace; defaults to the first 12 characters of the id.
    pub name: Option<String>,
    /// The image reference, as the user wrote it.
    pub image: String,
    /// `KEY=VALUE` entries added to (or replacing) the image's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Replaces the image's Entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's Cmd.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Replaces the image's WorkingDir.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Replaces the image's User (`name`, `uid`, `uid:gid`, ...).
    #[serde(default)]
    pub user: Option<String>,
    /// User labels (tags).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Extra mounts.
    #[serde(default)]
    pub mounts: Vec<MountRequest>,
    /// Which network namespace the container gets.
    #[serde(default)]
    pub network: NetworkMode,
    /// Resource limits.
    #[serde(default)]
    pub resources: Resources,
    /// Put testudo's minimal init (`testudo reap`) as PID 1.
    #[serde(default)]
    pub init: bool,
    /// Give the container a terminal (`process.terminal`); its output is logged as stdout.
    #[serde(default)]
    pub tty: bool,
    /// Keep the container's standard input open for attach.
    #[serde(default)]
    pub stdin: bool,
    /// Close the container's standard input once the first attached client ends its input
    /// (docker's `StdinOnce`); needs `stdin` and no `tty`.
    #[serde(default)]
    pub stdin_once: bool,
    /// What to do when the process ends by itself.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Delete the container once it has exited and its restart policy does not restart it
    /// (docker's `--rm` for a detached container); also after an exit no daemon saw.
    #[serde(default)]
    pub auto_remove: bool,
    /// The cell (its name or id) the container joins: it shares the cell's monitor and network
    /// namespace, so `network` must be left at its default.
    #[serde(default)]
    pub cell: Option<String>,
}

/// Whether the engine restarts a container whose process ended without stop or kill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max_retries` times in a row (0: no limit).
    OnFailure {
        /// The most restarts in a row; 0 means no limit.
        max_retries: u32,
    },
    /// Restart after every exit.
    Always,
}

/// One extra mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRequest {
    /// The host path (bind) or the filesystem's source (`tmpfs`).
    pub source: String,
    /// The absolute path inside the container.
    pub target: String,
    /// The filesystem type; empty means `bind`.
    #[serde(default)]
    pub fstype: String,
    /// Mount options (`ro`, `rbind`, `size=1m`, ...).
    #[serde(default)]
    pub options: Vec<String>,
}

/// Which network namespace a container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// A new network namespace holding only the loopback interface.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// The existing network namespace at this path (`/run/netns/x`, `/proc/<pid>/ns/net`).
    Join(PathBuf),
    /// A network namespace of its own on a bridge network, with an address and NAT.
    Bridge {
        /// The network; `None` is the daemon's default network.
        #[serde(default)]
        network: Option<String>,
        /// Host ports forwarded to the container.
        #[serde(default)]
        ports: Vec<PortMapping>,
    },
    /// A network namespace of its own set up by a CNI configuration list.
    Cni {
        /// The configuration list's name.
        network: String,
        /// Host ports forwarded to the container (the `portMappings` capability).
        #[serde(default)]
        ports: Vec<PortMapping>,
    },
}

impl NetworkMode {
    /// The network to attach to, for the modes that attach; with the ports to publish.
    pub fn attachment(&self) -> Option<(NetworkChoice<'_>, &[PortMapping])> {
        match self {
            NetworkMode::None | NetworkMode::Host | NetworkMode::Join(_) => None,
            NetworkMode::Bridge { network, ports } => {
                Some((NetworkChoice::Bridge(network.as_deref()), ports))
            }
            NetworkMode::Cni { network, ports } => Some((NetworkChoice::Cni(network), ports)),
        }
    }

    /// Whether the container gets a network namespace other than the host's.
    pub fn own_netns(&self) -> bool {
        !matches!(self, NetworkMode::Host)
    }
}

/// Resource limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU time in thousandths of a CPU (1000 is one CPU), as a CFS quota.
    #[serde(default)]
    pub cpu_millicores: Option<u64>,
    /// Memory limit in bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Most processes at once.
    #[serde(default)]
    pub pids: Option<u64>,
}

/// What the spec needs besides the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecContext {
    /// `linux.cgroupsPath`.
    pub cgroups_path: PathBuf,
    /// The testudo binary, bind-mounted for `init: true`.
    pub testudo_binary: PathBuf,
    /// The network namespace made for a bridge or CNI attachment.
    pub netns: Option<PathBuf>,
    /// The container's `hosts`, `resolv.conf` and `hostname` files, bind-mounted over the
    /// image's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`.
    pub name_files: Option<[PathBuf; 3]>,
}

/// Checks what can be checked without touching the host: mount targets and sources,
/// network path, resource values.
pub fn validate(request: &CreateRequest) -> Result<(), ContainerError> {
    if request.image.is_empty() {
        return Err(ContainerError::NoImage);
    }
    for mount in &request.mounts {
        if !Path::new(&mount.target).is_absolute() {
            return Err(ContainerError::RelativeMountTarget {
                target: mount.target.clone(),
            });
        }
        if is_bind(mount) && !Path::new(&mount.source).is_absolute() {
            return Err(ContainerError::RelativeMountSource {
                source_path: mount.source.clone(),
            });
        }
    }
    if request.stdin_once && !request.stdin {
        return Err(ContainerError::StdinOnceWithoutStdin);
    }
    if request.stdin_once && request.tty {
        return Err(ContainerError::StdinOnceWithTty);
    }
    if let NetworkMode::Join(path) = &request.network {
        if !path.is_absolute() {
            return Err(ContainerError::RelativeNetnsPath { path: path.clone() });
        }
    }
    let limits = [
        ("cpu", request.resources.cpu_millicores),
        ("memory", request.resources.memory_bytes),
        ("pids", request.resources.pids),
    ];
    for (what, value) in limits {
        if value == Some(0) {
            return Err(ContainerError::ZeroLimit { what });
        }
        if value.is_some_and(|v| i64::try_from(v).is_err()) {
            return Err(ContainerError::LimitTooLarge { what });
        }
    }
    Ok(())
}

fn is_bind(mount: &MountRequest) -> bool {
    mount.fstype.is_empty() || mount.fstype == "bind"
}

/// The request's mounts, network, resources, init and cgroups path applied to `spec` (which
/// already holds the image config's process).
pub fn apply_request(
    spec: &mut Spec,
    request: &CreateRequest,
    context: &SpecContext,
) -> Result<(), ContainerError> {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for mount in &request.mounts {
        mounts.push(oci_mount(mount)?);
    }
    if let Some(files) = &context.name_files {
        for (source, target) in files.iter().zip(NAME_FILE_TARGETS) {
            mounts.push(
                MountBuilder::default()
                    .destination(target)
                    .source(source)
                    .typ("bind")
                    .options(vec!["rbind".to_owned(), "rw".to_owned()])
                    .build()
                    .map_err(ContainerError::Spec)?,
            );
        }
    }
    if request.init {
        mounts.push(
            MountBuilder::default()
                .destination(INIT_PATH)
                .source(&context.testudo_binary)
                .typ("bind")
                .options(vec![
                    "bind".to_owned(),
                    "ro".to_owned(),
                    "nosuid".to_owned(),
                ])
                .build()
                .map_err(ContainerError::Spec)?,
        );
        if let Some(process) = spec.process_mut() {
            let mut args = vec![INIT_PATH.to_owned(), "reap".to_owned(), "--".to_owned()];
            args.extend(process.args().clone().unwrap_or_default());
            process.set_args(Some(args));
        }
    }
    spec.set_mounts(Some(mounts));
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(request.tty));
    }

    let mut linux = spec.linux().clone().unwrap_or_else(|| {
        // Spec::default() always has a linux section; an empty one is still a valid start.
        LinuxBuilder::default().build().unwrap_or_default()
    });
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    match &request.network {
        NetworkMode::None => {}
        NetworkMode::Host => namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network),
        NetworkMode::Join(path) => set_netns_path(&mut namespaces, path),
        NetworkMode::Bridge { .. } | NetworkMode::Cni { .. } => {
            let path = context.netns.as_ref().ok_or(ContainerError::NotAttached)?;
            set_netns_path(&mut namespaces, path);
        }
    }
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(context.cgroups_path.clone()));
    linux.set_resources(resources(&request.resources)?);
    spec.set_linux(Some(linux));
    Ok(())
}

/// Where the name files go, in the order of [`SpecContext::name_files`].
const NAME_FILE_TARGETS: [&str; 3] = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"];

fn set_netns_path(namespaces: &mut [oci_spec::runtime::LinuxNamespace], path: &Path) {
    for ns in namespaces {
        if ns.typ() == LinuxNamespaceType::Network {
            ns.set_path(Some(path.to_owned()));
        }
    }
}

fn oci_mount(mount: &MountRequest) -> Result<Mount, ContainerError> {
    let mut options = mount.options.clone();
    let fstype = if is_bind(mount) {
        if !options.iter().any(|o| o == "bind" || o == "rbind") {
            options.push("rbind".to_owned());
        }
        "bind"
    } else {
        mount.fstype.as_str()
    };
    MountBuilder::default()
        .destination(&mount.target)
        .source(&mount.source)
        .typ(fstype)
        .options(options)
        .build()
        .map_err(ContainerError::Spec)
}

fn resources(
    limits: &Resources,
) -> Result<Option<oci_spec::runtime::LinuxResources>, ContainerError> {
    if *limits == Resources::default() {
        return Ok(None);
    }
    let signed =
        |what, v: u64| i64::try_from(v).map_err(|_| ContainerError::LimitTooLarge { what });
    let mut builder = LinuxResourcesBuilder::default();
    if let Some(millicores) = limits.cpu_millicores {
        let quota = signed("cpu", millicores.saturating_mul(CPU_PERIOD_MICROS) / 1000)?;
        builder = builder.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD_MICROS)
                .build()
                .map_err(ContainerError::Spec)?,
        );
    }
    if let Some(bytes) = limits.memory_bytes {
        builder = builder.memory(
            LinuxMemoryBuilder::default()
                .limit(signed("memory", bytes)?)
                .build()
                .map_err(ContainerError::Spec)?,
        );
    }
    if let Some(pids) = limits.pids {
        builder = builder.pids(
            LinuxPidsBuilder::default()
                .limit(signed("pids", pids)?)
                .build()
                .map_err(ContainerError::Spec)?,
        );
    }
    Ok(Some(builder.build().map_err(ContainerError::Spec)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn context() -> SpecContext {
        SpecContext {
            cgroups_path: "/testudo/ns/abc".into(),
            testudo_binary: "/usr/bin/testudo".into(),
            netns: None,
            name_files: None,
        }
    }

    fn applied(request: &CreateRequest) -> Spec {
        let mut spec = Spec::default();
        if let Some(p) = spec.process_mut() {
            p.set_args(Some(vec!["/bin/sh".into()]));
        }
        apply_request(&mut spec, request, &context()).unwrap();
        spec
    }

    fn request() -> CreateRequest {
        CreateRequest {
            image: "busybox".into(),
            ..CreateRequest::default()
        }
    }

    fn net_ns(spec: &Spec) -> Option<Option<PathBuf>> {
        spec.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .find(|ns| ns.typ() == LinuxNamespaceType::Network)
            .map(|ns| ns.path().clone())
    }

    #[test]
    fn a_relative_mount_target_is_refused() {
        let mut r = request();
        r.mounts.push(MountRequest {
            source: "/tmp".into(),
            target: "data".into(),
            ..MountRequest::default()
        });
        assert!(matches!(
            validate(&r),
            Err(ContainerError::RelativeMountTarget { target }) if target == "data"
        ));
    }

    #[test]
    fn a_zero_limit_is_refused_and_a_tty_reaches_the_spec() {
        let mut r = request();
        r.tty = true;
        assert!(validate(&r).is_ok());
        assert_eq!(
            applied(&r).process().as_ref().and_then(|p| p.terminal()),
            Some(true)
        );
        let mut r = request();
        r.resources.pids = Some(0);
        assert!(matches!(
            validate(&r),
            Err(ContainerError::ZeroLimit { what: "pids" })
        ));
    }

    #[test]
    fn network_modes_choose_the_network_namespace() {
        assert_eq!(net_ns(&applied(&request())), Some(None));
        let mut host = request();
        host.network = NetworkMode::Host;
        assert_eq!(net_ns(&applied(&host)), None);
        let mut join = request();
        join.network = NetworkMode::Join("/run/netns/x".into());
        assert_eq!(net_ns(&applied(&join)), Some(Some("/run/netns/x".into())));
    }

    #[test]
    fn millicores_become_a_quota_of_the_period() {
        let mut r = request();
        r.resources.cpu_millicores = Some(500);
        r.resources.memory_bytes = Some(64 << 20);
        let spec = applied(&r);
        let res = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        let cpu = res.cpu().clone().unwrap();
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(CPU_PERIOD_MICROS));
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(
            spec.linux().as_ref().unwrap().cgroups_path().as_deref(),
            Some(Path::new("/testudo/ns/abc"))
        );
    }

    #[test]
    fn init_wraps_the_process_and_mounts_the_binary_read_only() {
        let mut r = request();
        r.init = true;
        let spec = applied(&r);
        let args = spec.process().as_ref().unwrap().args().clone().unwrap();
        assert_eq!(args, ["/.testudo-init", "reap", "--", "/bin/sh"]);
        let mount = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new(INIT_PATH))
            .unwrap();
        assert_eq!(
            mount.source().as_deref(),
            Some(Path::new("/usr/bin/testudo"))
        );
        assert!(mount.options().as_ref().unwrap().contains(&"ro".to_owned()));
    }

    #[test]
    fn a_bind_mount_without_bind_option_gets_rbind() {
        let m = oci_mount(&MountRequest {
            source: "/srv".into(),
            target: "/data".into(),
            fstype: String::new(),
            options: vec!["ro".into()],
        })
        .unwrap();
        assert_eq!(m.typ().as_deref(), Some("bind"));
        assert_eq!(m.options().clone().unwrap(), ["ro", "rbind"]);
    }
}
