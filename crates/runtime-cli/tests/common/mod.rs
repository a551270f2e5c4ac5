//! Shared helpers for the runtime's integration tests (included with `mod common;`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;

pub(crate) use testudo_test_support::{require_root, Bundle, LeakCheck, Runtime};

/// The binary under test: `TESTUDO_BIN` (the release build, set by scripts/test.sh) or this package's.
pub(crate) fn testudo() -> PathBuf {
    std::env::var_os("TESTUDO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_testudo")))
}

/// A bundle running `sh -c script`.
pub(crate) fn sh(script: &str) -> Bundle {
    Bundle::new().args(&["/bin/sh", "-c", script])
}

/// Edits the spec as JSON, which is shorter than the builders for deep changes.
pub(crate) fn edit(bundle: Bundle, change: impl FnOnce(&mut serde_json::Value)) -> Bundle {
    bundle.with_spec(|spec| {
        let mut value = serde_json::to_value(&*spec).expect("spec to json");
        change(&mut value);
        *spec = serde_json::from_value(value).expect("json to spec");
    })
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `testudo run` of a written bundle in the foreground; returns its output (any exit status), and
/// checks that nothing of the container is left behind.
pub(crate) fn run(rt: &Runtime, bundle: &Bundle) -> Output {
    let leaks = LeakCheck::snapshot().bundle(bundle).state_root(rt.root());
    let output = rt
        .cmd([
            "run",
            "--bundle",
            bundle.path().to_str().expect("utf-8"),
            bundle.id(),
        ])
        .output()
        .expect("spawn testudo run");
    leaks.assert_no_leaks_for(bundle.id());
    output
}

/// Runs the bundle and returns stdout, panicking with stderr on failure.
pub(crate) fn run_ok(rt: &Runtime, bundle: &Bundle) -> String {
    let output = run(rt, bundle);
    assert!(
        output.status.success(),
        "run failed: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// `create` of a written bundle.
pub(crate) fn create(rt: &Runtime, bundle: &Bundle) {
    rt.run_ok([
        "create",
        "--bundle",
        bundle.path().to_str().expect("utf-8"),
        bundle.id(),
    ]);
}
