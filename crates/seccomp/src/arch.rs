//! The syscall ABIs a filter can name: their `AUDIT_ARCH_*` value, how their arguments sit in
//! `seccomp_data`, and their syscall numbers.

use oci_spec::runtime::Arch;

/// Set in the syscall number of x32 syscalls, which share `AUDIT_ARCH_X86_64` with x86_64.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// One syscall ABI. x86_64 and x32 are separate ABIs of one `AUDIT_ARCH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Abi {
    X86_64,
    X32,
    X86,
    Aarch64,
    Arm,
    Mips,
    Mipsel,
    Mips64,
    Mipsel64,
    Ppc,
    Ppc64,
    Ppc64le,
    S390x,
    Riscv64,
}

impl Abi {
    /// Every ABI with a syscall table; a name none of them knows is a mistake in the profile.
    const ALL: [Abi; 14] = [
        Abi::X86_64,
        Abi::X32,
        Abi::X86,
        Abi::Aarch64,
        Abi::Arm,
        Abi::Mips,
        Abi::Mipsel,
        Abi::Mips64,
        Abi::Mipsel64,
        Abi::Ppc,
        Abi::Ppc64,
        Abi::Ppc64le,
        Abi::S390x,
        Abi::Riscv64,
    ];

    /// The ABI an OCI architecture names, `None` for architectures without a syscall table here
    /// (and for `SCMP_ARCH_NATIVE`, which the caller resolves).
    pub(crate) fn from_arch(arch: Arch) -> Option<Abi> {
        Some(match arch {
            Arch::ScmpArchX86_64 => Abi::X86_64,
            Arch::ScmpArchX32 => Abi::X32,
            Arch::ScmpArchX86 => Abi::X86,
            Arch::ScmpArchAarch64 => Abi::Aarch64,
            Arch::ScmpArchArm => Abi::Arm,
            Arch::ScmpArchMips => Abi::Mips,
            Arch::ScmpArchMipsel => Abi::Mipsel,
            Arch::ScmpArchMips64 => Abi::Mips64,
            Arch::ScmpArchMipsel64 => Abi::Mipsel64,
            Arch::ScmpArchPpc => Abi::Ppc,
            Arch::ScmpArchPpc64 => Abi::Ppc64,
            Arch::ScmpArchPpc64le => Abi::Ppc64le,
            Arch::ScmpArchS390x => Abi::S390x,
            Arch::ScmpArchRiscv64 => Abi::Riscv64,
            Arch::ScmpArchNative
            | Arch::ScmpArchMips64n32
            | Arch::ScmpArchMipsel64n32
            | Arch::ScmpArchS390
            | Arch::ScmpArchParisc
            | Arch::ScmpArchParisc64
            | Arch::ScmpArchLoongarch64
            | Arch::ScmpArchM68k
            | Arch::ScmpArchSh
            | Arch::ScmpArchSheb => return None,
        })
    }

    /// The value the kernel puts in `seccomp_data.arch` for this ABI's syscalls.
    pub(crate) fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => 0xc000_003e,
            Abi::X86 => 0x4000_0003,
            Abi::Aarch64 => 0xc000_00b7,
            Abi::Arm => 0x4000_0028,
            Abi::Mips => 0x0000_0008,
            Abi::Mipsel => 0x4000_0008,
            Abi::Mips64 => 0x8000_0008,
            Abi::Mipsel64 => 0xc000_0008,
            Abi::Ppc => 0x0000_0014,
            Abi::Ppc64 => 0x8000_0015,
            Abi::Ppc64le => 0xc000_0015,
            Abi::S390x => 0x8000_0016,
            Abi::Riscv64 => 0xc000_00f3,
        }
    }

    /// Whether syscall arguments are 32 bits wide. As libseccomp does, only the low word of
    /// such arguments is compared, against the low word of the profile's value.
    pub(crate) fn has_32bit_args(self) -> bool {
        matches!(
            self,
            Abi::X32 | Abi::X86 | Abi::Arm | Abi::Mips | Abi::Mipsel | Abi::Ppc
        )
    }

    /// Whether the kernel of this (native) architecture stores the `u64` arguments of
    /// `seccomp_data` big-endian, i.e. with the high word first.
    pub(crate) fn is_big_endian(self) -> bool {
        matches!(
            self,
            Abi::Mips | Abi::Mips64 | Abi::Ppc | Abi::Ppc64 | Abi::S390x
        )
    }

    /// The number of syscall `name` in this ABI, `None` when the ABI has no such syscall.
    pub(crate) fn syscall_nr(self, name: &str) -> Option<u32> {
        self.table_nr(name).or_else(|| self.newer_nr(name))
    }

    /// Whether any ABI knows syscall `name`.
    pub(crate) fn is_known_anywhere(name: &str) -> bool {
        Abi::ALL.iter().any(|abi| abi.syscall_nr(name).is_some())
    }

    fn table_nr(self, name: &str) -> Option<u32> {
        macro_rules! lookup {
            ($table:ident) => {
                name.parse::<syscalls::$table::Sysno>()
                    .ok()
                    .and_then(|sysno| u32::try_from(sysno.id()).ok())
            };
        }
        match self {
            Abi::X86_64 => lookup!(x86_64),
            Abi::X32 => x32_nr(name),
            Abi::X86 => lookup!(x86),
            Abi::Aarch64 => lookup!(aarch64),
            Abi::Arm => lookup!(arm).or_else(|| arm_private_nr(name)),
            Abi::Mips | Abi::Mipsel => lookup!(mips),
            Abi::Mips64 | Abi::Mipsel64 => lookup!(mips64),
            Abi::Ppc => lookup!(powerpc),
            Abi::Ppc64 | Abi::Ppc64le => lookup!(powerpc64),
            Abi::S390x => lookup!(s390x),
            Abi::Riscv64 => lookup!(riscv64),
        }
    }

    /// Syscalls added to the kernel after the `syscalls` crate's tables were made. Since
    /// Linux 5.1 new syscalls get the same number on every architecture (plus the MIPS ABI
    /// offset), so one list serves all ABIs.
    fn newer_nr(self, name: &str) -> Option<u32> {
        const COMMON: [(&str, u32); 8] = [
            ("mseal", 462),
            ("setxattrat", 463),
            ("getxattrat", 464),
            ("listxattrat", 465),
            ("removexattrat", 466),
            ("open_tree_attr", 467),
            ("file_getattr", 468),
            ("file_setattr", 469),
        ];
        if self == Abi::X86_64 && name == "uretprobe" {
            return Some(335);
        }
        let (_, nr) = COMMON.iter().find(|(known, _)| *known == name)?;
        Some(match self {
            Abi::X32 => nr | X32_SYSCALL_BIT,
            Abi::Mips | Abi::Mipsel => nr + 4000,
            Abi::Mips64 | Abi::Mipsel64 => nr + 5000,
            _ => *nr,
        })
    }
}

/// x32 numbers: the x86_64 table with the x32 bit set, less the syscalls x32 lacks, with its
/// own numbers (512 and up) for syscalls whose arguments differ in layout
/// (`arch/x86/entry/syscalls/syscall_64.tbl`, ABI `x32`).
fn x32_nr(name: &str) -> Option<u32> {
    const MISSING: [&str; 11] = [
        "uselib",
        "_sysctl",
        "create_module",
        "get_kernel_syms",
        "query_module",
        "nfsservctl",
        "set_thread_area",
        "get_thread_area",
        "epoll_ctl_old",
        "epoll_wait_old",
        "vserver",
    ];
    const OWN: [(&str, u32); 36] = [
        ("rt_sigaction", 512),
        ("rt_sigreturn", 513),
        ("ioctl", 514),
        ("readv", 515),
        ("writev", 516),
        ("recvfrom", 517),
        ("sendmsg", 518),
        ("recvmsg", 519),
        ("execve", 520),
        ("ptrace", 521),
        ("rt_sigpending", 522),
        ("rt_sigtimedwait", 523),
        ("rt_sigqueueinfo", 524),
        ("sigaltstack", 525),
        ("timer_create", 526),
        ("mq_notify", 527),
        ("kexec_load", 528),
        ("waitid", 529),
        ("set_robust_list", 530),
        ("get_robust_list", 531),
        ("vmsplice", 532),
        ("move_pages", 533),
        ("preadv", 534),
        ("pwritev", 535),
        ("rt_tgsigqueueinfo", 536),
        ("recvmmsg", 537),
        ("sendmmsg", 538),
        ("process_vm_readv", 539),
        ("process_vm_writev", 540),
        ("setsockopt", 541),
        ("getsockopt", 542),
        ("io_setup", 543),
        ("io_submit", 544),
        ("execveat", 545),
        ("preadv2", 546),
        ("pwritev2", 547),
    ];
    if MISSING.contains(&name) {
        return None;
    }
    let nr = match OWN.iter().find(|(own, _)| *own == name) {
        Some((_, nr)) => *nr,
        None => Abi::X86_64.table_nr(name)?,
    };
    Some(nr | X32_SYSCALL_BIT)
}

/// ARM-private syscalls (`__ARM_NR_BASE` + n), which the `syscalls` crate's table omits.
fn arm_private_nr(name: &str) -> Option<u32> {
    const ARM_NR_BASE: u32 = 0x000f_0000;
    let offset = match name {
        "breakpoint" => 1,
        "cacheflush" => 2,
        "usr26" => 3,
        "usr32" => 4,
        "set_tls" => 5,
        "get_tls" => 6,
        _ => return None,
    };
    Some(ARM_NR_BASE + offset)
}
