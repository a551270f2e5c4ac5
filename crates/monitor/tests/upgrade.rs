//! In-place upgrade: the monitor re-executes another binary in the same process and keeps its
//! containers, their pipes and logs, its connections and nothing more; a binary that cannot resume
//! it is refused and the monitor carries on.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use common::*;
use testudo_monitor_protocol::{ExecProcess, Request, Response};

/// A copy of the `testudo` binary at another path, made by `cp` so that no descriptor of ours
/// open for writing can reach a process that this test process forks (the exec would fail with
/// "text file busy").
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

/// The monitor's descriptors: number -> what it refers to.
fn descriptors(pid: i32) -> BTreeMap<u32, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let number = entry.file_name().to_str().unwrap().parse().unwrap();
            let target = std::fs::read_link(entry.path()).unwrap();
            (number, target.display().to_string())
        })
        .collect()
}

/// The descriptors above stdio that would survive an exec (no `O_CLOEXEC` in their flags). A
/// monitor has those its starter leaked to it (this test's environment may leak some), and must
/// not add any.
fn inheritable(pid: i32) -> Vec<u32> {
    const O_CLOEXEC: u32 = 0o2000000;
    descriptors(pid)
        .into_keys()
        .filter(|&fd| fd > 2)
        .filter(|fd| {
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .unwrap()
                .trim();
            u32::from_str_radix(flags, 8).unwrap() & O_CLOEXEC == 0
        })
        .collect()
}

fn exe(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

/// The numbers a counter container logged, in order.
fn counted(monitor: &TestMonitor, id: &str) -> Vec<u64> {
    read_log(&monitor.log_path(id))
        .into_iter()
        .filter(|r| r.stream == "stdout")
        .map(|r| r.line.parse().unwrap())
        .collect()
}

fn echo(id: &str, exec_id: &str, text: &str) -> ExecProcess {
    ExecProcess {
        id: id.to_owned(),
        exec_id: exec_id.to_owned(),
        args: vec!["/bin/echo".into(), text.into()],
        env: Vec::new(),
        cwd: None,
        uid: None,
        gid: None,
        tty: false,
        stdin: false,
        terminal_size: None,
    }
}

const COUNTER: &str = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done";

#[test]
fn an_upgraded_monitor_keeps_its_pid_containers_connections_logs_and_only_its_descriptors() {
    if !require_root() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let next = copy_of_testudo(scratch.path());
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh(COUNTER);
    let id = bundle.id().to_owned();
    let pid = monitor.run(&mut client, &bundle);
    // A client waiting for the exit, and an attached one, across the upgrade.
    let socket = monitor.socket();
    let waited_id = id.clone();
    let waiter = thread::spawn(move || Client::connect(&socket).unwrap().wait(&waited_id));
    // An exec process that runs across the upgrade, with a client waiting for it.
    let mut long = echo(&id, "long", "");
    long.args = vec!["/bin/sleep".into(), "1000".into()];
    let (exec_pid, _exec_stdio) = client.exec(long).unwrap();
    let socket = monitor.socket();
    let exec_of = id.clone();
    let exec_waiter = thread::spawn(move || {
        Client::connect(&socket)
            .unwrap()
            .wait_exec(&exec_of, "long")
    });
    let mut attached = monitor.client();
    let stdio = attached.attach(&id).unwrap();
    let mut attached_out = std::fs::File::from(stdio.stdout.unwrap());
    assert!(wait_until(Duration::from_secs(10), || counted(
        &monitor, &id
    )
    .len()
        >= 5));
    let before = descriptors(monitor.pid);
    let inherited = inheritable(monitor.pid);
    assert_ne!(exe(monitor.pid), next);

    // An upgrade and a request sent behind it, in one write: answered in order, by the new binary.
    let mut raw = RawConnection::greeted(&monitor.socket());
    let mut frames = testudo_monitor_protocol::encode(&Request::Upgrade {
        binary: next.clone(),
    })
    .unwrap();
    frames.extend(testudo_monitor_protocol::encode(&Request::State { id: id.clone() }).unwrap());
    raw.send_bytes(&frames);
    match raw.receive() {
        Some(Response::Upgraded { pid, binary }) => {
            assert_eq!(pid, monitor.pid);
            assert_eq!(binary, next);
        }
        other => panic!("upgrade: {other:?}"),
    }
    match raw.receive() {
        Some(Response::State(record)) => {
            assert_eq!(record.pid, pid);
            assert_eq!(record.status, ContainerStatus::Running);
        }
        other => panic!("state: {other:?}"),
    }
    assert_eq!(exe(monitor.pid), next);
    assert_eq!(client.monitor_pid(), monitor.pid);
    // The same descriptors (the raw connection is the only new one), none inheritable.
    let mut after = descriptors(monitor.pid);
    let new: Vec<u32> = after
        .keys()
        .filter(|fd| !before.contains_key(fd))
        .copied()
        .collect();
    assert_eq!(new.len(), 1, "{before:?} -> {after:?}");
    after.remove(&new[0]);
    assert_eq!(before, after);
    assert_eq!(inheritable(monitor.pid), inherited);

    // The container runs on, still the monitor's child, and its log grows.
    assert!(process_alive(pid));
    assert_eq!(stat_field(pid, 4), i64::from(monitor.pid));
    let logged = counted(&monitor, &id).len();
    assert!(wait_until(Duration::from_secs(10), || {
        counted(&monitor, &id).len() > logged + 5
    }));
    // The attached client is still fed.
    read_until(&mut attached_out, &format!("{}\n", logged + 3));
    // Requests on connections made before the upgrade, exec and a second upgrade work.
    let (_, out) = client.exec(echo(&id, "e1", "after the upgrade")).unwrap();
    assert_eq!(read_all(out.stdout.unwrap()), "after the upgrade\n");
    assert_eq!(
        client.wait_exec(&id, "e1").unwrap().termination,
        Termination::Exited(0)
    );
    assert_eq!(
        client
            .upgrade(&testudo_test_support::testudo_binary())
            .unwrap(),
        testudo_test_support::testudo_binary()
    );
    // The exec process is still the monitor's, signalled through its handed-over pidfd.
    assert_eq!(stat_field(exec_pid, 4), i64::from(monitor.pid));
    client.kill_exec(&id, "long", libc::SIGKILL).unwrap();
    let exec_exit = exec_waiter.join().unwrap().unwrap();
    assert_eq!(exec_exit.termination, Termination::Signaled(libc::SIGKILL));
    // The waiter learns the exit.
    client.kill(&id, libc::SIGKILL, false).unwrap();
    let exit = waiter.join().unwrap().unwrap();
    assert_eq!(exit.termination, Termination::Signaled(libc::SIGKILL));
    drop(attached);
    // Every number once, in order: nothing lost or repeated across two upgrades.
    let numbers = counted(&monitor, &id);
    let expected: Vec<u64> = (0..).take(numbers.len()).collect();
    assert_eq!(numbers, expected);
    monitor.shut_down();
}

#[test]
fn a_child_that_exits_while_the_monitor_execs_is_reaped_and_recorded_by_the_new_binary() {
    if !require_root() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let next = copy_of_testudo(scratch.path());
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("exec sleep 1000");
    let pid = monitor.run(&mut client, &bundle);
    let mut raw = RawConnection::greeted(&monitor.socket());
    // With the monitor stopped, the container dies and the upgrade request arrives: the monitor
    // wakes to both and handles the request first, so the zombie crosses the exec unreaped.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(monitor.pid).unwrap(),
        rustix::process::Signal::STOP,
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(10), || proc_state(
        monitor.pid
    ) == 'T'));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(10), || proc_state(pid) == 'Z'));
    raw.send(&Request::Upgrade {
        binary: next.clone(),
    });
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(monitor.pid).unwrap(),
        rustix::process::Signal::CONT,
    )
    .unwrap();
    assert!(
        matches!(raw.receive(), Some(Response::Upgraded { ref binary, .. }) if *binary == next)
    );
    let exit = client.wait(bundle.id()).unwrap();
    assert_eq!(exit.termination, Termination::Signaled(libc::SIGKILL));
    assert_eq!(
        client.state(bundle.id()).unwrap().status,
        ContainerStatus::Stopped
    );
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "reaped");
    monitor.shut_down();
}

fn proc_state(pid: i32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .unwrap_or('?')
}

#[test]
fn an_upgrade_to_a_binary_that_cannot_resume_is_refused_and_the_monitor_carries_on() {
    if !require_root() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let not_executable = scratch.path().join("testudo-text");
    std::fs::write(&not_executable, "not a program\n").unwrap();
    // Keeps its stdout open and never answers.
    let silent = scratch.path().join("testudo-silent");
    std::fs::write(&silent, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    let status = std::process::Command::new("chmod")
        .arg("755")
        .arg(&silent)
        .status()
        .unwrap();
    assert!(status.success());
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh(COUNTER);
    let id = bundle.id().to_owned();
    let pid = monitor.run(&mut client, &bundle);
    let original = exe(monitor.pid);
    let before = descriptors(monitor.pid);
    let inherited = inheritable(monitor.pid);
    let refusals = [
        (
            PathBuf::from("/bin/true"),
            ErrorKind::FailedPrecondition,
            "/bin/true cannot resume this monitor: it is no testudo binary that resumes monitors",
        ),
        (
            not_executable.clone(),
            ErrorKind::FailedPrecondition,
            "cannot resume this monitor: cannot run it: permission denied",
        ),
        (
            silent.clone(),
            ErrorKind::FailedPrecondition,
            "cannot resume this monitor: it did not answer the handover check within 10 s",
        ),
        (
            scratch.path().join("missing"),
            ErrorKind::FailedPrecondition,
            "cannot resume this monitor: cannot run it: no such file",
        ),
        (
            PathBuf::from("testudo"),
            ErrorKind::InvalidArgument,
            "upgrade binary testudo is not an absolute path",
        ),
    ];
    for (binary, kind, message) in refusals {
        let error = client.upgrade(&binary).unwrap_err();
        assert_eq!(error.kind(), Some(kind), "{}: {error}", binary.display());
        let text = error.to_string().to_lowercase();
        assert!(text.contains(&message.to_lowercase()), "{text}");
        assert!(text.contains(&binary.display().to_string().to_lowercase()));
        // Nothing changed: same binary, same descriptors, the container runs and logs.
        assert_eq!(exe(monitor.pid), original);
        assert_eq!(descriptors(monitor.pid), before);
        assert_eq!(inheritable(monitor.pid), inherited);
        let logged = counted(&monitor, &id).len();
        assert!(wait_until(Duration::from_secs(10), || {
            counted(&monitor, &id).len() > logged
        }));
    }
    let record = client.state(&id).unwrap();
    assert_eq!((record.pid, record.status), (pid, ContainerStatus::Running));
    let numbers = counted(&monitor, &id);
    let expected: Vec<u64> = (0..).take(numbers.len()).collect();
    assert_eq!(numbers, expected);
    monitor.shut_down();
}

#[test]
fn a_container_on_a_terminal_keeps_its_terminal_and_its_log_across_an_upgrade() {
    if !require_root() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let next = copy_of_testudo(scratch.path());
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = with_terminal(Bundle::new().args(&["/bin/sh", "-c", COUNTER]));
    let id = bundle.id().to_owned();
    let mut request = monitor.request(&bundle);
    request.tty = true;
    client.create(request).unwrap();
    client.start(&id).unwrap();
    assert!(wait_until(Duration::from_secs(10), || counted(
        &monitor, &id
    )
    .len()
        >= 5));
    let inherited = inheritable(monitor.pid);
    assert_eq!(client.upgrade(&next).unwrap(), next);
    assert_eq!(inheritable(monitor.pid), inherited);
    let logged = counted(&monitor, &id).len();
    assert!(wait_until(Duration::from_secs(10), || {
        counted(&monitor, &id).len() > logged + 5
    }));
    // Attached after the upgrade: the terminal's master is still the container's.
    let mut attached = monitor.client();
    let stdio = attached.attach(&id).unwrap();
    assert!(stdio.terminal.is_some());
    client.kill(&id, libc::SIGKILL, false).unwrap();
    assert_eq!(
        client.wait(&id).unwrap().termination,
        Termination::Signaled(libc::SIGKILL)
    );
    let numbers = counted(&monitor, &id);
    let expected: Vec<u64> = (0..).take(numbers.len()).collect();
    assert_eq!(numbers, expected);
    drop(attached);
    monitor.shut_down();
}
