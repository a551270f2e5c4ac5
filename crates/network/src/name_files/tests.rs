#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn request(dns: DnsSource) -> NameFilesRequest {
    NameFilesRequest {
        hostname: "web".to_owned(),
        aliases: vec!["acme-web".to_owned(), "web".to_owned()],
        addresses: vec![ip("10.231.0.2"), ip("fd00::2")],
        extra_hosts: vec![("db.internal".to_owned(), ip("10.0.0.9"))],
        own_netns: true,
        dns,
    }
}

const HOST_RESOLV: &str = "# generated\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.1.1.1\n\
    nameserver fe80::1%eth0\ndomain old.example\nsearch corp.example example\noptions ndots:2\noptions edns0\n";

#[test]
fn hosts_holds_localhost_and_the_containers_names_on_each_address() {
    let files = plan_name_files(&request(DnsSource::Host(String::new()))).unwrap();
    let lines: Vec<&str> = files.hosts.lines().collect();
    assert_eq!(lines[0], "127.0.0.1\tlocalhost");
    assert_eq!(lines[1], "::1\tlocalhost ip6-localhost ip6-loopback");
    assert!(lines.contains(&"10.231.0.2\tweb acme-web"), "{lines:?}");
    assert!(lines.contains(&"fd00::2\tweb acme-web"), "{lines:?}");
    assert_eq!(lines.last(), Some(&"10.0.0.9\tdb.internal"));
    assert_eq!(files.hostname, "web\n");
}

#[test]
fn a_container_without_addresses_maps_its_name_to_loopback() {
    let mut req = request(DnsSource::Host(String::new()));
    req.addresses.clear();
    req.aliases.clear();
    let files = plan_name_files(&req).unwrap();
    assert!(files.hosts.contains("127.0.1.1\tweb\n"), "{}", files.hosts);
}

#[test]
fn the_hosts_resolv_conf_loses_loopback_servers_in_a_netns_of_its_own() {
    let files = plan_name_files(&request(DnsSource::Host(HOST_RESOLV.to_owned()))).unwrap();
    assert_eq!(
        files.resolv_conf,
        "nameserver 10.1.1.1\nsearch corp.example example\noptions ndots:2 edns0\n"
    );
}

#[test]
fn the_hosts_resolv_conf_is_kept_whole_in_the_hosts_namespace() {
    let mut req = request(DnsSource::Host(HOST_RESOLV.to_owned()));
    req.own_netns = false;
    let files = plan_name_files(&req).unwrap();
    assert!(files
        .resolv_conf
        .starts_with("nameserver 127.0.0.53\nnameserver ::1\nnameserver 10.1.1.1\n"));
}

#[test]
fn only_loopback_servers_fall_back_to_public_ones() {
    let files = plan_name_files(&request(DnsSource::Host(
        "nameserver 127.0.0.53\n".to_owned(),
    )))
    .unwrap();
    assert_eq!(
        files.resolv_conf,
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    );
    let files = plan_name_files(&request(DnsSource::Host(String::new()))).unwrap();
    assert_eq!(
        files.resolv_conf,
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    );
}

#[test]
fn given_resolver_settings_are_used_as_they_are() {
    let given = DnsConfig {
        nameservers: vec![ip("127.0.0.1"), ip("10.9.9.9")],
        search: vec!["svc.local".to_owned()],
        options: vec!["ndots:5".to_owned()],
    };
    let files = plan_name_files(&request(DnsSource::Given(given.clone()))).unwrap();
    assert_eq!(
        files.resolv_conf,
        "nameserver 127.0.0.1\nnameserver 10.9.9.9\nsearch svc.local\noptions ndots:5\n"
    );
    assert_eq!(
        DnsConfig::parse(&files.resolv_conf),
        given,
        "render and parse round-trip"
    );
}

#[test]
fn invalid_names_are_refused_by_name() {
    for bad in ["", "-web", "web_1", "a..b", "we b", &"x".repeat(65)] {
        let mut req = request(DnsSource::Host(String::new()));
        req.hostname = bad.to_owned();
        let err = plan_name_files(&req).unwrap_err();
        assert!(
            matches!(&err, NameFilesError::InvalidName { name, .. } if name == bad),
            "{err:?}"
        );
    }
    let mut req = request(DnsSource::Host(String::new()));
    req.extra_hosts
        .push(("bad/name".to_owned(), ip("10.0.0.1")));
    assert!(plan_name_files(&req)
        .unwrap_err()
        .to_string()
        .starts_with("\"bad/name\" is not a valid host name"));
}

#[test]
fn the_files_are_written_into_a_directory_and_replaced_on_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("c1");
    let files = plan_name_files(&request(DnsSource::Host(HOST_RESOLV.to_owned()))).unwrap();
    let paths = files.write_to(&target).unwrap();
    assert_eq!(
        paths,
        [
            target.join("hosts"),
            target.join("resolv.conf"),
            target.join("hostname")
        ]
    );
    assert_eq!(std::fs::read_to_string(&paths[0]).unwrap(), files.hosts);
    assert_eq!(
        std::fs::read_to_string(&paths[1]).unwrap(),
        files.resolv_conf
    );
    assert_eq!(std::fs::read_to_string(&paths[2]).unwrap(), "web\n");
    for path in &paths {
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
    let mut req = request(DnsSource::Host(String::new()));
    req.hostname = "other".to_owned();
    plan_name_files(&req).unwrap().write_to(&target).unwrap();
    assert_eq!(std::fs::read_to_string(&paths[2]).unwrap(), "other\n");
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        3,
        "no temporary file left"
    );
}

#[test]
fn the_hosts_resolv_conf_is_read_from_a_file_and_a_missing_one_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    std::fs::write(&path, "nameserver 10.2.2.2\n").unwrap();
    assert_eq!(
        DnsSource::read_host(&path).unwrap(),
        DnsSource::Host("nameserver 10.2.2.2\n".to_owned())
    );
    assert_eq!(
        DnsSource::read_host(&dir.path().join("none")).unwrap(),
        DnsSource::Host(String::new())
    );
    assert!(matches!(
        DnsSource::read_host(dir.path()),
        Err(NameFilesError::Read { .. })
    ));
}
