//! Resource usage, shaped like runc's `events --stats` data (runc's `types.Stats`), read
//! from whichever files the cgroup has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fs::read_optional;
use crate::plan::Controller;
use crate::CgroupError;

/// `USER_HZ`: the unit of `cpuacct.stat` (fixed at 100 on Linux, as runc assumes).
const NANOS_PER_USER_HZ_TICK: u64 = 10_000_000;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Usage of one container's cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU time and throttling.
    pub cpu: CpuStats,
    /// Memory, swap and kernel memory.
    pub memory: MemoryStats,
    /// Process counts.
    pub pids: PidsStats,
    /// Block I/O.
    pub blkio: BlkioStats,
    /// Huge pages, by page size (`2MB`).
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

/// CPU statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStats {
    /// Time used.
    pub usage: CpuUsage,
    /// CFS bandwidth throttling.
    pub throttling: Throttling,
}

/// CPU time, in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Total CPU time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    /// Total per CPU (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Kernel-mode time per CPU (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// User-mode time per CPU (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// Kernel-mode time.
    #[serde(default)]
    pub kernel: u64,
    /// User-mode time.
    #[serde(default)]
    pub user: u64,
}

/// CFS bandwidth throttling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttling {
    /// Enforcement periods elapsed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    #[serde(default, rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Time throttled, in nanoseconds.
    #[serde(default, rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// Memory statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Page cache (`cache` on v1, `file` on v2).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory plus swap (v1 semantics, also on v2).
    pub swap: MemoryEntry,
    /// Kernel memory (v1).
    pub kernel: MemoryEntry,
    /// Kernel TCP buffers (v1).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// Every counter of `memory.stat`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// One memory counter family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEntry {
    /// Limit in bytes (`u64::MAX` on v2 when unlimited).
    #[serde(default)]
    pub limit: u64,
    /// Current usage in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak usage in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Times the limit was hit (v1).
    #[serde(default)]
    pub failcnt: u64,
}

/// Process counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    /// Processes and threads now.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    /// The limit; 0 when unlimited.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// Block I/O statistics, recursive over sub-cgroups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlkioStats {
    /// Bytes transferred.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// I/O operations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// Queued operations (CFQ/BFQ debug).
    #[serde(
        default,
        rename = "ioQueueRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_queued_recursive: Vec<BlkioEntry>,
    /// Service time (CFQ/BFQ debug).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    /// Wait time (CFQ/BFQ debug).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    /// Merged operations (CFQ/BFQ debug).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    /// Disk time (CFQ/BFQ debug).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    /// Sectors transferred (CFQ/BFQ debug).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// One per-device counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioEntry {
    /// Device major number.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub major: u64,
    /// Device minor number.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard`, `Total`, or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// The count.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// Huge page usage for one page size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugetlbStats {
    /// Bytes in use.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak bytes in use (v1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Allocations refused by the limit.
    #[serde(default)]
    pub failcnt: u64,
}

/// A number from a control file; `max` is `u64::MAX`.
fn parse_value(path: &Path, text: &str) -> Result<u64, CgroupError> {
    let text = text.trim();
    if text == "max" {
        return Ok(u64::MAX);
    }
    text.parse()
        .map_err(|_| CgroupError::parse(path, format!("not a number: {text:?}")))
}

/// Reads a single-number file; `None` if it does not exist.
fn read_value(path: &Path) -> Result<Option<u64>, CgroupError> {
    read_optional(path)?
        .map(|text| parse_value(path, &text))
        .transpose()
}

/// Reads a `key value` file (`cpu.stat`, `memory.stat`, `*.events`); empty if absent.
fn read_keyed(path: &Path) -> Result<BTreeMap<String, u64>, CgroupError> {
    let mut map = BTreeMap::new();
    for line in read_optional(path)?.unwrap_or_default().lines() {
        if let Some((key, value)) = line.split_once(' ') {
            map.insert(key.to_owned(), parse_value(path, value)?);
        }
    }
    Ok(map)
}

/// Space-separated numbers (`cpuacct.usage_percpu`); empty if absent.
fn read_list(path: &Path) -> Result<Vec<u64>, CgroupError> {
    read_optional(path)?
        .unwrap_or_default()
        .split_whitespace()
        .map(|n| parse_value(path, n))
        .collect()
}

/// cgroup v1 statistics; `dir_of` gives each controller's directory, and hugetlb may be on
/// the unified mount (hybrid).
pub(crate) fn read_v1(
    dir_of: impl Fn(Controller) -> Option<PathBuf>,
    hugetlb_on_unified: bool,
) -> Result<Stats, CgroupError> {
    let mut stats = Stats::default();
    if let Some(dir) = dir_of(Controller::Cpuacct) {
        cpuacct_v1(&dir, &mut stats.cpu.usage)?;
    }
    if let Some(dir) = dir_of(Controller::Cpu) {
        let cpu = read_keyed(&dir.join("cpu.stat"))?;
        stats.cpu.throttling = Throttling {
            periods: cpu.get("nr_periods").copied().unwrap_or_default(),
            throttled_periods: cpu.get("nr_throttled").copied().unwrap_or_default(),
            throttled_time: cpu.get("throttled_time").copied().unwrap_or_default(),
        };
    }
    if let Some(dir) = dir_of(Controller::Memory) {
        let m = &mut stats.memory;
        m.usage = memory_entry_v1(&dir, "memory")?;
        m.swap = memory_entry_v1(&dir, "memory.memsw")?;
        m.kernel = memory_entry_v1(&dir, "memory.kmem")?;
        m.kernel_tcp = memory_entry_v1(&dir, "memory.kmem.tcp")?;
        m.raw = read_keyed(&dir.join("memory.stat"))?;
        m.cache = m.raw.get("cache").copied().unwrap_or_default();
    }
    if let Some(dir) = dir_of(Controller::Pids) {
        stats.pids = pids(&dir)?;
    }
    if let Some(dir) = dir_of(Controller::Blkio) {
        stats.blkio = blkio_v1(&dir)?;
    }
    if let Some(dir) = dir_of(Controller::Hugetlb) {
        stats.hugetlb = if hugetlb_on_unified {
            hugetlb_v2(&dir)?
        } else {
            hugetlb_v1(&dir)?
        };
    }
    Ok(stats)
}

fn cpuacct_v1(dir: &Path, usage: &mut CpuUsage) -> Result<(), CgroupError> {
    usage.total = read_value(&dir.join("cpuacct.usage"))?.unwrap_or_default();
    usage.percpu = read_list(&dir.join("cpuacct.usage_percpu"))?;
    // "cpu user system" then one line per CPU, in nanoseconds.
    let all = dir.join("cpuacct.usage_all");
    for line in read_optional(&all)?.unwrap_or_default().lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [_, user, system] = fields[..] {
            usage.percpu_user.push(parse_value(&all, user)?);
            usage.percpu_kernel.push(parse_value(&all, system)?);
        }
    }
    let ticks = read_keyed(&dir.join("cpuacct.stat"))?;
    usage.user = ticks.get("user").copied().unwrap_or_default() * NANOS_PER_USER_HZ_TICK;
    usage.kernel = ticks.get("system").copied().unwrap_or_default() * NANOS_PER_USER_HZ_TICK;
    Ok(())
}

fn memory_entry_v1(dir: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    let Some(usage) = read_value(&dir.join(format!("{prefix}.usage_in_bytes")))? else {
        return Ok(MemoryEntry::default());
    };
    let value = |name: &str| read_value(&dir.join(format!("{prefix}.{name}")));
    Ok(MemoryEntry {
        usage,
        max: value("max_usage_in_bytes")?.unwrap_or_default(),
        failcnt: value("failcnt")?.unwrap_or_default(),
        limit: value("limit_in_bytes")?.unwrap_or_default(),
    })
}

fn pids(dir: &Path) -> Result<PidsStats, CgroupError> {
    let limit = read_value(&dir.join("pids.max"))?.unwrap_or_default();
    Ok(PidsStats {
        current: read_value(&dir.join("pids.current"))?.unwrap_or_default(),
        // runc reports "max" as 0.
        limit: if limit == u64::MAX { 0 } else { limit },
    })
}

/// `8:0 Read 4096` lines (or `8:0 4096` for time and sectors); `Total N` lines skipped.
fn blkio_entries(path: &Path) -> Result<Vec<BlkioEntry>, CgroupError> {
    let mut entries = Vec::new();
    for line in read_optional(path)?.unwrap_or_default().lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (device, op, value) = match fields[..] {
            [device, op, value] => (device, op, value),
            [device, value] if device.contains(':') => (device, "", value),
            _ => continue,
        };
        let Some((major, minor)) = device.split_once(':') else {
            continue;
        };
        entries.push(BlkioEntry {
            major: parse_value(path, major)?,
            minor: parse_value(path, minor)?,
            op: op.to_owned(),
            value: parse_value(path, value)?,
        });
    }
    Ok(entries)
}

fn blkio_v1(dir: &Path) -> Result<BlkioStats, CgroupError> {
    // CFQ files, else BFQ, else the throttling layer's (which only counts bytes and ios).
    for prefix in ["blkio.", "blkio.bfq."] {
        let bytes = dir.join(format!("{prefix}io_service_bytes_recursive"));
        if bytes.exists() {
            let file = |name: &str| blkio_entries(&dir.join(format!("{prefix}{name}_recursive")));
            return Ok(BlkioStats {
                io_service_bytes_recursive: blkio_entries(&bytes)?,
                io_serviced_recursive: file("io_serviced")?,
                io_queued_recursive: file("io_queued")?,
                io_service_time_recursive: file("io_service_time")?,
                io_wait_time_recursive: file("io_wait_time")?,
                io_merged_recursive: file("io_merged")?,
                io_time_recursive: file("time")?,
                sectors_recursive: file("sectors")?,
            });
        }
    }
    Ok(BlkioStats {
        io_service_bytes_recursive: blkio_entries(
            &dir.join("blkio.throttle.io_service_bytes_recursive"),
        )?,
        io_serviced_recursive: blkio_entries(&dir.join("blkio.throttle.io_serviced_recursive"))?,
        ..BlkioStats::default()
    })
}

/// Page sizes of the hugetlb files in `dir` whose names end in `suffix`.
fn hugetlb_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return Err(CgroupError::read(dir, e)),
    };
    let mut sizes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CgroupError::read(dir, e))?;
        let name = entry.file_name();
        let size = name
            .to_str()
            .and_then(|n| n.strip_prefix("hugetlb."))
            .and_then(|n| n.strip_suffix(suffix))
            .filter(|s| !s.contains('.'));
        if let Some(size) = size {
            sizes.push(size.to_owned());
        }
    }
    Ok(sizes)
}

fn hugetlb_v1(dir: &Path) -> Result<BTreeMap<String, HugetlbStats>, CgroupError> {
    let mut map = BTreeMap::new();
    for size in hugetlb_sizes(dir, ".limit_in_bytes")? {
        let value = |name: &str| read_value(&dir.join(format!("hugetlb.{size}.{name}")));
        let stats = HugetlbStats {
            usage: value("usage_in_bytes")?.unwrap_or_default(),
            max: value("max_usage_in_bytes")?.unwrap_or_default(),
            failcnt: value("failcnt")?.unwrap_or_default(),
        };
        map.insert(size, stats);
    }
    Ok(map)
}

fn hugetlb_v2(dir: &Path) -> Result<BTreeMap<String, HugetlbStats>, CgroupError> {
    let mut map = BTreeMap::new();
    for size in hugetlb_sizes(dir, ".max")? {
        let events = read_keyed(&dir.join(format!("hugetlb.{size}.events")))?;
        let stats = HugetlbStats {
            usage: read_value(&dir.join(format!("hugetlb.{size}.current")))?.unwrap_or_default(),
            max: 0,
            failcnt: events.get("max").copied().unwrap_or_default(),
        };
        map.insert(size, stats);
    }
    Ok(map)
}

/// cgroup v2 statistics of the cgroup `dir`.
pub(crate) fn read_v2(dir: &Path) -> Result<Stats, CgroupError> {
    let mut stats = Stats::default();
    let cpu = read_keyed(&dir.join("cpu.stat"))?;
    let micros = |key: &str| cpu.get(key).copied().unwrap_or_default() * 1000;
    stats.cpu.usage.total = micros("usage_usec");
    stats.cpu.usage.user = micros("user_usec");
    stats.cpu.usage.kernel = micros("system_usec");
    stats.cpu.throttling = Throttling {
        periods: cpu.get("nr_periods").copied().unwrap_or_default(),
        throttled_periods: cpu.get("nr_throttled").copied().unwrap_or_default(),
        throttled_time: micros("throttled_usec"),
    };

    let m = &mut stats.memory;
    m.usage = memory_entry_v2(dir, "memory")?;
    // v1 reports swap as memory+swap: do the same for compatibility (as runc).
    let swap = memory_entry_v2(dir, "memory.swap")?;
    m.swap = MemoryEntry {
        usage: swap.usage.saturating_add(m.usage.usage),
        limit: if swap.limit == u64::MAX {
            u64::MAX
        } else {
            swap.limit.saturating_add(m.usage.limit)
        },
        max: 0,
        failcnt: 0,
    };
    m.raw = read_keyed(&dir.join("memory.stat"))?;
    m.cache = m.raw.get("file").copied().unwrap_or_default();

    stats.pids = pids(dir)?;
    stats.blkio = io_v2(dir)?;
    stats.hugetlb = hugetlb_v2(dir)?;
    Ok(stats)
}

fn memory_entry_v2(dir: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    let value = |name: &str| read_value(&dir.join(format!("{prefix}.{name}")));
    Ok(MemoryEntry {
        usage: value("current")?.unwrap_or_default(),
        limit: value("max")?.unwrap_or_default(),
        max: value("peak")?.unwrap_or_default(),
        failcnt: 0,
    })
}

/// `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6` per device.
fn io_v2(dir: &Path) -> Result<BlkioStats, CgroupError> {
    let path = dir.join("io.stat");
    let mut stats = BlkioStats::default();
    for line in read_optional(&path)?.unwrap_or_default().lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (major, minor) = (parse_value(&path, major)?, parse_value(&path, minor)?);
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let (list, op) = match key {
                "rbytes" => (&mut stats.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut stats.io_service_bytes_recursive, "Write"),
                "dbytes" => (&mut stats.io_service_bytes_recursive, "Discard"),
                "rios" => (&mut stats.io_serviced_recursive, "Read"),
                "wios" => (&mut stats.io_serviced_recursive, "Write"),
                "dios" => (&mut stats.io_serviced_recursive, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_owned(),
                value: parse_value(&path, value)?,
            });
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn put(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).expect("write fixture");
    }

    #[test]
    fn v1_stats_read_present_files_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        put(d, "cpuacct.usage", "3000\n");
        put(d, "cpuacct.usage_percpu", "1000 2000 \n");
        put(
            d,
            "cpuacct.usage_all",
            "cpu user system\n0 600 400\n1 1500 500\n",
        );
        put(d, "cpuacct.stat", "user 2\nsystem 1\n");
        put(
            d,
            "cpu.stat",
            "nr_periods 10\nnr_throttled 2\nthrottled_time 500\n",
        );
        put(d, "memory.usage_in_bytes", "4096\n");
        put(d, "memory.max_usage_in_bytes", "8192\n");
        put(d, "memory.failcnt", "0\n");
        put(d, "memory.limit_in_bytes", "104857600\n");
        put(d, "memory.stat", "cache 100\nrss 200\n");
        put(d, "pids.current", "3\n");
        put(d, "pids.max", "max\n");
        put(
            d,
            "blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 512\n8:0 Write 0\nTotal 512\n",
        );
        put(d, "hugetlb.2MB.limit_in_bytes", "0\n");
        put(d, "hugetlb.2MB.usage_in_bytes", "2097152\n");
        put(d, "hugetlb.2MB.failcnt", "1\n");
        let dir = d.to_path_buf();
        let stats = read_v1(|_| Some(dir.clone()), false).expect("stats");
        assert_eq!(stats.cpu.usage.total, 3000);
        assert_eq!(stats.cpu.usage.percpu, [1000, 2000]);
        assert_eq!(stats.cpu.usage.percpu_user, [600, 1500]);
        assert_eq!(stats.cpu.usage.percpu_kernel, [400, 500]);
        assert_eq!(
            (stats.cpu.usage.user, stats.cpu.usage.kernel),
            (20_000_000, 10_000_000)
        );
        assert_eq!(stats.cpu.throttling.throttled_periods, 2);
        assert_eq!(stats.memory.usage.usage, 4096);
        assert_eq!(stats.memory.usage.limit, 104_857_600);
        assert_eq!(stats.memory.swap, MemoryEntry::default(), "no memsw files");
        assert_eq!(stats.memory.cache, 100);
        assert_eq!((stats.pids.current, stats.pids.limit), (3, 0));
        assert_eq!(stats.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(stats.hugetlb["2MB"].usage, 2_097_152);
        assert_eq!(stats.hugetlb["2MB"].failcnt, 1);
    }

    #[test]
    fn v2_stats_convert_units_and_combine_swap_like_runc() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        put(d, "cpu.stat", "usage_usec 5\nuser_usec 3\nsystem_usec 2\nnr_periods 1\nnr_throttled 0\nthrottled_usec 0\n");
        put(d, "memory.current", "1000\n");
        put(d, "memory.max", "4000\n");
        put(d, "memory.swap.current", "10\n");
        put(d, "memory.swap.max", "max\n");
        put(d, "memory.stat", "anon 1\nfile 7\n");
        put(d, "pids.current", "1\n");
        put(d, "pids.max", "10\n");
        put(
            d,
            "io.stat",
            "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        );
        put(d, "hugetlb.2MB.max", "max\n");
        put(d, "hugetlb.2MB.current", "0\n");
        put(d, "hugetlb.2MB.events", "max 4\n");
        let stats = read_v2(d).expect("stats");
        assert_eq!(stats.cpu.usage.total, 5000);
        assert_eq!(stats.memory.swap.usage, 1010);
        assert_eq!(stats.memory.swap.limit, u64::MAX);
        assert_eq!(stats.memory.cache, 7);
        assert_eq!(stats.pids.limit, 10);
        assert_eq!(stats.blkio.io_serviced_recursive[0].op, "Read");
        assert_eq!(stats.hugetlb["2MB"].failcnt, 4);
    }

    #[test]
    fn json_matches_runc_field_names_and_omissions() {
        let mut stats = Stats::default();
        stats.cpu.usage.total = 5;
        stats.memory.kernel_tcp.limit = 1;
        stats.hugetlb.insert("2MB".into(), HugetlbStats::default());
        let json = serde_json::to_value(&stats).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "cpu": {"usage": {"total": 5, "kernel": 0, "user": 0}, "throttling": {}},
                "memory": {
                    "usage": {"limit": 0, "failcnt": 0},
                    "swap": {"limit": 0, "failcnt": 0},
                    "kernel": {"limit": 0, "failcnt": 0},
                    "kernelTCP": {"limit": 1, "failcnt": 0}
                },
                "pids": {},
                "blkio": {},
                "hugetlb": {"2MB": {"failcnt": 0}}
            })
        );
        let back: Stats = serde_json::from_value(json).expect("deserialises");
        assert_eq!(back, stats);
    }
}
