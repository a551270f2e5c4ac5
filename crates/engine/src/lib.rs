//! The daemon's core, async and transport-agnostic: today the image service (pull and import into
//! the content store, layers unpacked once into shared snapshots, container root filesystems on
//! top, garbage collection); tenants, containers, cells, events and the state database follow.
//!
//! Non-goals: any wire format (the daemon maps gRPC onto this crate and this crate knows no proto),
//! running containers itself (monitors do, through the runtime), registry and snapshot mechanics
//! (`testudo-image`, `testudo-snapshot`).

pub mod containers;
pub mod error;
pub mod images;
pub mod state;
