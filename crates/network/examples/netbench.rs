//! The testudo side of `bench/network.py`: times a bridge-mode attach+detach of one network
//! namespace with the built-in path or through the `cni` module, and the throughput of a port
//! published on 127.0.0.1 against the host's own loopback. Prints one JSON object.
//!
//! ```text
//! netbench builtin ITERATIONS          # IPAM lease + veth + addresses + route + DNAT, and back
//! netbench cni ITERATIONS              # Debian's bridge + host-local + portmap, ADD and DEL
//! netbench throughput MEGABYTES ROUNDS # published port, the container's address without
//!                                      # NAT (the veth + bridge floor), loopback; rotating;
//!                                      # bytes per wall second and per CPU second
//! ```
//!
//! Each run creates its own namespace, bridge (`nb<pid>`), subnet (10.233.x.0/24) and state in
//! a temporary directory, outside the timed part, and removes them before it exits.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use testudo_network::cni::{find_config_list, Attachment, Cni, DEFAULT_PLUGIN_DIR};
use testudo_network::{
    plan_attach, plan_detach, plan_network, AttachRequest, BridgeDriver, BridgeNetwork, IfName,
    IpamStore, Netlink, Netns, NetnsDir, NetnsName, Nft, PortMapping, Subnets,
};

struct Fixture {
    netns_dir: NetnsDir,
    netns_name: NetnsName,
    netns: Netns,
    bridge: IfName,
    state: tempfile::TempDir,
    port: u16,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        let pid = std::process::id() % 100_000;
        let netns_dir = NetnsDir::default();
        let netns_name = NetnsName::new(format!("netbench-{tag}-{pid}")).unwrap();
        let netns = netns_dir.create(&netns_name).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            netns_dir,
            netns_name,
            netns,
            bridge: IfName::new(format!("nb{tag}{pid}")).unwrap(),
            state: tempfile::tempdir().unwrap(),
            port,
        }
    }

    fn published(&self, container_port: u16) -> PortMapping {
        format!("127.0.0.1:{}:{container_port}", self.port)
            .parse()
            .unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Netlink::open().and_then(|mut n| n.delete_link(&self.bridge));
        let _ = self.netns_dir.delete(&self.netns_name);
    }
}

/// The built-in bridge network of a fixture, set up.
struct Builtin {
    network: BridgeNetwork,
    driver: BridgeDriver,
    ipam: IpamStore,
}

impl Builtin {
    fn new(fixture: &Fixture) -> Self {
        let network = BridgeNetwork {
            name: format!("netbench{}", std::process::id()),
            bridge: fixture.bridge.clone(),
            subnets: Subnets {
                ipv4: "10.233.0.0/24".parse().unwrap(),
                ipv6: None,
            },
        };
        let driver = BridgeDriver::new(Nft::new("nft", format!("netbench{}", std::process::id())));
        let ipam = IpamStore::new(fixture.state.path().join("ipam.json"));
        ipam.update(|s| s.add_network(&network.name, network.subnets))
            .unwrap();
        driver.setup_network(&plan_network(&network)).unwrap();
        Self {
            network,
            driver,
            ipam,
        }
    }

    /// Attaches the fixture's namespace with its published port; returns its address.
    fn attach(&self, fixture: &Fixture, container_port: u16) -> IpAddr {
        let owner = fixture.netns_name.as_str();
        let lease = self
            .ipam
            .update(|s| s.allocate(&self.network.name, owner))
            .unwrap();
        let request = AttachRequest {
            container_id: owner.to_owned(),
            netns: fixture.netns.path().to_path_buf(),
            ifname: IfName::new("eth0").unwrap(),
            ports: vec![fixture.published(container_port)],
        };
        self.driver
            .attach(&plan_attach(&self.network, &request, &lease).unwrap())
            .unwrap();
        IpAddr::V4(lease.ipv4)
    }

    fn detach(&self, fixture: &Fixture) {
        let owner = fixture.netns_name.as_str();
        self.driver
            .detach(&plan_detach(&self.network, owner))
            .unwrap();
        self.ipam
            .update(|s| Ok(s.release(&self.network.name, owner)))
            .unwrap();
    }

    fn teardown(&self) {
        self.driver
            .teardown_network(&plan_network(&self.network))
            .unwrap();
        self.ipam
            .update(|s| s.remove_network(&self.network.name))
            .unwrap();
    }
}

fn time_iterations(iterations: usize, mut once: impl FnMut()) -> Vec<u128> {
    (0..iterations)
        .map(|_| {
            let start = Instant::now();
            once();
            start.elapsed().as_nanos()
        })
        .collect()
}

fn builtin(iterations: usize) -> serde_json::Value {
    let fixture = Fixture::new("b");
    let net = Builtin::new(&fixture);
    let samples = time_iterations(iterations, || {
        net.attach(&fixture, 80);
        net.detach(&fixture);
    });
    net.teardown();
    serde_json::json!({ "samples_ns": samples })
}

fn cni(iterations: usize) -> serde_json::Value {
    let fixture = Fixture::new("c");
    let dir = fixture.state.path();
    let name = format!("netbench{}", std::process::id());
    std::fs::create_dir(dir.join("conf")).unwrap();
    let config = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": fixture.bridge.as_str(), "isGateway": true, "ipMasq": true,
             "ipam": {"type": "host-local", "dataDir": dir.join("data"),
                      "ranges": [[{"subnet": "10.233.1.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    });
    std::fs::write(dir.join("conf/netbench.conflist"), config.to_string()).unwrap();
    let list = find_config_list(&dir.join("conf"), &name).unwrap();
    let cni = Cni::new(vec![PathBuf::from(DEFAULT_PLUGIN_DIR)], dir.join("cache"));
    let attachment = Attachment::new(
        fixture.netns_name.as_str(),
        fixture.netns.path(),
        IfName::new("eth0").unwrap(),
    )
    .unwrap()
    .with_port_mappings(&[fixture.published(80)]);
    let samples = time_iterations(iterations, || {
        cni.add(&list, &attachment).unwrap();
        cni.del(&list, &attachment).unwrap();
    });
    serde_json::json!({ "samples_ns": samples })
}

const CHUNK: usize = 256 * 1024;

/// The CPU time of this process, every thread, so far. Without `IRQ_TIME_ACCOUNTING` (the
/// usual kernel configuration) it includes the softirq work run on the way out of the sender's
/// system calls, which is where the loopback and veth paths deliver packets; only what the
/// kernel defers to `ksoftirqd` is missed.
fn process_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap(),
        u32::try_from(now.tv_nsec).unwrap(),
    )
}

/// One stream's figures.
struct Stream {
    /// Bytes per second from connect to the receiver's last read.
    bytes_per_s: f64,
    /// Bytes per second of this process's CPU time (sender and receiver): what the path
    /// costs, which on a shared machine varies less than the wall time.
    bytes_per_cpu_s: f64,
}

/// Sends `bytes` to `target` while a thread accepts on `listener` and reads to the end.
fn stream(listener: TcpListener, target: SocketAddr, bytes: usize) -> Stream {
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0usize;
        loop {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break total;
            }
            total += n;
        }
    });
    let start = Instant::now();
    let cpu_start = process_cpu_time();
    let mut conn = TcpStream::connect_timeout(&target, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect to {target}: {e}"));
    let chunk = vec![0x5au8; CHUNK];
    let mut sent = 0;
    while sent < bytes {
        conn.write_all(&chunk).unwrap();
        sent += CHUNK;
    }
    drop(conn);
    let received = receiver.join().unwrap();
    assert_eq!(received, sent, "every byte arrives");
    let (wall, cpu) = (start.elapsed(), process_cpu_time() - cpu_start);
    Stream {
        bytes_per_s: sent as f64 / wall.as_secs_f64(),
        bytes_per_cpu_s: sent as f64 / cpu.as_secs_f64(),
    }
}

fn throughput(megabytes: usize, rounds: usize) -> serde_json::Value {
    let fixture = Fixture::new("t");
    let net = Builtin::new(&fixture);
    let addr = net.attach(&fixture, 5001);
    let bytes = megabytes * 1024 * 1024;
    let (mut published, mut direct, mut loopback) = (Vec::new(), Vec::new(), Vec::new());
    let in_netns = |port| {
        fixture
            .netns
            .run(|| TcpListener::bind(SocketAddr::new(addr, port)))
            .unwrap()
            .unwrap()
    };
    for round in 0..rounds {
        for kind in [0, 1, 2].iter().cycle().skip(round % 3).take(3) {
            if *kind == 0 {
                published.push(stream(
                    in_netns(5001),
                    SocketAddr::from(([127, 0, 0, 1], fixture.port)),
                    bytes,
                ));
            } else if *kind == 1 {
                // Another port: the published stream's conntrack entry (masqueraded to the
                // bridge address, source port kept) may still hold the same tuple.
                direct.push(stream(in_netns(5002), SocketAddr::new(addr, 5002), bytes));
            } else {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let target = listener.local_addr().unwrap();
                loopback.push(stream(listener, target, bytes));
            }
        }
    }
    net.detach(&fixture);
    net.teardown();
    let wall = |streams: &[Stream]| streams.iter().map(|s| s.bytes_per_s).collect::<Vec<_>>();
    let cpu = |streams: &[Stream]| {
        streams
            .iter()
            .map(|s| s.bytes_per_cpu_s)
            .collect::<Vec<_>>()
    };
    serde_json::json!({
        "bytes": bytes,
        "published_bytes_per_s": wall(&published),
        "direct_bytes_per_s": wall(&direct),
        "loopback_bytes_per_s": wall(&loopback),
        "published_bytes_per_cpu_s": cpu(&published),
        "direct_bytes_per_cpu_s": cpu(&direct),
        "loopback_bytes_per_cpu_s": cpu(&loopback),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let out = match args.first().map(String::as_str) {
        Some("builtin") => builtin(number(1, 10)),
        Some("cni") => cni(number(1, 10)),
        Some("throughput") => throughput(number(1, 1024), number(2, 3)),
        _ => {
            eprintln!("usage: netbench builtin|cni ITERATIONS | throughput MEGABYTES ROUNDS");
            std::process::exit(2);
        }
    };
    println!("{out}");
}
