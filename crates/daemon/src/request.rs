//! Requests become validated values here, before the engine sees them: namespace names, image
//! references, container names and signals, and a container's configuration mapped onto the
//! engine's `CreateRequest` (and back, for Inspect).

use testudo_api::containers::v1;
use testudo_engine::containers as engine;
use testudo_engine::images::canonical_name;
use testudo_engine::networks::{PortMapping, Protocol};
use testudo_engine::state::Name;

/// Why a request is malformed, whatever the daemon's state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("invalid namespace name {name:?}: {reason}")]
    NamespaceName { name: String, reason: &'static str },
    #[error("invalid image reference {reference:?}")]
    Reference {
        reference: String,
        #[source]
        source: testudo_engine::images::ImageError,
    },
    #[error("the first message of an import must be `start`")]
    ImportWithoutStart,
    #[error("an import sent `start` twice")]
    ImportStartTwice,
    #[error("an import chunk of {size} bytes is larger than 1 MiB")]
    ChunkTooLarge { size: usize },
    #[error("an import message has neither `start` nor `chunk`")]
    EmptyImportMessage,
    #[error("an export needs at least one reference")]
    NoReferences,
    #[error("event topic prefix {prefix:?} does not start with /")]
    TopicPrefix { prefix: String },
    #[error("a container needs a configuration")]
    NoConfig,
    #[error("no image given")]
    NoImage,
    #[error("invalid {what} name {name:?}: {reason}")]
    Name {
        what: &'static str,
        name: String,
        reason: String,
    },
    #[error("no container given")]
    NoContainer,
    #[error("mount target {target:?} is not an absolute path")]
    RelativeMountTarget { target: String },
    #[error("working directory {path:?} is not an absolute path")]
    RelativeWorkingDir { path: String },
    #[error("network namespace path {path:?} is not an absolute path")]
    RelativeNetnsPath { path: String },
    #[error("the network has no mode")]
    NoNetworkMode,
    #[error("a CNI network needs the name of a configuration list")]
    NoCniNetwork,
    #[error("invalid host address {address:?} of a published port")]
    HostIp { address: String },
    #[error("published {which} port {port} is not in 1-65535")]
    Port { which: &'static str, port: u32 },
    #[error("invalid protocol {protocol} of a published port")]
    Protocol { protocol: i32 },
    #[error("{what} limit must be at least {min}")]
    LimitTooSmall {
        what: &'static str,
        min: &'static str,
    },
    #[error("invalid signal {signal:?}")]
    Signal { signal: String },
    #[error("invalid stop timeout")]
    Timeout,
    #[error("invalid time in `since`")]
    Since,
    #[error("invalid container state {state} in the filter")]
    State { state: i32 },
    #[error("the first message of an {call} must be `start`")]
    StreamWithoutStart { call: &'static str },
    #[error("an {call} sent `start` twice")]
    StartTwice { call: &'static str },
    #[error("an {call} message has nothing set")]
    EmptyMessage { call: &'static str },
    #[error("a stdin chunk of {size} bytes is larger than 1 MiB")]
    StdinTooLarge { size: usize },
    #[error("terminal size {columns}x{rows} is larger than 65535x65535")]
    TerminalSize { rows: u32, columns: u32 },
    #[error("an exec needs at least the program")]
    NoCommand,
    #[error("environment entry {entry:?} is not NAME=value")]
    Env { entry: String },
    #[error("user {user:?} is not uid or uid:gid (names are not resolved for exec)")]
    ExecUser { user: String },
}

impl RequestError {
    /// The status a call ends with for this error.
    pub(crate) fn into_status(self) -> tonic::Status {
        crate::status::CallError::from(self).into()
    }
}

/// The largest bytes chunk of a stream (`docs/api.md`).
pub(crate) const MAX_CHUNK: usize = 1 << 20;

/// A namespace name as the API allows it: a DNS label (1 to 63 of `[a-z0-9-]`, starting and
/// ending with a letter or digit), which the engine's own, wider rule accepts too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceName(Name);

impl NamespaceName {
    pub(crate) fn parse(name: &str) -> Result<NamespaceName, RequestError> {
        let bad = |reason| RequestError::NamespaceName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > 63 {
            return Err(bad("it is longer than 63 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("only lowercase letters, digits and '-' are allowed"));
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Err(bad("it must start and end with a letter or digit"));
        }
        Name::parse("namespace", name)
            .map(NamespaceName)
            .map_err(|_| bad("the engine refuses it"))
    }

    pub(crate) fn name(&self) -> &Name {
        &self.0
    }
}

/// An image reference that parses, in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageReference(String);

impl ImageReference {
    pub(crate) fn parse(reference: &str) -> Result<ImageReference, RequestError> {
        canonical_name(reference)
            .map(ImageReference)
            .map_err(|source| RequestError::Reference {
                reference: reference.to_owned(),
                source,
            })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A container's (or cell's, as `what` says) name as the API allows it: the engine's name rule,
/// and not the shape of an id (64 hexadecimal digits), so that a name and an id never collide.
pub(crate) fn object_name(what: &'static str, name: &str) -> Result<String, RequestError> {
    let bad = |reason: String| RequestError::Name {
        what,
        name: name.to_owned(),
        reason,
    };
    if is_id(name) {
        return Err(bad(format!("it has the shape of a {what} id")));
    }
    match Name::parse(what, name) {
        Ok(name) => Ok(name.to_string()),
        Err(testudo_engine::state::StateError::InvalidName { reason, .. }) => {
            Err(bad(reason.to_owned()))
        }
        Err(other) => Err(bad(other.to_string())),
    }
}

/// Whether `s` has the shape of a container id: 64 lowercase hexadecimal digits.
fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A container named in a request, by id or name: not empty.
pub(crate) fn container_ref(container: &str) -> Result<&str, RequestError> {
    if container.is_empty() {
        return Err(RequestError::NoContainer);
    }
    Ok(container)
}

/// Linux's standard signals by name, without the `SIG` prefix.
const SIGNALS: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// The highest signal number (the last real-time signal).
const MAX_SIGNAL: i32 = 64;

/// A signal given as a name (`SIGTERM`, `TERM`, any case) or a number (1 to 64); `default`
/// when empty.
pub(crate) fn signal(text: &str, default: i32) -> Result<i32, RequestError> {
    if text.is_empty() {
        return Ok(default);
    }
    let bad = || RequestError::Signal {
        signal: text.to_owned(),
    };
    if let Ok(number) = text.parse::<i32>() {
        return if (1..=MAX_SIGNAL).contains(&number) {
            Ok(number)
        } else {
            Err(bad())
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, number)| number)
        .ok_or_else(bad)
}

/// The engine's request for an exec process from the API's `start`, validated.
pub(crate) fn exec_request(start: &v1::ExecStart) -> Result<engine::ExecRequest, RequestError> {
    if start.args.first().is_none_or(String::is_empty) {
        return Err(RequestError::NoCommand);
    }
    if let Some(entry) = start
        .env
        .iter()
        .find(|e| e.split_once('=').is_none_or(|(name, _)| name.is_empty()))
    {
        return Err(RequestError::Env {
            entry: entry.clone(),
        });
    }
    let cwd = Some(start.cwd.clone()).filter(|d| !d.is_empty());
    if let Some(dir) = cwd.as_deref().filter(|d| !d.starts_with('/')) {
        return Err(RequestError::RelativeWorkingDir {
            path: dir.to_owned(),
        });
    }
    let user = Some(start.user.as_str())
        .filter(|u| !u.is_empty())
        .map(exec_user)
        .transpose()?;
    Ok(engine::ExecRequest {
        args: start.args.clone(),
        env: start.env.clone(),
        cwd,
        user,
        tty: start.tty,
        stdin: start.stdin,
        terminal_size: start.size.map(terminal_size).transpose()?,
    })
}

/// (rows, columns) of a terminal size that fits a terminal.
pub(crate) fn terminal_size(size: v1::TerminalSize) -> Result<(u16, u16), RequestError> {
    match (u16::try_from(size.rows), u16::try_from(size.columns)) {
        (Ok(rows), Ok(columns)) => Ok((rows, columns)),
        _ => Err(RequestError::TerminalSize {
            rows: size.rows,
            columns: size.columns,
        }),
    }
}

/// `uid` or `uid:gid`.
fn exec_user(user: &str) -> Result<(u32, Option<u32>), RequestError> {
    let bad = || RequestError::ExecUser {
        user: user.to_owned(),
    };
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (user, None),
    };
    let uid = uid.parse().map_err(|_| bad())?;
    let gid = gid.map(str::parse).transpose().map_err(|_| bad())?;
    Ok((uid, gid))
}

/// The engine's request for a container from the API's configuration, validated.
pub(crate) fn create_request(
    config: Option<v1::ContainerConfig>,
) -> Result<engine::CreateRequest, RequestError> {
    let config = config.ok_or(RequestError::NoConfig)?;
    if config.image.is_empty() {
        return Err(RequestError::NoImage);
    }
    let image = ImageReference::parse(&config.image)?;
    let name = Some(config.name.as_str())
        .filter(|n| !n.is_empty())
        .map(|name| object_name("container", name))
        .transpose()?;
    let working_dir = Some(config.working_dir).filter(|d| !d.is_empty());
    if let Some(dir) = working_dir.as_deref().filter(|d| !d.starts_with('/')) {
        return Err(RequestError::RelativeWorkingDir {
            path: dir.to_owned(),
        });
    }
    let mounts = config
        .mounts
        .into_iter()
        .map(|m| {
            if !m.target.starts_with('/') {
                return Err(RequestError::RelativeMountTarget { target: m.target });
            }
            Ok(engine::MountRequest {
                source: m.source,
                target: m.target,
                fstype: if m.r#type.is_empty() {
                    "bind".to_owned()
                } else {
                    m.r#type
                },
                options: m.options,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(engine::CreateRequest {
        name,
        image: image.as_str().to_owned(),
        env: config.env,
        entrypoint: config.entrypoint.map(|c| c.args),
        cmd: config.cmd.map(|c| c.args),
        working_dir,
        user: Some(config.user).filter(|u| !u.is_empty()),
        labels: config.tags.into_iter().collect(),
        mounts,
        network: network(config.network)?,
        resources: resources(config.resources)?,
        init: config.init,
        tty: config.tty,
        stdin: config.stdin,
        stdin_once: config.stdin_once,
        restart: restart(config.restart_policy),
        auto_remove: config.auto_remove,
        cell: Some(config.cell).filter(|c| !c.is_empty()),
    })
}

pub(crate) fn network(network: Option<v1::Network>) -> Result<engine::NetworkMode, RequestError> {
    use v1::network::Mode;
    let Some(network) = network else {
        return Ok(engine::NetworkMode::None);
    };
    match network.mode {
        None => Err(RequestError::NoNetworkMode),
        Some(Mode::None(_)) => Ok(engine::NetworkMode::None),
        Some(Mode::Host(_)) => Ok(engine::NetworkMode::Host),
        Some(Mode::Join(join)) if join.path.starts_with('/') => {
            Ok(engine::NetworkMode::Join(join.path.into()))
        }
        Some(Mode::Join(join)) => Err(RequestError::RelativeNetnsPath { path: join.path }),
        Some(Mode::Bridge(bridge)) => Ok(engine::NetworkMode::Bridge {
            network: Some(bridge.network).filter(|n| !n.is_empty()),
            ports: ports(bridge.ports)?,
        }),
        Some(Mode::Cni(cni)) if cni.network.is_empty() => Err(RequestError::NoCniNetwork),
        Some(Mode::Cni(cni)) => Ok(engine::NetworkMode::Cni {
            network: cni.network,
            ports: ports(cni.ports)?,
        }),
    }
}

/// Published ports, validated.
fn ports(ports: Vec<v1::PortMapping>) -> Result<Vec<PortMapping>, RequestError> {
    let port = |which, port: u32| {
        u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or(RequestError::Port { which, port })
    };
    ports
        .into_iter()
        .map(|p| {
            let host_ip = match p.host_ip.as_str() {
                "" => None,
                ip => Some(ip.parse().map_err(|_| RequestError::HostIp {
                    address: p.host_ip.clone(),
                })?),
            };
            let protocol = match v1::Protocol::try_from(p.protocol) {
                Ok(v1::Protocol::Tcp) => Protocol::Tcp,
                Ok(v1::Protocol::Udp) => Protocol::Udp,
                Err(_) => {
                    return Err(RequestError::Protocol {
                        protocol: p.protocol,
                    })
                }
            };
            Ok(PortMapping {
                host_ip,
                host_port: port("host", p.host_port)?,
                container_port: port("container", p.container_port)?,
                protocol,
            })
        })
        .collect()
}

/// The API's form of published ports.
pub(crate) fn api_ports(ports: &[PortMapping]) -> Vec<v1::PortMapping> {
    ports
        .iter()
        .map(|p| v1::PortMapping {
            host_ip: p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            host_port: u32::from(p.host_port),
            container_port: u32::from(p.container_port),
            protocol: match p.protocol {
                Protocol::Tcp => v1::Protocol::Tcp,
                Protocol::Udp => v1::Protocol::Udp,
            }
            .into(),
        })
        .collect()
}

fn resources(resources: Option<v1::Resources>) -> Result<engine::Resources, RequestError> {
    let Some(r) = resources else {
        return Ok(engine::Resources::default());
    };
    let small = |what, min| RequestError::LimitTooSmall { what, min };
    if r.cpu_millicores == Some(0) {
        return Err(small("cpu", "1 millicore"));
    }
    if r.memory_bytes.is_some_and(|m| m < 1 << 20) {
        return Err(small("memory", "1 MiB"));
    }
    if r.pids == Some(0) {
        return Err(small("pids", "1"));
    }
    Ok(engine::Resources {
        cpu_millicores: r.cpu_millicores.map(u64::from),
        memory_bytes: r.memory_bytes,
        pids: r.pids.map(u64::from),
    })
}

fn restart(policy: Option<v1::RestartPolicy>) -> engine::RestartPolicy {
    use v1::restart_policy::Policy;
    match policy.and_then(|p| p.policy) {
        None | Some(Policy::No(_)) => engine::RestartPolicy::No,
        Some(Policy::OnFailure(f)) => engine::RestartPolicy::OnFailure {
            max_retries: f.max_retries,
        },
        Some(Policy::Always(_)) => engine::RestartPolicy::Always,
    }
}

/// The API's form of a network mode.
pub(crate) fn api_network(network: engine::NetworkMode) -> v1::Network {
    use v1::network::Mode;
    let mode = match network {
        engine::NetworkMode::None => Mode::None(v1::NoNetwork {}),
        engine::NetworkMode::Host => Mode::Host(v1::HostNetwork {}),
        engine::NetworkMode::Join(path) => Mode::Join(v1::JoinNetwork {
            path: path.to_string_lossy().into_owned(),
        }),
        engine::NetworkMode::Bridge { network, ports } => Mode::Bridge(v1::BridgeNetwork {
            network: network.unwrap_or_default(),
            ports: api_ports(&ports),
        }),
        engine::NetworkMode::Cni { network, ports } => Mode::Cni(v1::CniNetwork {
            network,
            ports: api_ports(&ports),
        }),
    };
    v1::Network { mode: Some(mode) }
}

/// The API's configuration of a container from the engine's request it was created with.
pub(crate) fn container_config(name: &str, request: engine::CreateRequest) -> v1::ContainerConfig {
    use v1::restart_policy::Policy;
    let policy = match request.restart {
        engine::RestartPolicy::No => Policy::No(v1::restart_policy::No {}),
        engine::RestartPolicy::OnFailure { max_retries } => {
            Policy::OnFailure(v1::restart_policy::OnFailure { max_retries })
        }
        engine::RestartPolicy::Always => Policy::Always(v1::restart_policy::Always {}),
    };
    let limits = request.resources;
    v1::ContainerConfig {
        name: name.to_owned(),
        image: request.image,
        tags: request.labels.into_iter().collect(),
        env: request.env,
        entrypoint: request.entrypoint.map(|args| v1::Command { args }),
        cmd: request.cmd.map(|args| v1::Command { args }),
        working_dir: request.working_dir.unwrap_or_default(),
        user: request.user.unwrap_or_default(),
        mounts: request
            .mounts
            .into_iter()
            .map(|m| v1::Mount {
                source: m.source,
                target: m.target,
                r#type: m.fstype,
                options: m.options,
            })
            .collect(),
        network: Some(api_network(request.network)),
        resources: Some(v1::Resources {
            cpu_millicores: limits
                .cpu_millicores
                .map(|c| u32::try_from(c).unwrap_or(u32::MAX)),
            memory_bytes: limits.memory_bytes,
            pids: limits.pids.map(|p| u32::try_from(p).unwrap_or(u32::MAX)),
        }),
        restart_policy: Some(v1::RestartPolicy {
            policy: Some(policy),
        }),
        init: request.init,
        tty: request.tty,
        stdin: request.stdin,
        stdin_once: request.stdin_once,
        auto_remove: request.auto_remove,
        cell: request.cell.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_exec_start_is_validated() {
        let start = |args: &[&str], env: &[&str], cwd: &str, user: &str| v1::ExecStart {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env.iter().map(|e| (*e).to_owned()).collect(),
            cwd: cwd.to_owned(),
            user: user.to_owned(),
            ..v1::ExecStart::default()
        };
        let good = exec_request(&start(&["id"], &["A=1"], "/tmp", "1000:100")).unwrap();
        assert_eq!(good.user, Some((1000, Some(100))));
        assert_eq!(good.cwd.as_deref(), Some("/tmp"));
        assert!(!good.stdin, "an exec has no input unless it asks for it");
        let interactive = v1::ExecStart {
            stdin: true,
            ..start(&["cat"], &[], "", "")
        };
        assert!(exec_request(&interactive).unwrap().stdin);
        let uid_only = exec_request(&start(&["id"], &[], "", "7")).unwrap();
        assert_eq!((uid_only.user, uid_only.cwd), (Some((7, None)), None));
        for (bad, what) in [
            (
                start(&[], &[], "", ""),
                "an exec needs at least the program",
            ),
            (
                start(&[""], &[], "", ""),
                "an exec needs at least the program",
            ),
            (start(&["id"], &["A"], "", ""), "environment entry \"A\""),
            (start(&["id"], &["=1"], "", ""), "environment entry \"=1\""),
            (start(&["id"], &[], "tmp", ""), "working directory \"tmp\""),
            (start(&["id"], &[], "", "nobody"), "user \"nobody\""),
            (start(&["id"], &[], "", "1:x"), "user \"1:x\""),
        ] {
            let message = exec_request(&bad).unwrap_err().to_string();
            assert!(message.starts_with(what), "{message}");
        }
    }

    #[test]
    fn namespace_names_follow_the_dns_label_rule() {
        for good in ["default", "a", "team-7", &"x".repeat(63)] {
            assert!(NamespaceName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Acme", "a_b", "a.b", "-a", "a-", &"x".repeat(64), "a/b"] {
            assert!(NamespaceName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_short_reference_becomes_canonical_and_a_bad_one_is_refused() {
        assert_eq!(
            ImageReference::parse("busybox").unwrap().as_str(),
            "docker.io/library/busybox:latest"
        );
        let error = ImageReference::parse("Bad Ref!").unwrap_err();
        assert!(error
            .to_string()
            .starts_with("invalid image reference \"Bad Ref!\""));
    }

    fn config() -> v1::ContainerConfig {
        v1::ContainerConfig {
            image: "busybox".to_owned(),
            ..v1::ContainerConfig::default()
        }
    }

    #[test]
    fn signals_are_names_with_or_without_sig_or_numbers() {
        assert_eq!(signal("", 15).unwrap(), 15);
        assert_eq!(signal("SIGTERM", 9).unwrap(), 15);
        assert_eq!(signal("kill", 15).unwrap(), 9);
        assert_eq!(signal("usr1", 15).unwrap(), 10);
        assert_eq!(signal("34", 15).unwrap(), 34);
        for bad in ["SIGNOPE", "0", "65", "-9", "TERM "] {
            assert_eq!(
                signal(bad, 15).unwrap_err().to_string(),
                format!("invalid signal {bad:?}")
            );
        }
    }

    #[test]
    fn a_configuration_maps_onto_the_engine_request_and_back() {
        let mut c = config();
        c.name = "web".to_owned();
        c.cmd = Some(v1::Command {
            args: vec!["sh".to_owned()],
        });
        c.entrypoint = Some(v1::Command { args: Vec::new() });
        c.mounts.push(v1::Mount {
            source: "/srv".to_owned(),
            target: "/data".to_owned(),
            r#type: String::new(),
            options: vec!["ro".to_owned()],
        });
        c.resources = Some(v1::Resources {
            cpu_millicores: Some(500),
            memory_bytes: Some(64 << 20),
            pids: Some(8),
        });
        c.restart_policy = Some(v1::RestartPolicy {
            policy: Some(v1::restart_policy::Policy::OnFailure(
                v1::restart_policy::OnFailure { max_retries: 3 },
            )),
        });
        c.stdin = true;
        c.stdin_once = true;
        let request = create_request(Some(c)).unwrap();
        assert_eq!(request.name.as_deref(), Some("web"));
        assert_eq!(request.image, "docker.io/library/busybox:latest");
        assert_eq!(request.entrypoint, Some(Vec::new()));
        assert_eq!(request.mounts[0].fstype, "bind");
        assert_eq!(request.resources.cpu_millicores, Some(500));
        assert_eq!(
            request.restart,
            engine::RestartPolicy::OnFailure { max_retries: 3 }
        );
        assert!(request.stdin && request.stdin_once);
        let back = container_config("web", request);
        assert!(back.stdin_once);
        assert_eq!(back.cmd.unwrap().args, ["sh"]);
        assert_eq!(back.resources.unwrap().pids, Some(8));
        assert_eq!(back.mounts[0].options, ["ro"]);
    }

    #[test]
    fn a_bridge_network_with_ports_maps_onto_the_engine_and_back() {
        let mut c = config();
        let ports = vec![
            v1::PortMapping {
                host_ip: "127.0.0.1".to_owned(),
                host_port: 8080,
                container_port: 80,
                protocol: v1::Protocol::Tcp.into(),
            },
            v1::PortMapping {
                host_ip: String::new(),
                host_port: 53,
                container_port: 5353,
                protocol: v1::Protocol::Udp.into(),
            },
        ];
        c.network = Some(v1::Network {
            mode: Some(v1::network::Mode::Bridge(v1::BridgeNetwork {
                network: String::new(),
                ports: ports.clone(),
            })),
        });
        let request = create_request(Some(c)).unwrap();
        let engine::NetworkMode::Bridge {
            network,
            ports: mapped,
        } = &request.network
        else {
            panic!("{:?}", request.network);
        };
        assert_eq!(*network, None);
        assert_eq!(mapped[0].to_string(), "127.0.0.1:8080:80/tcp");
        assert_eq!(mapped[1].protocol, Protocol::Udp);
        let back = container_config("web", request);
        assert_eq!(
            back.network.unwrap().mode,
            Some(v1::network::Mode::Bridge(v1::BridgeNetwork {
                network: String::new(),
                ports,
            }))
        );
    }

    #[test]
    fn bad_configurations_are_refused_with_what_is_wrong() {
        let refused = |edit: fn(&mut v1::ContainerConfig)| {
            let mut c = config();
            edit(&mut c);
            create_request(Some(c)).unwrap_err().to_string()
        };
        assert_eq!(refused(|c| c.image.clear()), "no image given");
        assert!(refused(|c| c.image = "Bad Ref!".to_owned()).starts_with("invalid image reference"));
        assert!(
            refused(|c| c.name = "a/b".to_owned()).starts_with("invalid container name \"a/b\"")
        );
        assert_eq!(
            refused(|c| c.name = "ab".repeat(32)),
            format!(
                "invalid container name {:?}: it has the shape of a container id",
                "ab".repeat(32)
            )
        );
        assert_eq!(
            refused(|c| c.mounts.push(v1::Mount {
                source: "/srv".to_owned(),
                target: "data".to_owned(),
                ..v1::Mount::default()
            })),
            "mount target \"data\" is not an absolute path"
        );
        assert_eq!(
            refused(|c| c.network = Some(v1::Network { mode: None })),
            "the network has no mode"
        );
        fn with_port(host_ip: &str, host_port: u32, protocol: i32) -> v1::Network {
            v1::Network {
                mode: Some(v1::network::Mode::Bridge(v1::BridgeNetwork {
                    network: String::new(),
                    ports: vec![v1::PortMapping {
                        host_ip: host_ip.to_owned(),
                        host_port,
                        container_port: 80,
                        protocol,
                    }],
                })),
            }
        }
        assert_eq!(
            refused(|c| c.network = Some(with_port("", 0, 0))),
            "published host port 0 is not in 1-65535"
        );
        assert_eq!(
            refused(|c| c.network = Some(with_port("", 70000, 0))),
            "published host port 70000 is not in 1-65535"
        );
        assert_eq!(
            refused(|c| c.network = Some(with_port("localhost", 80, 0))),
            "invalid host address \"localhost\" of a published port"
        );
        assert_eq!(
            refused(|c| c.network = Some(with_port("", 80, 7))),
            "invalid protocol 7 of a published port"
        );
        assert_eq!(
            refused(|c| c.network = Some(v1::Network {
                mode: Some(v1::network::Mode::Cni(v1::CniNetwork::default())),
            })),
            "a CNI network needs the name of a configuration list"
        );
        assert_eq!(
            refused(|c| c.resources = Some(v1::Resources {
                memory_bytes: Some(1000),
                ..v1::Resources::default()
            })),
            "memory limit must be at least 1 MiB"
        );
        assert_eq!(
            refused(|c| c.working_dir = "tmp".to_owned()),
            "working directory \"tmp\" is not an absolute path"
        );
        assert_eq!(
            create_request(None).unwrap_err().to_string(),
            "a container needs a configuration"
        );
    }
}
