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

#[test]
fn the_monitor_keeps_no_descriptor_its_starter_left_open() {
    if !require_root() {
        return;
    }
    let mut monitor = TestMonitor::unstarted();
    let inherited = monitor.state_dir().with_file_name("inherited");
    std::fs::write(&inherited, "").unwrap();
    // The shell opens descriptor 7 without close-on-exec, so `testudo monitor` inherits it, as it
    // would any descriptor a careless starter leaves open.
    let starter = |argv: &[std::ffi::OsString]| {
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("exec 7<\"$0\"; exec \"$@\"")
            .arg(&inherited)
            .args(argv)
            .output()
            .unwrap()
    };
    let probe = starter(&["/bin/readlink".into(), "/proc/self/fd/7".into()]);
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).trim(),
        inherited.to_str().unwrap(),
        "the starter passes descriptor 7 on"
    );
    let command = monitor.command();
    let mut argv = vec![command.get_program().to_owned()];
    argv.extend(command.get_args().map(ToOwned::to_owned));
    let output = starter(&argv);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut client = monitor.client();
    let monitor_pid = client.monitor_pid();
    // Set, so that a failing assertion still has the monitor shut down with its containers.
    monitor.pid = monitor_pid;
    // A container too: creating one must not leave anything open either.
    let bundle = sh("sleep 1000");
    monitor.run(&mut client, &bundle);

    let open: Vec<(String, std::path::PathBuf)> =
        std::fs::read_dir(format!("/proc/{monitor_pid}/fd"))
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let target = std::fs::read_link(entry.path()).unwrap_or_default();
                (entry.file_name().to_string_lossy().into_owned(), target)
            })
            .collect();
    assert!(
        open.iter().all(|(_, target)| target != &inherited),
        "the monitor holds the inherited file: {open:?}"
    );
    assert!(
        open.iter()
            .any(|(_, target)| target.to_string_lossy().starts_with("socket:")),
        "the listener is open: {open:?}"
    );
    assert!(
        open.iter().any(|(fd, _)| fd == "2"),
        "stderr is open: {open:?}"
    );
    client.delete(bundle.id(), true).unwrap();
    client.shutdown().unwrap();
    assert!(wait_until(Duration::from_secs(10), || !process_alive(
        monitor_pid
    )));
}

#[test]
fn the_monitor_runs_with_the_malloc_caches_off_and_keeps_other_tunables() {
    if !require_root() {
        return;
    }
    let mut monitor = TestMonitor::unstarted();
    let output = monitor
        .command()
        .env("GLIBC_TUNABLES", "glibc.malloc.check=0")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    monitor.pid = monitor.client().monitor_pid();
    // glibc ends each tunable it takes with a NUL in place, so the value reads as pieces here.
    let environ = std::fs::read(format!("/proc/{}/environ", monitor.pid)).unwrap();
    let environ = String::from_utf8_lossy(&environ).replace('\0', "\n");
    assert!(
        environ.contains("GLIBC_TUNABLES=glibc.malloc.check=0"),
        "{environ}"
    );
    for tunable in testudo_monitor::MALLOC_TUNABLES.split(':') {
        assert!(environ.contains(tunable), "{tunable} missing: {environ}");
    }
    monitor.shut_down();
}
