//! The lifecycle verbs and their runc-compatible messages, observed on real containers.

// Integration tests panic on the first unexpected result; that is their job.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn run_prints_the_output_and_passes_the_exit_status_through() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = sh("echo hello from the container; exit 7").write();
    let output = run(&rt, &bundle);
    assert_eq!(stdout(&output), "hello from the container\n");
    assert_eq!(output.status.code(), Some(7), "stderr: {}", stderr(&output));
}

#[test]
fn a_container_killed_by_a_signal_exits_with_128_plus_the_signal() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = Bundle::new().args(&["/bin/sleep", "1000"]).write();
    let leaks = LeakCheck::snapshot().bundle(&bundle).state_root(rt.root());
    let mut child = rt
        .cmd([
            "run",
            "--bundle",
            bundle.path().to_str().unwrap(),
            bundle.id(),
        ])
        .spawn()
        .unwrap();
    wait_for_status(&rt, bundle.id(), "running");
    rt.run_ok(["kill", bundle.id(), "KILL"]);
    assert_eq!(child.wait().unwrap().code(), Some(137));
    leaks.assert_no_leaks_for(bundle.id());
}

#[test]
fn create_start_state_kill_delete_walk_through_the_states() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = Bundle::new().args(&["/bin/sleep", "1000"]).write();
    let leaks = LeakCheck::snapshot().bundle(&bundle).state_root(rt.root());
    let id = bundle.id();
    let pid_file = bundle.path().join("init.pid");
    rt.run_ok([
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        id,
    ]);
    let state = rt.state(id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id);
    assert_eq!(state["bundle"], bundle.path().to_str().unwrap());
    let pid = state["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    // The init waits as the runtime binary, from a read-only handle.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let st = rustix::fs::statvfs(format!("/proc/{pid}/exe").as_str()).unwrap();
    assert!(
        st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
        "init exe {} is writable",
        exe.display()
    );

    rt.run_ok(["start", id]);
    assert_eq!(rt.state(id)["status"], "running");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        cmdline.starts_with(b"/bin/sleep\0"),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    let again = rt.run_fail(["start", id]);
    assert!(
        stderr(&again).contains("cannot start an already running container"),
        "{}",
        stderr(&again)
    );

    let refused = rt.run_fail(["delete", id]);
    assert!(
        stderr(&refused).contains(&format!(
            "cannot delete container {id} that is not stopped: running"
        )),
        "{}",
        stderr(&refused)
    );

    rt.run_ok(["kill", id, "KILL"]);
    wait_for_status(&rt, id, "stopped");
    let killed = rt.run_fail(["kill", id, "TERM"]);
    assert!(
        stderr(&killed).contains("container not running"),
        "{}",
        stderr(&killed)
    );
    rt.run_ok(["delete", id]);
    leaks.assert_no_leaks_for(id);
}

fn wait_for_status(rt: &Runtime, id: &str, want: &str) {
    for _ in 0..500 {
        let output = rt.cmd(["state", id]).output().unwrap();
        let state: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        if state["status"] == want {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{id} never became {want}: {}", rt.state(id));
}

#[test]
fn unknown_containers_get_runc_messages_and_exit_1() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    for verb in [
        vec!["state"],
        vec!["start"],
        vec!["kill"],
        vec!["delete"],
        vec!["pause"],
        vec!["exec"],
    ] {
        let mut args = verb.clone();
        args.push("nosuch");
        if verb[0] == "exec" {
            args.push("true");
        }
        let output = rt.run_fail(&args);
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            stderr(&output).trim(),
            "testudo: container \"nosuch\" does not exist",
            "{verb:?}"
        );
    }
    rt.run_ok(["delete", "--force", "nosuch"]);
}

#[test]
fn a_duplicate_id_is_refused_and_the_first_container_is_untouched() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = Bundle::new().args(&["/bin/sleep", "1000"]).write();
    create(&rt, &bundle);
    let output = rt.run_fail([
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        bundle.id(),
    ]);
    assert!(
        stderr(&output).contains(&format!("container with id exists: {}", bundle.id())),
        "{}",
        stderr(&output)
    );
    assert_eq!(rt.state(bundle.id())["status"], "created");
    rt.run_ok(["delete", "--force", bundle.id()]);
}

#[test]
fn delete_force_kills_a_running_container_and_removes_everything() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = sh("sleep 1000 & sleep 1000 & wait").write();
    let leaks = LeakCheck::snapshot().bundle(&bundle).state_root(rt.root());
    rt.run_ok([
        "run",
        "-d",
        "--bundle",
        bundle.path().to_str().unwrap(),
        bundle.id(),
    ]);
    let mut pids: Vec<i64> = Vec::new();
    for _ in 0..500 {
        pids = serde_json::from_slice(&rt.run_ok(["ps", "--format", "json", bundle.id()]).stdout)
            .unwrap();
        if pids.len() == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(pids.len(), 3, "sh and two sleeps: {pids:?}");
    rt.run_ok(["delete", "--force", bundle.id()]);
    leaks.assert_no_leaks_for(bundle.id());
    for pid in pids {
        // Gone, or a zombie waiting for the host's init to reap it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "{pid} survived: {stat}"
        );
    }
}

#[test]
fn kill_takes_names_and_numbers_reaches_all_processes_and_rejects_bad_signals() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let out = tempfile::tempdir().unwrap();
    let bundle = edit(
        sh("trap 'echo usr1 >> /out/log' USR1; trap 'echo rtmin >> /out/log' 34; while :; do sleep 0.05; done"),
        |s| {
            s["mounts"].as_array_mut().unwrap().push(serde_json::json!({
                "destination": "/out", "type": "bind", "source": out.path(), "options": ["rbind", "rw"]}));
        },
    )
    .write();
    rt.run_ok([
        "run",
        "-d",
        "--bundle",
        bundle.path().to_str().unwrap(),
        bundle.id(),
    ]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    rt.run_ok(["kill", bundle.id(), "USR1"]);
    rt.run_ok(["kill", bundle.id(), "SIGRTMIN"]);
    let bad = rt.run_fail(["kill", bundle.id(), "SIGNOPE"]);
    assert!(
        stderr(&bad).contains("unknown signal \"SIGNOPE\""),
        "{}",
        stderr(&bad)
    );
    let log = out.path().join("log");
    for _ in 0..200 {
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "usr1\nrtmin\n");
    rt.run_ok(["kill", "--all", bundle.id(), "9"]);
    wait_for_status(&rt, bundle.id(), "stopped");
    rt.run_ok(["delete", bundle.id()]);
}

#[test]
fn pause_freezes_every_process_and_resume_thaws_them() {
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
    let freezer = format!(
        "/sys/fs/cgroup/freezer/testudo-test/{}/freezer.state",
        bundle.id()
    );
    rt.run_ok(["pause", bundle.id()]);
    assert_eq!(rt.state(bundle.id())["status"], "paused");
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
    let pid = rt.state(bundle.id())["pid"].as_i64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(stat.contains(") D ") || stat.contains(") S "), "{stat}");
    let exec = rt.run_fail(["exec", bundle.id(), "true"]);
    assert!(
        stderr(&exec).contains("cannot exec in a paused container"),
        "{}",
        stderr(&exec)
    );
    rt.run_ok(["resume", bundle.id()]);
    assert_eq!(rt.state(bundle.id())["status"], "running");
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "THAWED");
    rt.run_ok(["delete", "--force", bundle.id()]);
}

#[test]
fn list_shows_containers_as_table_json_and_ids() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = Bundle::new().args(&["/bin/sleep", "1000"]).write();
    create(&rt, &bundle);
    assert_eq!(
        stdout(&rt.run_ok(["list", "-q"])),
        format!("{}\n", bundle.id())
    );
    let json: serde_json::Value =
        serde_json::from_slice(&rt.run_ok(["list", "--format", "json"]).stdout).unwrap();
    assert_eq!(json[0]["id"], bundle.id());
    assert_eq!(json[0]["status"], "created");
    let table = stdout(&rt.run_ok(["list"]));
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(bundle.id()), "{table}");
    rt.run_ok(["delete", bundle.id()]);
    assert_eq!(stdout(&rt.run_ok(["list", "-q"])), "");
}

#[test]
fn exec_joins_the_container_and_honours_its_options() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(Bundle::new().args(&["/bin/sleep", "1000"]), |s| {
        s["hostname"] = "exec-host".into();
    })
    .write();
    rt.run_ok([
        "run",
        "-d",
        "--bundle",
        bundle.path().to_str().unwrap(),
        bundle.id(),
    ]);
    let id = bundle.id();
    let out = stdout(&rt.run_ok(["exec", "--env", "GREETING=hi", "--cwd", "/tmp", "--user", "1000:1000", id, "/bin/sh", "-c",
        "echo $GREETING; pwd; id -u; id -g; hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; grep -c . /proc/self/cgroup"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..6],
        &[
            "hi",
            "/tmp",
            "1000",
            "1000",
            "exec-host",
            "/bin/sleep 1000 "
        ],
        "{out}"
    );
    let status = rt
        .cmd(["exec", id, "/bin/sh", "-c", "exit 5"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(5));
    let missing = rt.run_fail(["exec", id, "/bin/nope"]);
    assert!(
        stderr(&missing).contains("/bin/nope"),
        "{}",
        stderr(&missing)
    );

    let process = bundle.path().join("process.json");
    std::fs::write(
        &process,
        serde_json::json!({
        "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/", "env": ["A=from-process-json"],
        "args": ["/bin/sh", "-c", "echo $A > /dev/shm/marker; sleep 1000"]})
        .to_string(),
    )
    .unwrap();
    let pid_file = bundle.path().join("exec.pid");
    rt.run_ok([
        "exec",
        "--detach",
        "--process",
        process.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        id,
    ]);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    for _ in 0..200 {
        let seen = stdout(&rt.run_ok(["exec", id, "cat", "/dev/shm/marker"]));
        if seen == "from-process-json\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        stdout(&rt.run_ok(["exec", id, "cat", "/dev/shm/marker"])),
        "from-process-json\n"
    );
    let pids: Vec<i32> =
        serde_json::from_slice(&rt.run_ok(["ps", "--format", "json", id]).stdout).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    rt.run_ok(["delete", "--force", id]);
}

#[test]
fn spec_writes_a_default_config_and_features_describes_the_runtime() {
    let rt = Runtime::new(&testudo());
    let dir = tempfile::tempdir().unwrap();
    rt.run_ok(["spec", "--bundle", dir.path().to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(spec["process"]["args"][0], "sh");
    let again = rt.run_fail(["spec", "--bundle", dir.path().to_str().unwrap()]);
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
    let rootless = tempfile::tempdir().unwrap();
    rt.run_ok([
        "spec",
        "--rootless",
        "--bundle",
        rootless.path().to_str().unwrap(),
    ]);
    let spec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(rootless.path().join("config.json")).unwrap(),
    )
    .unwrap();
    assert!(spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "user"));
    let features: serde_json::Value =
        serde_json::from_slice(&rt.run_ok(["features"]).stdout).unwrap();
    assert_eq!(features["linux"]["cgroup"]["v1"], true);
    assert!(features["linux"]["seccomp"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "SCMP_ACT_ERRNO"));
    let version = stdout(&rt.run_ok(["--version"]));
    assert!(version.contains("spec: 1.2.0"), "{version}");
}

#[test]
fn a_crashed_create_leaves_state_that_delete_cleans() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    // A createRuntime hook that blocks keeps `create` busy while we kill it.
    let marker = testudo_test_support::unique_id("hook");
    let bundle = edit(Bundle::new().args(&["/bin/true"]), |s| {
        s["hooks"] = serde_json::json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", format!("sleep 1000; : {marker}")]}]});
    })
    .write();
    let leaks = LeakCheck::snapshot().bundle(&bundle).state_root(rt.root());
    let mut child = rt
        .cmd([
            "create",
            "--bundle",
            bundle.path().to_str().unwrap(),
            bundle.id(),
        ])
        .spawn()
        .unwrap();
    let state_file = rt.root().join(bundle.id()).join("state.json");
    for _ in 0..500 {
        let text = std::fs::read_to_string(&state_file).unwrap_or_default();
        if text.contains("\"pid\":") && !text.contains("\"pid\":0") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    child.kill().unwrap();
    child.wait().unwrap();
    // The hook's shell and its `sleep` child: the child first, or it outlives the test.
    let hooks = std::process::Command::new("pgrep")
        .args(["-f", &marker])
        .output()
        .unwrap();
    for pid in String::from_utf8_lossy(&hooks.stdout).split_whitespace() {
        let _ = std::process::Command::new("pkill")
            .args(["-P", pid])
            .status();
        let _ = std::process::Command::new("kill").arg(pid).status();
    }
    for _ in 0..200 {
        if rt.state(bundle.id())["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(rt.state(bundle.id())["status"], "stopped");
    rt.run_ok(["delete", "--force", bundle.id()]);
    leaks.assert_no_leaks_for(bundle.id());
}
