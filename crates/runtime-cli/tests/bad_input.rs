//! Bad input gets one clear line, a non-zero exit, and leaves nothing behind.

// Integration tests panic on the first unexpected result; that is their job.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

/// Runs `create` on a bundle whose config is `config` (raw bytes), expecting a failure whose single
/// stderr line contains `expected`, and checks nothing was left behind.
fn refused(config: &[u8], expected: &str) {
    let rt = Runtime::new(&testudo());
    let bundle = Bundle::new().write();
    std::fs::write(bundle.config_path(), config).unwrap();
    let leaks = LeakCheck::snapshot().bundle(&bundle).state_root(rt.root());
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

fn config_with(change: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let bundle = Bundle::new();
    let mut value = serde_json::to_value(bundle.spec()).unwrap();
    change(&mut value);
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn malformed_truncated_and_oversized_configs_are_refused() {
    if !require_root() {
        return;
    }
    refused(b"{ this is not json", "invalid");
    let good = config_with(|_| {});
    refused(&good[..good.len() / 2], "EOF while parsing");
    let mut big = vec![b' '; 17 << 20];
    big.extend_from_slice(&good);
    refused(&big, "is too large");
}

#[test]
fn invalid_values_are_refused_by_name() {
    if !require_root() {
        return;
    }
    refused(
        &config_with(|s| s["linux"]["namespaces"][0]["type"] = "bogus".into()),
        "bogus",
    );
    refused(
        &config_with(|s| s["process"]["capabilities"]["bounding"][0] = "CAP_FLY".into()),
        "CAP_FLY",
    );
    refused(
        &config_with(|s| s["process"]["rlimits"][0]["type"] = "RLIMIT_NOPE".into()),
        "RLIMIT_NOPE",
    );
    refused(
        &config_with(|s| s["ociVersion"] = "2.0.0".into()),
        "unsupported ociVersion \"2.0.0\"",
    );
    refused(
        &config_with(|s| s["process"]["cwd"] = "relative".into()),
        "process cwd \"relative\" is not an absolute path",
    );
    refused(
        &config_with(|s| s["process"]["args"] = json!([])),
        "no process args",
    );
    refused(
        &config_with(|s| s["linux"]["sysctl"] = json!({"vm.swappiness": "1"})),
        "sysctl \"vm.swappiness\" is not allowed",
    );
    refused(
        &config_with(|s| s["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "mount"}])),
        "namespace mnt is listed more than once",
    );
    refused(
        &config_with(|s| {
            s["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "ipc", "path": "/nonexistent/ns"}))
        }),
        "namespace ipc is listed more than once",
    );
    refused(
        &config_with(|s| s["linux"]["namespaces"][2]["path"] = "/nonexistent/ns".into()),
        "namespace path /nonexistent/ns",
    );
    refused(
        &config_with(|s| s["process"]["args"] = json!(["/bin/does-not-exist"])),
        "/bin/does-not-exist",
    );
    refused(
        &config_with(|s| s["process"]["args"] = json!(["no-such-program"])),
        "executable file not found in $PATH",
    );
    refused(
        &config_with(|s| {
            s["mounts"]
                .as_array_mut()
                .unwrap()
                .push(json!({"destination": "relative/dir", "type": "tmpfs", "source": "tmpfs"}))
        }),
        "mount destination \"relative/dir\" is not an absolute path",
    );
    refused(
        &config_with(|s| {
            s["mounts"].as_array_mut().unwrap().push(json!({"destination": "/x", "type": "bind", "source": "/no/such/source", "options": ["bind"]}))
        }),
        "/no/such/source",
    );
    refused(
        &config_with(|s| s["linux"]["resources"]["cpu"] = json!({"quota": 500, "period": 100})),
        "cpu.cfs_quota_us: Invalid argument",
    );
    refused(
        &config_with(|s| s["linux"]["resources"]["memory"] = json!({"limit": 1})),
        "container init was killed by signal 9 (out of memory?) before it was ready",
    );
    refused(
        &config_with(|s| s["linux"]["cgroupsPath"] = "/testudo-test/../../escape".into()),
        "escape",
    );
    refused(
        &config_with(
            |s| s["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["not_a_syscall"], "action": "SCMP_ACT_ERRNO"}]}),
        ),
        "not_a_syscall",
    );
    refused(
        &config_with(|s| s["process"]["terminal"] = true.into()),
        "--console-socket",
    );
}

#[test]
fn a_missing_rootfs_or_bundle_is_refused() {
    if !require_root() {
        return;
    }
    refused(
        &config_with(|s| s["root"]["path"] = "no-rootfs-here".into()),
        "rootfs",
    );
    let rt = Runtime::new(&testudo());
    let output = rt.run_fail(["create", "--bundle", "/nonexistent/bundle", "x1"]);
    assert!(
        stderr(&output).contains("cannot read /nonexistent/bundle/config.json"),
        "{}",
        stderr(&output)
    );
    assert!(!rt.root().join("x1").exists());
}

#[test]
fn invalid_ids_and_signals_are_refused() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = Bundle::new().args(&["/bin/sleep", "1000"]).write();
    for id in ["../escape", "a/b", "", ".."] {
        let output = rt.run_fail(["create", "--bundle", bundle.path().to_str().unwrap(), id]);
        assert!(
            stderr(&output).contains("invalid container id"),
            "{id}: {}",
            stderr(&output)
        );
    }
    assert!(std::fs::read_dir(rt.root()).map(|d| d.count()).unwrap_or(0) == 0);
    create(&rt, &bundle);
    for sig in ["SIGFOO", "0", "99", "RTMAX+1"] {
        let output = rt.run_fail(["kill", bundle.id(), sig]);
        assert!(
            stderr(&output).contains("signal"),
            "{sig}: {}",
            stderr(&output)
        );
    }
    assert_eq!(rt.state(bundle.id())["status"], "created");
    rt.run_ok(["delete", bundle.id()]);
}
