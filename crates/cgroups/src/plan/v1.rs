//! cgroup v1 (legacy and hybrid) writes.
//!
//! Not written, on purpose: `memory.kernel` and `memory.kernelTCP` (kernel memory limits
//! are deprecated and not enforced on current kernels; runc ignores them too),
//! `memory.useHierarchy` and `memory.checkBeforeUpdate`.

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxNetwork, LinuxResources, LinuxThrottleDevice,
};

use super::{device_numbers, hugepage_size, rdma_writes, CgroupWrite, Controller, IfMissing};
use crate::devices::rules_from_oci;
use crate::CgroupError;

/// Facts about the host and the cgroup that the v1 plan depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V1Context {
    /// hugetlb is not a v1 hierarchy but a controller of the cgroup2 mount (hybrid).
    pub hugetlb_on_unified: bool,
    /// The cgroup's current `memory.limit_in_bytes`; read only when
    /// [`needs_current_memory_limit`] says so.
    pub current_memory_limit: Option<u64>,
}

/// Whether [`plan_v1`] needs the current memory limit: both limit and swap are set, and the
/// order of the two writes depends on whether the limit grows or shrinks.
#[must_use]
pub fn needs_current_memory_limit(resources: &LinuxResources) -> bool {
    resources.memory().as_ref().is_some_and(|m| {
        let set = |v: Option<i64>| v.is_some_and(|v| v != 0);
        set(m.limit()) && set(m.swap()) && m.swap() != Some(-1)
    })
}

/// The v1 writes for `resources`, in the order they must happen.
///
/// Controllers follow runc's order: cpuset, devices, memory, cpu, pids, blkio, hugetlb,
/// net_cls, net_prio, rdma. Zero means "not set" for numeric fields, as in runc.
pub fn plan_v1(
    resources: &LinuxResources,
    ctx: &V1Context,
) -> Result<Vec<CgroupWrite>, CgroupError> {
    if resources.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::UnifiedOnV1);
    }
    let mut writes = Vec::new();
    if let Some(cpu) = resources.cpu() {
        cpuset(cpu, &mut writes);
    }
    if let Some(rules) = resources.devices() {
        // Start from "deny all", then each rule in order.
        writes.push(CgroupWrite::new(Controller::Devices, "devices.deny", "a"));
        for rule in rules_from_oci(rules)? {
            let file = if rule.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            writes.push(CgroupWrite::new(Controller::Devices, file, rule.v1_line()));
        }
    }
    if let Some(memory) = resources.memory() {
        self::memory(memory, ctx.current_memory_limit, &mut writes)?;
    }
    if let Some(cpu) = resources.cpu() {
        self::cpu(cpu, &mut writes);
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
        self::blkio(blkio, &mut writes)?;
    }
    for limit in resources.hugepage_limits().iter().flatten() {
        let size = hugepage_size(limit.page_size())?;
        let write = if ctx.hugetlb_on_unified {
            let value = if limit.limit() < 0 {
                "max".to_owned()
            } else {
                limit.limit().to_string()
            };
            CgroupWrite::new(Controller::Hugetlb, format!("hugetlb.{size}.max"), value)
        } else {
            CgroupWrite::new(
                Controller::Hugetlb,
                format!("hugetlb.{size}.limit_in_bytes"),
                limit.limit(),
            )
        };
        writes.push(write);
    }
    if let Some(network) = resources.network() {
        self::network(network, &mut writes);
    }
    writes.extend(rdma_writes(resources.rdma().as_ref()));
    Ok(writes)
}

fn cpuset(cpu: &LinuxCpu, writes: &mut Vec<CgroupWrite>) {
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        writes.push(CgroupWrite::new(Controller::Cpuset, "cpuset.cpus", cpus));
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        writes.push(CgroupWrite::new(Controller::Cpuset, "cpuset.mems", mems));
    }
}

/// memory.limit_in_bytes must stay <= memory.memsw.limit_in_bytes at every step, so when
/// both change, the one that moves away from the other goes first (runc's rule).
fn memory(
    memory: &LinuxMemory,
    current_limit: Option<u64>,
    writes: &mut Vec<CgroupWrite>,
) -> Result<(), CgroupError> {
    let limit = memory.limit().filter(|&v| v != 0);
    let mut swap = memory.swap().filter(|&v| v != 0);
    for (field, value) in [("memory.limit", limit), ("memory.swap", swap)] {
        if value.is_some_and(|v| v < -1) {
            return Err(CgroupError::invalid(
                field,
                value.unwrap_or_default(),
                "must be -1 or positive",
            ));
        }
    }
    if let (Some(l), Some(s)) = (limit, swap) {
        if l > 0 && s > 0 && s < l {
            return Err(CgroupError::invalid(
                "memory.swap",
                s,
                "memory+swap limit must not be below the memory limit",
            ));
        }
    }
    // Unlimited memory with swap unset means unlimited swap too, where swap accounting
    // exists.
    let mut swap_if_missing = IfMissing::Fail;
    if limit == Some(-1) && swap.is_none() {
        swap = Some(-1);
        swap_if_missing = IfMissing::Skip;
    }
    let limit_write =
        limit.map(|l| CgroupWrite::new(Controller::Memory, "memory.limit_in_bytes", l));
    let swap_write = swap.map(|s| {
        CgroupWrite::new(Controller::Memory, "memory.memsw.limit_in_bytes", s)
            .if_missing(swap_if_missing)
    });
    let swap_first = match (limit, swap) {
        (Some(_), Some(s)) => {
            s == -1 || current_limit.is_some_and(|cur| u64::try_from(s).is_ok_and(|s| cur < s))
        }
        _ => false,
    };
    if swap_first {
        writes.extend(swap_write);
        writes.extend(limit_write);
    } else {
        writes.extend(limit_write);
        writes.extend(swap_write);
    }
    if let Some(reservation) = memory.reservation().filter(|&v| v != 0) {
        writes.push(CgroupWrite::new(
            Controller::Memory,
            "memory.soft_limit_in_bytes",
            reservation,
        ));
    }
    if let Some(swappiness) = memory.swappiness() {
        if swappiness > 100 {
            return Err(CgroupError::invalid(
                "memory.swappiness",
                swappiness,
                "must be between 0 and 100",
            ));
        }
        writes.push(CgroupWrite::new(
            Controller::Memory,
            "memory.swappiness",
            swappiness,
        ));
    }
    if memory.disable_oom_killer() == Some(true) {
        writes.push(CgroupWrite::new(
            Controller::Memory,
            "memory.oom_control",
            1,
        ));
    }
    Ok(())
}

fn cpu(cpu: &LinuxCpu, writes: &mut Vec<CgroupWrite>) {
    let c = Controller::Cpu;
    if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
        writes.push(CgroupWrite::new(c, "cpu.shares", shares));
    }
    let quota = cpu.quota().filter(|&q| q != 0);
    if let Some(period) = cpu.period().filter(|&p| p != 0) {
        // A shorter period can be refused until the new quota is in place.
        writes.push(
            CgroupWrite::new(c, "cpu.cfs_period_us", period).retry_after_next_if(quota.is_some()),
        );
    }
    if let Some(burst) = cpu.burst() {
        writes.push(
            CgroupWrite::new(c, "cpu.cfs_burst_us", burst)
                .if_missing(IfMissing::Skip)
                .retry_after_next_if(quota.is_some()),
        );
    }
    if let Some(quota) = quota {
        writes.push(CgroupWrite::new(c, "cpu.cfs_quota_us", quota));
    }
    if let Some(idle) = cpu.idle() {
        writes.push(CgroupWrite::new(c, "cpu.idle", idle));
    }
    let runtime = cpu.realtime_runtime().filter(|&r| r != 0);
    if let Some(period) = cpu.realtime_period().filter(|&p| p != 0) {
        writes.push(
            CgroupWrite::new(c, "cpu.rt_period_us", period).retry_after_next_if(runtime.is_some()),
        );
    }
    if let Some(runtime) = runtime {
        writes.push(CgroupWrite::new(c, "cpu.rt_runtime_us", runtime));
    }
}

fn blkio(blkio: &LinuxBlockIo, writes: &mut Vec<CgroupWrite>) -> Result<(), CgroupError> {
    let b = Controller::Blkio;
    // Kernels without CFQ (all since 5.0) only have the BFQ files, if BFQ is in use.
    if let Some(weight) = blkio.weight().filter(|&w| w != 0) {
        writes.push(CgroupWrite::new(b, "blkio.weight", weight).if_missing(
            IfMissing::WriteInstead {
                file: "blkio.bfq.weight".into(),
                value: weight.to_string(),
            },
        ));
    }
    if let Some(leaf) = blkio.leaf_weight().filter(|&w| w != 0) {
        writes.push(CgroupWrite::new(b, "blkio.leaf_weight", leaf));
    }
    for device in blkio.weight_device().iter().flatten() {
        let numbers = device_numbers("blockIO.weightDevice", device.major(), device.minor())?;
        if let Some(weight) = device.weight().filter(|&w| w != 0) {
            let value = format!("{numbers} {weight}");
            writes.push(
                CgroupWrite::new(b, "blkio.weight_device", &value).if_missing(
                    IfMissing::WriteInstead {
                        file: "blkio.bfq.weight_device".into(),
                        value,
                    },
                ),
            );
        }
        if let Some(leaf) = device.leaf_weight().filter(|&w| w != 0) {
            writes.push(CgroupWrite::new(
                b,
                "blkio.leaf_weight_device",
                format!("{numbers} {leaf}"),
            ));
        }
    }
    let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        (
            "blkio.throttle.read_bps_device",
            blkio.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            blkio.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            blkio.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            blkio.throttle_write_iops_device(),
        ),
    ];
    for (file, devices) in throttles {
        for device in devices.iter().flatten() {
            let numbers = device_numbers("blockIO.throttle", device.major(), device.minor())?;
            writes.push(CgroupWrite::new(
                b,
                file,
                format!("{numbers} {}", device.rate()),
            ));
        }
    }
    Ok(())
}

fn network(network: &LinuxNetwork, writes: &mut Vec<CgroupWrite>) {
    if let Some(class_id) = network.class_id() {
        writes.push(CgroupWrite::new(
            Controller::NetCls,
            "net_cls.classid",
            class_id,
        ));
    }
    for priority in network.priorities().iter().flatten() {
        writes.push(CgroupWrite::new(
            Controller::NetPrio,
            "net_prio.ifpriomap",
            format!("{} {}", priority.name(), priority.priority()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{pairs, resources};
    use crate::plan::OnEinval;

    fn plan(json: &str) -> Vec<CgroupWrite> {
        plan_v1(&resources(json), &V1Context::default()).expect("valid plan")
    }

    #[test]
    fn memory_limits_map_to_v1_files() {
        let writes = plan(
            r#"{"memory":{"limit":104857600,"reservation":52428800,"swappiness":10,
                "disableOOMKiller":true,"kernel":1000,"kernelTCP":2000}}"#,
        );
        assert_eq!(
            pairs(&writes),
            [
                ("memory.limit_in_bytes", "104857600"),
                ("memory.soft_limit_in_bytes", "52428800"),
                ("memory.swappiness", "10"),
                ("memory.oom_control", "1"),
            ]
        );
    }

    #[test]
    fn growing_limits_write_memsw_first_and_shrinking_limits_write_it_last() {
        let r = resources(r#"{"memory":{"limit":200000000,"swap":400000000}}"#);
        assert!(needs_current_memory_limit(&r));
        let grow = V1Context {
            current_memory_limit: Some(100_000_000),
            ..V1Context::default()
        };
        assert_eq!(
            pairs(&plan_v1(&r, &grow).expect("plan")),
            [
                ("memory.memsw.limit_in_bytes", "400000000"),
                ("memory.limit_in_bytes", "200000000")
            ]
        );
        let shrink = V1Context {
            current_memory_limit: Some(9_223_372_036_854_771_712),
            ..V1Context::default()
        };
        assert_eq!(
            pairs(&plan_v1(&r, &shrink).expect("plan")),
            [
                ("memory.limit_in_bytes", "200000000"),
                ("memory.memsw.limit_in_bytes", "400000000")
            ]
        );
    }

    #[test]
    fn unlimited_memory_also_lifts_swap_when_swap_is_unset() {
        let r = resources(r#"{"memory":{"limit":-1}}"#);
        assert!(!needs_current_memory_limit(&r));
        let writes = plan_v1(&r, &V1Context::default()).expect("plan");
        assert_eq!(
            pairs(&writes),
            [
                ("memory.memsw.limit_in_bytes", "-1"),
                ("memory.limit_in_bytes", "-1")
            ]
        );
        assert_eq!(
            writes[0].if_missing,
            IfMissing::Skip,
            "swap accounting may be off"
        );
    }

    #[test]
    fn invalid_memory_values_are_rejected() {
        for json in [
            r#"{"memory":{"limit":100,"swap":50}}"#,
            r#"{"memory":{"limit":-5}}"#,
            r#"{"memory":{"swappiness":101}}"#,
        ] {
            let err = plan_v1(&resources(json), &V1Context::default()).expect_err(json);
            assert!(matches!(err, CgroupError::InvalidValue { .. }), "{err}");
        }
    }

    #[test]
    fn cpu_period_is_retried_after_quota_and_rt_period_after_runtime() {
        let writes = plan(
            r#"{"cpu":{"shares":512,"quota":50000,"period":100000,"burst":1000,"idle":0,
                "realtimeRuntime":950000,"realtimePeriod":1000000,"cpus":"0","mems":"0"}}"#,
        );
        assert_eq!(
            pairs(&writes),
            [
                ("cpuset.cpus", "0"),
                ("cpuset.mems", "0"),
                ("cpu.shares", "512"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_burst_us", "1000"),
                ("cpu.cfs_quota_us", "50000"),
                ("cpu.idle", "0"),
                ("cpu.rt_period_us", "1000000"),
                ("cpu.rt_runtime_us", "950000"),
            ]
        );
        let retried: Vec<&str> = writes
            .iter()
            .filter(|w| w.on_einval == OnEinval::RetryAfterNext)
            .map(|w| w.file.as_str())
            .collect();
        assert_eq!(
            retried,
            ["cpu.cfs_period_us", "cpu.cfs_burst_us", "cpu.rt_period_us"]
        );
        let period_alone = plan(r#"{"cpu":{"period":100000}}"#);
        assert_eq!(period_alone[0].on_einval, OnEinval::Fail);
    }

    #[test]
    fn pids_limit_zero_or_negative_means_max() {
        assert_eq!(
            pairs(&plan(r#"{"pids":{"limit":0}}"#)),
            [("pids.max", "max")]
        );
        assert_eq!(
            pairs(&plan(r#"{"pids":{"limit":-1}}"#)),
            [("pids.max", "max")]
        );
        assert_eq!(
            pairs(&plan(r#"{"pids":{"limit":64}}"#)),
            [("pids.max", "64")]
        );
    }

    #[test]
    fn devices_deny_all_first_then_rules_in_order() {
        let writes = plan(
            r#"{"devices":[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":true,"type":"c","major":136,"access":"rw"},
                {"allow":false,"type":"b","major":8,"minor":0,"access":"m"}]}"#,
        );
        assert_eq!(
            pairs(&writes),
            [
                ("devices.deny", "a"),
                ("devices.deny", "a *:* rwm"),
                ("devices.allow", "c 1:3 rwm"),
                ("devices.allow", "c 136:* rw"),
                ("devices.deny", "b 8:0 m"),
            ]
        );
    }

    #[test]
    fn blkio_weight_falls_back_to_bfq_and_throttles_name_devices() {
        let writes = plan(
            r#"{"blockIO":{"weight":500,"leafWeight":300,
                "weightDevice":[{"major":8,"minor":0,"weight":600}],
                "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}],
                "throttleWriteIOPSDevice":[{"major":8,"minor":16,"rate":100}]}}"#,
        );
        assert_eq!(
            pairs(&writes),
            [
                ("blkio.weight", "500"),
                ("blkio.leaf_weight", "300"),
                ("blkio.weight_device", "8:0 600"),
                ("blkio.throttle.read_bps_device", "8:0 1048576"),
                ("blkio.throttle.write_iops_device", "8:16 100"),
            ]
        );
        assert_eq!(
            writes[0].if_missing,
            IfMissing::WriteInstead {
                file: "blkio.bfq.weight".into(),
                value: "500".into()
            }
        );
        assert_eq!(writes[1].if_missing, IfMissing::Fail);
    }

    #[test]
    fn hugetlb_uses_v2_files_when_it_lives_on_the_unified_mount() {
        let r = resources(
            r#"{"hugepageLimits":[{"pageSize":"2MB","limit":-1},{"pageSize":"1GB","limit":1073741824}]}"#,
        );
        let v1 = plan_v1(&r, &V1Context::default()).expect("plan");
        assert_eq!(
            pairs(&v1),
            [
                ("hugetlb.2MB.limit_in_bytes", "-1"),
                ("hugetlb.1GB.limit_in_bytes", "1073741824")
            ]
        );
        let hybrid = V1Context {
            hugetlb_on_unified: true,
            ..V1Context::default()
        };
        let v2 = plan_v1(&r, &hybrid).expect("plan");
        assert_eq!(
            pairs(&v2),
            [
                ("hugetlb.2MB.max", "max"),
                ("hugetlb.1GB.max", "1073741824")
            ]
        );
    }

    #[test]
    fn network_classid_and_priorities() {
        let writes =
            plan(r#"{"network":{"classID":1048577,"priorities":[{"name":"eth0","priority":5}]}}"#);
        assert_eq!(
            pairs(&writes),
            [
                ("net_cls.classid", "1048577"),
                ("net_prio.ifpriomap", "eth0 5")
            ]
        );
        assert_eq!(writes[0].controller, Controller::NetCls);
        assert_eq!(writes[1].controller, Controller::NetPrio);
    }

    #[test]
    fn unified_map_is_refused_on_v1() {
        let err = plan_v1(
            &resources(r#"{"unified":{"memory.high":"1"}}"#),
            &V1Context::default(),
        )
        .expect_err("v1");
        assert!(matches!(err, CgroupError::UnifiedOnV1));
        assert!(plan_v1(&resources(r#"{"unified":{}}"#), &V1Context::default()).is_ok());
    }
}
