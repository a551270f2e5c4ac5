//! OCI image layout import and export: names, nested indexes, round trips, skopeo's view of an
//! exported layout, and bad layouts that must leave the store unchanged.

#![allow(clippy::unwrap_used)]

mod store_fixtures;

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::json;
use store_fixtures::{
    image, index, layout_blob, tar_layout, tree, write_layout, TestImage, REF_NAME,
};
use testudo_image::layout::{
    export_layout, export_layout_records, import_layout, import_layout_content, LayoutError,
    ANNOTATION_CONTAINERD_NAME,
};
use testudo_image::store::{ContentStore, ImageTarget};
use testudo_test_support::error_chain;

fn open(dir: &Path) -> ContentStore {
    ContentStore::open(&dir.join("store")).unwrap()
}

fn names_and_targets(store: &ContentStore) -> Vec<(String, ImageTarget)> {
    store
        .images()
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.target))
        .collect()
}

fn assert_stored(store: &ContentStore, image: &TestImage) {
    for digest in image.digests() {
        assert!(store.contains(&digest), "{digest} is not in the store");
    }
}

#[test]
fn a_layout_directory_is_imported_with_its_names_and_every_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let busybox = image("amd64", &["bin", "etc"]);
    let app = image("amd64", &["app"]);
    let layout = dir.path().join("layout");
    write_layout(
        &layout,
        &[
            (
                &busybox,
                json!({ANNOTATION_CONTAINERD_NAME: "docker.io/library/busybox:1.36", REF_NAME: "1.36"}),
            ),
            (&app, json!({REF_NAME: "latest"})),
        ],
    );
    let records = import_layout(&store, &layout, Some("example.com/app")).unwrap();
    let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["docker.io/library/busybox:1.36", "example.com/app:latest"]
    );
    assert_eq!(
        names_and_targets(&store),
        vec![
            (
                "docker.io/library/busybox:1.36".to_owned(),
                busybox.target()
            ),
            ("example.com/app:latest".to_owned(), app.target()),
        ]
    );
    assert_stored(&store, &busybox);
    assert_stored(&store, &app);
    assert!(fs::read_dir(store.root().join("ingest"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn a_tar_layout_with_a_nested_index_is_imported_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let amd64 = image("amd64", &["base", "amd64"]);
    let arm64 = image("arm64", &["base", "arm64"]);
    let platforms = index(&[&amd64, &arm64]);
    let outer = index(&[&platforms]);
    let layout = dir.path().join("layout");
    write_layout(
        &layout,
        &[(&outer, json!({REF_NAME: "example.com/multi:2"}))],
    );
    // An unreferenced blob in the tar is not imported.
    let stray = image("amd64", &["stray"]);
    fs::write(
        layout_blob(&layout, stray.root().digest()),
        &stray.root().bytes,
    )
    .unwrap();
    let tar = dir.path().join("layout.tar");
    tar_layout(&layout, &tar);

    let records = import_layout(&store, &tar, None).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].name, "example.com/multi:2");
    assert_eq!(records[0].target, outer.target());
    assert_stored(&store, &outer);
    assert!(!store.contains(stray.root().digest()));
    assert!(fs::read_dir(store.root().join("ingest"))
        .unwrap()
        .next()
        .is_none());
    // Everything imported is reachable: prune keeps it all.
    assert_eq!(store.prune().unwrap().blobs_removed, 0);
}

#[test]
fn export_then_import_gives_the_same_images_as_a_directory_and_as_a_tar() {
    let dir = tempfile::tempdir().unwrap();
    let source = open(&dir.path().join("a"));
    let amd64 = image("amd64", &["one", "two"]);
    let multi = index(&[&amd64, &image("arm64", &["three"])]);
    let single = image("amd64", &["four"]);
    let layout = dir.path().join("in");
    write_layout(
        &layout,
        &[
            (
                &multi,
                json!({ANNOTATION_CONTAINERD_NAME: "example.com:5000/multi:1"}),
            ),
            (
                &single,
                json!({ANNOTATION_CONTAINERD_NAME: "example.com/single@sha256:".to_owned() + single.root().digest().hex()}),
            ),
        ],
    );
    import_layout(&source, &layout, None).unwrap();
    let names: Vec<String> = source
        .images()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();

    for as_tar in [false, true] {
        let exported = dir.path().join(format!("out-{as_tar}"));
        export_layout(&source, &names, &exported, as_tar).unwrap();
        assert_eq!(exported.is_file(), as_tar);
        let copy = open(&dir.path().join(format!("b-{as_tar}")));
        import_layout(&copy, &exported, None).unwrap();
        assert_eq!(names_and_targets(&copy), names_and_targets(&source));
        assert_stored(&copy, &multi);
        assert_stored(&copy, &single);
    }
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn skopeo_reads_an_exported_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let busybox = image("amd64", &["bin", "etc"]);
    busybox.write_to(&store);
    store
        .put_image(&testudo_image::store::ImageRecord::new(
            "example.com/busybox:latest",
            busybox.target(),
        ))
        .unwrap();
    let exported = dir.path().join("exported");
    export_layout(&store, &["example.com/busybox:latest"], &exported, false).unwrap();

    let inspect = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}", exported.display()))
        .output()
        .expect("skopeo is installed (CI installs it)");
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], busybox.root().digest().to_string());
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);

    let copied = dir.path().join("copied");
    let copy = Command::new("skopeo")
        .args(["--insecure-policy", "copy"])
        .arg(format!("oci:{}:latest", exported.display()))
        .arg(format!("dir:{}", copied.display()))
        .output()
        .unwrap();
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    for digest in busybox.digests() {
        if digest != *busybox.root().digest() {
            assert!(
                copied.join(digest.hex()).is_file(),
                "{digest} not copied by skopeo"
            );
        }
    }
}

#[test]
fn content_imported_without_records_exports_from_the_callers_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let app = image("amd64", &["app"]);
    let layout = dir.path().join("layout");
    write_layout(&layout, &[(&app, json!({REF_NAME: "v1"}))]);
    let records = import_layout_content(&store, &layout, Some("example.com/app")).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].name, "example.com/app:v1");
    assert_stored(&store, &app);
    // The store itself names nothing: the caller keeps the records.
    assert!(store.images().unwrap().is_empty());

    let exported = dir.path().join("out.tar");
    export_layout_records(&store, &records, &exported, true).unwrap();
    let copy = ContentStore::open(&dir.path().join("copy")).unwrap();
    let again = import_layout(&copy, &exported, None).unwrap();
    assert_eq!(again[0].name, "example.com/app:v1");
    assert_eq!(again[0].target, records[0].target);
    assert_stored(&copy, &app);
}

#[test]
fn exporting_an_unknown_image_or_onto_an_existing_path_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let dest = dir.path().join("out");
    let err = export_layout(&store, &["nope"], &dest, false).unwrap_err();
    assert_eq!(err.to_string(), "image \"nope\" is not in the store");
    assert!(!dest.exists());

    let partial = image("amd64", &["x"]);
    store
        .write_blob(partial.root().digest(), &partial.root().bytes)
        .unwrap();
    store
        .put_image(&testudo_image::store::ImageRecord::new(
            "partial",
            partial.target(),
        ))
        .unwrap();
    let err = export_layout(&store, &["partial"], &dest, true).unwrap_err();
    assert!(err.to_string().contains("is not in the store"), "{err}");
    let entries: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["store"], "nothing but the store is left");

    fs::create_dir(&dest).unwrap();
    let err = export_layout(&store, &["partial"], &dest, false).unwrap_err();
    assert!(
        matches!(err, LayoutError::DestinationExists { .. }),
        "{err}"
    );
}

/// Imports `source` into a store holding one image already and checks that it fails with an
/// error containing `expected` and that the store did not change at all.
fn assert_refused_leaving_the_store_unchanged(
    source: &Path,
    default_name: Option<&str>,
    expected: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let existing = image("amd64", &["existing"]);
    existing.write_to(&store);
    store
        .put_image(&testudo_image::store::ImageRecord::new(
            "existing",
            existing.target(),
        ))
        .unwrap();
    let before = tree(store.root());
    let err = import_layout(&store, source, default_name).unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.contains(expected), "{chain}");
    assert_eq!(tree(store.root()), before, "the store changed: {chain}");
}

/// A valid two-layer layout (as a directory) and its image.
fn good_layout(dir: &Path) -> (std::path::PathBuf, TestImage) {
    let img = image("amd64", &["first", "second"]);
    let layout = dir.join("layout");
    write_layout(&layout, &[(&img, json!({REF_NAME: "example.com/bad:1"}))]);
    (layout, img)
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_from_a_directory_and_a_tar() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = good_layout(dir.path());
    let second = store_fixtures::layer("second");
    let mut corrupt = second.bytes.clone();
    corrupt[600] ^= 0xff;
    fs::write(layout_blob(&layout, second.digest()), &corrupt).unwrap();
    let message = format!("blob digest mismatch: expected {}", second.digest());
    assert_refused_leaving_the_store_unchanged(&layout, None, &message);
    let tar = dir.path().join("layout.tar");
    tar_layout(&layout, &tar);
    assert_refused_leaving_the_store_unchanged(&tar, None, &message);
}

#[test]
fn a_truncated_blob_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, img) = good_layout(dir.path());
    let config = img.blob(store_fixtures::OCI_CONFIG);
    fs::write(layout_blob(&layout, config.digest()), &config.bytes[..10]).unwrap();
    let message = format!(
        "blob {} has 10 bytes, expected {}",
        config.digest(),
        config.bytes.len()
    );
    assert_refused_leaving_the_store_unchanged(&layout, None, &message);
    let tar = dir.path().join("layout.tar");
    tar_layout(&layout, &tar);
    assert_refused_leaving_the_store_unchanged(&tar, None, "blob digest mismatch");
}

#[test]
fn a_directory_without_oci_layout_is_not_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = good_layout(dir.path());
    fs::remove_file(layout.join("oci-layout")).unwrap();
    assert_refused_leaving_the_store_unchanged(
        &layout,
        None,
        "is not an OCI image layout: it has no oci-layout file",
    );
    let tar = dir.path().join("layout.tar");
    tar_layout(&layout, &tar);
    assert_refused_leaving_the_store_unchanged(&tar, None, "it has no oci-layout file");
}

#[test]
fn an_index_pointing_at_a_missing_blob_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = good_layout(dir.path());
    let first = store_fixtures::layer("first");
    fs::remove_file(layout_blob(&layout, first.digest())).unwrap();
    let message = format!("blob {} is missing from", first.digest());
    assert_refused_leaving_the_store_unchanged(&layout, None, &message);
    let tar = dir.path().join("layout.tar");
    tar_layout(&layout, &tar);
    assert_refused_leaving_the_store_unchanged(&tar, None, &message);
}

#[test]
fn a_bare_tag_without_a_default_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = image("amd64", &["tagged"]);
    let layout = dir.path().join("layout");
    write_layout(&layout, &[(&img, json!({REF_NAME: "latest"}))]);
    assert_refused_leaving_the_store_unchanged(&layout, None, "has no name: give a default name");
}

#[test]
fn a_manifest_that_is_not_json_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = good_layout(dir.path());
    // Point index.json at a "manifest" that is a layer.
    let layer = store_fixtures::layer("first");
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": store_fixtures::OCI_MANIFEST, "digest": layer.digest(), "size": layer.target.size,
        "annotations": {REF_NAME: "example.com/bad:1"}}]});
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    assert_refused_leaving_the_store_unchanged(&layout, None, "cannot be parsed");
}
