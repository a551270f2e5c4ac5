//! The network service on the real host (root): a bridge attachment retried and detached twice,
//! and detaching after a crash half-way through an attach (the record written, the namespace
//! made or not), each leaving nothing: no namespace file, no veth on the bridge, no lease.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use testudo_engine::networks::{NetworkChoice, NetworkService, NetworkServiceConfig};
use testudo_engine::state::{AttachmentKind, AttachmentRecord, NetworkRecord, StateDb};
use testudo_network::{Lease, NetnsDir, NetnsName, Subnets};
use testudo_test_support::{require_root, ForwardingGuard};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A default network of the test's own: bridge and /24 unused on the host, removed on drop.
struct TestService {
    service: NetworkService,
    state: Arc<StateDb>,
    bridge: String,
    subnet: String,
    _dir: tempfile::TempDir,
    _forwarding: ForwardingGuard,
}

fn free_subnet(seed: u32) -> String {
    let routes = Command::new("ip").args(["-4", "route"]).output().unwrap();
    let routes = String::from_utf8(routes.stdout).unwrap();
    (0..4096u32)
        .map(|i| (seed.wrapping_add(i)) % 4096)
        .map(|n| format!("10.{}.{}.0/24", 240 + n / 256, n % 256))
        .find(|subnet| !routes.contains(&subnet[..subnet.len() - 4]))
        .unwrap()
}

impl TestService {
    fn new() -> TestService {
        let forwarding = ForwardingGuard::acquire();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() % 100_000;
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(StateDb::open(&dir.path().join("state.redb")).unwrap());
        let bridge = format!("tte{pid}x{n}");
        let subnet = free_subnet(pid.wrapping_mul(7).wrapping_add(n * 131));
        let mut config = NetworkServiceConfig::new(dir.path());
        config.default_network = NetworkRecord {
            name: "testudo".to_owned(),
            bridge: bridge.clone(),
            subnets: Subnets {
                ipv4: subnet.parse().unwrap(),
                ipv6: None,
            },
            created: String::new(),
        };
        let service = NetworkService::new(config, state.clone()).unwrap();
        TestService {
            service,
            state,
            bridge,
            subnet,
            _dir: dir,
            _forwarding: forwarding,
        }
    }

    /// The links enslaved to the bridge.
    fn veths(&self) -> String {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    fn assert_nothing_left(&self, id: &str) {
        let state = self.state.network_state().unwrap();
        assert!(state.attachments.is_empty(), "{state:?}");
        assert!(state.leases.is_empty(), "{state:?}");
        assert!(
            !netns_path(id).exists(),
            "{} is left",
            netns_path(id).display()
        );
        assert_eq!(self.veths(), "");
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        // The network's NAT rules, by their tag.
        let out = Command::new("nft")
            .args(["-j", "-a", "list", "table", "inet", "testudo"])
            .output()
            .unwrap();
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let tag = format!("network:{}", self.bridge);
        for rule in listed["nftables"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|item| item.get("rule"))
            .filter(|rule| rule["comment"].as_str() == Some(tag.as_str()))
        {
            let handle = rule["handle"].to_string();
            let chain = rule["chain"].as_str().unwrap();
            let _ = Command::new("nft")
                .args([
                    "delete", "rule", "inet", "testudo", chain, "handle", &handle,
                ])
                .status();
        }
    }
}

fn new_id() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // The namespace's name holds only the first 48 digits: pid and counter go there.
    format!("{:024x}{:024x}{:016x}", std::process::id(), n, 0)
}

/// Where the service puts container `id`'s namespace (as its docs say: `testudo-` and the
/// first 48 digits of the id, under `/run/netns`).
fn netns_name(id: &str) -> NetnsName {
    NetnsName::new(format!("testudo-{}", &id[..48])).unwrap()
}

fn netns_path(id: &str) -> std::path::PathBuf {
    Path::new("/run/netns").join(netns_name(id).as_str())
}

#[test]
fn a_retried_attach_keeps_its_address_and_detaching_twice_is_harmless() {
    if !require_root() {
        return;
    }
    let test = TestService::new();
    let id = new_id();
    let first = test
        .service
        .attach(&id, &NetworkChoice::Bridge(None), &[])
        .unwrap();
    let prefix = test.subnet.trim_end_matches("0/24");
    assert!(
        first.addresses[0].to_string().starts_with(prefix),
        "{first:?}"
    );
    assert_eq!(first.netns, netns_path(&id));
    assert!(first.netns.exists());
    assert_eq!(test.veths().lines().count(), 1);
    // A retry (a create that failed after the attach and was tried again) changes nothing.
    let again = test
        .service
        .attach(&id, &NetworkChoice::Bridge(None), &[])
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(test.veths().lines().count(), 1);

    test.service.detach(&id).unwrap();
    test.assert_nothing_left(&id);
    test.service.detach(&id).unwrap();
    test.assert_nothing_left(&id);
}

#[test]
fn a_detach_after_a_crash_half_way_through_an_attach_removes_what_was_made() {
    if !require_root() {
        return;
    }
    let test = TestService::new();
    // What an attach leaves when the daemon dies after its transaction: the lease and the
    // record, and (for the second container) the namespace too, but no veth.
    for make_netns in [false, true] {
        let id = new_id();
        test.state
            .update_network_state(|state| {
                state.leases.insert(
                    ("testudo".to_owned(), id.clone()),
                    Lease {
                        network: "testudo".to_owned(),
                        owner: id.clone(),
                        ipv4: "10.0.0.2".parse().unwrap(),
                        ipv6: None,
                    },
                );
                state.attachments.insert(
                    id.clone(),
                    AttachmentRecord {
                        container_id: id.clone(),
                        kind: AttachmentKind::Bridge,
                        network: "testudo".to_owned(),
                        netns: netns_path(&id),
                        ifname: "eth0".to_owned(),
                        addresses: Vec::new(),
                        gateways: Vec::new(),
                        ports: Vec::new(),
                    },
                );
                Ok::<_, testudo_engine::state::StateError>(())
            })
            .unwrap();
        if make_netns {
            NetnsDir::default().create(&netns_name(&id)).unwrap();
        }
        test.service.detach(&id).unwrap();
        test.assert_nothing_left(&id);
    }
}
