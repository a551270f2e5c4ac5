//! The state database: namespaces isolate their containers, names are unique per namespace,
//! records survive a reopen, and the schema version guards the file.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use testudo_engine::error::{ErrorKind, Kind};
use testudo_engine::state::{
    CellRecord, ContainerRecord, Name, StateDb, StateError, SCHEMA_VERSION,
};
use testudo_image::digest::Digest;
use testudo_image::store::{ImageRecord, ImageTarget};

fn name(s: &str) -> Name {
    Name::parse("test", s).unwrap()
}

fn container(ns: &str, id: &str, container_name: &str) -> ContainerRecord {
    ContainerRecord {
        namespace: name(ns),
        id: id.into(),
        name: name(container_name),
        image: "docker.io/library/busybox:latest".into(),
        image_digest: String::new(),
        config: serde_json::json!({"cmd": ["true"]}),
        status: "created".into(),
        pid: None,
        exit_code: None,
        created: "2026-12-02T00:00:00Z".into(),
        started: None,
        finished: None,
        labels: BTreeMap::from([("tier".into(), "web".into())]),
        restart_count: 0,
        stop_requested: false,
        cell: None,
    }
}

fn open(dir: &tempfile::TempDir) -> StateDb {
    StateDb::open(&dir.path().join("state.redb")).unwrap()
}

#[test]
fn namespaces_are_created_listed_and_refused_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    db.create_namespace(&name("acme"), BTreeMap::new()).unwrap();
    db.create_namespace(&name("globex"), BTreeMap::new())
        .unwrap();
    let err = db
        .create_namespace(&name("acme"), BTreeMap::new())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let names: Vec<String> = db
        .namespaces()
        .unwrap()
        .into_iter()
        .map(|n| n.name.to_string())
        .collect();
    assert_eq!(names, ["acme", "globex"]);
    let err = db.namespace(&name("initech")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("initech"), "{err}");
}

#[test]
fn invalid_names_are_refused_with_the_rule_they_break() {
    for (bad, rule) in [
        ("", "empty"),
        ("-lead", "start and end"),
        ("a/b", "only letters"),
        ("a b", "only letters"),
        (&"x".repeat(129), "longer than 128"),
    ] {
        let err = Name::parse("namespace", bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains(rule), "{bad:?}: {err}");
    }
    assert!(Name::parse("namespace", "a.b_c-9").is_ok());
}

#[test]
fn each_tenant_sees_only_its_containers_and_names_are_unique_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    for ns in ["acme", "acme2", "globex"] {
        db.create_namespace(&name(ns), BTreeMap::new()).unwrap();
    }
    db.insert_container(&container("acme", "c1", "web"))
        .unwrap();
    db.insert_container(&container("acme", "c2", "db")).unwrap();
    // The same name and id in another tenant are fine; "acme2" sorts right after "acme".
    db.insert_container(&container("globex", "c1", "web"))
        .unwrap();
    db.insert_container(&container("acme2", "c0", "web"))
        .unwrap();

    let ids = |ns: &str| -> Vec<String> {
        db.containers(&name(ns))
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect()
    };
    assert_eq!(ids("acme"), ["c1", "c2"]);
    assert_eq!(ids("acme2"), ["c0"]);
    assert_eq!(ids("globex"), ["c1"]);
    assert_eq!(db.container(&name("acme"), "web").unwrap().id, "c1");
    assert_eq!(
        db.container(&name("acme"), "c2").unwrap().name.as_str(),
        "db"
    );
    let err = db.container(&name("globex"), "db").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    for duplicate in [
        container("acme", "c1", "other"),
        container("acme", "c9", "web"),
    ] {
        let err = db.insert_container(&duplicate).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    }
    let err = db
        .insert_container(&container("initech", "c1", "web"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn updates_keep_identity_and_removal_frees_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.create_namespace(&name("acme"), BTreeMap::new()).unwrap();
    db.insert_container(&container("acme", "c1", "web"))
        .unwrap();
    let updated = db
        .update_container(&name("acme"), "c1", |c| {
            c.status = "stopped".into();
            c.exit_code = Some(7);
            c.name = name("renamed");
            c.id = "hijacked".into();
        })
        .unwrap();
    assert_eq!((updated.id.as_str(), updated.name.as_str()), ("c1", "web"));
    assert_eq!(
        db.container(&name("acme"), "web").unwrap().exit_code,
        Some(7)
    );
    db.remove_container(&name("acme"), "c1").unwrap();
    assert_eq!(
        db.remove_container(&name("acme"), "c1").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    db.insert_container(&container("acme", "c3", "web"))
        .unwrap();
}

#[test]
fn a_namespace_with_containers_is_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.create_namespace(&name("acme"), BTreeMap::new()).unwrap();
    db.insert_container(&container("acme", "c1", "web"))
        .unwrap();
    let err = db.delete_namespace(&name("acme"), false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    assert!(err.to_string().contains("1 container"), "{err}");
    assert_eq!(db.containers(&name("acme")).unwrap().len(), 1);
    db.delete_namespace(&name("acme"), true).unwrap();
    assert!(db.namespaces().unwrap().is_empty());
    // Names and ids are free again in a new namespace of the same name.
    db.create_namespace(&name("acme"), BTreeMap::new()).unwrap();
    db.insert_container(&container("acme", "c1", "web"))
        .unwrap();
}

#[test]
fn records_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(&dir);
        db.create_namespace(&name("acme"), BTreeMap::from([("k".into(), "v".into())]))
            .unwrap();
        db.insert_container(&container("acme", "c1", "web"))
            .unwrap();
    }
    let db = open(&dir);
    assert_eq!(db.namespace(&name("acme")).unwrap().labels["k"], "v");
    assert_eq!(
        db.container(&name("acme"), "c1").unwrap(),
        container("acme", "c1", "web")
    );
}

#[test]
fn a_file_from_a_newer_daemon_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, u32> = redb::TableDefinition::new("meta");
            let mut table = txn.open_table(meta).unwrap();
            table.insert("schema_version", 99).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = StateDb::open(&path).unwrap_err();
    assert!(err.to_string().contains("schema version 99"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Internal);
    // The file still says 99: nothing was migrated or overwritten.
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let meta: redb::TableDefinition<&str, u32> = redb::TableDefinition::new("meta");
    let table = txn.open_table(meta).unwrap();
    assert_eq!(table.get("schema_version").unwrap().unwrap().value(), 99);
}

#[test]
fn a_version_1_file_gains_image_references_and_keeps_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        // What a version 1 daemon wrote: its tables, one namespace.
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, u32> = redb::TableDefinition::new("meta");
            txn.open_table(meta)
                .unwrap()
                .insert("schema_version", 1)
                .unwrap();
            let namespaces: redb::TableDefinition<&str, &[u8]> =
                redb::TableDefinition::new("namespaces");
            let record = br#"{"name":"acme","created":"2026-01-01T00:00:00Z"}"#;
            txn.open_table(namespaces)
                .unwrap()
                .insert("acme", record.as_slice())
                .unwrap();
            let containers: redb::TableDefinition<(&str, &str), &[u8]> =
                redb::TableDefinition::new("containers");
            txn.open_table(containers).unwrap();
            let names: redb::TableDefinition<(&str, &str), &str> =
                redb::TableDefinition::new("container_names");
            txn.open_table(names).unwrap();
        }
        txn.commit().unwrap();
    }
    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        db.namespace(&name("acme")).unwrap().created,
        "2026-01-01T00:00:00Z"
    );
    assert!(db.images(&name("acme")).unwrap().is_empty());
    let networks = db.network_state().unwrap();
    assert!(networks.networks.is_empty() && networks.attachments.is_empty());
    assert!(db.cells(&name("acme")).unwrap().is_empty());
}

fn image_record(image: &str) -> ImageRecord {
    let target = ImageTarget {
        media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        digest: Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap(),
        size: 10,
    };
    ImageRecord::new(image, target)
}

#[test]
fn image_references_are_per_namespace_and_keep_a_namespace_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    for ns in ["acme", "beta"] {
        db.create_namespace(&name(ns), BTreeMap::new()).unwrap();
    }
    let web = image_record("example.com/web:v1");
    db.put_images(&name("acme"), std::slice::from_ref(&web))
        .unwrap();
    assert_eq!(
        db.images(&name("acme")).unwrap(),
        std::slice::from_ref(&web)
    );
    assert!(db.images(&name("beta")).unwrap().is_empty());
    assert_eq!(db.image(&name("beta"), &web.name).unwrap(), None);
    assert!(matches!(
        db.put_images(&name("ghost"), std::slice::from_ref(&web)),
        Err(StateError::NamespaceNotFound(_))
    ));
    db.put_images(&name("beta"), std::slice::from_ref(&web))
        .unwrap();
    assert_eq!(db.all_images().unwrap().len(), 2);

    let refused = db.delete_namespace(&name("acme"), false).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "namespace \"acme\" still holds 0 container(s), 0 cell(s) and 1 image(s)"
    );
    assert_eq!(refused.kind(), ErrorKind::FailedPrecondition);
    db.delete_namespace(&name("acme"), true).unwrap();
    // beta's reference of the same name is untouched.
    assert_eq!(db.all_images().unwrap(), std::slice::from_ref(&web));
    assert_eq!(
        db.remove_image(&name("beta"), &web.name).unwrap(),
        Some(web)
    );
    assert_eq!(
        db.remove_image(&name("beta"), "example.com/web:v1")
            .unwrap(),
        None
    );
}

fn cell(ns: &str, id: &str, cell_name: &str) -> CellRecord {
    CellRecord {
        namespace: name(ns),
        id: id.into(),
        name: name(cell_name),
        network: serde_json::json!("none"),
        netns: None,
        labels: BTreeMap::new(),
        created: "2026-12-02T00:00:00Z".into(),
    }
}

#[test]
fn cells_are_unique_per_namespace_and_kept_while_a_container_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.create_namespace(&name("acme"), BTreeMap::new()).unwrap();
    db.create_namespace(&name("globex"), BTreeMap::new())
        .unwrap();
    db.insert_cell(&cell("acme", "c1", "web")).unwrap();
    // The same name in another namespace is another cell.
    db.insert_cell(&cell("globex", "c2", "web")).unwrap();
    let twice = db.insert_cell(&cell("acme", "c3", "web")).unwrap_err();
    assert_eq!(twice.kind(), ErrorKind::AlreadyExists);
    let nowhere = db.insert_cell(&cell("initech", "c4", "web")).unwrap_err();
    assert_eq!(nowhere.kind(), ErrorKind::NotFound);
    // By name and by id, in its own namespace only.
    assert_eq!(db.cell(&name("acme"), "web").unwrap().id, "c1");
    assert_eq!(db.cell(&name("acme"), "c1").unwrap().name.as_str(), "web");
    assert_eq!(
        db.cell(&name("acme"), "c2").unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let mut member = container("acme", "k1", "app");
    member.cell = Some("c1".into());
    db.insert_container(&member).unwrap();
    db.insert_container(&container("acme", "k2", "other"))
        .unwrap();
    let members = db.cell_containers(&name("acme"), "c1").unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].id, "k1");
    let held = db.remove_cell(&name("acme"), &name("web")).unwrap_err();
    assert_eq!(held.kind(), ErrorKind::FailedPrecondition);
    assert!(held.to_string().contains("1 container(s)"), "{held}");
    db.remove_container(&name("acme"), "k1").unwrap();
    db.remove_cell(&name("acme"), &name("web")).unwrap();
    assert!(db.cells(&name("acme")).unwrap().is_empty());
    assert_eq!(db.cells(&name("globex")).unwrap().len(), 1);
    // A namespace holding a cell is refused without force.
    let err = db.delete_namespace(&name("globex"), false).unwrap_err();
    assert!(err.to_string().contains("1 cell(s)"), "{err}");
    db.delete_namespace(&name("globex"), true).unwrap();
}
