//! Networks: node-level objects (like podman's, not a namespace's) that containers attach to,
//! and the attachments themselves.
//!
//! A bridge network has a name, a bridge interface and an IPv4 subnet (and optionally an IPv6
//! one). The default network ([`DEFAULT_NETWORK`], bridge [`DEFAULT_BRIDGE`], subnet
//! [`DEFAULT_SUBNET`]) exists implicitly: the daemon's configuration defines it, so that two
//! daemons on one host can each have their own; it is not stored and cannot be deleted. Other
//! networks are stored in the state database. A network's bridge, addresses and NAT rules are
//! set up on the host when the first container of this daemon process attaches to it (setting
//! up is idempotent), and torn down when it is deleted.
//!
//! Attaching a container (bridge mode), in this order, so that a crash at any step leaves what
//! [`NetworkService::detach`] removes: the lease and the attachment record in one transaction;
//! the network on the host; a persistent named network namespace under `/run/netns` (named from
//! the container id, so it outlives a restart of the container and of the daemon); the veth
//! pair, address, routes and published ports ([`BridgeDriver`]). CNI mode records the
//! attachment, makes the namespace and runs the configuration list's `ADD` with the ports as
//! the `portMappings` capability. Detaching undoes the host side first (missing pieces are no
//! error), then drops the record and the lease in one transaction; twice is harmless.
//!
//! Sharing the host with another daemon: every host object is named or tagged by something
//! unique on the host (the bridge names a network's NAT rules, a container's rules, veth and
//! namespace derive from its random id), so one daemon's setup or teardown never replaces or
//! removes another's rules in the shared nftables table (`inet testudo`); and the table itself
//! is never dropped (see [`NetworkService::delete`]).
//!
//! The name files (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`) are planned by
//! `testudo-network` and written into the container's bundle by [`NetworkService::write_name_files`].
//!
//! Everything here is synchronous (netlink, `nft`, CNI plugins): async callers use
//! `spawn_blocking`.

mod error;

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use testudo_network::cni::{self, Cni, NetworkConfigList};
use testudo_network::{
    check_ports, plan_attach, plan_detach, plan_name_files, plan_network, AttachRequest,
    BridgeDriver, BridgeError, BridgeNetwork, DnsSource, IfName, IpamState, Lease,
    NameFilesRequest, Netlink, Netns, NetnsDir, NetnsName, Pool,
};

pub use error::NetworkError;
/// The network types that requests and records carry.
pub use testudo_network::{PortMapping, Protocol, Subnets};

use crate::state::{AttachmentKind, AttachmentRecord, NetworkRecord, NetworkState, StateDb};

/// The default network's name.
pub const DEFAULT_NETWORK: &str = "testudo";
/// The default network's bridge.
pub const DEFAULT_BRIDGE: &str = "testudo0";
/// The default network's subnet (not podman's 10.88.0.0/16).
pub const DEFAULT_SUBNET: &str = "10.91.0.0/16";
/// Where CNI configuration lists are looked up by default.
pub const DEFAULT_CNI_CONFIG_DIR: &str = cni::DEFAULT_CONF_DIR;
/// Where CNI plugins are looked up by default, in order (Debian's, then the upstream one).
pub const DEFAULT_CNI_PLUGIN_DIRS: [&str; 2] = [cni::DEFAULT_PLUGIN_DIR, "/opt/cni/bin"];
/// The interface name inside a container.
const CONTAINER_IFNAME: &str = "eth0";

/// The loopback interface.
const LOOPBACK: &str = "lo";

/// Where the network service keeps and finds things.
#[derive(Debug, Clone)]
pub struct NetworkServiceConfig {
    /// The default network: name, bridge and subnets.
    pub default_network: NetworkRecord,
    /// Persistent network namespaces go here (`/run/netns`).
    pub netns_dir: PathBuf,
    /// CNI configuration lists are looked up here (`/etc/cni/net.d`).
    pub cni_config_dir: PathBuf,
    /// CNI plugins are looked up here, in order.
    pub cni_plugin_dirs: Vec<PathBuf>,
    /// CNI results are cached here.
    pub cni_cache_dir: PathBuf,
    /// The host's resolver configuration (`/etc/resolv.conf`).
    pub resolv_conf: PathBuf,
}

impl NetworkServiceConfig {
    /// The defaults, with the CNI cache under `state_root`.
    pub fn new(state_root: &Path) -> Self {
        Self {
            default_network: NetworkRecord {
                name: DEFAULT_NETWORK.to_owned(),
                bridge: DEFAULT_BRIDGE.to_owned(),
                subnets: Subnets {
                    ipv4: DEFAULT_SUBNET
                        .parse()
                        .unwrap_or_else(|_| unreachable!("the default subnet parses")),
                    ipv6: None,
                },
                created: String::new(),
            },
            netns_dir: PathBuf::from(testudo_network::DEFAULT_NETNS_DIR),
            cni_config_dir: PathBuf::from(DEFAULT_CNI_CONFIG_DIR),
            cni_plugin_dirs: DEFAULT_CNI_PLUGIN_DIRS.map(PathBuf::from).to_vec(),
            cni_cache_dir: state_root.join("cni").join("results"),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// The network a container asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkChoice<'a> {
    /// A bridge network; `None` is the default one.
    Bridge(Option<&'a str>),
    /// A CNI configuration list by name.
    Cni(&'a str),
    /// A namespace with only the loopback interface, up: what the containers of a cell without
    /// a network share.
    Loopback,
}

/// A network as listed: its record, whether it is the default, and who is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// The network.
    pub record: NetworkRecord,
    /// It is the daemon's default network.
    pub is_default: bool,
    /// The ids of the containers attached to it.
    pub containers: Vec<String>,
}

/// Networks and containers' attachments to them.
#[derive(Debug)]
pub struct NetworkService {
    config: NetworkServiceConfig,
    state: std::sync::Arc<StateDb>,
    driver: BridgeDriver,
    netns: NetnsDir,
    cni: Cni,
    /// The bridges this process has set up (once per process: after a daemon restart the
    /// first attach sets the network up again, which changes nothing that is in place).
    set_up: Mutex<BTreeSet<String>>,
    /// Held shared while a container attaches to a bridge network and exclusively while a
    /// network is deleted, so that a delete never removes a bridge under an attach that
    /// passed its check.
    topology: RwLock<()>,
}

/// A network name: 1 to 64 characters of letters, digits, `_`, `.` and `-`, starting with a
/// letter or digit (it names NAT rules, CNI cache files and a veth hash input).
fn check_name(name: &str) -> Result<(), NetworkError> {
    let bad = |reason| NetworkError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > 64 {
        return Err(bad("it is longer than 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(bad("only letters, digits, '_', '.' and '-' are allowed"));
    }
    if !name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
    {
        return Err(bad("it must start with a letter or digit"));
    }
    Ok(())
}

/// Parses subnets given as text: exactly one IPv4 subnet and at most one IPv6 one.
pub fn parse_subnets(subnets: &[String]) -> Result<Subnets, NetworkError> {
    let mut v4: Vec<Ipv4Net> = Vec::new();
    let mut v6: Vec<Ipv6Net> = Vec::new();
    for text in subnets {
        match text.parse::<IpNet>() {
            Ok(IpNet::V4(net)) => v4.push(net),
            Ok(IpNet::V6(net)) => v6.push(net),
            Err(_) => {
                return Err(NetworkError::SubnetSyntax {
                    subnet: text.clone(),
                })
            }
        }
    }
    match (v4.as_slice(), v6.as_slice()) {
        ([ipv4], [] | [_]) => Ok(Subnets {
            ipv4: *ipv4,
            ipv6: v6.first().copied(),
        }),
        _ => Err(NetworkError::SubnetCount {
            given: format!("{} IPv4 and {} IPv6", v4.len(), v6.len()),
        }),
    }
}

/// The persistent network namespace of container `id`.
fn netns_name(id: &str) -> Result<NetnsName, NetworkError> {
    let short: String = id.chars().take(48).collect();
    Ok(NetnsName::new(format!("testudo-{short}"))?)
}

/// A bridge name for a new network: `tb` and 12 hex digits of a randomly keyed hash of its
/// name and the time, so that two daemons creating networks of one name get two bridges.
fn new_bridge_name(name: &str) -> String {
    let hash = RandomState::new().hash_one((name, SystemTime::now())) & 0xffff_ffff_ffff;
    format!("tb{hash:012x}")
}

fn bridge_network(record: &NetworkRecord) -> Result<BridgeNetwork, NetworkError> {
    Ok(BridgeNetwork {
        name: record.name.clone(),
        bridge: IfName::new(record.bridge.clone()).map_err(NetworkError::BridgeName)?,
        subnets: record.subnets,
    })
}

impl NetworkService {
    /// A service over `state` (whose network tables it uses) with `config`; the default
    /// network's bridge name and subnets are checked here.
    pub fn new(
        config: NetworkServiceConfig,
        state: std::sync::Arc<StateDb>,
    ) -> Result<Self, NetworkError> {
        check_name(&config.default_network.name)?;
        bridge_network(&config.default_network)?;
        IpamState::default()
            .add_network(&config.default_network.name, config.default_network.subnets)?;
        let cni = Cni::new(config.cni_plugin_dirs.clone(), config.cni_cache_dir.clone());
        Ok(Self {
            netns: NetnsDir::new(config.netns_dir.clone()),
            config,
            state,
            driver: BridgeDriver::default(),
            cni,
            set_up: Mutex::new(BTreeSet::new()),
            topology: RwLock::new(()),
        })
    }

    /// The stored networks and the default one, by name.
    fn all_networks(&self, state: &NetworkState) -> Vec<NetworkRecord> {
        let mut all: Vec<NetworkRecord> = state.networks.values().cloned().collect();
        if !state
            .networks
            .contains_key(&self.config.default_network.name)
        {
            all.push(self.config.default_network.clone());
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The IPAM state of every network, leases included.
    fn ipam(&self, state: &NetworkState) -> IpamState {
        let mut ipam = IpamState::default();
        for record in self.all_networks(state) {
            let leases = state
                .leases
                .iter()
                .filter(|((network, _), _)| *network == record.name)
                .map(|((_, owner), lease)| (owner.clone(), lease.clone()))
                .collect();
            ipam.networks.insert(
                record.name.clone(),
                Pool {
                    subnets: record.subnets,
                    leases,
                },
            );
        }
        ipam
    }

    fn info(&self, state: &NetworkState, record: NetworkRecord) -> NetworkInfo {
        let containers = state
            .attachments
            .values()
            .filter(|a| a.kind == AttachmentKind::Bridge && a.network == record.name)
            .map(|a| a.container_id.clone())
            .collect();
        NetworkInfo {
            is_default: record.name == self.config.default_network.name,
            record,
            containers,
        }
    }

    /// Creates bridge network `name` with `subnets` and bridge `bridge` (a new name when
    /// `None`). Nothing is made on the host until a container attaches.
    pub fn create(
        &self,
        name: &str,
        subnets: &[String],
        bridge: Option<&str>,
    ) -> Result<NetworkInfo, NetworkError> {
        check_name(name)?;
        let subnets = parse_subnets(subnets)?;
        let bridge = match bridge {
            Some(bridge) => bridge.to_owned(),
            None => new_bridge_name(name),
        };
        let record = NetworkRecord {
            name: name.to_owned(),
            bridge,
            subnets,
            created: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        bridge_network(&record)?;
        let created = self.state.update_network_state(|state| {
            let all = self.all_networks(state);
            if all.iter().any(|n| n.name == name) {
                return Err(NetworkError::Exists(name.to_owned()));
            }
            if let Some(other) = all.iter().find(|n| n.bridge == record.bridge) {
                return Err(NetworkError::BridgeInUse {
                    bridge: record.bridge.clone(),
                    network: other.name.clone(),
                });
            }
            self.ipam(state).add_network(name, subnets)?;
            state.networks.insert(name.to_owned(), record.clone());
            Ok(self.info(state, record.clone()))
        })?;
        tracing::info!(network = name, bridge = %created.record.bridge, "network created");
        Ok(created)
    }

    /// Every network, the default one included, by name.
    pub fn list(&self) -> Result<Vec<NetworkInfo>, NetworkError> {
        let state = self.state.network_state()?;
        Ok(self
            .all_networks(&state)
            .into_iter()
            .map(|record| self.info(&state, record))
            .collect())
    }

    /// Network `name`.
    pub fn inspect(&self, name: &str) -> Result<NetworkInfo, NetworkError> {
        let state = self.state.network_state()?;
        let record = self
            .all_networks(&state)
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| NetworkError::NotFound(name.to_owned()))?;
        Ok(self.info(&state, record))
    }

    /// Deletes network `name`: its bridge and NAT rules on the host, then its record. Refused
    /// for the default network and while containers are attached.
    pub fn delete(&self, name: &str) -> Result<(), NetworkError> {
        if name == self.config.default_network.name {
            return Err(NetworkError::DeleteDefault(name.to_owned()));
        }
        let _exclusive = self
            .topology
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let info = self.inspect(name)?;
        if !info.containers.is_empty() {
            return Err(NetworkError::InUse {
                network: name.to_owned(),
                containers: info.containers.len(),
            });
        }
        // Not `BridgeDriver::teardown_network`: it drops the table when no other rule is
        // left in it, and a daemon sharing the table may add its rules between that listing
        // and the drop, losing them. The empty table (three chains) stays instead.
        let plan = plan_network(&bridge_network(&info.record)?);
        let removed = Netlink::open()
            .and_then(|mut netlink| netlink.delete_link(&plan.bridge))
            .map_err(BridgeError::from)
            .and_then(|()| {
                self.driver
                    .nft()
                    .remove_rules(&plan.nat_tag, false)
                    .map_err(BridgeError::from)
            });
        removed.map_err(|source| NetworkError::Bridge {
            container_id: String::new(),
            network: name.to_owned(),
            source: Box::new(source),
        })?;
        self.forget_set_up(&info.record.bridge);
        self.state.update_network_state(|state| {
            let attached = state
                .attachments
                .values()
                .filter(|a| a.kind == AttachmentKind::Bridge && a.network == name)
                .count();
            if attached > 0 {
                return Err(NetworkError::InUse {
                    network: name.to_owned(),
                    containers: attached,
                });
            }
            state.networks.remove(name);
            Ok(())
        })?;
        tracing::info!(network = name, "network deleted");
        Ok(())
    }

    fn forget_set_up(&self, bridge: &str) {
        self.set_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(bridge);
    }

    /// Sets the network up on the host unless this process did already.
    fn ensure_set_up(
        &self,
        network: &BridgeNetwork,
        container_id: &str,
    ) -> Result<(), NetworkError> {
        let bridge = network.bridge.to_string();
        if self
            .set_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&bridge)
        {
            return Ok(());
        }
        self.driver
            .setup_network(&plan_network(network))
            .map_err(|source| NetworkError::Bridge {
                container_id: container_id.to_owned(),
                network: network.name.clone(),
                source: Box::new(source),
            })?;
        self.set_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(bridge);
        Ok(())
    }

    /// Checks that `path` is a network namespace that a container can join.
    pub fn check_join(path: &Path) -> Result<(), NetworkError> {
        Netns::open(path)?;
        Ok(())
    }

    /// Attaches container `container_id` to `choice` with `ports` published; returns the
    /// attachment, whose `netns` goes into the container's spec. On failure nothing of it is
    /// left.
    pub fn attach(
        &self,
        container_id: &str,
        choice: &NetworkChoice<'_>,
        ports: &[PortMapping],
    ) -> Result<AttachmentRecord, NetworkError> {
        let attached = match choice {
            NetworkChoice::Bridge(network) => self.attach_bridge(
                container_id,
                network.unwrap_or(&self.config.default_network.name),
                ports,
            ),
            NetworkChoice::Cni(network) => self.attach_cni(container_id, network, ports),
            NetworkChoice::Loopback => self.attach_loopback(container_id),
        };
        match attached {
            Ok(record) => Ok(record),
            Err(e) => {
                if let Err(undo) = self.detach(container_id) {
                    tracing::warn!(container_id, error = %undo, "cannot undo a failed attach");
                }
                Err(e)
            }
        }
    }

    /// Records the attachment (with a lease on `lease_network` when set, which it returns)
    /// after checking the ports against every other attachment's.
    fn record_attachment(
        &self,
        mut record: AttachmentRecord,
        lease_network: Option<&NetworkRecord>,
    ) -> Result<(AttachmentRecord, Option<Lease>), NetworkError> {
        self.state.update_network_state(|state| {
            let published = state
                .attachments
                .values()
                .filter(|a| a.container_id != record.container_id)
                .flat_map(|a| a.ports.iter().map(move |p| (a.container_id.as_str(), p)));
            check_ports(&record.container_id, &record.ports, published)?;
            let mut leased = None;
            if let Some(network) = lease_network {
                let mut ipam = self.ipam(state);
                let lease = ipam.allocate(&network.name, &record.container_id)?;
                let bridge = bridge_network(network)?;
                let request = AttachRequest {
                    container_id: record.container_id.clone(),
                    netns: record.netns.clone(),
                    ifname: IfName::new(record.ifname.clone()).map_err(NetworkError::BridgeName)?,
                    ports: record.ports.clone(),
                };
                let plan = plan_attach(&bridge, &request, &lease)?;
                record.addresses = plan.addresses;
                record.gateways = plan.gateways;
                state.leases.insert(
                    (network.name.clone(), record.container_id.clone()),
                    lease.clone(),
                );
                leased = Some(lease);
            }
            state
                .attachments
                .insert(record.container_id.clone(), record.clone());
            Ok((record, leased))
        })
    }

    /// The namespace of container `id`, made unless it exists (a retried attach).
    fn make_netns(&self, name: &NetnsName) -> Result<(), NetworkError> {
        match self.netns.create(name) {
            Ok(_) => Ok(()),
            Err(testudo_network::NetnsError::AlreadyExists { .. }) => {
                self.netns.open(name)?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn attach_bridge(
        &self,
        container_id: &str,
        network: &str,
        ports: &[PortMapping],
    ) -> Result<AttachmentRecord, NetworkError> {
        let _shared = self.topology.read().unwrap_or_else(PoisonError::into_inner);
        let record = self.inspect(network)?.record;
        let name = netns_name(container_id)?;
        let (attachment, lease) = self.record_attachment(
            AttachmentRecord {
                container_id: container_id.to_owned(),
                kind: AttachmentKind::Bridge,
                network: network.to_owned(),
                netns: self.netns.path_of(&name),
                ifname: CONTAINER_IFNAME.to_owned(),
                addresses: Vec::new(),
                gateways: Vec::new(),
                ports: ports.to_vec(),
            },
            Some(&record),
        )?;
        let bridge = bridge_network(&record)?;
        self.ensure_set_up(&bridge, container_id)?;
        self.make_netns(&name)?;
        let lease = lease.ok_or_else(|| NetworkError::NotFound(network.to_owned()))?;
        let request = AttachRequest {
            container_id: container_id.to_owned(),
            netns: attachment.netns.clone(),
            ifname: IfName::new(attachment.ifname.clone()).map_err(NetworkError::BridgeName)?,
            ports: ports.to_vec(),
        };
        let plan = plan_attach(&bridge, &request, &lease)?;
        self.driver
            .attach(&plan)
            .map_err(|source| NetworkError::Bridge {
                container_id: container_id.to_owned(),
                network: network.to_owned(),
                source: Box::new(source),
            })?;
        tracing::info!(container_id, network, address = %lease.ipv4, "container attached");
        Ok(attachment)
    }

    fn attach_loopback(&self, owner: &str) -> Result<AttachmentRecord, NetworkError> {
        let name = netns_name(owner)?;
        let (attachment, _) = self.record_attachment(
            AttachmentRecord {
                container_id: owner.to_owned(),
                kind: AttachmentKind::Loopback,
                network: String::new(),
                netns: self.netns.path_of(&name),
                ifname: LOOPBACK.to_owned(),
                addresses: Vec::new(),
                gateways: Vec::new(),
                ports: Vec::new(),
            },
            None,
        )?;
        self.make_netns(&name)?;
        let lo = IfName::new(LOOPBACK.to_owned()).map_err(NetworkError::BridgeName)?;
        self.netns
            .open(&name)?
            .netlink()?
            .set_up(&lo)
            .map_err(|source| NetworkError::Loopback {
                owner: owner.to_owned(),
                source,
            })?;
        Ok(attachment)
    }

    fn cni_attachment(
        container_id: &str,
        netns: &Path,
        ifname: &str,
        ports: &[PortMapping],
    ) -> Result<cni::Attachment, NetworkError> {
        let ifname = IfName::new(ifname.to_owned()).map_err(NetworkError::BridgeName)?;
        Ok(cni::Attachment::new(container_id, netns, ifname)?.with_port_mappings(ports))
    }

    fn find_list(&self, network: &str) -> Result<NetworkConfigList, NetworkError> {
        Ok(cni::find_config_list(&self.config.cni_config_dir, network)?)
    }

    fn attach_cni(
        &self,
        container_id: &str,
        network: &str,
        ports: &[PortMapping],
    ) -> Result<AttachmentRecord, NetworkError> {
        let list = self.find_list(network)?;
        let name = netns_name(container_id)?;
        let (attachment, _) = self.record_attachment(
            AttachmentRecord {
                container_id: container_id.to_owned(),
                kind: AttachmentKind::Cni,
                network: network.to_owned(),
                netns: self.netns.path_of(&name),
                ifname: CONTAINER_IFNAME.to_owned(),
                addresses: Vec::new(),
                gateways: Vec::new(),
                ports: ports.to_vec(),
            },
            None,
        )?;
        self.make_netns(&name)?;
        let cni_attachment =
            Self::cni_attachment(container_id, &attachment.netns, &attachment.ifname, ports)?;
        let result = self.cni.add(&list, &cni_attachment)?;
        let addresses = result.container_addresses(&attachment.ifname);
        let gateways: Vec<IpAddr> = result.ips.iter().filter_map(|ip| ip.gateway).collect();
        let updated = self.state.update_network_state(|state| {
            let record = state
                .attachments
                .get_mut(container_id)
                .ok_or_else(|| NetworkError::NotFound(network.to_owned()))?;
            record.addresses = addresses;
            record.gateways = gateways;
            Ok::<_, NetworkError>(record.clone())
        })?;
        tracing::info!(container_id, network, "container attached through CNI");
        Ok(updated)
    }

    /// The attachment of container `container_id`, if it has one.
    pub fn attachment(&self, container_id: &str) -> Result<Option<AttachmentRecord>, NetworkError> {
        Ok(self
            .state
            .network_state()?
            .attachments
            .get(container_id)
            .cloned())
    }

    /// Detaches container `container_id`: its veth and NAT rules (or the CNI `DEL`), its
    /// namespace, then its record and lease. What is gone already is no error; a container
    /// with no attachment succeeds at once.
    pub fn detach(&self, container_id: &str) -> Result<(), NetworkError> {
        let Some(attachment) = self.attachment(container_id)? else {
            return Ok(());
        };
        match attachment.kind {
            AttachmentKind::Bridge => {
                let state = self.state.network_state()?;
                let record = self
                    .all_networks(&state)
                    .into_iter()
                    .find(|n| n.name == attachment.network)
                    .ok_or_else(|| NetworkError::NotFound(attachment.network.clone()))?;
                let plan = plan_detach(&bridge_network(&record)?, container_id);
                self.driver
                    .detach(&plan)
                    .map_err(|source| NetworkError::Bridge {
                        container_id: container_id.to_owned(),
                        network: attachment.network.clone(),
                        source: Box::new(source),
                    })?;
            }
            AttachmentKind::Cni => self.cni_del(&attachment)?,
            AttachmentKind::Loopback => {}
        }
        self.netns.delete(&netns_name(container_id)?)?;
        self.state.update_network_state(|state| {
            state.attachments.remove(container_id);
            state
                .leases
                .remove(&(attachment.network.clone(), container_id.to_owned()));
            Ok::<_, NetworkError>(())
        })?;
        tracing::info!(container_id, network = %attachment.network, "container detached");
        Ok(())
    }

    /// The CNI `DEL` of an attachment; the plugins run only while the namespace exists (a
    /// crash before it was made left nothing for them to remove).
    fn cni_del(&self, attachment: &AttachmentRecord) -> Result<(), NetworkError> {
        let list = match self.find_list(&attachment.network) {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(container_id = %attachment.container_id, error = %e,
                    "CNI configuration gone: DEL skipped");
                return Ok(());
            }
        };
        let cni_attachment = Self::cni_attachment(
            &attachment.container_id,
            &attachment.netns,
            &attachment.ifname,
            &attachment.ports,
        )?;
        Ok(self.cni.del(&list, &cni_attachment)?)
    }

    /// Writes `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` for a container named
    /// `hostname` into `dir`; `attachment` gives its addresses, `own_netns` whether the
    /// host's loopback resolvers are out of its reach. A name that is not a valid host name
    /// falls back to `fallback` (the short id). Returns the hostname written and the three
    /// files.
    pub fn write_name_files(
        &self,
        dir: &Path,
        hostname: &str,
        fallback: &str,
        attachment: Option<&AttachmentRecord>,
        own_netns: bool,
    ) -> Result<(String, [PathBuf; 3]), NetworkError> {
        let dns = DnsSource::read_host(&self.config.resolv_conf)?;
        let mut request = NameFilesRequest {
            hostname: hostname.to_owned(),
            aliases: Vec::new(),
            addresses: attachment
                .map(|a| a.addresses.iter().map(IpNet::addr).collect())
                .unwrap_or_default(),
            extra_hosts: Vec::new(),
            own_netns,
            dns,
        };
        let planned = match plan_name_files(&request) {
            Ok(planned) => planned,
            Err(_) => {
                request.hostname = fallback.to_owned();
                plan_name_files(&request)?
            }
        };
        Ok((request.hostname, planned.write_to(dir)?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;
    use crate::error::{ErrorKind, Kind};

    fn service(dir: &Path) -> NetworkService {
        let state = Arc::new(StateDb::open(&dir.join("state.redb")).unwrap());
        NetworkService::new(NetworkServiceConfig::new(dir), state).unwrap()
    }

    fn subnets(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn subnets_are_one_ipv4_and_at_most_one_ipv6() {
        let both = parse_subnets(&subnets(&["10.5.0.0/24", "fd00:5::/64"])).unwrap();
        assert_eq!(both.ipv4.to_string(), "10.5.0.0/24");
        assert_eq!(both.ipv6.unwrap().to_string(), "fd00:5::/64");
        for bad in [
            &[][..],
            &["fd00::/64"],
            &["10.0.0.0/8", "10.1.0.0/16"],
            &["ten"],
        ] {
            let e = parse_subnets(&subnets(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_network_namespace_name_is_valid_for_every_id() {
        let name = netns_name(&"ab".repeat(32)).unwrap();
        assert_eq!(name.as_str().len(), "testudo-".len() + 48);
    }

    #[test]
    fn networks_are_listed_with_the_default_and_refused_when_they_clash() {
        let dir = tempfile::tempdir().unwrap();
        let service = service(dir.path());
        let lab = service
            .create("lab", &subnets(&["10.77.0.0/24"]), Some("labbr0"))
            .unwrap();
        assert_eq!(lab.record.bridge, "labbr0");
        assert!(!lab.is_default && lab.containers.is_empty());
        let listed: Vec<(String, bool)> = service
            .list()
            .unwrap()
            .into_iter()
            .map(|n| (n.record.name, n.is_default))
            .collect();
        assert_eq!(
            listed,
            [
                ("lab".to_owned(), false),
                (DEFAULT_NETWORK.to_owned(), true)
            ]
        );
        let refused = |name: &str, nets: &[&str], bridge: Option<&str>| {
            let e = service.create(name, &subnets(nets), bridge).unwrap_err();
            (e.kind(), e.to_string())
        };
        assert_eq!(
            refused("lab", &["10.78.0.0/24"], None),
            (
                ErrorKind::AlreadyExists,
                "network \"lab\" already exists".to_owned()
            )
        );
        assert_eq!(
            refused("x", &["10.78.0.0/24"], Some("labbr0")).0,
            ErrorKind::AlreadyExists
        );
        let (kind, message) = refused("x", &["10.91.3.0/24"], None);
        assert_eq!(kind, ErrorKind::InvalidArgument);
        assert!(
            message.contains("overlaps 10.91.0.0/16 of network testudo"),
            "{message}"
        );
        assert_eq!(
            refused("x", &["10.78.0.0/24"], Some("a/b")).0,
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            refused("-x", &["10.78.0.0/24"], None).0,
            ErrorKind::InvalidArgument
        );
        let e = service.delete(DEFAULT_NETWORK).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(
            service.delete("nosuch").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        // Stored: a service over the same database sees it.
        drop(service);
        assert_eq!(
            self::service(dir.path()).inspect("lab").unwrap().record,
            lab.record
        );
    }
}
