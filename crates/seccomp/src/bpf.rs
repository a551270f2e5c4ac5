//! Classic BPF generation from a [`Plan`].
//!
//! The program is built back to front: every jump goes forward, so each jump's targets already
//! exist when it is emitted and its offsets are known at once. A conditional jump reaches at
//! most 255 instructions; a target further away is reached through a `JA` (32-bit offset) or a
//! fresh copy of the `ret` placed right after the jump. Returns are shared while in reach.
//!
//! Layout: load `seccomp_data.arch`, then per architecture a check whose match loads
//! `seccomp_data.nr` and runs a binary search over the syscall numbers that have rules (short
//! runs end in `JEQ` chains); a syscall's conditional rules are tried in order, each condition
//! comparing one argument with 32-bit loads; the last instruction kills the process of a
//! syscall from an architecture the filter does not know (libseccomp's default bad-arch action).

use std::collections::HashMap;

use oci_spec::runtime::LinuxSeccompOperator;

use crate::arch::{Abi, X32_SYSCALL_BIT};
use crate::plan::{AbiPlan, Condition, Plan, Rule, Section, SyscallPlan};
use crate::{SeccompError, SockFilter, BPF_MAXINSNS};

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_ALU_AND_K: u16 = 0x54;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JGE_K: u16 = 0x35;
pub(crate) const BPF_RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARGS: u32 = 16;

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;

/// Syscall runs this short are matched by a `JEQ` chain rather than split further.
const LINEAR_RUN: usize = 4;

/// Generates the program of `plan` for a kernel of the `native` ABI.
pub(crate) fn generate(plan: &Plan, native: Abi) -> Result<Vec<SockFilter>, SeccompError> {
    let mut gen = Generator {
        emitter: Emitter::default(),
        default: Target::Ret(plan.default),
        big_endian: native.is_big_endian(),
    };
    // The kernel requires the last instruction to be a return.
    gen.emitter.ret(SECCOMP_RET_KILL_PROCESS)?;
    let bad_arch = Target::Ret(SECCOMP_RET_KILL_PROCESS);
    let mut next = bad_arch;
    for section in plan.sections.iter().rev() {
        let body = gen.section(section, bad_arch)?;
        next = gen
            .emitter
            .jump(BPF_JMP_JEQ_K, section.audit_arch, body, next)?;
    }
    gen.emitter.stmt(BPF_LD_W_ABS, DATA_ARCH, next)?;
    Ok(gen.emitter.finish())
}

/// Where control goes: an emitted instruction, or any `ret` of a value.
#[derive(Clone, Copy, Debug)]
enum Target {
    At(usize),
    Ret(u32),
}

/// A program under construction, last instruction first.
#[derive(Default)]
struct Emitter {
    /// `reversed[0]` is the program's last instruction; a position is an index here.
    reversed: Vec<SockFilter>,
    /// The most recent `ret` of each value.
    rets: HashMap<u32, usize>,
}

impl Emitter {
    fn push(&mut self, insn: SockFilter) -> Result<usize, SeccompError> {
        if self.reversed.len() >= BPF_MAXINSNS {
            return Err(SeccompError::ProgramTooLong {
                limit: BPF_MAXINSNS,
            });
        }
        self.reversed.push(insn);
        Ok(self.reversed.len() - 1)
    }

    /// How many instructions an instruction emitted next skips to land on `at`.
    fn distance(&self, at: usize) -> usize {
        self.reversed.len() - at - 1
    }

    fn ret(&mut self, value: u32) -> Result<usize, SeccompError> {
        let at = self.push(insn(BPF_RET_K, 0, 0, value))?;
        self.rets.insert(value, at);
        Ok(at)
    }

    /// An unconditional jump to `at`, which may be any distance away.
    fn goto(&mut self, at: usize) -> Result<usize, SeccompError> {
        let offset =
            u32::try_from(self.distance(at)).map_err(|_| SeccompError::ProgramTooLong {
                limit: BPF_MAXINSNS,
            })?;
        self.push(insn(BPF_JMP_JA, 0, 0, offset))
    }

    /// A position for `target` that a conditional jump emitted next can reach, leaving room for
    /// one more instruction to be placed between them (the other branch's stand-in).
    fn reach(&mut self, target: Target) -> Result<usize, SeccompError> {
        let within = |emitter: &Self, at: usize| emitter.distance(at) < usize::from(u8::MAX);
        match target {
            Target::At(at) if within(self, at) => Ok(at),
            Target::At(at) => self.goto(at),
            Target::Ret(value) => match self.rets.get(&value) {
                Some(&at) if within(self, at) => Ok(at),
                _ => self.ret(value),
            },
        }
    }

    /// A conditional jump: to `jt` when `A <op> k` holds, else to `jf`.
    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) -> Result<Target, SeccompError> {
        // `reach` keeps a spare slot, so the first round always fits; the loop only spares
        // an unchecked conversion.
        loop {
            let to_true = self.reach(jt)?;
            let to_false = self.reach(jf)?;
            let offsets = (
                u8::try_from(self.distance(to_true)),
                u8::try_from(self.distance(to_false)),
            );
            if let (Ok(jt), Ok(jf)) = offsets {
                return self.push(insn(code, jt, jf, k)).map(Target::At);
            }
        }
    }

    /// A load or ALU instruction, which falls through to `next`.
    fn stmt(&mut self, code: u16, k: u32, next: Target) -> Result<Target, SeccompError> {
        let next = self.reach(next)?;
        if next + 1 != self.reversed.len() {
            self.goto(next)?;
        }
        self.push(insn(code, 0, 0, k)).map(Target::At)
    }

    fn finish(mut self) -> Vec<SockFilter> {
        self.reversed.reverse();
        self.reversed
    }
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

struct Generator {
    emitter: Emitter,
    default: Target,
    /// Whether the kernel stores `seccomp_data.args` high word first.
    big_endian: bool,
}

impl Generator {
    /// The code run once `seccomp_data.arch` matched `section`.
    fn section(&mut self, section: &Section, bad_arch: Target) -> Result<Target, SeccompError> {
        let primary = match &section.primary {
            Some(abi_plan) => self.dispatch(abi_plan)?,
            None => bad_arch,
        };
        let by_nr = match &section.x32 {
            // x32 numbers carry X32_SYSCALL_BIT, so they never equal a primary number and get
            // the default action.
            None => primary,
            Some(x32) => {
                let x32 = self.dispatch(x32)?;
                self.emitter
                    .jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, x32, primary)?
            }
        };
        match by_nr {
            Target::At(_) => self.emitter.stmt(BPF_LD_W_ABS, DATA_NR, by_nr),
            Target::Ret(_) => Ok(by_nr),
        }
    }

    /// Binary search over the syscall numbers of one ABI; expects `A` to hold `nr`.
    fn dispatch(&mut self, abi_plan: &AbiPlan) -> Result<Target, SeccompError> {
        let entries: Vec<(u32, &SyscallPlan)> = abi_plan
            .syscalls
            .iter()
            .map(|(&nr, plan)| (nr, plan))
            .collect();
        let args32 = abi_plan.abi.has_32bit_args();
        self.dispatch_run(&entries, args32)
    }

    fn dispatch_run(
        &mut self,
        entries: &[(u32, &SyscallPlan)],
        args32: bool,
    ) -> Result<Target, SeccompError> {
        if entries.len() <= LINEAR_RUN {
            let mut next = self.default;
            for (nr, plan) in entries.iter().rev() {
                let body = self.syscall(plan, args32)?;
                next = self.emitter.jump(BPF_JMP_JEQ_K, *nr, body, next)?;
            }
            return Ok(next);
        }
        let (low, high) = entries.split_at(entries.len() / 2);
        let high_nr = high[0].0;
        let high = self.dispatch_run(high, args32)?;
        let low = self.dispatch_run(low, args32)?;
        self.emitter.jump(BPF_JMP_JGE_K, high_nr, high, low)
    }

    /// A syscall's rules in order, then its fallback.
    fn syscall(&mut self, plan: &SyscallPlan, args32: bool) -> Result<Target, SeccompError> {
        let mut next = Target::Ret(plan.fallback);
        for rule in plan.conditional.iter().rev() {
            next = self.rule(rule, next, args32)?;
        }
        Ok(next)
    }

    /// All conditions of `rule` (ANDed), then its return.
    fn rule(&mut self, rule: &Rule, fail: Target, args32: bool) -> Result<Target, SeccompError> {
        let mut pass = Target::Ret(rule.ret);
        for condition in rule.conditions.iter().rev() {
            pass = self.condition(condition, pass, fail, args32)?;
        }
        Ok(pass)
    }

    /// One argument comparison. 64-bit arguments are compared high word first: it decides
    /// unless equal, in which case the low word decides.
    fn condition(
        &mut self,
        condition: &Condition,
        pass: Target,
        fail: Target,
        args32: bool,
    ) -> Result<Target, SeccompError> {
        let op = condition.op;
        let (value_high, value_low) = split(condition.value);
        let (expected_high, expected_low) = split(condition.expected);
        let low = self.compare_word(op, value_low, expected_low, pass, fail)?;
        let low = self.load_arg(condition.index, false, low)?;
        if args32 {
            return Ok(low);
        }
        let e = &mut self.emitter;
        let high = match op {
            LinuxSeccompOperator::ScmpCmpEq => e.jump(BPF_JMP_JEQ_K, value_high, low, fail)?,
            LinuxSeccompOperator::ScmpCmpNe => e.jump(BPF_JMP_JEQ_K, value_high, low, pass)?,
            LinuxSeccompOperator::ScmpCmpGt | LinuxSeccompOperator::ScmpCmpGe => {
                let equal = e.jump(BPF_JMP_JEQ_K, value_high, low, fail)?;
                e.jump(BPF_JMP_JGT_K, value_high, pass, equal)?
            }
            LinuxSeccompOperator::ScmpCmpLt | LinuxSeccompOperator::ScmpCmpLe => {
                let equal = e.jump(BPF_JMP_JEQ_K, value_high, low, pass)?;
                e.jump(BPF_JMP_JGT_K, value_high, fail, equal)?
            }
            // A mask without high bits makes the high word irrelevant when 0 is expected there.
            LinuxSeccompOperator::ScmpCmpMaskedEq if value_high == 0 && expected_high == 0 => {
                return Ok(low)
            }
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                let check = e.jump(BPF_JMP_JEQ_K, expected_high, low, fail)?;
                e.stmt(BPF_ALU_AND_K, value_high, check)?
            }
        };
        self.load_arg(condition.index, true, high)
    }

    /// Compares the word in `A`, which decides the condition.
    fn compare_word(
        &mut self,
        op: LinuxSeccompOperator,
        value: u32,
        expected: u32,
        pass: Target,
        fail: Target,
    ) -> Result<Target, SeccompError> {
        let e = &mut self.emitter;
        match op {
            LinuxSeccompOperator::ScmpCmpEq => e.jump(BPF_JMP_JEQ_K, value, pass, fail),
            LinuxSeccompOperator::ScmpCmpNe => e.jump(BPF_JMP_JEQ_K, value, fail, pass),
            LinuxSeccompOperator::ScmpCmpGt => e.jump(BPF_JMP_JGT_K, value, pass, fail),
            LinuxSeccompOperator::ScmpCmpGe => e.jump(BPF_JMP_JGE_K, value, pass, fail),
            LinuxSeccompOperator::ScmpCmpLt => e.jump(BPF_JMP_JGE_K, value, fail, pass),
            LinuxSeccompOperator::ScmpCmpLe => e.jump(BPF_JMP_JGT_K, value, fail, pass),
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                let check = e.jump(BPF_JMP_JEQ_K, expected, pass, fail)?;
                e.stmt(BPF_ALU_AND_K, value, check)
            }
        }
    }

    /// Loads one 32-bit half of `seccomp_data.args[index]` into `A`, then goes on to `next`.
    fn load_arg(&mut self, index: u32, high: bool, next: Target) -> Result<Target, SeccompError> {
        let second_word = if high != self.big_endian { 4 } else { 0 };
        let offset = DATA_ARGS + 8 * index + second_word;
        self.emitter.stmt(BPF_LD_W_ABS, offset, next)
    }
}

/// The high and low 32-bit words of `value`.
fn split(value: u64) -> (u32, u32) {
    let [b0, b1, b2, b3, b4, b5, b6, b7] = value.to_be_bytes();
    (
        u32::from_be_bytes([b0, b1, b2, b3]),
        u32::from_be_bytes([b4, b5, b6, b7]),
    )
}
