//! Pulls from a real registry (`docker-registry` on 127.0.0.1) of images the tests build: every
//! manifest kind, compression and auth flow, and the failures a registry can cause, each leaving
//! the store without a visible image and without a corrupt blob.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testudo_image::digest::Digest;
use testudo_image::manifest::Platform;
use testudo_image::pull::{pull, PullError, PullOptions, ResolvedImage};
use testudo_image::reference::ImageRef;
use testudo_image::registry::{Credentials, RegistryClient, RegistryError, RegistryOptions};
use testudo_image::store::ContentStore;
use testudo_test_support::{
    error_chain, BusyboxRootfs, Compression, Fault, FaultyProxy, ImageLayout, Layer, PushFormat,
    Registry, TestImage, WrittenImage, OCI_MANIFEST,
};

fn options_for(registry: &str, credentials: Option<(&str, &str)>) -> RegistryOptions {
    let mut c = Credentials::none();
    if let Some((user, password)) = credentials {
        c.insert(registry, user, password);
    }
    RegistryOptions {
        insecure: vec![registry.to_owned()],
        credentials: c,
        timeout: Duration::from_secs(10),
        ..RegistryOptions::default()
    }
}

fn client(registry: &Registry) -> Arc<RegistryClient> {
    Arc::new(RegistryClient::new(options_for(&registry.address(), registry.credentials())).unwrap())
}

fn quiet() -> PullOptions {
    PullOptions {
        progress: false,
        ..PullOptions::default()
    }
}

/// busybox, then a layer that deletes a file, makes /data opaque and adds files, then a zstd one.
fn layered_image() -> TestImage {
    let rootfs = BusyboxRootfs::new();
    TestImage::new(vec![
        Layer::from_dir(rootfs.path()),
        Layer::new()
            .whiteout("etc/group")
            .dir("data", 0o755)
            .opaque("data")
            .file("data/new", b"second layer\n", 0o644),
        Layer::new()
            .compression(Compression::Zstd)
            .file("data/zstd", b"third layer\n", 0o600),
    ])
}

fn pushed(registry: &Registry, image: &TestImage, repo_tag: &str) -> WrittenImage {
    let mut layout = ImageLayout::new();
    let written = layout.add_image("v1", image);
    registry.push(layout.path(), "v1", repo_tag, PushFormat::Oci, false);
    written
}

fn reference(registry: &Registry, repo_tag: &str) -> ImageRef {
    ImageRef::parse(&format!("{}/{repo_tag}", registry.address())).unwrap()
}

/// Every file under the store's root, relative, for before/after comparisons.
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn assert_matches_written(resolved: &ResolvedImage, written: &WrittenImage) {
    let digests: Vec<String> = resolved
        .layers
        .iter()
        .map(|l| l.digest.to_string())
        .collect();
    let expected: Vec<String> = written.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(digests, expected);
    let diff_ids: Vec<String> = resolved
        .layers
        .iter()
        .map(|l| l.diff_id.to_string())
        .collect();
    assert_eq!(diff_ids, written.diff_ids);
    assert_eq!(
        resolved.manifest_digest.to_string(),
        written.manifest.digest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_layer_image_is_pulled_verified_and_recorded() {
    let registry = Registry::start();
    let written = pushed(&registry, &layered_image(), "test/layered:v1");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    let image = reference(&registry, "test/layered:v1");
    let resolved = pull(client(&registry), store.clone(), &image, &quiet())
        .await
        .unwrap();
    assert_matches_written(&resolved, &written);
    for layer in &written.layers {
        assert!(store.contains(&Digest::parse(&layer.digest).unwrap()));
    }
    let record = store.image(&image.to_string()).unwrap();
    assert_eq!(record.target.digest.to_string(), written.manifest.digest);
    // The chain ids key the unpacked layers: the first is the first diff id.
    assert_eq!(resolved.layers[0].chain_id, resolved.layers[0].diff_id);
    assert_ne!(resolved.layers[1].chain_id, resolved.layers[1].diff_id);

    // A second pull of the same image downloads nothing new and gives the same result.
    let before = files_under(dir.path());
    let again = pull(client(&registry), store.clone(), &image, &quiet())
        .await
        .unwrap();
    assert_eq!(again.layers, resolved.layers);
    assert_eq!(files_under(dir.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_gives_the_manifest_of_the_asked_platform() {
    let registry = Registry::start();
    let host = TestImage::new(vec![Layer::new().file("which", b"host\n", 0o644)]);
    let arm = TestImage::new(vec![Layer::new().file("which", b"arm64\n", 0o644)]).platform(
        "linux",
        "arm64",
        Some("v8"),
    );
    let s390x = TestImage::new(vec![Layer::new().file("which", b"s390x\n", 0o644)])
        .platform("linux", "s390x", None);
    let mut layout = ImageLayout::new();
    let (_, written) = layout.add_index("multi", &[host, arm, s390x]);
    registry.push(
        layout.path(),
        "multi",
        "test/multi:v1",
        PushFormat::Oci,
        true,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    let image = reference(&registry, "test/multi:v1");

    let mut options = quiet();
    options.platform = Platform::parse("linux/s390x").unwrap();
    let resolved = pull(client(&registry), store.clone(), &image, &options)
        .await
        .unwrap();
    assert_matches_written(&resolved, &written[2]);
    options.platform = Platform::parse("linux/arm64").unwrap();
    let resolved = pull(client(&registry), store.clone(), &image, &options)
        .await
        .unwrap();
    assert_matches_written(&resolved, &written[1]);

    options.platform = Platform::parse("linux/riscv64").unwrap();
    let err = pull(client(&registry), store.clone(), &image, &options)
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.contains("linux/riscv64"), "{chain}");
    assert!(chain.contains("linux/s390x"), "{chain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_schema_2_image_is_pulled() {
    let registry = Registry::start();
    let mut layout = ImageLayout::new();
    let written = layout.add_image(
        "v1",
        &TestImage::new(vec![Layer::new().file("docker", b"v2s2\n", 0o644)]),
    );
    registry.push(
        layout.path(),
        "v1",
        "test/docker:v1",
        PushFormat::DockerV2,
        false,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    let resolved = pull(
        client(&registry),
        store,
        &reference(&registry, "test/docker:v1"),
        &quiet(),
    )
    .await
    .unwrap();
    assert_eq!(resolved.layers.len(), 1);
    assert_eq!(resolved.layers[0].diff_id.to_string(), written.diff_ids[0]);
    let media_type = resolved.manifest.media_type().as_ref().unwrap().to_string();
    assert_eq!(
        media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );

    // A multi-platform index pushed as Docker schema 2 becomes a manifest list.
    let host = TestImage::new(vec![Layer::new().file("which", b"host\n", 0o644)]);
    let arm = TestImage::new(vec![Layer::new().file("which", b"arm64\n", 0o644)]).platform(
        "linux",
        "arm64",
        Some("v8"),
    );
    let mut layout = ImageLayout::new();
    let (_, written) = layout.add_index("multi", &[host, arm]);
    registry.push(
        layout.path(),
        "multi",
        "test/dockerlist:v1",
        PushFormat::DockerV2,
        true,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    let mut options = quiet();
    options.platform = Platform::parse("linux/arm64").unwrap();
    let resolved = pull(
        client(&registry),
        store,
        &reference(&registry, "test/dockerlist:v1"),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(
        resolved.record.target.media_type,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(
        resolved.layers[0].diff_id.to_string(),
        written[1].diff_ids[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_by_digest_is_verified_and_an_unknown_digest_is_not_found() {
    let registry = Registry::start();
    let written = pushed(
        &registry,
        &TestImage::new(vec![Layer::new().file("f", b"x", 0o644)]),
        "test/bydigest:v1",
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    let by_digest = ImageRef::parse(&format!(
        "{}/test/bydigest@{}",
        registry.address(),
        written.manifest.digest
    ))
    .unwrap();
    let resolved = pull(client(&registry), store.clone(), &by_digest, &quiet())
        .await
        .unwrap();
    assert_eq!(
        resolved.manifest_digest.to_string(),
        written.manifest.digest
    );

    let unknown = ImageRef::parse(&format!(
        "{}/test/bydigest@{}",
        registry.address(),
        Digest::of(b"no such manifest")
    ))
    .unwrap();
    let err = pull(client(&registry), store.clone(), &unknown, &quiet())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PullError::Registry { source, .. } if matches!(**source, RegistryError::NotFound { .. })),
        "{}",
        error_chain(&err)
    );
    assert!(store.image(&unknown.to_string()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_needs_the_right_credentials() {
    let registry = Registry::start_with_basic_auth("alice", "secret");
    pushed(
        &registry,
        &TestImage::new(vec![Layer::new().file("f", b"basic", 0o644)]),
        "test/basic:v1",
    );
    let image = reference(&registry, "test/basic:v1");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    pull(client(&registry), store.clone(), &image, &quiet())
        .await
        .unwrap();

    for credentials in [None, Some(("alice", "wrong"))] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ContentStore::open(dir.path()).unwrap());
        let client =
            Arc::new(RegistryClient::new(options_for(&registry.address(), credentials)).unwrap());
        let err = pull(client, store.clone(), &image, &quiet())
            .await
            .unwrap_err();
        let chain = error_chain(&err);
        assert!(chain.contains("unauthorized"), "{chain}");
        assert!(store.images().unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_fetches_a_bearer_token_with_the_credentials() {
    let registry = Registry::start_with_token_auth("bob", "hunter2");
    let written = pushed(&registry, &layered_image(), "test/token:v1");
    let issued_by_push = registry.tokens_issued();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    let resolved = pull(
        client(&registry),
        store,
        &reference(&registry, "test/token:v1"),
        &quiet(),
    )
    .await
    .unwrap();
    assert_matches_written(&resolved, &written);
    assert!(registry.tokens_issued() > issued_by_push);

    let anonymous = Arc::new(RegistryClient::new(options_for(&registry.address(), None)).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    let err = pull(
        anonymous,
        store,
        &reference(&registry, "test/token:v1"),
        &quiet(),
    )
    .await
    .unwrap_err();
    assert!(
        error_chain(&err).contains("unauthorized"),
        "{}",
        error_chain(&err)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_in_the_registry_fails_the_pull_and_stores_nothing_of_it() {
    let registry = Registry::start();
    let written = pushed(&registry, &layered_image(), "test/corrupt:v1");
    let layer = &written.layers[1];
    let stored = registry.blob_data_path(&layer.digest);
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    let image = reference(&registry, "test/corrupt:v1");
    let err = pull(client(&registry), store.clone(), &image, &quiet())
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.contains("digest"), "{chain}");
    assert!(chain.contains(&layer.digest), "{chain}");
    assert!(store.images().unwrap().is_empty());
    assert!(!store.contains(&Digest::parse(&layer.digest).unwrap()));

    // Once the registry serves the right bytes, the same store completes the pull.
    bytes[last] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    let resolved = pull(client(&registry), store.clone(), &image, &quiet())
        .await
        .unwrap();
    assert_matches_written(&resolved, &written);
}

fn big_image() -> TestImage {
    // Incompressible-ish content so the blob is large on the wire.
    let mut state = 0x1234_5678_u32;
    let data: Vec<u8> = (0..3_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect();
    TestImage::new(vec![Layer::new()
        .compression(Compression::None)
        .file("big", &data, 0o644)])
}

fn proxied_client(proxy: &FaultyProxy, timeout: Duration) -> Arc<RegistryClient> {
    let mut options = options_for(&proxy.address(), None);
    options.timeout = timeout;
    Arc::new(RegistryClient::new(options).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_mid_blob_is_resumed() {
    let registry = Registry::start();
    let written = pushed(&registry, &big_image(), "test/big:v1");
    let proxy = FaultyProxy::start(
        registry.socket_address(),
        &written.layers[0].digest,
        Fault::CloseAfter(1_000_000),
        2,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    let image = ImageRef::parse(&format!("{}/test/big:v1", proxy.address())).unwrap();
    let resolved = pull(
        proxied_client(&proxy, Duration::from_secs(10)),
        store,
        &image,
        &quiet(),
    )
    .await
    .unwrap();
    assert_eq!(proxy.faults(), 2);
    assert_matches_written(&resolved, &written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_keeps_failing_or_hangs_fails_the_pull_and_a_retry_completes_it() {
    let registry = Registry::start();
    let written = pushed(&registry, &big_image(), "test/big:v1");
    // Each resumed attempt gets 0.5 MB further: not enough to finish 3 MB.
    let mut stores = Vec::new();
    for fault in [Fault::CloseAfter(500_000), Fault::HangAfter(500_000)] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ContentStore::open(dir.path()).unwrap());
        let proxy = FaultyProxy::start(
            registry.socket_address(),
            &written.layers[0].digest,
            fault,
            100,
        );
        let image = ImageRef::parse(&format!("{}/test/big:v1", proxy.address())).unwrap();
        let started = Instant::now();
        let err = pull(
            proxied_client(&proxy, Duration::from_secs(1)),
            store.clone(),
            &image,
            &quiet(),
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(60));
        let chain = error_chain(&err);
        assert!(chain.contains("test/big"), "{fault:?}: {chain}");
        assert!(store.images().unwrap().is_empty(), "{fault:?}");
        assert!(!store.contains(&Digest::parse(&written.layers[0].digest).unwrap()));
        stores.push((dir, store));
    }
    // The partial download stays and the direct pull finishes it.
    let (dir, store) = stores.pop().unwrap();
    let partial = std::fs::read_dir(dir.path().join("ingest"))
        .unwrap()
        .count();
    assert_eq!(partial, 1, "the interrupted download is kept for resuming");
    let resolved = pull(
        client(&registry),
        store.clone(),
        &reference(&registry, "test/big:v1"),
        &quiet(),
    )
    .await
    .unwrap();
    assert_matches_written(&resolved, &written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_layer_media_types_and_bad_manifests_are_refused_by_name() {
    let registry = Registry::start();
    let mut layout = ImageLayout::new();
    let written = layout.add_image(
        "good",
        &TestImage::new(vec![Layer::new().file("f", b"x", 0o644)]),
    );
    let config = serde_json::json!({"mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": written.config.digest, "size": written.config.size});
    let layer = &written.layers[0];
    let odd = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
        "layers": [{"mediaType": "application/x-testudo-unknown", "digest": layer.digest, "size": layer.size}]});
    layout.add_raw_manifest("odd", OCI_MANIFEST, &odd);
    registry.push(layout.path(), "odd", "test/odd:v1", PushFormat::Oci, false);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    let err = pull(
        client(&registry),
        store.clone(),
        &reference(&registry, "test/odd:v1"),
        &quiet(),
    )
    .await
    .unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.contains("application/x-testudo-unknown"), "{chain}");
    assert!(store.images().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_needs_a_trusted_certificate() {
    let registry = Registry::start_with_tls();
    let written = pushed(
        &registry,
        &TestImage::new(vec![Layer::new().file("f", b"over tls", 0o644)]),
        "test/tls:v1",
    );
    let image = reference(&registry, "test/tls:v1");
    let untrusted = RegistryOptions {
        timeout: Duration::from_secs(10),
        ..RegistryOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(dir.path()).unwrap());
    let err = pull(
        Arc::new(RegistryClient::new(untrusted.clone()).unwrap()),
        store.clone(),
        &image,
        &quiet(),
    )
    .await
    .unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.contains("https://"), "{chain}");
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");
    assert!(store.images().unwrap().is_empty());

    let trusted = RegistryOptions {
        ca_certificates: vec![registry.ca_certificate().unwrap().to_owned()],
        ..untrusted
    };
    let resolved = pull(
        Arc::new(RegistryClient::new(trusted).unwrap()),
        store,
        &image,
        &quiet(),
    )
    .await
    .unwrap();
    assert_eq!(
        resolved.manifest_digest.to_string(),
        written.manifest.digest
    );
}

/// A server that answers every request with a 5 MiB "manifest", with or without a
/// Content-Length: the reference registry refuses to store such a manifest, so a misbehaving
/// registry is the only way to meet one.
fn oversized_manifest_server(with_length: bool) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = vec![b' '; 5 << 20];
            let length = if with_length {
                format!("Content-Length: {}\r\n", body.len())
            } else {
                String::new()
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\n{length}Connection: close\r\n\r\n"
            );
            let _ = stream.write_all(&body);
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_over_the_size_limit_is_refused() {
    for with_length in [true, false] {
        let address = oversized_manifest_server(with_length);
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ContentStore::open(dir.path()).unwrap());
        let before = files_under(dir.path());
        let client = Arc::new(RegistryClient::new(options_for(&address, None)).unwrap());
        let image = ImageRef::parse(&format!("{address}/test/huge:v1")).unwrap();
        let err = pull(client, store.clone(), &image, &quiet())
            .await
            .unwrap_err();
        let chain = error_chain(&err);
        assert!(chain.contains("larger than 4194304 bytes"), "{chain}");
        assert_eq!(files_under(dir.path()), before);
    }
}
