//! Device access rules: validated from OCI, written as v1 `devices.allow`/`devices.deny`
//! lines, or compiled into a v2 `BPF_PROG_TYPE_CGROUP_DEVICE` program.
//!
//! Semantics (both versions): start from "deny everything"; for each access bit requested
//! (read, write, mknod) the last rule that matches the device and names that bit decides.
//! v1 gets this from the kernel; on v2 the program walks the rules from last to first,
//! keeping the requested bits that no rule has decided yet.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use testudo_linux::bpf::BpfInsn;

use crate::CgroupError;

/// Access bits as the kernel passes them to the program (`BPF_DEVCG_ACC_*`).
pub(crate) const ACC_MKNOD: u32 = 1;
pub(crate) const ACC_READ: u32 = 2;
pub(crate) const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;
/// Device types as the kernel passes them (`BPF_DEVCG_DEV_*`).
pub(crate) const DEV_BLOCK: u32 = 1;
pub(crate) const DEV_CHAR: u32 = 2;

/// License string of the generated program (it uses no GPL-only helper).
pub(crate) const DEVICE_PROGRAM_LICENSE: &std::ffi::CStr = c"Apache";

/// A validated device rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub(crate) allow: bool,
    /// `None`: all devices (`a`).
    pub(crate) kind: Option<DeviceKind>,
    /// `None`: any major (`*`).
    pub(crate) major: Option<u32>,
    /// `None`: any minor (`*`).
    pub(crate) minor: Option<u32>,
    /// `ACC_*` bits.
    pub(crate) access: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceKind {
    Char,
    Block,
}

impl DeviceRule {
    /// Validates an OCI rule: type `a`, `c`, `u` (same as `c`) or `b`; access from `rwm`
    /// (absent or empty means `rwm`); a negative or absent number is a wildcard.
    pub(crate) fn from_oci(rule: &LinuxDeviceCgroup) -> Result<Self, CgroupError> {
        let kind = match rule.typ().unwrap_or_default() {
            LinuxDeviceType::A => None,
            LinuxDeviceType::C | LinuxDeviceType::U => Some(DeviceKind::Char),
            LinuxDeviceType::B => Some(DeviceKind::Block),
            LinuxDeviceType::P => {
                return Err(CgroupError::invalid(
                    "devices.type",
                    "p",
                    "FIFOs are not governed by the devices cgroup",
                ))
            }
        };
        let number = |field, n: Option<i64>| match n {
            None => Ok(None),
            Some(n) if n < 0 => Ok(None),
            // Compared as a sign-extended 32-bit immediate in the program.
            Some(n) => i32::try_from(n)
                .ok()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| CgroupError::invalid(field, n, "device number out of range")),
        };
        let access = match rule.access().as_deref() {
            None | Some("") => ACC_ALL,
            Some(text) => text.chars().try_fold(0, |acc, c| match c {
                'r' => Ok(acc | ACC_READ),
                'w' => Ok(acc | ACC_WRITE),
                'm' => Ok(acc | ACC_MKNOD),
                _ => Err(CgroupError::invalid(
                    "devices.access",
                    text,
                    "only the letters r, w and m are allowed",
                )),
            })?,
        };
        Ok(Self {
            allow: rule.allow(),
            kind,
            major: number("devices.major", rule.major())?,
            minor: number("devices.minor", rule.minor())?,
            access,
        })
    }

    /// The line for v1 `devices.allow`/`devices.deny`, e.g. `c 1:3 rwm`.
    pub(crate) fn v1_line(&self) -> String {
        let kind = match self.kind {
            None => 'a',
            Some(DeviceKind::Char) => 'c',
            Some(DeviceKind::Block) => 'b',
        };
        let number = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        let mut access = String::with_capacity(3);
        for (bit, letter) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(letter);
            }
        }
        format!(
            "{kind} {}:{} {access}",
            number(self.major),
            number(self.minor)
        )
    }
}

/// Validates all OCI rules, in order.
pub(crate) fn rules_from_oci(rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, CgroupError> {
    rules.iter().map(DeviceRule::from_oci).collect()
}

// eBPF opcodes used (include/uapi/linux/bpf.h, bpf_common.h).
pub(crate) const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
pub(crate) const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
pub(crate) const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
pub(crate) const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
pub(crate) const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
pub(crate) const JMP_JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
pub(crate) const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
pub(crate) const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// Registers: R1 = context (struct bpf_cgroup_dev_ctx), then scratch; R2 = device type,
// R3 = requested access bits not decided yet, R4 = major, R5 = minor.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn imm(v: u32) -> i32 {
    // Numbers were range-checked to fit; bit masks are small.
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn ret(value: i32) -> [BpfInsn; 2] {
    [
        BpfInsn::new(ALU64_MOV_K, R0, 0, 0, value),
        BpfInsn::new(JMP_EXIT, 0, 0, 0, 0),
    ]
}

/// Compiles `rules` into a cgroup device program: last matching rule wins per access bit,
/// anything no rule allows is denied.
pub(crate) fn device_program(rules: &[DeviceRule]) -> Vec<BpfInsn> {
    // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
    // access_type = (access bits << 16) | device type.
    let mut prog = vec![
        BpfInsn::new(LDX_MEM_W, R2, R1, 0, 0),
        BpfInsn::new(ALU32_AND_K, R2, 0, 0, 0xffff),
        BpfInsn::new(LDX_MEM_W, R3, R1, 0, 0),
        BpfInsn::new(ALU32_RSH_K, R3, 0, 0, 16),
        BpfInsn::new(LDX_MEM_W, R4, R1, 4, 0),
        BpfInsn::new(LDX_MEM_W, R5, R1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let mut block = Vec::with_capacity(10);
        let mut conditional = false;
        if let Some(kind) = rule.kind {
            let ty = match kind {
                DeviceKind::Char => DEV_CHAR,
                DeviceKind::Block => DEV_BLOCK,
            };
            block.push(BpfInsn::new(JMP_JNE_K, R2, 0, 0, imm(ty)));
            conditional = true;
        }
        if let Some(major) = rule.major {
            block.push(BpfInsn::new(JMP_JNE_K, R4, 0, 0, imm(major)));
            conditional = true;
        }
        if let Some(minor) = rule.minor {
            block.push(BpfInsn::new(JMP_JNE_K, R5, 0, 0, imm(minor)));
            conditional = true;
        }
        let full_access = rule.access == ACC_ALL;
        match (rule.allow, full_access) {
            (true, true) => block.extend(ret(1)),
            (true, false) => {
                // The bits this rule allows are decided; allow once none is left.
                block.push(BpfInsn::new(
                    ALU32_AND_K,
                    R3,
                    0,
                    0,
                    imm(!rule.access & ACC_ALL),
                ));
                block.push(BpfInsn::new(JMP_JNE_K, R3, 0, 0, 0));
                block.extend(ret(1));
            }
            (false, true) => block.extend(ret(0)),
            (false, false) => {
                // Deny if any bit still undecided is one this rule denies.
                block.push(BpfInsn::new(ALU32_MOV_X, R1, R3, 0, 0));
                block.push(BpfInsn::new(ALU32_AND_K, R1, 0, 0, imm(rule.access)));
                block.push(BpfInsn::new(JMP_JEQ_K, R1, 0, 0, 0));
                block.extend(ret(0));
            }
        }
        // Every conditional jump in a block skips to the block's end.
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if matches!(insn.code, JMP_JNE_K | JMP_JEQ_K) {
                insn.off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
            }
        }
        prog.extend(block);
        if !conditional && full_access {
            // Matches every request in full: earlier rules can never be reached.
            return prog;
        }
    }
    prog.extend(ret(0));
    prog
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the subset of eBPF the generator emits; returns R0 at exit.
    // eBPF's 32-bit ALU and immediates are defined as two's-complement truncation and
    // sign extension: exactly what these casts do.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn run(prog: &[BpfInsn], ctx: [u32; 3]) -> u64 {
        let mut reg = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let insn = prog[pc];
            let (dst, src) = (usize::from(insn.dst()), usize::from(insn.src()));
            let k = i64::from(insn.imm) as u64;
            let forward = usize::try_from(insn.off).expect("the generator only jumps forward");
            let jump = |taken: bool| if taken { forward } else { 0 };
            pc += 1;
            match insn.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    reg[dst] = u64::from(ctx[forward / 4]);
                }
                ALU32_AND_K => reg[dst] = u64::from((reg[dst] as u32) & (k as u32)),
                ALU32_RSH_K => reg[dst] = u64::from((reg[dst] as u32) >> insn.imm),
                ALU32_MOV_X => reg[dst] = u64::from(reg[src] as u32),
                ALU64_MOV_K => reg[dst] = k,
                JMP_JNE_K => pc += jump(reg[dst] != k),
                JMP_JEQ_K => pc += jump(reg[dst] == k),
                JMP_EXIT => return reg[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        panic!("program did not terminate");
    }

    fn allowed_by_program(prog: &[BpfInsn], ty: u32, major: u32, minor: u32, access: u32) -> bool {
        run(prog, [(access << 16) | ty, major, minor]) == 1
    }

    /// The reference: per access bit, the last matching rule naming it decides.
    fn allowed_by_model(
        rules: &[DeviceRule],
        ty: u32,
        major: u32,
        minor: u32,
        access: u32,
    ) -> bool {
        [ACC_READ, ACC_WRITE, ACC_MKNOD]
            .into_iter()
            .filter(|bit| access & bit != 0)
            .all(|bit| {
                rules
                    .iter()
                    .rev()
                    .find(|r| {
                        let kind_ok = match r.kind {
                            None => true,
                            Some(DeviceKind::Char) => ty == DEV_CHAR,
                            Some(DeviceKind::Block) => ty == DEV_BLOCK,
                        };
                        kind_ok
                            && r.major.is_none_or(|m| m == major)
                            && r.minor.is_none_or(|m| m == minor)
                            && r.access & bit != 0
                    })
                    .is_some_and(|r| r.allow)
            })
    }

    fn rule(
        allow: bool,
        kind: Option<DeviceKind>,
        major: Option<u32>,
        minor: Option<u32>,
        access: u32,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access,
        }
    }

    fn oci(json: &str) -> Result<DeviceRule, CgroupError> {
        let rule: LinuxDeviceCgroup = serde_json::from_str(json).expect("valid json");
        DeviceRule::from_oci(&rule)
    }

    #[test]
    fn oci_rules_become_v1_lines() {
        let line = |json| oci(json).expect("valid").v1_line();
        assert_eq!(
            line(r#"{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}"#),
            "c 1:3 rwm"
        );
        assert_eq!(line(r#"{"allow":false}"#), "a *:* rwm");
        assert_eq!(
            line(r#"{"allow":true,"type":"b","major":8,"access":"mr"}"#),
            "b 8:* rm"
        );
        assert_eq!(
            line(r#"{"allow":true,"type":"u","major":-1,"minor":5,"access":""}"#),
            "c *:5 rwm"
        );
    }

    #[test]
    fn invalid_oci_rules_are_rejected() {
        assert!(oci(r#"{"allow":true,"type":"p"}"#).is_err());
        let err = oci(r#"{"allow":true,"type":"c","access":"rx"}"#).expect_err("bad access");
        assert!(err.to_string().contains("\"rx\""), "{err}");
        assert!(oci(r#"{"allow":true,"type":"c","major":4294967296}"#).is_err());
    }

    #[test]
    fn empty_rule_list_denies_everything() {
        let prog = device_program(&[]);
        assert!(!allowed_by_program(&prog, DEV_CHAR, 1, 3, ACC_READ));
    }

    #[test]
    fn typical_runtime_rules_allow_only_listed_devices() {
        let rules = [
            rule(false, None, None, None, ACC_ALL),
            rule(true, Some(DeviceKind::Char), Some(1), Some(3), ACC_ALL),
            rule(
                true,
                Some(DeviceKind::Char),
                Some(136),
                None,
                ACC_READ | ACC_WRITE,
            ),
            rule(true, Some(DeviceKind::Char), None, None, ACC_MKNOD),
        ];
        let prog = device_program(&rules);
        let ok = |ty, ma, mi, acc| allowed_by_program(&prog, ty, ma, mi, acc);
        assert!(ok(DEV_CHAR, 1, 3, ACC_READ | ACC_WRITE));
        assert!(!ok(DEV_BLOCK, 1, 3, ACC_READ));
        assert!(ok(DEV_CHAR, 136, 7, ACC_READ | ACC_WRITE));
        assert!(
            ok(DEV_CHAR, 136, 7, ACC_ALL),
            "rw from one rule, m from another"
        );
        assert!(ok(DEV_CHAR, 136, 7, ACC_READ | ACC_MKNOD));
        assert!(ok(DEV_CHAR, 5, 1, ACC_MKNOD));
        assert!(!ok(DEV_CHAR, 5, 1, ACC_READ));
        assert!(!ok(DEV_BLOCK, 8, 0, ACC_MKNOD));
    }

    #[test]
    fn a_later_deny_overrides_an_earlier_allow_for_its_bits_only() {
        let rules = [
            rule(true, None, None, None, ACC_ALL),
            rule(false, Some(DeviceKind::Char), Some(1), Some(3), ACC_WRITE),
        ];
        let prog = device_program(&rules);
        assert!(allowed_by_program(&prog, DEV_CHAR, 1, 3, ACC_READ));
        assert!(!allowed_by_program(
            &prog,
            DEV_CHAR,
            1,
            3,
            ACC_READ | ACC_WRITE
        ));
        assert!(allowed_by_program(&prog, DEV_CHAR, 1, 5, ACC_WRITE));
    }

    #[test]
    fn a_trailing_allow_all_makes_earlier_rules_unreachable() {
        let rules = [
            rule(false, Some(DeviceKind::Char), Some(1), Some(3), ACC_ALL),
            rule(true, None, None, None, ACC_ALL),
        ];
        let prog = device_program(&rules);
        assert_eq!(prog.len(), 6 + 2, "prologue and one return");
        assert!(allowed_by_program(&prog, DEV_CHAR, 1, 3, ACC_ALL));
    }

    #[test]
    fn program_agrees_with_the_last_match_model_on_random_rule_sets() {
        // A small deterministic generator (xorshift), enough to cover combinations.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            u32::try_from(state % u64::from(n)).expect("small")
        };
        for _ in 0..500 {
            let count = next(6);
            let rules: Vec<DeviceRule> = (0..count)
                .map(|_| {
                    let kind =
                        [None, Some(DeviceKind::Char), Some(DeviceKind::Block)][next(3) as usize];
                    let major = [None, Some(1), Some(2)][next(3) as usize];
                    let minor = [None, Some(3), Some(4)][next(3) as usize];
                    rule(next(2) == 1, kind, major, minor, 1 + next(7))
                })
                .collect();
            let prog = device_program(&rules);
            for ty in [DEV_BLOCK, DEV_CHAR] {
                for major in 1..=3 {
                    for minor in 3..=5 {
                        for access in 1..=ACC_ALL {
                            assert_eq!(
                                allowed_by_program(&prog, ty, major, minor, access),
                                allowed_by_model(&rules, ty, major, minor, access),
                                "rules {rules:?}, device {ty} {major}:{minor} access {access}"
                            );
                        }
                    }
                }
            }
        }
    }
}
