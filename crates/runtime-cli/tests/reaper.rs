//! `testudo reap` as PID 1 of a container (what `init: yes` gives): orphans are reaped, signals
//! sent to the container reach the program, and its exit status is the container's.

// Integration tests panic on the first unexpected result; that is their job.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// A bundle whose PID 1 is `testudo reap -- /bin/sh -c script`, the binary bind-mounted
/// read-only into the container.
fn reaped(script: &str) -> Bundle {
    edit(Bundle::new(), |s| {
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/.testudo-init", "type": "bind",
            "source": testudo(), "options": ["bind", "ro"]}));
        s["process"]["args"] = json!(["/.testudo-init", "reap", "--", "/bin/sh", "-c", script]);
    })
}

#[test]
fn orphans_are_reaped_and_the_exit_status_passes_through() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    // Each subshell leaves an orphaned sleep behind, which is reparented to PID 1 and exits.
    let bundle = reaped(
        "for i in 1 2 3 4 5; do (sleep 0.1 &); done; sleep 0.6; \
         cat /proc/1/cmdline | tr '\\0' ' '; echo; \
         grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l; exit 7",
    )
    .write();
    let output = run(&rt, &bundle);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].trim(), "/.testudo-init reap -- /bin/sh -c for i in 1 2 3 4 5; do (sleep 0.1 &); done; sleep 0.6; cat /proc/1/cmdline | tr '\\0' ' '; echo; grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l; exit 7");
    assert_eq!(lines[1].trim(), "0", "zombies left: {out}");
}

#[test]
fn a_signal_sent_to_the_container_reaches_the_program() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle =
        reaped("trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done")
            .write();
    let mut child = rt
        .cmd([
            "run",
            "--bundle",
            bundle.path().to_str().unwrap(),
            bundle.id(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang must fail the test, not the whole run: kill the foreground run after a minute.
    let run_pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = std::process::Command::new("kill")
            .args(["-9", &run_pid.to_string()])
            .status();
    });
    // Wait until the trap is set: the script says so first.
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"ready\n") {
        use std::io::Read;
        assert_eq!(
            stdout.read(&mut byte).unwrap(),
            1,
            "the container ended early"
        );
        seen.push(byte[0]);
    }
    std::thread::sleep(Duration::from_millis(100));
    rt.run_ok(["kill", bundle.id(), "TERM"]);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(child.wait().unwrap().code(), Some(3));
}

#[test]
fn a_program_that_cannot_start_is_reported_by_name() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(reaped("true"), |s| {
        s["process"]["args"] = json!(["/.testudo-init", "reap", "--", "/no/such/program"]);
    })
    .write();
    let output = run(&rt, &bundle);
    assert_eq!(output.status.code(), Some(127));
    assert!(
        stderr(&output).contains("cannot start /no/such/program"),
        "{}",
        stderr(&output)
    );
}
