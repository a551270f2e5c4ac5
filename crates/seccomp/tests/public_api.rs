//! The crate as its users (the runtime, the loader in `testudo-linux`) see it.

use std::mem::{align_of, offset_of, size_of};

use oci_spec::runtime::LinuxSeccomp;
use testudo_seccomp::{compile, SockFilter, BPF_MAXINSNS};

#[test]
fn sock_filter_has_the_kernel_layout() {
    assert_eq!(size_of::<SockFilter>(), 8);
    assert_eq!(align_of::<SockFilter>(), 4);
    assert_eq!(offset_of!(SockFilter, code), 0);
    assert_eq!(offset_of!(SockFilter, jt), 2);
    assert_eq!(offset_of!(SockFilter, jf), 3);
    assert_eq!(offset_of!(SockFilter, k), 4);
}

#[test]
fn docker_default_profile_compiles_for_the_build_target() {
    let profile: LinuxSeccomp =
        serde_json::from_str(include_str!("docker-default.json")).expect("fixture parses");
    let program = compile(&profile).expect("profile compiles");
    let instructions = program.instructions();
    assert!(!instructions.is_empty() && instructions.len() <= BPF_MAXINSNS);
    assert_eq!(program.flags(), 0);
    assert!(!program.needs_listener());
}
