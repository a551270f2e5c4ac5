//! CNI execution with Debian's plugins (bridge, host-local, loopback, portmap) and with tiny
//! shell-script plugins that fail, print garbage or hang. Only addresses inside the namespaces
//! these tests create (10.232.x.x) and loopback are ever connected to.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use common::{ask, connect, echo_once, unique_id, ForwardingGuard};
use testudo_network::cni::{
    find_config_list, Attachment, Cni, CniError, ErrorCode, NetworkConfigList, PluginError,
    DEFAULT_PLUGIN_DIR,
};
use testudo_network::{IfName, Netlink, Netns, NetnsDir, NetnsName, PortMapping};

/// One test's CNI network: configuration, host-local data and result cache in a temp dir, a
/// bridge `<id>c` on `10.232.<octet>.0/24`, and namespaces `<id>-<suffix>`.
struct CniNet {
    id: String,
    dir: tempfile::TempDir,
    bridge: IfName,
    netns_dir: NetnsDir,
    netns_names: Vec<NetnsName>,
    attachments: Vec<Attachment>,
    _forwarding: ForwardingGuard,
}

impl CniNet {
    /// Writes `<id>.conflist` with `plugins` (a JSON array; `BRIDGE`, `SUBNET` and `DATA` in it
    /// are replaced by the bridge, the subnet and host-local's data directory).
    fn new(octet: u8, plugins: &str) -> Self {
        let id = unique_id();
        let dir = tempfile::tempdir().unwrap();
        let bridge = IfName::new(format!("{id}c")).unwrap();
        for sub in ["conf", "data", "cache", "plugins"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let plugins = plugins
            .replace("BRIDGE", bridge.as_str())
            .replace("SUBNET", &format!("10.232.{octet}.0/24"))
            .replace("DATA", dir.path().join("data").to_str().unwrap());
        fs::write(
            dir.path().join(format!("conf/{id}.conflist")),
            format!(r#"{{"cniVersion": "1.0.0", "name": "{id}", "plugins": {plugins}}}"#),
        )
        .unwrap();
        Self {
            id,
            dir,
            bridge,
            netns_dir: NetnsDir::default(),
            netns_names: Vec::new(),
            attachments: Vec::new(),
            _forwarding: ForwardingGuard::acquire(),
        }
    }

    /// Plugins from the test's script directory, then Debian's.
    fn cni(&self) -> Cni {
        Cni::new(
            vec![
                self.dir.path().join("plugins"),
                PathBuf::from(DEFAULT_PLUGIN_DIR),
            ],
            self.dir.path().join("cache"),
        )
    }

    fn list(&self) -> NetworkConfigList {
        find_config_list(&self.dir.path().join("conf"), &self.id).unwrap()
    }

    fn netns(&mut self, suffix: &str) -> (Netns, Attachment) {
        let name = NetnsName::new(format!("{}-{suffix}", self.id)).unwrap();
        self.netns_names.push(name.clone());
        let netns = self.netns_dir.create(&name).unwrap();
        let attachment = Attachment::new(name.as_str(), netns.path(), IfName::new("eth0").unwrap())
            .unwrap()
            .with_arg("IgnoreUnknown", "1")
            .unwrap();
        self.attachments.push(attachment.clone());
        (netns, attachment)
    }

    /// Writes an executable plugin script `name`.
    fn script(&self, name: &str, body: &str) {
        let path = self.dir.path().join("plugins").join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// The host-local lease files (named by address) of the network.
    fn leases(&self) -> Vec<String> {
        let dir = self.dir.path().join("data").join(&self.id);
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.parse::<IpAddr>().is_ok())
            .collect()
    }

    fn cache_entries(&self) -> usize {
        fs::read_dir(self.dir.path().join("cache")).map_or(0, |d| d.count())
    }

    /// Links enslaved to the test bridge (the host ends of the plugin's veths).
    fn bridge_ports(&self) -> String {
        if !common::host_links().contains(self.bridge.as_str()) {
            return String::new();
        }
        common::run(
            "ip",
            &["-o", "link", "show", "master", self.bridge.as_str()],
        )
    }

    /// Deletes the namespaces and the bridge (the bridge plugin keeps it), and checks that no
    /// veth, lease, cache entry or firewall rule of any container of the test is left.
    fn teardown(mut self) {
        self.clean();
        assert_eq!(self.bridge_ports(), "", "veths left on the bridge");
        assert_eq!(
            self.leases(),
            Vec::<String>::new(),
            "host-local leases left"
        );
        assert_eq!(self.cache_entries(), 0, "cached results left");
        let iptables = common::run("iptables-save", &[]);
        let nft = common::run("nft", &["list", "ruleset"]);
        for name in &self.netns_names {
            for (what, rules) in [("iptables", &iptables), ("nftables", &nft)] {
                assert!(
                    !rules.contains(name.as_str()),
                    "{what} rules of {name} left: {rules}"
                );
            }
        }
        common::assert_no_leftovers(&self.id, [&self.bridge], &self.netns_names);
    }

    fn clean(&mut self) {
        for name in &self.netns_names {
            self.netns_dir.delete(name).unwrap();
        }
        Netlink::open().unwrap().delete_link(&self.bridge).unwrap();
    }
}

impl Drop for CniNet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failed test may not have reached its DELs: run them (DEL is idempotent), so
            // that its iptables rules and leases do not outlive it.
            if let Ok(list) = find_config_list(&self.dir.path().join("conf"), &self.id) {
                for attachment in &self.attachments {
                    let _ = self.cni().del(&list, attachment);
                }
            }
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.clean()));
        }
    }
}

const BRIDGE_CHAIN: &str = r#"[
    {"type": "loopback"},
    {"type": "bridge", "bridge": "BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "DATA", "ranges": [[{"subnet": "SUBNET"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
]"#;

fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ipv4_of(result: &testudo_network::cni::CniResult) -> IpAddr {
    let v4 = result
        .container_addresses("eth0")
        .into_iter()
        .find(|a| a.addr().is_ipv4());
    v4.unwrap().addr()
}

#[test]
fn the_debian_plugin_chain_connects_publishes_checks_and_deletes_without_leftovers() {
    if !testudo_test_support::require_root() {
        return;
    }
    let mut net = CniNet::new(1, BRIDGE_CHAIN);
    let cni = net.cni();
    let list = net.list();
    let (a, attach_a) = net.netns("a");
    let (b, attach_b) = net.netns("b");
    let port = free_loopback_port();
    let published: PortMapping = format!("127.0.0.1:{port}:80").parse().unwrap();
    let attach_a = attach_a.with_port_mappings(&[published]);

    let result_a = cni.add(&list, &attach_a).unwrap();
    let result_b = cni.add(&list, &attach_b).unwrap();
    assert_eq!(ipv4_of(&result_a).to_string(), "10.232.1.2");
    assert_eq!(ipv4_of(&result_b).to_string(), "10.232.1.3");
    assert_eq!(result_a.ips[0].gateway.unwrap().to_string(), "10.232.1.1");
    assert_eq!(net.leases().len(), 2);
    assert_eq!(net.cache_entries(), 2);
    let links = a.run(common::host_links).unwrap();
    assert_eq!(links.into_iter().collect::<Vec<_>>(), ["eth0", "lo"]);
    let lo = a
        .run(|| common::run("ip", &["-o", "link", "show", "lo"]))
        .unwrap();
    assert!(lo.contains("UP"), "loopback is up: {lo}");

    // b reaches a by address.
    let addr_a = ipv4_of(&result_a);
    let served = echo_once(
        a.run(|| TcpListener::bind(SocketAddr::new(addr_a, 7000)))
            .unwrap()
            .unwrap(),
    );
    let stream = b.run(|| connect(SocketAddr::new(addr_a, 7000))).unwrap();
    assert_eq!(ask(stream), format!("hello from {}", ipv4_of(&result_b)));
    served.join().unwrap();

    // The host reaches a through the port published on 127.0.0.1.
    let served = echo_once(
        a.run(|| TcpListener::bind(SocketAddr::new(addr_a, 80)))
            .unwrap()
            .unwrap(),
    );
    let answer = ask(connect(SocketAddr::from(([127, 0, 0, 1], port))));
    assert!(answer.starts_with("hello from 10.232.1."), "{answer}");
    served.join().unwrap();

    // CHECK of the whole chain for b. For a, Debian's portmap 1.1.1 looks for IPv4 rules in the
    // IPv6 table and fails (containernetworking/plugins#819, fixed in 1.2), so a's CHECK runs
    // the chain without portmap.
    cni.check(&list, &attach_b).unwrap();
    let mut without_portmap = list.clone();
    without_portmap
        .plugins
        .retain(|p| p.plugin_type != "portmap");
    cni.check(&without_portmap, &attach_a).unwrap();

    // A new runner over the same cache (a restarted daemon) deletes what the first added; the
    // attachment passed to DEL has no port mappings: they come from the cache.
    let restarted = net.cni();
    let plain_a = Attachment::new(
        attach_a.container_id(),
        attach_a.netns(),
        IfName::new("eth0").unwrap(),
    )
    .unwrap();
    restarted.del(&net.list(), &plain_a).unwrap();
    restarted.del(&net.list(), &attach_b).unwrap();
    let rules = common::run("iptables-save", &[]);
    assert!(
        !rules.contains(attach_a.container_id()),
        "portmap rules left: {rules}"
    );
    restarted.del(&net.list(), &plain_a).unwrap();
    restarted.del(&net.list(), &attach_b).unwrap();
    assert!(matches!(
        restarted.check(&list, &attach_a),
        Err(CniError::NotAdded { .. })
    ));
    net.teardown();
}

/// Appends `<plugin> $CNI_COMMAND` to the log, and keeps its stdin as `<plugin>.<command>.in`.
fn logging(net: &CniNet, plugin: &str) -> String {
    let dir = net.dir.path().display();
    format!(
        "cat > {dir}/{plugin}.$CNI_COMMAND.in\necho \"{plugin} $CNI_COMMAND\" >> {}",
        net.log().display()
    )
}

fn calls(net: &CniNet) -> Vec<String> {
    fs::read_to_string(net.log())
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

const RESULT: &str = r#"{"cniVersion": "1.0.0", "ips": [{"address": "10.232.99.2/24"}]}"#;

/// A chain of script `ok` then `bad`, which runs `bad_body` after logging.
fn scripted(bad_body: &str) -> CniNet {
    let net = CniNet::new(99, r#"[{"type": "ok"}, {"type": "bad", "answer": 42}]"#);
    net.script(
        "ok",
        &format!(
            "{}\n[ \"$CNI_COMMAND\" = ADD ] && echo '{RESULT}'\nexit 0",
            logging(&net, "ok")
        ),
    );
    net.script(
        "bad",
        &format!(
            "{}\n[ \"$CNI_COMMAND\" = DEL ] && exit 0\n{bad_body}",
            logging(&net, "bad")
        ),
    );
    net
}

fn unprivileged_attachment(net: &CniNet) -> Attachment {
    Attachment::new(
        &format!("{}-s", net.id),
        "/run/netns/none",
        IfName::new("eth0").unwrap(),
    )
    .unwrap()
}

fn add_fails(net: &CniNet, cni: &Cni) -> PluginError {
    let err = cni
        .add(&net.list(), &unprivileged_attachment(net))
        .unwrap_err();
    assert_eq!(
        calls(net),
        ["ok ADD", "bad ADD", "bad DEL", "ok DEL"],
        "rolled back in reverse"
    );
    assert_eq!(net.cache_entries(), 0, "nothing cached");
    match err {
        CniError::Plugin { source, .. } => *source,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_plugin_error_object_becomes_a_typed_error_and_add_rolls_back() {
    let net = scripted(
        r#"echo '{"cniVersion": "1.0.0", "code": 7, "msg": "no good", "details": "answer"}'; exit 1"#,
    );
    let err = add_fails(&net, &net.cni());
    match &err {
        PluginError::Reported { plugin, error } => {
            assert_eq!(plugin, "bad");
            assert_eq!(error.code, ErrorCode::InvalidConfig);
            assert_eq!(error.msg, "no good");
            assert_eq!(error.details, "answer");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "plugin bad failed: invalid network config (code 7): no good (answer)"
    );
    // What the second plugin read: its object, the list's name and version, the first's result.
    let stdin: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(net.dir.path().join("bad.ADD.in")).unwrap())
            .unwrap();
    assert_eq!(stdin["name"], net.id.as_str());
    assert_eq!(stdin["cniVersion"], "1.0.0");
    assert_eq!(stdin["answer"], 42);
    assert_eq!(
        stdin["prevResult"],
        serde_json::from_str::<serde_json::Value>(RESULT).unwrap()
    );
}

#[test]
fn a_plugin_printing_garbage_is_an_error_and_add_rolls_back() {
    let net = scripted("echo 'this is not json'; exit 0");
    let err = add_fails(&net, &net.cni());
    assert!(
        matches!(&err, PluginError::Garbage { output, .. } if output == "this is not json"),
        "{err:?}"
    );
}

#[test]
fn a_plugin_failing_without_an_error_object_quotes_its_stderr() {
    let net = scripted("echo 'disk on fire' >&2; exit 3");
    let err = add_fails(&net, &net.cni());
    assert!(
        matches!(&err, PluginError::Exited { stderr, .. } if stderr == "disk on fire"),
        "{err:?}"
    );
}

#[test]
fn a_plugin_past_the_deadline_is_killed_and_add_rolls_back() {
    let net = scripted("exec sleep 30");
    let cni = net.cni().with_timeout(Duration::from_millis(300));
    let err = add_fails(&net, &cni);
    assert!(matches!(err, PluginError::TimedOut { .. }), "{err:?}");
}

#[test]
fn a_missing_plugin_binary_is_named_and_add_rolls_back() {
    let net = CniNet::new(98, r#"[{"type": "ok"}, {"type": "nowhere-to-be-found"}]"#);
    net.script(
        "ok",
        &format!(
            "{}\n[ \"$CNI_COMMAND\" = ADD ] && echo '{RESULT}'\nexit 0",
            logging(&net, "ok")
        ),
    );
    let err = net
        .cni()
        .add(&net.list(), &unprivileged_attachment(&net))
        .unwrap_err();
    let CniError::Plugin { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(&**source, PluginError::NotFound { plugin, .. } if plugin == "nowhere-to-be-found"),
        "{err:?}"
    );
    assert_eq!(calls(&net), ["ok ADD", "ok DEL"]);
    // A later DEL (a container being removed) passes over the plugin that does not exist.
    net.cni()
        .del(&net.list(), &unprivileged_attachment(&net))
        .unwrap();
    assert_eq!(calls(&net), ["ok ADD", "ok DEL", "ok DEL"]);
}

/// A failing plugin after the real bridge plugin: the rollback's DEL removes the veth and
/// releases host-local's lease.
fn real_chain_rolls_back(octet: u8, bad_body: &str) {
    if !testudo_test_support::require_root() {
        return;
    }
    let chain = BRIDGE_CHAIN.replace(
        r#"{"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}"#,
        r#"{"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}, {"type": "bad"}"#,
    );
    let mut net = CniNet::new(octet, &chain);
    net.script(
        "bad",
        &format!("[ \"$CNI_COMMAND\" = DEL ] && exit 0\n{bad_body}"),
    );
    let (netns, attachment) = net.netns("r");
    let port = free_loopback_port();
    let attachment =
        attachment.with_port_mappings(&[format!("127.0.0.1:{port}:80").parse().unwrap()]);
    let err = net.cni().add(&net.list(), &attachment).unwrap_err();
    assert!(matches!(err, CniError::Plugin { .. }), "{err:?}");
    let links = netns.run(common::host_links).unwrap();
    assert_eq!(
        links.into_iter().collect::<Vec<_>>(),
        ["lo"],
        "the veth is gone"
    );
    net.teardown();
}

#[test]
fn a_failing_plugin_after_the_real_chain_rolls_the_chain_back() {
    real_chain_rolls_back(2, r#"echo '{"code": 100, "msg": "refused"}'; exit 1"#);
}

#[test]
fn a_garbage_printing_plugin_after_the_real_chain_rolls_the_chain_back() {
    real_chain_rolls_back(3, "echo '{\"cniVersion\": 1'; exit 0");
}

#[test]
fn a_network_missing_from_the_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = find_config_list(dir.path(), "absent").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no CNI network absent in {}", dir.path().display())
    );
}
