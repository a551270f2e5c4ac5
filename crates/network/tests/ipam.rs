//! IPAM through its file store: refusals leave the stored state as it was.

#![allow(clippy::unwrap_used)]

use std::fs;

use testudo_network::{IpamError, IpamStore, IpamStoreError, Subnets};

fn subnets(s: &str) -> Subnets {
    Subnets {
        ipv4: s.parse().unwrap(),
        ipv6: None,
    }
}

#[test]
fn an_overlapping_network_is_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = IpamStore::new(dir.path().join("ipam.json"));
    store
        .update(|s| s.add_network("a", subnets("10.231.0.0/16")))
        .unwrap();
    let before = fs::read(store.path()).unwrap();
    let err = store
        .update(|s| s.add_network("b", subnets("10.231.200.0/24")))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "subnet 10.231.200.0/24 of network b overlaps 10.231.0.0/16 of network a"
    );
    assert_eq!(fs::read(store.path()).unwrap(), before);
}

#[test]
fn an_exhausted_pool_is_refused_until_an_address_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let store = IpamStore::new(dir.path().join("ipam.json"));
    store
        .update(|s| s.add_network("n", subnets("10.231.9.0/30")))
        .unwrap();
    let first = store.update(|s| s.allocate("n", "a")).unwrap();
    assert_eq!(first.ipv4.to_string(), "10.231.9.2");
    let err = store.update(|s| s.allocate("n", "b")).unwrap_err();
    assert!(
        matches!(err, IpamStoreError::Ipam(IpamError::Exhausted { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "no free address left in 10.231.9.0/30 of network n"
    );
    store.update(|s| Ok(s.release("n", "a"))).unwrap();
    assert_eq!(
        store.update(|s| s.allocate("n", "b")).unwrap().ipv4,
        first.ipv4
    );
    store.update(|s| Ok(s.release("n", "b"))).unwrap();
    store.update(|s| s.remove_network("n")).unwrap();
    assert!(store.load().unwrap().networks.is_empty());
}
