//! rtnetlink messages as bytes: the few request shapes testudo sends and the replies it reads.
//!
//! Layouts are those of `<linux/netlink.h>`, `<linux/rtnetlink.h>`, `<linux/if_link.h>` and
//! `<linux/veth.h>`, in native byte order; every header and attribute is padded to 4 bytes.

use std::net::IpAddr;

pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_DELLINK: u16 = 17;
pub(crate) const RTM_GETLINK: u16 = 18;
pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_NEWROUTE: u16 = 24;

const NLMSG_ERROR: u16 = 2;

pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_REPLACE: u16 = 0x100;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;

const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;

const RTA_GATEWAY: u16 = 5;
const RTA_METRICS: u16 = 8;
const RTAX_MTU: u16 = 2;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

pub(crate) const IFF_UP: u32 = 0x1;

const HEADER_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn family(addr: IpAddr) -> u8 {
    let family = match addr {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    u8::try_from(family).unwrap_or(0)
}

fn addr_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A request under construction: a netlink header (its length filled in by [`Self::finish`]),
/// a fixed family header, then attributes, some of them nested.
#[derive(Debug)]
pub(crate) struct Request {
    buf: Vec<u8>,
    open_nests: Vec<usize>,
}

impl Request {
    fn new(kind: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set by the socket
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        Self {
            buf,
            open_nests: Vec::new(),
        }
    }

    /// `struct ifinfomsg` for a link request.
    pub(crate) fn link(kind: u16, flags: u16, index: i32, up: Option<bool>) -> Self {
        let mut req = Self::new(kind, flags);
        req.ifinfomsg(index, up);
        req
    }

    fn ifinfomsg(&mut self, index: i32, up: Option<bool>) {
        let (ifi_flags, change) = match up {
            Some(true) => (IFF_UP, IFF_UP),
            Some(false) => (0, IFF_UP),
            None => (0, 0),
        };
        self.buf.push(0); // AF_UNSPEC
        self.buf.push(0);
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&ifi_flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
    }

    /// `struct ifaddrmsg` plus the address attributes, for `RTM_NEWADDR`.
    pub(crate) fn address(index: u32, addr: IpAddr, prefix_len: u8) -> Self {
        let mut req = Self::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
        req.buf.push(family(addr));
        req.buf.push(prefix_len);
        req.buf.push(0);
        req.buf.push(RT_SCOPE_UNIVERSE);
        req.buf.extend_from_slice(&index.to_ne_bytes());
        req.attr(IFA_LOCAL, &addr_bytes(addr));
        req.attr(IFA_ADDRESS, &addr_bytes(addr));
        if addr.is_ipv6() {
            // Duplicate address detection would hold the address "tentative" for a second or
            // more; addresses come from IPAM, which hands each out once.
            req.attr(IFA_FLAGS, &IFA_F_NODAD.to_ne_bytes());
        }
        req
    }

    /// `struct rtmsg` plus a gateway, for a default route in the main table; with `mtu`, the
    /// route's MTU metric (`RTA_METRICS { RTAX_MTU }`), below the link's own. It is not
    /// locked, so path MTU discovery can still lower it.
    pub(crate) fn default_route(gateway: IpAddr, mtu: Option<u32>) -> Self {
        let mut req = Self::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
        req.buf.push(family(gateway));
        req.buf.extend_from_slice(&[0, 0, 0]); // dst_len 0: default; src_len; tos
        req.buf.push(RT_TABLE_MAIN);
        req.buf.push(RTPROT_STATIC);
        req.buf.push(RT_SCOPE_UNIVERSE);
        req.buf.push(RTN_UNICAST);
        req.buf.extend_from_slice(&0u32.to_ne_bytes());
        req.attr(RTA_GATEWAY, &addr_bytes(gateway));
        if let Some(mtu) = mtu {
            req.begin_nest(RTA_METRICS);
            req.attr(RTAX_MTU, &mtu.to_ne_bytes());
            req.end_nest();
        }
        req
    }

    pub(crate) fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    fn pad(&mut self) {
        self.buf.resize(align(self.buf.len()), 0);
    }

    pub(crate) fn ifname(&mut self, name: &str) -> &mut Self {
        let mut bytes = name.as_bytes().to_vec();
        bytes.push(0);
        self.attr(IFLA_IFNAME, &bytes)
    }

    pub(crate) fn mtu(&mut self, mtu: u32) -> &mut Self {
        self.attr(IFLA_MTU, &mtu.to_ne_bytes())
    }

    pub(crate) fn master(&mut self, index: u32) -> &mut Self {
        self.attr(IFLA_MASTER, &index.to_ne_bytes())
    }

    pub(crate) fn netns_fd(&mut self, fd: i32) -> &mut Self {
        self.attr(IFLA_NET_NS_FD, &fd.to_ne_bytes())
    }

    fn begin_nest(&mut self, kind: u16) {
        self.open_nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    fn end_nest(&mut self) {
        if let Some(start) = self.open_nests.pop() {
            let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
    }

    /// `IFLA_LINKINFO { IFLA_INFO_KIND "bridge" }`.
    pub(crate) fn bridge_kind(&mut self) -> &mut Self {
        self.begin_nest(IFLA_LINKINFO);
        self.attr(IFLA_INFO_KIND, b"bridge\0");
        self.end_nest();
        self
    }

    /// `IFLA_LINKINFO { IFLA_INFO_KIND "veth", IFLA_INFO_DATA { VETH_INFO_PEER { ifinfomsg,
    /// IFLA_IFNAME peer } } }`.
    pub(crate) fn veth_kind(&mut self, peer: &str) -> &mut Self {
        self.veth_peer(peer, None, None)
    }

    /// Like [`Self::veth_kind`], with the peer created inside the namespace open at `netns`
    /// (`IFLA_NET_NS_FD` in the peer's attributes) with MTU `mtu` (the peer takes none of
    /// the first end's attributes: without its own `IFLA_MTU` it gets the default 1500). The
    /// peer cannot be created up: the kernel opens it before the pair is linked, and refuses
    /// with `ENOTCONN`.
    pub(crate) fn veth_kind_in(&mut self, peer: &str, netns: i32, mtu: u32) -> &mut Self {
        self.veth_peer(peer, Some(netns), Some(mtu))
    }

    fn veth_peer(&mut self, peer: &str, netns: Option<i32>, mtu: Option<u32>) -> &mut Self {
        self.begin_nest(IFLA_LINKINFO);
        self.attr(IFLA_INFO_KIND, b"veth\0");
        self.begin_nest(IFLA_INFO_DATA);
        // VETH_INFO_PEER carries a whole ifinfomsg before its own attributes (not flagged nested
        // by iproute2 either).
        self.open_nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&VETH_INFO_PEER.to_ne_bytes());
        self.ifinfomsg(0, None);
        self.ifname(peer);
        if let Some(mtu) = mtu {
            self.mtu(mtu);
        }
        if let Some(fd) = netns {
            self.netns_fd(fd);
        }
        self.end_nest();
        self.end_nest();
        self.end_nest();
        self
    }

    /// The bytes to send, with the total length and sequence number in the header.
    pub(crate) fn finish(&mut self, sequence: u32) -> &[u8] {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&sequence.to_ne_bytes());
        &self.buf
    }
}

/// One message read back from the kernel.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `NLMSG_ERROR` with code 0.
    Ack { sequence: u32 },
    /// `NLMSG_ERROR` with a negative errno.
    Error { sequence: u32, errno: i32 },
    /// An `RTM_NEWLINK` answer to `RTM_GETLINK`: the interface index and its link kind.
    Link {
        sequence: u32,
        index: i32,
        kind: Option<String>,
    },
    /// Anything else (a notification, a message type testudo does not ask for).
    Other { sequence: u32 },
}

pub(crate) fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

pub(crate) fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(buf: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// Iterates over `(kind, payload)` of the attributes in `buf`, stopping at a malformed one.
pub(crate) fn attributes(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(buf, at)?);
        let kind = u16_at(buf, at + 2)? & !NLA_F_NESTED;
        let payload = buf.get(at + 4..at + len.max(4))?;
        if len < 4 {
            return None;
        }
        at += align(len);
        Some((kind, payload))
    })
}

/// Splits a datagram into messages and decodes each; `None` for a malformed datagram.
pub(crate) fn parse(datagram: &[u8]) -> Option<Vec<Reply>> {
    let mut replies = Vec::new();
    let mut at = 0;
    while at + HEADER_LEN <= datagram.len() {
        let len = usize::try_from(u32_at(datagram, at)?).ok()?;
        let kind = u16_at(datagram, at + 4)?;
        let sequence = u32_at(datagram, at + 8)?;
        if len < HEADER_LEN {
            return None;
        }
        let body = datagram.get(at + HEADER_LEN..at + len)?;
        replies.push(match kind {
            NLMSG_ERROR => match i32_at(body, 0)? {
                0 => Reply::Ack { sequence },
                code => Reply::Error {
                    sequence,
                    errno: -code,
                },
            },
            RTM_NEWLINK => {
                let index = i32_at(body, 4)?;
                let kind = attributes(body.get(IFINFOMSG_LEN..)?)
                    .find(|(k, _)| *k == IFLA_LINKINFO)
                    .and_then(|(_, info)| attributes(info).find(|(k, _)| *k == IFLA_INFO_KIND))
                    .map(|(_, name)| {
                        String::from_utf8_lossy(name)
                            .trim_end_matches('\0')
                            .to_owned()
                    });
                Reply::Link {
                    sequence,
                    index,
                    kind,
                }
            }
            _ => Reply::Other { sequence },
        });
        at += align(len);
    }
    Some(replies)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_veth_request_nests_the_peer_with_its_own_ifinfomsg() {
        let mut req = Request::link(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, 0, None);
        req.ifname("vh0").veth_kind("vp0");
        let bytes = req.finish(7).to_vec();
        assert_eq!(u32_at(&bytes, 0).unwrap() as usize, bytes.len());
        assert_eq!(u32_at(&bytes, 8).unwrap(), 7);
        let attrs: Vec<_> = attributes(&bytes[HEADER_LEN + IFINFOMSG_LEN..]).collect();
        assert_eq!(attrs[0], (IFLA_IFNAME, &b"vh0\0"[..]));
        let (kind, linkinfo) = attrs[1];
        assert_eq!(kind, IFLA_LINKINFO);
        let info: Vec<_> = attributes(linkinfo).collect();
        assert_eq!(info[0], (IFLA_INFO_KIND, &b"veth\0"[..]));
        let data: Vec<_> = attributes(info[1].1).collect();
        assert_eq!(data[0].0, VETH_INFO_PEER);
        let peer = data[0].1;
        let peer_attrs: Vec<_> = attributes(&peer[IFINFOMSG_LEN..]).collect();
        assert_eq!(peer_attrs, vec![(IFLA_IFNAME, &b"vp0\0"[..])]);
    }

    #[test]
    fn a_veth_peer_made_inside_a_namespace_carries_the_namespace_fd() {
        let mut req = Request::link(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
            0,
            Some(true),
        );
        req.ifname("vh0")
            .master(4)
            .mtu(65535)
            .veth_kind_in("eth0", 9, 65535);
        let bytes = req.finish(1).to_vec();
        assert_eq!(u32_at(&bytes, HEADER_LEN + 8).unwrap(), IFF_UP);
        let attrs: Vec<_> = attributes(&bytes[HEADER_LEN + IFINFOMSG_LEN..]).collect();
        assert_eq!(attrs[1], (IFLA_MASTER, &4u32.to_ne_bytes()[..]));
        assert_eq!(attrs[2], (IFLA_MTU, &65535u32.to_ne_bytes()[..]));
        let info: Vec<_> = attributes(attrs[3].1).collect();
        let data: Vec<_> = attributes(info[1].1).collect();
        let peer = data[0].1;
        let peer_attrs: Vec<_> = attributes(&peer[IFINFOMSG_LEN..]).collect();
        assert_eq!(
            peer_attrs,
            vec![
                (IFLA_IFNAME, &b"eth0\0"[..]),
                (IFLA_MTU, &65535u32.to_ne_bytes()[..]),
                (IFLA_NET_NS_FD, &9i32.to_ne_bytes()[..])
            ]
        );
    }

    /// `struct rtmsg` is 12 bytes: family, dst_len, src_len, tos, table, protocol, scope,
    /// type, flags (u32).
    const RTMSG_LEN: usize = 12;

    #[test]
    fn a_default_route_with_an_mtu_carries_it_in_its_metrics() {
        let gateway = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let mut req = Request::default_route(gateway, Some(1500));
        let bytes = req.finish(1).to_vec();
        assert_eq!(u32_at(&bytes, 0).unwrap() as usize, bytes.len());
        assert_eq!(bytes[HEADER_LEN + 1], 0, "dst_len 0: the default route");
        let attrs: Vec<_> = attributes(&bytes[HEADER_LEN + RTMSG_LEN..]).collect();
        assert_eq!(attrs[0], (RTA_GATEWAY, &[10, 0, 0, 1][..]));
        assert_eq!(attrs[1].0, RTA_METRICS);
        let metrics: Vec<_> = attributes(attrs[1].1).collect();
        assert_eq!(metrics, vec![(RTAX_MTU, &1500u32.to_ne_bytes()[..])]);

        let mut plain = Request::default_route(gateway, None);
        let bytes = plain.finish(1).to_vec();
        let attrs: Vec<_> = attributes(&bytes[HEADER_LEN + RTMSG_LEN..]).collect();
        assert_eq!(attrs, vec![(RTA_GATEWAY, &[10, 0, 0, 1][..])]);
    }

    #[test]
    fn an_ipv4_address_request_carries_local_and_address() {
        let mut req = Request::address(3, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 24);
        let bytes = req.finish(1).to_vec();
        assert_eq!(bytes[HEADER_LEN], 2); // AF_INET
        assert_eq!(bytes[HEADER_LEN + 1], 24);
        let attrs: Vec<_> = attributes(&bytes[HEADER_LEN + 8..]).collect();
        assert_eq!(
            attrs,
            vec![
                (IFA_LOCAL, &[10, 0, 0, 1][..]),
                (IFA_ADDRESS, &[10, 0, 0, 1][..])
            ]
        );
    }

    fn message(kind: u16, sequence: u32, body: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        let len = u32::try_from(HEADER_LEN + body.len()).unwrap();
        buf.extend_from_slice(&len.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&0u16.to_ne_bytes());
        buf.extend_from_slice(&sequence.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(body);
        buf
    }

    #[test]
    fn acks_errors_and_links_are_told_apart() {
        let mut datagram = message(NLMSG_ERROR, 1, &0i32.to_ne_bytes());
        datagram.extend(message(NLMSG_ERROR, 2, &(-17i32).to_ne_bytes()));
        let mut link = Request::link(RTM_NEWLINK, 0, 9, None);
        link.bridge_kind();
        let link_body = link.finish(0)[HEADER_LEN..].to_vec();
        datagram.extend(message(RTM_NEWLINK, 3, &link_body));
        assert_eq!(
            parse(&datagram).unwrap(),
            vec![
                Reply::Ack { sequence: 1 },
                Reply::Error {
                    sequence: 2,
                    errno: 17
                },
                Reply::Link {
                    sequence: 3,
                    index: 9,
                    kind: Some("bridge".to_owned())
                },
            ]
        );
    }

    #[test]
    fn a_truncated_datagram_is_malformed() {
        let mut datagram = message(NLMSG_ERROR, 1, &0i32.to_ne_bytes());
        datagram.truncate(datagram.len() - 2);
        assert_eq!(parse(&datagram), None);
    }
}
