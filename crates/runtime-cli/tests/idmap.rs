//! Idmapped bind mounts (a mount's `uidMappings`/`gidMappings`, the `idmap`/`ridmap` options),
//! observed from inside the container and on the host.
//!
//! The mappings read as runc 1.2 reads them: `containerID` is an id of the source filesystem,
//! `hostID` the id it shows as through the mount. The sources live under the system temp directory,
//! which must be on a filesystem that supports idmapped mounts (ext4 here; tmpfs since Linux 6.3).

// Integration tests panic on the first unexpected result; that is their job.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;
use serde_json::json;

fn add_mount(s: &mut serde_json::Value, mount: serde_json::Value) {
    s["mounts"].as_array_mut().unwrap().push(mount);
}

fn map(container: u32, host: u32) -> serde_json::Value {
    json!([{"containerID": container, "hostID": host, "size": 1}])
}

fn overflow_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .unwrap()
        .trim()
        .to_string()
}

/// A host directory owned by 1000:1000 holding `user` (1000:1000) and `root` (0:0).
fn source_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, id) in [("user", 1000), ("root", 0)] {
        std::fs::write(dir.path().join(name), name).unwrap();
        chown(dir.path().join(name), Some(id), Some(id)).unwrap();
    }
    chown(dir.path(), Some(1000), Some(1000)).unwrap();
    // Searchable whoever it shows as: the container's root has no CAP_DAC_OVERRIDE.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn owner(path: &Path) -> (u32, u32) {
    let md = std::fs::metadata(path).unwrap();
    (md.uid(), md.gid())
}

#[test]
fn a_bind_mount_shows_and_writes_ids_through_its_mappings() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let src = source_dir();
    let source = src.path().to_str().unwrap();
    // The host's 1000 shows as root at /data, and what root creates there lands as 1000; at
    // /shifted the host's root shows as 1000 (runc's direction: source id -> shown id).
    let bundle = edit(
        sh("stat -c '%u %g' /data/user /data/root; touch /data/created; stat -c '%u %g' /data/created; \
            stat -c '%u %g' /shifted/root /shifted/user"),
        |s| {
            add_mount(s, json!({"destination": "/data", "type": "bind", "source": source,
                "options": ["bind"], "uidMappings": map(1000, 0), "gidMappings": map(1000, 0)}));
            add_mount(s, json!({"destination": "/shifted", "type": "bind", "source": source,
                "options": ["rbind", "idmap", "ro"], "uidMappings": map(0, 1000), "gidMappings": map(0, 1000)}));
        },
    )
    .write();
    let out = run_ok(&rt, &bundle);
    let over = overflow_id();
    assert_eq!(
        out,
        format!("0 0\n{over} {over}\n0 0\n1000 1000\n{over} {over}\n")
    );
    assert_eq!(owner(&src.path().join("created")), (1000, 1000));
    // The source itself is not changed.
    assert_eq!(owner(&src.path().join("user")), (1000, 1000));
    assert_eq!(owner(&src.path().join("root")), (0, 0));
}

#[test]
fn idmap_without_mappings_shows_the_source_through_the_containers_user_namespace() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let src = source_dir();
    let source = src.path().to_str().unwrap();
    let maps = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // Through the idmapped mount the host's root is the container's root; through a plain bind
    // the host's root is unmapped in the container.
    let bundle = edit(
        sh("stat -c '%u %g' /idmapped/root /plain/root; touch /idmapped/by-container-root; cat /proc/self/uid_map"),
        |s| {
            s["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
            s["linux"]["uidMappings"] = maps.clone();
            s["linux"]["gidMappings"] = maps.clone();
            add_mount(s, json!({"destination": "/idmapped", "type": "bind", "source": source,
                "options": ["rbind", "ridmap"]}));
            add_mount(s, json!({"destination": "/plain", "type": "bind", "source": source,
                "options": ["rbind"]}));
        },
    )
    .write();
    // The rootfs belongs to the host's root, unmapped in the container: its mount points must exist.
    for dir in ["idmapped", "plain"] {
        std::fs::create_dir(bundle.rootfs().join(dir)).unwrap();
    }
    // Files of the container's root land as the host's root.
    chown(src.path(), Some(0), Some(0)).unwrap();
    let out = run_ok(&rt, &bundle);
    let over = overflow_id();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0 0", "{out}");
    assert_eq!(lines[1], format!("{over} {over}"), "{out}");
    assert!(
        lines[2].split_whitespace().eq(["0", "100000", "65536"]),
        "{out}"
    );
    assert_eq!(owner(&src.path().join("by-container-root")), (0, 0));
}

/// `create` of `bundle` fails with one line containing `expected` and leaves nothing behind.
fn create_refused(bundle: &Bundle, expected: &str) {
    let rt = Runtime::new(&testudo());
    let leaks = LeakCheck::snapshot().bundle(bundle).state_root(rt.root());
    let output = rt.run_fail([
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        bundle.id(),
    ]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "more than one line: {err}");
    assert!(
        err.starts_with("testudo: ") && err.contains(expected),
        "expected {expected:?} in {err}"
    );
    leaks.assert_no_leaks_for(bundle.id());
    assert!(!rt.root().join(bundle.id()).exists());
}

#[test]
fn mappings_on_a_tmpfs_are_refused_naming_the_mount() {
    if !require_root() {
        return;
    }
    let bundle = edit(sh("true"), |s| {
        add_mount(
            s,
            json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
            "uidMappings": map(0, 1000), "gidMappings": map(0, 1000)}),
        );
    })
    .write();
    create_refused(
        &bundle,
        "mount /scratch: id mappings are only supported for bind mounts",
    );
}

#[test]
fn bad_idmapped_mounts_are_refused_naming_the_mount_and_leave_nothing_behind() {
    if !require_root() {
        return;
    }
    let src = source_dir();
    let source = src.path().to_str().unwrap();
    let only_uid = edit(sh("true"), |s| {
        add_mount(
            s,
            json!({"destination": "/data", "type": "bind", "source": source,
            "options": ["bind"], "uidMappings": map(0, 1000)}),
        );
    })
    .write();
    create_refused(
        &only_uid,
        "mount /data: uidMappings and gidMappings must be given together",
    );
    let no_user_namespace = edit(sh("true"), |s| {
        add_mount(
            s,
            json!({"destination": "/data", "type": "bind", "source": source, "options": ["bind", "idmap"]}),
        );
    })
    .write();
    create_refused(
        &no_user_namespace,
        "mount /data: the idmap option needs uidMappings and gidMappings or a user namespace",
    );
    // Found only once the state directory and cgroup exist: they are rolled back.
    let missing_source = edit(sh("true"), |s| {
        add_mount(
            s,
            json!({"destination": "/data", "type": "bind", "source": "/no/such/source",
            "options": ["bind"], "uidMappings": map(0, 1000), "gidMappings": map(0, 1000)}),
        );
    })
    .write();
    create_refused(
        &missing_source,
        "mount /data: clone the bind source: No such file or directory",
    );
}
