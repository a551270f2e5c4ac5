//! A private podman whose OCI runtime is the binary under test.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;

use crate::bundle::CGROUP_PARENT;
use crate::command::{assert_success, output_of, output_within};
use crate::mounts::unmount_under;
use crate::rootfs::{rootfs_tar, BusyboxRootfs};

/// `--ulimit` flags every `podman run` and `podman create` here needs.
///
/// Podman asks by default for RLIMIT_NOFILE 1048576 and an RLIMIT_NPROC at the host's maximum;
/// raising a hard limit above the caller's needs CAP_SYS_RESOURCE, which root lacks on the
/// project's machines, so the runtime's `setrlimit` fails with EPERM. [`Podman::run`] adds these
/// flags, and the private containers.conf sets them as `default_ulimits` for `podman create`.
pub const PODMAN_ULIMITS: &[&str] = &[
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// The name [`Podman::import_busybox`] gives the image.
const BUSYBOX_IMAGE: &str = "localhost/testudo-busybox:latest";

const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Podman with its own storage, state, temp, network config and containers.conf in a temporary
/// directory, and `--runtime` set to the runtime under test. conmon is found by podman itself
/// (Debian's package).
///
/// Global flags: `--root`, `--runroot`, `--tmpdir`, `--network-config-dir` (all private),
/// `--cgroup-manager cgroupfs` and `--events-backend file` (there is no systemd or journald to
/// talk to), and `--storage-driver overlay`, or `vfs` where overlay cannot be mounted (e.g.
/// when the temp dir is itself on overlayfs). `CONTAINERS_CONF` points at a private
/// containers.conf, so that the host's configuration does not leak in, with the `k8s-file` log
/// driver (journald is the packaged default), [`PODMAN_ULIMITS`], and `netns = "none"`:
/// containers get a network namespace with only loopback unless a test passes `--network`.
/// Otherwise every private podman would attach its containers to the host's one `podman0`
/// bridge and 10.88.0.0/16 subnet and add netavark's firewall rules, and parallel instances,
/// each with its own address allocation, could hand out the same address.
///
/// Dropping it removes all its containers and images, unmounts whatever is left under its
/// directory, and removes the directory. One thing stays on the host: with cgroupfs, podman puts
/// conmon in `<cgroup parent>/conmon`, i.e. `/testudo-test/conmon`, shared by every instance and
/// left empty; removing it could race with another test's podman starting a container.
#[derive(Debug)]
pub struct Podman {
    dir: TempDir,
    runtime: PathBuf,
    storage_driver: &'static str,
}

impl Podman {
    /// A private podman running containers with the OCI runtime `runtime`.
    pub fn new(runtime: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("testudo-podman-")
            .tempdir()
            .expect("create a temp dir for podman");
        for sub in ["root", "runroot", "tmp", "networks"] {
            fs::create_dir(dir.path().join(sub)).expect("create a podman dir");
        }
        fs::write(
            dir.path().join("containers.conf"),
            containers_conf(dir.path()),
        )
        .expect("write containers.conf");
        let mut podman = Self {
            dir,
            runtime: runtime.to_path_buf(),
            storage_driver: "overlay",
        };
        let probe = podman.output(["info"]);
        if !probe.status.success() {
            podman.storage_driver = "vfs";
            let probe = podman.output(["info"]);
            assert_success("podman info (overlay failed, with vfs)", &probe);
        }
        podman
    }

    /// `overlay` or `vfs`, whichever works here.
    pub fn storage_driver(&self) -> &str {
        self.storage_driver
    }

    /// A `podman` command with the private global flags, then `args`.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let dir = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", dir.join("containers.conf"))
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("runroot"))
            .arg("--tmpdir")
            .arg(dir.join("tmp"))
            .arg("--network-config-dir")
            .arg(dir.join("networks"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(["--storage-driver", self.storage_driver])
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args);
        cmd
    }

    /// Runs `podman <args>` and returns its output, whatever the exit status.
    pub fn output<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        output_of(&mut self.cmd(args))
    }

    /// Runs `podman run --log-driver k8s-file --cgroup-parent /testudo-test <PODMAN_ULIMITS>
    /// <args>` and returns its output, whatever the exit status. The cgroup parent puts the
    /// container where [`LeakCheck`](crate::LeakCheck) looks.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd(["run", "--log-driver", "k8s-file", "--cgroup-parent"]);
        cmd.arg(CGROUP_PARENT).args(PODMAN_ULIMITS).args(args);
        output_of(&mut cmd)
    }

    /// Imports a [`BusyboxRootfs`] as an image with `CMD ["/bin/sh"]` and returns its name.
    pub fn import_busybox(&self) -> String {
        let rootfs = BusyboxRootfs::new();
        let tar = tempfile::NamedTempFile::new().expect("create a temp file for the rootfs tar");
        rootfs_tar(rootfs.path(), tar.path());
        let output = self.output([
            OsStr::new("import"),
            OsStr::new("--change"),
            // The exec form: `CMD=/bin/sh` would be the shell form, `/bin/sh -c /bin/sh`.
            OsStr::new(r#"CMD=["/bin/sh"]"#),
            tar.path().as_os_str(),
            OsStr::new(BUSYBOX_IMAGE),
        ]);
        assert_success("podman import", &output);
        BUSYBOX_IMAGE.to_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Best effort, and never a panic: this also runs while a failed test unwinds.
        for args in [
            &["rm", "--all", "--force", "--time", "0"][..],
            &["rmi", "--all", "--force"][..],
        ] {
            let _ = output_within(&mut self.cmd(args), CLEANUP_TIMEOUT);
        }
        unmount_under(self.dir.path());
    }
}

fn containers_conf(dir: &Path) -> String {
    let ulimits = PODMAN_ULIMITS
        .iter()
        .filter(|arg| !arg.starts_with("--"))
        .map(|limit| format!("\"{limit}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[containers]\n\
         log_driver = \"k8s-file\"\n\
         netns = \"none\"\n\
         default_ulimits = [{ulimits}]\n\
         \n\
         [engine]\n\
         cgroup_manager = \"cgroupfs\"\n\
         events_logger = \"file\"\n\
         events_logfile_path = \"{}\"\n",
        dir.join("events.log").display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_conf_sets_ulimits_and_log_driver() {
        let conf = containers_conf(Path::new("/x"));
        assert!(conf.contains(r#"default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]"#));
        assert!(conf.contains(r#"log_driver = "k8s-file""#));
        assert!(conf.contains(r#"netns = "none""#));
        assert!(conf.contains(r#"events_logfile_path = "/x/events.log""#));
    }
}
