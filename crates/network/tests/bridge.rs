//! Bridge networks with real namespaces and real traffic. Only addresses inside the namespaces
//! these tests create (10.231.x.x) and loopback are ever connected to.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

use common::{ask, connect, echo_once, TestNet};
use testudo_network::{
    plan_attach, AttachRequest, BridgeDriver, BridgeError, IfName, Lease, Netlink, Nft,
};

fn listen_in(netns: &testudo_network::Netns, addr: SocketAddr) -> TcpListener {
    netns.run(|| TcpListener::bind(addr)).unwrap().unwrap()
}

fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_namespaces_on_one_bridge_reach_each_other() {
    if !testudo_test_support::require_root() {
        return;
    }
    let mut net = TestNet::new(1);
    let a = net.netns("a");
    let b = net.netns("b");
    let lease_a = net.attach(&a, &[]);
    let lease_b = net.attach(&b, &[]);
    assert_eq!(lease_a.ipv4, Ipv4Addr::new(10, 231, 1, 2));
    assert_eq!(lease_b.ipv4, Ipv4Addr::new(10, 231, 1, 3));

    let server = listen_in(&a, SocketAddr::new(IpAddr::V4(lease_a.ipv4), 7000));
    let served = echo_once(server);
    let stream = b
        .run(|| connect(SocketAddr::new(IpAddr::V4(lease_a.ipv4), 7000)))
        .unwrap();
    assert_eq!(ask(stream), "hello from 10.231.1.3");
    served.join().unwrap();

    let links = a
        .run(common::host_links)
        .unwrap()
        .into_iter()
        .collect::<Vec<_>>();
    assert_eq!(links, ["eth0", "lo"], "the namespace sees its renamed veth");
    net.teardown();
}

/// A namespace standing for the world outside: joined to the host by a veth pair of its own
/// (`10.231.<octet>.1` on the host, `.2` outside), so that traffic to it leaves by an interface
/// that is not the bridge.
fn outside_world(net: &mut TestNet, octet: u8) -> (testudo_network::Netns, Ipv4Addr) {
    let outside = net.netns("out");
    let host_end = IfName::new(format!("{}u", net.id)).unwrap();
    let peer = IfName::new(format!("{}v", net.id)).unwrap();
    let eth0 = IfName::new("eth0").unwrap();
    net.track_link(&host_end);
    let mut host = Netlink::open().unwrap();
    host.create_veth(&host_end, &peer).unwrap();
    host.add_address(&host_end, IpAddr::V4(Ipv4Addr::new(10, 231, octet, 1)), 30)
        .unwrap();
    host.set_up(&host_end).unwrap();
    host.move_to_netns(&peer, &outside).unwrap();
    let mut inside = outside.netlink().unwrap();
    inside.rename(&peer, &eth0).unwrap();
    let server_ip = Ipv4Addr::new(10, 231, octet, 2);
    inside
        .add_address(&eth0, IpAddr::V4(server_ip), 30)
        .unwrap();
    inside.set_up(&eth0).unwrap();
    (outside, server_ip)
}

#[test]
fn two_namespaces_on_a_dual_stack_bridge_reach_each_other_over_ipv6() {
    if !testudo_test_support::require_root() {
        return;
    }
    let mut net = TestNet::with_ipv6(7, true);
    let a = net.netns("a");
    let b = net.netns("b");
    let lease_a = net.attach(&a, &[]);
    let lease_b = net.attach(&b, &[]);
    let (addr_a, addr_b) = (lease_a.ipv6.unwrap(), lease_b.ipv6.unwrap());
    assert_eq!(addr_a.to_string(), "fd00:231:7::2");

    let served = echo_once(listen_in(&a, SocketAddr::new(IpAddr::V6(addr_a), 7002)));
    let stream = b
        .run(|| connect(SocketAddr::new(IpAddr::V6(addr_a), 7002)))
        .unwrap();
    assert_eq!(ask(stream), format!("hello from {addr_b}"));
    served.join().unwrap();
    let routes = b
        .run(|| common::run("ip", &["-6", "route", "show", "default"]))
        .unwrap();
    assert!(routes.contains("via fd00:231:7::1 dev eth0"), "{routes}");
    net.teardown();
}

#[test]
fn traffic_leaving_through_another_interface_is_masqueraded() {
    if !testudo_test_support::require_root() {
        return;
    }
    let mut net = TestNet::new(2);
    let (outside, server_ip) = outside_world(&mut net, 102);
    let container = net.netns("c");
    let lease = net.attach(&container, &[]);

    let server = listen_in(&outside, SocketAddr::new(IpAddr::V4(server_ip), 7001));
    let served = echo_once(server);
    // The container's default route goes via the bridge's gateway address; the host forwards
    // to the outside namespace, which has no route back to 10.231.2.0/24.
    let stream = container
        .run(|| connect(SocketAddr::new(IpAddr::V4(server_ip), 7001)))
        .unwrap();
    assert_eq!(
        ask(stream),
        "hello from 10.231.102.1",
        "the server sees the host's address, not the container's {}",
        lease.ipv4
    );
    served.join().unwrap();
    net.teardown();
}

#[test]
fn a_port_published_on_127_0_0_1_reaches_the_namespace() {
    if !testudo_test_support::require_root() {
        return;
    }
    let mut net = TestNet::new(3);
    let container = net.netns("c");
    let port = free_loopback_port();
    let lease = net.attach(&container, &[&format!("127.0.0.1:{port}:80")]);

    let server = listen_in(&container, SocketAddr::new(IpAddr::V4(lease.ipv4), 80));
    let served = echo_once(server);
    let answer = ask(connect(SocketAddr::from(([127, 0, 0, 1], port))));
    assert_eq!(
        answer, "hello from 10.231.3.1",
        "loopback traffic is masqueraded to the gateway"
    );
    served.join().unwrap();
    net.teardown();
}

#[test]
fn a_port_published_on_every_address_reaches_the_namespace_from_another_one() {
    if !testudo_test_support::require_root() {
        return;
    }
    let mut net = TestNet::new(4);
    let server_ns = net.netns("s");
    let client_ns = net.netns("c");
    let port = free_loopback_port();
    let lease: Lease = net.attach(&server_ns, &[&format!("{port}:8080")]);
    net.attach(&client_ns, &[]);

    let server = listen_in(&server_ns, SocketAddr::new(IpAddr::V4(lease.ipv4), 8080));
    // The same listener serves the second client: binding the port again can race with the
    // first connection's teardown (it failed once with AddrInUse).
    let again = server.try_clone().unwrap();
    let served = echo_once(server);
    let gateway = SocketAddr::from(([10, 231, 4, 1], port));
    let stream = client_ns.run(|| connect(gateway)).unwrap();
    assert_eq!(
        ask(stream),
        "hello from 10.231.4.1",
        "hairpin traffic is masqueraded"
    );
    served.join().unwrap();

    // And from the host itself, on loopback.
    let served = echo_once(again);
    assert_eq!(
        ask(connect(SocketAddr::from(([127, 0, 0, 1], port)))),
        "hello from 10.231.4.1"
    );
    served.join().unwrap();

    // Detaching the server removes its rules and only those.
    let owner = server_ns.path().file_name().unwrap().to_str().unwrap();
    net.driver
        .detach(&testudo_network::plan_detach(&net.network, owner))
        .unwrap();
    let table = common::run("nft", &["-j", "list", "table", "inet", &net.id]);
    assert!(!table.contains(&format!("container:{owner}")), "{table}");
    assert!(table.contains(&format!("network:{}", net.id)), "{table}");
    net.teardown();
}

/// The MSS that the calling thread's namespace advertises on its one established TCP
/// connection with local port `port` (`advmss`, from the route to the peer: the link's or the
/// route's MTU less 40 bytes of headers and 12 of the timestamp option), as `ss` reports it.
fn advertised_mss(port: u16) -> u32 {
    let filter = format!("sport = :{port}");
    let out = common::run("ss", &["-tinH", "state", "established", &filter]);
    let values: Vec<u32> = out
        .split_whitespace()
        .filter_map(|token| token.strip_prefix("advmss:"))
        .map(|value| value.parse().unwrap())
        .collect();
    assert_eq!(values.len(), 1, "one connection on port {port}: {out:?}");
    values[0]
}

/// The MTU of link `name` in the calling thread's namespace.
fn link_mtu(name: &str) -> u64 {
    let link: serde_json::Value =
        serde_json::from_str(&common::run("ip", &["-j", "link", "show", name])).unwrap();
    link[0]["mtu"].as_u64().unwrap()
}

#[test]
fn traffic_on_the_subnet_and_to_a_published_port_uses_64k_segments_and_traffic_beyond_1500() {
    if !testudo_test_support::require_root() {
        return;
    }
    let mut net = TestNet::new(8);
    let (outside, server_ip) = outside_world(&mut net, 108);
    let container = net.netns("c");
    let port = free_loopback_port();
    let lease = net.attach(&container, &[&format!("127.0.0.1:{port}:80")]);
    let owner = container.path().file_name().unwrap().to_str().unwrap();
    let host_veth = testudo_network::plan_detach(&net.network, owner).host_veth;

    assert_eq!(container.run(|| link_mtu("eth0")).unwrap(), 65535);
    assert_eq!(link_mtu(host_veth.as_str()), 65535);
    assert_eq!(
        link_mtu(net.network.bridge.as_str()),
        65535,
        "the bridge takes its port's MTU"
    );
    let routes: serde_json::Value = serde_json::from_str(
        &container
            .run(|| common::run("ip", &["-j", "route", "show", "default"]))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(routes[0]["metrics"][0]["mtu"], 1500, "{routes}");

    // What the kernel makes of it: the container offers 64 KiB segments (1448 bytes at MTU
    // 1500) to the host, directly or through the published port (masqueraded to the
    // gateway), and Ethernet-sized ones to a peer beyond its subnet.
    let container_addr = SocketAddr::new(IpAddr::V4(lease.ipv4), 80);
    let server = listen_in(&container, container_addr);
    for target in [container_addr, SocketAddr::from(([127, 0, 0, 1], port))] {
        let client = connect(target);
        let (accepted, _) = server.accept().unwrap();
        assert_eq!(
            container.run(|| advertised_mss(80)).unwrap(),
            65483,
            "to {target}"
        );
        drop((client, accepted));
    }
    let outside_addr = SocketAddr::new(IpAddr::V4(server_ip), 7003);
    let server = listen_in(&outside, outside_addr);
    let client = container.run(|| connect(outside_addr)).unwrap();
    let (accepted, _) = server.accept().unwrap();
    let local_port = client.local_addr().unwrap().port();
    assert_eq!(container.run(|| advertised_mss(local_port)).unwrap(), 1448);
    drop((client, accepted));
    net.teardown();
}

#[test]
fn attaching_to_a_path_that_is_not_a_netns_is_refused_by_name_and_leaves_nothing() {
    if !testudo_test_support::require_root() {
        return;
    }
    let net = TestNet::new(5);
    let file = tempfile::NamedTempFile::new().unwrap();
    let lease = net
        .ipam
        .update(|s| s.allocate(&net.network.name, "bad"))
        .unwrap();
    let mut request = AttachRequest {
        container_id: "bad".to_owned(),
        netns: file.path().to_path_buf(),
        ifname: IfName::new("eth0").unwrap(),
        ports: vec!["8080:80".parse().unwrap()],
    };
    for (path, message) in [
        (
            file.path().to_path_buf(),
            format!(
                "{} is not a network namespace (not a namespace file)",
                file.path().display()
            ),
        ),
        (
            "/run/netns/tt-does-not-exist".into(),
            "network namespace /run/netns/tt-does-not-exist does not exist".to_owned(),
        ),
    ] {
        request.netns = path;
        let plan = plan_attach(&net.network, &request, &lease).unwrap();
        let err = net.driver.attach(&plan).unwrap_err();
        assert!(matches!(err, BridgeError::Netns(_)), "{err:?}");
        assert_eq!(err.to_string(), message);
        assert!(!common::host_links().contains(plan.host_veth.as_str()));
    }
    net.ipam
        .update(|s| Ok(s.release(&net.network.name, "bad")))
        .unwrap();
    net.teardown();
}

#[test]
fn a_failed_attach_is_rolled_back() {
    if !testudo_test_support::require_root() {
        return;
    }
    let mut net = TestNet::new(6);
    let container = net.netns("c");
    let lease = net
        .ipam
        .update(|s| s.allocate(&net.network.name, "rb"))
        .unwrap();
    let request = AttachRequest {
        container_id: "rb".to_owned(),
        netns: container.path().to_path_buf(),
        ifname: IfName::new("eth0").unwrap(),
        ports: vec!["8080:80".parse().unwrap()],
    };
    let mut plan = plan_attach(&net.network, &request, &lease).unwrap();
    // A bridge that does not exist: the request is refused before anything is made.
    plan.bridge = IfName::new(format!("{}z", net.id)).unwrap();
    let err = net.driver.attach(&plan).unwrap_err();
    assert_eq!(err.to_string(), format!("no link named {}", plan.bridge));
    assert!(!common::host_links().contains(plan.host_veth.as_str()));
    let links = container.run(common::host_links).unwrap();
    assert_eq!(links.into_iter().collect::<Vec<_>>(), ["lo"]);

    // The pair is made and configured, then the port rules cannot be set: both ends go again.
    plan.bridge = net.network.bridge.clone();
    let broken = BridgeDriver::new(Nft::new("/nonexistent/nft", net.id.clone()));
    let err = broken.attach(&plan).unwrap_err();
    assert!(matches!(err, BridgeError::Nft(_)), "{err:?}");
    assert!(!common::host_links().contains(plan.host_veth.as_str()));
    let links = container.run(common::host_links).unwrap();
    assert_eq!(links.into_iter().collect::<Vec<_>>(), ["lo"]);
    net.ipam
        .update(|s| Ok(s.release(&net.network.name, "rb")))
        .unwrap();
    net.teardown();
}

#[test]
fn rules_are_removed_over_netlink_by_owner_and_removing_twice_is_harmless() {
    if !testudo_test_support::require_root() {
        return;
    }
    let id = common::unique_id();
    let nft = Nft::new("nft", id.clone());
    let dnat = |port: u16| testudo_network::NatRule::Dnat {
        hook: testudo_network::DnatHook::Output,
        host_ip: Some("127.0.0.1".parse().unwrap()),
        host_port: port,
        protocol: testudo_network::Protocol::Tcp,
        to: "10.231.9.2:80".parse().unwrap(),
    };
    nft.replace_rules("container:a", &[dnat(1001), dnat(1002)])
        .unwrap();
    nft.replace_rules("container:b", &[dnat(1003)]).unwrap();
    let listed = || common::run("nft", &["-j", "list", "table", "inet", &id]);

    nft.remove_rules("container:a", true).unwrap();
    let table = listed();
    assert!(!table.contains("container:a"), "{table}");
    assert!(table.contains("container:b"), "{table}");
    nft.remove_rules("container:a", true).unwrap();

    nft.remove_rules("container:b", true).unwrap();
    let tables = common::run("nft", &["-j", "list", "tables"]);
    assert!(!tables.contains(&format!("\"{id}\"")), "{tables}");
    nft.remove_rules("container:b", true).unwrap();
}
