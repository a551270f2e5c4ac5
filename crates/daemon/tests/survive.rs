//! Containers outlive their daemon, end to end: the real `testudod` is killed with SIGKILL (or
//! stopped with SIGTERM, as for an upgrade) while real containers run and log; the test looks at
//! them from the host meanwhile (their pids, cgroups and log files), then starts the daemon again
//! and checks through `testudoctl` that it adopted them, with the exits that happened while no
//! daemon ran. Restart policies are driven through `testudoctl` too, including one due for an
//! exit that no daemon saw.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use testudo_test_support::LeakCheck;

/// Logs a number a line, from 0 up, every 50 ms, and exits 0 on SIGTERM (a shell as PID 1
/// ignores signals it has no trap for).
const COUNTER: &str =
    "trap 'exit 0' TERM; i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done";

/// [`COUNTER`] until the file `/flags/exit` appears, then exits 7.
const COUNTER_UNTIL_FLAG: &str = "trap 'exit 0' TERM; i=0; \
    while [ ! -f /flags/exit ]; do echo $i; i=$((i+1)); sleep 0.05; done; exit 7";

/// `testudoctl inspect` of container `name` in the default namespace.
fn inspect(daemon: &Daemon, name: &str) -> serde_json::Value {
    daemon.json(&["inspect", name])
}

/// Whether `pid` is still in container `id`'s cgroup (the memory hierarchy's on cgroup v1, the
/// unified one on v2): the cgroup is intact and holds the process.
fn in_its_cgroup(pid: u32, id: &str) -> bool {
    let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    let expected = format!("{CGROUP_PARENT}/default/{id}");
    let dir = cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        if path != expected {
            return None;
        }
        if controllers.split(',').any(|c| c == "memory") {
            Some(format!("/sys/fs/cgroup/memory{path}"))
        } else if controllers.is_empty() && !cgroups.contains(":memory:") {
            Some(format!("/sys/fs/cgroup{path}"))
        } else {
            None
        }
    });
    dir.and_then(|dir| std::fs::read_to_string(Path::new(&dir).join("cgroup.procs")).ok())
        .is_some_and(|procs| procs.lines().any(|p| p == pid.to_string()))
}

/// The numbers of a counter's output, one a line.
fn numbers(output: &str) -> Vec<u64> {
    output
        .lines()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("not a number: {l:?}")))
        .collect()
}

/// Asserts that `output` is the counter's sequence from 0 without a gap; its last number.
fn assert_no_gap(name: &str, output: &str) -> u64 {
    let numbers = numbers(output);
    let expected: Vec<u64> = (0..numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "{name}'s log has a gap");
    numbers.last().copied().unwrap_or_default()
}

/// One container of the test: its name, id and pid.
struct Counter {
    name: String,
    id: String,
    pid: u32,
}

/// Runs `count` counters named `c0`, `c1`, ...; the last one runs [`COUNTER_UNTIL_FLAG`] with
/// `flags` mounted at `/flags`.
fn run_counters(daemon: &Daemon, count: usize, flags: &Path) -> Vec<Counter> {
    let volume = format!("{}:/flags", flags.display());
    (0..count)
        .map(|i| {
            let name = format!("c{i}");
            let id = if i + 1 == count {
                daemon.ok(&[
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "-v",
                    &volume,
                    BUSYBOX,
                    "sh",
                    "-c",
                    COUNTER_UNTIL_FLAG,
                ])
            } else {
                daemon.ok(&["run", "-d", "--name", &name, BUSYBOX, "sh", "-c", COUNTER])
            };
            let id = id.trim().to_owned();
            let pid = pid_of(daemon, &name);
            assert!(in_its_cgroup(pid, &id), "{name} is not in its cgroup");
            Counter { name, id, pid }
        })
        .collect()
}

/// With the daemon down: every counter keeps running in its cgroup and logging, and the last one
/// exits once its flag file appears.
fn while_no_daemon_runs(daemon: &Daemon, counters: &[Counter], flags: &Path) {
    let (quitter, runners) = counters.split_last().unwrap();
    let before: Vec<u64> = runners
        .iter()
        .map(|c| last_logged(daemon, &c.name).unwrap_or_default())
        .collect();
    std::fs::write(flags.join("exit"), "").unwrap();
    poll_until("the last container to exit", || !alive(quitter.pid));
    for (counter, before) in runners.iter().zip(before) {
        logs_past(daemon, &counter.name, before + 10);
        assert!(alive(counter.pid), "{} died with the daemon", counter.name);
        assert!(
            in_its_cgroup(counter.pid, &counter.id),
            "{} left its cgroup",
            counter.name
        );
    }
}

/// With the daemon back: it lists every counter, the last one stopped with exit code 7, the
/// others running with the pids they had; they log on, stop, show their whole log and go.
fn after_the_restart(daemon: &Daemon, counters: &[Counter], leaks: &LeakCheck) {
    let (quitter, runners) = counters.split_last().unwrap();
    let listed = daemon.json(&["ps", "-a"]);
    let mut expected: Vec<String> = counters.iter().map(|c| c.name.clone()).collect();
    expected.sort();
    assert_eq!(names(&listed), expected);
    for entry in listed.as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let counter = counters.iter().find(|c| c.name == name).unwrap();
        if name == quitter.name {
            assert_eq!(entry["status"]["state"], "stopped", "{entry}");
            assert_eq!(entry["status"]["exit_code"], 7, "{entry}");
        } else {
            assert_eq!(entry["status"]["state"], "running", "{entry}");
            assert_eq!(entry["status"]["pid"], counter.pid, "{entry}");
        }
    }
    let inspected = inspect(daemon, &quitter.name);
    assert_eq!(inspected["status"]["state"], "stopped", "{inspected}");
    assert_eq!(inspected["status"]["exit_code"], 7, "{inspected}");
    assert_eq!(daemon.ok(&["wait", &quitter.name]), "7\n");
    assert_no_gap(&quitter.name, &daemon.ok(&["logs", &quitter.name]));

    // Lines logged after the restart come on top of the earlier ones, without a gap.
    let at_restart: Vec<u64> = runners
        .iter()
        .map(|c| last_logged(daemon, &c.name).unwrap())
        .collect();
    for (counter, &at_restart) in runners.iter().zip(&at_restart) {
        logs_past(daemon, &counter.name, at_restart + 3);
    }
    let mut stop = vec!["stop", "-t", "30"];
    stop.extend(runners.iter().map(|c| c.name.as_str()));
    daemon.ok(&stop);
    for (counter, &at_restart) in runners.iter().zip(&at_restart) {
        assert_eq!(daemon.ok(&["wait", &counter.name]), "0\n");
        let last = assert_no_gap(&counter.name, &daemon.ok(&["logs", &counter.name]));
        assert!(last > at_restart + 3, "{}: {last}", counter.name);
    }

    let mut rm = vec!["rm"];
    rm.extend(counters.iter().map(|c| c.name.as_str()));
    daemon.ok(&rm);
    assert!(names(&daemon.json(&["ps", "-a"])).is_empty());
    for counter in counters {
        assert!(!alive(counter.pid));
        leaks.assert_no_leaks_for(&counter.id);
    }
}

#[test]
fn ten_containers_outlive_a_killed_daemon_which_adopts_them_and_an_exit_it_missed() {
    let Some(mut daemon) = daemon_with_busybox() else {
        return;
    };
    let leaks = LeakCheck::snapshot();
    let flags = tempfile::tempdir().unwrap();
    let counters = run_counters(&daemon, 10, flags.path());
    for counter in &counters {
        logs_past(&daemon, &counter.name, 3);
    }

    daemon.kill_hard();
    while_no_daemon_runs(&daemon, &counters, flags.path());
    daemon.restart();
    after_the_restart(&daemon, &counters, &leaks);
}

#[test]
fn an_upgraded_daemon_stopped_with_sigterm_adopts_its_containers() {
    let Some(mut daemon) = daemon_with_busybox() else {
        return;
    };
    let leaks = LeakCheck::snapshot();
    let flags = tempfile::tempdir().unwrap();
    let counters = run_counters(&daemon, 3, flags.path());
    for counter in &counters {
        logs_past(&daemon, &counter.name, 3);
    }

    let status = daemon.terminate();
    assert!(status.success(), "{status}");
    while_no_daemon_runs(&daemon, &counters, flags.path());
    // The same binary stands in for a new one: what matters is what the old one left behind.
    daemon.restart();
    after_the_restart(&daemon, &counters, &leaks);
}

/// The state, exit code and restart count of container `name`.
fn run_state(daemon: &Daemon, name: &str) -> (String, Option<i64>, u64) {
    let status = &inspect(daemon, name)["status"];
    (
        status["state"].as_str().unwrap().to_owned(),
        status["exit_code"].as_i64(),
        status["restart_count"].as_u64().unwrap(),
    )
}

#[test]
fn restart_policies_apply_through_testudoctl_and_to_an_exit_no_daemon_saw() {
    let Some(mut daemon) = daemon_with_busybox() else {
        return;
    };
    let leaks = LeakCheck::snapshot();
    let run = |name: &str, policy: &str, script: &str| {
        daemon
            .ok(&[
                "run",
                "-d",
                "--name",
                name,
                "--restart",
                policy,
                BUSYBOX,
                "sh",
                "-c",
                script,
            ])
            .trim()
            .to_owned()
    };
    let mut ids = vec![
        run("failing", "on-failure:2", "echo run; exit 3"),
        run("once", "no", "echo run; exit 1"),
        run("always", "always", "echo run; sleep 0.2"),
    ];

    // on-failure:2: two restarts, then it stays stopped.
    poll_until("two restarts of failing", || {
        run_state(&daemon, "failing") == ("stopped".to_owned(), Some(3), 2)
    });
    assert_eq!(daemon.ok(&["logs", "failing"]), "run\nrun\nrun\n");
    assert_eq!(daemon.ok(&["wait", "failing"]), "3\n");

    // always: restarted after exit 0, until stop ends it for good.
    poll_until("two restarts of always", || {
        run_state(&daemon, "always").2 >= 2
    });
    // no: by now (after two backoffs of always) it would have been restarted.
    assert_eq!(
        run_state(&daemon, "once"),
        ("stopped".to_owned(), Some(1), 0)
    );
    assert_eq!(daemon.ok(&["logs", "once"]), "run\n");
    assert_eq!(daemon.ok(&["wait", "once"]), "1\n");
    daemon.ok(&["stop", "always"]);
    let (state, _, restarts) = run_state(&daemon, "always");
    assert_eq!(state, "stopped");
    // The stop is stored: a daemon started again does not restart it either.
    daemon.kill_hard();
    daemon.restart();
    assert_eq!(run_state(&daemon, "always").0, "stopped");
    assert_eq!(run_state(&daemon, "always").2, restarts);
    assert_eq!(
        daemon.ok(&["logs", "always"]).lines().count(),
        usize::try_from(restarts).unwrap() + 1
    );

    // An exit that happened while no daemon ran is restarted by the next one.
    let flags = tempfile::tempdir().unwrap();
    let volume = format!("{}:/flags", flags.path().display());
    ids.push(
        daemon
            .ok(&[
                "run",
                "-d",
                "--name",
                "late",
                "--restart",
                "on-failure:1",
                "-v",
                &volume,
                BUSYBOX,
                "sh",
                "-c",
                "echo run; while [ ! -f /flags/exit ]; do sleep 0.05; done; exit 5",
            ])
            .trim()
            .to_owned(),
    );
    let pid = pid_of(&daemon, "late");
    poll_until("late's first line", || {
        daemon.ok(&["logs", "late"]) == "run\n"
    });
    daemon.kill_hard();
    std::fs::write(flags.path().join("exit"), "").unwrap();
    poll_until("late to exit", || !alive(pid));
    daemon.restart();
    // Restarted once; the flag is still there, so the second run exits 5 at once and stays.
    poll_until("the restart of late", || {
        run_state(&daemon, "late") == ("stopped".to_owned(), Some(5), 1)
    });
    assert_eq!(daemon.ok(&["logs", "late"]), "run\nrun\n");

    daemon.ok(&["rm", "failing", "once", "always", "late"]);
    assert!(names(&daemon.json(&["ps", "-a"])).is_empty());
    for id in &ids {
        leaks.assert_no_leaks_for(id);
    }
}
