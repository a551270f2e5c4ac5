//! Runs compiled programs through a classic BPF interpreter and checks what they return.

use oci_spec::runtime::{Arch, LinuxSeccomp};
use serde_json::{json, Value};

use crate::arch::X32_SYSCALL_BIT;
use crate::{compile, compile_for, SeccompError, SeccompProgram, SockFilter, BPF_MAXINSNS};

const KILL_PROCESS: u32 = 0x8000_0000;
const KILL_THREAD: u32 = 0;
const TRAP: u32 = 0x0003_0000;
const ERRNO: u32 = 0x0005_0000;
const USER_NOTIF: u32 = 0x7fc0_0000;
const TRACE: u32 = 0x7ff0_0000;
const LOG: u32 = 0x7ffc_0000;
const ALLOW: u32 = 0x7fff_0000;

const AUDIT_X86_64: u32 = 0xc000_003e;
const AUDIT_I386: u32 = 0x4000_0003;
const AUDIT_AARCH64: u32 = 0xc000_00b7;
const AUDIT_ARM: u32 = 0x4000_0028;
const AUDIT_S390X: u32 = 0x8000_0016;

const SECCOMP_DATA_LEN: u32 = 64;

fn profile(value: Value) -> LinuxSeccomp {
    serde_json::from_value(value).expect("profile parses")
}

fn compile_on(arch: Arch, value: Value) -> SeccompProgram {
    let program = compile_for(&profile(value), arch).expect("profile compiles");
    check_like_kernel(program.instructions());
    program
}

fn x86_64(value: Value) -> SeccompProgram {
    compile_on(Arch::ScmpArchX86_64, value)
}

/// The checks `bpf_check_classic` and `seccomp_check_filter` make before accepting a program.
fn check_like_kernel(program: &[SockFilter]) {
    assert!(!program.is_empty() && program.len() <= BPF_MAXINSNS);
    assert_eq!(
        program[program.len() - 1].code,
        0x06,
        "last instruction returns"
    );
    for (pc, insn) in program.iter().enumerate() {
        let after = |skip: usize| pc + 1 + skip < program.len();
        match insn.code {
            0x20 => assert!(insn.k < SECCOMP_DATA_LEN && insn.k % 4 == 0, "load at {pc}"),
            0x54 | 0x06 => {}
            0x05 => assert!(after(insn.k as usize), "jump at {pc} leaves the program"),
            0x15 | 0x25 | 0x35 | 0x45 => assert!(
                after(insn.jt.into()) && after(insn.jf.into()),
                "jump at {pc} leaves the program"
            ),
            code => panic!("opcode {code:#x} at {pc}"),
        }
    }
}

/// One syscall as the filter sees it (`struct seccomp_data`).
#[derive(Clone, Copy)]
struct Call {
    arch: u32,
    nr: u32,
    args: [u64; 6],
    big_endian: bool,
}

impl Call {
    fn new(arch: u32, nr: u32) -> Call {
        Call {
            arch,
            nr,
            args: [0; 6],
            big_endian: false,
        }
    }

    fn arg(mut self, index: usize, value: u64) -> Call {
        self.args[index] = value;
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let word = |v: u32| {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let long = |v: u64| {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut bytes = Vec::new();
        bytes.extend(word(self.nr));
        bytes.extend(word(self.arch));
        bytes.extend(long(0x7f00_dead_beef));
        for arg in self.args {
            bytes.extend(long(arg));
        }
        bytes
    }
}

fn x86_64_call(nr: u32) -> Call {
    Call::new(AUDIT_X86_64, nr)
}

/// Interprets the instructions seccomp filters use and returns the filter's verdict.
fn run(program: &SeccompProgram, call: Call) -> u32 {
    let data = call.bytes();
    let insns = program.instructions();
    let mut acc: u32 = 0;
    let mut pc = 0;
    loop {
        let insn = insns[pc];
        pc += 1;
        match insn.code {
            0x20 => {
                let at = insn.k as usize;
                let word: [u8; 4] = data[at..at + 4].try_into().expect("4 bytes");
                acc = if call.big_endian {
                    u32::from_be_bytes(word)
                } else {
                    u32::from_le_bytes(word)
                };
            }
            0x54 => acc &= insn.k,
            0x05 => pc += insn.k as usize,
            0x15 | 0x25 | 0x35 | 0x45 => {
                let holds = match insn.code {
                    0x15 => acc == insn.k,
                    0x25 => acc > insn.k,
                    0x35 => acc >= insn.k,
                    _ => acc & insn.k != 0,
                };
                pc += usize::from(if holds { insn.jt } else { insn.jf });
            }
            0x06 => return insn.k,
            code => panic!("unexpected opcode {code:#x}"),
        }
    }
}

fn allow_list(names: &[&str]) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": names, "action": "SCMP_ACT_ALLOW" }],
    })
}

fn docker_default() -> Value {
    serde_json::from_str(include_str!("../tests/docker-default.json")).expect("fixture parses")
}

#[test]
fn default_action_applies_when_no_rule_matches() {
    let program = x86_64(json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38 }));
    assert_eq!(run(&program, x86_64_call(0)), ERRNO | 38);
    assert_eq!(run(&program, x86_64_call(1000)), ERRNO | 38);
}

#[test]
fn allow_list_allows_only_named_syscalls() {
    let program = x86_64(allow_list(&["read", "write", "exit_group"]));
    assert_eq!(run(&program, x86_64_call(0)), ALLOW);
    assert_eq!(run(&program, x86_64_call(1)), ALLOW);
    assert_eq!(run(&program, x86_64_call(231)), ALLOW);
    assert_eq!(run(&program, x86_64_call(2)), ERRNO | 1, "open gets EPERM");
}

#[test]
fn errno_comes_from_errno_ret_then_default_errno_ret_then_eperm() {
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 13,
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38 },
            { "names": ["write"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["close"], "action": "SCMP_ACT_ALLOW" },
        ],
    }));
    assert_eq!(run(&program, x86_64_call(0)), ERRNO | 38);
    assert_eq!(
        run(&program, x86_64_call(1)),
        ERRNO | 1,
        "a rule's errno ignores the default's"
    );
    assert_eq!(run(&program, x86_64_call(2)), ERRNO | 13);
    assert_eq!(run(&program, x86_64_call(3)), ALLOW);
}

#[test]
fn every_action_returns_its_kernel_value() {
    let cases = [
        ("SCMP_ACT_KILL", KILL_THREAD),
        ("SCMP_ACT_KILL_THREAD", KILL_THREAD),
        ("SCMP_ACT_KILL_PROCESS", KILL_PROCESS),
        ("SCMP_ACT_TRAP", TRAP),
        ("SCMP_ACT_ERRNO", ERRNO | 1),
        ("SCMP_ACT_TRACE", TRACE | 1),
        ("SCMP_ACT_LOG", LOG),
        ("SCMP_ACT_NOTIFY", USER_NOTIF),
    ];
    for (action, expected) in cases {
        let program = x86_64(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                { "names": ["read"], "action": action },
                { "names": ["write"], "action": action, "errnoRet": 7 },
            ],
        }));
        assert_eq!(run(&program, x86_64_call(0)), expected, "{action}");
        let with_data = if expected == ERRNO | 1 || expected == TRACE | 1 {
            (expected & 0xffff_0000) | 7
        } else {
            expected
        };
        assert_eq!(
            run(&program, x86_64_call(1)),
            with_data,
            "{action} with errnoRet"
        );
        assert_eq!(
            run(&program, x86_64_call(2)),
            ALLOW,
            "{action} leaves open alone"
        );
        assert_eq!(
            program.needs_listener(),
            action == "SCMP_ACT_NOTIFY",
            "{action}"
        );
    }
}

#[test]
fn trace_default_uses_default_errno_ret_as_data() {
    let program = x86_64(json!({ "defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 99 }));
    assert_eq!(run(&program, x86_64_call(0)), TRACE | 99);
}

/// What the kernel would decide for `arg <op> value` on a 64-bit argument.
fn holds(op: &str, arg: u64, value: u64, value_two: u64) -> bool {
    match op {
        "SCMP_CMP_NE" => arg != value,
        "SCMP_CMP_LT" => arg < value,
        "SCMP_CMP_LE" => arg <= value,
        "SCMP_CMP_EQ" => arg == value,
        "SCMP_CMP_GE" => arg >= value,
        "SCMP_CMP_GT" => arg > value,
        "SCMP_CMP_MASKED_EQ" => arg & value == value_two,
        _ => unreachable!("{op}"),
    }
}

const OPS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

/// Values around word boundaries, where a wrong high/low split shows.
const SAMPLES: [u64; 14] = [
    0,
    1,
    5,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0004,
    0x1_0000_0005,
    0x1_0000_0006,
    0x2_0000_0005,
    0x0_0000_0005_u64 | (0xffff_ffff << 32),
    0x1_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX - 1,
    u64::MAX,
];

#[test]
fn each_comparison_matches_64_bit_semantics() {
    for op in OPS {
        for value in SAMPLES {
            let value_two = value & 0x1_0000_0004;
            let program = x86_64(json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{
                    "names": ["ioctl"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{ "index": 2, "value": value, "valueTwo": value_two, "op": op }],
                }],
            }));
            for arg in SAMPLES {
                let got = run(&program, x86_64_call(16).arg(2, arg));
                let want = if holds(op, arg, value, value_two) {
                    ALLOW
                } else {
                    ERRNO | 1
                };
                assert_eq!(
                    got, want,
                    "{op}: arg {arg:#x} against {value:#x}/{value_two:#x}"
                );
            }
        }
    }
}

#[test]
fn masked_eq_compares_high_mask_bits() {
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{
            "names": ["mmap"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 3, "value": 0xf_0000_00ff_u64, "valueTwo": 0x1_0000_0002_u64,
                       "op": "SCMP_CMP_MASKED_EQ" }],
        }],
    }));
    let mmap = x86_64_call(9);
    assert_eq!(run(&program, mmap.arg(3, 0x1_0000_0002)), ALLOW);
    assert_eq!(
        run(&program, mmap.arg(3, 0xe1_0000_ff02)),
        ALLOW,
        "bits outside the mask"
    );
    assert_eq!(
        run(&program, mmap.arg(3, 0x2_0000_0002)),
        ERRNO | 1,
        "high word differs"
    );
    assert_eq!(
        run(&program, mmap.arg(3, 0x1_0000_0003)),
        ERRNO | 1,
        "low word differs"
    );
}

#[test]
fn masked_eq_without_value_two_expects_zero() {
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": 0x7e02_0000, "op": "SCMP_CMP_MASKED_EQ" }],
        }],
    }));
    assert_eq!(run(&program, x86_64_call(56).arg(0, 0x11)), ALLOW);
    assert_eq!(
        run(&program, x86_64_call(56).arg(0, 0x1000_0011)),
        ERRNO | 1
    );
}

#[test]
fn conditions_of_one_rule_are_anded() {
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{
            "names": ["mmap"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                { "index": 0, "value": 0, "op": "SCMP_CMP_EQ" },
                { "index": 2, "value": 4, "op": "SCMP_CMP_MASKED_EQ", "valueTwo": 0 },
            ],
        }],
    }));
    let mmap = x86_64_call(9);
    assert_eq!(run(&program, mmap.arg(2, 3)), ALLOW);
    assert_eq!(run(&program, mmap.arg(0, 1).arg(2, 3)), ERRNO | 1);
    assert_eq!(run(&program, mmap.arg(2, 7)), ERRNO | 1);
}

#[test]
fn conditions_on_the_same_argument_are_anded() {
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{
            "names": ["read"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                { "index": 0, "value": 10, "op": "SCMP_CMP_GE" },
                { "index": 0, "value": 20, "op": "SCMP_CMP_LE" },
            ],
        }],
    }));
    for (fd, want) in [(9, ERRNO | 1), (10, ALLOW), (20, ALLOW), (21, ERRNO | 1)] {
        assert_eq!(run(&program, x86_64_call(0).arg(0, fd)), want, "fd {fd}");
    }
}

#[test]
fn rules_for_one_syscall_are_ored() {
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["kill"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 1, "value": 0, "op": "SCMP_CMP_EQ" }] },
            { "names": ["kill", "tkill"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 1, "value": 15, "op": "SCMP_CMP_EQ" }] },
        ],
    }));
    let kill = x86_64_call(62);
    assert_eq!(run(&program, kill.arg(1, 0)), ALLOW);
    assert_eq!(run(&program, kill.arg(1, 15)), ALLOW);
    assert_eq!(run(&program, kill.arg(1, 9)), ERRNO | 1);
    assert_eq!(run(&program, x86_64_call(200).arg(1, 15)), ALLOW, "tkill");
    assert_eq!(
        run(&program, x86_64_call(200).arg(1, 0)),
        ERRNO | 1,
        "tkill"
    );
}

#[test]
fn an_unconditional_rule_makes_the_syscalls_conditional_rules_moot() {
    // libseccomp: a rule matching every call replaces earlier conditional ones and makes later
    // ones redundant.
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["socket"], "action": "SCMP_ACT_LOG",
              "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_EQ" }] },
            { "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97 },
            { "names": ["socket"], "action": "SCMP_ACT_TRAP",
              "args": [{ "index": 0, "value": 2, "op": "SCMP_CMP_EQ" }] },
        ],
    }));
    let socket = x86_64_call(41);
    assert_eq!(run(&program, socket.arg(0, 1)), ERRNO | 97);
    assert_eq!(run(&program, socket.arg(0, 2)), ERRNO | 97);
    assert_eq!(run(&program, socket.arg(0, 10)), ERRNO | 97);
}

#[test]
fn first_matching_conditional_rule_wins() {
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_LOG",
              "args": [{ "index": 0, "value": 5, "op": "SCMP_CMP_EQ" }] },
            { "names": ["read"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 0, "value": 3, "op": "SCMP_CMP_GE" }] },
        ],
    }));
    assert_eq!(run(&program, x86_64_call(0).arg(0, 5)), LOG);
    assert_eq!(run(&program, x86_64_call(0).arg(0, 4)), ALLOW);
    assert_eq!(run(&program, x86_64_call(0).arg(0, 2)), ERRNO | 1);
}

#[test]
fn the_first_unconditional_rule_of_a_syscall_wins() {
    // podman's default profile allows setns in its allow list and later denies it for containers
    // without CAP_SYS_ADMIN; libseccomp keeps the first rule.
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["read", "write"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["write"], "action": "SCMP_ACT_LOG" },
            { "names": ["close"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 },
            { "names": ["close"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 },
        ],
    }));
    assert_eq!(run(&program, x86_64_call(1)), ALLOW);
    assert_eq!(run(&program, x86_64_call(3)), ERRNO | 13);
}

#[test]
fn repeating_an_unconditional_action_is_fine() {
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
        ],
    }));
    assert_eq!(run(&program, x86_64_call(0)), ALLOW);
}

#[test]
fn rules_with_the_default_action_are_dropped() {
    let plain = x86_64(allow_list(&["read"]));
    let padded = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["write", "open"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["close"], "action": "SCMP_ACT_ERRNO",
              "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_EQ" }] },
        ],
    }));
    assert_eq!(plain.instructions(), padded.instructions());
}

#[test]
fn x32_syscalls_get_the_default_action_unless_x32_is_listed() {
    let rules = json!([
        { "names": ["read", "rt_sigaction"], "action": "SCMP_ACT_ALLOW" },
        { "names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS" },
    ]);
    let without = x86_64(json!({ "defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules }));
    assert_eq!(run(&without, x86_64_call(0)), ALLOW);
    assert_eq!(
        run(&without, x86_64_call(X32_SYSCALL_BIT)),
        ERRNO | 1,
        "x32 read"
    );
    assert_eq!(run(&without, x86_64_call(X32_SYSCALL_BIT | 512)), ERRNO | 1);

    let with = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "syscalls": rules,
    }));
    assert_eq!(run(&with, x86_64_call(0)), ALLOW);
    assert_eq!(run(&with, x86_64_call(13)), ALLOW, "x86_64 rt_sigaction");
    assert_eq!(run(&with, x86_64_call(X32_SYSCALL_BIT)), ALLOW, "x32 read");
    assert_eq!(
        run(&with, x86_64_call(X32_SYSCALL_BIT | 512)),
        ALLOW,
        "x32 rt_sigaction"
    );
    assert_eq!(
        run(&with, x86_64_call(X32_SYSCALL_BIT | 13)),
        ERRNO | 1,
        "not x32's number"
    );
    assert_eq!(
        run(&with, x86_64_call(X32_SYSCALL_BIT | 521)),
        KILL_PROCESS,
        "x32 ptrace"
    );
    assert_eq!(run(&with, x86_64_call(101)), KILL_PROCESS, "x86_64 ptrace");
    assert_eq!(run(&with, x86_64_call(X32_SYSCALL_BIT | 101)), ERRNO | 1);
}

#[test]
fn x32_alone_kills_x86_64_syscalls() {
    let program = compile_on(
        Arch::ScmpArchAarch64,
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X32"],
            "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ALLOW" }],
        }),
    );
    assert_eq!(run(&program, x86_64_call(X32_SYSCALL_BIT)), ALLOW);
    assert_eq!(run(&program, x86_64_call(0)), KILL_PROCESS);
}

#[test]
fn foreign_architectures_kill_the_process() {
    let program = x86_64(allow_list(&["read"]));
    assert_eq!(run(&program, Call::new(AUDIT_I386, 3)), KILL_PROCESS);
    assert_eq!(run(&program, Call::new(AUDIT_AARCH64, 63)), KILL_PROCESS);
    assert_eq!(run(&program, Call::new(0x1234, 0)), KILL_PROCESS);
}

#[test]
fn listed_architectures_use_their_own_numbers() {
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86"],
        "syscalls": [{ "names": ["read", "socketcall", "arch_prctl"], "action": "SCMP_ACT_ALLOW" }],
    }));
    assert_eq!(run(&program, Call::new(AUDIT_I386, 3)), ALLOW, "i386 read");
    assert_eq!(
        run(&program, Call::new(AUDIT_I386, 102)),
        ALLOW,
        "i386 socketcall"
    );
    assert_eq!(
        run(&program, Call::new(AUDIT_I386, 0)),
        ERRNO | 1,
        "i386 restart_syscall"
    );
    assert_eq!(run(&program, x86_64_call(0)), ALLOW, "x86_64 read");
    assert_eq!(run(&program, x86_64_call(158)), ALLOW, "x86_64 arch_prctl");
    assert_eq!(run(&program, x86_64_call(102)), ERRNO | 1, "x86_64 getuid");
}

#[test]
fn native_in_architectures_means_the_native_one() {
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_NATIVE"],
        "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ALLOW" }],
    }));
    assert_eq!(run(&program, x86_64_call(0)), ALLOW);
    assert_eq!(run(&program, Call::new(AUDIT_I386, 3)), KILL_PROCESS);
}

#[test]
fn arguments_of_32_bit_abis_compare_the_low_word_only() {
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86"],
        "syscalls": [{
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": 0xffff_ffff_ffff_ffff_u64, "op": "SCMP_CMP_EQ" }],
        }],
    }));
    assert_eq!(
        run(&program, Call::new(AUDIT_I386, 136).arg(0, 0xffff_ffff)),
        ALLOW
    );
    assert_eq!(
        run(&program, x86_64_call(135).arg(0, 0xffff_ffff)),
        ERRNO | 1
    );
    assert_eq!(run(&program, x86_64_call(135).arg(0, u64::MAX)), ALLOW);
}

#[test]
fn aarch64_resolves_names_with_its_own_table() {
    let program = compile_on(
        Arch::ScmpArchAarch64,
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"],
            "syscalls": [
                { "names": ["open", "openat", "read", "set_tls"], "action": "SCMP_ACT_ALLOW" },
                { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
                  "args": [{ "index": 0, "value": 8, "op": "SCMP_CMP_EQ" }] },
            ],
        }),
    );
    let aarch64 = |nr| Call::new(AUDIT_AARCH64, nr);
    let arm = |nr| Call::new(AUDIT_ARM, nr);
    assert_eq!(run(&program, aarch64(56)), ALLOW, "openat");
    assert_eq!(run(&program, aarch64(63)), ALLOW, "read");
    assert_eq!(run(&program, aarch64(0)), ERRNO | 1, "io_setup");
    assert_eq!(run(&program, aarch64(92).arg(0, 8)), ALLOW, "personality");
    assert_eq!(
        run(&program, aarch64(92).arg(0, 9)),
        ERRNO | 1,
        "personality"
    );
    assert_eq!(run(&program, arm(5)), ALLOW, "arm open");
    assert_eq!(run(&program, arm(3)), ALLOW, "arm read");
    assert_eq!(run(&program, arm(0x000f_0005)), ALLOW, "arm set_tls");
    assert_eq!(run(&program, arm(136).arg(0, 8)), ALLOW, "arm personality");
    assert_eq!(run(&program, x86_64_call(0)), KILL_PROCESS);
}

#[test]
fn big_endian_kernels_keep_the_high_word_first() {
    let program = compile_on(
        Arch::ScmpArchS390x,
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{
                "names": ["read"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{ "index": 1, "value": 0x1_0000_0002_u64, "op": "SCMP_CMP_GT" }],
            }],
        }),
    );
    let read = Call {
        big_endian: true,
        ..Call::new(AUDIT_S390X, 3)
    };
    assert_eq!(run(&program, read.arg(1, 0x1_0000_0003)), ALLOW);
    assert_eq!(run(&program, read.arg(1, 0x2_0000_0000)), ALLOW);
    assert_eq!(run(&program, read.arg(1, 0x1_0000_0002)), ERRNO | 1);
    assert_eq!(run(&program, read.arg(1, 0xffff_ffff)), ERRNO | 1);
}

#[test]
fn docker_default_profile_compiles_and_behaves() {
    let program = x86_64(docker_default());
    assert!(program.instructions().len() < BPF_MAXINSNS);
    let eperm = ERRNO | 1;

    assert_eq!(run(&program, x86_64_call(0)), ALLOW, "read");
    assert_eq!(run(&program, x86_64_call(59)), ALLOW, "execve");
    assert_eq!(run(&program, x86_64_call(158)), ALLOW, "arch_prctl");
    assert_eq!(run(&program, x86_64_call(165)), eperm, "mount");
    assert_eq!(run(&program, x86_64_call(272)), eperm, "unshare");
    assert_eq!(run(&program, x86_64_call(246)), eperm, "kexec_load");

    let personality = x86_64_call(135);
    for persona in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(
            run(&program, personality.arg(0, persona)),
            ALLOW,
            "{persona:#x}"
        );
    }
    assert_eq!(
        run(&program, personality.arg(0, 0x0040_0000)),
        eperm,
        "READ_IMPLIES_EXEC"
    );
    assert_eq!(run(&program, personality.arg(0, 0x1_0000_0000)), eperm);

    let clone = x86_64_call(56);
    assert_eq!(
        run(&program, clone.arg(0, 0x0120_0011)),
        ALLOW,
        "glibc fork"
    );
    assert_eq!(
        run(&program, clone.arg(0, 0x1000_0011)),
        eperm,
        "CLONE_NEWUSER"
    );
    assert_eq!(
        run(&program, clone.arg(0, 0x0002_0000)),
        eperm,
        "CLONE_NEWNS"
    );
    assert_eq!(
        run(&program, x86_64_call(435)),
        ERRNO | 38,
        "clone3 gets ENOSYS"
    );

    let socket = x86_64_call(41);
    assert_eq!(run(&program, socket.arg(0, 2)), ALLOW, "AF_INET");
    assert_eq!(run(&program, socket.arg(0, 40)), eperm, "AF_VSOCK");

    assert_eq!(run(&program, Call::new(AUDIT_I386, 3)), ALLOW, "i386 read");
    assert_eq!(
        run(&program, Call::new(AUDIT_I386, 102)),
        ALLOW,
        "i386 socketcall"
    );
    assert_eq!(run(&program, Call::new(AUDIT_I386, 136).arg(0, 8)), ALLOW);
    assert_eq!(
        run(&program, Call::new(AUDIT_I386, 21)),
        eperm,
        "i386 mount"
    );
    assert_eq!(
        run(&program, x86_64_call(X32_SYSCALL_BIT)),
        ALLOW,
        "x32 read"
    );
    assert_eq!(
        run(&program, x86_64_call(X32_SYSCALL_BIT | 520)),
        ALLOW,
        "x32 execve"
    );
    assert_eq!(
        run(&program, x86_64_call(X32_SYSCALL_BIT | 165)),
        eperm,
        "x32 mount"
    );
    assert_eq!(run(&program, Call::new(AUDIT_AARCH64, 63)), KILL_PROCESS);
}

#[test]
fn docker_default_profile_compiles_for_the_build_target() {
    let program = compile(&profile(docker_default())).expect("compiles");
    check_like_kernel(program.instructions());
}

#[test]
fn far_targets_are_reached_through_long_jumps() {
    // Every syscall gets a conditional rule, so the dispatch tree's branches lie hundreds of
    // instructions apart.
    let names: Vec<&str> = vec![
        "read",
        "write",
        "open",
        "close",
        "stat",
        "fstat",
        "lstat",
        "poll",
        "lseek",
        "mmap",
        "mprotect",
        "munmap",
        "brk",
        "ioctl",
        "pread64",
        "pwrite64",
        "readv",
        "writev",
        "access",
        "pipe",
        "select",
        "sched_yield",
        "mremap",
        "msync",
        "mincore",
        "madvise",
        "shmget",
        "shmat",
        "shmctl",
        "dup",
        "dup2",
        "pause",
        "nanosleep",
        "getitimer",
        "alarm",
        "setitimer",
        "getpid",
        "sendfile",
        "socket",
        "connect",
        "accept",
        "sendto",
        "recvfrom",
        "sendmsg",
        "recvmsg",
        "shutdown",
        "bind",
        "listen",
        "getsockname",
        "getpeername",
        "socketpair",
        "setsockopt",
        "getsockopt",
        "clone",
        "fork",
        "vfork",
        "execve",
        "exit",
        "wait4",
        "kill",
        "uname",
        "semget",
        "semop",
        "semctl",
        "shmdt",
        "msgget",
        "msgsnd",
        "msgrcv",
        "msgctl",
        "fcntl",
        "flock",
        "fsync",
        "fdatasync",
        "truncate",
        "ftruncate",
        "getdents",
        "getcwd",
        "chdir",
        "fchdir",
        "rename",
        "mkdir",
        "rmdir",
        "creat",
        "link",
        "unlink",
        "symlink",
        "readlink",
        "chmod",
        "fchmod",
        "chown",
        "fchown",
        "lchown",
    ];
    let rules: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "names": [name],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": i + 100,
                "args": [
                    { "index": 0, "value": i, "op": "SCMP_CMP_EQ" },
                    { "index": 1, "value": 0xff_0000_0000_u64 + i as u64, "op": "SCMP_CMP_LE" },
                ],
            })
        })
        .collect();
    let program = x86_64(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules }));
    assert!(
        program.instructions().iter().any(|insn| insn.code == 0x05),
        "uses JA"
    );
    for (i, name) in names.iter().enumerate() {
        let sysno = name
            .parse::<syscalls::x86_64::Sysno>()
            .expect("x86_64 syscall");
        let nr = u32::try_from(sysno.id()).expect("positive");
        let errno = u32::try_from(i + 100).expect("small");
        let i = i as u64;
        let call = x86_64_call(nr).arg(0, i);
        assert_eq!(
            run(&program, call.arg(1, 0xff_0000_0000 + i)),
            ERRNO | errno
        );
        assert_eq!(
            run(&program, call.arg(1, 0xff_0000_0001 + i)),
            ALLOW,
            "{name}"
        );
        assert_eq!(run(&program, call.arg(0, i + 1)), ALLOW, "{name}");
    }
}

#[test]
fn too_long_programs_are_an_error() {
    let rules: Vec<Value> = (0..1100)
        .map(|i| {
            json!({
                "names": ["ioctl"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{ "index": 1, "value": i, "op": "SCMP_CMP_EQ" }],
            })
        })
        .collect();
    let result = compile_for(
        &profile(json!({ "defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules })),
        Arch::ScmpArchX86_64,
    );
    assert!(matches!(
        result,
        Err(SeccompError::ProgramTooLong { limit: 4096 })
    ));
}

fn compile_error(value: Value) -> SeccompError {
    compile_for(&profile(value), Arch::ScmpArchX86_64).expect_err("profile is rejected")
}

#[test]
fn unknown_syscalls_are_an_error_naming_them() {
    let err = compile_error(allow_list(&["read", "opne"]));
    assert!(matches!(&err, SeccompError::UnknownSyscall { name } if name == "opne"));
    assert_eq!(
        err.to_string(),
        "syscall \"opne\" is not known on any architecture"
    );
}

#[test]
fn syscalls_known_on_other_architectures_only_are_skipped() {
    let program = x86_64(allow_list(&["read", "send", "recv", "cacheflush"]));
    assert_eq!(run(&program, x86_64_call(0)), ALLOW);
    assert_eq!(
        program.instructions(),
        x86_64(allow_list(&["read"])).instructions()
    );
}

#[test]
fn syscalls_newer_than_the_tables_resolve() {
    let program = x86_64(allow_list(&["mseal", "file_setattr", "uretprobe"]));
    assert_eq!(run(&program, x86_64_call(462)), ALLOW);
    assert_eq!(run(&program, x86_64_call(469)), ALLOW);
    assert_eq!(run(&program, x86_64_call(335)), ALLOW);
}

#[test]
fn empty_names_are_an_error() {
    let err = compile_error(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
            { "names": [], "action": "SCMP_ACT_ALLOW" },
        ],
    }));
    assert!(matches!(err, SeccompError::EmptyNames { rule: 1 }));
}

#[test]
fn argument_index_beyond_five_is_an_error() {
    let err = compile_error(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["mmap"], "action": "SCMP_ACT_ALLOW",
                       "args": [{ "index": 6, "value": 0, "op": "SCMP_CMP_EQ" }] }],
    }));
    assert!(
        matches!(&err, SeccompError::ArgIndexOutOfRange { syscall, index: 6 } if syscall == "mmap")
    );
}

#[test]
fn architectures_without_a_table_are_an_error() {
    let err = compile_error(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_PARISC"],
    }));
    assert!(matches!(
        err,
        SeccompError::UnsupportedArch {
            arch: Arch::ScmpArchParisc
        }
    ));
    assert_eq!(
        err.to_string(),
        "seccomp architecture SCMP_ARCH_PARISC is not supported"
    );
    let native = compile_for(&profile(allow_list(&["read"])), Arch::ScmpArchNative);
    assert!(matches!(native, Err(SeccompError::UnsupportedArch { .. })));
}

#[test]
fn errno_beyond_16_bits_is_an_error() {
    let err = compile_error(json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536 }));
    assert!(matches!(
        err,
        SeccompError::ErrnoOutOfRange { value: 65536, .. }
    ));
    let err = compile_error(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_TRACE", "errnoRet": 70000 }],
    }));
    assert_eq!(
        err.to_string(),
        "errno 70000 of syscall \"read\" is larger than 65535"
    );
}

#[test]
fn unknown_action_and_operator_names_are_rejected_when_parsed() {
    let action = json!({ "defaultAction": "SCMP_ACT_MAYBE" });
    assert!(serde_json::from_value::<LinuxSeccomp>(action).is_err());
    let op = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ALLOW",
                       "args": [{ "index": 0, "value": 0, "op": "SCMP_CMP_ROUGHLY" }] }],
    });
    assert!(serde_json::from_value::<LinuxSeccomp>(op).is_err());
}

#[test]
fn flags_and_listener_are_passed_through() {
    let program = x86_64(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                  "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_TSYNC"],
        "listenerPath": "/run/agent.sock",
        "listenerMetadata": "meta",
        "syscalls": [{ "names": ["mount"], "action": "SCMP_ACT_NOTIFY" }],
    }));
    assert_eq!(program.flags(), 0b10_0111);
    assert!(program.needs_listener());
    assert_eq!(
        program.listener_path(),
        Some(std::path::Path::new("/run/agent.sock"))
    );
    assert_eq!(program.listener_metadata(), Some("meta"));
    assert_eq!(run(&program, x86_64_call(165)), USER_NOTIF);

    let plain = x86_64(allow_list(&["read"]));
    assert_eq!(plain.flags(), 0);
    assert!(!plain.needs_listener());
}
