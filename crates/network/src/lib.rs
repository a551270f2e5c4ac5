//! Container networking on the host: persistent named network namespaces, links, addresses and
//! routes through rtnetlink, IP address management, and NAT and port publishing with nftables,
//! for testudo's built-in `bridge` mode (and the namespaces of the `none` and `join` modes);
//! CNI 1.0 plugin execution for the `cni` mode ([`cni`]).
//!
//! The name resolution files of a container (`/etc/hosts`, `/etc/resolv.conf`,
//! `/etc/hostname`) are planned as data ([`plan_name_files`]) and written into a directory
//! ([`NameFiles::write_to`]) that the engine bind-mounts into the container.
//!
//! Non-goals: the daemon's wiring (which network a container asks for, where leases are
//! persisted, the bind mounts of the name files); that comes in later increments. This crate holds no container state: callers pass in what to
//! create and persist the [`IpamState`] themselves (CNI results are cached by [`cni::Cni`] in a
//! directory the caller chooses, as libcni does).
//!
//! The flow for a bridge-mode container, each step idempotent:
//! 1. [`NetnsDir::create`] a named namespace (a bind mount under `/run/netns`);
//! 2. [`IpamState::allocate`] a [`Lease`] (pure; the caller persists the state, e.g. with
//!    [`IpamStore`]);
//! 3. [`plan_network`] and [`BridgeDriver::setup_network`] the bridge, once per network;
//! 4. [`plan_attach`] and [`BridgeDriver::attach`] the container;
//! 5. on removal, [`BridgeDriver::detach`] (with [`plan_detach`]), [`IpamState::release`],
//!    [`NetnsDir::delete`].
//!
//! Design decisions:
//! - rtnetlink is spoken directly over a `NETLINK_ROUTE` socket (through `rustix`), with a
//!   hand-written encoder for the few request shapes used (create bridge and veth, move to a
//!   namespace, rename, set master, set up, add address, default route, delete) and a decoder
//!   for acks and link replies. Attaching a container costs two round trips of note: one
//!   request creates the veth pair with its host end on the bridge and up and its peer made
//!   directly inside the namespace under its final name (moving a link between namespaces
//!   waits for an RCU grace period, 15 ms on a busy 2-core host, and would need a rename);
//!   then one datagram inside carries the loopback and link up, the addresses and the routes,
//!   whose acks are collected together. The `rtnetlink` crate is async and spawns a connection task per
//!   socket, and a socket per namespace is the way to configure inside one: each container
//!   would cost a task and an executor hop for a dozen round trips of microseconds;
//!   `netlink-packet-route` (its message layer) would bring five crates and an API that changes
//!   in every minor release, for messages that fit in 300 lines here. The API is synchronous:
//!   each call is a few system calls, so the async daemon calls it from `spawn_blocking`.
//! - Configuring inside a namespace: [`Netns::netlink`] opens the socket on a short-lived thread
//!   that has `setns`ed into the namespace; a socket acts in the namespace it was created in,
//!   so the rest runs from the caller's thread. The process's own namespaces never change.
//! - Persistent namespaces follow `ip netns add` (iproute2): the directory is made a shared
//!   mount point (a bind mount onto itself first, under a `flock` so that concurrent callers do
//!   not stack mounts), an empty file is created with `O_EXCL`, a thread unshares its network
//!   namespace and bind-mounts `/proc/self/task/<tid>/ns/net` onto the file. Deleting unmounts
//!   (detached) and removes the file, and succeeds when either is already done.
//! - A namespace path given to join is checked before use: `fstatfs` must report nsfs and the
//!   `NS_GET_NSTYPE` ioctl `CLONE_NEWNET`, so a wrong path is refused by name.
//! - nftables: rules are added through `nft -j -f -` rather than netlink (`rustables`,
//!   `nftnl`): a batch of JSON commands is one kernel transaction, the JSON schema is
//!   documented and stable, and there is no C library to link or binding to trust. Listing
//!   and deleting, which need only names and handles, go over `NETLINK_NETFILTER` directly,
//!   so a change costs at most one `nft` process (attach) and a removal none (detach); see
//!   the `nft` module for the measurements behind this. The rules live in a table of
//!   testudo's own (`inet testudo`), so they never mix with the host's firewall, and each rule
//!   carries its owner's tag as a comment, by which it is replaced or removed.
//! - Ports published on `127.0.0.1` need two things besides the DNAT rule in the `output`
//!   chain: `route_localnet=1` on the bridge, without which the kernel drops a packet with a
//!   loopback source routed out of a non-loopback interface, and masquerading of
//!   `127.0.0.0/8` leaving through the bridge, without which the container would answer
//!   `127.0.0.1`, its own loopback. Ports on every address match `fib daddr type local`.
//! - MTU: both ends of a container's veth are made at 65535 ([`CONTAINER_LINK_MTU`], in the
//!   creating request) and the bridge follows its ports; the container's default routes carry
//!   an MTU metric of 1500 ([`DEFAULT_ROUTE_MTU`]). Traffic that stays on the machine (host
//!   to container, published ports, container to container) moves 64 KiB segments as on
//!   loopback, which took a published port's stream from 0.67x to 0.9x and more of loopback
//!   (per CPU second 0.99x); traffic beyond the subnet keeps the Ethernet-sized packets and
//!   MSS of Docker's and Podman's default, so nothing changes for it and no MSS clamping rule
//!   is needed. Measured and left alone, with MTU 65535: GRO on the container's veth (no
//!   change: the sender's GSO packets cross the veth whole), larger `gso_max_size`/
//!   `gro_max_size` (a published stream's socket is routed by `lo`, whose 64 KiB GSO limit
//!   applies before DNAT reroutes it), MTU 9000 (no better than 1500 here).
//! - Host settings: [`BridgeDriver::setup_network`] turns on `net.ipv4.ip_forward` (and, for a
//!   network with an IPv6 subnet, `net.ipv6.conf.all.forwarding`, which makes the kernel ignore
//!   router advertisements on interfaces with `accept_ra=1`, as with Docker); teardown leaves
//!   them on, as other networks may rely on them. Forwarded traffic must also pass the host's
//!   own filter rules: a `forward` chain with policy drop elsewhere (Docker's) is not opened.
//! - IPAM hands out the lowest free address after the gateway (the subnet's first host), skips
//!   the network and broadcast addresses, gives an owner its existing lease back (so a retried
//!   setup keeps its address) and refuses subnets that overlap another network's.
//! - Host veth names derive from a hash of network and container id (`tv` + 12 hex digits), so
//!   detaching after a crash needs no stored state.
//! - CNI plugins run with a cleared environment (the `CNI_*` variables and a fixed `PATH`), so
//!   they behave the same from the daemon, a test or a shell; each run has a deadline, after
//!   which the plugin is killed and the `ADD` rolled back. Debian's plugins (1.1) put their
//!   rules in iptables (the nf_tables backend here), not in testudo's table.
//! - Dependencies beyond the workspace's usual ones: `ipnet` (subnet arithmetic and its serde
//!   form).

mod bridge;
pub mod cni;
mod ifname;
mod ipam;
mod name_files;
mod netlink;
mod netns;
mod nft;
mod plan;
mod port;

pub use bridge::{BridgeDriver, BridgeError};
pub use ifname::{IfName, IfNameError, IFNAME_MAX};
pub use ipam::{IpamError, IpamState, IpamStore, IpamStoreError, Lease, Pool, Subnets};
pub use name_files::{
    plan_name_files, DnsConfig, DnsSource, NameFiles, NameFilesError, NameFilesRequest,
    FALLBACK_NAMESERVERS, HOSTNAME_FILE, HOSTS_FILE, RESOLV_CONF_FILE,
};
pub use netlink::{Netlink, NetlinkError};
pub use netns::{Netns, NetnsDir, NetnsError, NetnsName, DEFAULT_NETNS_DIR};
pub use nft::{DnatHook, NatRule, Nft, NftError, DEFAULT_TABLE};
pub use plan::{
    container_tag, network_tag, plan_attach, plan_detach, plan_network, AttachPlan,
    AttachPlanError, AttachRequest, BridgeNetwork, DetachPlan, NetworkPlan, Sysctl,
    CONTAINER_LINK_MTU, DEFAULT_ROUTE_MTU,
};
pub use port::{check_ports, PortConflict, PortMapping, PortMappingError, Protocol};
