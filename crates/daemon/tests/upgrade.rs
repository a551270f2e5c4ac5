//! A monitor upgraded in place keeps its container and its log, end to end: the real `testudod`
//! is restarted with `--testudo-binary` at another path, and `testudoctl monitor upgrade` makes
//! the running container's monitor re-execute that binary; the test looks from the host at the
//! monitor (pid, `/proc/<pid>/exe`, descriptors) and the container (pid, parent, log), and uses
//! exec, stop and wait afterwards. A binary that cannot resume a monitor is refused and the
//! monitor carries on.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

/// Logs a number a line, from 0 up, every 50 ms, and exits 0 on SIGTERM.
const COUNTER: &str =
    "trap 'exit 0' TERM; i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done";

fn exe(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

/// The monitor's descriptors other than connections (which come and go with each call of the
/// daemon): number -> what it refers to. The listening socket is the lowest socket, kept.
fn held(pid: u32) -> BTreeMap<u32, String> {
    let mut all: BTreeMap<u32, String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let number = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some((number, target.display().to_string()))
        })
        .collect();
    let listener = all
        .iter()
        .find(|(_, target)| target.starts_with("socket:"))
        .map(|(&fd, _)| fd);
    all.retain(|fd, target| !target.starts_with("socket:") || Some(*fd) == listener);
    all
}

/// The descriptors above stdio without `O_CLOEXEC`: whatever its starter leaked to it; an
/// upgrade must add none.
fn inheritable(pid: u32) -> Vec<u32> {
    const O_CLOEXEC: u32 = 0o2000000;
    held(pid)
        .into_keys()
        .filter(|&fd| fd > 2)
        .filter(|fd| {
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
                .ok()
                .and_then(|info| {
                    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
                    u32::from_str_radix(flags.trim(), 8).ok()
                })
                .is_some_and(|flags| flags & O_CLOEXEC == 0)
        })
        .collect()
}

/// Asserts that `output` is the counter's sequence from 0, each number once.
fn assert_every_number_once(output: &str) {
    let numbers: Vec<u64> = output.lines().map(|l| l.parse().unwrap()).collect();
    let expected: Vec<u64> = (0..).take(numbers.len()).collect();
    assert_eq!(numbers, expected, "the log has a gap or a repeat");
}

/// A copy of the `testudo` binary at another path, made by `cp` so that no descriptor of this
/// test process open for writing can reach a process it forks ("text file busy").
fn copy_of_testudo(dir: &Path) -> PathBuf {
    let copy = dir.join("testudo-next");
    let status = std::process::Command::new("cp")
        .arg(testudo_test_support::testudo_binary())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

/// Runs `echo <text>` in `container` through the gRPC Exec call; its output and exit code.
async fn exec_echo(daemon: &Daemon, container: &str, text: &str) -> (String, i32) {
    use testudo_api::containers::v1::containers_service_client::ContainersServiceClient;
    use testudo_api::containers::v1::{exec_request, exec_response, ExecRequest, ExecStart};
    let mut client = ContainersServiceClient::new(channel(daemon.socket()).await);
    let start = ExecRequest {
        message: Some(exec_request::Message::Start(ExecStart {
            namespace: "default".to_owned(),
            container: container.to_owned(),
            args: vec!["echo".to_owned(), text.to_owned()],
            ..ExecStart::default()
        })),
    };
    let mut responses = client
        .exec(tokio_stream::iter([start]))
        .await
        .unwrap()
        .into_inner();
    let mut output = Vec::new();
    while let Some(response) = responses.message().await.unwrap() {
        match response.message {
            Some(exec_response::Message::Output(out)) => output.extend(out.data),
            Some(exec_response::Message::Exit(exit)) => {
                return (String::from_utf8(output).unwrap(), exit.exit_code);
            }
            None => {}
        }
    }
    panic!("the exec stream ended without an exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_upgraded_in_place_keeps_its_container_and_its_log() {
    let Some(daemon) = tokio::task::spawn_blocking(daemon_with_busybox)
        .await
        .unwrap()
    else {
        return;
    };
    let (daemon, next, pid) = tokio::task::spawn_blocking(move || {
        let mut daemon = daemon;
        daemon.ok(&[
            "run", "-d", "--name", "counter", BUSYBOX, "sh", "-c", COUNTER,
        ]);
        let pid = pid_of(&daemon, "counter");
        let monitor = parent_of(pid);
        logs_past(&daemon, "counter", 5);
        let next = copy_of_testudo(daemon.dir.path());
        assert_ne!(exe(monitor), next);
        // As an upgrade of the node would: a new daemon whose testudo is elsewhere.
        daemon.terminate();
        daemon.restart_using(&next);
        let before = held(monitor);
        let inherited = inheritable(monitor);

        let upgrades = daemon.json(&["monitor", "upgrade", "counter"]);
        let upgrade = &upgrades[0];
        assert_eq!(upgrades.as_array().unwrap().len(), 1, "{upgrades}");
        assert_eq!(upgrade["upgraded"], true, "{upgrade}");
        assert_eq!(upgrade["name"], "counter");
        assert_eq!(upgrade["monitor_pid"], monitor);
        assert_eq!(upgrade["binary"], next.display().to_string());
        // The same process runs the new binary, with the same descriptors, none leaking.
        assert_eq!(exe(monitor), next);
        assert_eq!(held(monitor), before);
        assert_eq!(inheritable(monitor), inherited);
        // The container runs on, the monitor's child, and logs on.
        assert_eq!(pid_of(&daemon, "counter"), pid);
        assert_eq!(parent_of(pid), monitor);
        assert_eq!(
            daemon.json(&["inspect", "counter"])["status"]["state"],
            "running"
        );
        let last = last_logged(&daemon, "counter").unwrap();
        logs_past(&daemon, "counter", last + 5);
        (daemon, next, pid)
    })
    .await
    .unwrap();

    assert_eq!(
        exec_echo(&daemon, "counter", "after the upgrade").await,
        ("after the upgrade\n".to_owned(), 0)
    );

    tokio::task::spawn_blocking(move || {
        // An upgrade of every container of the namespace, to the same binary again.
        let table = daemon.ok(&["monitor", "upgrade", "--all"]);
        assert!(
            table.contains(&format!("upgraded to {}", next.display())),
            "{table}"
        );
        daemon.ok(&["stop", "counter"]);
        assert_eq!(daemon.ok(&["wait", "counter"]), "0\n");
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        assert_every_number_once(&daemon.ok(&["logs", "counter"]));
        daemon.ok(&["rm", "counter"]);
    })
    .await
    .unwrap();
}

#[test]
fn an_upgrade_to_a_binary_that_is_no_testudo_is_refused_and_the_monitor_works_on() {
    let Some(mut daemon) = daemon_with_busybox() else {
        return;
    };
    daemon.ok(&[
        "run", "-d", "--name", "counter", BUSYBOX, "sh", "-c", COUNTER,
    ]);
    let pid = pid_of(&daemon, "counter");
    let monitor = parent_of(pid);
    let original = exe(monitor);
    logs_past(&daemon, "counter", 3);

    let unknown = daemon.fails(&["monitor", "upgrade", "nosuch"]);
    assert!(unknown.contains("nosuch"), "{unknown}");

    daemon.terminate();
    daemon.restart_using(Path::new("/bin/true"));
    let before = held(monitor);
    let output = daemon.ctl(&["monitor", "upgrade", "counter"]);
    assert_eq!(output.status.code(), Some(1));
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        table.contains("not upgraded: ")
            && table.contains("/bin/true cannot resume this monitor: it is no testudo binary"),
        "{table}"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr, "testudoctl: 1 of 1 monitors were not upgraded\n",
        "{stderr}"
    );
    // Nothing changed: the old binary, the same descriptors, the container runs and logs.
    assert_eq!(exe(monitor), original);
    assert_eq!(held(monitor), before);
    assert_eq!(pid_of(&daemon, "counter"), pid);
    let last = last_logged(&daemon, "counter").unwrap();
    logs_past(&daemon, "counter", last + 3);
    daemon.ok(&["stop", "counter"]);
    assert_eq!(daemon.ok(&["wait", "counter"]), "0\n");
    assert_every_number_once(&daemon.ok(&["logs", "counter"]));
    daemon.ok(&["rm", "counter"]);
}

#[test]
fn a_cells_monitor_is_upgraded_once_for_all_its_containers() {
    let Some(mut daemon) = daemon_with_busybox() else {
        return;
    };
    daemon.ok(&["cell", "create", "--network", "none", "pair"]);
    for name in ["one", "two"] {
        daemon.ok(&[
            "run", "-d", "--cell", "pair", "--name", name, BUSYBOX, "sh", "-c", COUNTER,
        ]);
    }
    let pids = [pid_of(&daemon, "one"), pid_of(&daemon, "two")];
    let monitor = parent_of(pids[0]);
    assert_eq!(parent_of(pids[1]), monitor);
    let next = copy_of_testudo(daemon.dir.path());
    daemon.terminate();
    daemon.restart_using(&next);

    let upgrades = daemon.json(&["monitor", "upgrade", "--all"]);
    let upgrades = upgrades.as_array().unwrap();
    assert_eq!(upgrades.len(), 2, "{upgrades:?}");
    for upgrade in upgrades {
        assert_eq!(upgrade["upgraded"], true, "{upgrade}");
        assert_eq!(upgrade["monitor_pid"], monitor, "{upgrade}");
    }
    assert_eq!(exe(monitor), next);
    for (name, pid) in ["one", "two"].iter().zip(pids) {
        assert_eq!(pid_of(&daemon, name), pid);
        assert_eq!(parent_of(pid), monitor);
        let last = last_logged(&daemon, name).unwrap();
        logs_past(&daemon, name, last + 3);
    }
    daemon.ok(&["cell", "rm", "-f", "pair"]);
    for name in ["one", "two"] {
        assert!(daemon.fails(&["inspect", name]).contains("not found"));
    }
}
