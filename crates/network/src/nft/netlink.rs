//! Listing and deleting testudo's rules over `NETLINK_NETFILTER`, without running `nft`.
//!
//! A listing is one `NFT_MSG_GETRULE` dump of the table, of which only each rule's chain,
//! handle and comment are read. A deletion is one nf_tables transaction:
//! `NFNL_MSG_BATCH_BEGIN`, one `NFT_MSG_DELRULE` per rule (or one `NFT_MSG_DELTABLE`), each
//! with `NLM_F_ACK`, `NFNL_MSG_BATCH_END`; the kernel applies all or none. Layouts are those of
//! `<linux/netfilter/nfnetlink.h>` and `<linux/netfilter/nf_tables.h>`: a netlink header, a
//! `struct nfgenmsg` (family, version, resource id in network byte order), attributes; a
//! rule's comment is libnftnl's user data, type-length-value records of one byte each
//! (`NFTNL_UDATA_RULE_COMMENT` is 0, the value ends with a NUL).

use rustix::io::Errno;
use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::netlink::message::{attributes, u16_at, u32_at, NLM_F_ACK, NLM_F_REQUEST};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_DUMP: u16 = 0x300;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTNL_UDATA_RULE_COMMENT: u8 = 0;
/// `NFPROTO_INET`.
const FAMILY_INET: u8 = 1;
const HEADER_LEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

/// A rule found in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ListedRule {
    pub(super) chain: String,
    pub(super) handle: u64,
    pub(super) comment: Option<String>,
}

const fn nft_type(message: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | message
}

fn string(value: &str) -> Vec<u8> {
    let mut bytes = value.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// One nfnetlink message with sequence number `sequence`: header, `nfgenmsg`, attributes.
fn nf_message(
    kind: u16,
    flags: u16,
    sequence: u32,
    family: u8,
    res_id: u16,
    attrs: &[(u16, Vec<u8>)],
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, below
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    buf.extend_from_slice(&sequence.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
    for (kind, value) in attrs {
        let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
        buf.extend_from_slice(&len.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(value);
        buf.resize((buf.len() + 3) & !3, 0);
    }
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    buf[0..4].copy_from_slice(&len.to_ne_bytes());
    buf
}

/// What a deletion transaction removes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Deletion<'a> {
    /// These rules of the table.
    Rules(&'a [ListedRule]),
    /// The whole table, chains and rules.
    Table,
}

/// The datagram of one transaction deleting `what` from `inet` table `table`; the messages
/// are numbered from `first` (the batch markers included).
fn deletion(table: &str, what: Deletion<'_>, first: u32) -> Vec<u8> {
    let mut sequence = first;
    let mut next = || {
        let s = sequence;
        sequence = sequence.wrapping_add(1);
        s
    };
    let mut datagram = nf_message(
        NFNL_MSG_BATCH_BEGIN,
        0,
        next(),
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    match what {
        Deletion::Rules(rules) => {
            for rule in rules {
                datagram.extend(nf_message(
                    nft_type(NFT_MSG_DELRULE),
                    NLM_F_ACK,
                    next(),
                    FAMILY_INET,
                    0,
                    &[
                        (NFTA_RULE_TABLE, string(table)),
                        (NFTA_RULE_CHAIN, string(&rule.chain)),
                        (NFTA_RULE_HANDLE, rule.handle.to_be_bytes().to_vec()),
                    ],
                ));
            }
        }
        Deletion::Table => datagram.extend(nf_message(
            nft_type(NFT_MSG_DELTABLE),
            NLM_F_ACK,
            next(),
            FAMILY_INET,
            0,
            &[(NFTA_TABLE_NAME, string(table))],
        )),
    }
    datagram.extend(nf_message(
        NFNL_MSG_BATCH_END,
        0,
        next(),
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    ));
    datagram
}

/// The chain, handle and comment of a `NFT_MSG_NEWRULE` body (after the `nfgenmsg`).
fn decode_rule(body: &[u8]) -> Option<ListedRule> {
    let (mut chain, mut handle, mut comment) = (None, None, None);
    for (kind, payload) in attributes(body) {
        match kind {
            NFTA_RULE_CHAIN => {
                chain = Some(
                    String::from_utf8_lossy(payload)
                        .trim_end_matches('\0')
                        .to_owned(),
                )
            }
            NFTA_RULE_HANDLE => handle = Some(u64::from_be_bytes(payload.try_into().ok()?)),
            NFTA_RULE_USERDATA => comment = udata_comment(payload),
            _ => {}
        }
    }
    Some(ListedRule {
        chain: chain?,
        handle: handle?,
        comment,
    })
}

fn udata_comment(mut udata: &[u8]) -> Option<String> {
    while let [kind, len, rest @ ..] = udata {
        let value = rest.get(..usize::from(*len))?;
        if *kind == NFTNL_UDATA_RULE_COMMENT {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        udata = &rest[usize::from(*len)..];
    }
    None
}

/// The messages of one datagram: `(type, sequence, body)`; `None` when malformed.
fn messages(datagram: &[u8]) -> Option<Vec<(u16, u32, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEADER_LEN <= datagram.len() {
        let len = usize::try_from(u32_at(datagram, at)?).ok()?;
        if len < HEADER_LEN {
            return None;
        }
        let kind = u16_at(datagram, at + 4)?;
        let sequence = u32_at(datagram, at + 8)?;
        out.push((kind, sequence, datagram.get(at + HEADER_LEN..at + len)?));
        at += (len + 3) & !3;
    }
    Some(out)
}

fn errno_of(body: &[u8]) -> Option<i32> {
    Some(-i32::from_ne_bytes(body.get(0..4)?.try_into().ok()?))
}

/// A `NETLINK_NETFILTER` socket, kept open between changes: closing one waits for the
/// kernel's pending destruction of deleted rules (`nf_tables_trans_destroy_flush_work`, an RCU
/// grace period, ~8-16 ms on a busy host), which nothing here needs to wait for.
#[derive(Debug)]
pub(super) struct Socket {
    fd: std::os::fd::OwnedFd,
    sequence: u32,
}

impl Socket {
    pub(super) fn open() -> Result<Self, Errno> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(rustix::net::netlink::NETFILTER),
        )?;
        Ok(Self { fd, sequence: 0 })
    }

    /// `count` fresh sequence numbers; the first.
    fn sequences(&mut self, count: u32) -> u32 {
        let first = self.sequence.wrapping_add(1);
        self.sequence = self.sequence.wrapping_add(count);
        first
    }

    fn send(&self, datagram: &[u8]) -> Result<(), Errno> {
        rustix::net::sendto(
            &self.fd,
            datagram,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )
        .map(|_| ())
    }

    /// Receives until `handle` returns a verdict for a message.
    fn receive<T>(
        &self,
        mut handle: impl FnMut(u16, u32, &[u8]) -> Option<Result<T, Errno>>,
    ) -> Result<T, Errno> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let (len, _) = rustix::net::recv(&self.fd, &mut buf[..], RecvFlags::empty())?;
            for (kind, sequence, body) in messages(&buf[..len]).ok_or(Errno::BADMSG)? {
                if let Some(verdict) = handle(kind, sequence, body) {
                    return verdict;
                }
            }
        }
    }
}

/// The rules of `inet` table `table`, in one dump; `None` when there is no such table.
pub(super) fn list_rules(
    socket: &mut Socket,
    table: &str,
) -> Result<Option<Vec<ListedRule>>, Errno> {
    let sequence = socket.sequences(1);
    socket.send(&nf_message(
        nft_type(NFT_MSG_GETRULE),
        NLM_F_DUMP,
        sequence,
        FAMILY_INET,
        0,
        &[(NFTA_RULE_TABLE, string(table))],
    ))?;
    let mut rules = Vec::new();
    let listed = socket.receive(|kind, s, body| {
        if s != sequence {
            return None;
        }
        match kind {
            NLMSG_DONE => Some(Ok(())),
            NLMSG_ERROR => Some(Err(
                errno_of(body).map_or(Errno::BADMSG, Errno::from_raw_os_error)
            )),
            k if k == nft_type(NFT_MSG_NEWRULE) => {
                match body.get(NFGENMSG_LEN..).and_then(decode_rule) {
                    Some(rule) => {
                        rules.push(rule);
                        None
                    }
                    None => Some(Err(Errno::BADMSG)),
                }
            }
            _ => None,
        }
    });
    match listed {
        Ok(()) => Ok(Some(rules)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes `what` from `inet` table `table` in one transaction. A table that is not there is
/// no error when the table was to go.
pub(super) fn delete(socket: &mut Socket, table: &str, what: Deletion<'_>) -> Result<(), Errno> {
    let count = match what {
        Deletion::Rules(rules) => rules.len(),
        Deletion::Table => 1,
    };
    if count == 0 {
        return Ok(());
    }
    let first = socket.sequences(u32::try_from(count).unwrap_or(u32::MAX).saturating_add(2));
    socket.send(&deletion(table, what, first))?;
    // The requests are numbered first + 1 ..= first + count; each is acked, or refused.
    let last = first.wrapping_add(u32::try_from(count).unwrap_or(u32::MAX));
    let result = socket.receive(|kind, sequence, body| {
        if kind != NLMSG_ERROR || sequence.wrapping_sub(first) > u32::try_from(count).ok()? {
            return None;
        }
        match errno_of(body) {
            Some(0) if sequence == last => Some(Ok(())),
            Some(0) => None,
            Some(errno) => Some(Err(Errno::from_raw_os_error(errno))),
            None => Some(Err(Errno::BADMSG)),
        }
    });
    match (result, what) {
        (Err(Errno::NOENT), Deletion::Table) => Ok(()),
        (result, _) => result,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_rule_deletion_is_one_transaction_naming_table_chain_and_handle() {
        let rules = [ListedRule {
            chain: "output".into(),
            handle: 0x1234,
            comment: None,
        }];
        let datagram = deletion("testudo", Deletion::Rules(&rules), 7);
        let parsed = messages(&datagram).unwrap();
        let kinds: Vec<_> = parsed.iter().map(|(k, s, _)| (*k, *s)).collect();
        assert_eq!(
            kinds,
            [
                (NFNL_MSG_BATCH_BEGIN, 7),
                (nft_type(NFT_MSG_DELRULE), 8),
                (NFNL_MSG_BATCH_END, 9)
            ]
        );
        assert_eq!(&parsed[0].2[2..4], &NFNL_SUBSYS_NFTABLES.to_be_bytes());
        let body = parsed[1].2;
        assert_eq!(body[0], FAMILY_INET);
        let attrs: Vec<_> = attributes(&body[NFGENMSG_LEN..]).collect();
        assert_eq!(
            attrs,
            [
                (NFTA_RULE_TABLE, &b"testudo\0"[..]),
                (NFTA_RULE_CHAIN, &b"output\0"[..]),
                (NFTA_RULE_HANDLE, &0x1234u64.to_be_bytes()[..]),
            ]
        );
        assert_eq!(u16_at(&datagram, 6), Some(NLM_F_REQUEST));
    }

    #[test]
    fn a_listed_rule_yields_its_chain_handle_and_comment() {
        // libnftnl's user data: a comment record (type 0) after a record of another type.
        let udata = [&[1u8, 2, 9, 9][..], &[0, 12], b"container:a\0"].concat();
        let message = nf_message(
            nft_type(NFT_MSG_NEWRULE),
            0,
            3,
            FAMILY_INET,
            0,
            &[
                (NFTA_RULE_TABLE, string("t")),
                (NFTA_RULE_CHAIN, string("postrouting")),
                (NFTA_RULE_HANDLE, 42u64.to_be_bytes().to_vec()),
                (NFTA_RULE_USERDATA, udata),
            ],
        );
        let (kind, _, body) = messages(&message).unwrap()[0];
        assert_eq!(kind, nft_type(NFT_MSG_NEWRULE));
        assert_eq!(
            decode_rule(&body[NFGENMSG_LEN..]),
            Some(ListedRule {
                chain: "postrouting".into(),
                handle: 42,
                comment: Some("container:a".into()),
            })
        );
    }

    #[test]
    fn a_table_deletion_names_the_table() {
        let datagram = deletion("testudo", Deletion::Table, 1);
        let parsed = messages(&datagram).unwrap();
        assert_eq!(parsed[1].0, nft_type(NFT_MSG_DELTABLE));
        let attrs: Vec<_> = attributes(&parsed[1].2[NFGENMSG_LEN..]).collect();
        assert_eq!(attrs, [(NFTA_TABLE_NAME, &b"testudo\0"[..])]);
    }
}
