//! The container service end to end: an image the tests build is pushed to a real registry and
//! pulled, containers are created from it through real `testudo monitor` processes, and what they
//! see from inside (through their CRI log) and what they leave on the host are checked.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{container_service, Services};
use tempfile::TempDir;
use testudo_engine::containers::{
    status, ContainerService, CreateRequest, MountRequest, NetworkMode, Resources,
};
use testudo_engine::error::{ErrorKind, Kind};
use testudo_engine::images::ImageService;
use testudo_engine::state::{ContainerRecord, Name, StateDb};
use testudo_monitor_protocol::Client;
use testudo_snapshot::SnapshotKind;
use testudo_test_support::{require_root, LeakCheck, Registry};

const NS: &str = "tenant";

/// A registry holding busybox, the services on a temporary root, and namespace [`NS`].
struct Fixture {
    _registry: Registry,
    dir: TempDir,
    images: Arc<ImageService>,
    state: Arc<StateDb>,
    containers: ContainerService,
    reference: String,
}

impl Fixture {
    async fn new() -> Self {
        let Services {
            registry,
            dir,
            state,
            images,
            reference,
        } = Services::start(NS).await;
        let containers = container_service(dir.path(), &images, &state);
        Self {
            _registry: registry,
            dir,
            images,
            state,
            containers,
            reference,
        }
    }

    fn request(&self, script: &str) -> CreateRequest {
        CreateRequest {
            image: self.reference.clone(),
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
            ..CreateRequest::default()
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("containers")
    }

    fn log_path(&self, record: &ContainerRecord) -> PathBuf {
        self.dir
            .path()
            .join("logs")
            .join(NS)
            .join(format!("{}.log", record.name))
    }

    /// The lines of the container's log, without their CRI prefixes; each record is checked to
    /// be `<RFC 3339 time> stdout|stderr F|P <line>`.
    fn log_lines(&self, record: &ContainerRecord) -> Vec<String> {
        let text = std::fs::read_to_string(self.log_path(record)).unwrap();
        text.lines()
            .map(|line| {
                let mut parts = line.splitn(4, ' ');
                let time = parts.next().unwrap();
                assert!(
                    humantime::parse_rfc3339(time).is_ok(),
                    "bad time in {line:?}"
                );
                assert!(
                    matches!(parts.next(), Some("stdout" | "stderr")),
                    "{line:?}"
                );
                assert!(matches!(parts.next(), Some("F" | "P")), "{line:?}");
                parts.next().unwrap_or("").to_owned()
            })
            .collect()
    }

    /// Creates, starts and waits for a container; returns it (stopped) and its exit code.
    async fn run(&self, request: CreateRequest) -> (ContainerRecord, i32) {
        let created = self.containers.create(NS, request).await.unwrap();
        assert_eq!(created.status, status::CREATED);
        let started = self.containers.start(NS, &created.id).await.unwrap();
        // A short command may have exited already by the time start returns.
        assert_ne!(started.status, status::CREATED);
        assert!(started.started.is_some());
        let code = self.containers.wait(NS, &created.id).await.unwrap();
        let record = self.containers.inspect(NS, &created.id).await.unwrap();
        (record, code)
    }

    /// Runs `script`, deletes the container and returns its output lines and exit code.
    async fn output(&self, request: CreateRequest) -> (Vec<String>, i32) {
        let (record, code) = self.run(request).await;
        let lines = self.log_lines(&record);
        self.containers.delete(NS, &record.id, false).await.unwrap();
        (lines, code)
    }

    /// Panics unless nothing of any container is left under the service root, in the snapshots
    /// or in the database.
    fn assert_empty(&self) {
        let root = self.root();
        for dir in ["bundles", "monitors", "sockets"] {
            let left = list_tree(&root.join(dir));
            assert!(left.is_empty(), "left under {dir}: {left:?}");
        }
        let logs = list_tree(&self.dir.path().join("logs"));
        assert!(logs.is_empty(), "logs left: {logs:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root_text = root.to_str().unwrap();
        assert!(!mounts.contains(root_text), "mounts left under {root_text}");
        let active: Vec<_> = self
            .images
            .snapshotter()
            .list()
            .unwrap()
            .into_iter()
            .filter(|s| s.kind != SnapshotKind::Committed)
            .collect();
        assert!(active.is_empty(), "snapshots left: {active:?}");
        let ns = Name::parse("namespace", NS).unwrap();
        assert_eq!(self.state.containers(&ns).unwrap(), []);
    }
}

impl Drop for Fixture {
    /// A failed test leaves its containers behind: force-delete them through their monitors,
    /// stop the monitors and unmount the root filesystems before the directory goes.
    fn drop(&mut self) {
        let sockets = self.root().join("sockets");
        for entry in std::fs::read_dir(&sockets).into_iter().flatten().flatten() {
            if let Ok(mut client) = Client::connect(&entry.path()) {
                for record in client.list().unwrap_or_default() {
                    let _ = client.delete(&record.id, true);
                }
                let _ = client.shutdown();
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !list_tree(&sockets).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let root = self.root();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for point in mountinfo.lines().rev().filter_map(|l| l.split(' ').nth(4)) {
            if Path::new(point).starts_with(&root) {
                let _ = std::process::Command::new("umount").arg(point).status();
            }
        }
    }
}

/// Every file below `dir` (directories that are empty count as nothing left).
fn list_tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        if entry.file_type().unwrap().is_dir() {
            let below = list_tree(&entry.path());
            out.extend(below);
        } else {
            out.push(entry.path());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_is_logged_in_cri_format_and_delete_leaves_nothing() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    let leaks = LeakCheck::snapshot();
    let mut request = f.request("echo hello; echo oops >&2");
    request.name = Some("web".into());
    let (record, code) = f.run(request).await;
    assert_eq!(code, 0);
    assert_eq!(record.name.as_str(), "web");
    assert_eq!(record.id.len(), 64);
    assert!(record.id.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut lines = f.log_lines(&record);
    lines.sort();
    assert_eq!(lines, ["hello", "oops"]);
    let log = std::fs::read_to_string(f.log_path(&record)).unwrap();
    assert!(log.lines().any(|l| l.ends_with(" stdout F hello")), "{log}");
    assert!(log.lines().any(|l| l.ends_with(" stderr F oops")), "{log}");

    f.containers.delete(NS, "web", false).await.unwrap();
    leaks.assert_no_leaks_for(&record.id);
    f.assert_empty();
    assert!(!f.log_path(&record).exists());
    let gone = f.containers.inspect(NS, "web").await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_code_is_waited_for_and_recorded() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    let (record, code) = f.run(f.request("exit 7")).await;
    assert_eq!(code, 7);
    assert_eq!(record.status, status::STOPPED);
    assert_eq!(record.exit_code, Some(7));
    assert!(record.finished.is_some());
    // The stored record says so too, without asking the monitor.
    let ns = Name::parse("namespace", NS).unwrap();
    let stored = f.state.container(&ns, &record.id).unwrap();
    assert_eq!(
        (stored.status.as_str(), stored.exit_code),
        ("stopped", Some(7))
    );
    // The default name is the id's first 12 characters; list shows it.
    assert_eq!(record.name.as_str(), &record.id[..12]);
    let listed = f.containers.list(NS).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, record.id);
    f.containers.delete(NS, &record.id, false).await.unwrap();
    f.assert_empty();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_user_working_dir_and_cmd_overrides_are_seen_inside() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    let mut request = f.request("id -u; pwd; echo $X");
    request.env = vec!["X=forty-two".into()];
    request.user = Some("1000".into());
    request.working_dir = Some("/tmp".into());
    let (lines, code) = f.output(request).await;
    assert_eq!(code, 0);
    assert_eq!(lines, ["1000", "/tmp", "forty-two"]);
    // Without overrides the image's Cmd runs.
    let mut plain = f.request("");
    plain.cmd = None;
    assert_eq!(f.output(plain).await, (vec!["hello".to_owned()], 0));
    f.assert_empty();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_mount_is_visible_inside_and_network_none_has_only_loopback() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("file"), "from the host\n").unwrap();
    let mut request =
        f.request("cat /data/file; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    request.mounts.push(MountRequest {
        source: host.path().to_str().unwrap().into(),
        target: "/data".into(),
        fstype: String::new(),
        options: vec!["ro".into()],
    });
    request.network = NetworkMode::None;
    let (lines, code) = f.output(request).await;
    assert_eq!(code, 0);
    assert_eq!(lines, ["from the host", "lo"]);
    f.assert_empty();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_sees_the_hosts_interfaces() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    let host_count = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .count()
        - 2;
    let mut request = f.request("tail -n +3 /proc/net/dev | wc -l");
    request.network = NetworkMode::Host;
    let (lines, _) = f.output(request.clone()).await;
    assert_eq!(lines, [host_count.to_string()]);
    // Joining the test's own network namespace by path sees the same.
    request.network = NetworkMode::Join(format!("/proc/{}/ns/net", std::process::id()).into());
    let (lines, _) = f.output(request).await;
    assert_eq!(lines, [host_count.to_string()]);
    f.assert_empty();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pids_and_cpu_limits_reach_the_containers_cgroup() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    let mut request = f.request("true");
    request.resources = Resources {
        cpu_millicores: Some(500),
        memory_bytes: Some(64 << 20),
        pids: Some(42),
    };
    let record = f.containers.create(NS, request).await.unwrap();
    let cgroup = |controller: &str, file: &str| {
        let path = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join("testudo-test")
            .join(NS)
            .join(&record.id)
            .join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    };
    assert_eq!(
        cgroup("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(cgroup("pids", "pids.max"), "42");
    assert_eq!(cgroup("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup("cpu", "cpu.cfs_period_us"), "100000");
    let leaks = LeakCheck::snapshot();
    f.containers.delete(NS, &record.id, false).await.unwrap();
    leaks.assert_no_leaks_for(&record.id);
    assert!(!Path::new("/sys/fs/cgroup/memory/testudo-test")
        .join(NS)
        .join(&record.id)
        .exists());
    f.assert_empty();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_puts_the_reaper_as_pid_1_and_it_reaps_orphans() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    let mut request = f.request(
        "tr '\\0' ' ' < /proc/1/cmdline; echo; \
         sh -c 'sleep 0.2 & exit 0'; sleep 1; \
         cat /proc/[0-9]*/stat 2>/dev/null | cut -d' ' -f3 | grep -c Z",
    );
    request.init = true;
    let (lines, _) = f.output(request).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("/.testudo-init reap -- /bin/sh -c "),
        "{lines:?}"
    );
    assert_eq!(lines[1], "0", "zombies in the container");
    f.assert_empty();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_the_signal_and_falls_back_to_sigkill_after_the_timeout() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    // A process that handles TERM exits with its own code.
    let polite = f
        .containers
        .create(
            NS,
            f.request("trap 'exit 3' TERM; while true; do sleep 0.1; done"),
        )
        .await
        .unwrap();
    f.containers.start(NS, &polite.id).await.unwrap();
    let stopped = f
        .containers
        .stop(NS, &polite.id, 15, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        (stopped.status.as_str(), stopped.exit_code),
        ("stopped", Some(3))
    );

    // One that ignores TERM is killed.
    let stubborn = f
        .containers
        .create(NS, f.request("trap '' TERM; sleep 1000"))
        .await
        .unwrap();
    f.containers.start(NS, &stubborn.id).await.unwrap();
    let refused = f
        .containers
        .delete(NS, &stubborn.id, false)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::FailedPrecondition);
    let stopped = f
        .containers
        .stop(NS, &stubborn.id, 15, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(stopped.status, status::STOPPED);
    assert_eq!(stopped.exit_code, Some(128 + 9));
    f.containers.delete(NS, &polite.id, false).await.unwrap();
    f.containers.delete(NS, &stubborn.id, false).await.unwrap();
    f.assert_empty();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_container_is_deleted_with_force() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    let leaks = LeakCheck::snapshot();
    let record = f
        .containers
        .create(NS, f.request("sleep 1000"))
        .await
        .unwrap();
    f.containers.start(NS, &record.id).await.unwrap();
    f.containers.delete(NS, &record.id, true).await.unwrap();
    leaks.assert_no_leaks_for(&record.id);
    f.assert_empty();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_kind_and_leave_nothing() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    let leaks = LeakCheck::snapshot();
    let kind = |result: Result<ContainerRecord, testudo_engine::containers::ContainerError>| {
        result.unwrap_err().kind()
    };

    let mut relative = f.request("true");
    relative.mounts.push(MountRequest {
        source: "/tmp".into(),
        target: "data".into(),
        ..MountRequest::default()
    });
    assert_eq!(
        kind(f.containers.create(NS, relative).await),
        ErrorKind::InvalidArgument
    );

    let mut unknown_image = f.request("true");
    unknown_image.image = "127.0.0.1:1/no/such:image".into();
    assert_eq!(
        kind(f.containers.create(NS, unknown_image).await),
        ErrorKind::NotFound
    );

    assert_eq!(
        kind(f.containers.create("no-such-ns", f.request("true")).await),
        ErrorKind::NotFound
    );

    let mut missing_netns = f.request("true");
    missing_netns.network = NetworkMode::Join("/run/netns/no-such-netns".into());
    assert_eq!(
        kind(f.containers.create(NS, missing_netns).await),
        ErrorKind::NotFound
    );

    // Refused after the root filesystem was prepared and mounted: all of it is undone.
    let mut unknown_user = f.request("true");
    unknown_user.user = Some("nosuchuser".into());
    assert_eq!(
        kind(f.containers.create(NS, unknown_user).await),
        ErrorKind::InvalidArgument
    );

    // Refused by the runtime, through the monitor: undone too.
    let mut bad_mount = f.request("true");
    bad_mount.mounts.push(MountRequest {
        source: "none".into(),
        target: "/x".into(),
        fstype: "no-such-filesystem".into(),
        options: vec![],
    });
    assert!(f.containers.create(NS, bad_mount).await.is_err());
    f.assert_empty();

    let mut first = f.request("true");
    first.name = Some("taken".into());
    let kept = f.containers.create(NS, first.clone()).await.unwrap();
    assert_eq!(
        kind(f.containers.create(NS, first).await),
        ErrorKind::AlreadyExists
    );
    let listed = f.containers.list(NS).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, kept.id);
    let start_twice = f
        .containers
        .start(NS, "no-such-container")
        .await
        .unwrap_err();
    assert_eq!(start_twice.kind(), ErrorKind::NotFound);
    f.containers.delete(NS, "taken", false).await.unwrap();
    leaks.assert_no_leaks_for(&kept.id);
    f.assert_empty();
}
