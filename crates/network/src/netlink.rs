//! Links, addresses and routes through rtnetlink, synchronously, over a `NETLINK_ROUTE` socket.
//!
//! A socket acts in the network namespace it was opened in, whichever thread uses it later:
//! [`Netns::netlink`](crate::Netns::netlink) opens one inside a namespace.

pub(crate) mod message;

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::IfName;
use message::{
    Reply, Request, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK,
};

/// The interface index of `lo` in every network namespace (`LOOPBACK_IFINDEX`).
const LOOPBACK_INDEX: i32 = 1;

/// A failed rtnetlink operation, naming what it was done to.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened, or sending or receiving failed.
    #[error("rtnetlink socket")]
    Socket(#[source] std::io::Error),
    /// The kernel sent a reply that could not be decoded.
    #[error("malformed rtnetlink reply to {operation}")]
    Malformed {
        /// What was asked.
        operation: String,
    },
    /// The kernel refused the request.
    #[error("{operation}")]
    Refused {
        /// What was asked, with the names involved.
        operation: String,
        /// The kernel's errno.
        #[source]
        source: std::io::Error,
    },
    /// No link has that name.
    #[error("no link named {0}")]
    NoSuchLink(IfName),
    /// A link with the name exists but is of another kind.
    #[error("link {name} exists and is a {kind}, not a {wanted}")]
    WrongKind {
        /// The link.
        name: IfName,
        /// What it is (`device` for a link without a kind).
        kind: String,
        /// What was wanted.
        wanted: &'static str,
    },
}

/// An rtnetlink socket bound to the network namespace it was opened in.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    sequence: u32,
}

/// What a request returned, when it succeeded.
enum Answer {
    Ack,
    Link { index: i32, kind: Option<String> },
}

/// Why a request did not succeed.
enum Failure {
    /// The kernel answered with this errno.
    Kernel(Errno),
    /// Sending or receiving failed.
    Socket(Errno),
    /// The reply could not be decoded.
    Malformed,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None, // NETLINK_ROUTE is protocol 0
        )
        .map_err(|e| NetlinkError::Socket(e.into()))?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))
            .map_err(|e| NetlinkError::Socket(e.into()))?;
        Ok(Self { fd, sequence: 0 })
    }

    /// Sends `req` and waits for the reply with its sequence number.
    fn request(&mut self, req: &mut Request) -> Result<Answer, Failure> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        rustix::net::sendto(
            &self.fd,
            req.finish(sequence),
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )
        .map_err(Failure::Socket)?;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let (len, _) = rustix::net::recv(&self.fd, &mut buf[..], RecvFlags::empty())
                .map_err(Failure::Socket)?;
            let replies = message::parse(&buf[..len]).ok_or(Failure::Malformed)?;
            for reply in replies {
                match reply {
                    Reply::Ack { sequence: s } if s == sequence => return Ok(Answer::Ack),
                    Reply::Error { sequence: s, errno } if s == sequence => {
                        return Err(Failure::Kernel(Errno::from_raw_os_error(errno)))
                    }
                    Reply::Link {
                        sequence: s,
                        index,
                        kind,
                    } if s == sequence => return Ok(Answer::Link { index, kind }),
                    _ => {}
                }
            }
        }
    }

    /// Sends `requests` in one datagram and waits for every ack; the first refusal (in
    /// request order) is the error. The kernel handles the messages in order, and goes on
    /// after a refused one.
    fn ack_all(&mut self, mut requests: Vec<(Request, String)>) -> Result<(), NetlinkError> {
        let first = self.sequence.wrapping_add(1);
        let mut datagram = Vec::new();
        for (req, _) in &mut requests {
            self.sequence = self.sequence.wrapping_add(1);
            datagram.extend_from_slice(req.finish(self.sequence));
        }
        let socket_error = |e: Errno| NetlinkError::Socket(e.into());
        rustix::net::sendto(
            &self.fd,
            &datagram,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )
        .map_err(socket_error)?;
        let mut outcomes: Vec<Option<Result<(), Errno>>> = vec![None; requests.len()];
        let mut buf = vec![0u8; 32 * 1024];
        while outcomes.iter().any(Option::is_none) {
            let (len, _) = rustix::net::recv(&self.fd, &mut buf[..], RecvFlags::empty())
                .map_err(socket_error)?;
            let replies = message::parse(&buf[..len]).ok_or_else(|| NetlinkError::Malformed {
                operation: requests[0].1.clone(),
            })?;
            for reply in replies {
                let (sequence, outcome) = match reply {
                    Reply::Ack { sequence } => (sequence, Ok(())),
                    Reply::Error { sequence, errno } => {
                        (sequence, Err(Errno::from_raw_os_error(errno)))
                    }
                    _ => continue,
                };
                let slot = usize::try_from(sequence.wrapping_sub(first))
                    .ok()
                    .and_then(|i| outcomes.get_mut(i));
                if let Some(slot) = slot {
                    *slot = Some(outcome);
                }
            }
        }
        for ((_, operation), outcome) in requests.into_iter().zip(outcomes) {
            if let Some(Err(errno)) = outcome {
                return Err(failed(operation, Failure::Kernel(errno)));
            }
        }
        Ok(())
    }

    fn ack(
        &mut self,
        mut req: Request,
        operation: impl Fn() -> String,
    ) -> Result<(), NetlinkError> {
        self.request(&mut req)
            .map(|_| ())
            .map_err(|e| failed(operation(), e))
    }

    /// The index and kind (`bridge`, `veth`, ...) of link `name`, or `None` when there is none.
    fn lookup(&mut self, name: &IfName) -> Result<Option<(u32, Option<String>)>, NetlinkError> {
        let mut req = Request::link(RTM_GETLINK, 0, 0, None);
        req.ifname(name.as_str());
        let operation = || format!("look up link {name}");
        match self.request(&mut req) {
            Ok(Answer::Link { index, kind }) => {
                let index = u32::try_from(index).map_err(|_| NetlinkError::Malformed {
                    operation: operation(),
                })?;
                Ok(Some((index, kind)))
            }
            Ok(Answer::Ack) => Err(NetlinkError::Malformed {
                operation: operation(),
            }),
            Err(Failure::Kernel(Errno::NODEV)) => Ok(None),
            Err(e) => Err(failed(operation(), e)),
        }
    }

    /// The interface index of link `name`.
    pub fn link_index(&mut self, name: &IfName) -> Result<u32, NetlinkError> {
        self.lookup(name)?
            .map(|(index, _)| index)
            .ok_or_else(|| NetlinkError::NoSuchLink(name.clone()))
    }

    /// Whether a link named `name` exists.
    pub fn link_exists(&mut self, name: &IfName) -> Result<bool, NetlinkError> {
        Ok(self.lookup(name)?.is_some())
    }

    /// Creates bridge `name`, or keeps it when a bridge of that name exists; returns its index.
    pub fn ensure_bridge(&mut self, name: &IfName) -> Result<u32, NetlinkError> {
        match self.lookup(name)? {
            Some((index, Some(kind))) if kind == "bridge" => return Ok(index),
            Some((_, kind)) => {
                return Err(NetlinkError::WrongKind {
                    name: name.clone(),
                    kind: kind.unwrap_or_else(|| "device".to_owned()),
                    wanted: "bridge",
                })
            }
            None => {}
        }
        let mut req = Request::link(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, 0, None);
        req.ifname(name.as_str()).bridge_kind();
        match self.request(&mut req) {
            // Another caller created it between the lookup and here.
            Ok(_) | Err(Failure::Kernel(Errno::EXIST)) => self.link_index(name),
            Err(e) => Err(failed(format!("create bridge {name}"), e)),
        }
    }

    /// Creates a veth pair: `name` here and its peer `peer`, both down.
    pub fn create_veth(&mut self, name: &IfName, peer: &IfName) -> Result<(), NetlinkError> {
        let mut req = Request::link(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, 0, None);
        req.ifname(name.as_str()).veth_kind(peer.as_str());
        self.ack(req, || format!("create veth pair {name} and {peer}"))
    }

    /// Creates a veth pair in one request: `name` here, attached to bridge `bridge` and up, and
    /// its peer `peer` made directly inside the namespace open at `netns`, down; both ends
    /// with MTU `mtu`. Creating the peer in place spares moving it (`dev_change_net_namespace`
    /// waits for an RCU grace period, milliseconds on a busy host) and renaming it.
    pub fn create_veth_into(
        &mut self,
        name: &IfName,
        bridge: &IfName,
        peer: &IfName,
        netns: impl AsFd,
        mtu: u32,
    ) -> Result<(), NetlinkError> {
        let master = self.link_index(bridge)?;
        let mut req = Request::link(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
            0,
            Some(true),
        );
        req.ifname(name.as_str())
            .master(master)
            .mtu(mtu)
            .veth_kind_in(peer.as_str(), netns.as_fd().as_raw_fd(), mtu);
        self.ack(req, || {
            format!(
                "create veth pair {name} on bridge {bridge} and {peer} in a network namespace, MTU {mtu}"
            )
        })
    }

    /// Configures link `name` in one round trip: brings `lo` and `name` up, adds `addresses`
    /// to `name` (existing ones are kept) and a default route via each of `gateways`, with
    /// the route MTU `default_route_mtu` when given (else the link's).
    pub fn configure_link(
        &mut self,
        name: &IfName,
        addresses: &[ipnet::IpNet],
        gateways: &[IpAddr],
        default_route_mtu: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let index = self.link_index(name)?;
        let mut requests = vec![(
            Request::link(RTM_NEWLINK, NLM_F_ACK, LOOPBACK_INDEX, Some(true)),
            "bring link lo up".to_owned(),
        )];
        requests.push((
            Request::link(RTM_NEWLINK, NLM_F_ACK, signed(index), Some(true)),
            format!("bring link {name} up"),
        ));
        for address in addresses {
            let (addr, prefix_len) = (address.addr(), address.prefix_len());
            requests.push((
                Request::address(index, addr, prefix_len),
                format!("add address {addr}/{prefix_len} to link {name}"),
            ));
        }
        for gateway in gateways {
            requests.push((
                Request::default_route(*gateway, default_route_mtu),
                format!("add default route via {gateway}"),
            ));
        }
        self.ack_all(requests)
    }

    /// Moves link `name` into the network namespace open at `netns`.
    pub fn move_to_netns(&mut self, name: &IfName, netns: impl AsFd) -> Result<(), NetlinkError> {
        let index = self.link_index(name)?;
        let mut req = Request::link(RTM_NEWLINK, NLM_F_ACK, signed(index), None);
        req.netns_fd(netns.as_fd().as_raw_fd());
        self.ack(req, || format!("move link {name} into a network namespace"))
    }

    /// Renames link `name` to `new_name`; the link must be down.
    pub fn rename(&mut self, name: &IfName, new_name: &IfName) -> Result<(), NetlinkError> {
        let index = self.link_index(name)?;
        let mut req = Request::link(RTM_NEWLINK, NLM_F_ACK, signed(index), None);
        req.ifname(new_name.as_str());
        self.ack(req, || format!("rename link {name} to {new_name}"))
    }

    /// Attaches link `name` to bridge `bridge`.
    pub fn set_master(&mut self, name: &IfName, bridge: &IfName) -> Result<(), NetlinkError> {
        let index = self.link_index(name)?;
        let master = self.link_index(bridge)?;
        let mut req = Request::link(RTM_NEWLINK, NLM_F_ACK, signed(index), None);
        req.master(master);
        self.ack(req, || format!("attach link {name} to bridge {bridge}"))
    }

    /// Brings link `name` up.
    pub fn set_up(&mut self, name: &IfName) -> Result<(), NetlinkError> {
        let index = self.link_index(name)?;
        let req = Request::link(RTM_NEWLINK, NLM_F_ACK, signed(index), Some(true));
        self.ack(req, || format!("bring link {name} up"))
    }

    /// Adds `addr/prefix_len` to link `name`; an address already there is kept.
    pub fn add_address(
        &mut self,
        name: &IfName,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let index = self.link_index(name)?;
        let req = Request::address(index, addr, prefix_len);
        self.ack(req, || {
            format!("add address {addr}/{prefix_len} to link {name}")
        })
    }

    /// Sets the default route of `gateway`'s family to go via `gateway`.
    pub fn set_default_route(&mut self, gateway: IpAddr) -> Result<(), NetlinkError> {
        let req = Request::default_route(gateway, None);
        self.ack(req, || format!("add default route via {gateway}"))
    }

    /// Deletes link `name` (for a veth, both ends); a link that is not there is no error.
    pub fn delete_link(&mut self, name: &IfName) -> Result<(), NetlinkError> {
        let mut req = Request::link(RTM_DELLINK, NLM_F_ACK, 0, None);
        req.ifname(name.as_str());
        match self.request(&mut req) {
            Ok(_) | Err(Failure::Kernel(Errno::NODEV)) => Ok(()),
            Err(e) => Err(failed(format!("delete link {name}"), e)),
        }
    }
}

fn signed(index: u32) -> i32 {
    // Kernel interface indexes are positive ints.
    i32::try_from(index).unwrap_or(i32::MAX)
}

fn failed(operation: String, failure: Failure) -> NetlinkError {
    match failure {
        Failure::Kernel(errno) => NetlinkError::Refused {
            operation,
            source: errno.into(),
        },
        Failure::Socket(errno) => NetlinkError::Socket(errno.into()),
        Failure::Malformed => NetlinkError::Malformed { operation },
    }
}
