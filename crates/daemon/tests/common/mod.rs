//! Shared harness of the daemon's end-to-end tests (included with `mod common;`): the real
//! `testudod` on a temporary root and socket, driven by the real `testudoctl`.

#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use testudo_test_support::ForwardingGuard;

use rustix::process::{kill_process, Pid, Signal};

/// `testudoctl` from the same target directory and profile as this test: a test of one package
/// cannot ask cargo for another package's binary, so it is built here once (a no-op when fresh).
pub(crate) fn testudoctl() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        // <target>/<profile>/deps/e2e-<hash>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let target_dir = profile_dir.parent().unwrap();
        let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
            "debug" => "dev".to_owned(),
            other => other.to_owned(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "testudo-ctl", "--bin", "testudoctl"])
            .arg("--profile")
            .arg(&profile)
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "cannot build testudoctl");
        profile_dir.join("testudoctl")
    })
}

/// A running `testudod` with its own root and socket in a temporary directory, and its own
/// default network (see [`DefaultNetwork`]), whose bridge and NAT rules go with it.
pub(crate) struct Daemon {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) child: Child,
    pub(crate) network: DefaultNetwork,
    _forwarding: ForwardingGuard,
}

impl Daemon {
    pub(crate) fn start(insecure: &[String]) -> Daemon {
        Daemon::start_with(insecure, &[])
    }

    /// [`Daemon::start`] with further flags (such as `--listen-tcp`).
    pub(crate) fn start_with(insecure: &[String], extra: &[&OsStr]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let forwarding = ForwardingGuard::acquire();
        let child = spawn_daemon_with(dir.path(), insecure, extra);
        let daemon = Daemon {
            network: DefaultNetwork::of(dir.path()),
            dir,
            child,
            _forwarding: forwarding,
        };
        daemon.wait_ready();
        daemon
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Where the daemon writes containers' logs.
    pub(crate) fn log_root(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.path().join("run/testudod.sock")
    }

    pub(crate) fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(Instant::now() < deadline, "testudod did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The socket is bound before the state database is open: ready means answering.
        while !self.ctl(&["ns", "ls"]).status.success() {
            assert!(Instant::now() < deadline, "testudod did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn ctl(&self, args: &[&str]) -> Output {
        Command::new(testudoctl())
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs testudoctl, which must succeed; its standard output.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let output = self.ctl(args);
        assert!(
            output.status.success(),
            "testudoctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs testudoctl, which must fail with status 1 and one line on standard error; that line.
    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let output = self.ctl(args);
        assert_eq!(output.status.code(), Some(1), "testudoctl {args:?}");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr.trim_end().to_owned()
    }

    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        serde_json::from_str(&self.ok(&with_json)).unwrap()
    }

    /// Files under the spool directory: import and export must leave none.
    pub(crate) fn spooled(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        kill_process(pid, Signal::TERM).unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.network.remove();
        if std::thread::panicking() {
            // The daemon's view of a failure: internal errors reach the client without causes.
            let log = std::fs::read_to_string(self.dir.path().join("testudod.log"));
            let log = log.unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("testudod.log, last lines:");
            tail.iter().rev().for_each(|line| eprintln!("  {line}"));
        }
    }
}

/// The default network of the daemon on a test directory: its own bridge (`tt` and a hash of
/// the directory) and a /24 under 10.128.0.0/10 that no route on the host uses yet, so that
/// daemons of tests running in parallel never share a bridge or a subnet. A daemon restarted
/// on the same directory gets the same ones (the subnet is remembered in the directory).
pub(crate) struct DefaultNetwork {
    pub(crate) bridge: String,
    pub(crate) subnet: String,
}

impl DefaultNetwork {
    pub(crate) fn of(dir: &Path) -> DefaultNetwork {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        dir.hash(&mut hasher);
        let hash = hasher.finish();
        let bridge = format!("tt{:012x}", hash & 0xffff_ffff_ffff);
        let remembered = dir.join("default-subnet");
        let subnet = match std::fs::read_to_string(&remembered) {
            Ok(subnet) => subnet,
            Err(_) => {
                let subnet = free_subnet(hash);
                std::fs::write(&remembered, &subnet).unwrap();
                subnet
            }
        };
        DefaultNetwork { bridge, subnet }
    }

    /// The first three octets of the subnet (`10.130.7`).
    pub(crate) fn prefix(&self) -> &str {
        self.subnet.trim_end_matches(".0/24")
    }

    /// Deletes the bridge and the NAT rules of the network (the daemon leaves them on the
    /// host, as podman does with its networks).
    pub(crate) fn remove(&self) {
        remove_bridge_network(&self.bridge);
    }
}

/// A /24 under 10.128.0.0/10, starting from `seed`, that no route of the host covers.
pub(crate) fn free_subnet(seed: u64) -> String {
    let routes = Command::new("ip").args(["-4", "route"]).output().unwrap();
    let routes = String::from_utf8(routes.stdout).unwrap();
    (0..16384u64)
        .map(|i| (seed.wrapping_add(i)) % 16384)
        .map(|n| format!("10.{}.{}.0/24", 128 + n / 256, n % 256))
        .find(|subnet| !routes.contains(&subnet[..subnet.len() - 4]))
        .unwrap()
}

/// Deletes bridge `bridge` and the rules of testudo's nftables table tagged with it.
pub(crate) fn remove_bridge_network(bridge: &str) {
    let _ = Command::new("ip")
        .args(["link", "del", bridge])
        .stderr(Stdio::null())
        .status();
    for (chain, handle) in tagged_rules(&format!("network:{bridge}")) {
        let _ = Command::new("nft")
            .args([
                "delete", "rule", "inet", "testudo", &chain, "handle", &handle,
            ])
            .status();
    }
}

/// The chain and handle of every rule of table `inet testudo` whose comment is `tag`.
pub(crate) fn tagged_rules(tag: &str) -> Vec<(String, String)> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "inet", "testudo"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    listed["nftables"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|item| item.get("rule"))
        .filter(|rule| rule["comment"].as_str() == Some(tag))
        .map(|rule| {
            (
                rule["chain"].as_str().unwrap().to_owned(),
                rule["handle"].to_string(),
            )
        })
        .collect()
}

/// Every daemon of a test directory appends its log to `<dir>/testudod.log`.
pub(crate) fn log_file(dir: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("testudod.log"))
        .unwrap()
}

/// Containers' cgroups go under this parent (as `<namespace>/<id>`), which the leak checker of
/// `testudo-test-support` watches.
pub(crate) const CGROUP_PARENT: &str = "/testudo-test";

/// Starts `testudod` on `dir` with the runtime of `TESTUDO_BIN` (or the target directory's), logs
/// under `<dir>/logs` and cgroups under [`CGROUP_PARENT`].
pub(crate) fn spawn_daemon(dir: &Path, insecure: &[String]) -> Child {
    spawn_daemon_with(dir, insecure, &[])
}

/// [`spawn_daemon`] with further flags.
pub(crate) fn spawn_daemon_with(dir: &Path, insecure: &[String], extra: &[&OsStr]) -> Child {
    spawn_daemon_using(
        dir,
        &testudo_test_support::testudo_binary(),
        insecure,
        extra,
    )
}

/// [`spawn_daemon_with`] with `testudo` as its `--testudo-binary`.
pub(crate) fn spawn_daemon_using(
    dir: &Path,
    testudo: &Path,
    insecure: &[String],
    extra: &[&OsStr],
) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_testudod"));
    cmd.arg("--root")
        .arg(dir.join("root"))
        .arg("--socket")
        .arg(dir.join("run/testudod.sock"))
        .arg("--testudo-binary")
        .arg(testudo)
        .arg("--log-root")
        .arg(dir.join("logs"))
        .args(["--cgroup-parent", CGROUP_PARENT])
        .args(["--log-level", "debug"]);
    let network = DefaultNetwork::of(dir);
    cmd.args(["--default-bridge", &network.bridge])
        .args(["--default-subnet", &network.subnet])
        .stdout(Stdio::null())
        // A file, not a pipe nobody drains: a full pipe would block the daemon.
        .stderr(log_file(dir));
    for registry in insecure {
        cmd.args(["--insecure-registry", registry]);
    }
    cmd.args(extra);
    cmd.spawn().unwrap()
}

pub(crate) fn names(listed: &serde_json::Value) -> Vec<String> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A raw gRPC channel to the daemon, to see the status codes that testudoctl only prints.
pub(crate) async fn channel(socket: PathBuf) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_static("http://testudod.invalid")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .unwrap()
}

/// The address the daemon logged for its TCP listener (it is started with port 0).
pub(crate) fn logged_tcp_address(dir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(dir.join("testudod.log")).unwrap_or_default();
        let address = log
            .lines()
            .filter(|l| l.contains("serving on TCP with mutual TLS"))
            .find_map(|l| l.split("address=").nth(1));
        if let Some(address) = address {
            return address.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no TCP address in the log: {log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The name [`import_busybox`] gives the image.
pub(crate) const BUSYBOX: &str = "example.com/busybox:v1";

/// Builds a busybox image from busybox-static, whose command echoes "the image's command", and
/// imports it into `daemon`'s default namespace as [`BUSYBOX`].
pub(crate) fn import_busybox(daemon: &Daemon) {
    use testudo_test_support::{BusyboxRootfs, ImageLayout, Layer, TestImage};
    let image = TestImage::new(vec![Layer::from_dir(BusyboxRootfs::new().path())])
        .config(serde_json::json!({"Cmd": ["echo", "the image's command"]}));
    let mut layout = ImageLayout::new();
    layout.add_image("v1", &image);
    let archive = daemon.dir.path().join("busybox.tar");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(layout.path())
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    daemon.ok(&[
        "image",
        "import",
        archive.to_str().unwrap(),
        "--name",
        "example.com/busybox",
    ]);
}

/// Polls `done` until it holds; the deadline only turns a hang into a failure.
pub(crate) fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Daemon {
    /// Kills the daemon with SIGKILL, leaving its socket, state and monitors as they are.
    pub(crate) fn kill_hard(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts the daemon again on the same directory, after [`Daemon::kill_hard`] or
    /// [`Daemon::terminate`], and waits until it answers.
    pub(crate) fn restart(&mut self) {
        self.child = spawn_daemon(self.dir.path(), &[]);
        self.wait_ready();
    }

    /// [`Daemon::restart`] with `testudo` as its `--testudo-binary`.
    pub(crate) fn restart_using(&mut self, testudo: &Path) {
        self.child = spawn_daemon_using(self.dir.path(), testudo, &[], &[]);
        self.wait_ready();
    }
}

/// The last number container `name` has logged, read from its log file on the host (in the CRI
/// format), so that it can be read while no daemon runs.
pub(crate) fn last_logged(daemon: &Daemon, name: &str) -> Option<u64> {
    let log = std::fs::read_to_string(daemon.log_root().join(format!("default/{name}.log")))
        .unwrap_or_default();
    log.lines()
        .rev()
        .filter_map(|line| line.splitn(4, ' ').nth(3))
        .find_map(|n| n.parse().ok())
}

/// Waits until container `name` has logged a number past `after`.
pub(crate) fn logs_past(daemon: &Daemon, name: &str, after: u64) {
    poll_until(&format!("{name} to log past {after}"), || {
        last_logged(daemon, name).is_some_and(|n| n > after)
    });
}

/// A daemon holding the busybox image, or `None` when not root (and not required to be).
pub(crate) fn daemon_with_busybox() -> Option<Daemon> {
    if !testudo_test_support::require_root() {
        return None;
    }
    let daemon = Daemon::start(&[]);
    import_busybox(&daemon);
    Some(daemon)
}

/// The id of container `name`, as `testudoctl inspect` reports it.
pub(crate) fn id_of(daemon: &Daemon, name: &str) -> String {
    daemon.json(&["inspect", name])["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The host pid of container `name`'s init, which must be running.
pub(crate) fn pid_of(daemon: &Daemon, name: &str) -> u32 {
    let pid = daemon.json(&["inspect", name])["status"]["pid"]
        .as_u64()
        .unwrap();
    assert!(pid > 0, "{name} has no pid");
    u32::try_from(pid).unwrap()
}

/// The parent pid of `pid` (field 4 of `/proc/<pid>/stat`, after the command in parentheses).
pub(crate) fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Whether process `pid` exists (a zombie counts).
pub(crate) fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
