//! NAT rules in an nftables table of testudo's own: added through `nft -j -f -`, listed and
//! deleted over netlink.
//!
//! Rules are planned as [`NatRule`] values (pure, unit-tested), rendered to nftables JSON
//! (`libnftables-json(5)`), and added in one `nft` transaction per change. Every rule carries
//! a comment naming its owner (`network:<name>`, `container:<id>`); replacing an owner's rules
//! finds its rules' handles in a netlink dump of the table ([`netlink`]) and deletes them by
//! handle in the same `nft` transaction as the additions, so a change is all or nothing and
//! repeating it is harmless. Removing an owner's rules is a dump and one netlink transaction
//! of `NFT_MSG_DELRULE`s: no `nft` process at all.
//!
//! Why this split: an `nft` process costs ~5 ms on a busy host (exec, libraries, its own
//! cache dump), and the old path ran two per change (`nft -j -a list`, then the batch). A
//! listing and a deletion by handle are a few fixed attributes, cheap to speak directly; a
//! rule is a program of expressions (payload offsets, register allocation, `fib`, `ct`, NAT
//! ranges) whose encoding libnftables owns and documents, so additions stay with `nft`.
//! Why shared chains with tagged rules rather than base chains per owner (deletable by name):
//! deleting a base chain unregisters its netfilter hook, which waits for an RCU grace period
//! (~20 ms per chain here), where deleting a rule does not wait.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::port::Protocol;
use crate::IfName;

mod netlink;

use netlink::{Deletion, ListedRule, Socket};

/// The table testudo's rules live in, in the `inet` family.
pub const DEFAULT_TABLE: &str = "testudo";

/// The base chains of the table: name, hook and priority (`dstnat` -100, `srcnat` 100).
const CHAINS: [(&str, &str, i32); 3] = [
    ("prerouting", "prerouting", -100),
    ("output", "output", -100),
    ("postrouting", "postrouting", 100),
];

/// Where a destination NAT rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnatHook {
    /// Packets arriving from other hosts or namespaces.
    Prerouting,
    /// Packets from the host's own processes (`127.0.0.1` included).
    Output,
}

/// One NAT rule, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatRule {
    /// Masquerade traffic from `source` that leaves through any interface but `bridge`.
    MasqueradeOutbound {
        /// The network's subnet.
        source: IpNet,
        /// The network's bridge.
        bridge: IfName,
    },
    /// Masquerade traffic from the host's loopback addresses (`127.0.0.0/8`) that a
    /// published port sends into `bridge`: a container cannot answer `127.0.0.1`.
    MasqueradeLoopback {
        /// The network's bridge.
        bridge: IfName,
    },
    /// Masquerade destination-NATed traffic from `source` back into `bridge` (a container
    /// reaching a published port of its own network), so the reply returns through the host.
    MasqueradeHairpin {
        /// The network's subnet.
        source: IpNet,
        /// The network's bridge.
        bridge: IfName,
    },
    /// Forward a host port to a container address.
    Dnat {
        /// Where the rule applies.
        hook: DnatHook,
        /// The host address matched; `None` matches every local address.
        host_ip: Option<IpAddr>,
        /// The host port.
        host_port: u16,
        /// The protocol.
        protocol: Protocol,
        /// The container's address and port.
        to: SocketAddr,
    },
}

fn ip_proto(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn prefix(net: IpNet) -> Value {
    json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn oifname(op: &str, bridge: &IfName) -> Value {
    matches(
        op,
        json!({"meta": {"key": "oifname"}}),
        json!(bridge.as_str()),
    )
}

impl NatRule {
    /// The chain it goes in.
    pub fn chain(&self) -> &'static str {
        match self {
            Self::Dnat {
                hook: DnatHook::Prerouting,
                ..
            } => "prerouting",
            Self::Dnat {
                hook: DnatHook::Output,
                ..
            } => "output",
            _ => "postrouting",
        }
    }

    /// The rule's expressions in nftables JSON.
    pub fn expressions(&self) -> Vec<Value> {
        let masquerade = json!({"masquerade": null});
        match self {
            Self::MasqueradeOutbound { source, bridge } => vec![
                matches(
                    "==",
                    payload(ip_proto(source.addr()), "saddr"),
                    prefix(*source),
                ),
                oifname("!=", bridge),
                masquerade,
            ],
            Self::MasqueradeLoopback { bridge } => vec![
                oifname("==", bridge),
                matches(
                    "==",
                    payload("ip", "saddr"),
                    json!({"prefix": {"addr": "127.0.0.0", "len": 8}}),
                ),
                masquerade,
            ],
            Self::MasqueradeHairpin { source, bridge } => vec![
                oifname("==", bridge),
                matches(
                    "==",
                    payload(ip_proto(source.addr()), "saddr"),
                    prefix(*source),
                ),
                matches("in", json!({"ct": {"key": "status"}}), json!("dnat")),
                masquerade,
            ],
            Self::Dnat {
                host_ip,
                host_port,
                protocol,
                to,
                ..
            } => {
                let mut exprs = vec![match host_ip {
                    Some(ip) => {
                        matches("==", payload(ip_proto(*ip), "daddr"), json!(ip.to_string()))
                    }
                    None => matches(
                        "==",
                        json!({"fib": {"result": "type", "flags": ["daddr"]}}),
                        json!("local"),
                    ),
                }];
                if host_ip.is_none() {
                    // `fib` matches both families: keep the rule to the container's one.
                    exprs.push(matches(
                        "==",
                        json!({"meta": {"key": "nfproto"}}),
                        json!(if to.is_ipv4() { "ipv4" } else { "ipv6" }),
                    ));
                }
                exprs.push(matches(
                    "==",
                    payload(protocol.as_str(), "dport"),
                    json!(host_port),
                ));
                exprs.push(json!({"dnat": {
                    "family": ip_proto(to.ip()),
                    "addr": to.ip().to_string(),
                    "port": to.port(),
                }}));
                exprs
            }
        }
    }
}

/// A failed nftables operation.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be run.
    #[error("run {binary} to {operation}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// What it was to do.
        operation: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused the change.
    #[error("nft could not {operation}: {stderr}")]
    Refused {
        /// What it was to do.
        operation: String,
        /// Its error output, on one line.
        stderr: String,
    },
    /// The table could not be listed or changed over netlink.
    #[error("nftables could not {operation}")]
    Netlink {
        /// What it was to do.
        operation: String,
        /// The kernel's or the socket's errno.
        #[source]
        source: std::io::Error,
    },
}

/// The `inet` table testudo owns, changed through the `nft` binary.
#[derive(Debug, Clone)]
pub struct Nft {
    binary: PathBuf,
    table: String,
    /// Opened on first use, shared by clones, closed with the last one.
    socket: Arc<Mutex<Option<Socket>>>,
}

impl Default for Nft {
    fn default() -> Self {
        Self::new("nft", DEFAULT_TABLE)
    }
}

impl Nft {
    /// The `inet` table `table`, changed with `binary`.
    pub fn new(binary: impl Into<PathBuf>, table: impl Into<String>) -> Self {
        Self {
            binary: binary.into(),
            table: table.into(),
            socket: Arc::default(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn run(&self, args: &[&str], input: Option<&Value>, operation: &str) -> Result<(), NftError> {
        let spawn_error = |source| NftError::Spawn {
            binary: self.binary.clone(),
            operation: operation.to_owned(),
            source,
        };
        let mut child = Command::new(&self.binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(input.to_string().as_bytes())
                .map_err(spawn_error)?;
        }
        let output = child.wait_with_output().map_err(spawn_error)?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(NftError::Refused {
                operation: operation.to_owned(),
                stderr: stderr.split_whitespace().collect::<Vec<_>>().join(" "),
            })
        }
    }

    /// The table's rules with their handles, or `None` when the table does not exist.
    fn list(&self) -> Result<Option<Vec<ListedRule>>, NftError> {
        self.with_socket(|socket| netlink::list_rules(socket, &self.table))
            .map_err(|e| NftError::Netlink {
                operation: format!("list table inet {}", self.table),
                source: e.into(),
            })
    }

    /// Runs `f` on the table's netlink socket, opening it first if need be; a socket that
    /// failed is dropped, so the next call opens a fresh one.
    fn with_socket<T>(
        &self,
        f: impl FnOnce(&mut Socket) -> Result<T, rustix::io::Errno>,
    ) -> Result<T, rustix::io::Errno> {
        let mut slot = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        let socket = match &mut *slot {
            Some(socket) => socket,
            empty => empty.insert(Socket::open()?),
        };
        let result = f(socket);
        if result.is_err() {
            *slot = None;
        }
        result
    }

    fn delete_commands(&self, listed: &[ListedRule], tag: &str) -> Vec<Value> {
        listed
            .iter()
            .filter(|rule| rule.comment.as_deref() == Some(tag))
            .map(|rule| {
                json!({"delete": {"rule": {
                    "family": "inet", "table": self.table, "chain": rule.chain, "handle": rule.handle,
                }}})
            })
            .collect()
    }

    /// Makes `rules` the rules tagged `tag`: in one transaction, creates the table and its
    /// chains when missing, deletes the rules tagged `tag` and adds `rules`.
    pub fn replace_rules(&self, tag: &str, rules: &[NatRule]) -> Result<(), NftError> {
        let listed = self.list()?.unwrap_or_default();
        let mut commands = vec![json!({"add": {"table": {"family": "inet", "name": self.table}}})];
        for (name, hook, prio) in CHAINS {
            commands.push(json!({"add": {"chain": {
                "family": "inet", "table": self.table, "name": name,
                "type": "nat", "hook": hook, "prio": prio, "policy": "accept",
            }}}));
        }
        commands.extend(self.delete_commands(&listed, tag));
        for rule in rules {
            commands.push(json!({"add": {"rule": {
                "family": "inet", "table": self.table, "chain": rule.chain(),
                "comment": tag, "expr": rule.expressions(),
            }}}));
        }
        self.apply(commands, &format!("set the rules of {tag}"))
    }

    /// Deletes the rules tagged `tag` (over netlink, no `nft` process); with
    /// `drop_empty_table`, also the table when no rule is left in it. Nothing to delete is no
    /// error.
    pub fn remove_rules(&self, tag: &str, drop_empty_table: bool) -> Result<(), NftError> {
        let Some(listed) = self.list()? else {
            return Ok(());
        };
        let tagged: Vec<ListedRule> = listed
            .iter()
            .filter(|rule| rule.comment.as_deref() == Some(tag))
            .cloned()
            .collect();
        let what = if drop_empty_table && tagged.len() == listed.len() {
            Deletion::Table
        } else {
            Deletion::Rules(&tagged)
        };
        self.with_socket(|socket| netlink::delete(socket, &self.table, what))
            .map_err(|e| NftError::Netlink {
                operation: format!("remove the rules of {tag}"),
                source: e.into(),
            })
    }

    fn apply(&self, commands: Vec<Value>, operation: &str) -> Result<(), NftError> {
        let batch = json!({"nftables": commands});
        self.run(&["-j", "-f", "-"], Some(&batch), operation)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bridge() -> IfName {
        IfName::new("tb0").unwrap()
    }

    #[test]
    fn outbound_masquerade_matches_the_subnet_leaving_by_another_interface() {
        let rule = NatRule::MasqueradeOutbound {
            source: "10.231.0.0/24".parse().unwrap(),
            bridge: bridge(),
        };
        assert_eq!(rule.chain(), "postrouting");
        assert_eq!(
            Value::Array(rule.expressions()),
            json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                           "right": {"prefix": {"addr": "10.231.0.0", "len": 24}}}},
                {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "tb0"}},
                {"masquerade": null},
            ])
        );
    }

    #[test]
    fn a_dnat_rule_without_host_address_matches_local_addresses_of_its_family() {
        let rule = NatRule::Dnat {
            hook: DnatHook::Output,
            host_ip: None,
            host_port: 8080,
            protocol: Protocol::Udp,
            to: "10.231.0.2:53".parse().unwrap(),
        };
        assert_eq!(rule.chain(), "output");
        assert_eq!(
            Value::Array(rule.expressions()),
            json!([
                {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}},
                           "right": "local"}},
                {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                           "right": 8080}},
                {"dnat": {"family": "ip", "addr": "10.231.0.2", "port": 53}},
            ])
        );
    }

    #[test]
    fn a_dnat_rule_with_a_host_address_matches_that_address() {
        let rule = NatRule::Dnat {
            hook: DnatHook::Prerouting,
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: 80,
            protocol: Protocol::Tcp,
            to: "10.231.0.2:8080".parse().unwrap(),
        };
        assert_eq!(rule.chain(), "prerouting");
        assert_eq!(
            rule.expressions()[0],
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                             "right": "127.0.0.1"}})
        );
    }

    #[test]
    fn only_the_rules_of_the_tag_are_deleted() {
        let nft = Nft::new("nft", "t");
        let listed = vec![
            ListedRule {
                chain: "output".into(),
                handle: 4,
                comment: Some("container:a".into()),
            },
            ListedRule {
                chain: "output".into(),
                handle: 5,
                comment: Some("container:ab".into()),
            },
            ListedRule {
                chain: "postrouting".into(),
                handle: 6,
                comment: None,
            },
        ];
        assert_eq!(
            nft.delete_commands(&listed, "container:a"),
            vec![
                json!({"delete": {"rule": {"family": "inet", "table": "t", "chain": "output", "handle": 4}}})
            ]
        );
    }
}
