//! The image service end to end: images the tests build are pushed to a real registry, pulled,
//! unpacked into snapshots, mounted as a container's root filesystem and run with the testudo
//! runtime, which shows from inside what the layers made of the tree.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::Spec;
use testudo_engine::error::{ErrorKind, Kind};
use testudo_engine::images::{ImageService, ImageServiceConfig, SnapshotterChoice};
use testudo_engine::state::{Name, StateDb, StateError};
use testudo_image::manifest::Platform;
use testudo_image::registry::{Credentials, RegistryOptions};
use testudo_image::runtime_config::{apply_image_config, ProcessOverrides};
use testudo_snapshot::{mount_all, unmount, SnapshotKind, WhiteoutFormat};
use testudo_test_support::{
    error_chain, require_root, unique_id, BusyboxRootfs, Compression, ImageLayout, Layer,
    PushFormat, Registry, Runtime, TestImage,
};

/// The namespace the tests' images are in.
fn ns() -> Name {
    Name::parse("namespace", "default").unwrap()
}

/// The state database under `root`, with the namespace [`ns`].
fn state(root: &Path) -> Arc<StateDb> {
    std::fs::create_dir_all(root).unwrap();
    let state = Arc::new(StateDb::open(&root.join("state.redb")).unwrap());
    match state.create_namespace(&ns(), BTreeMap::new()) {
        Ok(_) | Err(StateError::NamespaceExists(_)) => {}
        Err(e) => panic!("{e}"),
    }
    state
}

fn service(root: &Path, registry: &Registry, snapshotter: SnapshotterChoice) -> ImageService {
    service_with(root, registry, snapshotter, state(root))
}

fn service_with(
    root: &Path,
    registry: &Registry,
    snapshotter: SnapshotterChoice,
    state: Arc<StateDb>,
) -> ImageService {
    ImageService::open(
        ImageServiceConfig {
            root: root.to_owned(),
            registry: RegistryOptions {
                insecure: vec![registry.address()],
                credentials: Credentials::none(),
                timeout: Duration::from_secs(10),
                ..RegistryOptions::default()
            },
            snapshotter,
            platform: Platform::host(),
        },
        state,
    )
    .unwrap()
}

/// busybox; a layer adding /data/lower; one deleting /etc/group's sibling file, making /data
/// opaque with a new file; a zstd layer adding one more; runs as `tester` in /data.
fn layered_image(base: &Layer) -> TestImage {
    TestImage::new(vec![
        base.clone(),
        Layer::new()
            .dir("data", 0o755)
            .file("data/lower", b"lower\n", 0o644)
            .file("etc/motd", b"motd\n", 0o644),
        Layer::new()
            .whiteout("etc/motd")
            .dir("data", 0o755)
            .opaque("data")
            .file("data/new", b"second layer\n", 0o644),
        Layer::new()
            .compression(Compression::Zstd)
            .file("data/zstd", b"third layer\n", 0o600),
    ])
    .config(serde_json::json!({
        "Cmd": ["/bin/sh", "-c", "ls /data; cat /data/new; test -e /etc/motd && echo motd || echo no-motd; id -un; pwd; echo $GREETING"],
        "Env": ["GREETING=from-the-image"],
        "User": "tester",
        "WorkingDir": "/data",
    }))
}

fn push(registry: &Registry, image: &TestImage, repo_tag: &str) {
    let mut layout = ImageLayout::new();
    layout.add_image("v1", image);
    registry.push(layout.path(), "v1", repo_tag, PushFormat::Oci, false);
}

/// Mounts the container's root filesystem, runs the image's command with testudo and returns
/// its output; everything is unmounted and removed again.
async fn run_image(images: &ImageService, reference: &str) -> String {
    let id = unique_id("image");
    let mounts = images.prepare_rootfs(&ns(), reference, &id).await.unwrap();
    let bundle = tempfile::tempdir().unwrap();
    let rootfs = bundle.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    mount_all(&mounts, &rootfs).unwrap();

    let image = images.resolve(&ns(), reference).unwrap();
    let mut spec = Spec::default();
    apply_image_config(
        &mut spec,
        &image.config,
        &rootfs,
        &ProcessOverrides::default(),
    )
    .unwrap();
    let mut value = serde_json::to_value(&spec).unwrap();
    value["root"] = serde_json::json!({"path": "rootfs", "readonly": false});
    value["process"]["terminal"] = false.into();
    value["linux"]["cgroupsPath"] = format!("/testudo-test/{id}").into();
    std::fs::write(bundle.path().join("config.json"), value.to_string()).unwrap();

    let runtime = Runtime::new(&testudo_test_support::testudo_binary());
    let output = runtime
        .cmd(["run", "--bundle", bundle.path().to_str().unwrap(), &id])
        .output()
        .unwrap();
    unmount(&rootfs).unwrap();
    images.remove_rootfs(&id).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

const EXPECTED: &str = "new\nzstd\nsecond layer\nno-motd\ntester\n/data\nfrom-the-image\n";

/// Pulls the layered image with `snapshotter`, runs it, and checks what it printed.
async fn pull_and_run(snapshotter: SnapshotterChoice) -> (tempfile::TempDir, ImageService) {
    let registry = Registry::start();
    let base = Layer::from_dir(BusyboxRootfs::new().path());
    push(&registry, &layered_image(&base), "test/layered:v1");
    let root = tempfile::tempdir().unwrap();
    let images = service(root.path(), &registry, snapshotter);
    let reference = format!("{}/test/layered:v1", registry.address());
    let info = images.pull(&ns(), &reference, false).await.unwrap();
    assert_eq!(info.layers, 4);
    assert_eq!(run_image(&images, &reference).await, EXPECTED);
    (root, images)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_image_runs_with_its_layers_whiteouts_and_config_on_overlay() {
    if !require_root() {
        return;
    }
    let (_root, images) = pull_and_run(SnapshotterChoice::Overlay).await;
    // The container's snapshot is gone; the four layers stay committed.
    let snapshots = images.snapshotter().list().unwrap();
    assert_eq!(snapshots.len(), 4, "{snapshots:?}");
    assert!(snapshots.iter().all(|s| s.kind == SnapshotKind::Committed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_snapshotter_gives_the_same_tree_without_overlayfs() {
    if !require_root() {
        return;
    }
    let (_root, images) = pull_and_run(SnapshotterChoice::Copy).await;
    assert_eq!(
        images.snapshotter().whiteout_format(),
        WhiteoutFormat::Remove
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_shared_by_two_images_is_unpacked_once_and_prune_keeps_what_is_used() {
    if !require_root() {
        return;
    }
    let registry = Registry::start();
    let base = Layer::from_dir(BusyboxRootfs::new().path());
    push(&registry, &layered_image(&base), "test/first:v1");
    let other = TestImage::new(vec![base.clone(), Layer::new().file("other", b"x", 0o644)]);
    push(&registry, &other, "test/second:v1");
    let root = tempfile::tempdir().unwrap();
    let images = service(root.path(), &registry, SnapshotterChoice::Overlay);
    let first = format!("{}/test/first:v1", registry.address());
    let second = format!("{}/test/second:v1", registry.address());
    let a = pull_resolved(&images, &first).await;
    let b = pull_resolved(&images, &second).await;
    assert_eq!(a.layers[0].chain_id, b.layers[0].chain_id);
    // 4 + 2 layers, the base shared: 5 snapshots.
    assert_eq!(images.snapshotter().list().unwrap().len(), 5);

    // A container on the second image keeps its layers through the image's removal and a prune.
    let id = unique_id("keep");
    images.prepare_rootfs(&ns(), &second, &id).await.unwrap();
    images.remove(&ns(), &second).unwrap();
    let pruned = images.prune().unwrap();
    // Its manifest, config and own layer blob go (the unpacked layers serve the container); the
    // snapshots stay under the container's.
    assert_eq!(pruned.blobs, 3, "{pruned:?}");
    assert_eq!(pruned.snapshots, 0);
    assert!(images.inspect(&ns(), &second).is_err());
    images.remove_rootfs(&id).unwrap();
    let pruned = images.prune().unwrap();
    assert_eq!(pruned.snapshots, 1, "the second image's own layer");
    assert_eq!(pruned.blobs, 0, "{pruned:?}");
    assert_eq!(images.snapshotter().list().unwrap().len(), 4);
    assert_eq!(run_image(&images, &first).await, EXPECTED);
}

/// Pulls and resolves, for tests that compare layers.
async fn pull_resolved(
    images: &ImageService,
    reference: &str,
) -> testudo_image::pull::ResolvedImage {
    images.pull(&ns(), reference, false).await.unwrap();
    images.resolve(&ns(), reference).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_layout_is_unpacked_runs_and_exports_again() {
    if !require_root() {
        return;
    }
    let registry = Registry::start();
    let base = Layer::from_dir(BusyboxRootfs::new().path());
    let mut layout = ImageLayout::new();
    let written = layout.add_image("v1", &layered_image(&base));
    let root = tempfile::tempdir().unwrap();
    let images = service(root.path(), &registry, SnapshotterChoice::Overlay);
    let imported = images
        .import(&ns(), layout.path(), Some("example.test/layered"))
        .await
        .unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].name, "example.test/layered:v1");
    assert_eq!(imported[0].manifest_digest, written.manifest.digest);
    assert_eq!(
        run_image(&images, "example.test/layered:v1").await,
        EXPECTED
    );

    let out = tempfile::tempdir().unwrap();
    let exported = out.path().join("layered.tar");
    images
        .export(&ns(), &["example.test/layered:v1"], &exported, true)
        .await
        .unwrap();
    let again = tempfile::tempdir().unwrap();
    let second = service(again.path(), &registry, SnapshotterChoice::Overlay);
    let imported = second.import(&ns(), &exported, None).await.unwrap();
    assert_eq!(imported[0].name, "example.test/layered:v1");
    assert_eq!(imported[0].manifest_digest, written.manifest.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_that_does_not_match_its_diff_id_or_escapes_is_refused_and_leaves_no_snapshot() {
    if !require_root() {
        return;
    }
    let registry = Registry::start();
    let outside = tempfile::tempdir().unwrap();
    let escape = TestImage::new(vec![Layer::new()
        .symlink("evil", outside.path().to_str().unwrap())
        .file("evil/planted", b"owned\n", 0o644)]);
    push(&registry, &escape, "test/escape:v1");
    let root = tempfile::tempdir().unwrap();
    let images = service(root.path(), &registry, SnapshotterChoice::Overlay);
    let err = images
        .pull(
            &ns(),
            &format!("{}/test/escape:v1", registry.address()),
            false,
        )
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.contains("evil/planted"), "{chain}");
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(images.snapshotter().list().unwrap().is_empty());

    // A layout whose config lists another diff id than the layer's content.
    let mut layout = ImageLayout::new();
    let mut image = TestImage::new(vec![Layer::new().file("f", b"x", 0o644)]);
    image.config = serde_json::json!({"Cmd": ["/bin/true"]});
    let written = layout.add_image("v1", &image);
    let config_path = layout.blob_path(&written.config.digest);
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["rootfs"]["diff_ids"][0] = format!("sha256:{}", "0".repeat(64)).into();
    let config_blob = layout.write_blob(
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    );
    let layer = &written.layers[0];
    let manifest = serde_json::json!({"schemaVersion": 2,
        "mediaType": testudo_test_support::OCI_MANIFEST,
        "config": {"mediaType": config_blob.media_type, "digest": config_blob.digest, "size": config_blob.size},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}]});
    layout.add_raw_manifest("lying", testudo_test_support::OCI_MANIFEST, &manifest);
    registry.push(
        layout.path(),
        "lying",
        "test/lying:v1",
        PushFormat::Oci,
        false,
    );
    let err = images
        .pull(
            &ns(),
            &format!("{}/test/lying:v1", registry.address()),
            false,
        )
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.contains("the config says sha256:000"), "{chain}");
    assert!(images.snapshotter().list().unwrap().is_empty());
    // An image that cannot be unpacked is not recorded.
    assert!(images.list(&ns()).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_the_kind_a_client_acts_on() {
    let registry = Registry::start();
    push(
        &registry,
        &TestImage::new(vec![Layer::new().file("f", b"x", 0o644)]),
        "test/kinds:v1",
    );
    let root = tempfile::tempdir().unwrap();
    let images = service(root.path(), &registry, SnapshotterChoice::Copy);
    let address = registry.address();
    let cases = [
        (
            format!("{address}/Test/UPPER:v1"),
            ErrorKind::InvalidArgument,
        ),
        (format!("{address}/test/missing:v1"), ErrorKind::NotFound),
        // Nothing listens on port 9 of loopback.
        (
            "127.0.0.1:9/test/kinds:v1".to_owned(),
            ErrorKind::Unavailable,
        ),
    ];
    for (reference, kind) in cases {
        let err = images.pull(&ns(), &reference, false).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{reference}: {}", error_chain(&err));
    }
    assert_eq!(
        images
            .inspect(&ns(), "docker.io/library/never-pulled")
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// The blob files of the content store under `root`.
fn blob_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("content/blobs/sha256"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_references_are_per_namespace_and_their_content_is_shared() {
    if !require_root() {
        return;
    }
    let registry = Registry::start();
    let base = Layer::from_dir(BusyboxRootfs::new().path());
    push(&registry, &layered_image(&base), "test/shared:v1");
    let root = tempfile::tempdir().unwrap();
    let state = state(root.path());
    let other = Name::parse("namespace", "other").unwrap();
    state.create_namespace(&other, BTreeMap::new()).unwrap();
    let images = service_with(
        root.path(),
        &registry,
        SnapshotterChoice::Overlay,
        state.clone(),
    );
    let reference = format!("{}/test/shared:v1", registry.address());

    images.pull(&ns(), &reference, false).await.unwrap();
    let (blobs, snapshots) = (
        blob_count(root.path()),
        images.snapshotter().list().unwrap(),
    );
    // The other tenant sees nothing of it.
    assert!(images.list(&other).unwrap().is_empty());
    let err = images.inspect(&other, &reference).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        format!("image \"{reference}\" not found in namespace \"other\"")
    );
    assert_eq!(
        images.remove(&other, &reference).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(names_of(&images.list(&ns()).unwrap()), [reference.as_str()]);

    // The same image in the other namespace: nothing new is stored or unpacked.
    images.pull(&other, &reference, false).await.unwrap();
    assert_eq!(blob_count(root.path()), blobs);
    assert_eq!(images.snapshotter().list().unwrap(), snapshots);

    // Deleted in one namespace, it stays whole in the other, through a prune.
    images.remove(&ns(), &reference).unwrap();
    assert!(images.list(&ns()).unwrap().is_empty());
    let pruned = images.prune().unwrap();
    assert_eq!((pruned.blobs, pruned.snapshots), (0, 0), "{pruned:?}");
    assert_eq!(
        names_of(&images.list(&other).unwrap()),
        [reference.as_str()]
    );
    let id = unique_id("other");
    images
        .prepare_rootfs(&other, &reference, &id)
        .await
        .unwrap();
    images.remove_rootfs(&id).unwrap();

    // Gone from every namespace, its content goes.
    images.remove(&other, &reference).unwrap();
    let pruned = images.prune().unwrap();
    assert_eq!(pruned.blobs, 6, "manifest, config and 4 layers: {pruned:?}");
    assert_eq!(pruned.snapshots, 4);
    assert_eq!(blob_count(root.path()), 0);

    // An unknown namespace is refused before anything is fetched.
    let ghost = Name::parse("namespace", "ghost").unwrap();
    let err = images.pull(&ghost, &reference, false).await.unwrap_err();
    assert_eq!(err.to_string(), "namespace \"ghost\" not found");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(blob_count(root.path()), 0);
}

fn names_of(infos: &[testudo_engine::images::ImageInfo]) -> Vec<&str> {
    infos.iter().map(|i| i.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_records_of_an_older_store_move_into_the_default_namespace() {
    let root = tempfile::tempdir().unwrap();
    let mut layout = ImageLayout::new();
    layout.add_image(
        "v1",
        &TestImage::new(vec![Layer::new().file("f", b"x", 0o644)]),
    );
    // What an older daemon left: a record in the content store's own file, no namespace.
    let store = testudo_image::store::ContentStore::open(&root.path().join("content")).unwrap();
    testudo_image::layout::import_layout(&store, layout.path(), Some("example.test/old")).unwrap();
    assert_eq!(store.images().unwrap().len(), 1);
    drop(store);
    let state = Arc::new(StateDb::open(&root.path().join("state.redb")).unwrap());
    assert!(state.namespaces().unwrap().is_empty());

    let open = |state: Arc<StateDb>| {
        ImageService::open(
            ImageServiceConfig {
                root: root.path().to_owned(),
                registry: RegistryOptions::default(),
                snapshotter: SnapshotterChoice::Copy,
                platform: Platform::host(),
            },
            state,
        )
        .unwrap()
    };
    let images = open(state.clone());
    assert_eq!(
        names_of(&images.list(&ns()).unwrap()),
        ["example.test/old:v1"]
    );
    assert!(images.store().images().unwrap().is_empty());
    drop(images);
    // Opening again changes nothing, and prune keeps the adopted image's content.
    let images = open(state);
    assert_eq!(
        names_of(&images.list(&ns()).unwrap()),
        ["example.test/old:v1"]
    );
    assert_eq!(images.prune().unwrap().blobs, 0);
    images.inspect(&ns(), "example.test/old:v1").unwrap();
}
