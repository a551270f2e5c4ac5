//! Applying mounts and detecting overlayfs, with real mounts (root only).

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::{mounts_under, Scratch};
use testudo_snapshot::{mount_all, overlay_supported, unmount, Mount, MountError};

fn bind(source: &str, options: &[&str]) -> Mount {
    Mount {
        fstype: "bind".into(),
        source: source.into(),
        options: options.iter().map(|o| (*o).to_owned()).collect(),
    }
}

#[test]
fn a_failing_mount_unmounts_the_ones_made_before_it() {
    if !testudo_test_support::require_root() {
        return;
    }
    let scratch = Scratch::new();
    let source = scratch.dir("source");
    let target = scratch.dir("target");
    let missing = scratch.path().join("missing");
    let mounts = [
        bind(source.to_str().unwrap(), &["rbind", "rw"]),
        bind(missing.to_str().unwrap(), &["rbind", "ro"]),
    ];
    let err = mount_all(&mounts, &target).unwrap_err();
    assert!(matches!(err, MountError::Mount { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(mounts_under(scratch.path()).is_empty());
    scratch.finish();
}

#[test]
fn a_bad_option_is_refused_before_anything_is_mounted() {
    if !testudo_test_support::require_root() {
        return;
    }
    let scratch = Scratch::new();
    let source = scratch.dir("source");
    let target = scratch.dir("target");
    let good = bind(source.to_str().unwrap(), &["rbind"]);
    let bad = bind(source.to_str().unwrap(), &["rbind", "upperdir=/x"]);
    let err = mount_all(&[good, bad], &target).unwrap_err();
    assert!(matches!(err, MountError::BadOption { .. }), "{err}");
    assert!(mounts_under(scratch.path()).is_empty());
    scratch.finish();
}

#[test]
fn unmounting_a_mount_in_use_fails_and_leaves_it_mounted() {
    if !testudo_test_support::require_root() {
        return;
    }
    let scratch = Scratch::new();
    let source = scratch.dir("source");
    fs::write(source.join("file"), "x").unwrap();
    let target = scratch.dir("target");
    mount_all(&[bind(source.to_str().unwrap(), &["rbind", "rw"])], &target).unwrap();
    let open = fs::File::open(target.join("file")).unwrap();
    let err = unmount(&target).unwrap_err();
    let MountError::Unmount { error, .. } = &err else {
        panic!("unexpected {err}");
    };
    assert_eq!(error.raw_os_error(), Some(libc::EBUSY));
    assert_eq!(mounts_under(&target), vec![target.clone()]);
    drop(open);
    unmount(&target).unwrap();
    scratch.finish();
}

#[test]
fn overlay_detection_answers_from_a_real_mount_and_leaves_nothing() {
    if !testudo_test_support::require_root() {
        return;
    }
    let scratch = Scratch::new();
    let root = scratch.path().join("root");
    let listed = fs::read_to_string("/proc/filesystems")
        .unwrap()
        .lines()
        .any(|l| l.ends_with("\toverlay"));
    assert_eq!(overlay_supported(&root), listed);
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
    // Cached: asking again does not mount again, and still answers the same.
    assert_eq!(overlay_supported(&root), listed);
    scratch.finish();
}

#[test]
fn overlay_detection_says_no_where_no_root_can_be_made() {
    let scratch = Scratch::new();
    let file = scratch.path().join("file");
    fs::write(&file, "").unwrap();
    assert!(!overlay_supported(&file.join("root")));
    scratch.finish();
}
