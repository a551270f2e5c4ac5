#![allow(clippy::unwrap_used)]
use super::*;

fn v4(s: &str) -> Subnets {
    Subnets {
        ipv4: s.parse().unwrap(),
        ipv6: None,
    }
}

fn dual(s4: &str, s6: &str) -> Subnets {
    Subnets {
        ipv4: s4.parse().unwrap(),
        ipv6: Some(s6.parse().unwrap()),
    }
}

#[test]
fn the_gateway_is_the_first_host_address() {
    let subnets = dual("10.231.0.0/24", "fd00:231::/64");
    assert_eq!(subnets.gateway4(), Ipv4Addr::new(10, 231, 0, 1));
    assert_eq!(subnets.gateway6(), Some("fd00:231::1".parse().unwrap()));
    assert_eq!(v4("10.231.0.0/24").gateway6(), None);
}

#[test]
fn addresses_are_handed_out_lowest_first_skipping_network_and_gateway() {
    let mut ipam = IpamState::default();
    ipam.add_network("n", dual("10.231.0.0/24", "fd00:231::/64"))
        .unwrap();
    let a = ipam.allocate("n", "a").unwrap();
    let b = ipam.allocate("n", "b").unwrap();
    assert_eq!(a.ipv4, Ipv4Addr::new(10, 231, 0, 2));
    assert_eq!(a.ipv6, Some("fd00:231::2".parse().unwrap()));
    assert_eq!(b.ipv4, Ipv4Addr::new(10, 231, 0, 3));
    assert_eq!(b.ipv6, Some("fd00:231::3".parse().unwrap()));
}

#[test]
fn an_owner_asking_again_gets_its_own_lease_back() {
    let mut ipam = IpamState::default();
    ipam.add_network("n", v4("10.231.0.0/24")).unwrap();
    let first = ipam.allocate("n", "a").unwrap();
    assert_eq!(ipam.allocate("n", "a").unwrap(), first);
    assert_eq!(ipam.pool("n").unwrap().leases.len(), 1);
}

#[test]
fn a_released_address_is_reused_lowest_first() {
    let mut ipam = IpamState::default();
    ipam.add_network("n", v4("10.231.0.0/24")).unwrap();
    for owner in ["a", "b", "c"] {
        ipam.allocate("n", owner).unwrap();
    }
    assert_eq!(
        ipam.release("n", "b").unwrap().ipv4,
        Ipv4Addr::new(10, 231, 0, 3)
    );
    assert_eq!(ipam.release("n", "b"), None);
    assert_eq!(ipam.release("missing", "b"), None);
    assert_eq!(
        ipam.allocate("n", "d").unwrap().ipv4,
        Ipv4Addr::new(10, 231, 0, 3)
    );
    assert_eq!(
        ipam.allocate("n", "e").unwrap().ipv4,
        Ipv4Addr::new(10, 231, 0, 5)
    );
}

#[test]
fn a_29_gives_five_addresses_never_twice_then_is_exhausted() {
    let mut ipam = IpamState::default();
    ipam.add_network("n", v4("10.231.0.8/29")).unwrap();
    let mut seen = BTreeSet::new();
    for i in 0..5 {
        let lease = ipam.allocate("n", &format!("o{i}")).unwrap();
        assert!(seen.insert(lease.ipv4), "{} handed out twice", lease.ipv4);
    }
    let expected: BTreeSet<Ipv4Addr> = (10..=14).map(|h| Ipv4Addr::new(10, 231, 0, h)).collect();
    assert_eq!(
        seen, expected,
        "network .8, gateway .9 and broadcast .15 are skipped"
    );
    let err = ipam.allocate("n", "o5").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free address left in 10.231.0.8/29 of network n"
    );
    assert!(ipam.lease("n", "o5").is_none());
}

#[test]
fn an_exhausted_ipv6_subnet_leaves_no_ipv4_lease() {
    let mut ipam = IpamState::default();
    ipam.add_network("n", dual("10.231.0.0/24", "fd00:231::/126"))
        .unwrap();
    ipam.allocate("n", "a").unwrap();
    ipam.allocate("n", "b").unwrap();
    assert!(matches!(
        ipam.allocate("n", "c"),
        Err(IpamError::Exhausted {
            subnet: IpNet::V6(_),
            ..
        })
    ));
    assert_eq!(ipam.pool("n").unwrap().leases.len(), 2);
}

#[test]
fn every_address_of_a_24_is_leased_once() {
    let mut ipam = IpamState::default();
    ipam.add_network("n", v4("10.231.7.0/24")).unwrap();
    let mut seen = BTreeSet::new();
    for i in 0..253 {
        assert!(seen.insert(ipam.allocate("n", &i.to_string()).unwrap().ipv4));
    }
    assert!(!seen.contains(&Ipv4Addr::new(10, 231, 7, 255)));
    assert!(ipam.allocate("n", "last").is_err());
}

#[test]
fn overlapping_subnets_are_refused_naming_both_networks() {
    let mut ipam = IpamState::default();
    ipam.add_network("a", dual("10.231.0.0/16", "fd00:231::/64"))
        .unwrap();
    let err = ipam.add_network("b", v4("10.231.5.0/24")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "subnet 10.231.5.0/24 of network b overlaps 10.231.0.0/16 of network a"
    );
    let err = ipam.add_network("c", v4("10.0.0.0/8")).unwrap_err();
    assert!(matches!(err, IpamError::Overlap { .. }));
    let err = ipam
        .add_network("d", dual("10.232.0.0/16", "fd00:231::8000/120"))
        .unwrap_err();
    assert!(matches!(
        err,
        IpamError::Overlap {
            subnet: IpNet::V6(_),
            ..
        }
    ));
    ipam.add_network("e", v4("10.232.0.0/16")).unwrap();
    assert_eq!(ipam.networks.len(), 2);
}

#[test]
fn adding_a_network_again_is_a_no_op_unless_its_subnets_differ() {
    let mut ipam = IpamState::default();
    ipam.add_network("a", v4("10.231.0.0/24")).unwrap();
    ipam.allocate("a", "x").unwrap();
    ipam.add_network("a", v4("10.231.0.0/24")).unwrap();
    assert_eq!(ipam.pool("a").unwrap().leases.len(), 1);
    assert_eq!(
        ipam.add_network("a", v4("10.231.1.0/24")),
        Err(IpamError::NetworkExists {
            network: "a".to_owned()
        })
    );
}

#[test]
fn unusable_subnets_are_refused() {
    let mut ipam = IpamState::default();
    for (subnets, message) in [
        (
            v4("10.231.0.5/24"),
            "subnet 10.231.0.5/24 cannot be used: host bits are set",
        ),
        (
            v4("10.231.0.0/31"),
            "subnet 10.231.0.0/31 cannot be used: smaller than a /30",
        ),
        (
            dual("10.231.0.0/24", "fd00::/127"),
            "subnet fd00::/127 cannot be used: smaller than a /126",
        ),
    ] {
        assert_eq!(
            ipam.add_network("n", subnets).unwrap_err().to_string(),
            message
        );
    }
    assert!(ipam.networks.is_empty());
}

#[test]
fn a_network_with_leases_cannot_be_removed() {
    let mut ipam = IpamState::default();
    ipam.add_network("n", v4("10.231.0.0/24")).unwrap();
    ipam.allocate("n", "a").unwrap();
    assert!(matches!(
        ipam.remove_network("n"),
        Err(IpamError::InUse { leases: 1, .. })
    ));
    ipam.release("n", "a");
    ipam.remove_network("n").unwrap();
    ipam.remove_network("n").unwrap();
    assert!(ipam.networks.is_empty());
}

#[test]
fn an_unknown_network_is_named() {
    let mut ipam = IpamState::default();
    assert_eq!(
        ipam.allocate("nope", "a").unwrap_err().to_string(),
        "network nope does not exist"
    );
}

#[test]
fn the_state_round_trips_through_json() {
    let mut ipam = IpamState::default();
    ipam.add_network("n", dual("10.231.0.0/24", "fd00:231::/64"))
        .unwrap();
    ipam.allocate("n", "a").unwrap();
    let json = serde_json::to_string(&ipam).unwrap();
    assert_eq!(serde_json::from_str::<IpamState>(&json).unwrap(), ipam);
}
