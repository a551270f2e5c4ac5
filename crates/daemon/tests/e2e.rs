//! testudod end to end: the real daemon binary on a temporary root and socket, driven by the
//! real `testudoctl`, with images pushed to a loopback registry by the tests themselves.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Command;

use common::*;
use testudo_test_support::{require_root, ImageLayout, Layer, PushFormat, Registry, TestImage};

#[test]
fn namespaces_are_created_listed_and_deleted_with_clear_errors() {
    let daemon = Daemon::start(&[]);
    assert_eq!(names(&daemon.json(&["ns", "ls"])), ["default"]);

    assert_eq!(daemon.ok(&["ns", "create", "acme"]), "acme\n");
    assert_eq!(
        daemon.fails(&["ns", "create", "acme"]),
        "testudoctl: namespace \"acme\" already exists"
    );
    let table = daemon.ok(&["ns", "ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("NAME     CREATED"), "{table}");
    assert!(lines[1].starts_with("acme     20"), "{table}");
    assert!(lines[2].starts_with("default  20"), "{table}");

    let invalid = daemon.fails(&["ns", "create", "Bad_Name"]);
    assert!(
        invalid.starts_with("testudoctl: invalid namespace name \"Bad_Name\""),
        "{invalid}"
    );
    assert_eq!(names(&daemon.json(&["ns", "ls"])), ["acme", "default"]);

    assert_eq!(daemon.ok(&["ns", "rm", "acme"]), "");
    assert_eq!(
        daemon.fails(&["ns", "rm", "acme"]),
        "testudoctl: namespace \"acme\" not found"
    );
    assert_eq!(names(&daemon.json(&["ns", "ls"])), ["default"]);
}

#[test]
fn the_socket_is_group_only_refuses_a_second_daemon_and_goes_with_sigterm() {
    let mut daemon = Daemon::start(&[]);
    let socket = daemon.socket();
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);

    let second = spawn_daemon(daemon.dir.path(), &[]).wait().unwrap();
    assert_eq!(second.code(), Some(1));
    let stderr = std::fs::read_to_string(daemon.dir.path().join("testudod.log")).unwrap();
    let refusal = format!("testudod: socket {socket:?} is in use by a running daemon\n");
    assert!(stderr.contains(&refusal), "{stderr}");
    // The first daemon still answers.
    assert_eq!(names(&daemon.json(&["ns", "ls"])), ["default"]);

    let status = daemon.terminate();
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
    assert!(daemon
        .fails(&["ns", "ls"])
        .starts_with("testudoctl: cannot connect to the daemon"));
}

#[test]
fn a_socket_left_by_a_killed_daemon_is_replaced() {
    let mut daemon = Daemon::start(&[]);
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    assert!(daemon.socket().exists());

    daemon.child = spawn_daemon(daemon.dir.path(), &[]);
    daemon.wait_ready();
    assert_eq!(names(&daemon.json(&["ns", "ls"])), ["default"]);
}

fn test_image(text: &[u8]) -> TestImage {
    TestImage::new(vec![
        Layer::new()
            .dir("data", 0o755)
            .file("data/hello", text, 0o644),
        Layer::new().file("data/second", b"second\n", 0o600),
    ])
    .config(serde_json::json!({"Cmd": ["/data/hello"]}))
}

#[test]
fn an_image_is_pulled_listed_inspected_and_deleted() {
    if !require_root() {
        return;
    }
    let registry = Registry::start();
    let mut layout = ImageLayout::new();
    let written = layout.add_image("v1", &test_image(b"pulled\n"));
    registry.push(layout.path(), "v1", "app:v1", PushFormat::Oci, false);
    let daemon = Daemon::start(&[registry.address()]);
    let reference = format!("{}/app:v1", registry.address());

    let pulled = daemon.json(&["image", "pull", &reference]);
    assert_eq!(pulled["name"], reference.as_str());
    assert_eq!(pulled["manifest_digest"], written.manifest.digest.as_str());
    assert_eq!(pulled["layers"], 2);

    let table = daemon.ok(&["image", "ls"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.lines().nth(1).unwrap().starts_with(&reference),
        "{table}"
    );
    assert_eq!(names(&daemon.json(&["image", "ls"])), [reference.as_str()]);

    let inspected = daemon.json(&["image", "inspect", &reference]);
    assert_eq!(
        inspected["image"]["manifest_digest"],
        written.manifest.digest.as_str()
    );
    assert_eq!(
        inspected["manifest"]["config"]["digest"],
        written.config.digest.as_str()
    );
    assert_eq!(inspected["config"]["config"]["Cmd"][0], "/data/hello");

    let bad = daemon.fails(&["image", "pull", "Bad Ref!"]);
    assert!(
        bad.starts_with("testudoctl: invalid image reference \"Bad Ref!\""),
        "{bad}"
    );
    let bad = daemon.fails(&["image", "rm", "app@sha256:not-hex"]);
    assert!(
        bad.starts_with("testudoctl: invalid image reference"),
        "{bad}"
    );
    assert_eq!(names(&daemon.json(&["image", "ls"])), [reference.as_str()]);

    assert_eq!(
        daemon.fails(&["-n", "ghost", "image", "ls"]),
        "testudoctl: namespace \"ghost\" not found"
    );
    assert_eq!(
        daemon.fails(&["-n", "ghost", "image", "pull", &reference]),
        "testudoctl: namespace \"ghost\" not found"
    );

    let missing = format!("{}/missing:v1", registry.address());
    let refused = daemon.fails(&["image", "pull", &missing]);
    assert!(refused.contains("not found"), "{refused}");
    let unreachable = daemon.fails(&["image", "pull", "127.0.0.1:1/app:v1"]);
    assert!(unreachable.contains("Connection refused"), "{unreachable}");
    assert_eq!(names(&daemon.json(&["image", "ls"])), [reference.as_str()]);

    assert_eq!(daemon.ok(&["image", "rm", &reference]), "");
    assert_eq!(daemon.ok(&["image", "ls"]).lines().count(), 1);
    let missing = daemon.fails(&["image", "inspect", &reference]);
    assert!(missing.contains("not found"), "{missing}");
    let pruned = daemon.json(&["image", "prune"]);
    assert!(pruned["blobs"].as_u64().unwrap() >= 4, "{pruned}");
}

#[test]
fn an_imported_layout_tar_exports_and_imports_back_and_a_bad_one_changes_nothing() {
    if !require_root() {
        return;
    }
    let daemon = Daemon::start(&[]);
    let mut layout = ImageLayout::new();
    let written = layout.add_image("v1", &test_image(b"imported\n"));
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("x.tar");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(layout.path())
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());

    let name = "example.com/imported:v1";
    let imported = daemon.json(&[
        "image",
        "import",
        archive.to_str().unwrap(),
        "--name",
        "example.com/imported",
    ]);
    assert_eq!(names(&imported), [name]);
    assert_eq!(
        imported[0]["manifest_digest"],
        written.manifest.digest.as_str()
    );
    assert!(daemon.spooled().is_empty());

    let exported = work.path().join("out.tar");
    daemon.ok(&["image", "export", name, exported.to_str().unwrap()]);
    assert!(daemon.spooled().is_empty());
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(&exported)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.contains("index.json"), "{listing}");
    let manifest_hex = written.manifest.digest.strip_prefix("sha256:").unwrap();
    assert!(listing.contains(manifest_hex), "{listing}");

    daemon.ok(&["image", "rm", name]);
    assert!(names(&daemon.json(&["image", "ls"])).is_empty());
    let again = daemon.json(&["image", "import", exported.to_str().unwrap()]);
    assert_eq!(names(&again), [name]);
    assert_eq!(
        again[0]["manifest_digest"],
        written.manifest.digest.as_str()
    );

    // Exporting onto an existing file is refused by testudoctl and leaves the file alone.
    let refused = daemon.fails(&["image", "export", name, exported.to_str().unwrap()]);
    assert!(
        refused.starts_with("testudoctl: cannot create"),
        "{refused}"
    );
    // A missing image: the partial output file is removed.
    let missing_out = work.path().join("missing.tar");
    let missing = daemon.fails(&[
        "image",
        "export",
        "example.com/nothing:v1",
        missing_out.to_str().unwrap(),
    ]);
    assert!(missing.contains("not found"), "{missing}");
    assert!(!missing_out.exists());

    let garbage = work.path().join("garbage.tar");
    std::fs::write(&garbage, b"this is not a tar archive").unwrap();
    let refused = daemon.fails(&["image", "import", garbage.to_str().unwrap()]);
    assert_eq!(
        refused,
        "testudoctl: cannot read the tar archive (uploaded)"
    );
    assert_eq!(names(&daemon.json(&["image", "ls"])), [name]);
    assert!(daemon.spooled().is_empty());
}

#[tokio::test]
async fn refused_requests_get_the_status_code_of_their_kind() {
    use testudo_api::images::v1::images_service_client::ImagesServiceClient;
    use testudo_api::images::v1::{import_request, ImportRequest, InspectRequest, ListRequest};
    use testudo_api::namespaces::v1::namespaces_service_client::NamespacesServiceClient;
    use testudo_api::namespaces::v1::{CreateRequest, DeleteRequest};
    use tonic::Code;

    let daemon = Daemon::start(&[]);
    let channel = channel(daemon.socket()).await;
    let mut namespaces = NamespacesServiceClient::new(channel.clone());
    let mut images = ImagesServiceClient::new(channel);
    let create = |name: &str| CreateRequest {
        name: name.to_owned(),
        tags: Default::default(),
    };

    let duplicate = namespaces.create(create("default")).await.unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let invalid = namespaces.create(create("UPPER")).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let missing = namespaces
        .delete(DeleteRequest {
            name: "ghost".to_owned(),
            force: true,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let unknown_namespace = images
        .list(ListRequest {
            namespace: "ghost".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown_namespace.code(), Code::NotFound);
    let inspect = |reference: &str| InspectRequest {
        namespace: "default".to_owned(),
        reference: reference.to_owned(),
    };
    let bad_reference = images.inspect(inspect("Bad Ref!")).await.unwrap_err();
    assert_eq!(bad_reference.code(), Code::InvalidArgument);
    let no_image = images
        .inspect(inspect("example.com/none:v1"))
        .await
        .unwrap_err();
    assert_eq!(no_image.code(), Code::NotFound);

    let chunk_first = ImportRequest {
        message: Some(import_request::Message::Chunk(b"tar".to_vec())),
    };
    let no_start = images
        .import(tokio_stream::iter([chunk_first]))
        .await
        .unwrap_err();
    assert_eq!(no_start.code(), Code::InvalidArgument);
    assert_eq!(
        no_start.message(),
        "the first message of an import must be `start`"
    );
    assert!(daemon.spooled().is_empty());
}
