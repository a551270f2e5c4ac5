//! The registry harness works as the image tests rely on: skopeo pushes a built layout under each
//! kind of authentication and reads it back, and the faulty proxy breaks exactly the watched blob.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use testudo_test_support::{
    Compression, Fault, FaultyProxy, ImageLayout, Layer, PushFormat, Registry, TestImage,
};

fn layout() -> (ImageLayout, String) {
    let mut layout = ImageLayout::new();
    let image = TestImage::new(vec![
        Layer::new()
            .dir("etc", 0o755)
            .file("etc/motd", b"hello\n", 0o644),
        Layer::new()
            .compression(Compression::Zstd)
            .whiteout("etc/motd"),
    ]);
    let written = layout.add_image("v1", &image);
    (layout, written.manifest.digest)
}

fn inspect_digest(registry: &Registry, repository_tag: &str) -> String {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if let Some((user, password)) = registry.credentials() {
        cmd.arg(format!("--creds={user}:{password}"));
    }
    let out = cmd
        .arg(format!("docker://{}/{repository_tag}", registry.address()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        registry.log()
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["Digest"].as_str().unwrap().to_owned()
}

#[test]
fn skopeo_pushes_and_reads_back_under_every_kind_of_auth() {
    let (layout, manifest) = layout();
    for registry in [
        Registry::start(),
        Registry::start_with_basic_auth("alice", "secret"),
        Registry::start_with_token_auth("bob", "hunter2"),
    ] {
        registry.push(layout.path(), "v1", "test/img:v1", PushFormat::Oci, false);
        assert_eq!(inspect_digest(&registry, "test/img:v1"), manifest);
    }
}

#[test]
fn a_token_registry_refuses_anonymous_clients_and_issues_tokens_to_known_ones() {
    let (layout, _) = layout();
    let registry = Registry::start_with_token_auth("bob", "hunter2");
    registry.push(layout.path(), "v1", "test/img:v1", PushFormat::Oci, false);
    assert!(registry.tokens_issued() > 0);
    let mut stream = TcpStream::connect(registry.socket_address()).unwrap();
    write!(
        stream,
        "GET /v2/test/img/manifests/v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(response.contains("Bearer realm="), "{response}");
}

#[test]
fn the_faulty_proxy_cuts_the_watched_blob_once_and_then_passes_it() {
    let mut layout = ImageLayout::new();
    let big = vec![7u8; 300_000];
    let image = TestImage::new(vec![Layer::new()
        .compression(Compression::None)
        .file("big", &big, 0o644)]);
    let written = layout.add_image("v1", &image);
    let registry = Registry::start();
    registry.push(layout.path(), "v1", "test/big:v1", PushFormat::Oci, false);
    let layer = &written.layers[0];
    let proxy = FaultyProxy::start(
        registry.socket_address(),
        &layer.digest,
        Fault::CloseAfter(1000),
        1,
    );
    let fetch = || {
        let mut stream = TcpStream::connect(proxy.address()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET /v2/test/big/blobs/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            layer.digest
        )
        .unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        response.len()
    };
    assert_eq!(fetch(), 1000);
    assert_eq!(proxy.faults(), 1);
    assert!(fetch() > 300_000);
}
