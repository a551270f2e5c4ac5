//! A real cgroup v1 (legacy or hybrid) round trip. Needs root; skips loudly otherwise, and
//! fails instead when `TESTUDO_REQUIRE_ROOT=1`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::LinuxResources;
use testudo_cgroups::{CgroupManager, CgroupsPath, FreezerState, Hierarchies, Layout, Manager};
use testudo_test_support::{require_root, LeakCheck, CGROUP_PARENT};

use common::{unique_id, Cleanup};

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}/{file}: {e}", dir.display()))
        .trim()
        .to_owned()
}

#[test]
fn v1_cgroup_limits_freezes_lists_and_removes_a_real_process() {
    if !require_root() {
        return;
    }
    let hierarchies = Hierarchies::detect().expect("detect hierarchies");
    if hierarchies.layout() != Layout::V1 {
        eprintln!("SKIPPED (needs a cgroup v1 host): v1 round trip");
        return;
    }
    let id = unique_id("cgroups-v1");
    let leaks = LeakCheck::snapshot();
    // Two new levels below the parent: the cpuset copy-down must fill both.
    let path = PathBuf::from(format!("{CGROUP_PARENT}/{id}/nested"));
    let path = CgroupsPath::parse(Some(&path), &id).expect("valid path");
    let mut manager = Manager::new(&hierarchies, &path).expect("resolve");
    manager.create().expect("create");
    let mut guard = Cleanup {
        manager,
        child: None,
    };
    let m = &guard.manager;
    let paths = m.paths();
    for dir in paths.values() {
        assert!(dir.is_dir(), "{} exists", dir.display());
    }

    let resources: LinuxResources = serde_json::from_str(
        r#"{"memory":{"limit":67108864,"swap":134217728},"pids":{"limit":32},
            "cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0"},
            "devices":[{"allow":false,"access":"rwm"},
                       {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]}"#,
    )
    .expect("valid resources");
    m.apply(&resources).expect("apply");
    assert_eq!(read(&paths["memory"], "memory.limit_in_bytes"), "67108864");
    if paths["memory"].join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(
            read(&paths["memory"], "memory.memsw.limit_in_bytes"),
            "134217728"
        );
    }
    assert_eq!(read(&paths["pids"], "pids.max"), "32");
    assert_eq!(read(&paths["cpu"], "cpu.shares"), "512");
    assert_eq!(read(&paths["cpu"], "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&paths["cpuset"], "cpuset.cpus"), "0");
    assert_eq!(read(&paths["devices"], "devices.list"), "c 1:3 rwm");

    // Updating shrinks memory below memsw: the order of the two writes matters.
    let update: LinuxResources =
        serde_json::from_str(r#"{"memory":{"limit":33554432,"swap":67108864}}"#).expect("valid");
    m.apply(&update).expect("update");
    assert_eq!(read(&paths["memory"], "memory.limit_in_bytes"), "33554432");

    // The kernel refuses a quota below 1ms with EINVAL: the error names file and value.
    let refused: LinuxResources = serde_json::from_str(r#"{"cpu":{"quota":500}}"#).expect("valid");
    let err = m.apply(&refused).expect_err("quota below the minimum");
    let message = err.to_string();
    assert!(
        message.starts_with("failed to write \"500\" to ") && message.ends_with("cpu.cfs_quota_us"),
        "{message}"
    );

    let child = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let pid = i32::try_from(child.id()).expect("pid fits");
    guard.child = Some(child);
    let m = &guard.manager;
    m.add_process(pid).expect("add_process");
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    assert!(
        own.lines()
            .any(|l| l.contains(":memory:") && l.ends_with(&format!("{id}/nested"))),
        "{own}"
    );
    assert_eq!(m.pids().expect("pids"), [pid]);

    m.freeze().expect("freeze");
    assert_eq!(m.freezer_state().expect("state"), FreezerState::Frozen);
    m.thaw().expect("thaw");
    assert_eq!(m.freezer_state().expect("state"), FreezerState::Thawed);

    let stats = m.stats().expect("stats");
    assert_eq!(stats.pids.current, 1);
    assert_eq!(stats.pids.limit, 32);
    assert_eq!(stats.memory.usage.limit, 33_554_432);
    let json = serde_json::to_value(&stats).expect("serialises");
    assert!(json["cpu"]["usage"].is_object() && json["memory"]["usage"].is_object());

    if let Some(mut child) = guard.child.take() {
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
    guard.manager.destroy().expect("destroy");
    for dir in paths.values() {
        assert!(!dir.exists(), "{} removed", dir.display());
        assert!(
            !dir.parent().expect("parent").exists(),
            "created level {} removed",
            dir.parent().expect("parent").display()
        );
    }
    leaks.assert_no_leaks_for(&id);
}
