//! The content store through its public API: verified atomic writes, resumable ingests, image
//! records, and prune.

#![allow(clippy::unwrap_used)]

mod store_fixtures;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use store_fixtures::{image, index, layer, tree, OCI_LAYER};
use testudo_image::digest::{Algorithm, Digest};
use testudo_image::store::{ContentStore, ImageRecord, ImageTarget, PruneReport, StoreError};

fn open() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_written_blob_is_read_only_at_its_digest_path() {
    let (_dir, store) = open();
    let digest = Digest::of(b"hello");
    assert!(!store.contains(&digest));
    store.write_blob(&digest, b"hello").unwrap();
    let path = store.blob_path(&digest);
    assert_eq!(path, store.root().join("blobs/sha256").join(digest.hex()));
    assert_eq!(fs::read(&path).unwrap(), b"hello");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert!(store.contains(&digest));
    assert_eq!(store.read_blob(&digest, 5).unwrap(), b"hello");
    assert!(file_names(&store.root().join("ingest")).is_empty());
}

#[test]
fn a_sha512_blob_is_stored_under_its_algorithm() {
    let (_dir, store) = open();
    let digest = Digest::of_with(Algorithm::Sha512, b"x");
    store.write_blob(&digest, b"x").unwrap();
    assert!(store
        .root()
        .join("blobs/sha512")
        .join(digest.hex())
        .is_file());
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_and_leaves_nothing() {
    let (_dir, store) = open();
    let before = tree(store.root());
    let expected = Digest::of(b"expected");
    let err = store.write_blob(&expected, b"other").unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(expected.as_str()) && message.contains(Digest::of(b"other").as_str()),
        "{message}"
    );
    assert!(!store.contains(&expected));
    assert_eq!(tree(store.root()), before);
}

#[test]
fn writing_a_stored_blob_again_is_a_no_op() {
    let (_dir, store) = open();
    let digest = Digest::of(b"same");
    store.write_blob(&digest, b"same").unwrap();
    let before = tree(store.root());
    store.write_blob(&digest, b"same").unwrap();
    let mut ingest = store.ingest(&digest, Some(4)).unwrap();
    ingest.write_all(b"same").unwrap();
    assert_eq!(ingest.commit().unwrap(), store.blob_path(&digest));
    assert_eq!(tree(store.root()), before);
}

#[test]
fn reading_a_blob_over_the_limit_or_a_missing_blob_fails() {
    let (_dir, store) = open();
    let digest = Digest::of(b"0123456789");
    store.write_blob(&digest, b"0123456789").unwrap();
    assert!(matches!(
        store.read_blob(&digest, 9),
        Err(StoreError::TooLarge { limit: 9, .. })
    ));
    let missing = Digest::of(b"missing");
    let err = store.open_blob(&missing).unwrap_err();
    assert!(matches!(err, StoreError::BlobNotFound { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("blob {missing} is not in the store")
    );
}

#[test]
fn a_blob_damaged_on_disk_is_not_returned_by_read_blob() {
    let (_dir, store) = open();
    let digest = Digest::of(b"intact");
    store.write_blob(&digest, b"intact").unwrap();
    let path = store.blob_path(&digest);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, b"damage").unwrap();
    assert!(matches!(
        store.read_blob(&digest, 100),
        Err(StoreError::DigestMismatch { .. })
    ));
}

#[test]
fn an_ingest_dropped_half_way_resumes_at_its_length() {
    let (_dir, store) = open();
    let data = b"0123456789".repeat(1000);
    let digest = Digest::of(&data);
    let size = Some(data.len() as u64);
    let mut first = store.ingest(&digest, size).unwrap();
    assert_eq!(first.offset(), 0);
    first.write_all(&data[..4000]).unwrap();
    let partial = first.path().to_owned();
    drop(first);
    assert_eq!(fs::metadata(&partial).unwrap().len(), 4000);

    let mut resumed = store.ingest(&digest, size).unwrap();
    assert_eq!(resumed.offset(), 4000);
    resumed.write_all(&data[4000..]).unwrap();
    let path = resumed.commit().unwrap();
    assert_eq!(fs::read(path).unwrap(), data);
    assert!(!partial.exists());
    assert!(file_names(&store.root().join("ingest")).is_empty());
}

#[test]
fn restart_discards_what_an_ingest_wrote() {
    let (_dir, store) = open();
    let digest = Digest::of(b"right");
    let mut ingest = store.ingest(&digest, None).unwrap();
    ingest.write_all(b"wrong bytes").unwrap();
    ingest.restart().unwrap();
    assert_eq!(ingest.offset(), 0);
    ingest.write_all(b"right").unwrap();
    ingest.commit().unwrap();
    assert_eq!(store.read_blob(&digest, 10).unwrap(), b"right");
}

#[test]
fn an_ingest_of_wrong_content_is_deleted_and_names_both_digests() {
    let (_dir, store) = open();
    let before = tree(store.root());
    let expected = Digest::of(b"expected");
    let mut ingest = store.ingest(&expected, None).unwrap();
    ingest.write_all(b"received").unwrap();
    let err = ingest.commit().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "blob digest mismatch: expected {expected}, got {}",
            Digest::of(b"received")
        )
    );
    assert_eq!(tree(store.root()), before);
}

#[test]
fn a_truncated_ingest_fails_on_its_size_and_is_deleted() {
    let (_dir, store) = open();
    let before = tree(store.root());
    let digest = Digest::of(b"complete");
    let mut ingest = store.ingest(&digest, Some(8)).unwrap();
    ingest.write_all(b"comp").unwrap();
    let err = ingest.commit().unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SizeMismatch {
                expected: 8,
                actual: 4,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(tree(store.root()), before);
}

#[test]
fn an_ingest_refuses_bytes_past_its_size() {
    let (_dir, store) = open();
    let digest = Digest::of(b"four");
    let mut ingest = store.ingest(&digest, Some(4)).unwrap();
    let err = ingest.write_all(b"fourteen").unwrap_err();
    assert!(err.to_string().contains("longer than its 4 bytes"), "{err}");
    assert_eq!(ingest.offset(), 0);
}

#[test]
fn a_partial_longer_than_the_size_starts_over() {
    let (_dir, store) = open();
    let digest = Digest::of(b"abc");
    let mut ingest = store.ingest(&digest, None).unwrap();
    ingest.write_all(b"abcdef").unwrap();
    drop(ingest);
    let mut ingest = store.ingest(&digest, Some(3)).unwrap();
    assert_eq!(ingest.offset(), 0);
    ingest.write_all(b"abc").unwrap();
    ingest.commit().unwrap();
    assert!(store.contains(&digest));
}

#[test]
fn a_second_ingest_of_the_same_blob_is_refused_while_the_first_is_open() {
    let (_dir, store) = open();
    let digest = Digest::of(b"busy");
    let first = store.ingest(&digest, None).unwrap();
    let err = store.ingest(&digest, None).unwrap_err();
    assert!(matches!(err, StoreError::IngestBusy { .. }), "{err}");
    assert!(err.to_string().contains("already being written"), "{err}");
    drop(first);
    store.ingest(&digest, None).unwrap();
}

fn record(name: &str, target: ImageTarget) -> ImageRecord {
    ImageRecord::new(name, target)
}

#[test]
fn image_records_are_put_replaced_listed_and_removed() {
    let (_dir, store) = open();
    let one = image("amd64", &["a"]);
    let two = image("amd64", &["b"]);
    store.put_image(&record("z/app:1", one.target())).unwrap();
    store.put_image(&record("a/app:1", one.target())).unwrap();
    store.put_image(&record("z/app:1", two.target())).unwrap();

    let names: Vec<String> = store
        .images()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a/app:1", "z/app:1"]);
    assert_eq!(store.image("z/app:1").unwrap().target, two.target());
    let reopened = ContentStore::open(store.root()).unwrap();
    assert_eq!(reopened.images().unwrap(), store.images().unwrap());

    let removed = store.remove_image("a/app:1").unwrap();
    assert_eq!(removed.target, one.target());
    let err = store.image("a/app:1").unwrap_err();
    assert_eq!(err.to_string(), "image \"a/app:1\" is not in the store");
    assert!(matches!(
        store.remove_image("a/app:1"),
        Err(StoreError::ImageNotFound { .. })
    ));
    assert!(!file_names(store.root()).iter().any(|n| n.contains("tmp")));
}

#[test]
fn an_empty_image_name_is_refused() {
    let (_dir, store) = open();
    let err = store
        .put_image(&record("", image("amd64", &["a"]).target()))
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidName { .. }), "{err}");
    assert!(store.images().unwrap().is_empty());
}

#[test]
fn records_written_from_many_threads_are_all_kept() {
    let (_dir, store) = open();
    let target = image("amd64", &["a"]).target();
    std::thread::scope(|scope| {
        for i in 0..8 {
            let store = store.clone();
            let target = target.clone();
            scope.spawn(move || {
                for j in 0..5 {
                    store
                        .put_image(&record(&format!("app{i}:{j}"), target.clone()))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(store.images().unwrap().len(), 40);
}

#[test]
fn prune_keeps_every_blob_an_image_reaches_and_removes_the_rest() {
    let (_dir, store) = open();
    let amd64 = image("amd64", &["base", "app"]);
    let arm64 = image("arm64", &["base", "app-arm"]);
    let multi = index(&[&amd64, &arm64]);
    multi.write_to(&store);
    let single = image("amd64", &["single"]);
    single.write_to(&store);
    let orphan = image("amd64", &["orphan"]);
    orphan.write_to(&store);
    store.put_image(&record("multi:1", multi.target())).unwrap();
    store
        .put_image(&record("single:1", single.target()))
        .unwrap();

    let report = store.prune().unwrap();
    // The orphan's layer, config and manifest; every other blob is reached.
    let orphan_bytes: u64 = orphan.blobs.iter().map(|b| b.target.size).sum();
    assert_eq!(
        report,
        PruneReport {
            blobs_removed: orphan.blobs.len() as u64,
            ingests_removed: 0,
            bytes_freed: orphan_bytes,
        }
    );
    for digest in multi.digests().iter().chain(&single.digests()) {
        assert!(store.contains(digest), "{digest} was pruned");
    }
    for digest in orphan.digests() {
        assert!(!store.contains(&digest), "{digest} was kept");
    }

    store.remove_image("multi:1").unwrap();
    store.prune().unwrap();
    assert!(!store.contains(multi.root().digest()));
    assert!(!store.contains(&layer("base").target.digest));
    assert!(single.digests().iter().all(|d| store.contains(d)));
}

#[test]
fn prune_with_keeps_what_the_callers_roots_reach_and_asks_under_the_lock() {
    let (_dir, store) = open();
    let kept = image("amd64", &["base", "kept"]);
    kept.write_to(&store);
    let orphan = image("amd64", &["orphan"]);
    orphan.write_to(&store);
    let report = store
        .prune_with(|| {
            // The collection lock is held: a writer cannot start now.
            assert!(matches!(store.prune(), Err(StoreError::Busy { .. })));
            Ok::<_, StoreError>(vec![kept.target()])
        })
        .unwrap();
    assert_eq!(report.blobs_removed, orphan.blobs.len() as u64);
    assert!(kept.digests().iter().all(|d| store.contains(d)));
    assert!(orphan.digests().iter().all(|d| !store.contains(d)));

    // A caller whose roots cannot be read prunes nothing.
    let failed = store.prune_with(|| {
        Err::<Vec<ImageTarget>, _>(StoreError::ImageNotFound {
            name: "unreadable".to_owned(),
        })
    });
    assert!(matches!(failed, Err(StoreError::ImageNotFound { .. })));
    assert!(kept.digests().iter().all(|d| store.contains(d)));
}

#[test]
fn prune_tolerates_images_whose_blobs_are_missing() {
    let (_dir, store) = open();
    let partial = image("amd64", &["present", "absent"]);
    for blob in &partial.blobs {
        if blob.bytes != layer("absent").bytes {
            store.write_blob(blob.digest(), &blob.bytes).unwrap();
        }
    }
    store
        .put_image(&record("partial", partial.target()))
        .unwrap();
    store
        .put_image(&record("gone", image("amd64", &["gone"]).target()))
        .unwrap();
    let report = store.prune().unwrap();
    assert_eq!(report.blobs_removed, 0);
    assert!(store.contains(&layer("present").target.digest));
}

#[test]
fn prune_removes_abandoned_ingests_but_not_one_being_written() {
    let (_dir, store) = open();
    let abandoned = Digest::of(b"abandoned");
    let mut ingest = store.ingest(&abandoned, None).unwrap();
    ingest.write_all(b"aband").unwrap();
    drop(ingest);
    let live = Digest::of(b"live");
    let mut writing = store.ingest(&live, None).unwrap();
    writing.write_all(b"li").unwrap();

    let report = store.prune().unwrap();
    assert_eq!(report.ingests_removed, 1);
    assert_eq!(report.bytes_freed, 5);
    assert_eq!(
        file_names(&store.root().join("ingest")),
        [format!("sha256-{}", live.hex())]
    );
    writing.write_all(b"ve").unwrap();
    writing.commit().unwrap();
    assert!(store.contains(&live));
    assert_eq!(store.ingest(&abandoned, None).unwrap().offset(), 0);
}

#[test]
fn prune_is_refused_while_a_lease_is_held() {
    let (_dir, store) = open();
    let unreferenced = Digest::of(b"not yet recorded");
    store
        .write_blob(&unreferenced, b"not yet recorded")
        .unwrap();
    let lease = store.lease().unwrap();
    let err = store.prune().unwrap_err();
    assert!(matches!(err, StoreError::Busy { .. }), "{err}");
    assert!(store.contains(&unreferenced));
    // Writers still work under a lease.
    store
        .put_image(&record(
            "leased",
            ImageTarget {
                media_type: OCI_LAYER.into(),
                digest: unreferenced.clone(),
                size: 16,
            },
        ))
        .unwrap();
    drop(lease);
    assert_eq!(store.prune().unwrap().blobs_removed, 0);
    assert!(store.contains(&unreferenced));
}

#[test]
fn prune_refuses_to_guess_when_a_stored_manifest_cannot_be_parsed() {
    let (_dir, store) = open();
    let not_a_manifest = b"{\"not\": \"a manifest\"}";
    let digest = Digest::of(not_a_manifest);
    store.write_blob(&digest, not_a_manifest).unwrap();
    let bystander = Digest::of(b"bystander");
    store.write_blob(&bystander, b"bystander").unwrap();
    store
        .put_image(&record(
            "broken",
            ImageTarget {
                media_type: store_fixtures::OCI_MANIFEST.into(),
                digest: digest.clone(),
                size: not_a_manifest.len() as u64,
            },
        ))
        .unwrap();
    let err = store.prune().unwrap_err();
    assert!(matches!(err, StoreError::BadManifest { .. }), "{err}");
    assert!(store.contains(&bystander));
}
