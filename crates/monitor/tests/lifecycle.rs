//! Create, start, wait, kill, delete and shutdown through the monitor.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use testudo_monitor_protocol::{read_record, Request, Response};

#[test]
fn wait_returns_the_exit_code() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("exit 7");
    let leaks = monitor.leaks(&bundle);
    monitor.run(&mut client, &bundle);
    let status = client.wait(bundle.id()).unwrap();
    assert_eq!(status.termination, Termination::Exited(7));
    let record = client.state(bundle.id()).unwrap();
    assert_eq!(record.status, ContainerStatus::Stopped);
    assert_eq!(record.exit, Some(status));
    assert!(record.started_at.is_some_and(|t| t <= status.at));
    client.delete(bundle.id(), false).unwrap();
    leaks.assert_no_leaks_for(bundle.id());
    monitor.shut_down();
}

#[test]
fn a_container_killed_by_a_signal_is_reported_as_such_and_delete_leaves_nothing() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("sleep 1000");
    let leaks = monitor.leaks(&bundle);
    let pid = monitor.run(&mut client, &bundle);
    assert_eq!(
        client.state(bundle.id()).unwrap().status,
        ContainerStatus::Running
    );
    assert!(process_alive(pid));
    client.kill(bundle.id(), libc::SIGKILL, false).unwrap();
    let status = client.wait(bundle.id()).unwrap();
    assert_eq!(status.termination, Termination::Signaled(libc::SIGKILL));
    assert_eq!(status.termination.shell_code(), 137);
    let error = client.kill(bundle.id(), libc::SIGTERM, false).unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::FailedPrecondition));
    client.delete(bundle.id(), false).unwrap();
    leaks.assert_no_leaks_for(bundle.id());
    assert!(read_record(&monitor.state_dir(), bundle.id())
        .unwrap()
        .is_none());
    assert_eq!(
        client.state(bundle.id()).unwrap_err().kind(),
        Some(ErrorKind::NotFound)
    );
    monitor.shut_down();
}

#[test]
fn a_running_container_is_deleted_only_with_force_and_its_waiter_learns_how_it_ended() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("sleep 1000");
    let leaks = monitor.leaks(&bundle);
    monitor.run(&mut client, &bundle);
    let mut waiter = RawConnection::greeted(&monitor.socket());
    waiter.send(&Request::Wait {
        id: bundle.id().to_owned(),
    });
    // Answered after the wait was taken in: the waiter's bytes were there first.
    let error = client.delete(bundle.id(), false).unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::FailedPrecondition));
    client.delete(bundle.id(), true).unwrap();
    match waiter.receive() {
        Some(Response::Exited(status)) => {
            assert_eq!(status.termination, Termination::Signaled(libc::SIGKILL));
        }
        other => panic!("the waiter got {other:?}"),
    }
    leaks.assert_no_leaks_for(bundle.id());
    assert!(client.list().unwrap().is_empty());
    monitor.shut_down();
}

#[test]
fn a_created_container_runs_only_once_started() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("echo started");
    let (pid, _) = client.create(monitor.request(&bundle)).unwrap();
    assert!(process_alive(pid));
    let record = client.state(bundle.id()).unwrap();
    assert_eq!(record.status, ContainerStatus::Created);
    assert_eq!(record.pid, pid);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        std::fs::read_to_string(monitor.log_path(bundle.id())).unwrap(),
        ""
    );
    client.start(bundle.id()).unwrap();
    client.wait(bundle.id()).unwrap();
    let lines: Vec<String> = read_log(&monitor.log_path(bundle.id()))
        .into_iter()
        .map(|r| r.line)
        .collect();
    assert_eq!(lines, ["started"]);
    assert_eq!(
        client.start(bundle.id()).unwrap_err().kind(),
        Some(ErrorKind::FailedPrecondition)
    );
    monitor.shut_down();
}

#[test]
fn the_exit_is_recorded_on_disk_while_nobody_is_connected() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let bundle = sh("sleep 0.3; exit 3");
    {
        let mut client = monitor.client();
        monitor.run(&mut client, &bundle);
    }
    let recorded = wait_until(Duration::from_secs(10), || {
        read_record(&monitor.state_dir(), bundle.id())
            .unwrap()
            .is_some_and(|r| r.exit.is_some())
    });
    assert!(recorded, "no exit recorded");
    let on_disk = read_record(&monitor.state_dir(), bundle.id())
        .unwrap()
        .unwrap();
    assert_eq!(on_disk.status, ContainerStatus::Stopped);
    assert_eq!(
        on_disk.exit.map(|e| e.termination),
        Some(Termination::Exited(3))
    );
    let mut client = monitor.client();
    assert_eq!(client.state(bundle.id()).unwrap(), on_disk);
    assert_eq!(client.wait(bundle.id()).unwrap(), on_disk.exit.unwrap());
    monitor.shut_down();
}

#[test]
fn the_monitor_exits_after_shutdown_once_its_last_container_is_deleted() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("sleep 1000");
    monitor.run(&mut client, &bundle);
    client.shutdown().unwrap();
    let other = sh("true");
    let error = client.create(monitor.request(&other)).unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::FailedPrecondition));
    std::thread::sleep(Duration::from_millis(200));
    assert!(process_alive(monitor.pid), "exited with a container left");
    client.delete(bundle.id(), true).unwrap();
    assert!(wait_until(Duration::from_secs(10), || !process_alive(
        monitor.pid
    )));
    assert!(!monitor.socket().exists());
}
