//! Supervision with real containers: exits are recorded without anybody asking, restart
//! policies restart through the same monitor, waits end as the proto says, the namespace's
//! cgroup level goes with its last container, events tell all of it, and a new service on the
//! same state (a daemon killed and started again) re-adopts running containers.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{container_service, Services, CGROUP_PARENT};
use tempfile::TempDir;
use testudo_engine::containers::{status, ContainerService, CreateRequest, RestartPolicy};
use testudo_engine::error::{ErrorKind, Kind};
use testudo_engine::events::{Event, EventFilter, EventKind, Subscription};
use testudo_engine::images::ImageService;
use testudo_engine::state::{ContainerRecord, Name, StateDb};
use testudo_monitor_protocol::Client;
use testudo_test_support::{require_root, Registry};

/// How long a test waits for something to happen before it fails (never a measurement).
const PATIENCE: Duration = Duration::from_secs(60);

/// A registry holding busybox, the services on a temporary root, and one namespace of its own
/// (tests of this file run in parallel and each checks its namespace's cgroup level).
struct Fixture {
    _registry: Registry,
    dir: TempDir,
    images: Arc<ImageService>,
    state: Arc<StateDb>,
    containers: Option<ContainerService>,
    reference: String,
    ns: String,
}

impl Fixture {
    async fn new(ns: &str) -> Self {
        let Services {
            registry,
            dir,
            state,
            images,
            reference,
        } = Services::start(ns).await;
        let mut f = Self {
            _registry: registry,
            dir,
            images,
            state,
            containers: None,
            reference,
            ns: ns.to_owned(),
        };
        f.containers = Some(f.service());
        f
    }

    /// A container service on the fixture's root and state, as a daemon (re)start makes it.
    fn service(&self) -> ContainerService {
        container_service(self.dir.path(), &self.images, &self.state)
    }

    fn containers(&self) -> &ContainerService {
        self.containers.as_ref().unwrap()
    }

    fn request(&self, script: &str, restart: RestartPolicy) -> CreateRequest {
        CreateRequest {
            image: self.reference.clone(),
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
            restart,
            ..CreateRequest::default()
        }
    }

    async fn create_started(&self, script: &str, restart: RestartPolicy) -> ContainerRecord {
        let record = self
            .containers()
            .create(&self.ns, self.request(script, restart))
            .await
            .unwrap();
        self.containers().start(&self.ns, &record.id).await.unwrap()
    }

    /// The stored record, as nobody refreshed it from the monitor.
    fn stored(&self, id: &str) -> ContainerRecord {
        let ns = Name::parse("namespace", &self.ns).unwrap();
        self.state.container(&ns, id).unwrap()
    }

    /// Polls the stored record until `done` holds; fails after [`PATIENCE`].
    async fn stored_until(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&ContainerRecord) -> bool,
    ) -> ContainerRecord {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let record = self.stored(id);
            if done(&record) {
                return record;
            }
            assert!(Instant::now() < deadline, "never {what}: {record:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_lines(&self, record: &ContainerRecord) -> Vec<String> {
        let path = self
            .dir
            .path()
            .join("logs")
            .join(&self.ns)
            .join(format!("{}.log", record.name));
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| line.splitn(4, ' ').nth(3).unwrap_or("").to_owned())
            .collect()
    }

    /// `<memory hierarchy>/<cgroup parent>/<ns>` and the same in the cpu hierarchy.
    fn namespace_cgroups(&self) -> Vec<PathBuf> {
        ["memory", "pids"]
            .iter()
            .map(|c| {
                Path::new("/sys/fs/cgroup")
                    .join(c)
                    .join(CGROUP_PARENT.trim_start_matches('/'))
                    .join(&self.ns)
            })
            .collect()
    }

    async fn delete_all(&self) {
        let ns = Name::parse("namespace", &self.ns).unwrap();
        for record in self.state.containers(&ns).unwrap() {
            self.containers()
                .delete(&self.ns, &record.id, true)
                .await
                .unwrap();
        }
    }
}

impl Drop for Fixture {
    /// A failed test leaves its containers behind: force-delete them through their monitors,
    /// stop the monitors and unmount the root filesystems before the directory goes.
    fn drop(&mut self) {
        self.containers = None;
        let root = self.dir.path().join("containers");
        let sockets = root.join("sockets");
        for entry in std::fs::read_dir(&sockets).into_iter().flatten().flatten() {
            if let Ok(mut client) = Client::connect(&entry.path()) {
                for record in client.list().unwrap_or_default() {
                    let _ = client.delete(&record.id, true);
                }
                let _ = client.shutdown();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_dir(&sockets).is_ok_and(|mut d| d.next().is_some())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for point in mountinfo.lines().rev().filter_map(|l| l.split(' ').nth(4)) {
            if Path::new(point).starts_with(&root) {
                let _ = std::process::Command::new("umount").arg(point).status();
            }
        }
    }
}

/// The next event of `sub`, failing after [`PATIENCE`].
async fn next_event(sub: &mut Subscription) -> Event {
    tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("no event came")
        .unwrap()
}

fn topics_of(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::topic).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_is_recorded_and_published_without_anybody_asking() {
    if !require_root() {
        return;
    }
    let f = Fixture::new("sup-exit").await;
    let mut events = f.containers().events().subscribe(EventFilter {
        namespace: Some(f.ns.clone()),
        topic_prefixes: vec!["/containers/".into()],
    });
    let record = f
        .create_started("sleep 0.3; exit 4", RestartPolicy::No)
        .await;
    let mut seen = Vec::new();
    while seen.last().map(Event::topic) != Some("/containers/exit") {
        seen.push(next_event(&mut events).await);
    }
    assert_eq!(
        topics_of(&seen),
        [
            "/containers/create",
            "/containers/start",
            "/containers/exit"
        ]
    );
    assert!(seen.iter().all(|e| e.container_id == record.id));
    match &seen[2].kind {
        EventKind::ContainerExited { exit_code, .. } => assert_eq!(*exit_code, 4),
        other => panic!("{other:?}"),
    }
    // The database holds the exit: nothing asked the monitor (no inspect, list or wait).
    let stored = f.stored(&record.id);
    assert_eq!(stored.status, status::STOPPED);
    assert_eq!(stored.exit_code, Some(4));
    assert!(stored.finished.is_some());
    assert_eq!(f.containers().wait(&f.ns, &record.id).await.unwrap(), 4);

    f.containers()
        .delete(&f.ns, &record.id, false)
        .await
        .unwrap();
    let deleted = next_event(&mut events).await;
    assert_eq!(deleted.topic(), "/containers/delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_restarts_the_same_container_up_to_its_limit() {
    if !require_root() {
        return;
    }
    let f = Fixture::new("sup-onfailure").await;
    let mut events = f.containers().events().subscribe(EventFilter {
        namespace: Some(f.ns.clone()),
        topic_prefixes: vec!["/containers/start".into(), "/containers/exit".into()],
    });
    let record = f
        .create_started(
            "echo run; exit 3",
            RestartPolicy::OnFailure { max_retries: 2 },
        )
        .await;
    // Wait ends with the first run's exit, though that run is restarted.
    assert_eq!(f.containers().wait(&f.ns, &record.id).await.unwrap(), 3);
    let done = f
        .stored_until(&record.id, "restarted twice and stopped", |r| {
            r.restart_count == 2 && r.status == status::STOPPED
        })
        .await;
    assert_eq!(done.exit_code, Some(3));
    assert_eq!(done.id, record.id);
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(next_event(&mut events).await);
    }
    assert_eq!(
        topics_of(&seen),
        [
            "/containers/start",
            "/containers/exit",
            "/containers/start",
            "/containers/exit",
            "/containers/start",
            "/containers/exit"
        ]
    );
    // Three runs in one log, and the monitor made no other container.
    assert_eq!(f.log_lines(&done), ["run", "run", "run"]);
    let inspected = f.containers().inspect(&f.ns, &record.id).await.unwrap();
    assert_eq!(inspected.restart_count, 2);
    // A success ends on-failure's restarts: the same policy with exit 0 is not restarted.
    let fine = f
        .create_started("exit 0", RestartPolicy::OnFailure { max_retries: 0 })
        .await;
    assert_eq!(f.containers().wait(&f.ns, &fine.id).await.unwrap(), 0);
    let fine = f
        .stored_until(&fine.id, "stopped", |r| r.status == status::STOPPED)
        .await;
    assert_eq!(fine.restart_count, 0);
    f.delete_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_restarts_until_stop_and_stop_calls_off_the_next_restart() {
    if !require_root() {
        return;
    }
    let f = Fixture::new("sup-always").await;
    let record = f
        .create_started("echo run; exit 0", RestartPolicy::Always)
        .await;
    f.stored_until(&record.id, "restarted twice", |r| r.restart_count >= 2)
        .await;
    let stopped = f
        .containers()
        .stop(&f.ns, &record.id, 15, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(stopped.status, status::STOPPED);
    assert!(stopped.stop_requested);
    let count = stopped.restart_count;
    // Longer than any backoff reached after a few restarts (100 ms doubling: 800 ms at the
    // fourth); a restart that was due would have happened by then.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let later = f.containers().inspect(&f.ns, &record.id).await.unwrap();
    assert_eq!(later.status, status::STOPPED);
    assert_eq!(later.restart_count, count);
    let runs = f.log_lines(&later).len();
    assert_eq!(u32::try_from(runs).unwrap(), count + 1);
    f.delete_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_a_created_container_ends_with_its_run_or_its_delete() {
    if !require_root() {
        return;
    }
    let f = Fixture::new("sup-wait").await;
    let containers = Arc::new(f.service());
    let created = containers
        .create(&f.ns, f.request("exit 5", RestartPolicy::No))
        .await
        .unwrap();
    let waiter = {
        let (containers, ns, id) = (containers.clone(), f.ns.clone(), created.id.clone());
        tokio::spawn(async move { containers.wait(&ns, &id).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "a wait on a created container returned"
    );
    containers.start(&f.ns, &created.id).await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), 5);

    let doomed = containers
        .create(&f.ns, f.request("exit 6", RestartPolicy::No))
        .await
        .unwrap();
    let waiter = {
        let (containers, ns, id) = (containers.clone(), f.ns.clone(), doomed.id.clone());
        tokio::spawn(async move { containers.wait(&ns, &id).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    containers.delete(&f.ns, &doomed.id, false).await.unwrap();
    let error = waiter.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert!(
        error.to_string().contains("deleted before it exited"),
        "{error}"
    );
    containers.delete(&f.ns, &created.id, false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_last_container_of_a_namespace_removes_its_cgroup_level() {
    if !require_root() {
        return;
    }
    let f = Fixture::new("sup-cgroup").await;
    // The first container makes the namespace level, the second finds it: deleting the first
    // leaves it (the second is in it), deleting the second must remove it.
    let first = f.create_started("sleep 1000", RestartPolicy::No).await;
    let second = f.create_started("sleep 1000", RestartPolicy::No).await;
    for dir in f.namespace_cgroups() {
        assert!(dir.join(&second.id).is_dir(), "{}", dir.display());
    }
    f.containers().delete(&f.ns, &first.id, true).await.unwrap();
    for dir in f.namespace_cgroups() {
        assert!(
            dir.is_dir(),
            "{} went with a container still in it",
            dir.display()
        );
    }
    f.containers()
        .delete(&f.ns, &second.id, true)
        .await
        .unwrap();
    for dir in f.namespace_cgroups() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_published() {
    if !require_root() {
        return;
    }
    let f = Fixture::new("sup-oom").await;
    let mut events = f.containers().events().subscribe(EventFilter {
        namespace: Some(f.ns.clone()),
        topic_prefixes: vec!["/containers/oom".into(), "/containers/exit".into()],
    });
    let mut request = f.request(
        "dd if=/dev/zero of=/dev/null bs=64M count=1",
        RestartPolicy::No,
    );
    request.resources.memory_bytes = Some(16 * 1024 * 1024);
    let record = f.containers().create(&f.ns, request).await.unwrap();
    f.containers().start(&f.ns, &record.id).await.unwrap();
    let code = f.containers().wait(&f.ns, &record.id).await.unwrap();
    assert_eq!(code, 128 + 9, "dd was not OOM-killed");
    let oom = next_event(&mut events).await;
    assert_eq!(oom.topic(), "/containers/oom");
    assert_eq!(oom.container_id, record.id);
    assert_eq!(next_event(&mut events).await.topic(), "/containers/exit");
    f.delete_all().await;
}

/// Logs `line N` every 50 ms; exits with 7 once `/exit7` exists.
const COUNTER: &str =
    "i=0; while :; do i=$((i+1)); echo line $i; [ -e /exit7 ] && exit 7; sleep 0.05; done";

/// Panics unless the log is `line 1`, `line 2`, ... without a gap; returns how many lines.
fn assert_every_line(f: &Fixture, record: &ContainerRecord) -> usize {
    let lines = f.log_lines(record);
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("line {}", n + 1), "{}: {lines:?}", record.id);
    }
    lines.len()
}

#[test]
fn a_new_service_adopts_running_containers_and_learns_the_exits_it_missed() {
    if !require_root() {
        return;
    }
    let daemon = tokio::runtime::Runtime::new().unwrap();
    let mut f = daemon.block_on(Fixture::new("sup-adopt"));
    let records: Vec<ContainerRecord> = daemon.block_on(async {
        let mut records = Vec::new();
        for _ in 0..10 {
            records.push(f.create_started(COUNTER, RestartPolicy::No).await);
        }
        // An eleventh whose policy restarts it once after a failure.
        let policy = RestartPolicy::OnFailure { max_retries: 1 };
        records.push(f.create_started(COUNTER, policy).await);
        for record in &records {
            f.stored_until(&record.id, "logging", |r| f.log_lines(r).len() >= 2)
                .await;
        }
        records
    });
    // `kill -9` of the daemon: the service and its runtime go, nothing is stopped.
    f.containers = None;
    drop(daemon);

    // Meanwhile one container exits with 7, and another's monitor dies after recording that
    // its container exited with 7 too: its exit is left only on disk.
    let root = f.dir.path().join("containers");
    let ns = f.ns.clone();
    let rootfs = |id: &str| root.join("bundles").join(&ns).join(id).join("rootfs");
    let monitor_dir = |id: &str| root.join("monitors").join(&ns).join(id);
    let (exited, orphaned, restarted) = (&records[0], &records[1], &records[10]);
    for record in [exited, orphaned, restarted] {
        std::fs::write(rootfs(&record.id).join("exit7"), b"").unwrap();
    }
    let deadline = Instant::now() + PATIENCE;
    for record in [exited, orphaned, restarted] {
        while testudo_monitor_protocol::read_record(&monitor_dir(&record.id), &record.id)
            .unwrap()
            .and_then(|r| r.exit)
            .is_none()
        {
            assert!(Instant::now() < deadline, "{} never exited", record.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let socket = {
        let short: String = orphaned.id.chars().take(32).collect();
        root.join("sockets").join(format!("{short}.sock"))
    };
    let monitor_pid = Client::connect(&socket).unwrap().monitor_pid();
    let status = std::process::Command::new("kill")
        .args(["-9", &monitor_pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    while Client::connect(&socket).is_ok() {
        assert!(Instant::now() < deadline, "the monitor did not die");
        std::thread::sleep(Duration::from_millis(20));
    }

    let daemon = tokio::runtime::Runtime::new().unwrap();
    f.containers = Some(f.service());
    daemon.block_on(async {
        assert_eq!(f.containers().adopt().await.unwrap(), 11);
        let listed = f.containers().list(&f.ns).await.unwrap();
        assert_eq!(listed.len(), 11);
        for record in listed.iter().filter(|r| r.id != restarted.id) {
            let expected = if record.id == exited.id || record.id == orphaned.id {
                (status::STOPPED, Some(7))
            } else {
                (status::RUNNING, None)
            };
            assert_eq!(
                (record.status.as_str(), record.exit_code),
                expected,
                "{record:?}"
            );
        }
        // The watchers recorded both exits in the database themselves.
        for record in [exited, orphaned] {
            let stored = f
                .stored_until(&record.id, "stopped", |r| r.status == status::STOPPED)
                .await;
            assert_eq!(stored.exit_code, Some(7));
            assert!(stored.finished.is_some());
            assert_eq!(f.containers().wait(&f.ns, &record.id).await.unwrap(), 7);
        }
        // Its policy applies to the exit that happened while nobody watched: one restart,
        // whose run (with `/exit7` still there) fails at once, and no more.
        let again = f
            .stored_until(&restarted.id, "restarted once and stopped", |r| {
                r.restart_count == 1 && r.status == status::STOPPED
            })
            .await;
        assert_eq!(again.exit_code, Some(7));
        assert_eq!(
            f.log_lines(&again).last().map(String::as_str),
            Some("line 1")
        );
        // The adopted containers are watched: an exit now is recorded without asking.
        let last = &records[9];
        std::fs::write(rootfs(&last.id).join("exit7"), b"").unwrap();
        assert_eq!(f.containers().wait(&f.ns, &last.id).await.unwrap(), 7);
        for record in &records[2..9] {
            let stopped = f
                .containers()
                .stop(&f.ns, &record.id, 9, Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(stopped.exit_code, Some(128 + 9));
        }
        for record in &records[..10] {
            assert!(assert_every_line(&f, record) >= 2);
        }
        f.delete_all().await;
    });
    for dir in f.namespace_cgroups() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

/// Whether the stored record of `id` is gone.
fn removed(f: &Fixture, id: &str) -> bool {
    let ns = Name::parse("namespace", &f.ns).unwrap();
    match f.state.container(&ns, id) {
        Ok(_) => false,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
            true
        }
    }
}

/// Panics unless nothing of container `record` is left on disk or in the cgroup tree.
fn assert_nothing_left(f: &Fixture, record: &ContainerRecord) {
    let root = f.dir.path().join("containers");
    let short: String = record.id.chars().take(32).collect();
    for path in [
        root.join("bundles").join(&f.ns).join(&record.id),
        root.join("monitors").join(&f.ns).join(&record.id),
        root.join("sockets").join(format!("{short}.sock")),
        f.dir
            .path()
            .join("logs")
            .join(&f.ns)
            .join(format!("{}.log", record.name)),
    ] {
        assert!(!path.exists(), "{} is left", path.display());
    }
    for dir in f.namespace_cgroups() {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_remove_deletes_a_container_once_its_policy_gives_up_and_waiters_see_the_exit() {
    if !require_root() {
        return;
    }
    let f = Fixture::new("sup-autorm").await;
    let mut events = f.containers().events().subscribe(EventFilter {
        namespace: Some(f.ns.clone()),
        topic_prefixes: vec!["/containers/".into()],
    });
    let request = CreateRequest {
        auto_remove: true,
        ..f.request(
            "echo run; sleep 0.2; exit 5",
            RestartPolicy::OnFailure { max_retries: 1 },
        )
    };
    let record = f.containers().create(&f.ns, request).await.unwrap();
    let waiter = {
        let containers = f.containers();
        let (ns, id) = (f.ns.clone(), record.id.clone());
        async move { containers.wait(&ns, &id).await }
    };
    // The waiter subscribes when first polled, before the start (join! polls in order).
    let (waited, started) = tokio::join!(waiter, f.containers().start(&f.ns, &record.id));
    started.unwrap();
    // The first run's exit reaches the waiter, although the container is restarted and then
    // removed.
    assert_eq!(waited.unwrap(), 5);
    let mut seen = Vec::new();
    while seen.last().map(Event::topic) != Some("/containers/delete") {
        seen.push(next_event(&mut events).await);
    }
    assert_eq!(
        topics_of(&seen),
        [
            "/containers/create",
            "/containers/start",
            "/containers/exit",
            "/containers/start",
            "/containers/exit",
            "/containers/delete"
        ]
    );
    assert!(removed(&f, &record.id));
    assert_nothing_left(&f, &record);
    let gone = f.containers().wait(&f.ns, &record.id).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone}");

    // Stopped by request, it goes too (a stop is not a restart).
    let request = CreateRequest {
        auto_remove: true,
        ..f.request("sleep 60", RestartPolicy::Always)
    };
    let record = f.containers().create(&f.ns, request).await.unwrap();
    f.containers().start(&f.ns, &record.id).await.unwrap();
    f.containers()
        .stop(&f.ns, &record.id, 15, Duration::from_secs(10))
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !removed(&f, &record.id) {
        assert!(Instant::now() < deadline, "never removed after stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_nothing_left(&f, &record);
}

#[test]
fn auto_remove_applies_to_an_exit_that_no_service_saw() {
    if !require_root() {
        return;
    }
    let daemon = tokio::runtime::Runtime::new().unwrap();
    let mut f = daemon.block_on(Fixture::new("sup-autorm-adopt"));
    let record = daemon.block_on(async {
        let request = CreateRequest {
            auto_remove: true,
            ..f.request(COUNTER, RestartPolicy::No)
        };
        let record = f.containers().create(&f.ns, request).await.unwrap();
        let record = f.containers().start(&f.ns, &record.id).await.unwrap();
        f.stored_until(&record.id, "logging", |r| f.log_lines(r).len() >= 2)
            .await;
        record
    });
    f.containers = None;
    drop(daemon);

    let root = f.dir.path().join("containers");
    let bundle = root.join("bundles").join(&f.ns).join(&record.id);
    std::fs::write(bundle.join("rootfs").join("exit7"), b"").unwrap();
    let monitor_dir = root.join("monitors").join(&f.ns).join(&record.id);
    let deadline = Instant::now() + PATIENCE;
    while testudo_monitor_protocol::read_record(&monitor_dir, &record.id)
        .unwrap()
        .and_then(|r| r.exit)
        .is_none()
    {
        assert!(Instant::now() < deadline, "never exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!removed(&f, &record.id), "removed with no service running");

    let daemon = tokio::runtime::Runtime::new().unwrap();
    f.containers = Some(f.service());
    daemon.block_on(async {
        f.containers().adopt().await.unwrap();
        while !removed(&f, &record.id) {
            assert!(Instant::now() < deadline, "never removed after adopt");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert_nothing_left(&f, &record);
}
