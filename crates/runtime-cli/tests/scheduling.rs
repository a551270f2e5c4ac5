//! Scheduling and execution-domain attributes (runtime-spec 1.2/1.3), observed from inside the
//! container: `process.scheduler`, `process.ioPriority`, `process.execCPUAffinity`,
//! `linux.personality` and `linux.memoryPolicy`.

// Integration tests panic on the first unexpected result; that is their job.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

#[test]
fn scheduler_io_priority_and_cpu_affinity_reach_the_process() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(
        sh("grep '^policy' /proc/self/sched; cut -d' ' -f19 /proc/self/stat; ionice; grep Cpus_allowed_list /proc/self/status"),
        |s| {
            s["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
            s["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
            s["process"]["execCPUAffinity"] = json!({"final": "0"});
        },
    )
    .write();
    let out = run_ok(&rt, &bundle);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    // SCHED_BATCH is policy 3; field 19 of stat is the nice value.
    assert!(
        lines[0].starts_with("policy") && lines[0].split(':').nth(1).map(str::trim) == Some("3"),
        "{out}"
    );
    assert_eq!(lines[1], "7", "{out}");
    assert_eq!(lines[2], "idle", "{out}");
    assert_eq!(lines[3], "Cpus_allowed_list:\t0", "{out}");
}

#[test]
fn exec_runs_on_the_cpus_its_process_asks_for() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = Bundle::new().args(&["/bin/sleep", "1000"]).write();
    rt.run_ok([
        "run",
        "-d",
        "--bundle",
        bundle.path().to_str().unwrap(),
        bundle.id(),
    ]);
    let process = bundle.path().join("process.json");
    std::fs::write(
        &process,
        json!({"user": {"uid": 0, "gid": 0}, "cwd": "/", "env": ["PATH=/bin"],
            "args": ["grep", "Cpus_allowed_list", "/proc/self/status"],
            "execCPUAffinity": {"initial": "0", "final": "0"}})
        .to_string(),
    )
    .unwrap();
    let out = stdout(&rt.run_ok(["exec", "--process", process.to_str().unwrap(), bundle.id()]));
    rt.run_ok(["delete", "--force", bundle.id()]);
    assert_eq!(out, "Cpus_allowed_list:\t0\n");
}

#[test]
fn personality_sets_the_execution_domain_and_its_flags() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(sh("cat /proc/self/personality; uname -m"), |s| {
        s["linux"]["personality"] = json!({"domain": "LINUX32", "flags": ["ADDR_NO_RANDOMIZE"]});
    })
    .write();
    let out = run_ok(&rt, &bundle);
    let native = rustix::system::uname()
        .machine()
        .to_string_lossy()
        .into_owned();
    // PER_LINUX32 (0x8) | ADDR_NO_RANDOMIZE (0x40000); a 32-bit domain reports a 32-bit machine.
    assert!(out.starts_with("00040008\n"), "{out}");
    if native == "x86_64" {
        assert_eq!(out, "00040008\ni686\n");
    }
}

#[test]
fn a_memory_policy_is_set_and_one_over_missing_nodes_fails_create_by_name() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(sh("echo bound"), |s| {
        s["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
    })
    .write();
    assert_eq!(run_ok(&rt, &bundle), "bound\n");

    // The kernel refuses a node this machine does not have: the failure names the step.
    let bundle = edit(sh("echo unreachable"), |s| {
        s["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "1000"});
    })
    .write();
    let output = run(&rt, &bundle);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("memory policy"),
        "{}",
        stderr(&output)
    );
    assert_eq!(stdout(&output), "");
}

#[test]
fn unsupported_and_invalid_fields_are_refused_by_name() {
    let rt = Runtime::new(&testudo());
    let cases = [
        (
            json!({"linux": {"personality": {"domain": "LINUX", "flags": ["NOPE"]}}}),
            "NOPE",
        ),
        (
            json!({"process": {"execCPUAffinity": {"final": "3-1"}}}),
            "execCPUAffinity.final",
        ),
        (
            json!({"linux": {"netDevices": {"eth9": {"name": "eth0"}}}}),
            "linux.netDevices",
        ),
    ];
    for (change, named) in cases {
        let bundle = edit(sh("true"), |s| merge(s, &change)).write();
        let output = rt.run_fail([
            "create",
            "--bundle",
            bundle.path().to_str().unwrap(),
            bundle.id(),
        ]);
        let err = stderr(&output);
        assert!(err.contains(named), "{named}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(stdout(&rt.run_ok(["list", "-q"])), "");
    }
}

/// Merges `patch` into `target`, object by object.
fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}
