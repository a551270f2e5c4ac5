//! A running container's resource usage, read from its cgroup with `testudo-cgroups` (v1, the
//! v1+v2 hybrid, or v2), reduced to what clients ask for: CPU time, memory, processes.

use std::path::Path;
use std::time::{Duration, SystemTime};

use testudo_cgroups::{CgroupManager, CgroupsPath, Hierarchies, Manager};

use super::{status, ContainerError, ContainerService};

/// Above this a memory limit is "none": v1 reports an unlimited cgroup as the largest page
/// multiple below `i64::MAX`, v2 as `u64::MAX`.
const UNLIMITED_MEMORY: u64 = 1 << 62;

/// One sample of a container's resource usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStats {
    /// When it was taken.
    pub time: SystemTime,
    /// Total CPU time since the container started.
    pub cpu_usage: Duration,
    /// CPU time in user mode.
    pub cpu_user: Duration,
    /// CPU time in kernel mode.
    pub cpu_system: Duration,
    /// Time throttled by the CPU limit.
    pub cpu_throttled: Duration,
    /// Memory in use, page cache included.
    pub memory_bytes: u64,
    /// The memory limit; `None` when there is none.
    pub memory_limit: Option<u64>,
    /// Processes and threads now.
    pub pids: u64,
    /// The process limit; `None` when there is none.
    pub pids_limit: Option<u64>,
}

/// The cgroup library's stats reduced to [`ContainerStats`].
fn reduce(stats: &testudo_cgroups::Stats, time: SystemTime) -> ContainerStats {
    let memory_limit = stats.memory.usage.limit;
    ContainerStats {
        time,
        cpu_usage: Duration::from_nanos(stats.cpu.usage.total),
        cpu_user: Duration::from_nanos(stats.cpu.usage.user),
        cpu_system: Duration::from_nanos(stats.cpu.usage.kernel),
        cpu_throttled: Duration::from_nanos(stats.cpu.throttling.throttled_time),
        memory_bytes: stats.memory.usage.usage,
        memory_limit: Some(memory_limit).filter(|&l| l > 0 && l < UNLIMITED_MEMORY),
        pids: stats.pids.current,
        pids_limit: Some(stats.pids.limit).filter(|&l| l > 0),
    }
}

/// Reads the stats of the cgroup at `cgroups_path` (as in the container's spec).
fn read(id: &str, cgroups_path: &Path) -> Result<ContainerStats, ContainerError> {
    let failed = |source| ContainerError::Stats {
        id: id.to_owned(),
        source,
    };
    let hierarchies = Hierarchies::detect().map_err(failed)?;
    let path = CgroupsPath::parse(Some(cgroups_path), id).map_err(failed)?;
    let manager = Manager::new(&hierarchies, &path).map_err(failed)?;
    let stats = manager.stats().map_err(failed)?;
    Ok(reduce(&stats, SystemTime::now()))
}

impl ContainerService {
    /// Samples the container's resource usage; refused unless it runs.
    pub async fn stats(
        &self,
        namespace: &str,
        container: &str,
    ) -> Result<ContainerStats, ContainerError> {
        let (_, record) = self.lookup(namespace, container)?;
        let record = self.refresh(record).await?;
        if record.status != status::RUNNING {
            return Err(ContainerError::WrongState {
                id: record.id,
                status: record.status,
                action: "read its stats",
            });
        }
        let cgroups_path = self
            .config
            .cgroup_parent
            .join(self.paths(&record).cgroup_level);
        let id = record.id.clone();
        tokio::task::spawn_blocking(move || read(&id, &cgroups_path)).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_values_become_none_and_nanoseconds_durations() {
        let mut stats = testudo_cgroups::Stats::default();
        stats.cpu.usage.total = 1_500_000_000;
        stats.cpu.usage.user = 1_000_000_000;
        stats.memory.usage.usage = 4096;
        stats.memory.usage.limit = 9_223_372_036_854_771_712;
        stats.pids.current = 3;
        let time = SystemTime::UNIX_EPOCH;
        let reduced = reduce(&stats, time);
        assert_eq!(reduced.cpu_usage, Duration::from_millis(1500));
        assert_eq!(reduced.cpu_user, Duration::from_secs(1));
        assert_eq!(reduced.memory_bytes, 4096);
        assert_eq!(reduced.memory_limit, None);
        assert_eq!(reduced.pids_limit, None);

        stats.memory.usage.limit = 64 << 20;
        stats.pids.limit = 16;
        let reduced = reduce(&stats, time);
        assert_eq!(reduced.memory_limit, Some(64 << 20));
        assert_eq!(reduced.pids_limit, Some(16));
        stats.memory.usage.limit = u64::MAX;
        assert_eq!(reduce(&stats, time).memory_limit, None);
    }
}
