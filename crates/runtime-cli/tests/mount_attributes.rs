//! Recursive mount attributes (`rro`, `rnoatime`, `rnosymfollow`, ...) set with mount_setattr,
//! observed on the mounts inside the container, submounts included.

// Integration tests panic on the first unexpected result; that is their job.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

/// The options field of the mount at `target` in `/proc/self/mountinfo` output.
fn options_of<'a>(mountinfo: &'a str, target: &str) -> &'a str {
    mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(target))
        .and_then(|l| l.split(' ').nth(5))
        .unwrap_or_else(|| panic!("{target} not mounted:\n{mountinfo}"))
}

#[test]
fn recursive_access_time_and_symlink_attributes_reach_every_submount() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    // A host tree with a mount inside, so that "recursive" can be seen.
    let host = tempfile::tempdir().unwrap();
    let sub = host.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&sub)
        .status()
        .unwrap();
    assert!(status.success());
    let cases = [
        (vec!["rbind", "rnoatime", "rnosymfollow"], "noatime", true),
        (vec!["rbind", "rnoatime", "rrelatime"], "relatime", false),
        (vec!["rbind", "rstrictatime"], "rw", false),
    ];
    for (options, atime, nosymfollow) in cases {
        let bundle = edit(sh("cat /proc/self/mountinfo"), |s| {
            s["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/data", "type": "bind", "source": host.path(), "options": options}));
        })
        .write();
        let out = run_ok(&rt, &bundle);
        for target in ["/data", "/data/sub"] {
            let opts = options_of(&out, target);
            let words: Vec<&str> = opts.split(',').collect();
            assert!(words.contains(&atime), "{options:?}: {target} has {opts}");
            if atime == "rw" {
                // strictatime shows as neither relatime nor noatime.
                assert!(
                    !words.contains(&"relatime") && !words.contains(&"noatime"),
                    "{target}: {opts}"
                );
            }
            assert_eq!(
                words.contains(&"nosymfollow"),
                nosymfollow,
                "{options:?}: {target} has {opts}"
            );
        }
    }
    let status = std::process::Command::new("umount")
        .arg(&sub)
        .status()
        .unwrap();
    assert!(status.success());
}
