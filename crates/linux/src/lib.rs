//! Safe, `OwnedFd`-based wrappers for the Linux system calls that testudo needs and that `rustix` does
//! not cover: `clone3`, `execveat`, the protected re-execution of the runtime binary, `mount_setattr`
//! (idmapping included), a user namespace with given mappings held by a descriptor,
//! seccomp loading, ambient capabilities, file-descriptor passing and inheritance control.
//!
//! This is the only crate of the workspace that contains `unsafe` code; every block says which invariant
//! makes it sound. It holds no policy: what to clone, mount or load is decided by its callers.
//!
//! Non-goals: wrapping what `rustix` already offers well (mounts, namespaces, pivot_root, credentials,
//! pidfds), container logic of any kind.

pub mod bpf;
pub mod caps;
pub mod exe;
pub mod fd;
pub mod memory;
pub mod mount;
pub mod process;
pub mod sched;
pub mod seccomp;
pub mod signal;
pub mod userns;
