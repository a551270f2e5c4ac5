//! Terminals for a container's main process, and clients attached to a running container.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::os::fd::AsFd;

use common::*;
use testudo_monitor_protocol::resize_terminal;

#[test]
fn a_container_on_a_terminal_logs_its_output_as_stdout_lines() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = with_terminal(Bundle::new().args(&[
        "/bin/sh",
        "-c",
        "tty; test -t 0 && echo stdin-is-a-tty; echo to-stderr >&2; exit 6",
    ]));
    let leaks = monitor.leaks(&bundle);
    let mut request = monitor.request(&bundle);
    request.tty = true;
    client.create(request).unwrap();
    client.start(bundle.id()).unwrap();
    let status = client.wait(bundle.id()).unwrap();
    assert_eq!(status.termination, Termination::Exited(6));
    let records = read_log(&monitor.log_path(bundle.id()));
    assert!(records.iter().all(|r| r.stream == "stdout"), "{records:?}");
    let lines: Vec<&str> = records.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("/dev/pts/"), "{lines:?}");
    assert_eq!(lines[1..], ["stdin-is-a-tty", "to-stderr"]);
    client.delete(bundle.id(), false).unwrap();
    leaks.assert_no_leaks_for(bundle.id());
    monitor.shut_down();
}

#[test]
fn an_attached_client_sees_output_from_then_on_writes_stdin_and_learns_the_exit() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("echo before; while read line; do \
         if [ \"$line\" = quit ]; then echo bye; exit 4; fi; \
         echo \"got $line\"; echo \"err $line\" >&2; done");
    let mut request = monitor.request(&bundle);
    request.stdin = true;
    client.create(request).unwrap();
    client.start(bundle.id()).unwrap();
    let log = monitor.log_path(bundle.id());
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        read_log(&log).iter().any(|r| r.line == "before")
    }));
    let mut attached = monitor.client();
    let mut stdio = attached.attach(bundle.id()).unwrap();
    assert!(stdio.terminal.is_none());
    let stdin = stdio.stdin.take().unwrap();
    let mut stdout = File::from(stdio.stdout.take().unwrap());
    write_to(&stdin, "one\n");
    assert_eq!(read_until(&mut stdout, "got one\n"), "got one\n");
    write_to(&stdin, "quit\n");
    let mut rest = read_all(stdout.into());
    rest.insert_str(0, "got one\n");
    assert_eq!(rest, "got one\nbye\n");
    assert_eq!(read_all(stdio.stderr.take().unwrap()), "err one\n");
    let status = attached.wait(bundle.id()).unwrap();
    assert_eq!(status.termination, Termination::Exited(4));
    // The log holds everything, from before the attach too. Each stream keeps its order; how
    // the two interleave depends on which pipe the monitor read first.
    let records = read_log(&log);
    let lines = |stream: &str| -> Vec<String> {
        records
            .iter()
            .filter(|r| r.stream == stream)
            .map(|r| r.line.clone())
            .collect()
    };
    assert_eq!(lines("stdout"), ["before", "got one", "bye"]);
    assert_eq!(lines("stderr"), ["err one"]);
    let error = attached.attach(bundle.id()).unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::FailedPrecondition), "{error}");
    monitor.shut_down();
}

#[test]
fn detaching_leaves_the_container_running_and_a_later_client_attaches_again() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("while read line; do echo \"got $line\"; done");
    let mut request = monitor.request(&bundle);
    request.stdin = true;
    client.create(request).unwrap();
    client.start(bundle.id()).unwrap();

    let first = monitor.client().attach(bundle.id()).unwrap();
    let mut stdout = File::from(first.stdout.unwrap());
    write_to(first.stdin.as_ref().unwrap(), "a\n");
    read_until(&mut stdout, "got a\n");
    drop(stdout);
    drop(first.stdin);
    drop(first.stderr);
    // Output nobody reads any more: the monitor detaches that client and goes on.
    let second = monitor.client().attach(bundle.id()).unwrap();
    write_to(second.stdin.as_ref().unwrap(), "b\n");
    let mut stdout = File::from(second.stdout.unwrap());
    read_until(&mut stdout, "got b\n");
    assert_eq!(
        client.state(bundle.id()).unwrap().status,
        ContainerStatus::Running
    );
    let lines: Vec<String> = read_log(&monitor.log_path(bundle.id()))
        .into_iter()
        .map(|r| r.line)
        .collect();
    assert_eq!(lines, ["got a", "got b"]);
    monitor.shut_down();
}

#[test]
fn an_attached_client_types_on_the_terminal_and_resizes_it() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = with_terminal(Bundle::new().args(&[
        "/bin/sh",
        "-c",
        "echo ready; read line; stty size; echo \"typed $line\"",
    ]));
    let mut request = monitor.request(&bundle);
    request.tty = true;
    client.create(request).unwrap();
    let mut attached = monitor.client();
    // Attached before start: all the output reaches the client.
    let stdio = attached.attach(bundle.id()).unwrap();
    client.start(bundle.id()).unwrap();
    let terminal = stdio.terminal.unwrap();
    assert!(stdio.stderr.is_none() && stdio.stdin.is_none());
    let mut output = File::from(stdio.stdout.unwrap());
    read_until(&mut output, "ready");
    resize_terminal(terminal.as_fd(), 42, 117).unwrap();
    write_to(&terminal, "hi\n");
    let rest = read_all(output.into());
    assert!(rest.contains("42 117"), "{rest:?}");
    assert!(rest.contains("typed hi"), "{rest:?}");
    assert_eq!(
        attached.wait(bundle.id()).unwrap().termination,
        Termination::Exited(0)
    );
    monitor.shut_down();
}

#[test]
fn an_attach_that_takes_stdin_closes_it_for_the_container_and_leaves_none_for_later_ones() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    // `cat` blocks on its input before any arrives: the pipe must not be non-blocking.
    let bundle = sh("cat; echo input-ended; sleep 1000");
    let mut request = monitor.request(&bundle);
    request.stdin = true;
    client.create(request).unwrap();
    let mut first = monitor.client();
    let mut stdio = first.attach_taking_stdin(bundle.id()).unwrap();
    let stdin = stdio.stdin.take().unwrap();
    let mut stdout = File::from(stdio.stdout.take().unwrap());
    client.start(bundle.id()).unwrap();
    write_to(&stdin, "hello\n");
    assert_eq!(read_until(&mut stdout, "hello\n"), "hello\n");
    // The monitor kept no writer: this one's end is the container's end of input.
    drop(stdin);
    let log = monitor.log_path(bundle.id());
    assert!(
        wait_until(std::time::Duration::from_secs(10), || {
            read_log(&log).iter().any(|r| r.line == "input-ended")
        }),
        "the container's input did not end: {:?}",
        read_log(&log)
    );
    let later = monitor.client().attach(bundle.id()).unwrap();
    assert!(later.stdin.is_none(), "a later attach got a stdin");
    client.delete(bundle.id(), true).unwrap();
    monitor.shut_down();
}
