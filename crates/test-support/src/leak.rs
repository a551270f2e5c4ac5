//! Checking that a container left nothing behind on the host.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::bundle::{Bundle, CGROUP_PARENT};
use crate::mounts::{mounts, Mount};

/// How long leftovers may take to go away: podman's clean-up runs after `podman run` returns.
const SETTLE: Duration = Duration::from_secs(5);

/// A record of the host's mounts and test cgroups, taken before a container is made, against
/// which [`assert_no_leaks_for`](Self::assert_no_leaks_for) checks what the container left.
///
/// Only what can be told apart from the work of tests running in parallel is considered: mounts
/// made since the snapshot whose mount point contains the container id or lies in the bundle,
/// cgroup directories under `/testudo-test` (in every cgroup hierarchy) named after the id or at
/// the bundle's cgroups path, and the id's state directory in the runtime root. A leftover
/// process shows as a cgroup directory that cannot be removed, so processes are reported from the
/// leftover cgroups' `cgroup.procs` (matching `/proc/*/cmdline` against the id would not be
/// reliable). Mounts that podman or containerd name after something else (podman's overlay
/// `.../overlay/<layer>/merged`) are not seen; their harnesses unmount those on drop.
///
/// ```no_run
/// use testudo_test_support::{Bundle, LeakCheck, Runtime};
///
/// let runtime = Runtime::new(std::path::Path::new("/usr/sbin/runc"));
/// let bundle = Bundle::new().args(&["/bin/true"]).write();
/// let leaks = LeakCheck::snapshot().bundle(&bundle).state_root(runtime.root());
/// let bundle_dir = bundle.path().to_str().unwrap();
/// runtime.run_ok(["run", "--bundle", bundle_dir, bundle.id()]);
/// leaks.assert_no_leaks_for(bundle.id());
/// ```
#[derive(Debug)]
pub struct LeakCheck {
    mount_ids: HashSet<u64>,
    cgroup_dirs: HashSet<PathBuf>,
    bundle: Option<PathBuf>,
    cgroups_path: Option<PathBuf>,
    state_root: Option<PathBuf>,
}

impl LeakCheck {
    /// Records the host's mounts and the cgroup directories under `/testudo-test`.
    pub fn snapshot() -> Self {
        Self {
            mount_ids: mounts().iter().map(|m| m.id).collect(),
            cgroup_dirs: test_cgroup_dirs(&cgroup_hierarchies(&mounts()))
                .into_iter()
                .collect(),
            bundle: None,
            cgroups_path: None,
            state_root: None,
        }
    }

    /// Also counts mounts inside the bundle directory, and the bundle's cgroups path, as leaks.
    pub fn bundle(mut self, bundle: &Bundle) -> Self {
        self.bundle = Some(bundle.path().to_path_buf());
        self.cgroups_path = bundle
            .spec()
            .linux()
            .as_ref()
            .and_then(|linux| linux.cgroups_path().clone());
        self
    }

    /// Also checks that the runtime root (`--root`) holds no state directory for the id.
    pub fn state_root(mut self, root: &Path) -> Self {
        self.state_root = Some(root.to_path_buf());
        self
    }

    /// Panics, listing them, when mounts, cgroups (and the processes in them) or the state
    /// directory of container `id` remain a few seconds after this call.
    pub fn assert_no_leaks_for(&self, id: &str) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let leaks = self.leaks_for(id);
            if leaks.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!("container {id} leaked:\n{leaks}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A description of each leftover, one per line; empty when there is none.
    fn leaks_for(&self, id: &str) -> String {
        let mut report = String::new();
        let mount_table = mounts();
        for mount in &mount_table {
            if !self.mount_ids.contains(&mount.id) && self.mount_is_related(mount, id) {
                let _ = writeln!(
                    report,
                    "mount {} ({})",
                    mount.mount_point.display(),
                    mount.fs_type
                );
            }
        }
        let hierarchies = cgroup_hierarchies(&mount_table);
        for dir in test_cgroup_dirs(&hierarchies) {
            if !self.cgroup_dirs.contains(&dir) && self.cgroup_is_related(&dir, id, &hierarchies) {
                let _ = writeln!(report, "cgroup {}{}", dir.display(), processes_in(&dir));
            }
        }
        if let Some(state) = self.state_root.as_ref().map(|root| root.join(id)) {
            if fs::symlink_metadata(&state).is_ok() {
                let _ = writeln!(report, "state {}", state.display());
            }
        }
        report
    }

    fn mount_is_related(&self, mount: &Mount, id: &str) -> bool {
        mount.mount_point.to_string_lossy().contains(id)
            || self
                .bundle
                .as_ref()
                .is_some_and(|bundle| mount.mount_point.starts_with(bundle))
    }

    /// Whether `dir` is named after the id (below `/testudo-test`) or is at or below the
    /// bundle's cgroups path, in any hierarchy.
    fn cgroup_is_related(&self, dir: &Path, id: &str, hierarchies: &[PathBuf]) -> bool {
        let parent = CGROUP_PARENT.trim_start_matches('/');
        let wanted = self
            .cgroups_path
            .as_ref()
            .map(|path| path.strip_prefix("/").unwrap_or(path));
        hierarchies.iter().any(|root| {
            let named_after_id = dir.strip_prefix(root.join(parent)).is_ok_and(|below| {
                below
                    .components()
                    .any(|c| c.as_os_str().to_string_lossy().contains(id))
            });
            let at_bundle_path = wanted.is_some_and(|wanted| dir.starts_with(root.join(wanted)));
            named_after_id || at_bundle_path
        })
    }
}

/// The mount points of the cgroup hierarchies, v1 and v2.
fn cgroup_hierarchies(mount_table: &[Mount]) -> Vec<PathBuf> {
    mount_table
        .iter()
        .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
        .map(|m| m.mount_point.clone())
        .collect()
}

/// Every directory below `/testudo-test` in every cgroup hierarchy.
fn test_cgroup_dirs(hierarchies: &[PathBuf]) -> Vec<PathBuf> {
    let parent = CGROUP_PARENT.trim_start_matches('/');
    let mut dirs = Vec::new();
    let mut pending: Vec<PathBuf> = hierarchies.iter().map(|root| root.join(parent)).collect();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
                pending.push(entry.path());
            }
        }
    }
    dirs
}

/// `, processes: <pid> (<cmdline>), ...` for the processes in a cgroup, or nothing.
fn processes_in(dir: &Path) -> String {
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
        return String::new();
    };
    let described: Vec<String> = procs
        .split_whitespace()
        .map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
                .unwrap_or_default();
            format!("{pid} ({})", cmdline.trim_end())
        })
        .collect();
    if described.is_empty() {
        String::new()
    } else {
        format!(", processes: {}", described.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_leaks_for_an_id_that_was_never_used() {
        let check = LeakCheck::snapshot();
        check.assert_no_leaks_for("never-used-container-id");
    }

    #[test]
    fn a_leftover_state_dir_is_reported() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir(root.path().join("c1")).expect("mkdir");
        let check = LeakCheck::snapshot().state_root(root.path());
        let leaks = check.leaks_for("c1");
        assert!(leaks.starts_with("state "), "{leaks}");
    }
}
