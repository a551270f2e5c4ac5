//! Networks: `testudoctl network create|ls|inspect|rm`, and the `--network` and `-p/--publish`
//! flags of `run` and `create` (podman's spelling) turned into the API's `Network`.

use clap::Subcommand;
use serde_json::{json, Value};
use testudo_client::containers::{
    network, BridgeNetwork, CniNetwork, HostNetwork, JoinNetwork, Network, NetworkAttachment,
    NoNetwork, PortMapping, Protocol,
};
use testudo_client::networks::Network as BridgeNetworkInfo;
use testudo_client::Client;

use crate::containers::bad_flag;
use crate::output::{table, time};
use crate::{print_json, CtlError};

/// The network commands.
#[derive(Debug, Subcommand)]
pub(crate) enum NetworkCommand {
    /// Create a bridge network
    Create {
        /// Its name
        name: String,
        /// Its subnet, CIDR; once for IPv4, again for IPv6
        #[arg(long = "subnet", value_name = "CIDR", required = true)]
        subnets: Vec<String>,
        /// Its bridge interface (default: one is chosen)
        #[arg(long, value_name = "IFNAME")]
        bridge: Option<String>,
    },
    /// List networks
    Ls,
    /// Show a network
    Inspect {
        /// Its name
        name: String,
    },
    /// Delete a network
    Rm {
        /// Its name
        name: String,
    },
}

fn network_json(n: &BridgeNetworkInfo) -> Value {
    json!({
        "name": n.name,
        "subnets": n.subnets,
        "bridge": n.bridge,
        "created_at": time(n.created_at),
        "default": n.default,
        "containers": n.containers,
    })
}

fn network_rows(networks: &[BridgeNetworkInfo]) -> Vec<Vec<String>> {
    networks
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.bridge.clone(),
                n.subnets.join(","),
                n.containers.len().to_string(),
                if n.default { "yes" } else { "" }.to_owned(),
            ]
        })
        .collect()
}

const HEADERS: [&str; 5] = ["NAME", "BRIDGE", "SUBNETS", "CONTAINERS", "DEFAULT"];

/// Runs a network command.
pub(crate) async fn run(
    client: &mut Client,
    json: bool,
    command: NetworkCommand,
) -> Result<(), CtlError> {
    match command {
        NetworkCommand::Create {
            name,
            subnets,
            bridge,
        } => {
            let created = client
                .create_network(&name, &subnets, bridge.as_deref())
                .await?;
            if json {
                print_json(&network_json(&created));
            } else {
                println!("{}", created.name);
            }
        }
        NetworkCommand::Ls => {
            let networks = client.list_networks().await?;
            if json {
                print_json(&networks.iter().map(network_json).collect());
            } else {
                print!("{}", table(&HEADERS, &network_rows(&networks)));
            }
        }
        NetworkCommand::Inspect { name } => {
            // One document either way, as with image inspect.
            print_json(&network_json(&client.inspect_network(&name).await?));
        }
        NetworkCommand::Rm { name } => client.delete_network(&name).await?,
    }
    Ok(())
}

const NETWORK_FORMS: &str =
    "none, host, bridge, a network name, cni:CONFLIST, ns:PATH or container:NAME";
const PUBLISH_FORM: &str = "[hostIP:]hostPort:containerPort[/tcp|udp]";

/// A published port: `[hostIP:]hostPort:containerPort[/tcp|udp]`; an IPv6 host address goes
/// in brackets (`[::1]:8080:80`).
pub(crate) fn port_mapping(value: &str) -> Result<PortMapping, CtlError> {
    let bad = || bad_flag("--publish", value, PUBLISH_FORM);
    let (ports, protocol) = match value.rsplit_once('/') {
        Some((ports, "tcp")) => (ports, Protocol::Tcp),
        Some((ports, "udp")) => (ports, Protocol::Udp),
        Some(_) => return Err(bad()),
        None => (value, Protocol::Tcp),
    };
    let (rest, container_port) = ports.rsplit_once(':').ok_or_else(bad)?;
    let (host_ip, host_port) = match rest.rsplit_once(':') {
        Some((ip, port)) => {
            let ip = ip
                .strip_prefix('[')
                .and_then(|ip| ip.strip_suffix(']'))
                .unwrap_or(ip);
            let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
            (ip.to_string(), port)
        }
        None => (String::new(), rest),
    };
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(u32::from)
            .ok_or_else(bad)
    };
    Ok(PortMapping {
        host_ip,
        host_port: port(host_port)?,
        container_port: port(container_port)?,
        protocol: protocol.into(),
    })
}

/// The API's network from `--network` and `-p/--publish`.
pub(crate) fn network_mode(value: &str, publish: &[String]) -> Result<Network, CtlError> {
    let ports = publish
        .iter()
        .map(|p| port_mapping(p))
        .collect::<Result<Vec<_>, _>>()?;
    let no_ports = |mode| {
        if ports.is_empty() {
            Ok(mode)
        } else {
            Err(CtlError::PublishWithout {
                network: value.to_owned(),
            })
        }
    };
    let mode = match value {
        "none" => no_ports(network::Mode::None(NoNetwork {}))?,
        "host" => no_ports(network::Mode::Host(HostNetwork {}))?,
        "bridge" => network::Mode::Bridge(BridgeNetwork {
            network: String::new(),
            ports,
        }),
        other => {
            if let Some(path) = other.strip_prefix("ns:") {
                if path.is_empty() {
                    return Err(bad_flag("--network", value, NETWORK_FORMS));
                }
                no_ports(network::Mode::Join(JoinNetwork {
                    path: path.to_owned(),
                }))?
            } else if let Some(conflist) = other.strip_prefix("cni:") {
                if conflist.is_empty() {
                    return Err(bad_flag("--network", value, NETWORK_FORMS));
                }
                network::Mode::Cni(CniNetwork {
                    network: conflist.to_owned(),
                    ports,
                })
            } else if !other.is_empty() && !other.contains(':') {
                network::Mode::Bridge(BridgeNetwork {
                    network: other.to_owned(),
                    ports,
                })
            } else {
                return Err(bad_flag("--network", value, NETWORK_FORMS));
            }
        }
    };
    Ok(Network { mode: Some(mode) })
}

fn port_text(p: &PortMapping) -> String {
    let protocol = match Protocol::try_from(p.protocol) {
        Ok(Protocol::Udp) => "udp",
        _ => "tcp",
    };
    let host = if p.host_ip.contains(':') {
        format!("[{}]:", p.host_ip)
    } else if p.host_ip.is_empty() {
        String::new()
    } else {
        format!("{}:", p.host_ip)
    };
    format!("{host}{}:{}/{protocol}", p.host_port, p.container_port)
}

/// A container's network mode as `--network` spells it, for `inspect`.
pub(crate) fn mode_json(network: Option<&Network>) -> Value {
    match network.and_then(|n| n.mode.as_ref()) {
        Some(network::Mode::Host(_)) => json!("host"),
        Some(network::Mode::Join(j)) => json!(format!("ns:{}", j.path)),
        Some(network::Mode::Bridge(b)) if b.network.is_empty() => json!("bridge"),
        Some(network::Mode::Bridge(b)) => json!(b.network),
        Some(network::Mode::Cni(c)) => json!(format!("cni:{}", c.network)),
        Some(network::Mode::None(_)) | None => json!("none"),
    }
}

/// A container's attachment, for `inspect`.
pub(crate) fn attachment_json(attachment: Option<&NetworkAttachment>) -> Value {
    match attachment {
        None => Value::Null,
        Some(a) => json!({
            "network": a.network,
            "netns": a.netns_path,
            "addresses": a.addresses,
            "gateways": a.gateways,
            "ports": a.ports.iter().map(port_text).collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn published_ports_parse_in_every_form() {
        let p = port_mapping("8080:80").unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("", 8080, 80)
        );
        assert_eq!(p.protocol, i32::from(Protocol::Tcp));
        let p = port_mapping("127.0.0.1:53:5353/udp").unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("127.0.0.1", 53, 5353)
        );
        assert_eq!(p.protocol, i32::from(Protocol::Udp));
        let p = port_mapping("[::1]:8443:443/tcp").unwrap();
        assert_eq!(p.host_ip, "::1");
        assert_eq!(port_text(&p), "[::1]:8443:443/tcp");
        for bad in [
            "80",
            "0:80",
            "8080:70000",
            "x:1:2",
            "1:2/sctp",
            "[::1]8080:80",
        ] {
            let e = port_mapping(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid --publish"), "{bad}: {e}");
        }
    }

    #[test]
    fn network_names_map_onto_modes() {
        let mode = |v: &str, p: &[&str]| {
            let publish: Vec<String> = p.iter().map(|s| (*s).to_owned()).collect();
            network_mode(v, &publish).map(|n| n.mode.unwrap())
        };
        assert!(
            matches!(mode("bridge", &["80:80"]), Ok(network::Mode::Bridge(b)) if b.network.is_empty() && b.ports.len() == 1)
        );
        assert!(matches!(mode("lab", &[]), Ok(network::Mode::Bridge(b)) if b.network == "lab"));
        assert!(
            matches!(mode("cni:mynet", &["1:2"]), Ok(network::Mode::Cni(c)) if c.network == "mynet")
        );
        assert!(
            matches!(mode("ns:/run/netns/x", &[]), Ok(network::Mode::Join(j)) if j.path == "/run/netns/x")
        );
        assert!(matches!(mode("none", &[]), Ok(network::Mode::None(_))));
        assert!(mode("host", &["80:80"]).is_err());
        assert!(mode("ns:", &[]).is_err());
        assert!(mode("cni:", &[]).is_err());
        assert!(mode("a:b", &[]).is_err());
    }
}
