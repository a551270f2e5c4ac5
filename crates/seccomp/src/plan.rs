//! Turns an OCI seccomp profile into per-ABI decision tables: which syscall numbers have rules,
//! in which order their conditional rules are tried and what happens when none matches.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator, LinuxSyscall,
};

use crate::arch::Abi;
use crate::SeccompError;

/// Highest valid `seccomp_data.args` index.
const MAX_ARG_INDEX: u32 = 5;

/// What the filter decides, before it becomes BPF.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The `SECCOMP_RET_*` value when no rule matches.
    pub(crate) default: u32,
    /// One section per `AUDIT_ARCH`, the native one first.
    pub(crate) sections: Vec<Section>,
}

/// The syscalls of one `AUDIT_ARCH`.
#[derive(Debug)]
pub(crate) struct Section {
    pub(crate) audit_arch: u32,
    /// The ABI whose syscall numbers lack the x32 bit; `None` when only x32 was selected.
    pub(crate) primary: Option<AbiPlan>,
    /// x32, which shares `AUDIT_ARCH_X86_64` with x86_64, when selected.
    pub(crate) x32: Option<AbiPlan>,
}

/// The rules of one ABI, keyed by syscall number.
#[derive(Debug)]
pub(crate) struct AbiPlan {
    pub(crate) abi: Abi,
    pub(crate) syscalls: BTreeMap<u32, SyscallPlan>,
}

/// What happens to one syscall number: the first matching conditional rule decides, else
/// `fallback` (the profile's unconditional rule for it, or the default action).
#[derive(Debug)]
pub(crate) struct SyscallPlan {
    pub(crate) conditional: Vec<Rule>,
    pub(crate) fallback: u32,
}

/// Conditions that must all hold for `ret` to be returned.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) conditions: Vec<Condition>,
    pub(crate) ret: u32,
}

/// `args[index] <op> value`; for `SCMP_CMP_MASKED_EQ`, `args[index] & value == expected`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Condition {
    /// 0 to 5.
    pub(crate) index: u32,
    pub(crate) op: LinuxSeccompOperator,
    pub(crate) value: u64,
    pub(crate) expected: u64,
}

/// The rules collected for one syscall number before the fallback is settled.
#[derive(Default)]
struct Collected {
    unconditional: Option<u32>,
    conditional: Vec<Rule>,
}

/// Builds the plan of `profile` for the `native` ABI plus the profile's architectures.
pub(crate) fn plan(profile: &LinuxSeccomp, native: Abi) -> Result<Plan, SeccompError> {
    let default = ret_value(
        profile.default_action(),
        profile.default_errno_ret(),
        || "the default action".to_owned(),
    )?;
    let abis = selected_abis(profile, native)?;
    let mut collected: Vec<BTreeMap<u32, Collected>> =
        abis.iter().map(|_| BTreeMap::new()).collect();
    for (index, rule) in profile.syscalls().iter().flatten().enumerate() {
        collect_rule(index, rule, default, &abis, &mut collected)?;
    }

    let mut sections: Vec<Section> = Vec::new();
    for (abi, syscalls) in abis.into_iter().zip(collected) {
        let abi_plan = AbiPlan {
            abi,
            syscalls: settle(syscalls, default),
        };
        let audit_arch = abi.audit_arch();
        let index = match sections.iter().position(|s| s.audit_arch == audit_arch) {
            Some(index) => index,
            None => {
                sections.push(Section {
                    audit_arch,
                    primary: None,
                    x32: None,
                });
                sections.len() - 1
            }
        };
        let section = &mut sections[index];
        if abi == Abi::X32 {
            section.x32 = Some(abi_plan);
        } else {
            section.primary = Some(abi_plan);
        }
    }
    Ok(Plan { default, sections })
}

/// The native ABI first, then the profile's architectures, without repeats. libseccomp always
/// filters the native architecture, listed or not.
fn selected_abis(profile: &LinuxSeccomp, native: Abi) -> Result<Vec<Abi>, SeccompError> {
    let mut abis = vec![native];
    for &arch in profile.architectures().iter().flatten() {
        let abi = match arch {
            Arch::ScmpArchNative => native,
            _ => Abi::from_arch(arch).ok_or(SeccompError::UnsupportedArch { arch })?,
        };
        if !abis.contains(&abi) {
            abis.push(abi);
        }
    }
    Ok(abis)
}

/// Validates one rule of the profile and files it under each ABI that knows its syscalls.
fn collect_rule(
    index: usize,
    rule: &LinuxSyscall,
    default: u32,
    abis: &[Abi],
    collected: &mut [BTreeMap<u32, Collected>],
) -> Result<(), SeccompError> {
    let first_name = rule
        .names()
        .first()
        .ok_or(SeccompError::EmptyNames { rule: index })?;
    let ret = ret_value(rule.action(), rule.errno_ret(), || {
        format!("syscall {first_name:?}")
    })?;
    let conditions = rule
        .args()
        .iter()
        .flatten()
        .map(|arg| condition(arg, first_name))
        .collect::<Result<Vec<_>, _>>()?;
    for name in rule.names() {
        if !Abi::is_known_anywhere(name) {
            return Err(SeccompError::UnknownSyscall { name: name.clone() });
        }
    }
    // As runc does before handing rules to libseccomp: a rule that returns the default action
    // changes nothing the caller can rely on, so it is dropped.
    if ret == default {
        return Ok(());
    }
    for name in rule.names() {
        for (abi, syscalls) in abis.iter().zip(collected.iter_mut()) {
            // libseccomp skips a name that this ABI lacks (`send` on x86_64).
            let Some(nr) = abi.syscall_nr(name) else {
                continue;
            };
            let entry = syscalls.entry(nr).or_default();
            if !conditions.is_empty() {
                entry.conditional.push(Rule {
                    conditions: conditions.clone(),
                    ret,
                });
                continue;
            }
            // As libseccomp: the first rule that matches every call of a syscall stays; later ones
            // for the same syscall are ignored (podman's default profile relies on this).
            entry.unconditional.get_or_insert(ret);
        }
    }
    Ok(())
}

fn condition(arg: &LinuxSeccompArg, syscall: &str) -> Result<Condition, SeccompError> {
    let index = u32::try_from(arg.index())
        .ok()
        .filter(|&index| index <= MAX_ARG_INDEX)
        .ok_or_else(|| SeccompError::ArgIndexOutOfRange {
            syscall: syscall.to_owned(),
            index: arg.index(),
        })?;
    Ok(Condition {
        index,
        op: arg.op(),
        value: arg.value(),
        // runc passes an absent valueTwo as 0.
        expected: arg.value_two().unwrap_or(0),
    })
}

/// Settles the fallback of each syscall and drops what cannot change the outcome.
fn settle(collected: BTreeMap<u32, Collected>, default: u32) -> BTreeMap<u32, SyscallPlan> {
    collected
        .into_iter()
        .filter_map(|(nr, entry)| {
            let fallback = entry.unconditional.unwrap_or(default);
            // As libseccomp: a rule matching every call makes the syscall's conditional rules moot,
            // whether they came before or after it.
            let mut conditional = if entry.unconditional.is_some() {
                Vec::new()
            } else {
                entry.conditional
            };
            // Rules are tried in order, so only trailing rules that return the fallback anyway
            // are redundant; an earlier one can still shadow a later rule.
            while conditional.last().is_some_and(|rule| rule.ret == fallback) {
                conditional.pop();
            }
            let has_effect = !conditional.is_empty() || fallback != default;
            has_effect.then_some((
                nr,
                SyscallPlan {
                    conditional,
                    fallback,
                },
            ))
        })
        .collect()
}

/// The `SECCOMP_RET_*` value of `action`. `ERRNO` and `TRACE` carry `errno` in the low 16 bits,
/// `EPERM` when the profile gives none (as runc does).
fn ret_value(
    action: LinuxSeccompAction,
    errno: Option<u32>,
    subject: impl FnOnce() -> String,
) -> Result<u32, SeccompError> {
    let data_matters = matches!(
        action,
        LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
    );
    if let Some(value) = errno.filter(|&value| data_matters && value > 0xffff) {
        return Err(SeccompError::ErrnoOutOfRange {
            subject: subject(),
            value,
        });
    }
    Ok(action.as_u32(errno))
}
