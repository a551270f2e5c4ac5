//! Helpers shared by the root-only tests.

use std::process::Child;

use testudo_cgroups::{CgroupManager, Manager};

/// Kills the child and removes the cgroups even when an assertion fails.
pub(crate) struct Cleanup {
    pub(crate) manager: Manager,
    pub(crate) child: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Best effort, and never a panic while unwinding. A frozen task dies only once thawed.
        let _ = self.manager.thaw();
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.manager.destroy();
    }
}

/// A cgroup name unique to this test run, recognisable by the leak checker.
pub(crate) fn unique_id(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{test}-{}-{nanos}", std::process::id())
}
