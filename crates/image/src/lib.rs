//! Images: everything between an image reference and a root filesystem ready for the runtime:
//! references, digests, the content-addressed store, manifests and platform selection, safe layer
//! unpacking, the registry client, OCI layout import/export, and the image config turned into a
//! runtime spec. Used by `testudod` (later) and by its own tests.
//!
//! Non-goals: running containers, snapshots and mounts (`testudo-snapshot`), image building.

pub mod compression;
pub mod digest;
pub mod layout;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod runtime_config;
pub mod store;
pub mod unpack;
