//! The v2 manager on a real cgroup2 mount: the unified hierarchy of a hybrid host serves
//! (only the controllers it carries are usable, but the core files, the freezer and the
//! device filter program are all real). Needs root; skips loudly otherwise, and fails
//! instead when `TESTUDO_REQUIRE_ROOT=1`.

mod common;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use oci_spec::runtime::LinuxResources;
use testudo_cgroups::{CgroupManager, CgroupsPath, FreezerState, Hierarchies, Manager};
use testudo_linux::bpf::query_cgroup_device_programs;
use testudo_test_support::{require_root, LeakCheck, CGROUP_PARENT};

use common::{unique_id, Cleanup};

/// A shell that waits for a line on stdin (so it can be moved into the cgroup first), then
/// reports which device opens succeed, then sleeps.
fn spawn_probe() -> (Child, ChildStdin, BufReader<ChildStdout>) {
    let script = "read go; \
        cat /dev/null && echo null-read; \
        head -c1 /dev/zero >/dev/null && echo zero-read; \
        (echo x >/dev/zero) 2>/dev/null && echo zero-write; \
        head -c1 /dev/urandom >/dev/null 2>&1 && echo urandom-read; \
        echo done; exec sleep 60";
    let mut child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    (child, stdin, stdout)
}

#[test]
fn v2_cgroup_filters_devices_freezes_and_removes_a_real_process() {
    if !require_root() {
        return;
    }
    let detected = Hierarchies::detect().expect("detect hierarchies");
    let Some(unified) = detected.unified else {
        eprintln!("SKIPPED (needs a cgroup2 mount): v2 round trip");
        return;
    };
    let hugetlb = unified.controllers.iter().any(|c| c == "hugetlb")
        && Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    let hierarchies = Hierarchies {
        v1: Vec::new(),
        unified: Some(unified),
    };
    let id = unique_id("cgroups-v2");
    let leaks = LeakCheck::snapshot();
    let path = PathBuf::from(format!("{CGROUP_PARENT}/{id}"));
    let path = CgroupsPath::parse(Some(&path), &id).expect("valid path");
    let mut manager = Manager::new(&hierarchies, &path).expect("resolve");
    assert!(matches!(manager, Manager::V2(_)));
    manager.create().expect("create");
    let mut guard = Cleanup {
        manager,
        child: None,
    };
    let dir = guard.manager.paths()[""].clone();
    assert!(dir.is_dir());

    let mut json = String::from(
        r#"{"devices":[{"allow":false,"access":"rwm"},
            {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
            {"allow":true,"type":"c","major":1,"minor":5,"access":"rwm"},
            {"allow":false,"type":"c","major":1,"minor":5,"access":"w"}]"#,
    );
    if hugetlb {
        json.push_str(r#","hugepageLimits":[{"pageSize":"2MB","limit":0}]"#);
    }
    json.push('}');
    let resources: LinuxResources = serde_json::from_str(&json).expect("valid resources");
    guard.manager.apply(&resources).expect("apply");
    // Applying again replaces the program rather than stacking a second one.
    guard.manager.apply(&resources).expect("apply again");
    let cgroup = File::open(&dir).expect("open cgroup dir");
    let attached = query_cgroup_device_programs(cgroup.as_fd()).expect("query");
    assert_eq!(
        attached.len(),
        1,
        "one device program attached: {attached:?}"
    );
    if hugetlb {
        let max = fs::read_to_string(dir.join("hugetlb.2MB.max")).expect("read");
        assert_eq!(max.trim(), "0");
    }

    let (child, mut stdin, mut stdout) = spawn_probe();
    let pid = i32::try_from(child.id()).expect("pid fits");
    guard.child = Some(child);
    guard.manager.add_process(pid).expect("add_process");
    writeln!(stdin, "go").expect("release the probe");
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("read probe") == 0 {
            break;
        }
        let line = line.trim().to_owned();
        if line == "done" {
            break;
        }
        seen.push(line);
    }
    assert_eq!(
        seen,
        ["null-read", "zero-read"],
        "only allowed accesses succeed"
    );

    let m = &guard.manager;
    assert_eq!(m.pids().expect("pids"), [pid]);
    m.freeze().expect("freeze");
    assert_eq!(m.freezer_state().expect("state"), FreezerState::Frozen);
    m.thaw().expect("thaw");
    assert_eq!(m.freezer_state().expect("state"), FreezerState::Thawed);
    let stats = m.stats().expect("stats");
    assert!(stats.cpu.usage.total > 0, "the probe used some CPU");

    if let Some(mut child) = guard.child.take() {
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
    drop(cgroup);
    guard.manager.destroy().expect("destroy");
    assert!(!dir.exists(), "{} removed", dir.display());
    leaks.assert_no_leaks_for(&id);
}
