//! Networks end to end: the real `testudod` attaches real containers to bridge networks (its
//! default one, a network made with `testudoctl network create`), CNI networks (Debian's
//! plugins) and network namespaces made by the test; traffic between containers, to a listener
//! outside through NAT and to a published port on 127.0.0.1; the name files seen from inside;
//! leases across a daemon restart; nothing left after `rm`; bad input refused.
//!
//! Every test has its own daemon with its own default bridge and subnet (the harness's
//! `DefaultNetwork`), and only addresses inside namespaces the tests make are targets.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use testudo_test_support::require_root;

const IMAGE: &str = BUSYBOX;

/// A daemon holding the busybox image, or `None` when not root (and not required to be).
fn daemon_with_busybox(extra: &[&std::ffi::OsStr]) -> Option<Daemon> {
    if !require_root() {
        return None;
    }
    let daemon = Daemon::start_with(&[], extra);
    import_busybox(&daemon);
    Some(daemon)
}

/// Runs `program` with `args`, which must succeed; its standard output.
fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The container's attachment as `testudoctl inspect` reports it.
fn attachment(daemon: &Daemon, name: &str) -> serde_json::Value {
    daemon.json(&["inspect", name])["status"]["network"].clone()
}

/// The container's IPv4 address, without the prefix length.
fn address(daemon: &Daemon, name: &str) -> String {
    let attachment = attachment(daemon, name);
    let first = attachment["addresses"][0].as_str().unwrap();
    first.split('/').next().unwrap().to_owned()
}

/// A TCP port on 127.0.0.1 that nothing listens on now.
fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a one-shot `nc` client container gets from `address:port`.
fn fetch(daemon: &Daemon, network: &str, address: &str, port: &str) -> String {
    let out = daemon.ctl(&[
        "run",
        "--rm",
        "--network",
        network,
        IMAGE,
        "nc",
        "-w",
        "5",
        address,
        port,
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The links enslaved to `bridge`.
fn links_on(bridge: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-j", "link", "show", "master", bridge])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    links
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A short name unique to this process and call, for host objects the test makes.
fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A seed for [`free_subnet`] that differs between tests and processes.
fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(unique("s"))
}

/// A network namespace made with `ip netns add`, deleted on drop.
struct TestNetns(String);

impl TestNetns {
    fn new() -> TestNetns {
        let name = unique("ttn");
        sh("ip", &["netns", "add", &name]);
        TestNetns(name)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn two_containers_on_the_default_network_talk_over_tcp_and_see_their_name_files() {
    let Some(daemon) = daemon_with_busybox(&[]) else {
        return;
    };
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "server",
        IMAGE,
        "sh",
        "-c",
        "echo hello from the server | nc -l -p 7000",
    ]);
    let server = address(&daemon, "server");
    assert!(
        server.starts_with(&format!("{}.", daemon.network.prefix())),
        "{server} is not in {}",
        daemon.network.subnet
    );
    // The server may not listen yet: a refused client is tried again.
    poll_until("the server to answer", || {
        fetch(&daemon, "bridge", &server, "7000") == "hello from the server\n"
    });

    let seen = daemon.ok(&[
        "run",
        "--rm",
        "--name",
        "web",
        IMAGE,
        "sh",
        "-c",
        "hostname; cat /etc/hostname; hostname -i; cat /etc/resolv.conf",
    ]);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], "web", "{seen}");
    assert_eq!(lines[1], "web", "{seen}");
    // `hostname -i` resolves the name through /etc/hosts: the container's own address.
    assert!(
        lines[2].starts_with(&format!("{}.", daemon.network.prefix())) && lines[2] != server,
        "{seen}"
    );
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap();
    let nameservers = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("nameserver"))
            .map(str::to_owned)
            .collect()
    };
    let inside = nameservers(&seen);
    assert!(!inside.is_empty(), "{seen}");
    assert!(inside.iter().all(|l| !l.contains(" 127.")), "{seen}");
    for line in nameservers(&host_resolv)
        .iter()
        .filter(|l| !l.contains(" 127."))
    {
        assert!(inside.contains(line), "{line} missing in {seen}");
    }
    daemon.ok(&["rm", "-f", "server"]);
}

#[test]
fn a_container_reaches_a_listener_outside_through_nat() {
    let Some(daemon) = daemon_with_busybox(&[]) else {
        return;
    };
    // The outside world: a namespace behind a veth pair of the host's, on a /30 of its own.
    let outside = TestNetns::new();
    let prefix = free_subnet(seed()).trim_end_matches(".0/24").to_owned();
    let (host_end, far_end) = (unique("tto"), unique("ttp"));
    sh(
        "ip",
        &[
            "link", "add", &host_end, "type", "veth", "peer", "name", &far_end, "netns", &outside.0,
        ],
    );
    sh(
        "ip",
        &["addr", "add", &format!("{prefix}.1/30"), "dev", &host_end],
    );
    sh("ip", &["link", "set", &host_end, "up"]);
    sh(
        "ip",
        &[
            "-n",
            &outside.0,
            "addr",
            "add",
            &format!("{prefix}.2/30"),
            "dev",
            &far_end,
        ],
    );
    sh("ip", &["-n", &outside.0, "link", "set", &far_end, "up"]);
    let target: Ipv4Addr = format!("{prefix}.2").parse().unwrap();

    let netns = std::fs::File::open(outside.path()).unwrap();
    let listener = std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            netns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        let listener = TcpListener::bind(SocketAddr::from((target, 9000))).unwrap();
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    stream.set_nonblocking(false).unwrap();
                    let mut got = String::new();
                    stream.read_to_string(&mut got).unwrap();
                    return Some((peer, got));
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return None,
            }
        }
    });
    // Wait until the listener is bound inside: connecting from here reaches it directly.
    let target_text = target.to_string();
    let out = daemon.ok(&[
        "run", "--rm", IMAGE, "sh", "-c",
        &format!("for i in $(seq 50); do echo through nat | nc -w 5 {target_text} 9000 && exit 0; sleep 0.2; done; exit 1"),
    ]);
    assert_eq!(out, "");
    let (peer, got) = listener.join().unwrap().expect("no connection arrived");
    assert_eq!(got, "through nat\n");
    // Masqueraded: the listener sees the host's address on its link, not the container's.
    assert_eq!(peer.ip().to_string(), format!("{prefix}.1"));
}

#[test]
fn a_port_published_on_127_0_0_1_answers_from_the_host() {
    let Some(daemon) = daemon_with_busybox(&[]) else {
        return;
    };
    let port = free_loopback_port();
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &format!("127.0.0.1:{port}:8080"),
        IMAGE,
        "sh",
        "-c",
        "while true; do echo pong | nc -l -p 8080; done",
    ]);
    let ports = attachment(&daemon, "web")["ports"].clone();
    assert_eq!(
        ports,
        serde_json::json!([format!("127.0.0.1:{port}:8080/tcp")])
    );
    poll_until("the published port to answer", || {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut got = [0u8; 5];
        stream.read_exact(&mut got).is_ok() && &got == b"pong\n"
    });
    daemon.ok(&["rm", "-f", "web"]);
}

#[test]
fn a_named_network_is_created_used_and_removed_with_testudoctl() {
    let Some(daemon) = daemon_with_busybox(&[]) else {
        return;
    };
    let subnet = free_subnet(seed());
    let bridge = unique("ttb");
    daemon.ok(&[
        "network", "create", "lab", "--subnet", &subnet, "--bridge", &bridge,
    ]);
    let listed = daemon.json(&["network", "ls"]);
    assert_eq!(names(&listed), ["lab", "testudo"]);
    assert_eq!(listed[1]["bridge"], daemon.network.bridge.as_str());
    assert_eq!(listed[1]["default"], true);
    assert_eq!(listed[0]["subnets"], serde_json::json!([subnet]));
    let table = daemon.ok(&["network", "ls"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains(&bridge), "{table}");

    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "lab",
        IMAGE,
        "sleep",
        "600",
    ]);
    let a = address(&daemon, "a");
    assert!(a.starts_with(subnet.trim_end_matches("0/24")), "{a}");
    assert_eq!(attachment(&daemon, "a")["network"], "lab");
    let inspected = daemon.json(&["network", "inspect", "lab"]);
    assert_eq!(
        inspected["containers"],
        serde_json::json!([id_of(&daemon, "a")])
    );
    assert_eq!(links_on(&bridge).len(), 1);

    assert_eq!(
        daemon.fails(&["network", "rm", "lab"]),
        "testudoctl: network \"lab\" still has 1 container(s) attached"
    );
    assert_eq!(
        daemon.fails(&["network", "create", "lab", "--subnet", &free_subnet(seed())]),
        "testudoctl: network \"lab\" already exists"
    );
    let overlapping = daemon.fails(&["network", "create", "other", "--subnet", &subnet]);
    assert!(overlapping.contains("overlaps"), "{overlapping}");
    daemon.ok(&["rm", "-f", "a"]);
    daemon.ok(&["network", "rm", "lab"]);
    assert_eq!(names(&daemon.json(&["network", "ls"])), ["testudo"]);
    assert!(!link_exists(&bridge), "bridge {bridge} is left");
    assert!(tagged_rules(&format!("network:{bridge}")).is_empty());
}

#[test]
fn a_dual_stack_network_gives_containers_an_ipv6_address_they_talk_over() {
    let Some(daemon) = daemon_with_busybox(&[]) else {
        return;
    };
    let subnet = free_subnet(seed());
    // A unique-local /64 of the test's own (fd00:<third octet>:<fourth>::/64 of the /24).
    let octets: Vec<u32> = subnet
        .trim_end_matches(".0/24")
        .split('.')
        .map(|o| o.parse().unwrap())
        .collect();
    let subnet6 = format!("fd00:{:x}:{:x}::/64", octets[1], octets[2]);
    let bridge = unique("ttd");
    daemon.ok(&[
        "network", "create", "dual", "--subnet", &subnet, "--subnet", &subnet6, "--bridge", &bridge,
    ]);
    let listed = daemon.json(&["network", "inspect", "dual"]);
    assert_eq!(listed["subnets"], serde_json::json!([subnet, subnet6]));
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "server",
        "--network",
        "dual",
        IMAGE,
        "sh",
        "-c",
        "while true; do echo hello over ipv6 | nc -l -p 7000; done",
    ]);
    let addresses = attachment(&daemon, "server")["addresses"].clone();
    let v6 = addresses[1]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        v6.starts_with(subnet6.trim_end_matches(":/64")),
        "{addresses}"
    );
    poll_until("the server to answer over IPv6", || {
        fetch(&daemon, "dual", &v6, "7000") == "hello over ipv6\n"
    });
    daemon.ok(&["rm", "-f", "server"]);
    daemon.ok(&["network", "rm", "dual"]);
    assert!(!link_exists(&bridge));
}

#[test]
fn a_container_joins_a_netns_made_by_the_test_and_a_path_that_is_none_is_refused() {
    let Some(daemon) = daemon_with_busybox(&[]) else {
        return;
    };
    let netns = TestNetns::new();
    let (a, b) = (unique("tja"), unique("tjb"));
    sh(
        "ip",
        &[
            "-n", &netns.0, "link", "add", &a, "type", "veth", "peer", "name", &b,
        ],
    );
    let seen = daemon.ok(&[
        "run",
        "--rm",
        "--network",
        &format!("ns:{}", netns.path()),
        IMAGE,
        "cat",
        "/proc/net/dev",
    ]);
    assert!(seen.contains(&a) && seen.contains(&b), "{seen}");

    let refused = daemon.fails(&[
        "run",
        "--rm",
        "--network",
        "ns:/etc/hostname",
        IMAGE,
        "true",
    ]);
    assert_eq!(
        refused,
        "testudoctl: /etc/hostname is not a network namespace (not a namespace file)"
    );
    assert!(names(&daemon.json(&["ps", "-a"])).is_empty());
}

#[test]
fn cni_networks_of_debians_plugins_connect_containers_and_leave_nothing() {
    if !Path::new("/usr/lib/cni/bridge").exists() && require_root() {
        panic!("containernetworking-plugins is not installed");
    }
    let config = tempfile::tempdir().unwrap();
    let bridge = unique("ttc");
    let subnet = free_subnet(seed());
    let ipam_dir = config.path().join("ipam");
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "lab-cni",
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": subnet}]],
                "dataDir": ipam_dir,
            },
        }, {
            "type": "portmap",
            "capabilities": {"portMappings": true},
        }],
    });
    std::fs::write(
        config.path().join("10-lab.conflist"),
        serde_json::to_vec(&conflist).unwrap(),
    )
    .unwrap();
    let broken = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "broken",
        "plugins": [{"type": "no-such-plugin"}],
    });
    std::fs::write(
        config.path().join("20-broken.conflist"),
        serde_json::to_vec(&broken).unwrap(),
    )
    .unwrap();
    let flags = [
        std::ffi::OsStr::new("--cni-config-dir"),
        config.path().as_os_str(),
    ];
    let Some(daemon) = daemon_with_busybox(&flags) else {
        return;
    };
    struct RemoveBridge(String);
    impl Drop for RemoveBridge {
        fn drop(&mut self) {
            // The bridge plugin leaves its bridge, by design.
            remove_bridge_network(&self.0);
        }
    }
    let _bridge = RemoveBridge(bridge.clone());

    let port = free_loopback_port();
    let publish = format!("127.0.0.1:{port}:7000");
    let serve = "while true; do echo hello over cni | nc -l -p 7000; done";
    let network = ["--network", "cni:lab-cni", "-p", &publish];
    let run = [
        &["run", "-d", "--name", "server"][..],
        &network,
        &[IMAGE, "sh", "-c", serve],
    ];
    daemon.ok(&run.concat());
    let server = address(&daemon, "server");
    assert!(
        server.starts_with(subnet.trim_end_matches("0/24")),
        "{server}"
    );
    assert_eq!(attachment(&daemon, "server")["network"], "lab-cni");
    poll_until("the server to answer", || {
        fetch(&daemon, "cni:lab-cni", &server, "7000") == "hello over cni\n"
    });
    // The port went to portmap as the portMappings capability.
    poll_until("the published port to answer", || {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut got = [0u8; 15];
        stream.read_exact(&mut got).is_ok() && &got == b"hello over cni\n"
    });
    let netns = attachment(&daemon, "server")["netns"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = id_of(&daemon, "server");
    assert!(sh("iptables", &["-t", "nat", "-S"]).contains(&id));
    daemon.ok(&["rm", "-f", "server"]);
    assert!(!Path::new(&netns).exists(), "{netns} is left");
    assert!(links_on(&bridge).is_empty(), "{:?}", links_on(&bridge));
    // portmap's chains of the container (commented with its id) went with its DEL.
    let nat = sh("iptables", &["-t", "nat", "-S"]);
    assert!(!nat.contains(&id), "{nat}");
    // host-local keeps one file per leased address (and `last_reserved_ip.0`, and a lock).
    let leases: Vec<String> = std::fs::read_dir(ipam_dir.join("lab-cni"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.parse::<Ipv4Addr>().is_ok())
        .collect();
    assert!(leases.is_empty(), "{leases:?}");

    let missing = daemon.fails(&["run", "--rm", "--network", "cni:nosuch", IMAGE, "true"]);
    assert!(missing.contains("no CNI network nosuch"), "{missing}");
    let failed = daemon.fails(&["run", "--rm", "--network", "cni:broken", IMAGE, "true"]);
    assert!(
        failed.contains("CNI ADD of container") && failed.contains("no-such-plugin"),
        "{failed}"
    );
    // Its namespace went with it (the DEL of the rollback passes over the missing plugin).
    let failed_id = failed
        .split("CNI ADD of container ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    let failed_netns = format!("/run/netns/testudo-{}", &failed_id[..48]);
    assert!(!Path::new(&failed_netns).exists(), "{failed_netns} is left");
    assert!(names(&daemon.json(&["ps", "-a"])).is_empty());
}

#[test]
fn leases_and_namespaces_survive_a_daemon_restart() {
    let Some(mut daemon) = daemon_with_busybox(&[]) else {
        return;
    };
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        IMAGE,
        "sh",
        "-c",
        "while true; do echo still here | nc -l -p 7000; done",
    ]);
    let a = address(&daemon, "a");
    let netns = attachment(&daemon, "a")["netns"]
        .as_str()
        .unwrap()
        .to_owned();
    daemon.terminate();
    daemon.restart();
    assert!(Path::new(&netns).exists());
    daemon.ok(&["run", "-d", "--name", "b", IMAGE, "sleep", "600"]);
    let b = address(&daemon, "b");
    assert_ne!(a, b, "a running container's address was handed out again");
    poll_until("a to answer after the restart", || {
        fetch(&daemon, "bridge", &a, "7000") == "still here\n"
    });
    daemon.ok(&["rm", "-f", "a", "b"]);
}

#[test]
fn the_network_outlives_restarts_of_the_container_by_its_policy() {
    let Some(daemon) = daemon_with_busybox(&[]) else {
        return;
    };
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "r",
        "--restart",
        "always",
        IMAGE,
        "sh",
        "-c",
        "ip -4 -o addr show eth0; sleep 1; exit 3",
    ]);
    let leased = address(&daemon, "r");
    let netns = attachment(&daemon, "r")["netns"].clone();
    // Each run logs its address: two runs, one address, the lease's.
    poll_until("a second run", || {
        daemon.ok(&["logs", "r"]).lines().count() >= 2
    });
    let logs = daemon.ok(&["logs", "r"]);
    for line in logs.lines().take(2) {
        assert!(line.contains(&format!(" {leased}/24 ")), "{logs}");
    }
    assert!(
        daemon.json(&["inspect", "r"])["status"]["restart_count"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(attachment(&daemon, "r")["netns"], netns);
    daemon.ok(&["rm", "-f", "r"]);
    assert!(!Path::new(netns.as_str().unwrap()).exists());
}

#[test]
fn after_rm_no_veth_rule_namespace_or_lease_is_left() {
    let Some(daemon) = daemon_with_busybox(&[]) else {
        return;
    };
    let port = free_loopback_port();
    let leaks = testudo_test_support::LeakCheck::snapshot();
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        IMAGE,
        "sleep",
        "600",
    ]);
    let id = id_of(&daemon, "a");
    let first = address(&daemon, "a");
    let mounted = || std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let netns = attachment(&daemon, "a")["netns"]
        .as_str()
        .unwrap()
        .to_owned();
    let tag = format!("container:{id}");
    assert!(Path::new(&netns).exists());
    assert!(mounted().contains(&format!(" {netns} ")));
    assert_eq!(links_on(&daemon.network.bridge).len(), 1);
    assert!(!tagged_rules(&tag).is_empty());

    daemon.ok(&["rm", "-f", "a"]);
    assert!(!Path::new(&netns).exists(), "{netns} is left");
    assert!(
        !mounted().contains(&format!(" {netns} ")),
        "{netns} is still mounted"
    );
    leaks.assert_no_leaks_for(&id);
    assert!(links_on(&daemon.network.bridge).is_empty());
    assert!(tagged_rules(&tag).is_empty(), "rules of {tag} are left");
    let default = daemon.json(&["network", "inspect", "testudo"]);
    assert_eq!(default["containers"], serde_json::json!([]));
    // The lease went too: the lowest free address is the same one again.
    daemon.ok(&["run", "-d", "--name", "b", IMAGE, "sleep", "600"]);
    assert_eq!(address(&daemon, "b"), first);
    daemon.ok(&["rm", "-f", "b"]);
}

#[test]
fn bad_network_input_is_refused_with_its_status_and_leaves_nothing() {
    let Some(daemon) = daemon_with_busybox(&[]) else {
        return;
    };
    assert_eq!(
        daemon.fails(&["run", "--network", "nosuch", IMAGE, "true"]),
        "testudoctl: network \"nosuch\" not found"
    );
    assert_eq!(
        daemon.fails(&["run", "-p", "99999:80", IMAGE, "true"]),
        "testudoctl: invalid --publish \"99999:80\": expected [hostIP:]hostPort:containerPort[/tcp|udp]"
    );
    assert_eq!(
        daemon.fails(&["run", "--network", "host", "-p", "8080:80", IMAGE, "true"]),
        "testudoctl: --publish needs a bridge or CNI network, not --network host"
    );
    let port = free_loopback_port();
    let publish = format!("127.0.0.1:{port}:80");
    daemon.ok(&[
        "run", "-d", "--name", "a", "-p", &publish, IMAGE, "sleep", "600",
    ]);
    let clash = daemon.fails(&[
        "run", "-d", "--name", "b", "-p", &publish, IMAGE, "sleep", "600",
    ]);
    assert!(clash.contains("clashes with"), "{clash}");
    assert_eq!(
        daemon.fails(&["network", "rm", "testudo"]),
        "testudoctl: network \"testudo\" is the default network and cannot be deleted"
    );
    let bad_bridge = daemon.fails(&[
        "network",
        "create",
        "x",
        "--subnet",
        &free_subnet(seed()),
        "--bridge",
        "no/slash",
    ]);
    assert!(
        bad_bridge.starts_with("testudoctl: invalid bridge name"),
        "{bad_bridge}"
    );
    let bad_subnet = daemon.fails(&["network", "create", "x", "--subnet", "10.1.2.3/24"]);
    assert!(bad_subnet.contains("host bits are set"), "{bad_subnet}");
    // A /30 has one address for a container: the second finds the pool exhausted.
    let tiny = free_subnet(seed()).replace(".0/24", ".0/30");
    let tiny_bridge = unique("ttx");
    daemon.ok(&[
        "network",
        "create",
        "tiny",
        "--subnet",
        &tiny,
        "--bridge",
        &tiny_bridge,
    ]);
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "t1",
        "--network",
        "tiny",
        IMAGE,
        "sleep",
        "600",
    ]);
    let exhausted = daemon.fails(&[
        "run",
        "-d",
        "--name",
        "t2",
        "--network",
        "tiny",
        IMAGE,
        "sleep",
        "600",
    ]);
    assert_eq!(
        exhausted,
        format!("testudoctl: no free address left in {tiny} of network tiny")
    );
    assert_eq!(links_on(&tiny_bridge).len(), 1);
    daemon.ok(&["rm", "-f", "t1"]);
    daemon.ok(&["network", "rm", "tiny"]);
    // Only a is there, with its one attachment.
    assert_eq!(names(&daemon.json(&["ps", "-a"])), ["a"]);
    let default = daemon.json(&["network", "inspect", "testudo"]);
    assert_eq!(
        default["containers"],
        serde_json::json!([id_of(&daemon, "a")])
    );
    assert_eq!(links_on(&daemon.network.bridge).len(), 1);
    daemon.ok(&["rm", "-f", "a"]);

    // The status codes, through the raw API.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use testudo_api::networks::v1::networks_service_client::NetworksServiceClient;
        use testudo_api::networks::v1::{CreateRequest, DeleteRequest};
        use tonic::Code;
        let mut networks = NetworksServiceClient::new(channel(daemon.socket()).await);
        let create = |name: &str, subnets: Vec<String>| CreateRequest {
            name: name.to_owned(),
            subnets,
            bridge: String::new(),
        };
        fn code<T>(result: Result<T, tonic::Status>) -> Code {
            result.map(drop).unwrap_err().code()
        }
        assert_eq!(
            code(
                networks
                    .create(create("testudo", vec![free_subnet(seed())]))
                    .await
            ),
            Code::AlreadyExists
        );
        assert_eq!(
            code(
                networks
                    .create(create("y", vec![daemon.network.subnet.clone()]))
                    .await
            ),
            Code::InvalidArgument
        );
        assert_eq!(
            code(networks.create(create("y", vec![])).await),
            Code::InvalidArgument
        );
        assert_eq!(
            code(
                networks
                    .delete(DeleteRequest {
                        name: "nosuch".into()
                    })
                    .await
            ),
            Code::NotFound
        );
        assert_eq!(
            code(
                networks
                    .delete(DeleteRequest {
                        name: "testudo".into()
                    })
                    .await
            ),
            Code::FailedPrecondition
        );

        use testudo_api::containers::v1::containers_service_client::ContainersServiceClient;
        use testudo_api::containers::v1::{
            network, BridgeNetwork, ContainerConfig, CreateRequest as CreateContainer, JoinNetwork,
            Network,
        };
        let mut containers = ContainersServiceClient::new(channel(daemon.socket()).await);
        let create = |mode: network::Mode| CreateContainer {
            namespace: "default".into(),
            config: Some(ContainerConfig {
                image: IMAGE.into(),
                network: Some(Network { mode: Some(mode) }),
                ..ContainerConfig::default()
            }),
        };
        let join = |path: &str| network::Mode::Join(JoinNetwork { path: path.into() });
        assert_eq!(
            code(containers.create(create(join("/etc/hostname"))).await),
            Code::InvalidArgument
        );
        assert_eq!(
            code(
                containers
                    .create(create(join("/run/netns/no-such-netns")))
                    .await
            ),
            Code::NotFound
        );
        let unknown = network::Mode::Bridge(BridgeNetwork {
            network: "nosuch".into(),
            ports: Vec::new(),
        });
        assert_eq!(
            code(containers.create(create(unknown)).await),
            Code::NotFound
        );
    });
    assert!(names(&daemon.json(&["ps", "-a"])).is_empty());
}

#[test]
fn two_daemons_share_the_nftables_table_without_touching_each_others_rules() {
    let Some(first) = daemon_with_busybox(&[]) else {
        return;
    };
    let second = daemon_with_busybox(&[]).unwrap();
    // Both have a default network called `testudo`, on bridges of their own.
    assert_eq!(names(&first.json(&["network", "ls"])), ["testudo"]);
    assert_eq!(names(&second.json(&["network", "ls"])), ["testudo"]);
    let port = free_loopback_port();
    first.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &format!("127.0.0.1:{port}:8080"),
        IMAGE,
        "sh",
        "-c",
        "while true; do echo pong | nc -l -p 8080; done",
    ]);
    let answers = || {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut got = [0u8; 5];
        stream.read_exact(&mut got).is_ok() && &got == b"pong\n"
    };
    poll_until("the first daemon's port to answer", answers);
    let first_rules = || tagged_rules(&format!("network:{}", first.network.bridge));
    let before = first_rules().len();
    assert!(before > 0);

    // The second daemon sets up its own default network, then makes and deletes another.
    let other_port = free_loopback_port();
    second.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &format!("127.0.0.1:{other_port}:8080"),
        IMAGE,
        "sleep",
        "600",
    ]);
    let bridge = unique("tts");
    second.ok(&[
        "network",
        "create",
        "lab",
        "--subnet",
        &free_subnet(seed()),
        "--bridge",
        &bridge,
    ]);
    second.ok(&[
        "run",
        "-d",
        "--name",
        "lab",
        "--network",
        "lab",
        IMAGE,
        "sleep",
        "600",
    ]);
    second.ok(&["rm", "-f", "web", "lab"]);
    second.ok(&["network", "rm", "lab"]);

    assert_eq!(first_rules().len(), before);
    let id = id_of(&first, "web");
    assert!(!tagged_rules(&format!("container:{id}")).is_empty());
    assert!(
        answers(),
        "the first daemon's published port stopped answering"
    );
    first.ok(&["rm", "-f", "web"]);
}

#[test]
fn a_container_joins_the_network_namespace_of_another_by_name() {
    let Some(daemon) = daemon_with_busybox(&[]) else {
        return;
    };
    // A server in its own namespace, reached on that namespace's loopback by the joiner.
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "pod",
        IMAGE,
        "sh",
        "-c",
        "while :; do echo hello over loopback | nc -l -p 7100; done",
    ]);
    let own = address(&daemon, "pod");
    poll_until("the joined server to answer", || {
        fetch(&daemon, "container:pod", "127.0.0.1", "7100") == "hello over loopback\n"
    });
    // The joiner has the other's interface and address, not one of its own.
    let seen = daemon.ok(&[
        "run",
        "--rm",
        "--network",
        "container:pod",
        IMAGE,
        "ip",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(seen.contains(&format!("inet {own}/")), "{seen}");

    // A container with neither a network of its own nor a process has nothing to join.
    daemon.ok(&[
        "create",
        "--name",
        "idle",
        "--network",
        "none",
        IMAGE,
        "true",
    ]);
    let refused = daemon.fails(&["run", "--rm", "--network", "container:idle", IMAGE, "true"]);
    assert_eq!(
        refused,
        "testudoctl: container idle has no network namespace to join: it is not running and has no network of its own"
    );
    let missing = daemon.fails(&[
        "run",
        "--rm",
        "--network",
        "container:nosuch",
        IMAGE,
        "true",
    ]);
    assert!(missing.contains("nosuch"), "{missing}");
    daemon.ok(&["rm", "-f", "pod", "idle"]);
    assert!(names(&daemon.json(&["ps", "-a"])).is_empty());
}
