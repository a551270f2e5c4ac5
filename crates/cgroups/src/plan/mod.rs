//! Resources to cgroup writes, as plain data: what to write, where, in which order, and
//! what to do when the kernel pushes back.

mod v1;
mod v2;

pub use v1::{needs_current_memory_limit, plan_v1, V1Context};
pub use v2::{blkio_weight_to_io_weight, cpu_shares_to_weight, plan_v2, V2Plan};

use crate::CgroupError;

/// A cgroup controller, as far as writes are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// `blkio` (v1) / `io` (v2).
    Blkio,
    /// `cpu`.
    Cpu,
    /// `cpuacct` (v1 accounting only).
    Cpuacct,
    /// `cpuset`.
    Cpuset,
    /// `devices` (v1; a BPF program on v2).
    Devices,
    /// `freezer` (v1; `cgroup.freeze` on v2).
    Freezer,
    /// `hugetlb`.
    Hugetlb,
    /// `memory`.
    Memory,
    /// `net_cls` (v1 only).
    NetCls,
    /// `net_prio` (v1 only).
    NetPrio,
    /// `pids`.
    Pids,
    /// `rdma`.
    Rdma,
    /// Core cgroup2 files and `linux.resources.unified` keys of no known controller.
    Unified,
}

impl Controller {
    /// The kernel's name for it (`unified` for core cgroup2 files).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blkio => "blkio",
            Self::Cpu => "cpu",
            Self::Cpuacct => "cpuacct",
            Self::Cpuset => "cpuset",
            Self::Devices => "devices",
            Self::Freezer => "freezer",
            Self::Hugetlb => "hugetlb",
            Self::Memory => "memory",
            Self::NetCls => "net_cls",
            Self::NetPrio => "net_prio",
            Self::Pids => "pids",
            Self::Rdma => "rdma",
            Self::Unified => "unified",
        }
    }
}

/// What to do when the control file does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMissing {
    /// Fail with [`CgroupError::MissingFile`].
    Fail,
    /// Skip the write: the knob is optional on this kernel.
    Skip,
    /// Write `value` to `file` instead (e.g. `blkio.bfq.weight` for `blkio.weight`).
    WriteInstead {
        /// The alternative file.
        file: String,
        /// The value for it.
        value: String,
    },
}

/// What to do when the kernel answers EINVAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnEinval {
    /// Fail with [`CgroupError::Write`].
    Fail,
    /// Retry once the next write has succeeded: interdependent pairs (cfs period and
    /// quota, rt period and runtime) may be refused in one order and accepted in the other.
    RetryAfterNext,
}

/// One write of `value` to `file` in the directory of `controller`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupWrite {
    /// The controller whose directory receives the write (on v2 all share one).
    pub controller: Controller,
    /// The control file, e.g. `memory.limit_in_bytes`.
    pub file: String,
    /// The value, written in one `write(2)`.
    pub value: String,
    /// When the file does not exist.
    pub if_missing: IfMissing,
    /// When the kernel answers EINVAL.
    pub on_einval: OnEinval,
}

impl CgroupWrite {
    /// A write that must succeed.
    pub(crate) fn new(
        controller: Controller,
        file: impl Into<String>,
        value: impl ToString,
    ) -> Self {
        Self {
            controller,
            file: file.into(),
            value: value.to_string(),
            if_missing: IfMissing::Fail,
            on_einval: OnEinval::Fail,
        }
    }

    pub(crate) fn if_missing(mut self, if_missing: IfMissing) -> Self {
        self.if_missing = if_missing;
        self
    }

    pub(crate) fn retry_after_next_if(mut self, retry: bool) -> Self {
        if retry {
            self.on_einval = OnEinval::RetryAfterNext;
        }
        self
    }
}

/// `major:minor`, as blkio/io files want it; negative numbers are invalid there.
pub(crate) fn device_numbers(
    field: &'static str,
    major: i64,
    minor: i64,
) -> Result<String, CgroupError> {
    if major < 0 || minor < 0 {
        return Err(CgroupError::invalid(
            field,
            format!("{major}:{minor}"),
            "device numbers must not be negative",
        ));
    }
    Ok(format!("{major}:{minor}"))
}

/// Validates a hugepage size such as `2MB` or `1GB` (it becomes part of a file name).
pub(crate) fn hugepage_size(size: &str) -> Result<&str, CgroupError> {
    let valid = !size.is_empty() && size.bytes().all(|b| b.is_ascii_alphanumeric());
    if valid {
        Ok(size)
    } else {
        Err(CgroupError::invalid(
            "hugepageLimits.pageSize",
            size,
            "expected a size such as 2MB or 1GB",
        ))
    }
}

/// `rdma.max` lines, one per device, with only the limits given.
pub(crate) fn rdma_writes(
    rdma: Option<&std::collections::HashMap<String, oci_spec::runtime::LinuxRdma>>,
) -> Vec<CgroupWrite> {
    let Some(rdma) = rdma else {
        return Vec::new();
    };
    let mut devices: Vec<_> = rdma.iter().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    devices
        .into_iter()
        .filter_map(|(device, limits)| {
            let mut line = device.clone();
            if let Some(handles) = limits.hca_handles() {
                line.push_str(&format!(" hca_handle={handles}"));
            }
            if let Some(objects) = limits.hca_objects() {
                line.push_str(&format!(" hca_object={objects}"));
            }
            (line.len() > device.len())
                .then(|| CgroupWrite::new(Controller::Rdma, "rdma.max", line))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use oci_spec::runtime::LinuxResources;

    use super::*;

    pub(crate) fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).expect("valid LinuxResources json")
    }

    /// `(file, value)` pairs of a plan, for compact assertions.
    pub(crate) fn pairs(writes: &[CgroupWrite]) -> Vec<(&str, &str)> {
        writes
            .iter()
            .map(|w| (w.file.as_str(), w.value.as_str()))
            .collect()
    }

    #[test]
    fn hugepage_sizes_cannot_smuggle_paths() {
        assert!(hugepage_size("2MB").is_ok());
        assert!(hugepage_size("../x").is_err());
        assert!(hugepage_size("").is_err());
    }

    #[test]
    fn rdma_lines_name_only_the_given_limits_in_device_order() {
        let r = resources(
            r#"{"rdma":{"mlx5_1":{"hcaObjects":7},"mlx4_0":{"hcaHandles":2,"hcaObjects":2000},"none":{}}}"#,
        );
        assert_eq!(
            pairs(&rdma_writes(r.rdma().as_ref())),
            [
                ("rdma.max", "mlx4_0 hca_handle=2 hca_object=2000"),
                ("rdma.max", "mlx5_1 hca_object=7")
            ]
        );
    }
}
