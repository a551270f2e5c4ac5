//! The daemon's gRPC API: Rust code generated from the `.proto` files under `proto/testudo/`,
//! which are the contract (see `docs/api.md`). Each proto package is a module of the same path:
//! `testudo.containers.v1` is [`containers::v1`], with its messages, a `*_client` module (a tonic
//! client over any channel) and a `*_server` module (the service trait and its tonic server).
//!
//! Non-goals: hand-written logic of any kind. No validation (the daemon turns requests into
//! validated types at its edge), no conversions to the engine's types (the engine knows no
//! proto), no transport set-up (sockets, TLS: the daemon and the client crate do that). The
//! daemon <-> monitor protocol (`proto/testudo/monitor/`) is not here: the monitor links no tonic.
//!
//! Design decisions:
//! - tonic 0.14 with prost 0.14 and protox 0.10, the newest releases that work together: tonic
//!   0.14 moved prost code generation into `tonic-prost-build` (and the codec into
//!   `tonic-prost`), and protox 0.10 produces prost 0.14 descriptors. It needs Rust 1.88, the
//!   crate's declared minimum.
//! - protox, a protobuf compiler in Rust, parses the protos in `build.rs`, so building needs no
//!   `protoc` (CI has none); its descriptor set feeds `tonic-prost-build`.
//! - tonic's `codegen`, `transport` and `router` features only: what generated code, a server on
//!   an incoming stream of connections and a client channel need. No TLS feature yet; rustls
//!   comes with the daemon's TCP listener.
//! - Generated clients have no `connect(uri)` helper: the daemon listens on a unix socket, so
//!   callers build their channel with their own connector.
//! - Well-known types (`Timestamp`, `Duration`) are `prost-types`'.
//! - Lints: clippy's default groups are allowed in the generated modules only (their code is
//!   prost's and tonic's, and a new clippy lint must not break the build on code nobody here can
//!   edit). `missing_docs` stays on there on purpose: a proto message, field, enum value or RPC
//!   without its comment fails the build, so the contract cannot go undocumented.

/// The encoded `FileDescriptorSet` of every API proto file (and the well-known types they
/// import), without comments: for gRPC server reflection and for checking what was compiled.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// Namespaces (tenants): `testudo.namespaces.v1`.
pub mod namespaces {
    /// Version 1.
    #[allow(clippy::all)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/testudo.namespaces.v1.rs"));
    }
}

/// Cells: groups of containers sharing a monitor and a network namespace: `testudo.cells.v1`.
pub mod cells {
    /// Version 1.
    #[allow(clippy::all)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/testudo.cells.v1.rs"));
    }
}

/// Containers: lifecycle, logs, exec, attach and stats: `testudo.containers.v1`.
pub mod containers {
    /// Version 1.
    #[allow(clippy::all)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/testudo.containers.v1.rs"));
    }
}

/// Images: pull, list, inspect, delete, import, export and prune: `testudo.images.v1`.
pub mod images {
    /// Version 1.
    #[allow(clippy::all)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/testudo.images.v1.rs"));
    }
}

/// Networks: bridge networks containers attach to: `testudo.networks.v1`.
pub mod networks {
    /// Version 1.
    #[allow(clippy::all)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/testudo.networks.v1.rs"));
    }
}

/// Events: a stream of what changes: `testudo.events.v1`.
pub mod events {
    /// Version 1.
    #[allow(clippy::all)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/testudo.events.v1.rs"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;
    use std::fs;
    use std::path::{Path, PathBuf};

    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::FILE_DESCRIPTOR_SET;

    fn descriptors() -> FileDescriptorSet {
        FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap()
    }

    /// Every `.proto` file under `dir`, relative to `root`, as protobuf names them.
    fn protos_under(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                protos_under(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "proto") {
                let relative = path.strip_prefix(root).unwrap();
                out.insert(relative.to_str().unwrap().to_owned());
            }
        }
    }

    #[test]
    fn every_api_proto_file_is_compiled() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
        let mut on_disk = BTreeSet::new();
        protos_under(&root, &root.join("testudo"), &mut on_disk);
        on_disk.retain(|name| !name.starts_with("testudo/monitor/"));
        assert!(on_disk.contains("testudo/containers/v1/containers.proto"));

        let compiled: BTreeSet<String> = descriptors()
            .file
            .into_iter()
            .filter_map(|f| f.name)
            .filter(|name| name.starts_with("testudo/"))
            .collect();
        assert_eq!(compiled, on_disk);
    }

    #[test]
    fn the_descriptor_set_holds_exactly_the_six_api_packages() {
        // A new package needs a module in this crate: this test is the reminder.
        let packages: BTreeSet<String> = descriptors()
            .file
            .into_iter()
            .filter_map(|f| f.package)
            .filter(|p| p.starts_with("testudo."))
            .collect();
        let expected = [
            "testudo.cells.v1",
            "testudo.containers.v1",
            "testudo.events.v1",
            "testudo.images.v1",
            "testudo.namespaces.v1",
            "testudo.networks.v1",
        ];
        assert_eq!(packages, expected.map(str::to_owned).into());
    }

    #[test]
    fn each_package_declares_its_one_service() {
        let services: BTreeSet<String> = descriptors()
            .file
            .into_iter()
            .filter(|f| f.package().starts_with("testudo."))
            .flat_map(|f| {
                let package = f.package().to_owned();
                f.service
                    .into_iter()
                    .map(move |s| format!("{package}.{}", s.name()))
            })
            .collect();
        let expected = [
            "testudo.cells.v1.CellsService",
            "testudo.containers.v1.ContainersService",
            "testudo.events.v1.EventsService",
            "testudo.images.v1.ImagesService",
            "testudo.namespaces.v1.NamespacesService",
            "testudo.networks.v1.NetworksService",
        ];
        assert_eq!(services, expected.map(str::to_owned).into());
    }
}
