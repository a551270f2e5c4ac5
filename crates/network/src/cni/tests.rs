#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::{json, Map};

use super::cache::{CacheEntry, ResultCache, CACHE_KIND};
use super::exec::{find_plugin, plugin_stdin, CniCommand, Invocation};
use super::*;

const CONFLIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "testnet",
  "plugins": [
    {"type": "bridge", "bridge": "tb0", "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "runtimeConfig": {"stale": 1}}
  ]
}"#;

fn list() -> NetworkConfigList {
    NetworkConfigList::parse(CONFLIST.as_bytes(), None).unwrap()
}

fn invalid_reason(doc: &str) -> String {
    match NetworkConfigList::parse(doc.as_bytes(), None) {
        Err(CniConfigError::Invalid { reason, .. }) => reason,
        other => panic!("{doc}: {other:?}"),
    }
}

#[test]
fn a_conflist_parses_with_its_plugins_in_order() {
    let list = list();
    assert_eq!(list.name, "testnet");
    assert_eq!(list.cni_version, "1.0.0");
    assert!(!list.disable_check);
    let types: Vec<_> = list
        .plugins
        .iter()
        .map(|p| p.plugin_type.as_str())
        .collect();
    assert_eq!(types, ["bridge", "portmap"]);
    assert!(list.plugins[1].has_capability("portMappings"));
    assert!(!list.plugins[0].has_capability("portMappings"));
}

#[test]
fn a_single_conf_is_wrapped_as_a_list_of_one() {
    let conf = r#"{"cniVersion": "0.4.0", "name": "single", "type": "bridge", "bridge": "x"}"#;
    let list = NetworkConfigList::parse(conf.as_bytes(), None).unwrap();
    assert_eq!(list.plugins.len(), 1);
    assert_eq!(list.plugins[0].plugin_type, "bridge");
    assert_eq!(list.plugins[0].object["bridge"], "x");
}

#[test]
fn invalid_configurations_are_refused_saying_why() {
    assert!(invalid_reason("[]").contains("not a JSON object"));
    assert!(invalid_reason(r#"{"cniVersion": "1.0.0", "plugins": []}"#).contains("no \"name\""));
    assert!(invalid_reason(r#"{"name": "n", "type": "x"}"#).contains("cniVersion"));
    assert!(
        invalid_reason(r#"{"cniVersion": "0.2.0", "name": "n", "type": "x"}"#)
            .contains("not supported")
    );
    assert!(
        invalid_reason(r#"{"cniVersion": "1.0.0", "name": "n", "plugins": []}"#).contains("empty")
    );
    assert!(
        invalid_reason(r#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{}]}"#)
            .contains("no \"type\"")
    );
    assert!(invalid_reason(
        r#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../../bin/sh"}]}"#
    )
    .contains("not a binary name"));
    assert!(
        invalid_reason(r#"{"cniVersion": "1.0.0", "name": "../x", "type": "bridge"}"#)
            .contains("not valid")
    );
    assert!(matches!(
        NetworkConfigList::parse(b"{not json", Some(Path::new("/x.conf"))),
        Err(CniConfigError::Parse { path, .. }) if path == Path::new("/x.conf")
    ));
}

#[test]
fn a_directory_is_read_in_file_name_order_and_searched_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, net: &str, plugin: &str| {
        std::fs::write(
            dir.path().join(name),
            format!(r#"{{"cniVersion": "1.0.0", "name": "{net}", "type": "{plugin}"}}"#),
        )
        .unwrap();
    };
    write("20-b.conf", "b", "second");
    write("10-a.conflist", "a", "first");
    write("30-b.json", "b", "shadowed");
    std::fs::write(dir.path().join("README"), "not a configuration").unwrap();
    let lists = load_config_lists(dir.path()).unwrap();
    let names: Vec<_> = lists.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "b"]);
    let b = find_config_list(dir.path(), "b").unwrap();
    assert_eq!(b.plugins[0].plugin_type, "second");
    assert_eq!(b.source, Some(dir.path().join("20-b.conf")));
    assert!(matches!(
        find_config_list(dir.path(), "c"),
        Err(CniConfigError::NotFound { name, .. }) if name == "c"
    ));
}

#[test]
fn plugin_stdin_carries_name_version_only_declared_capabilities_and_prev_result() {
    let list = list();
    let mut caps = Map::new();
    caps.insert("portMappings".into(), json!([{"hostPort": 8080}]));
    caps.insert("bandwidth".into(), json!({"rate": 1}));
    let prev = json!({"cniVersion": "1.0.0", "ips": []});

    let bridge = plugin_stdin(&list, &list.plugins[0], &caps, None);
    assert_eq!(bridge["name"], "testnet");
    assert_eq!(bridge["cniVersion"], "1.0.0");
    assert_eq!(bridge["bridge"], "tb0");
    assert!(bridge.get("runtimeConfig").is_none());
    assert!(bridge.get("prevResult").is_none());

    let portmap = plugin_stdin(&list, &list.plugins[1], &caps, Some(&prev));
    assert_eq!(
        portmap["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080}]}),
        "only declared capabilities, and the file's own runtimeConfig is replaced"
    );
    assert_eq!(portmap["prevResult"], prev);
}

#[test]
fn the_environment_holds_the_cni_variables_and_nothing_inherited() {
    let dirs = [PathBuf::from("/a"), PathBuf::from("/b")];
    let args = [
        ("K8S_POD_NAME".to_owned(), "web".to_owned()),
        ("X".to_owned(), "1".to_owned()),
    ];
    let invocation = Invocation {
        command: CniCommand::Del,
        container_id: "c1",
        netns: Path::new("/run/netns/c1"),
        ifname: "eth0",
        args: &args,
        plugin_dirs: &dirs,
    };
    let env: std::collections::BTreeMap<_, _> = invocation.environment().into_iter().collect();
    assert_eq!(env["CNI_COMMAND"], "DEL");
    assert_eq!(env["CNI_CONTAINERID"], "c1");
    assert_eq!(env["CNI_NETNS"], "/run/netns/c1");
    assert_eq!(env["CNI_IFNAME"], "eth0");
    assert_eq!(env["CNI_PATH"], "/a:/b");
    assert_eq!(env["CNI_ARGS"], "K8S_POD_NAME=web;X=1");
    assert!(env.contains_key("PATH"));
    assert_eq!(env.len(), 7);
}

#[test]
fn results_parse_into_interfaces_addresses_routes_and_dns() {
    let raw = json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff"},
            {"name": "eth0", "mac": "11:22:33:44:55:66", "sandbox": "/run/netns/x"}
        ],
        "ips": [{"address": "10.9.0.2/24", "gateway": "10.9.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.10.0.0/16", "gw": "10.9.0.254"}],
        "dns": {"nameservers": ["10.9.0.1"], "search": ["svc.local"]}
    });
    let result = CniResult::parse(raw.clone()).unwrap();
    assert_eq!(
        result.interfaces[1].sandbox.as_deref(),
        Some("/run/netns/x")
    );
    assert_eq!(result.ips[0].address.to_string(), "10.9.0.2/24");
    assert_eq!(result.ips[0].gateway.unwrap().to_string(), "10.9.0.1");
    assert_eq!(result.routes[1].gw.unwrap().to_string(), "10.9.0.254");
    assert_eq!(result.dns.nameservers, ["10.9.0.1"]);
    assert_eq!(
        result.container_addresses("eth0")[0].to_string(),
        "10.9.0.2/24"
    );
    assert!(result.container_addresses("eth1").is_empty());
    assert_eq!(result.raw, raw);
    assert!(
        CniResult::parse(json!({"ips": []})).is_err(),
        "no cniVersion"
    );
    assert!(
        CniResult::parse(json!({"cniVersion": "1.0.0", "ips": [{"address": "nope"}]})).is_err()
    );
}

#[test]
fn error_objects_parse_into_typed_codes() {
    let error =
        ErrorObject::parse(br#"{"cniVersion":"1.0.0","code":7,"msg":"bad","details":"why"}"#)
            .unwrap();
    assert_eq!(error.code, ErrorCode::InvalidConfig);
    assert_eq!(
        error.to_string(),
        "invalid network config (code 7): bad (why)"
    );
    assert_eq!(
        ErrorObject::parse(br#"{"code": 11}"#).unwrap().code,
        ErrorCode::TryAgainLater
    );
    assert_eq!(
        ErrorObject::parse(br#"{"code": 123, "msg": "x"}"#)
            .unwrap()
            .code,
        ErrorCode::Other(123)
    );
    assert_eq!(ErrorCode::from_number(3).number(), 3);
    assert!(ErrorObject::parse(b"garbage").is_none());
    assert!(ErrorObject::parse(br#"{"msg": "no code"}"#).is_none());
}

#[test]
fn plugins_are_found_in_the_first_directory_holding_an_executable() {
    use std::os::unix::fs::PermissionsExt;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(a.path().join("p"), "not executable").unwrap();
    std::fs::write(b.path().join("p"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(b.path().join("p"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
    assert_eq!(find_plugin("p", &dirs).unwrap(), b.path().join("p"));
    assert!(
        matches!(find_plugin("q", &dirs), Err(PluginError::NotFound { plugin, .. }) if plugin == "q")
    );
}

#[test]
fn attachments_refuse_ids_and_args_cni_cannot_carry() {
    let eth0 = IfName::new("eth0").unwrap();
    assert!(Attachment::new("ok-id_1.x", "/run/netns/x", eth0.clone()).is_ok());
    for bad in ["", "-x", "a/b", "a b", "../x"] {
        assert_eq!(
            Attachment::new(bad, "/x", eth0.clone()),
            Err(AttachmentError::ContainerId(bad.to_owned()))
        );
    }
    let attachment = Attachment::new("c", "/x", eth0).unwrap();
    assert!(attachment.clone().with_arg("K", "V").is_ok());
    assert!(attachment.clone().with_arg("K=", "V").is_err());
    assert!(attachment.clone().with_arg("K", "a;b").is_err());
    assert!(attachment.with_arg("", "v").is_err());
}

#[test]
fn port_mappings_become_the_portmap_capability() {
    let ports: Vec<PortMapping> = ["127.0.0.1:8080:80", "53:53/udp"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let attachment = Attachment::new("c", "/x", IfName::new("eth0").unwrap())
        .unwrap()
        .with_port_mappings(&ports);
    assert_eq!(
        attachment.capability_args["portMappings"],
        json!([
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
            {"hostPort": 53, "containerPort": 53, "protocol": "udp"}
        ])
    );
}

#[test]
fn the_result_cache_stores_loads_and_removes_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ResultCache::new(dir.path().join("results"));
    assert!(cache.load("n", "c", "eth0").unwrap().is_none());
    let entry = CacheEntry {
        kind: CACHE_KIND.to_owned(),
        container_id: "c".into(),
        network_name: "n".into(),
        if_name: "eth0".into(),
        netns: "/run/netns/c".into(),
        cni_args: vec![("A".into(), "B".into())],
        capability_args: Map::new(),
        config: list().to_value(),
        result: json!({"cniVersion": "1.0.0"}),
    };
    cache.store(&entry).unwrap();
    assert_eq!(
        cache.path("n", "c", "eth0"),
        dir.path().join("results/n-c-eth0")
    );
    assert_eq!(cache.load("n", "c", "eth0").unwrap(), Some(entry.clone()));
    let reparsed = NetworkConfigList::parse(entry.config.to_string().as_bytes(), None).unwrap();
    assert_eq!(
        reparsed.plugins,
        list().plugins,
        "the cached configuration round-trips"
    );
    cache.remove("n", "c", "eth0").unwrap();
    cache.remove("n", "c", "eth0").unwrap();
    assert!(cache.load("n", "c", "eth0").unwrap().is_none());
    std::fs::write(cache.path("n", "c", "eth0"), "junk").unwrap();
    assert!(matches!(
        cache.load("n", "c", "eth0"),
        Err(CniCacheError::Parse { .. })
    ));
}

#[test]
fn check_is_refused_for_old_versions_and_when_disabled() {
    let cni = Cni::new(vec![], tempfile::tempdir().unwrap().path());
    let attachment = Attachment::new("c", "/x", IfName::new("eth0").unwrap()).unwrap();
    let old = NetworkConfigList::parse(
        br#"{"cniVersion": "0.3.1", "name": "n", "type": "x"}"#,
        None,
    )
    .unwrap();
    assert!(matches!(
        cni.check(&old, &attachment),
        Err(CniError::CheckUnavailable { .. })
    ));
    let disabled = NetworkConfigList::parse(
        br#"{"cniVersion": "1.0.0", "name": "n", "disableCheck": true, "type": "x"}"#,
        None,
    )
    .unwrap();
    assert!(matches!(
        cni.check(&disabled, &attachment),
        Err(CniError::CheckUnavailable { .. })
    ));
}
