//! The OCI runtime as a synchronous library: a bundle becomes a validated plan (plain data), which the
//! container's init applies; the state directory records each container, and the lifecycle verbs
//! (`create`, `start`, `kill`, `delete`, `exec`, …) act on it as the runtime spec describes.
//!
//! It is used by the `testudo` binary (runc-compatible CLI) and, later, the container monitor. It links
//! no async runtime: start-up time and memory per container matter more than convenience here.
//!
//! Non-goals: images, networking, logging of container output (the caller owns stdio), and any
//! decision about which containers to run.

mod caps;
mod cgroup;
pub mod container;
mod copy_up;
pub mod create;
pub mod exec;
pub mod hooks;
pub mod id;
pub mod idmap;
pub mod init;
pub mod mount_options;
pub mod plan;
pub mod reaper;
mod rootfs;
pub mod signal;
mod spawn;
pub mod spec;
pub mod state;
pub mod sync;
pub mod timefmt;

pub use container::{list, Container, ControlError, StateDocument, Status};
pub use create::{create, create_and_start, CreateError, CreateOptions, Created};
pub use exec::{exec, ExecError, ExecOptions, Executed};
pub use id::ContainerId;
pub use state::StateRoot;
