//! Exec processes through the monitor: run in the container as asked, stdio handed to the client,
//! exit codes collected by the monitor.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use testudo_monitor_protocol::{resize_terminal, ExecProcess};

fn exec_request(id: &str, exec_id: &str, args: &[&str]) -> ExecProcess {
    ExecProcess {
        id: id.to_owned(),
        exec_id: exec_id.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: Vec::new(),
        cwd: None,
        uid: None,
        gid: None,
        tty: false,
        stdin: false,
        terminal_size: None,
    }
}

#[test]
fn exec_runs_as_the_user_in_the_directory_with_the_environment_asked_and_reports_its_exit() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("sleep 1000");
    let leaks = monitor.leaks(&bundle);
    monitor.run(&mut client, &bundle);
    let mut request = exec_request(
        bundle.id(),
        "e1",
        &[
            "/bin/sh",
            "-c",
            "id -u; id -g; pwd; echo $GREETING; echo oops >&2; exit 3",
        ],
    );
    request.uid = Some(1000);
    request.gid = Some(1001);
    request.cwd = Some("/tmp".into());
    request.env = vec!["GREETING=hello".into()];
    let (pid, stdio) = client.exec(request).unwrap();
    assert!(pid > 0);
    assert!(stdio.stdin.is_none() && stdio.terminal.is_none());
    let stdout = read_all(stdio.stdout.unwrap());
    let stderr = read_all(stdio.stderr.unwrap());
    assert_eq!(stdout, "1000\n1001\n/tmp\nhello\n");
    assert_eq!(stderr, "oops\n");
    let status = client.wait_exec(bundle.id(), "e1").unwrap();
    assert_eq!(status.termination, Termination::Exited(3));
    // Collected once: the monitor has forgotten it.
    let again = client.wait_exec(bundle.id(), "e1").unwrap_err();
    assert_eq!(again.kind(), Some(ErrorKind::NotFound));
    // The container itself runs on, and its log holds none of the exec's output.
    assert_eq!(
        client.state(bundle.id()).unwrap().status,
        ContainerStatus::Running
    );
    client.delete(bundle.id(), true).unwrap();
    assert!(read_log(&monitor.log_path(bundle.id())).is_empty());
    leaks.assert_no_leaks_for(bundle.id());
    monitor.shut_down();
}

#[test]
fn exec_stdin_reaches_the_process_and_its_end_is_seen() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("sleep 1000");
    monitor.run(&mut client, &bundle);
    let mut request = exec_request(bundle.id(), "cat", &["/bin/cat"]);
    request.stdin = true;
    let (_, mut stdio) = client.exec(request).unwrap();
    let stdin = stdio.stdin.take().unwrap();
    write_to(&stdin, "ping\npong\n");
    drop(stdin);
    assert_eq!(read_all(stdio.stdout.take().unwrap()), "ping\npong\n");
    let status = client.wait_exec(bundle.id(), "cat").unwrap();
    assert_eq!(status.termination, Termination::Exited(0));
    monitor.shut_down();
}

#[test]
fn exec_with_a_tty_runs_on_a_terminal_that_the_client_resizes() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("sleep 1000");
    monitor.run(&mut client, &bundle);
    let mut request = exec_request(
        bundle.id(),
        "tty",
        &["/bin/sh", "-c", "tty; read line; stty size; exit 5"],
    );
    request.tty = true;
    let (_, mut stdio) = client.exec(request).unwrap();
    assert!(stdio.stdout.is_none() && stdio.stdin.is_none());
    let master = stdio.terminal.take().unwrap();
    let mut output = std::fs::File::from(master.try_clone().unwrap());
    let first = read_until(&mut output, "\n");
    assert!(first.starts_with("/dev/pts/"), "{first:?}");
    resize_terminal(std::os::fd::AsFd::as_fd(&master), 31, 103).unwrap();
    write_to(&master, "go\n");
    drop(output);
    let rest = read_all(master);
    assert!(rest.contains("31 103"), "{rest:?}");
    let status = client.wait_exec(bundle.id(), "tty").unwrap();
    assert_eq!(status.termination, Termination::Exited(5));
    monitor.shut_down();
}

#[test]
fn exec_leaves_the_monitor_creating_containers_in_their_own_pid_namespace() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let first = sh("sleep 1000");
    let first_pid = monitor.run(&mut client, &first);
    let (_, stdio) = client
        .exec(exec_request(first.id(), "true", &["/bin/true"]))
        .unwrap();
    drop(stdio);
    client.wait_exec(first.id(), "true").unwrap();
    let second = sh("sleep 1000");
    let second_pid = monitor.run(&mut client, &second);
    // As deep as the first container's init, not nested in the first container's namespace.
    assert_eq!(
        pid_namespace_depth(second_pid),
        pid_namespace_depth(first_pid)
    );
    monitor.shut_down();
}

#[test]
fn exec_is_refused_clearly_for_unknown_stopped_or_duplicate_targets_and_missing_programs() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let error = client
        .exec(exec_request("nobody", "e", &["/bin/true"]))
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::NotFound), "{error}");

    let running = sh("sleep 1000");
    monitor.run(&mut client, &running);
    let (_, _stdio) = client
        .exec(exec_request(running.id(), "long", &["/bin/sleep", "1000"]))
        .unwrap();
    let error = client
        .exec(exec_request(running.id(), "long", &["/bin/true"]))
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::AlreadyExists), "{error}");
    let error = client
        .exec(exec_request(running.id(), "missing", &["/no/such/program"]))
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::InvalidArgument), "{error}");
    assert!(error.to_string().contains("/no/such/program"), "{error}");
    let error = client
        .exec(exec_request(running.id(), "none", &[]))
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::InvalidArgument), "{error}");

    // The exec process dies with its container; its waiter learns it was killed.
    client.kill(running.id(), libc::SIGKILL, false).unwrap();
    client.wait(running.id()).unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        !matches!(
            client.state(running.id()).map(|r| r.status),
            Ok(ContainerStatus::Running)
        )
    }));
    let status = client.wait_exec(running.id(), "long").unwrap();
    assert_eq!(status.termination, Termination::Signaled(libc::SIGKILL));
    let error = client
        .exec(exec_request(running.id(), "late", &["/bin/true"]))
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::FailedPrecondition), "{error}");
    assert!(!monitor.state_dir().join("console.sock").exists());
    monitor.shut_down();
}

/// How many pid namespaces `pid` is in (the entries of `NSpid` in its status).
fn pid_namespace_depth(pid: i32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .unwrap()
        .split_whitespace()
        .count()
        - 1
}
