//! The monitor outlives whoever started it.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::*;

#[test]
fn the_monitor_and_its_containers_survive_the_sigkill_of_their_starter() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::unstarted();
    let command = monitor.command();
    let mut line = vec![command.get_program().to_owned()];
    line.extend(command.get_args().map(ToOwned::to_owned));
    // The starter runs the monitor command, then lingers as a daemon would.
    let mut starter = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("\"$@\" && exec sleep 1000")
        .arg("sh")
        .args(&line)
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        testudo_monitor_protocol::Client::connect(&monitor.socket()).is_ok()
    }));
    let mut client = monitor.client();
    let monitor_pid = client.monitor_pid();
    let bundle = sh("while true; do echo tick; sleep 0.1; done");
    let pid = monitor.run(&mut client, &bundle);
    drop(client);

    starter.kill().unwrap();
    let status = starter.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    assert!(process_alive(monitor_pid));
    assert_ne!(stat_field(monitor_pid, 4), i64::from(starter.id() as i32));
    // Its own session, so a signal to the starter's process group does not reach it.
    assert_eq!(stat_field(monitor_pid, 6), i64::from(monitor_pid));
    assert_eq!(
        stat_field(pid, 4),
        i64::from(monitor_pid),
        "init is its child"
    );
    let mut client = monitor.client();
    assert_eq!(
        client.state(bundle.id()).unwrap().status,
        ContainerStatus::Running
    );
    let ticks = || read_log(&monitor.log_path(bundle.id())).len();
    let before = ticks();
    assert!(wait_until(Duration::from_secs(10), || ticks() > before + 2));
    client.delete(bundle.id(), true).unwrap();
    client.shutdown().unwrap();
    assert!(wait_until(Duration::from_secs(10), || !process_alive(
        monitor_pid
    )));
}

#[test]
fn a_second_monitor_on_a_socket_in_use_is_refused() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let output = monitor.command().output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in use by a running monitor"), "{stderr}");
    assert_eq!(monitor.client().monitor_pid(), monitor.pid);
    monitor.shut_down();
}
