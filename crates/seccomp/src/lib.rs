//! Compiles an OCI seccomp profile (`linux.seccomp` of a runtime spec) into a classic BPF
//! program for `seccomp(SECCOMP_SET_MODE_FILTER)`, as plain data.
//!
//! Non-goals: loading the program (that is `testudo-linux`'s job; this crate makes no syscall),
//! handling the user-notification listener, and reproducing libseccomp quirks beyond those
//! described below.
//!
//! # Semantics
//!
//! The program behaves as the filter runc or crun build through libseccomp:
//!
//! - The native architecture is always filtered; `architectures` adds others. A syscall from any
//!   other architecture kills the process (libseccomp's default bad-architecture action).
//! - x32 shares `AUDIT_ARCH_X86_64` with x86_64 and is told apart by `__X32_SYSCALL_BIT` in the
//!   syscall number. Without `SCMP_ARCH_X32`, x32 syscalls get the default action.
//! - Names are resolved per architecture with the `syscalls` crate's tables, plus x32's own
//!   numbers, the ARM-private syscalls and the syscalls newer than those tables (see `arch.rs`).
//!   A name an architecture lacks is skipped there. A name that no architecture knows is an
//!   error: it is a typo, not a syscall. Names known elsewhere only (`send` in a profile for
//!   x86_64, as Docker's default profile has) are accepted, as libseccomp accepts them.
//! - A rule whose action equals the default action is dropped, as runc does before calling
//!   libseccomp; this applies to conditional rules too.
//! - For one syscall, the conditional rules are tried in profile order and the first whose
//!   conditions all hold decides (conditions of one rule are ANDed, also when several name the
//!   same argument); otherwise its unconditional rule decides, otherwise the default action.
//!   Two unconditional rules with different actions for one syscall are an error.
//! - Arguments are compared as 64-bit values with two 32-bit loads (high word first). On ABIs
//!   with 32-bit arguments (x86, x32, arm, mips o32, ppc) only the low word is compared, as
//!   libseccomp does.
//! - `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` carry `errnoRet` (`defaultErrnoRet` for the default
//!   action), or `EPERM` when none is given.
//!
//! Unknown action, operator or architecture names never reach this crate: `oci-spec` rejects
//! them when the spec is parsed. Architectures without a syscall table here (s390, parisc,
//! loongarch64, mips n32, m68k, sh) are rejected by [`compile`].
//!
//! # Program shape
//!
//! The syscall number is found by binary search rather than a linear chain, so a large
//! allow-list (Docker's default profile, ~350 names on three ABIs) costs about ten comparisons
//! per syscall. Jumps beyond the 255 instructions a conditional jump can skip go through `JA`.

mod arch;
mod bpf;
mod plan;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompFilterFlag};

use crate::arch::Abi;

/// The most instructions the kernel accepts in one classic BPF program (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// `SECCOMP_RET_USER_NOTIF`, the return value of `SCMP_ACT_NOTIFY`.
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const SECCOMP_RET_ACTION_FULL: u32 = 0xffff_0000;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockFilter {
    /// Opcode (`BPF_LD | BPF_W | BPF_ABS`, `BPF_JMP | BPF_JEQ | BPF_K`, ...).
    pub code: u16,
    /// Instructions skipped when a conditional jump's condition holds.
    pub jt: u8,
    /// Instructions skipped when it does not.
    pub jf: u8,
    /// The constant operand (offset, value, jump distance or return value).
    pub k: u32,
}

/// A compiled filter and what its loader needs to know besides the instructions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeccompProgram {
    instructions: Vec<SockFilter>,
    flags: Vec<LinuxSeccompFilterFlag>,
    needs_listener: bool,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
}

impl SeccompProgram {
    /// The program, at most [`BPF_MAXINSNS`] instructions.
    pub fn instructions(&self) -> &[SockFilter] {
        &self.instructions
    }

    /// The profile's `flags` as `SECCOMP_FILTER_FLAG_*` bits. `SECCOMP_FILTER_FLAG_NEW_LISTENER`
    /// is not included: the loader adds it when [`needs_listener`](Self::needs_listener).
    pub fn flags(&self) -> u32 {
        self.flags
            .iter()
            .fold(0, |bits, flag| bits | flag_bit(*flag))
    }

    /// Whether the program can return `SECCOMP_RET_USER_NOTIF` (`SCMP_ACT_NOTIFY`), so the
    /// loader must ask for a notification descriptor.
    pub fn needs_listener(&self) -> bool {
        self.needs_listener
    }

    /// The profile's `listenerPath`: the socket the notification descriptor is sent to.
    pub fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }

    /// The profile's `listenerMetadata`, passed to the agent along with the descriptor.
    pub fn listener_metadata(&self) -> Option<&str> {
        self.listener_metadata.as_deref()
    }
}

/// Why a seccomp profile could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The architecture has no syscall table here.
    #[error("seccomp architecture {arch} is not supported")]
    UnsupportedArch {
        /// The architecture, as the profile names it.
        arch: Arch,
    },
    /// A rule's `names` is empty.
    #[error("seccomp rule {rule} names no syscall")]
    EmptyNames {
        /// Index of the rule in the profile's `syscalls`.
        rule: usize,
    },
    /// No architecture has a syscall of this name.
    #[error("syscall {name:?} is not known on any architecture")]
    UnknownSyscall {
        /// The name as the profile spells it.
        name: String,
    },
    /// A condition names an argument beyond the sixth.
    #[error("argument index {index} in a rule for syscall {syscall:?} is beyond 5")]
    ArgIndexOutOfRange {
        /// The first syscall the rule names.
        syscall: String,
        /// The argument index.
        index: usize,
    },
    /// An `errnoRet` or `defaultErrnoRet` does not fit the 16 data bits of a seccomp return.
    #[error("errno {value} of {subject} is larger than 65535")]
    ErrnoOutOfRange {
        /// `the default action` or the rule's first syscall.
        subject: String,
        /// The errno.
        value: u32,
    },
    /// The program would exceed what the kernel accepts.
    #[error("seccomp program exceeds the kernel limit of {limit} instructions")]
    ProgramTooLong {
        /// [`BPF_MAXINSNS`].
        limit: usize,
    },
}

/// Compiles `profile` for the architecture this crate was built for.
pub fn compile(profile: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    compile_for(profile, native_arch())
}

/// Compiles `profile` for a kernel whose native architecture is `native`, which decides the
/// architecture always filtered and the byte order of `seccomp_data.args`.
pub fn compile_for(profile: &LinuxSeccomp, native: Arch) -> Result<SeccompProgram, SeccompError> {
    let native_abi =
        Abi::from_arch(native).ok_or(SeccompError::UnsupportedArch { arch: native })?;
    let plan = plan::plan(profile, native_abi)?;
    let instructions = bpf::generate(&plan, native_abi)?;
    let needs_listener = instructions.iter().any(|insn| {
        insn.code == bpf::BPF_RET_K && insn.k & SECCOMP_RET_ACTION_FULL == SECCOMP_RET_USER_NOTIF
    });
    Ok(SeccompProgram {
        instructions,
        flags: profile.flags().clone().unwrap_or_default(),
        needs_listener,
        listener_path: profile.listener_path().clone(),
        listener_metadata: profile.listener_metadata().clone(),
    })
}

/// The architecture of the running build; `SCMP_ARCH_NATIVE` (rejected by [`compile_for`])
/// on targets without a syscall table here.
fn native_arch() -> Arch {
    if cfg!(all(target_arch = "x86_64", target_pointer_width = "32")) {
        Arch::ScmpArchX32
    } else if cfg!(target_arch = "x86_64") {
        Arch::ScmpArchX86_64
    } else if cfg!(target_arch = "x86") {
        Arch::ScmpArchX86
    } else if cfg!(target_arch = "aarch64") {
        Arch::ScmpArchAarch64
    } else if cfg!(target_arch = "arm") {
        Arch::ScmpArchArm
    } else if cfg!(target_arch = "riscv64") {
        Arch::ScmpArchRiscv64
    } else if cfg!(target_arch = "s390x") {
        Arch::ScmpArchS390x
    } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
        Arch::ScmpArchPpc64le
    } else if cfg!(target_arch = "powerpc64") {
        Arch::ScmpArchPpc64
    } else if cfg!(target_arch = "powerpc") {
        Arch::ScmpArchPpc
    } else if cfg!(all(target_arch = "mips64", target_endian = "little")) {
        Arch::ScmpArchMipsel64
    } else if cfg!(target_arch = "mips64") {
        Arch::ScmpArchMips64
    } else if cfg!(all(target_arch = "mips", target_endian = "little")) {
        Arch::ScmpArchMipsel
    } else if cfg!(target_arch = "mips") {
        Arch::ScmpArchMips
    } else {
        Arch::ScmpArchNative
    }
}

/// `SECCOMP_FILTER_FLAG_*` of a profile flag.
fn flag_bit(flag: LinuxSeccompFilterFlag) -> u32 {
    match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1 << 0,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => 1 << 1,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 1 << 2,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 1 << 5,
    }
}
