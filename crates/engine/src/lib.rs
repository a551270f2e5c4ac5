//! The daemon's core, async and transport-agnostic: the image service (pull and import into the
//! content store, layers unpacked once into shared snapshots, container root filesystems on top,
//! garbage collection), the state database (namespaces, their containers and image references:
//! content is shared between namespaces, names are not) and the container service
//! (bundles, one monitor process per container, lifecycle); cells, events and re-adoption of
//! monitors after a restart follow.
//!
//! Non-goals: any wire format (the daemon maps gRPC onto this crate and this crate knows no proto),
//! running containers itself (monitors do, through the runtime), registry and snapshot mechanics
//! (`testudo-image`, `testudo-snapshot`).

pub mod containers;
pub mod error;
pub mod images;
pub mod state;
