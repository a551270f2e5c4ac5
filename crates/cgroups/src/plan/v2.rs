//! cgroup v2 (unified) writes and the device program.
//!
//! Not applied on v2, as in runc: `memory.swappiness`, `memory.disableOOMKiller`,
//! `memory.kernel*`, `memory.useHierarchy`, `blockIO.leafWeight*` (v2 has no such knobs),
//! and `memory.checkBeforeUpdate`. `memory.reservation` maps to `memory.low`;
//! `memory.high` is reachable through `linux.resources.unified`. Real-time CPU limits are
//! refused, since v2 cannot honour them.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};
use testudo_linux::bpf::BpfInsn;

use super::{device_numbers, hugepage_size, rdma_writes, CgroupWrite, Controller, IfMissing};
use crate::devices::{device_program, rules_from_oci};
use crate::CgroupError;

/// What applying resources on v2 does: file writes, then the device program if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V2Plan {
    /// Writes to the cgroup's directory, in order; `linux.resources.unified` last.
    pub writes: Vec<CgroupWrite>,
    /// The device filter to attach, when `linux.resources.devices` is present.
    pub device_program: Option<Vec<BpfInsn>>,
}

/// v1 `cpu.shares` (2..=262144) to v2 `cpu.weight` (1..=10000), as runc and crun convert.
#[must_use]
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// v1 `blkio.weight` (10..=1000) to v2 `io.weight` (1..=10000), linearly, as runc does.
#[must_use]
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
}

/// The v2 writes and device program for `resources`.
pub fn plan_v2(resources: &LinuxResources) -> Result<V2Plan, CgroupError> {
    let mut writes = Vec::new();
    if let Some(cpu) = resources.cpu() {
        self::cpu(cpu, &mut writes)?;
    }
    if let Some(memory) = resources.memory() {
        self::memory(memory, &mut writes)?;
    }
    if let Some(pids) = resources.pids() {
        let limit = pids.limit();
        let value = if limit > 0 {
            limit.to_string()
        } else {
            "max".to_owned()
        };
        writes.push(CgroupWrite::new(Controller::Pids, "pids.max", value));
    }
    if let Some(blkio) = resources.block_io() {
        io(blkio, &mut writes)?;
    }
    for limit in resources.hugepage_limits().iter().flatten() {
        let size = hugepage_size(limit.page_size())?;
        let value = if limit.limit() < 0 {
            "max".to_owned()
        } else {
            limit.limit().to_string()
        };
        writes.push(CgroupWrite::new(
            Controller::Hugetlb,
            format!("hugetlb.{size}.max"),
            value,
        ));
    }
    if let Some(network) = resources.network() {
        let file = if network.class_id().is_some() {
            Some(("net_cls", "net_cls.classid"))
        } else if network.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            Some(("net_prio", "net_prio.ifpriomap"))
        } else {
            None
        };
        if let Some((controller, file)) = file {
            return Err(CgroupError::NotMounted {
                controller,
                file: file.to_owned(),
            });
        }
    }
    writes.extend(rdma_writes(resources.rdma().as_ref()));
    if let Some(unified) = resources.unified() {
        let mut keys: Vec<_> = unified.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in keys {
            if key.is_empty() || key.contains('/') || key == "." || key == ".." {
                return Err(CgroupError::invalid(
                    "unified key",
                    key,
                    "must be a file name in the cgroup directory",
                ));
            }
            writes.push(CgroupWrite::new(controller_of(key), key.as_str(), value));
        }
    }
    let device_program = match resources.devices() {
        Some(rules) => Some(device_program(&rules_from_oci(rules)?)),
        None => None,
    };
    Ok(V2Plan {
        writes,
        device_program,
    })
}

/// The controller owning a v2 interface file, from its prefix.
fn controller_of(file: &str) -> Controller {
    match file.split('.').next().unwrap_or_default() {
        "cpu" => Controller::Cpu,
        "cpuset" => Controller::Cpuset,
        "memory" => Controller::Memory,
        "io" => Controller::Blkio,
        "pids" => Controller::Pids,
        "hugetlb" => Controller::Hugetlb,
        "rdma" => Controller::Rdma,
        _ => Controller::Unified,
    }
}

fn cpu(cpu: &LinuxCpu, writes: &mut Vec<CgroupWrite>) -> Result<(), CgroupError> {
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        writes.push(CgroupWrite::new(Controller::Cpuset, "cpuset.cpus", cpus));
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        writes.push(CgroupWrite::new(Controller::Cpuset, "cpuset.mems", mems));
    }
    let c = Controller::Cpu;
    if cpu.realtime_runtime().is_some_and(|r| r != 0)
        || cpu.realtime_period().is_some_and(|p| p != 0)
    {
        return Err(CgroupError::invalid(
            "cpu.realtimeRuntime/realtimePeriod",
            format!("{:?}/{:?}", cpu.realtime_runtime(), cpu.realtime_period()),
            "real-time CPU limits are not supported on cgroup v2",
        ));
    }
    if let Some(idle) = cpu.idle() {
        writes.push(CgroupWrite::new(c, "cpu.idle", idle));
    }
    if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
        writes.push(CgroupWrite::new(
            c,
            "cpu.weight",
            cpu_shares_to_weight(shares),
        ));
    }
    let quota = cpu.quota().filter(|&q| q != 0);
    let period = cpu.period().filter(|&p| p != 0);
    if quota.is_some() || period.is_some() {
        let mut value = match quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".to_owned(),
        };
        if let Some(period) = period {
            value.push_str(&format!(" {period}"));
        }
        writes.push(CgroupWrite::new(c, "cpu.max", value));
    }
    if let Some(burst) = cpu.burst() {
        writes.push(CgroupWrite::new(c, "cpu.max.burst", burst).if_missing(IfMissing::Skip));
    }
    Ok(())
}

/// OCI swap is memory+swap; v2 `memory.swap.max` is swap alone (runc's conversion).
fn memory(memory: &LinuxMemory, writes: &mut Vec<CgroupWrite>) -> Result<(), CgroupError> {
    let m = Controller::Memory;
    let limit = memory.limit().filter(|&v| v != 0);
    let swap = memory.swap().filter(|&v| v != 0);
    let to_value = |v: i64| {
        if v == -1 {
            "max".to_owned()
        } else {
            v.to_string()
        }
    };
    for (field, value) in [("memory.limit", limit), ("memory.swap", swap)] {
        if value.is_some_and(|v| v < -1) {
            return Err(CgroupError::invalid(
                field,
                value.unwrap_or_default(),
                "must be -1 or positive",
            ));
        }
    }
    let swap_max = match (limit, swap) {
        // Unlimited memory with swap unset: unlimited swap too.
        (Some(-1), None) | (_, Some(-1)) => Some("max".to_owned()),
        (_, None) => None,
        (None | Some(-1), Some(s)) => {
            return Err(CgroupError::invalid(
                "memory.swap",
                s,
                "a swap limit needs a memory limit on cgroup v2",
            ))
        }
        (Some(l), Some(s)) if s < l => {
            return Err(CgroupError::invalid(
                "memory.swap",
                s,
                "memory+swap limit must not be below the memory limit",
            ))
        }
        (Some(l), Some(s)) => Some((s - l).to_string()),
    };
    if let Some(swap_max) = swap_max {
        // Without swap accounting the file is absent; "max" and "0" then hold anyway.
        let if_missing = if swap_max == "max" || swap_max == "0" {
            IfMissing::Skip
        } else {
            IfMissing::Fail
        };
        writes.push(CgroupWrite::new(m, "memory.swap.max", swap_max).if_missing(if_missing));
    }
    if let Some(limit) = limit {
        writes.push(CgroupWrite::new(m, "memory.max", to_value(limit)));
    }
    if let Some(reservation) = memory.reservation().filter(|&v| v != 0) {
        writes.push(CgroupWrite::new(m, "memory.low", to_value(reservation)));
    }
    Ok(())
}

fn io(blkio: &LinuxBlockIo, writes: &mut Vec<CgroupWrite>) -> Result<(), CgroupError> {
    let b = Controller::Blkio;
    // BFQ takes v1-style weights; otherwise io.weight (blk-iocost) takes the converted one.
    if let Some(weight) = blkio.weight().filter(|&w| w != 0) {
        writes.push(CgroupWrite::new(b, "io.bfq.weight", weight).if_missing(
            IfMissing::WriteInstead {
                file: "io.weight".into(),
                value: blkio_weight_to_io_weight(weight).to_string(),
            },
        ));
    }
    for device in blkio.weight_device().iter().flatten() {
        let numbers = device_numbers("blockIO.weightDevice", device.major(), device.minor())?;
        if let Some(weight) = device.weight().filter(|&w| w != 0) {
            writes.push(
                CgroupWrite::new(b, "io.bfq.weight", format!("{numbers} {weight}")).if_missing(
                    IfMissing::WriteInstead {
                        file: "io.weight".into(),
                        value: format!("{numbers} {}", blkio_weight_to_io_weight(weight)),
                    },
                ),
            );
        }
    }
    let throttles = [
        ("rbps", blkio.throttle_read_bps_device()),
        ("wbps", blkio.throttle_write_bps_device()),
        ("riops", blkio.throttle_read_iops_device()),
        ("wiops", blkio.throttle_write_iops_device()),
    ];
    for (key, devices) in throttles {
        for device in devices.iter().flatten() {
            let numbers = device_numbers("blockIO.throttle", device.major(), device.minor())?;
            // v1 uses 0 to lift a limit; v2 spells that "max".
            let rate = match device.rate() {
                0 => "max".to_owned(),
                r => r.to_string(),
            };
            writes.push(CgroupWrite::new(
                b,
                "io.max",
                format!("{numbers} {key}={rate}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{pairs, resources};

    fn plan(json: &str) -> V2Plan {
        plan_v2(&resources(json)).expect("valid plan")
    }

    #[test]
    fn shares_convert_to_weight_like_runc_and_crun() {
        assert_eq!(cpu_shares_to_weight(0), 0);
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 39);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(1), 1, "clamped to the v1 minimum");
        assert_eq!(
            cpu_shares_to_weight(u64::MAX),
            10_000,
            "clamped, no overflow"
        );
    }

    #[test]
    fn blkio_weight_converts_linearly() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
    }

    #[test]
    fn cpu_maps_to_weight_and_max() {
        let p = plan(
            r#"{"cpu":{"shares":1024,"quota":50000,"period":100000,"burst":10,"idle":1,"cpus":"0-1","mems":"0"}}"#,
        );
        assert_eq!(
            pairs(&p.writes),
            [
                ("cpuset.cpus", "0-1"),
                ("cpuset.mems", "0"),
                ("cpu.idle", "1"),
                ("cpu.weight", "39"),
                ("cpu.max", "50000 100000"),
                ("cpu.max.burst", "10"),
            ]
        );
        assert_eq!(
            pairs(&plan(r#"{"cpu":{"quota":-1}}"#).writes),
            [("cpu.max", "max")]
        );
        assert_eq!(
            pairs(&plan(r#"{"cpu":{"period":50000}}"#).writes),
            [("cpu.max", "max 50000")]
        );
        assert!(plan_v2(&resources(r#"{"cpu":{"realtimeRuntime":100}}"#)).is_err());
    }

    #[test]
    fn swap_max_is_swap_minus_memory() {
        let p = plan(r#"{"memory":{"limit":100,"swap":300,"reservation":50}}"#);
        assert_eq!(
            pairs(&p.writes),
            [
                ("memory.swap.max", "200"),
                ("memory.max", "100"),
                ("memory.low", "50")
            ]
        );
        assert_eq!(p.writes[0].if_missing, IfMissing::Fail);
        let same = plan(r#"{"memory":{"limit":100,"swap":100}}"#);
        assert_eq!(
            pairs(&same.writes),
            [("memory.swap.max", "0"), ("memory.max", "100")]
        );
        assert_eq!(same.writes[0].if_missing, IfMissing::Skip);
        let unlimited = plan(r#"{"memory":{"limit":-1}}"#);
        assert_eq!(
            pairs(&unlimited.writes),
            [("memory.swap.max", "max"), ("memory.max", "max")]
        );
        assert!(plan_v2(&resources(r#"{"memory":{"swap":100}}"#)).is_err());
        assert!(plan_v2(&resources(r#"{"memory":{"limit":200,"swap":100}}"#)).is_err());
    }

    #[test]
    fn pids_io_hugetlb_map_to_v2_files() {
        let p = plan(
            r#"{"pids":{"limit":0},"blockIO":{"weight":500,
                "weightDevice":[{"major":8,"minor":0,"weight":100}],
                "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}],
                "throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":0}]},
                "hugepageLimits":[{"pageSize":"2MB","limit":4194304}]}"#,
        );
        assert_eq!(
            pairs(&p.writes),
            [
                ("pids.max", "max"),
                ("io.bfq.weight", "500"),
                ("io.bfq.weight", "8:0 100"),
                ("io.max", "8:0 rbps=1048576"),
                ("io.max", "8:0 wiops=max"),
                ("hugetlb.2MB.max", "4194304"),
            ]
        );
        assert_eq!(
            p.writes[1].if_missing,
            IfMissing::WriteInstead {
                file: "io.weight".into(),
                value: "4950".into()
            }
        );
    }

    #[test]
    fn unified_keys_go_last_sorted_and_must_be_plain_file_names() {
        let p = plan(
            r#"{"pids":{"limit":5},"unified":{"pids.max":"7","memory.high":"1G","cgroup.type":"threaded"}}"#,
        );
        assert_eq!(
            pairs(&p.writes),
            [
                ("pids.max", "5"),
                ("cgroup.type", "threaded"),
                ("memory.high", "1G"),
                ("pids.max", "7")
            ]
        );
        assert_eq!(p.writes[1].controller, Controller::Unified);
        assert_eq!(p.writes[2].controller, Controller::Memory);
        for key in ["../x", "a/b", "", ".."] {
            let json = format!(r#"{{"unified":{{"{key}":"1"}}}}"#);
            assert!(plan_v2(&resources(&json)).is_err(), "{key}");
        }
    }

    #[test]
    fn devices_become_a_program_and_network_is_refused() {
        let p = plan(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#);
        assert!(p.writes.is_empty());
        assert!(p.device_program.is_some());
        assert!(plan(r#"{}"#).device_program.is_none());
        let err =
            plan_v2(&resources(r#"{"network":{"classID":1}}"#)).expect_err("no net_cls on v2");
        assert!(matches!(
            err,
            CgroupError::NotMounted {
                controller: "net_cls",
                ..
            }
        ));
    }
}
