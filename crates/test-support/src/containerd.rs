//! A private containerd, driven with `ctr`, whose runc shim runs the binary under test.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::command::{assert_success, output_of, output_within};
use crate::mounts::unmount_under;
use crate::oci_archive::{write_oci_archive, REF_NAME};
use crate::rootfs::BusyboxRootfs;
use crate::runtime::force_delete_all;

/// The containerd namespace of every test. containerd names a container's cgroup
/// `/<namespace>/<id>`, so containers land under `/testudo-test`, where
/// [`LeakCheck`](crate::LeakCheck) looks.
pub const CONTAINERD_NAMESPACE: &str = "testudo-test";

/// The name [`Containerd::import_busybox`] gives the image (`<base name>:<ref name>`).
const BUSYBOX_BASE_NAME: &str = "docker.io/testudo/busybox";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A containerd process of its own: root, state, gRPC socket, log and config in a temporary
/// directory, the CRI plugin disabled, and `io.containerd.runc.v2` (the default) as the runtime,
/// whose runc binary each [`run_with_runtime`](Self::run_with_runtime) chooses and whose runc
/// root is private too.
///
/// Snapshots use `overlayfs`, or `native` where containerd's overlayfs plugin did not load.
///
/// Dropping it kills the tasks, its shims (`containerd-shim-runc-v2 ... -address <socket>`) and
/// containerd, force-deletes what is left in the runc root with every binary it ran, unmounts
/// whatever is left under its directory and removes the directory.
#[derive(Debug)]
pub struct Containerd {
    dir: TempDir,
    daemon: Child,
    snapshotter: &'static str,
    runtimes_used: Mutex<Vec<PathBuf>>,
}

impl Containerd {
    /// Starts containerd and waits until it answers on its socket.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("testudo-containerd-")
            .tempdir()
            .expect("create a temp dir for containerd");
        let config = dir.path().join("config.toml");
        fs::write(&config, config_toml(dir.path())).expect("write containerd's config");
        let log = fs::File::create(dir.path().join("containerd.log")).expect("create its log");
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut containerd = Self {
            dir,
            daemon,
            snapshotter: "overlayfs",
            runtimes_used: Mutex::new(Vec::new()),
        };
        containerd.wait_until_serving();
        if !containerd.plugin_loaded("io.containerd.snapshotter.v1", "overlayfs") {
            containerd.snapshotter = "native";
        }
        containerd
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.daemon.try_wait() {
                panic!("containerd exited with {status}:\n{}", self.log());
            }
            let ready = output_within(&mut self.ctr_cmd(["version"]), Duration::from_secs(5))
                .is_ok_and(|out| out.status.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not serve on {} within {START_TIMEOUT:?}:\n{}",
                self.address().display(),
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn plugin_loaded(&self, kind: &str, name: &str) -> bool {
        let out = self.ctr(["plugins", "ls"]);
        String::from_utf8_lossy(&out.stdout).lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.first() == Some(&kind)
                && fields.get(1) == Some(&name)
                && fields.last() == Some(&"ok")
        })
    }

    /// The gRPC socket.
    pub fn address(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// The snapshotter in use: `overlayfs` or `native`.
    pub fn snapshotter(&self) -> &str {
        self.snapshotter
    }

    /// containerd's own log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// A `ctr --address <socket> -n testudo-test <args>` command.
    pub fn ctr_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.address())
            .args(["--namespace", CONTAINERD_NAMESPACE])
            .args(args);
        cmd
    }

    /// Runs `ctr ... <args>` and returns its output, whatever the exit status.
    pub fn ctr<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        output_of(&mut self.ctr_cmd(args))
    }

    /// Imports a [`BusyboxRootfs`] as a one-layer OCI image with `Cmd ["/bin/sh"]`, unpacked for
    /// the snapshotter in use, and returns its name.
    pub fn import_busybox(&self) -> String {
        let rootfs = BusyboxRootfs::new();
        let archive = tempfile::NamedTempFile::new().expect("create a temp file for the image");
        write_oci_archive(rootfs.path(), archive.path());
        let output = self.ctr([
            OsStr::new("images"),
            OsStr::new("import"),
            OsStr::new("--base-name"),
            OsStr::new(BUSYBOX_BASE_NAME),
            OsStr::new("--snapshotter"),
            OsStr::new(self.snapshotter),
            archive.path().as_os_str(),
        ]);
        assert_success("ctr images import", &output);
        format!("{BUSYBOX_BASE_NAME}:{REF_NAME}")
    }

    /// Runs `ctr run --rm --runc-binary <binary> <image> <id> <args>` (with the private runc root
    /// and the snapshotter in use) and returns its output, whatever the exit status.
    pub fn run_with_runtime(&self, binary: &Path, image: &str, id: &str, args: &[&str]) -> Output {
        self.runtimes_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(binary.to_path_buf());
        let mut cmd = self.ctr_cmd(["run", "--rm", "--runc-binary"]);
        cmd.arg(binary)
            .arg("--runc-root")
            .arg(self.runc_root())
            .args(["--snapshotter", self.snapshotter, image, id])
            .args(args);
        output_of(&mut cmd)
    }

    /// The `--runc-root` that [`run_with_runtime`](Self::run_with_runtime) gives the shim, for
    /// tests that build their own `ctr run`; the runtime keeps its state in
    /// `<runc root>/testudo-test`.
    pub fn runc_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    fn ctr_lines(&self, args: &[&str]) -> Vec<String> {
        output_within(&mut self.ctr_cmd(args), CLEANUP_TIMEOUT)
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn remove_tasks_and_containers(&self) {
        for task in self.ctr_lines(&["tasks", "ls", "--quiet"]) {
            let _ = output_within(
                &mut self.ctr_cmd(["tasks", "rm", "--force", &task]),
                CLEANUP_TIMEOUT,
            );
        }
        for container in self.ctr_lines(&["containers", "ls", "--quiet"]) {
            let _ = output_within(
                &mut self.ctr_cmd(["containers", "rm", &container]),
                CLEANUP_TIMEOUT,
            );
        }
    }

    /// Kills the shims that serve this containerd: their command line names its socket.
    fn kill_shims(&self) {
        let address = self.address();
        let Ok(entries) = fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            let is_shim = args
                .first()
                .is_some_and(|prog| String::from_utf8_lossy(prog).contains("containerd-shim"));
            let ours = args
                .iter()
                .any(|arg| Path::new(&*String::from_utf8_lossy(arg)) == address);
            if is_shim && ours {
                let _ = output_within(Command::new("kill").args(["-KILL", &pid]), CLEANUP_TIMEOUT);
            }
        }
    }

    fn stop_daemon(&mut self) {
        let pid = self.daemon.id().to_string();
        let _ = output_within(Command::new("kill").args(["-TERM", &pid]), CLEANUP_TIMEOUT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.daemon.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Best effort, and never a panic: this also runs while a failed test unwinds.
        self.remove_tasks_and_containers();
        self.kill_shims();
        self.stop_daemon();
        let runc_state = self.runc_root().join(CONTAINERD_NAMESPACE);
        let binaries = std::mem::take(
            self.runtimes_used
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for binary in binaries {
            force_delete_all(&binary, &runc_state);
        }
        unmount_under(self.dir.path());
    }
}

fn config_toml(dir: &Path) -> String {
    let path = |sub: &str| dir.join(sub).display().to_string();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{socket}"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{opt}"
  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = "{runtime_v1}"
"#,
        root = path("root"),
        state = path("state"),
        socket = path("containerd.sock"),
        opt = path("opt"),
        runtime_v1 = path("runtime-v1"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_everything_in_the_private_dir() {
        let config = config_toml(Path::new("/t"));
        assert!(config.contains(r#"root = "/t/root""#));
        assert!(config.contains(r#"state = "/t/state""#));
        assert!(config.contains(r#"address = "/t/containerd.sock""#));
        assert!(config.contains(r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#));
        assert!(!config.contains("/var/lib/containerd"));
        assert!(!config.contains("/run/containerd"));
    }
}
