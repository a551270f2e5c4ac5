//! Driving an OCI runtime binary (testudo, or runc standing in for it) with a private state root.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use crate::command::{command_line, describe, output_of, output_within};

/// How long each clean-up command of [`Runtime`]'s drop may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The testudo binary under test: `$TESTUDO_BIN` if set, else `<target>/release/testudo` if it
/// exists, else `<target>/debug/testudo`, where `<target>` is `$CARGO_TARGET_DIR` if set, else the
/// workspace's `target/`.
pub fn testudo_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("TESTUDO_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"));
    let release = target.join("release/testudo");
    if release.exists() {
        release
    } else {
        target.join("debug/testudo")
    }
}

fn workspace_dir() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(crate_dir)
        .to_path_buf()
}

/// An id no other test, in this process or another, gets: `<prefix>-<pid>-<counter>-<time>`;
/// valid as a container id, a podman container name and a cgroup name.
pub fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // The time guards against a reused pid meeting the leftovers of an earlier, crashed run.
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() & 0xffff_ffff);
    format!("{prefix}-{}-{n}-{time:x}", std::process::id())
}

/// A runc-compatible runtime binary with its own temporary `--root`.
///
/// Dropping it force-deletes every container still in that root (as `list -q` reports them,
/// plus any state directory left in the root), then removes the root.
#[derive(Debug)]
pub struct Runtime {
    binary: PathBuf,
    root: TempDir,
}

impl Runtime {
    /// Wraps `binary` (e.g. [`testudo_binary`] or `/usr/sbin/runc`).
    pub fn new(binary: &Path) -> Self {
        let root = tempfile::Builder::new()
            .prefix("testudo-state-")
            .tempdir()
            .expect("create a temp dir for the runtime root");
        Self {
            binary: binary.to_path_buf(),
            root,
        }
    }

    /// The runtime binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The state root passed as `--root`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A command running the runtime with `--root` and then `args`, for callers that need their
    /// own stdio. Beware that `Command::output` waits until the container's init closes the
    /// inherited stdout, which is never for `create` and `run -d`: [`run_ok`](Self::run_ok) does not.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(self.root.path()).args(args);
        cmd
    }

    /// Runs the runtime with `args` and returns its output, panicking with stdout and stderr
    /// when it exits non-zero (or runs for more than two minutes).
    pub fn run_ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd(args);
        let output = output_of(&mut cmd);
        assert!(
            output.status.success(),
            "`{}` failed: {}",
            command_line(&cmd),
            describe(&output)
        );
        output
    }

    /// Runs the runtime with `args` and returns its output, panicking when it exits zero.
    pub fn run_fail<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd(args);
        let output = output_of(&mut cmd);
        assert!(
            !output.status.success(),
            "`{}` succeeded but should have failed: {}",
            command_line(&cmd),
            describe(&output)
        );
        output
    }

    /// The parsed output of `state <id>`.
    pub fn state(&self, id: &str) -> serde_json::Value {
        let output = self.run_ok(["state", id]);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "`state {id}` printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// A container id unique across tests and test processes, starting with `prefix`.
    pub fn unique_id(&self, prefix: &str) -> String {
        unique_id(prefix)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        force_delete_all(&self.binary, self.root.path());
    }
}

/// `delete --force` for every container in `root`: those `list -q` prints, and the names of
/// directories in the root in case the runtime's `list` is the thing that is broken. Best effort
/// and never a panic, as it runs in drops, also while a failed test unwinds.
pub(crate) fn force_delete_all(binary: &Path, root: &Path) {
    let runtime = |args: &[&str]| {
        let mut cmd = Command::new(binary);
        cmd.arg("--root").arg(root).args(args);
        output_within(&mut cmd, CLEANUP_TIMEOUT)
    };
    let mut ids: Vec<String> = runtime(&["list", "-q"])
        .ok()
        .filter(|out| out.status.success())
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_dir && !ids.contains(&name) {
                ids.push(name);
            }
        }
    }
    for id in ids {
        let _ = runtime(&["delete", "--force", &id]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_differ_and_keep_the_prefix() {
        let a = unique_id("kill");
        let b = unique_id("kill");
        assert_ne!(a, b);
        assert!(a.starts_with("kill-"));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn cmd_passes_root_before_the_arguments() {
        let runtime = Runtime::new(Path::new("/usr/sbin/runc"));
        let cmd = runtime.cmd(["state", "x"]);
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args[0], "--root");
        assert_eq!(args[1], runtime.root().as_os_str());
        assert_eq!(&args[2..], ["state", "x"]);
    }

    #[test]
    fn testudo_binary_is_under_a_target_dir_by_default() {
        if std::env::var_os("TESTUDO_BIN").is_some() {
            return;
        }
        let bin = testudo_binary();
        assert!(bin.ends_with("release/testudo") || bin.ends_with("debug/testudo"));
    }
}
