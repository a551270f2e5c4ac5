//! Capability names of the spec mapped to the kernel's numbers.

use oci_spec::runtime::{Capabilities, Capability};

/// The kernel's number for `cap`.
pub(crate) fn number(cap: Capability) -> u8 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// A set of capabilities as a bit mask, leaving out those this kernel does not know (above `last`),
/// as runc does.
pub(crate) fn mask(caps: Option<&Capabilities>, last: u8) -> u64 {
    caps.into_iter()
        .flatten()
        .map(|c| number(*c))
        .filter(|&n| n <= last)
        .fold(0, |m, n| m | (1u64 << n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_skip_capabilities_the_kernel_lacks() {
        let caps: Capabilities = [
            Capability::Chown,
            Capability::SysAdmin,
            Capability::CheckpointRestore,
        ]
        .into_iter()
        .collect();
        assert_eq!(mask(Some(&caps), 40), 1 | (1 << 21) | (1 << 40));
        assert_eq!(mask(Some(&caps), 39), 1 | (1 << 21));
        assert_eq!(mask(None, 40), 0);
    }
}
