//! One monitor, many containers; its memory.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

/// The monitor's proportional set size in KiB, from `/proc/<pid>/smaps_rollup`: total, anonymous
/// (its own) and file-backed (the binary's pages, shared with every other monitor).
fn pss_kib(pid: i32) -> [u64; 3] {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    ["Pss:", "Pss_Anon:", "Pss_File:"].map(|key| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    })
}

#[test]
fn ten_containers_run_log_and_end_in_one_monitor() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundles: Vec<Bundle> = (0..10)
        .map(|n| sh(&format!("echo hello {n}; read line; exit {n}")))
        .collect();
    let leaks: Vec<LeakCheck> = bundles.iter().map(|b| monitor.leaks(b)).collect();
    let pids: Vec<i32> = bundles
        .iter()
        .map(|b| {
            let mut request = monitor.request(b);
            // A stdin pipe held open: `read` blocks until the container is killed.
            request.stdin = true;
            client.create(request).unwrap();
            client.start(b.id()).unwrap();
            client.state(b.id()).unwrap().pid
        })
        .collect();
    let records = client.list().unwrap();
    assert_eq!(records.len(), 10);
    assert!(records.iter().all(|r| r.status == ContainerStatus::Running));
    for (n, b) in bundles.iter().enumerate() {
        let expected = format!("hello {n}");
        let logged = wait_until(Duration::from_secs(10), || {
            read_log(&monitor.log_path(b.id()))
                .iter()
                .any(|r| r.line == expected)
        });
        assert!(logged, "{} did not log {expected:?}", b.id());
        assert_eq!(stat_field(pids[n], 4), i64::from(monitor.pid));
    }
    for b in &bundles {
        client.kill(b.id(), libc::SIGKILL, false).unwrap();
    }
    for (b, leak) in bundles.iter().zip(&leaks) {
        let status = client.wait(b.id()).unwrap();
        assert_eq!(status.termination, Termination::Signaled(libc::SIGKILL));
        client.delete(b.id(), false).unwrap();
        leak.assert_no_leaks_for(b.id());
    }
    assert!(client.list().unwrap().is_empty());
    monitor.shut_down();
}

#[test]
fn the_monitor_memory_with_one_and_ten_idle_containers_is_reported() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    // Idle, as monitors are nearly all their life: it gives its clean pages back after a second.
    let idle = || std::thread::sleep(Duration::from_millis(1500));
    idle();
    let empty = pss_kib(monitor.pid);
    let bundles: Vec<Bundle> = (0..10).map(|_| sh("echo ready; sleep 1000")).collect();
    let mut figures = vec![(0, empty)];
    for (n, b) in bundles.iter().enumerate() {
        monitor.run(&mut client, b);
        assert!(wait_until(Duration::from_secs(10), || {
            !read_log(&monitor.log_path(b.id())).is_empty()
        }));
        if n == 0 || n == 9 {
            idle();
            figures.push((n + 1, pss_kib(monitor.pid)));
        }
    }
    let [(_, none), (_, one), (_, ten)] = figures[..] else {
        panic!("{figures:?}");
    };
    let per_container = |i: usize| ten[i].saturating_sub(one[i]) / 9;
    eprintln!(
        "monitor PSS (total / anonymous / file) in KiB: no container {none:?}, 1 container {one:?}, \
         10 containers {ten:?}; per further container {} / {} / {}",
        per_container(0),
        per_container(1),
        per_container(2)
    );
    assert_eq!(client.list().unwrap().len(), 10);
    monitor.shut_down();
}
