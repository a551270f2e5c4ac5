//! Image references per namespace, end to end: two tenants of the real daemon pull and import
//! the same image; each sees and deletes only its own references, and the content they share
//! stays until no namespace refers to it.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;
use testudo_test_support::{require_root, ImageLayout, Layer, PushFormat, Registry, TestImage};

fn test_image() -> TestImage {
    TestImage::new(vec![
        Layer::new()
            .dir("data", 0o755)
            .file("data/hello", b"hi\n", 0o644),
        Layer::new().file("data/second", b"second\n", 0o600),
    ])
    .config(serde_json::json!({"Cmd": ["/data/hello"]}))
}

#[test]
fn two_tenants_see_only_their_own_images_and_share_the_content() {
    if !require_root() {
        return;
    }
    let registry = Registry::start();
    let mut layout = ImageLayout::new();
    let written = layout.add_image("v1", &test_image());
    registry.push(layout.path(), "v1", "app:v1", PushFormat::Oci, false);
    let daemon = Daemon::start(&[registry.address()]);
    let reference = format!("{}/app:v1", registry.address());
    daemon.ok(&["ns", "create", "acme"]);
    daemon.ok(&["ns", "create", "beta"]);

    daemon.ok(&["-n", "acme", "image", "pull", &reference]);
    assert_eq!(
        names(&daemon.json(&["-n", "acme", "image", "ls"])),
        [reference.as_str()]
    );
    assert!(names(&daemon.json(&["-n", "beta", "image", "ls"])).is_empty());
    assert!(names(&daemon.json(&["image", "ls"])).is_empty());
    let not_in_beta = format!("testudoctl: image \"{reference}\" not found in namespace \"beta\"");
    assert_eq!(
        daemon.fails(&["-n", "beta", "image", "inspect", &reference]),
        not_in_beta
    );
    assert_eq!(
        daemon.fails(&["-n", "beta", "image", "rm", &reference]),
        not_in_beta
    );
    let work = tempfile::tempdir().unwrap();
    let beta_out = work.path().join("beta.tar");
    assert_eq!(
        daemon.fails(&[
            "-n",
            "beta",
            "image",
            "export",
            &reference,
            beta_out.to_str().unwrap()
        ]),
        not_in_beta
    );
    assert!(!beta_out.exists());

    // An import is the importing tenant's only.
    let archive = work.path().join("app.tar");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(layout.path())
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    let imported = "example.com/app:v1";
    daemon.ok(&[
        "-n",
        "beta",
        "image",
        "import",
        archive.to_str().unwrap(),
        "--name",
        "example.com/app",
    ]);
    assert_eq!(
        names(&daemon.json(&["-n", "beta", "image", "ls"])),
        [imported]
    );
    assert_eq!(
        names(&daemon.json(&["-n", "acme", "image", "ls"])),
        [reference.as_str()]
    );

    // The same image pulled by the second tenant: same digest, the content is shared.
    let pulled = daemon.json(&["-n", "beta", "image", "pull", &reference]);
    assert_eq!(pulled["manifest_digest"], written.manifest.digest.as_str());

    // Deleted by the first tenant, it stays whole for the second through a prune.
    daemon.ok(&["-n", "acme", "image", "rm", &reference]);
    assert!(names(&daemon.json(&["-n", "acme", "image", "ls"])).is_empty());
    let pruned = daemon.json(&["-n", "acme", "image", "prune"]);
    assert_eq!(pruned["blobs"], 0, "{pruned}");
    let inspected = daemon.json(&["-n", "beta", "image", "inspect", &reference]);
    assert_eq!(
        inspected["image"]["manifest_digest"],
        written.manifest.digest.as_str()
    );
    daemon.ok(&[
        "-n",
        "beta",
        "image",
        "export",
        &reference,
        beta_out.to_str().unwrap(),
    ]);
    assert!(std::fs::metadata(&beta_out).unwrap().len() > 0);

    // A namespace holding images is kept unless forced; forced, its references go with it.
    assert_eq!(
        daemon.fails(&["ns", "rm", "beta"]),
        "testudoctl: namespace \"beta\" still holds 0 container(s), 0 cell(s) and 2 image(s)"
    );
    daemon.ok(&["ns", "rm", "beta", "--force"]);
    let pruned = daemon.json(&["image", "prune"]);
    assert_eq!(pruned["blobs"], 4, "manifest, config, two layers: {pruned}");
}

#[test]
fn images_of_a_namespace_survive_a_daemon_restart() {
    if !require_root() {
        return;
    }
    let mut daemon = Daemon::start(&[]);
    let mut layout = ImageLayout::new();
    layout.add_image("v1", &test_image());
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("app.tar");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(layout.path())
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    daemon.ok(&["ns", "create", "acme"]);
    daemon.ok(&[
        "-n",
        "acme",
        "image",
        "import",
        archive.to_str().unwrap(),
        "--name",
        "example.com/app",
    ]);
    assert!(daemon.terminate().success());
    daemon.child = spawn_daemon(daemon.dir.path(), &[]);
    daemon.wait_ready();
    assert_eq!(
        names(&daemon.json(&["-n", "acme", "image", "ls"])),
        ["example.com/app:v1"]
    );
    assert!(names(&daemon.json(&["image", "ls"])).is_empty());
}
