//! Published ports: `[hostIP:]hostPort:containerPort[/tcp|udp]`, and the check that a host
//! port is published once.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`, as nftables and the command line spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// A host port forwarded to a container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address it is reachable at; `None` for every local address.
    pub host_ip: Option<IpAddr>,
    /// The host port.
    pub host_port: u16,
    /// The port inside the container.
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

/// A port specification that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid published port {spec:?}: {reason}")]
pub struct PortMappingError {
    /// The specification given.
    pub spec: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(IpAddr::V4(ip)) => write!(f, "{ip}:")?,
            None => {}
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port,
            self.container_port,
            self.protocol.as_str()
        )
    }
}

fn port(s: &str) -> Option<u16> {
    s.parse().ok().filter(|p| *p != 0)
}

impl FromStr for PortMapping {
    type Err = PortMappingError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| PortMappingError {
            spec: spec.to_owned(),
            reason,
        };
        let (ports, protocol) = match spec.rsplit_once('/') {
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some(_) => return Err(invalid("the protocol must be tcp or udp")),
            None => (spec, Protocol::Tcp),
        };
        let (rest, container) = ports
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected hostPort:containerPort"))?;
        let container_port = port(container).ok_or_else(|| invalid("bad container port"))?;
        let (host_ip, host) = match rest.rsplit_once(':') {
            Some((ip, host)) => {
                let ip = ip
                    .strip_prefix('[')
                    .and_then(|ip| ip.strip_suffix(']'))
                    .unwrap_or(ip);
                let ip: IpAddr = ip.parse().map_err(|_| invalid("bad host address"))?;
                (Some(ip), host)
            }
            None => (None, rest),
        };
        let host_port = port(host).ok_or_else(|| invalid("bad host port"))?;
        Ok(Self {
            host_ip: host_ip.filter(|ip| !ip.is_unspecified()),
            host_port,
            container_port,
            protocol,
        })
    }
}

impl PortMapping {
    /// Whether both would take the same host port: same protocol and port, and the same host
    /// address or either one on every address.
    pub fn clashes_with(&self, other: &Self) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// A host port that is published already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port {wanted} clashes with {published}, published by {owner}")]
pub struct PortConflict {
    /// The mapping asked for.
    pub wanted: PortMapping,
    /// The mapping that holds the port.
    pub published: PortMapping,
    /// Who published it.
    pub owner: String,
}

/// Checks that `wanted` (for `owner`) takes no host port that `published` (by owner) or
/// `wanted` itself takes already.
pub fn check_ports<'a>(
    owner: &str,
    wanted: &[PortMapping],
    published: impl IntoIterator<Item = (&'a str, &'a PortMapping)>,
) -> Result<(), PortConflict> {
    let published: Vec<_> = published.into_iter().collect();
    for (i, mapping) in wanted.iter().enumerate() {
        let earlier = wanted[..i].iter().map(|m| (owner, m));
        if let Some((holder, taken)) = published
            .iter()
            .copied()
            .chain(earlier)
            .find(|(_, p)| p.clashes_with(mapping))
        {
            return Err(PortConflict {
                wanted: *mapping,
                published: *taken,
                owner: holder.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(s: &str) -> PortMapping {
        s.parse().unwrap()
    }

    #[test]
    fn every_form_of_a_published_port_parses() {
        assert_eq!(
            parse("8080:80"),
            PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp
            }
        );
        let udp = parse("127.0.0.1:53:5353/udp");
        assert_eq!(udp.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!((udp.host_port, udp.container_port), (53, 5353));
        assert_eq!(udp.protocol, Protocol::Udp);
        assert_eq!(
            parse("[::1]:80:8080/tcp").host_ip,
            Some("::1".parse().unwrap())
        );
        assert_eq!(parse("0.0.0.0:80:80").host_ip, None);
    }

    #[test]
    fn a_mapping_prints_as_it_parses() {
        for s in ["8080:80/tcp", "127.0.0.1:53:53/udp", "[::1]:80:8080/tcp"] {
            assert_eq!(parse(s).to_string(), s);
        }
    }

    #[test]
    fn malformed_ports_are_refused_with_the_reason() {
        for (spec, reason) in [
            ("80", "expected hostPort:containerPort"),
            ("80:0", "bad container port"),
            ("0:80", "bad host port"),
            ("70000:80", "bad host port"),
            ("80:80/sctp", "the protocol must be tcp or udp"),
            ("300.1.1.1:80:80", "bad host address"),
        ] {
            let err = spec.parse::<PortMapping>().unwrap_err();
            assert_eq!(err.reason, reason, "{spec}");
        }
        assert_eq!(
            "80".parse::<PortMapping>().unwrap_err().to_string(),
            "invalid published port \"80\": expected hostPort:containerPort"
        );
    }

    #[test]
    fn a_host_port_is_published_once_per_address_and_protocol() {
        let taken = parse("127.0.0.1:8080:80");
        let published = [("web", &taken)];
        let err = check_ports("db", &[parse("8080:81")], published).unwrap_err();
        assert_eq!(
            err.to_string(),
            "port 8080:81/tcp clashes with 127.0.0.1:8080:80/tcp, published by web"
        );
        assert!(check_ports("db", &[parse("127.0.0.2:8080:80")], published).is_ok());
        assert!(check_ports("db", &[parse("8080:80/udp")], published).is_ok());
        assert!(check_ports("db", &[parse("8081:80")], published).is_ok());
    }

    #[test]
    fn one_request_cannot_publish_a_port_twice() {
        let err = check_ports("a", &[parse("80:80"), parse("80:81")], []).unwrap_err();
        assert_eq!(err.owner, "a");
    }
}
