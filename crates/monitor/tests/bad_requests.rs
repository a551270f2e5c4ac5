//! Bad requests get the right error kind and leave nothing behind.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::*;
use testudo_monitor_protocol::{read_records, Request, Response, MAX_FRAME, PROTOCOL_VERSION};

/// Nothing of container `id` is left: no runtime state, record, log file, mount or cgroup.
fn assert_nothing_left(monitor: &TestMonitor, leaks: &LeakCheck, id: &str) {
    leaks.assert_no_leaks_for(id);
    assert!(read_records(&monitor.state_dir()).unwrap().is_empty());
    assert!(!monitor.log_path(id).exists(), "log file left");
    let leftovers: Vec<_> = std::fs::read_dir(monitor.state_dir().join("containers"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn requests_for_an_unknown_container_are_not_found() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let kinds = [
        client.start("nope").unwrap_err().kind(),
        client.kill("nope", 9, false).unwrap_err().kind(),
        client.delete("nope", true).unwrap_err().kind(),
        client.state("nope").unwrap_err().kind(),
        client.wait("nope").unwrap_err().kind(),
    ];
    assert_eq!(kinds, [Some(ErrorKind::NotFound); 5]);
    monitor.shut_down();
}

#[test]
fn a_duplicate_id_is_refused_and_the_first_container_is_untouched() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("echo first");
    let (pid, _) = client.create(monitor.request(&bundle)).unwrap();
    let error = client.create(monitor.request(&bundle)).unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::AlreadyExists), "{error}");
    assert_eq!(client.state(bundle.id()).unwrap().pid, pid);
    client.start(bundle.id()).unwrap();
    client.wait(bundle.id()).unwrap();
    let lines: Vec<String> = read_log(&monitor.log_path(bundle.id()))
        .into_iter()
        .map(|r| r.line)
        .collect();
    assert_eq!(lines, ["first"]);
    monitor.shut_down();
}

#[test]
fn bad_bundles_and_paths_are_invalid_arguments_and_leave_nothing() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("true");
    let leaks = monitor.leaks(&bundle);
    let missing_binary = Bundle::new().args(&["/no/such/binary"]).write();
    let broken = Bundle::new();
    std::fs::write(broken.config_path(), "{ not json").unwrap();
    let terminal = with_terminal(Bundle::new().args(&["/bin/true"]));
    let cases: Vec<(&str, &str, CreateContainer)> = vec![
        (
            "a bundle that does not exist",
            "/no/such/bundle",
            CreateContainer {
                bundle: PathBuf::from("/no/such/bundle"),
                ..monitor.request(&bundle)
            },
        ),
        (
            "a config.json that is not json",
            "config.json",
            CreateContainer {
                id: bundle.id().to_owned(),
                ..monitor.request(&broken)
            },
        ),
        (
            "a process that does not exist",
            "/no/such/binary",
            CreateContainer {
                id: bundle.id().to_owned(),
                ..monitor.request(&missing_binary)
            },
        ),
        (
            "a relative bundle path",
            "relative/bundle",
            CreateContainer {
                bundle: PathBuf::from("relative/bundle"),
                ..monitor.request(&bundle)
            },
        ),
        (
            "a relative log path",
            "c.log",
            CreateContainer {
                log_path: PathBuf::from("c.log"),
                ..monitor.request(&bundle)
            },
        ),
        (
            "a log directory that does not exist",
            "/no/such/dir",
            CreateContainer {
                log_path: PathBuf::from("/no/such/dir/c.log"),
                ..monitor.request(&bundle)
            },
        ),
        (
            "a terminal the bundle does not ask for",
            "process.terminal is false",
            CreateContainer {
                tty: true,
                ..monitor.request(&bundle)
            },
        ),
        (
            "no terminal for a bundle that asks for one",
            "process.terminal is true",
            CreateContainer {
                id: bundle.id().to_owned(),
                ..monitor.request(&terminal)
            },
        ),
        (
            "an id with a slash",
            "\"a/b\"",
            CreateContainer {
                id: "a/b".into(),
                ..monitor.request(&bundle)
            },
        ),
    ];
    for (case, names, request) in cases {
        let error = client.create(request).unwrap_err();
        assert_eq!(
            error.kind(),
            Some(ErrorKind::InvalidArgument),
            "{case}: {error}"
        );
        let message = error.to_string();
        assert!(!message.contains('\n'), "{case}: {message}");
        assert!(message.contains(names), "{case}: {message}");
        assert_nothing_left(&monitor, &leaks, bundle.id());
    }
    let error = client.kill(bundle.id(), 9, false).unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::NotFound));
    assert!(client.list().unwrap().is_empty());
    monitor.shut_down();
}

#[test]
fn a_bad_signal_is_an_invalid_argument() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("sleep 1000");
    monitor.run(&mut client, &bundle);
    for signal in [0, -1, 65] {
        let error = client.kill(bundle.id(), signal, false).unwrap_err();
        assert_eq!(error.kind(), Some(ErrorKind::InvalidArgument), "{signal}");
    }
    assert_eq!(
        client.state(bundle.id()).unwrap().status,
        ContainerStatus::Running
    );
    monitor.shut_down();
}

fn error_kind(response: Option<Response>) -> ErrorKind {
    match response {
        Some(Response::Error(reply)) => reply.kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn the_protocol_is_enforced_without_disturbing_other_clients() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut raw = RawConnection::connect(&monitor.socket());
    raw.send(&Request::List);
    assert_eq!(error_kind(raw.receive()), ErrorKind::FailedPrecondition);
    raw.send(&Request::Hello {
        version: PROTOCOL_VERSION + 1,
    });
    assert_eq!(error_kind(raw.receive()), ErrorKind::FailedPrecondition);

    let mut raw = RawConnection::greeted(&monitor.socket());
    let garbage = br#"{"request":"reboot"}"#;
    let mut frame = u32::try_from(garbage.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(garbage);
    raw.send_bytes(&frame);
    assert_eq!(error_kind(raw.receive()), ErrorKind::InvalidArgument);
    raw.send(&Request::List);
    assert!(matches!(raw.receive(), Some(Response::List { .. })));

    let too_long = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes();
    raw.send_bytes(&too_long);
    assert_eq!(error_kind(raw.receive()), ErrorKind::InvalidArgument);
    assert!(raw.receive().is_none(), "the connection stays open");

    assert!(monitor.client().list().unwrap().is_empty());
    monitor.shut_down();
}
