//! The container commands: flags as a podman user expects them, turned into the API's
//! `ContainerConfig`, and the foreground `run` (output streamed, the container's exit code
//! returned).

use crate::signals::{self, Signals};
use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use testudo_client::containers::{
    restart_policy, Command as Args_, Container, ContainerConfig, ContainerState, LogsRequest,
    Mount, OutputStream, Resources, RestartPolicy, StatsResponse,
};
use testudo_client::Client;

use crate::output::{size, table, time};
use crate::{print_json, CtlError};

/// How a container is configured: the flags of `run` and `create`.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// The container's name, unique in the namespace
    #[arg(long)]
    name: Option<String>,
    /// An environment variable, KEY=VALUE; repeatable
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Replaces the image's entrypoint: a program, or a JSON array; "" for none
    #[arg(long)]
    entrypoint: Option<String>,
    /// The working directory in the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// The user: user, uid, user:group or uid:gid
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// A bind mount, SRC:DST[:ro]; repeatable
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]")]
    volumes: Vec<String>,
    /// A mount, type=TYPE,source=SRC,target=DST[,OPTION...]; repeatable
    #[arg(long = "mount", value_name = "type=..,source=..,target=..")]
    mounts: Vec<String>,
    /// The network: bridge (the default network), a network's name, none, host, cni:CONFLIST,
    /// ns:PATH or container:NAME (another container's network namespace) [default: bridge]
    #[arg(long)]
    network: Option<String>,
    /// The cell to join: the container shares its monitor and network (no --network then)
    #[arg(long)]
    cell: Option<String>,
    /// Publish a port, [hostIP:]hostPort:containerPort[/tcp|udp]; repeatable
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    publish: Vec<String>,
    /// CPU limit in CPUs (0.5 is half a core)
    #[arg(long)]
    cpus: Option<String>,
    /// Memory limit: bytes, or with k, m, g
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Most processes and threads at once
    #[arg(long = "pids-limit")]
    pids_limit: Option<u32>,
    /// Restart policy: no, on-failure[:N] or always
    #[arg(long, default_value = "no")]
    restart: String,
    /// Run a minimal init as PID 1 that reaps zombies and forwards signals
    #[arg(long)]
    init: bool,
    /// Give the container a terminal
    #[arg(short = 't', long)]
    tty: bool,
    /// Keep the container's standard input open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// A label, KEY=VALUE; repeatable
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// The image
    image: String,
    /// The command and its arguments, replacing the image's
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// The container commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ContainerCommand {
    /// Create a container and start it; without -d, stream its output and exit with its status
    Run {
        /// Start it and print its id, without waiting
        #[arg(short = 'd', long)]
        detach: bool,
        /// Delete the container once it has stopped
        #[arg(long)]
        rm: bool,
        #[command(flatten)]
        config: Box<ConfigArgs>,
    },
    /// Create a container without starting it
    Create {
        #[command(flatten)]
        config: Box<ConfigArgs>,
    },
    /// Start created containers
    Start {
        /// Ids or names
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers: a signal, then SIGKILL after a timeout
    Stop {
        /// Seconds to wait before SIGKILL
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        /// The signal sent first (default: the image's stop signal, else SIGTERM)
        #[arg(short = 's', long, default_value = "")]
        signal: String,
        /// Ids or names
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers
    Kill {
        /// The signal
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        /// Ids or names
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Delete containers
    Rm {
        /// Kill running ones first
        #[arg(short = 'f', long)]
        force: bool,
        /// Ids or names
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List running containers
    Ps {
        /// All containers, whatever their state
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Show a container as JSON
    Inspect {
        /// Id or name
        container: String,
    },
    /// Print a container's logs
    Logs {
        /// Keep printing new output until the container stops
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only output since this time (RFC 3339) or this long ago (10m, 1h)
        #[arg(long)]
        since: Option<String>,
        /// Only the last N lines
        #[arg(long)]
        tail: Option<u64>,
        /// Id or name
        container: String,
    },
    /// Wait for containers to stop and print their exit codes
    Wait {
        /// Ids or names
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show a container's resource usage
    Stats {
        /// Id or name
        container: String,
    },
}

/// A flag that does not parse: `what` says which, `value` what was given.
pub(crate) fn bad_flag(flag: &'static str, value: &str, expected: &'static str) -> CtlError {
    CtlError::Flag {
        flag,
        value: value.to_owned(),
        expected,
    }
}

/// `KEY=VALUE` pairs.
pub(crate) fn pairs(
    flag: &'static str,
    values: &[String],
) -> Result<std::collections::HashMap<String, String>, CtlError> {
    values
        .iter()
        .map(|v| {
            v.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| bad_flag(flag, v, "KEY=VALUE"))
        })
        .collect()
}

/// `SRC:DST[:ro|rw]` as a bind mount.
fn volume(value: &str) -> Result<Mount, CtlError> {
    let parts: Vec<&str> = value.split(':').collect();
    let bad = || bad_flag("--volume", value, "SRC:DST[:ro]");
    let (source, target, options) = match parts.as_slice() {
        [source, target] => (*source, *target, Vec::new()),
        [source, target, mode] => (*source, *target, vec![(*mode).to_owned()]),
        _ => return Err(bad()),
    };
    if source.is_empty() || target.is_empty() {
        return Err(bad());
    }
    Ok(Mount {
        source: source.to_owned(),
        target: target.to_owned(),
        r#type: "bind".to_owned(),
        options,
    })
}

/// `type=..,source=..,target=..[,option...]` as a mount; other entries are options.
fn mount(value: &str) -> Result<Mount, CtlError> {
    let mut mount = Mount::default();
    for entry in value.split(',').filter(|e| !e.is_empty()) {
        match entry.split_once('=') {
            Some(("type", v)) => mount.r#type = v.to_owned(),
            Some(("source" | "src", v)) => mount.source = v.to_owned(),
            Some(("target" | "destination" | "dst", v)) => mount.target = v.to_owned(),
            Some(("readonly" | "ro", "true")) => mount.options.push("ro".to_owned()),
            _ => mount.options.push(entry.to_owned()),
        }
    }
    if mount.target.is_empty() {
        return Err(bad_flag("--mount", value, "type=..,source=..,target=.."));
    }
    if mount.r#type.is_empty() {
        mount.r#type = "bind".to_owned();
    }
    Ok(mount)
}

/// CPUs as a decimal (`0.5`, `2`, at most three decimals) in millicores.
fn millicores(value: &str) -> Result<u32, CtlError> {
    let bad = || bad_flag("--cpus", value, "a number of CPUs such as 0.5");
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || (whole.is_empty() && fraction.is_empty()) {
        return Err(bad());
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return Err(bad());
    }
    let whole: u32 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let fraction: u32 = format!("{fraction:0<3}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1000)
        .and_then(|m| m.checked_add(fraction))
        .filter(|&m| m > 0)
        .ok_or_else(bad)
}

/// Bytes, with an optional `b`, `k`, `m` or `g` suffix (powers of 1024, any case).
fn bytes(value: &str) -> Result<u64, CtlError> {
    let bad = || bad_flag("--memory", value, "bytes, or a number with k, m or g");
    let lower = value.to_ascii_lowercase();
    let (number, shift) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 10),
        Some(b'm') => (&lower[..lower.len() - 1], 20),
        Some(b'g') => (&lower[..lower.len() - 1], 30),
        Some(b'b') => (&lower[..lower.len() - 1], 0),
        _ => (lower.as_str(), 0),
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    number.checked_mul(1 << shift).ok_or_else(bad)
}

fn restart(value: &str) -> Result<RestartPolicy, CtlError> {
    use restart_policy::Policy;
    let policy = match value.split_once(':') {
        None if value == "no" => Policy::No(restart_policy::No {}),
        None if value == "always" => Policy::Always(restart_policy::Always {}),
        None if value == "on-failure" => {
            Policy::OnFailure(restart_policy::OnFailure { max_retries: 0 })
        }
        Some(("on-failure", n)) => Policy::OnFailure(restart_policy::OnFailure {
            max_retries: n
                .parse()
                .map_err(|_| bad_flag("--restart", value, "no, on-failure[:N] or always"))?,
        }),
        _ => return Err(bad_flag("--restart", value, "no, on-failure[:N] or always")),
    };
    Ok(RestartPolicy {
        policy: Some(policy),
    })
}

fn entrypoint(value: &str) -> Result<Vec<String>, CtlError> {
    if value.starts_with('[') {
        serde_json::from_str(value).map_err(|_| bad_flag("--entrypoint", value, "a JSON array"))
    } else if value.is_empty() {
        Ok(Vec::new())
    } else {
        Ok(vec![value.to_owned()])
    }
}

impl ConfigArgs {
    /// The API's configuration from these flags.
    /// `--network container:NAME` made `ns:PATH`, the path of that container's network
    /// namespace on the daemon's host: its persistent one (bridge, CNI), else its process's.
    pub(crate) async fn resolve_network(
        mut self: Box<Self>,
        client: &mut Client,
        ns: &str,
    ) -> Result<Box<Self>, CtlError> {
        let Some(other) = self
            .network
            .as_deref()
            .and_then(|n| n.strip_prefix("container:"))
            .map(str::to_owned)
        else {
            return Ok(self);
        };
        if other.is_empty() {
            return Err(bad_flag("--network", "container:", "container:NAME"));
        }
        let other = other.as_str();
        let container = client.inspect_container(ns, other).await?;
        let status = container.status.unwrap_or_default();
        let path = match status.network {
            Some(attachment) if !attachment.netns_path.is_empty() => attachment.netns_path,
            _ if status.pid > 0 => format!("/proc/{}/ns/net", status.pid),
            _ => {
                return Err(CtlError::NoNetns {
                    container: other.to_owned(),
                })
            }
        };
        self.network = Some(format!("ns:{path}"));
        Ok(self)
    }

    pub(crate) fn config(self: Box<Self>) -> Result<ContainerConfig, CtlError> {
        let mut mounts = self
            .volumes
            .iter()
            .map(|v| volume(v))
            .collect::<Result<Vec<_>, _>>()?;
        for m in &self.mounts {
            mounts.push(mount(m)?);
        }
        let network = match (&self.cell, &self.network) {
            (Some(_), Some(_)) => return Err(CtlError::NetworkInCell),
            (Some(_), None) if !self.publish.is_empty() => return Err(CtlError::NetworkInCell),
            (Some(_), None) => None,
            (None, network) => Some(crate::network::network_mode(
                network.as_deref().unwrap_or("bridge"),
                &self.publish,
            )?),
        };
        let resources = Resources {
            cpu_millicores: self.cpus.as_deref().map(millicores).transpose()?,
            memory_bytes: self.memory.as_deref().map(bytes).transpose()?,
            pids: self.pids_limit,
        };
        Ok(ContainerConfig {
            name: self.name.unwrap_or_default(),
            image: self.image,
            tags: pairs("--label", &self.labels)?,
            env: self.env,
            entrypoint: self
                .entrypoint
                .as_deref()
                .map(entrypoint)
                .transpose()?
                .map(|args| Args_ { args }),
            cmd: Some(self.command)
                .filter(|c| !c.is_empty())
                .map(|args| Args_ { args }),
            working_dir: self.workdir.unwrap_or_default(),
            user: self.user.unwrap_or_default(),
            mounts,
            network,
            resources: Some(resources),
            restart_policy: Some(restart(&self.restart)?),
            init: self.init,
            tty: self.tty,
            stdin: self.interactive,
            // Only the foreground `run -i` sets it, as it attaches first.
            stdin_once: false,
            auto_remove: false,
            cell: self.cell.unwrap_or_default(),
        })
    }
}

fn state_name(state: i32) -> &'static str {
    match ContainerState::try_from(state) {
        Ok(ContainerState::Created) => "created",
        Ok(ContainerState::Running) => "running",
        Ok(ContainerState::Paused) => "paused",
        Ok(ContainerState::Stopped) => "stopped",
        Ok(ContainerState::Unknown) | Err(_) => "unknown",
    }
}

pub(crate) fn container_json(c: &Container) -> Value {
    let config = c.config.clone().unwrap_or_default();
    let status = c.status.clone().unwrap_or_default();
    let args = |a: &Option<Args_>| a.as_ref().map(|a| a.args.clone());
    json!({
        "id": c.id,
        "namespace": c.namespace,
        "name": config.name,
        "image": config.image,
        "image_digest": c.image_digest,
        "config": {
            "tags": config.tags,
            "env": config.env,
            "entrypoint": args(&config.entrypoint),
            "cmd": args(&config.cmd),
            "working_dir": config.working_dir,
            "user": config.user,
            "mounts": config.mounts.iter().map(|m| json!({
                "source": m.source, "target": m.target, "type": m.r#type, "options": m.options,
            })).collect::<Vec<_>>(),
            "network": crate::network::mode_json(config.network.as_ref()),
            "resources": config.resources.map(|r| json!({
                "cpu_millicores": r.cpu_millicores, "memory_bytes": r.memory_bytes, "pids": r.pids,
            })),
            "init": config.init,
            "tty": config.tty,
            "stdin": config.stdin,
            "cell": config.cell,
        },
        "status": {
            "state": state_name(status.state),
            "pid": status.pid,
            "exit_code": status.exit_code,
            "created_at": time(status.created_at),
            "started_at": time(status.started_at),
            "finished_at": time(status.finished_at),
            "restart_count": status.restart_count,
            "network": crate::network::attachment_json(status.network.as_ref()),
        },
    })
}

fn container_rows(containers: &[Container]) -> Vec<Vec<String>> {
    containers
        .iter()
        .map(|c| {
            let config = c.config.clone().unwrap_or_default();
            let status = c.status.clone().unwrap_or_default();
            vec![
                c.id.chars().take(12).collect(),
                config.name,
                config.image,
                state_name(status.state).to_owned(),
                status.exit_code.map(|e| e.to_string()).unwrap_or_default(),
                time(status.created_at),
            ]
        })
        .collect()
}

fn stats_json(stats: &StatsResponse) -> Value {
    let cpu = stats.cpu.unwrap_or_default();
    let nanos = |d: Option<prost_types::Duration>| {
        d.and_then(|d| Duration::try_from(d).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    };
    let memory = stats.memory.unwrap_or_default();
    let pids = stats.pids.unwrap_or_default();
    json!({
        "time": time(stats.time),
        "cpu": {
            "usage_ns": nanos(cpu.usage),
            "user_ns": nanos(cpu.user),
            "system_ns": nanos(cpu.system),
            "throttled_ns": nanos(cpu.throttled),
        },
        "memory": {"usage_bytes": memory.usage_bytes, "limit_bytes": memory.limit_bytes},
        "pids": {"current": pids.current, "limit": pids.limit},
    })
}

/// `since` as RFC 3339, or as a duration ago (`10m`).
fn since(value: &str) -> Result<prost_types::Timestamp, CtlError> {
    let time = humantime::parse_rfc3339_weak(value)
        .or_else(|_| humantime::parse_duration(value).map(|ago| std::time::SystemTime::now() - ago))
        .map_err(|_| {
            bad_flag(
                "--since",
                value,
                "an RFC 3339 time or a duration such as 10m",
            )
        })?;
    Ok(time.into())
}

/// Prints log records to standard output or error, as they came from the container.
async fn print_logs(client: &mut Client, request: LogsRequest) -> Result<(), CtlError> {
    let mut records = client.container_logs(request).await?;
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    while let Some(record) = records.next().await? {
        let out: &mut dyn Write = if record.stream == i32::from(OutputStream::Stderr) {
            &mut stderr
        } else {
            &mut stdout
        };
        let written = out
            .write_all(&record.line)
            .and_then(|()| {
                if record.partial {
                    Ok(())
                } else {
                    out.write_all(b"\n")
                }
            })
            .and_then(|()| out.flush());
        if written.is_err() {
            // A closed pipe (`| head`): nothing more to print.
            return Ok(());
        }
    }
    Ok(())
}

/// Runs a container in the foreground: created, started, its log followed; returns its exit
/// code once its output has been printed. The daemon reads a followed log from its start and
/// ends the stream once the container has stopped and the log is drained, so output written
/// before the stream opened is printed too. Meanwhile the signals a user sends to a
/// foreground process are passed on to the container, as docker's `--sig-proxy` does, so
/// ctrl-c stops the container rather than leaving it behind.
async fn run_foreground(
    client: &mut Client,
    ns: &str,
    config: ContainerConfig,
) -> Result<(String, Result<i32, CtlError>), CtlError> {
    let id = client.create_container(ns, config).await?;
    let outcome = async {
        let mut signals = Signals::watch(&signals::PROXIED)?;
        client.start_container(ns, &id).await?;
        let request = LogsRequest {
            namespace: ns.to_owned(),
            container: id.clone(),
            follow: true,
            since: None,
            tail: None,
        };
        let mut proxy = client.clone();
        tokio::select! {
            printed = print_logs(client, request) => printed?,
            never = forward_signals(&mut signals, &mut proxy, ns, &id) => match never {},
        }
        Ok(client.wait_container(ns, &id).await?.exit_code)
    }
    .await;
    Ok((id, outcome))
}

/// Sends each signal of `signals` that comes to container `id`, until dropped.
async fn forward_signals(
    signals: &mut Signals,
    client: &mut Client,
    ns: &str,
    id: &str,
) -> std::convert::Infallible {
    loop {
        let number = signals.next().await;
        signals::pass_on(client, ns, id, number).await;
    }
}

/// Runs one container command; returns the exit status testudoctl ends with.
pub(crate) async fn run(
    client: &mut Client,
    ns: &str,
    json: bool,
    command: ContainerCommand,
) -> Result<u8, CtlError> {
    use ContainerCommand as C;
    let command = match command {
        C::Run { detach, rm, config } => C::Run {
            detach,
            rm,
            config: config.resolve_network(client, ns).await?,
        },
        C::Create { config } => C::Create {
            config: config.resolve_network(client, ns).await?,
        },
        other => other,
    };
    match command {
        C::Run {
            detach: true,
            rm,
            config,
        } => {
            let config = ContainerConfig {
                auto_remove: rm,
                ..config.config()?
            };
            println!("{}", client.run_container(ns, config).await?)
        }
        C::Run { rm, config, .. } if config.interactive || config.tty => {
            return crate::exec::run_attached(client, ns, config.config()?, rm).await;
        }
        C::Run { rm, config, .. } => {
            let (id, outcome) = run_foreground(client, ns, config.config()?).await?;
            if rm {
                client.delete_container(ns, &id, true).await?;
            }
            let code = outcome?;
            return Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX));
        }
        C::Create { config } => {
            println!("{}", client.create_container(ns, config.config()?).await?)
        }
        C::Start { containers } => {
            for c in containers {
                client.start_container(ns, &c).await?;
                println!("{c}");
            }
        }
        C::Stop {
            time,
            signal,
            containers,
        } => {
            for c in containers {
                client
                    .stop_container(ns, &c, &signal, time.map(Duration::from_secs))
                    .await?;
                println!("{c}");
            }
        }
        C::Kill { signal, containers } => {
            for c in containers {
                client.kill_container(ns, &c, &signal).await?;
                println!("{c}");
            }
        }
        C::Rm { force, containers } => {
            for c in containers {
                client.delete_container(ns, &c, force).await?;
                println!("{c}");
            }
        }
        C::Ps { all } => {
            let states: &[ContainerState] = if all { &[] } else { &[ContainerState::Running] };
            let containers = client.list_containers(ns, states).await?;
            if json {
                print_json(&containers.iter().map(container_json).collect());
            } else {
                let headers = ["ID", "NAME", "IMAGE", "STATE", "EXIT", "CREATED"];
                print!("{}", table(&headers, &container_rows(&containers)));
            }
        }
        C::Inspect { container } => {
            print_json(&container_json(
                &client.inspect_container(ns, &container).await?,
            ));
        }
        C::Logs {
            follow,
            since: since_flag,
            tail,
            container,
        } => {
            let request = LogsRequest {
                namespace: ns.to_owned(),
                container,
                follow,
                since: since_flag.as_deref().map(since).transpose()?,
                tail,
            };
            print_logs(client, request).await?;
        }
        C::Wait { containers } => {
            for c in containers {
                println!("{}", client.wait_container(ns, &c).await?.exit_code);
            }
        }
        C::Stats { container } => {
            let stats = client.container_stats(ns, &container).await?;
            let value = stats_json(&stats);
            if json {
                print_json(&value);
            } else {
                let memory = stats.memory.unwrap_or_default();
                let pids = stats.pids.unwrap_or_default();
                let cpu = value["cpu"]["usage_ns"].as_u64().unwrap_or(0);
                let row = vec![
                    format!("{:.3}s", Duration::from_nanos(cpu).as_secs_f64()),
                    match memory.limit_bytes {
                        Some(limit) => format!("{} / {}", size(memory.usage_bytes), size(limit)),
                        None => size(memory.usage_bytes),
                    },
                    match pids.limit {
                        Some(limit) => format!("{} / {limit}", pids.current),
                        None => pids.current.to_string(),
                    },
                ];
                print!("{}", table(&["CPU TIME", "MEMORY", "PIDS"], &[row]));
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cpus_become_millicores() {
        assert_eq!(millicores("0.5").unwrap(), 500);
        assert_eq!(millicores("2").unwrap(), 2000);
        assert_eq!(millicores(".25").unwrap(), 250);
        assert_eq!(millicores("1.001").unwrap(), 1001);
        for bad in ["0", "0.0001", "-1", "x", "", "."] {
            assert!(millicores(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_sizes_take_binary_suffixes() {
        assert_eq!(bytes("64m").unwrap(), 64 << 20);
        assert_eq!(bytes("1G").unwrap(), 1 << 30);
        assert_eq!(bytes("512k").unwrap(), 512 << 10);
        assert_eq!(bytes("1000").unwrap(), 1000);
        assert!(bytes("lots").is_err());
    }

    #[test]
    fn volumes_mounts_and_restart_policies_parse() {
        let v = volume("/srv:/data:ro").unwrap();
        assert_eq!((v.source.as_str(), v.target.as_str()), ("/srv", "/data"));
        assert_eq!(v.options, ["ro"]);
        assert!(volume("/srv").is_err());
        let m = mount("type=tmpfs,source=tmpfs,target=/scratch,size=1m").unwrap();
        assert_eq!(m.r#type, "tmpfs");
        assert_eq!(m.options, ["size=1m"]);
        assert!(mount("type=bind,source=/x").is_err());
        assert_eq!(
            restart("on-failure:3").unwrap().policy,
            Some(restart_policy::Policy::OnFailure(
                restart_policy::OnFailure { max_retries: 3 }
            ))
        );
        assert!(restart("sometimes").is_err());
        assert_eq!(entrypoint("[\"sh\",\"-c\"]").unwrap(), ["sh", "-c"]);
        assert!(entrypoint("").unwrap().is_empty());
    }
}
