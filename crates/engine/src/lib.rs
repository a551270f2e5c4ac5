//! The daemon's core, async and transport-agnostic: the image service (pull and import into the
//! content store, layers unpacked once into shared snapshots, container root filesystems on top,
//! garbage collection), the state database (namespaces, their containers and image references:
//! content is shared between namespaces, names are not), the container service (bundles, a
//! monitor process per container or one per cell, cells (containers sharing a monitor, a network
//! namespace and a cgroup level), lifecycle, supervision of exits with restart policies,
//! re-adoption of the monitors after a daemon restart, CRI logs read back, cgroup stats) and
//! the event bus (what changed, for subscribers that may be dropped but never slow the engine),
//! and networks (bridge networks with IPAM and NAT, CNI, persistent network namespaces and the
//! containers' and cells' attachments, recorded in the state database).
//!
//! Non-goals: any wire format (the daemon maps gRPC onto this crate and this crate knows no proto),
//! running containers itself (monitors do, through the runtime), registry, snapshot and
//! network mechanics (`testudo-image`, `testudo-snapshot`, `testudo-network`).

pub mod containers;
pub mod error;
pub mod events;
pub mod images;
pub mod networks;
pub mod state;
