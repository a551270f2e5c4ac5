#![allow(clippy::unwrap_used)]
use super::*;
use crate::port::Protocol;

fn network(ipv6: bool) -> BridgeNetwork {
    BridgeNetwork {
        name: "default".to_owned(),
        bridge: IfName::new("testudo0").unwrap(),
        subnets: Subnets {
            ipv4: "10.231.0.0/24".parse().unwrap(),
            ipv6: ipv6.then(|| "fd00:231::/64".parse().unwrap()),
        },
    }
}

fn lease(ipv6: bool) -> Lease {
    Lease {
        network: "default".to_owned(),
        owner: "web".to_owned(),
        ipv4: "10.231.0.2".parse().unwrap(),
        ipv6: ipv6.then(|| "fd00:231::2".parse().unwrap()),
    }
}

fn request(ports: &[&str]) -> AttachRequest {
    AttachRequest {
        container_id: "web".to_owned(),
        netns: PathBuf::from("/run/netns/web"),
        ifname: IfName::new("eth0").unwrap(),
        ports: ports.iter().map(|p| p.parse().unwrap()).collect(),
    }
}

#[test]
fn a_network_gets_its_gateway_forwarding_and_masquerade() {
    let plan = plan_network(&network(false));
    assert_eq!(plan.bridge.as_str(), "testudo0");
    assert_eq!(
        plan.addresses,
        vec!["10.231.0.1/24".parse::<IpNet>().unwrap()]
    );
    let keys: Vec<_> = plan.sysctls.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "net/ipv4/ip_forward",
            "net/ipv4/conf/testudo0/route_localnet"
        ]
    );
    assert_eq!(plan.nat_tag, "network:testudo0");
    let bridge = IfName::new("testudo0").unwrap();
    let source: IpNet = "10.231.0.0/24".parse().unwrap();
    assert_eq!(
        plan.nat,
        vec![
            NatRule::MasqueradeOutbound {
                source,
                bridge: bridge.clone()
            },
            NatRule::MasqueradeLoopback {
                bridge: bridge.clone()
            },
            NatRule::MasqueradeHairpin { source, bridge },
        ]
    );
}

#[test]
fn an_ipv6_subnet_adds_its_gateway_forwarding_and_masquerade() {
    let plan = plan_network(&network(true));
    assert_eq!(
        plan.addresses[1],
        "fd00:231::1/64".parse::<IpNet>().unwrap()
    );
    assert!(plan
        .sysctls
        .iter()
        .any(|s| s.key == "net/ipv6/conf/all/forwarding"));
    assert_eq!(plan.nat.len(), 5);
}

#[test]
fn a_container_gets_its_lease_a_default_route_and_stable_veth_names() {
    let plan = plan_attach(&network(false), &request(&[]), &lease(false)).unwrap();
    assert_eq!(
        plan.addresses,
        vec!["10.231.0.2/24".parse::<IpNet>().unwrap()]
    );
    assert_eq!(plan.gateways, vec!["10.231.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!((plan.mtu, plan.default_route_mtu), (65535, 1500));
    assert_eq!(plan.ifname.as_str(), "eth0");
    assert!(plan.host_veth.as_str().starts_with("tv"));
    assert_eq!(plan.host_veth.as_str().len(), 14);
    assert!(plan.nat.is_empty());
    assert_eq!(
        plan_detach(&network(false), "web").host_veth,
        plan.host_veth
    );
    assert_ne!(plan_detach(&network(false), "db").host_veth, plan.host_veth);
}

#[test]
fn a_published_port_is_forwarded_from_outside_and_from_the_host() {
    let plan = plan_attach(
        &network(false),
        &request(&["127.0.0.1:8080:80"]),
        &lease(false),
    )
    .unwrap();
    let expected = |hook| NatRule::Dnat {
        hook,
        host_ip: Some("127.0.0.1".parse().unwrap()),
        host_port: 8080,
        protocol: Protocol::Tcp,
        to: "10.231.0.2:80".parse().unwrap(),
    };
    assert_eq!(
        plan.nat,
        vec![expected(DnatHook::Prerouting), expected(DnatHook::Output)]
    );
    assert_eq!(plan.nat_tag, "container:web");
}

#[test]
fn a_port_on_every_address_is_forwarded_to_each_family_of_the_container() {
    let plan = plan_attach(&network(true), &request(&["53:53/udp"]), &lease(true)).unwrap();
    let targets: Vec<_> = plan
        .nat
        .iter()
        .map(|r| match r {
            NatRule::Dnat { to, .. } => to.to_string(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        targets,
        [
            "10.231.0.2:53",
            "10.231.0.2:53",
            "[fd00:231::2]:53",
            "[fd00:231::2]:53"
        ]
    );
    assert_eq!(plan.gateways.len(), 2);
}

#[test]
fn an_ipv6_host_address_needs_an_ipv6_subnet() {
    let err = plan_attach(&network(false), &request(&["[::1]:80:80"]), &lease(false)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "port [::1]:80:80/tcp is on an IPv6 host address, and network default has no IPv6 subnet"
    );
}

#[test]
fn a_lease_of_someone_else_is_refused() {
    let mut other = lease(false);
    other.owner = "db".to_owned();
    assert!(matches!(
        plan_attach(&network(false), &request(&[]), &other),
        Err(AttachPlanError::WrongLease { .. })
    ));
}
