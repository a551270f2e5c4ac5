//! A test network: a bridge, namespaces and an nftables table named after one test, and the
//! check that none of it is left afterwards.

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use testudo_network::{
    plan_attach, plan_detach, plan_network, AttachRequest, BridgeDriver, BridgeNetwork, IfName,
    IpamStore, Lease, Netns, NetnsDir, NetnsName, Nft, PortMapping, Subnets,
};
pub use testudo_test_support::ForwardingGuard;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique short id: `tt` + pid + a counter, short enough for interface names.
pub fn unique_id() -> String {
    format!(
        "tt{}x{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's network `10.231.<octet>.0/24` on bridge `<id>b`, with IPAM in a temp file and an
/// nftables table `<id>`.
pub struct TestNet {
    _forwarding: ForwardingGuard,
    pub id: String,
    pub network: BridgeNetwork,
    pub driver: BridgeDriver,
    pub ipam: IpamStore,
    pub netns_dir: NetnsDir,
    netns_names: Vec<NetnsName>,
    veths: Vec<IfName>,
    extra_links: Vec<IfName>,
    _state: tempfile::TempDir,
}

impl TestNet {
    pub fn new(octet: u8) -> Self {
        Self::with_ipv6(octet, false)
    }

    /// With `ipv6`, also the subnet `fd00:231:<octet>::/64`.
    pub fn with_ipv6(octet: u8, ipv6: bool) -> Self {
        let id = unique_id();
        let network = BridgeNetwork {
            name: id.clone(),
            bridge: IfName::new(format!("{id}b")).unwrap(),
            subnets: Subnets {
                ipv4: format!("10.231.{octet}.0/24").parse().unwrap(),
                ipv6: ipv6.then(|| format!("fd00:231:{octet}::/64").parse().unwrap()),
            },
        };
        let state = tempfile::tempdir().unwrap();
        let net = Self {
            _forwarding: ForwardingGuard::acquire(),
            driver: BridgeDriver::new(Nft::new("nft", id.clone())),
            ipam: IpamStore::new(state.path().join("ipam.json")),
            netns_dir: NetnsDir::default(),
            id,
            network,
            netns_names: Vec::new(),
            veths: Vec::new(),
            extra_links: Vec::new(),
            _state: state,
        };
        net.ipam
            .update(|s| s.add_network(&net.network.name, net.network.subnets))
            .unwrap();
        net.driver
            .setup_network(&plan_network(&net.network))
            .unwrap();
        net
    }

    /// Creates namespace `<id>-<suffix>`.
    pub fn netns(&mut self, suffix: &str) -> Netns {
        let name = NetnsName::new(format!("{}-{suffix}", self.id)).unwrap();
        self.netns_names.push(name.clone());
        self.netns_dir.create(&name).unwrap()
    }

    /// Allocates an address for `netns` and attaches it with `ports`.
    pub fn attach(&mut self, netns: &Netns, ports: &[&str]) -> Lease {
        let owner = netns
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let lease = self
            .ipam
            .update(|s| s.allocate(&self.network.name, &owner))
            .unwrap();
        let request = AttachRequest {
            container_id: owner,
            netns: netns.path().to_path_buf(),
            ifname: IfName::new("eth0").unwrap(),
            ports: ports
                .iter()
                .map(|p| p.parse::<PortMapping>().unwrap())
                .collect(),
        };
        let plan = plan_attach(&self.network, &request, &lease).unwrap();
        self.veths.push(plan.host_veth.clone());
        self.driver.attach(&plan).unwrap();
        lease
    }

    /// Remembers a link the test made itself, to check it is gone at the end.
    pub fn track_link(&mut self, name: &IfName) {
        self.extra_links.push(name.clone());
    }

    /// Detaches and releases every container, deletes the namespaces and the network, and
    /// checks that nothing is left.
    pub fn teardown(mut self) {
        self.clean();
        assert_no_leftovers(
            &self.id,
            self.veths.iter().chain(&self.extra_links),
            &self.netns_names,
        );
        let state = self.ipam.load().unwrap();
        assert!(state.networks.is_empty(), "IPAM state left: {state:?}");
    }

    fn clean(&mut self) {
        for name in &self.netns_names {
            let owner = name.as_str();
            self.driver
                .detach(&plan_detach(&self.network, owner))
                .unwrap();
            self.ipam
                .update(|s| Ok(s.release(&self.network.name, owner)))
                .unwrap();
            self.netns_dir.delete(name).unwrap();
        }
        let mut netlink = testudo_network::Netlink::open().unwrap();
        for link in &self.extra_links {
            netlink.delete_link(link).unwrap();
        }
        self.driver
            .teardown_network(&plan_network(&self.network))
            .unwrap();
        self.ipam
            .update(|s| s.remove_network(&self.network.name))
            .unwrap();
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Best effort while a failed test unwinds: a second panic would abort.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.clean()));
        }
    }
}

pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The names of the host's links.
pub fn host_links() -> BTreeSet<String> {
    let links: serde_json::Value = serde_json::from_str(&run("ip", &["-j", "link"])).unwrap();
    links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts that no link named after `id` or in `links`, no nftables table `id` and no
/// namespace file of `netns` exists.
pub fn assert_no_leftovers<'a>(
    id: &str,
    links: impl IntoIterator<Item = &'a IfName>,
    netns: &[NetnsName],
) {
    let host = host_links();
    let left: Vec<_> = host.iter().filter(|l| l.starts_with(id)).collect();
    assert!(left.is_empty(), "links left: {left:?}");
    for link in links {
        assert!(!host.contains(link.as_str()), "link {link} left");
    }
    let ruleset = run("nft", &["-j", "list", "ruleset"]);
    assert!(
        !ruleset.contains(&format!("\"name\": \"{id}\"")),
        "nftables table {id} left: {ruleset}"
    );
    for name in netns {
        let path = Path::new(testudo_network::DEFAULT_NETNS_DIR).join(name.as_str());
        assert!(!path.exists(), "{} left", path.display());
    }
}

/// Serves one connection on `listener`: reads a line, answers `<line> from <peer address>`.
pub fn echo_once(listener: TcpListener) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap();
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        write!(stream, "{line} from {}", peer.ip()).unwrap();
    })
}

/// Sends `hello` on `stream` and returns the answer.
pub fn ask(mut stream: TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"hello").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Connects to `addr` with a deadline.
pub fn connect(addr: std::net::SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}
