//! What to create for a bridge network and for a container attached to it, as data: links,
//! addresses, routes, sysctls and NAT rules. Pure; [`crate::BridgeDriver`] applies it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::ipam::{Lease, Subnets};
use crate::nft::{DnatHook, NatRule};
use crate::port::PortMapping;
use crate::IfName;

/// A bridge network: its name (IPAM's and the NAT rules'), its bridge and its subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNetwork {
    /// The network's name.
    pub name: String,
    /// The bridge, `testudo0` for the default network.
    pub bridge: IfName,
    /// Its subnets; the bridge holds each gateway address.
    pub subnets: Subnets,
}

/// A `/proc/sys` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// The key under `/proc/sys`, with `/` separators (`net/ipv4/ip_forward`).
    pub key: String,
    /// The value written.
    pub value: &'static str,
}

/// What a bridge network needs on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    /// The bridge to create (or keep) and bring up.
    pub bridge: IfName,
    /// The gateway addresses, with the subnets' prefix lengths.
    pub addresses: Vec<IpNet>,
    /// Forwarding and loopback routing settings.
    pub sysctls: Vec<Sysctl>,
    /// The tag of the network's NAT rules.
    pub nat_tag: String,
    /// The network's NAT rules.
    pub nat: Vec<NatRule>,
}

/// The tag of a network's NAT rules: named by its bridge, which is unique on the host, where
/// a network's name is unique only among one daemon's networks (two daemons sharing the table
/// may both have a network `testudo`).
pub fn network_tag(bridge: &IfName) -> String {
    format!("network:{bridge}")
}

/// The tag of a container's NAT rules.
pub fn container_tag(container_id: &str) -> String {
    format!("container:{container_id}")
}

/// Plans network `network`: the bridge with its gateway addresses, IP forwarding (and
/// `route_localnet` on the bridge, so that a port published on `127.0.0.1` can be forwarded
/// into it), and masquerading of traffic leaving the subnets, from loopback, and hairpinned.
pub fn plan_network(network: &BridgeNetwork) -> NetworkPlan {
    let subnets = network.subnets;
    let bridge = network.bridge.clone();
    let mut addresses = vec![IpNet::V4(
        Ipv4Net::new(subnets.gateway4(), subnets.ipv4.prefix_len()).unwrap_or(subnets.ipv4),
    )];
    let mut sysctls = vec![
        Sysctl {
            key: "net/ipv4/ip_forward".to_owned(),
            value: "1",
        },
        Sysctl {
            key: format!("net/ipv4/conf/{bridge}/route_localnet"),
            value: "1",
        },
    ];
    let mut sources = vec![IpNet::V4(subnets.ipv4)];
    if let (Some(v6), Some(gateway6)) = (subnets.ipv6, subnets.gateway6()) {
        addresses.push(IpNet::V6(
            Ipv6Net::new(gateway6, v6.prefix_len()).unwrap_or(v6),
        ));
        sysctls.push(Sysctl {
            key: "net/ipv6/conf/all/forwarding".to_owned(),
            value: "1",
        });
        sources.push(IpNet::V6(v6));
    }
    let mut nat: Vec<NatRule> = sources
        .iter()
        .map(|source| NatRule::MasqueradeOutbound {
            source: *source,
            bridge: bridge.clone(),
        })
        .collect();
    nat.push(NatRule::MasqueradeLoopback {
        bridge: bridge.clone(),
    });
    nat.extend(sources.iter().map(|source| NatRule::MasqueradeHairpin {
        source: *source,
        bridge: bridge.clone(),
    }));
    NetworkPlan {
        bridge,
        addresses,
        sysctls,
        nat_tag: network_tag(&network.bridge),
        nat,
    }
}

/// The MTU of both ends of a container's veth pair, the largest a veth takes (loopback has
/// 65536). Traffic between the host and a container, between containers on one bridge and
/// to a published port never leaves the machine, and at this MTU a TCP segment carries up to
/// 64 KiB as on loopback, so a published port's stream runs at about the speed of the host's
/// own loopback (0.67x of it at 1500; see the README's network figures). The bridge needs no
/// MTU of its own: the kernel gives it the smallest of its ports', so a bridge that still has
/// ports at 1500 stays at 1500 until they are gone.
pub const CONTAINER_LINK_MTU: u32 = 65535;

/// The MTU of a container's default routes: traffic to anywhere but its own subnet leaves
/// the host, through NAT, over links of the common Ethernet MTU (Docker's and Podman's
/// default), so it is sent in packets of that size as before, and datagrams are fragmented
/// by the container, not dropped at the host's uplink. TCP peers elsewhere also learn the
/// matching MSS from the container's SYN. Only routes on the container's own subnet (the
/// gateway, which published ports are masqueraded to, and the other containers) use
/// [`CONTAINER_LINK_MTU`].
pub const DEFAULT_ROUTE_MTU: u32 = 1500;

/// A container to attach to a bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachRequest {
    /// The container (or cell) id: it names the host end of the veth and tags the NAT rules.
    pub container_id: String,
    /// The container's network namespace.
    pub netns: PathBuf,
    /// The interface name inside, usually `eth0`.
    pub ifname: IfName,
    /// Published ports.
    pub ports: Vec<PortMapping>,
}

/// What attaching a container does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachPlan {
    /// The network namespace.
    pub netns: PathBuf,
    /// The bridge the host end joins.
    pub bridge: IfName,
    /// The host end of the veth pair.
    pub host_veth: IfName,
    /// The other end's name, inside the namespace (it is created there).
    pub ifname: IfName,
    /// Its addresses, with the subnets' prefix lengths.
    pub addresses: Vec<IpNet>,
    /// The default routes' gateways.
    pub gateways: Vec<IpAddr>,
    /// The MTU of both ends of the veth pair ([`CONTAINER_LINK_MTU`]).
    pub mtu: u32,
    /// The MTU of the default routes ([`DEFAULT_ROUTE_MTU`]).
    pub default_route_mtu: u32,
    /// The tag of the container's NAT rules.
    pub nat_tag: String,
    /// Its port forwarding rules.
    pub nat: Vec<NatRule>,
}

/// What detaching a container does: delete the host end of its veth (which takes the other
/// end with it) and its NAT rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachPlan {
    /// The host end of the veth pair.
    pub host_veth: IfName,
    /// The tag of the container's NAT rules.
    pub nat_tag: String,
}

/// A container that cannot be attached as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachPlanError {
    /// The lease is for another network or owner.
    #[error("lease of {owner} on network {network} is not for container {container_id} on network {wanted}")]
    WrongLease {
        /// The lease's owner.
        owner: String,
        /// The lease's network.
        network: String,
        /// The container.
        container_id: String,
        /// The network attached to.
        wanted: String,
    },
    /// An IPv6 host address is published but the container has no IPv6 address.
    #[error("port {mapping} is on an IPv6 host address, and network {network} has no IPv6 subnet")]
    NoIpv6 {
        /// The mapping.
        mapping: PortMapping,
        /// The network.
        network: String,
    },
}

/// FNV-1a, 64 bits: a stable hash for names derived from ids.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The host end's name of a container's veth pair on a network: `tv` and 12 hex digits of a
/// hash of both ids, so that it is known from the ids alone (detaching after a crash needs no
/// state) and fits in 15 bytes.
fn host_veth_name(network: &str, container_id: &str) -> IfName {
    let hash = fnv1a(format!("{network}\0{container_id}").as_bytes()) & 0xffff_ffff_ffff;
    IfName::new(format!("tv{hash:012x}"))
        // 14 bytes of [a-z0-9]: always valid.
        .unwrap_or_else(|_| unreachable!("veth names are valid interface names"))
}

/// Plans attaching container `request` to `network` with addresses `lease`.
pub fn plan_attach(
    network: &BridgeNetwork,
    request: &AttachRequest,
    lease: &Lease,
) -> Result<AttachPlan, AttachPlanError> {
    if lease.network != network.name || lease.owner != request.container_id {
        return Err(AttachPlanError::WrongLease {
            owner: lease.owner.clone(),
            network: lease.network.clone(),
            container_id: request.container_id.clone(),
            wanted: network.name.clone(),
        });
    }
    let subnets = network.subnets;
    let mut addresses = vec![IpNet::V4(
        Ipv4Net::new(lease.ipv4, subnets.ipv4.prefix_len()).unwrap_or(subnets.ipv4),
    )];
    let mut gateways = vec![IpAddr::V4(subnets.gateway4())];
    let ipv6 = match (lease.ipv6, subnets.ipv6, subnets.gateway6()) {
        (Some(addr), Some(v6), Some(gateway6)) => {
            addresses.push(IpNet::V6(Ipv6Net::new(addr, v6.prefix_len()).unwrap_or(v6)));
            gateways.push(IpAddr::V6(gateway6));
            Some(addr)
        }
        _ => None,
    };
    let mut nat = Vec::new();
    for mapping in &request.ports {
        let mut targets = Vec::new();
        match (mapping.host_ip, ipv6) {
            (Some(IpAddr::V4(_)), _) => targets.push(IpAddr::V4(lease.ipv4)),
            (Some(IpAddr::V6(_)), Some(addr)) => targets.push(IpAddr::V6(addr)),
            (Some(IpAddr::V6(_)), None) => {
                return Err(AttachPlanError::NoIpv6 {
                    mapping: *mapping,
                    network: network.name.clone(),
                })
            }
            (None, v6) => {
                targets.push(IpAddr::V4(lease.ipv4));
                targets.extend(v6.map(IpAddr::V6));
            }
        }
        for target in targets {
            for hook in [DnatHook::Prerouting, DnatHook::Output] {
                nat.push(NatRule::Dnat {
                    hook,
                    host_ip: mapping.host_ip,
                    host_port: mapping.host_port,
                    protocol: mapping.protocol,
                    to: SocketAddr::new(target, mapping.container_port),
                });
            }
        }
    }
    let host_veth = host_veth_name(&network.name, &request.container_id);
    Ok(AttachPlan {
        netns: request.netns.clone(),
        bridge: network.bridge.clone(),
        host_veth,
        ifname: request.ifname.clone(),
        addresses,
        gateways,
        mtu: CONTAINER_LINK_MTU,
        default_route_mtu: DEFAULT_ROUTE_MTU,
        nat_tag: container_tag(&request.container_id),
        nat,
    })
}

/// Plans detaching container `container_id` from `network`.
pub fn plan_detach(network: &BridgeNetwork, container_id: &str) -> DetachPlan {
    DetachPlan {
        host_veth: host_veth_name(&network.name, container_id),
        nat_tag: container_tag(container_id),
    }
}

#[cfg(test)]
mod tests;
