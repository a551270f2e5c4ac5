//! A pull shows progress bars on a terminal and prints nothing when standard error is not one,
//! seen through the `pull` example run under script(1) and without it.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use testudo_test_support::{
    require_root, Compression, ImageLayout, Layer, PushFormat, Registry, TestImage,
};

/// `target/<profile>/examples/pull`, which `cargo test` builds beside this test's binary.
fn pull_example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples/pull"))
        .unwrap()
}

#[test]
fn progress_bars_appear_on_a_terminal_only() {
    if !require_root() {
        return;
    }
    let registry = Registry::start();
    let data: Vec<u8> = (0..2_000_000u32)
        .map(|i| u8::try_from(i.wrapping_mul(2_654_435_761) >> 24).unwrap())
        .collect();
    let mut layout = ImageLayout::new();
    let written = layout.add_image(
        "v1",
        &TestImage::new(vec![Layer::new()
            .compression(Compression::None)
            .file("big", &data, 0o644)]),
    );
    registry.push(
        layout.path(),
        "v1",
        "test/progress:v1",
        PushFormat::Oci,
        false,
    );
    let reference = format!("{}/test/progress:v1", registry.address());
    let layer_prefix = &written.layers[0].digest["sha256:".len()..][..12];

    let quiet_root = tempfile::tempdir().unwrap();
    let quiet = Command::new(pull_example())
        .args([
            "--root",
            quiet_root.path().to_str().unwrap(),
            "--insecure",
            &registry.address(),
            &reference,
        ])
        .output()
        .unwrap();
    assert!(
        quiet.status.success(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );

    let tty_root = tempfile::tempdir().unwrap();
    let line = format!(
        "{} --root {} --insecure {} {reference}",
        pull_example().display(),
        tty_root.path().display(),
        registry.address()
    );
    let on_tty = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .unwrap();
    assert!(
        on_tty.status.success(),
        "{}",
        String::from_utf8_lossy(&on_tty.stdout)
    );
    let screen = String::from_utf8_lossy(&on_tty.stdout);
    assert!(
        screen.contains(layer_prefix),
        "no bar for the layer in: {screen:?}"
    );
}
