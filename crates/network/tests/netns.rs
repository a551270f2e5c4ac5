//! Persistent named network namespaces, and the check of a path given to join.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use testudo_network::{Netns, NetnsDir, NetnsError, NetnsName};

/// Mount points (field 5 of mountinfo) equal to `path`.
fn mounts_at(path: &Path) -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
        .count()
}

fn own_netns() -> String {
    fs::read_link("/proc/thread-self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_named_namespace_is_created_entered_and_deleted_twice() {
    if !testudo_test_support::require_root() {
        return;
    }
    let dir = NetnsDir::default();
    let name = NetnsName::new(common::unique_id()).unwrap();
    let netns = dir.create(&name).unwrap();
    let path = dir.path_of(&name);
    assert_eq!(netns.path(), path);
    assert_eq!(
        mounts_at(&path),
        1,
        "the namespace is bind-mounted on its file"
    );

    let host = own_netns();
    let inside = netns.run(own_netns).unwrap();
    assert_ne!(inside, host);
    assert_eq!(own_netns(), host, "the caller's thread stays where it was");
    let reopened = dir.open(&name).unwrap();
    assert_eq!(
        reopened.run(own_netns).unwrap(),
        inside,
        "the namespace persists"
    );
    let links = netns.run(common::host_links).unwrap();
    assert_eq!(links.into_iter().collect::<Vec<_>>(), ["lo"]);

    let err = dir.create(&name).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("network namespace {} already exists", path.display())
    );
    assert_eq!(mounts_at(&path), 1);

    drop((netns, reopened));
    dir.delete(&name).unwrap();
    assert!(!path.exists());
    assert_eq!(mounts_at(&path), 0);
    dir.delete(&name).unwrap();
    common::assert_no_leftovers(name.as_str(), [], std::slice::from_ref(&name));
}

#[test]
fn deleting_a_namespace_left_half_made_by_a_crash_succeeds() {
    if !testudo_test_support::require_root() {
        return;
    }
    let dir = NetnsDir::default();
    let name = NetnsName::new(common::unique_id()).unwrap();
    // A crash between creating the file and binding the namespace onto it.
    fs::write(dir.path_of(&name), "").unwrap();
    assert!(matches!(dir.open(&name), Err(NetnsError::NotNetns { .. })));
    dir.delete(&name).unwrap();
    assert!(!dir.path_of(&name).exists());
}

#[test]
fn paths_that_are_not_network_namespaces_are_refused_by_name() {
    if !testudo_test_support::require_root() {
        return;
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    for (path, message) in [
        (
            Path::new("/run/netns/tt-no-such-netns"),
            "network namespace /run/netns/tt-no-such-netns does not exist".to_owned(),
        ),
        (
            file.path(),
            format!(
                "{} is not a network namespace (not a namespace file)",
                file.path().display()
            ),
        ),
        (
            Path::new("/proc/self/ns/mnt"),
            "/proc/self/ns/mnt is not a network namespace (a mnt namespace)".to_owned(),
        ),
    ] {
        let err = Netns::open(path).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    let host = Netns::open(Path::new("/proc/self/ns/net")).unwrap();
    assert_eq!(host.run(own_netns).unwrap(), own_netns());
}

#[test]
fn an_injected_directory_becomes_one_shared_mount_point_even_under_concurrent_creation() {
    if !testudo_test_support::require_root() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = NetnsDir::new(root.path().join("netns"));
    let names: Vec<_> = (0..4)
        .map(|i| NetnsName::new(format!("n{i}")).unwrap())
        .collect();
    std::thread::scope(|scope| {
        for name in &names {
            let dir = &dir;
            scope.spawn(move || dir.create(name).unwrap());
        }
    });
    assert_eq!(mounts_at(dir.dir()), 1, "no stacked bind mounts");
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(dir.dir().to_str().unwrap()))
        .unwrap();
    assert!(line.contains(" shared:"), "{line}");
    for name in &names {
        assert_eq!(mounts_at(&dir.path_of(name)), 1);
        dir.delete(name).unwrap();
        assert!(!dir.path_of(name).exists());
    }
    rustix::mount::unmount(dir.dir(), rustix::mount::UnmountFlags::DETACH).unwrap();
    assert_eq!(mounts_at(dir.dir()), 0);
}

#[test]
fn an_invalid_name_is_refused() {
    let err = NetnsName::new("../etc").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid network namespace name \"../etc\": use 1 to 64 of [A-Za-z0-9._-], not starting with '.'"
    );
}
