//! Helpers for testudo's integration tests: a privilege gate, busybox root filesystems and OCI
//! bundles, a wrapper that drives a runc-compatible runtime binary with a private state root, a
//! leak checker (mounts, cgroups, state directories), and private podman and containerd
//! instances whose OCI runtime is the binary under test, OCI image layouts built entry by entry,
//! and a private reference registry on 127.0.0.1 (anonymous, basic or token auth) with a proxy
//! that breaks responses on purpose.
//!
//! Non-goals: it is not a runtime, contains no testudo logic and depends on no testudo crate, so
//! that it can check testudo against runc (every helper that takes a runtime binary works with
//! `/usr/sbin/runc`). It is for tests only: it panics, with the command's output, instead of
//! returning errors, and it does not download images (they are built from the host's static
//! busybox).
//!
//! Design decisions:
//! - External tools (`tar`, `podman`, `containerd`, `ctr`, `umount`, `kill`) are run as
//!   commands, as a person would, rather than reimplemented. Each runs with a deadline (two
//!   minutes) so a hung runtime fails a test instead of the whole CI run, and its output is taken
//!   when it exits, not when its stdout closes: `runc create` hands that pipe to the container.
//! - Everything a test creates is private (temp dirs for bundles, runtime roots, podman and
//!   containerd) and named with unique ids, so tests run in parallel; cgroups go under
//!   `/testudo-test`, where [`LeakCheck`] looks.
//! - Drops clean up on a best-effort basis and never panic, as they also run while a failed
//!   test unwinds.
//! - Root filesystems are copies of one template built per busybox version and kept in the
//!   test binary's target directory (see [`BusyboxRootfs`]), so a rootfs costs milliseconds.
//! - Dependencies beyond the workspace's usual ones: `tempfile` (temporary directories), `sha2`
//!   (digests of the OCI image blobs it writes), `tar`, `flate2` and `zstd` (test image layers),
//!   `base64` (basic credentials and the test token server's JWTs).

mod bundle;
mod command;
mod containerd;
mod forwarding;
mod image_layout;
mod leak;
mod mounts;
mod oci_archive;
mod podman;
mod privilege;
mod registry;
mod rootfs;
mod runtime;

pub use bundle::{Bundle, CGROUP_PARENT};
pub use command::{assert_success, error_chain};
pub use containerd::{Containerd, CONTAINERD_NAMESPACE};
pub use forwarding::ForwardingGuard;
pub use image_layout::{
    host_architecture, BlobRef, Compression, ImageLayout, Layer, TestImage, WrittenImage,
    OCI_INDEX, OCI_MANIFEST,
};
pub use leak::LeakCheck;
pub use podman::{Podman, PODMAN_ULIMITS};
pub use privilege::{require_root, REQUIRE_ROOT_ENV};
pub use registry::{Fault, FaultyProxy, PushFormat, Registry, RegistryAuth};
pub use rootfs::{
    rootfs_tar, BusyboxRootfs, HOST_BUSYBOX, NOBODY_GID, NOBODY_UID, STAFF_GID, TESTER_GID,
    TESTER_UID,
};
pub use runtime::{testudo_binary, unique_id, Runtime};
