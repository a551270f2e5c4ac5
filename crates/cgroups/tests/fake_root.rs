//! One suite that both managers must pass, run against a temporary directory standing in
//! for cgroupfs (no root needed).
//!
//! A temporary directory does not create control files in a new cgroup directory, nor
//! remove them on rmdir, nor react to writes: the `Fake` does that part of the kernel's
//! job explicitly (`populate`, `set_frozen_event`, `unpopulate`). cpuset is left out of the
//! v1 fake for that reason; the real-root test covers it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use testudo_cgroups::{
    CgroupError, CgroupManager, CgroupsPath, FreezerState, Hierarchies, Layout, Manager, OwnCgroups,
};

struct Fake {
    root: tempfile::TempDir,
    layout: Layout,
}

impl Fake {
    /// A hybrid host like the one this project is developed on: one hierarchy per v1
    /// controller, name=systemd, blkio without weight files, hugetlb on the cgroup2 mount.
    fn hybrid() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let mut mountinfo = String::new();
        let v1 = [
            "cpu", "cpuacct", "memory", "devices", "freezer", "blkio", "pids",
        ];
        for (i, c) in v1.iter().enumerate() {
            let mount = root.path().join(c);
            fs::create_dir(&mount).expect("mkdir");
            mountinfo.push_str(&format!(
                "{} 31 0:{i} / {} rw,relatime - cgroup cgroup rw,{c}\n",
                40 + i,
                mount.display()
            ));
        }
        let systemd = root.path().join("systemd");
        fs::create_dir(&systemd).expect("mkdir");
        mountinfo.push_str(&format!(
            "60 31 0:60 / {} rw - cgroup cgroup rw,xattr,name=systemd\n",
            systemd.display()
        ));
        let unified = root.path().join("unified");
        fs::create_dir(&unified).expect("mkdir");
        fs::write(unified.join("cgroup.controllers"), "hugetlb\n").expect("write");
        fs::write(unified.join("cgroup.subtree_control"), "").expect("write");
        mountinfo.push_str(&format!(
            "61 31 0:61 / {} rw - cgroup2 cgroup2 rw\n",
            unified.display()
        ));
        fs::write(root.path().join("mountinfo"), mountinfo).expect("write");
        Self {
            root,
            layout: Layout::V1,
        }
    }

    /// A unified host.
    fn unified() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let mount = root.path().join("cgroup2");
        fs::create_dir(&mount).expect("mkdir");
        fs::write(
            mount.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids\n",
        )
        .expect("write");
        fs::write(mount.join("cgroup.subtree_control"), "").expect("write");
        fs::write(
            root.path().join("mountinfo"),
            format!(
                "30 23 0:26 / {} rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
                mount.display()
            ),
        )
        .expect("write");
        Self {
            root,
            layout: Layout::V2,
        }
    }

    fn hierarchies(&self) -> Hierarchies {
        let text = fs::read_to_string(self.root.path().join("mountinfo")).expect("read");
        Hierarchies::from_mountinfo(&text, |mount| {
            Ok(fs::read_to_string(mount.join("cgroup.controllers")).expect("controllers"))
        })
        .expect("fake mountinfo parses")
    }

    /// Control files the kernel would create in a new cgroup.
    fn files(&self, controller: &str) -> &'static [(&'static str, &'static str)] {
        match (self.layout, controller) {
            (Layout::V1, "memory") => &[
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                ("memory.usage_in_bytes", "4096\n"),
            ],
            (Layout::V1, "cpu") => &[
                ("cpu.shares", "1024\n"),
                ("cpu.cfs_period_us", "100000\n"),
                ("cpu.cfs_quota_us", "-1\n"),
            ],
            (Layout::V1, "pids") => &[("pids.max", "max\n"), ("pids.current", "1\n")],
            (Layout::V1, "freezer") => &[("freezer.state", "THAWED\n")],
            (Layout::V1, "devices") => &[("devices.allow", ""), ("devices.deny", "")],
            (Layout::V1, "blkio") => &[("blkio.throttle.read_bps_device", "")],
            (Layout::V1, "") => &[("hugetlb.2MB.max", "max\n")],
            (Layout::V2, "") => &[
                ("cgroup.freeze", "0\n"),
                ("cgroup.events", "populated 0\nfrozen 0\n"),
                ("memory.max", "max\n"),
                ("memory.swap.max", "max\n"),
                ("memory.current", "4096\n"),
                ("cpu.weight", "100\n"),
                ("cpu.max", "max 100000\n"),
                ("pids.max", "max\n"),
                ("pids.current", "1\n"),
                ("hugetlb.2MB.max", "max\n"),
            ],
            _ => &[],
        }
    }

    fn populate(&self, paths: &BTreeMap<String, PathBuf>) {
        for (controller, dir) in paths {
            fs::write(dir.join("cgroup.procs"), "").expect("write");
            for (file, value) in self.files(controller) {
                fs::write(dir.join(file), value).expect("write");
            }
        }
    }

    fn set_frozen_event(&self, paths: &BTreeMap<String, PathBuf>, frozen: bool) {
        if self.layout == Layout::V2 {
            let events = format!("populated 1\nfrozen {}\n", u8::from(frozen));
            fs::write(paths[""].join("cgroup.events"), events).expect("write");
        }
    }

    fn unpopulate(&self, paths: &BTreeMap<String, PathBuf>) {
        for dir in paths.values() {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    fs::remove_file(entry.path()).expect("remove");
                }
            }
        }
    }

    /// `(paths key, file, expected content)` after applying [`limits`].
    fn expected_after_apply(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        match self.layout {
            Layout::V1 => vec![
                ("memory", "memory.limit_in_bytes", "67108864"),
                ("memory", "memory.memsw.limit_in_bytes", "134217728"),
                ("pids", "pids.max", "32"),
                ("cpu", "cpu.shares", "512"),
                ("cpu", "cpu.cfs_quota_us", "50000"),
                ("cpu", "cpu.cfs_period_us", "100000"),
                ("hugetlb", "hugetlb.2MB.max", "0"),
            ],
            Layout::V2 => vec![
                ("", "memory.max", "67108864"),
                ("", "memory.swap.max", "67108864"),
                ("", "pids.max", "32"),
                ("", "cpu.weight", "20"),
                ("", "cpu.max", "50000 100000"),
                ("", "hugetlb.2MB.max", "0"),
            ],
        }
    }
}

fn limits() -> LinuxResources {
    serde_json::from_str(
        r#"{"memory":{"limit":67108864,"swap":134217728},"pids":{"limit":32},
            "cpu":{"shares":512,"quota":50000,"period":100000},
            "hugepageLimits":[{"pageSize":"2MB","limit":0}]}"#,
    )
    .expect("valid resources")
}

fn manager(fake: &Fake, path: &str) -> Manager {
    let path = CgroupsPath::parse(Some(Path::new(path)), "unused").expect("valid path");
    Manager::with_own_cgroups(&fake.hierarchies(), &path, &OwnCgroups::default()).expect("resolves")
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .expect("readable")
        .trim()
        .to_owned()
}

/// Create, apply, join, freeze, thaw, list, measure, destroy: the life of a container's
/// cgroup, checked file by file.
fn lifecycle(fake: &Fake) {
    let mut m = manager(fake, "/pod/ctr");
    assert_eq!(
        matches!(m, Manager::V2(_)),
        fake.layout == Layout::V2,
        "layout picks the manager"
    );
    m.create().expect("create");
    let paths = m.paths();
    for dir in paths.values() {
        assert!(dir.is_dir(), "{} created", dir.display());
        assert!(dir.ends_with("pod/ctr"));
    }
    fake.populate(&paths);

    m.apply(&limits()).expect("apply");
    for (key, file, expected) in fake.expected_after_apply() {
        assert_eq!(read(&paths[key], file), expected, "{key} {file}");
    }

    m.add_process(4242).expect("add_process");
    for dir in paths.values() {
        assert_eq!(read(dir, "cgroup.procs"), "4242", "{}", dir.display());
    }
    assert_eq!(m.pids().expect("pids"), [4242]);
    assert!(m.add_process(0).is_err(), "pid 0 is refused");

    assert_eq!(m.freezer_state().expect("state"), FreezerState::Thawed);
    fake.set_frozen_event(&paths, true);
    m.freeze().expect("freeze");
    assert_eq!(m.freezer_state().expect("state"), FreezerState::Frozen);
    fake.set_frozen_event(&paths, false);
    m.thaw().expect("thaw");
    assert_eq!(m.freezer_state().expect("state"), FreezerState::Thawed);

    let stats = m.stats().expect("stats");
    assert_eq!(stats.pids.current, 1);
    assert_eq!(stats.memory.usage.usage, 4096);
    assert_eq!(stats.memory.usage.limit, 67_108_864);
    assert!(stats.hugetlb.contains_key("2MB"));

    // This host's blkio has no weight files: the error names the file and the value.
    let weight: LinuxResources =
        serde_json::from_str(r#"{"blockIO":{"weight":500}}"#).expect("valid");
    let err = m.apply(&weight).expect_err("no weight file");
    assert!(matches!(err, CgroupError::MissingFile { .. }), "{err}");
    let message = err.to_string();
    let file = if fake.layout == Layout::V1 {
        "blkio.weight"
    } else {
        "io.bfq.weight"
    };
    assert!(
        message.contains(file) && message.contains("\"500\""),
        "{message}"
    );

    // A later process (runtime `delete`) acts on the manager kept in the state file.
    let state = serde_json::to_string(&m).expect("serialise");
    let later: Manager = serde_json::from_str(&state).expect("deserialise");
    fake.unpopulate(&paths);
    later.destroy().expect("destroy");
    for dir in paths.values() {
        assert!(!dir.exists(), "{} removed", dir.display());
        let pod = dir.parent().expect("pod level");
        assert!(!pod.exists(), "created parent {} removed", pod.display());
        assert!(pod.parent().expect("mount").is_dir(), "mount point kept");
    }
    later.destroy().expect("destroying twice is fine");
}

#[test]
fn v1_manager_passes_the_lifecycle_suite_on_a_hybrid_layout() {
    lifecycle(&Fake::hybrid());
}

#[test]
fn v2_manager_passes_the_lifecycle_suite_on_a_unified_layout() {
    lifecycle(&Fake::unified());
}

#[test]
fn v2_create_enables_controllers_in_the_parents() {
    let fake = Fake::unified();
    let mut m = manager(&fake, "/ctr");
    m.create().expect("create");
    let mount = fake.root.path().join("cgroup2");
    assert_eq!(
        read(&mount, "cgroup.subtree_control"),
        "+cpuset +cpu +io +memory +hugetlb +pids"
    );
    m.destroy().expect("destroy");
}

#[test]
fn destroy_keeps_parents_that_existed_before_create() {
    for fake in [Fake::hybrid(), Fake::unified()] {
        let mut m = manager(&fake, "/shared/ctr");
        let existing: Vec<PathBuf> = m
            .paths()
            .values()
            .map(|p| p.parent().expect("parent").to_path_buf())
            .collect();
        for dir in &existing {
            fs::create_dir_all(dir).expect("mkdir");
        }
        m.create().expect("create");
        m.destroy().expect("destroy");
        for (dir, leaf) in existing.iter().zip(m.paths().values()) {
            assert!(dir.is_dir(), "{} kept", dir.display());
            assert!(!leaf.exists(), "{} removed", leaf.display());
        }
    }
}

#[test]
fn destroy_removes_cgroups_nested_below_the_container() {
    let fake = Fake::unified();
    let mut m = manager(&fake, "/ctr");
    m.create().expect("create");
    let leaf = m.paths()[""].clone();
    fs::create_dir_all(leaf.join("inner/deeper")).expect("mkdir");
    m.destroy().expect("destroy");
    assert!(!leaf.exists());
}

#[test]
fn freezing_without_a_freezer_is_a_clear_error() {
    let fake = Fake::unified();
    let mut m = manager(&fake, "/ctr");
    m.create().expect("create");
    let err = m.freeze().expect_err("no cgroup.freeze in the fake");
    assert!(matches!(err, CgroupError::NoFreezer { .. }), "{err}");
    m.destroy().expect("destroy");
}
