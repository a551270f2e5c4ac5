//! The one test suite both snapshotters must pass, with real mounts (root only). Each case runs
//! in its own scratch directory, which must hold no mount and be removable afterwards.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::Scratch;
use testudo_snapshot::{
    mount_all, unmount, CopySnapshotter, OverlaySnapshotter, SnapshotError, SnapshotKind,
    Snapshotter, WhiteoutFormat,
};

#[test]
fn the_overlay_snapshotter_passes_the_suite() {
    if !testudo_test_support::require_root() {
        return;
    }
    suite(|root| OverlaySnapshotter::open(root).unwrap());
}

#[test]
fn the_copy_snapshotter_passes_the_suite() {
    if !testudo_test_support::require_root() {
        return;
    }
    suite(|root| CopySnapshotter::open(root).unwrap());
}

type Make<'a, S> = &'a dyn Fn(&Path) -> S;

fn suite<S: Snapshotter>(make: impl Fn(&Path) -> S) {
    let make: Make<'_, S> = &make;
    macro_rules! cases {
        ($($case:ident),* $(,)?) => { $( run(stringify!($case), |scratch| $case(make, scratch)); )* };
    }
    cases!(
        a_child_sees_its_parent_and_keeps_its_changes_to_itself,
        a_whiteout_in_a_layer_hides_the_parents_file,
        views_are_read_only,
        a_parent_with_children_cannot_be_removed,
        a_64_layer_chain_mounts,
        a_64_layer_chain_under_a_long_root_mounts,
        file_attributes_survive_into_a_child,
        bad_keys_and_wrong_kinds_are_refused_and_leave_nothing,
        cleanup_removes_what_a_crash_left,
        state_survives_reopening,
        concurrent_changes_from_two_handles_all_land,
    );
}

/// Runs one case in a fresh scratch directory and checks what it left.
fn run(name: &str, case: impl FnOnce(&Scratch)) {
    eprintln!("case: {name}");
    let scratch = Scratch::new();
    case(&scratch);
    scratch.finish();
}

/// Mounts `mounts` at `target` for the duration of `look`, then unmounts.
fn mounted<T>(mounts: &[testudo_snapshot::Mount], target: &Path, look: impl FnOnce() -> T) -> T {
    mount_all(mounts, target).unwrap();
    let result = look();
    unmount(target).unwrap();
    result
}

/// Prepares `key` on `parent`, writes `files` into its upper directory and commits it as `name`.
fn layer<S: Snapshotter>(s: &S, name: &str, parent: Option<&str>, files: &[(&str, &str)]) {
    let key = format!("{name}-active");
    s.prepare(&key, parent).unwrap();
    let upper = s.upper_dir(&key).unwrap();
    for (path, content) in files {
        let path = upper.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    s.commit(name, &key).unwrap();
}

fn snapshot_dirs(root: &Path) -> usize {
    fs::read_dir(root.join("snapshots")).unwrap().count()
}

fn a_child_sees_its_parent_and_keeps_its_changes_to_itself<S: Snapshotter>(
    make: Make<'_, S>,
    scratch: &Scratch,
) {
    let s = make(&scratch.dir("root"));
    let target = scratch.dir("mnt");
    let base = s.prepare("base-active", None).unwrap();
    assert_eq!(base.len(), 1);
    assert_eq!(base[0].fstype, "bind");
    assert_eq!(base[0].options, vec!["rbind", "rw"]);
    mounted(&base, &target, || {
        fs::write(target.join("a"), "from base").unwrap();
        fs::create_dir(target.join("dir")).unwrap();
        fs::write(target.join("dir/b"), "b").unwrap();
        fs::write(target.join("gone"), "x").unwrap();
    });
    s.commit("base", "base-active").unwrap();
    assert_eq!(s.stat("base").unwrap().kind, SnapshotKind::Committed);
    assert!(s.stat("base-active").is_err());

    let mounts = s.prepare("ctr", Some("base")).unwrap();
    assert_eq!(s.mounts("ctr").unwrap(), mounts);
    mounted(&mounts, &target, || {
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "from base");
        assert_eq!(fs::read_to_string(target.join("dir/b")).unwrap(), "b");
        fs::write(target.join("new"), "from ctr").unwrap();
        fs::remove_file(target.join("gone")).unwrap();
        assert!(!target.join("gone").exists());
    });
    // The changes persist in the container's snapshot...
    mounted(&s.mounts("ctr").unwrap(), &target, || {
        assert_eq!(fs::read_to_string(target.join("new")).unwrap(), "from ctr");
        assert!(!target.join("gone").exists());
    });
    // ...and the parent does not see them.
    mounted(&s.view("look", Some("base")).unwrap(), &target, || {
        assert_eq!(fs::read_to_string(target.join("gone")).unwrap(), "x");
        assert!(!target.join("new").exists());
    });
    s.remove("look").unwrap();
    s.remove("ctr").unwrap();
    s.remove("base").unwrap();
    assert_eq!(snapshot_dirs(s.root()), 0);
    assert!(s.list().unwrap().is_empty());
}

fn a_whiteout_in_a_layer_hides_the_parents_file<S: Snapshotter>(
    make: Make<'_, S>,
    scratch: &Scratch,
) {
    let s = make(&scratch.dir("root"));
    let target = scratch.dir("mnt");
    layer(&s, "l1", None, &[("keep", "k"), ("etc/old", "o")]);
    s.prepare("l2-active", Some("l1")).unwrap();
    let upper = s.upper_dir("l2-active").unwrap();
    // What an unpacker does for a `.wh.old` entry, in the format the snapshotter asks for.
    match s.whiteout_format() {
        WhiteoutFormat::Overlay => {
            fs::create_dir(upper.join("etc")).unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                upper.join("etc/old"),
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::empty(),
                0,
            )
            .unwrap();
        }
        WhiteoutFormat::Remove => fs::remove_file(upper.join("etc/old")).unwrap(),
    }
    fs::write(upper.join("etc/new"), "n").unwrap();
    s.commit("l2", "l2-active").unwrap();
    mounted(&s.view("v", Some("l2")).unwrap(), &target, || {
        assert!(!target.join("etc/old").exists());
        assert_eq!(fs::read_to_string(target.join("etc/new")).unwrap(), "n");
        assert_eq!(fs::read_to_string(target.join("keep")).unwrap(), "k");
    });
    for key in ["v", "l2", "l1"] {
        s.remove(key).unwrap();
    }
}

fn views_are_read_only<S: Snapshotter>(make: Make<'_, S>, scratch: &Scratch) {
    let s = make(&scratch.dir("root"));
    let target = scratch.dir("mnt");
    layer(&s, "l1", None, &[("one", "1")]);
    layer(&s, "l2", Some("l1"), &[("two", "2")]);
    for (view, parent) in [
        ("empty", None),
        ("of-one", Some("l1")),
        ("of-two", Some("l2")),
    ] {
        let mounts = s.view(view, parent).unwrap();
        assert_eq!(s.stat(view).unwrap().kind, SnapshotKind::View);
        mounted(&mounts, &target, || {
            let err = fs::write(target.join("x"), "x").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EROFS), "view {view}");
            if parent == Some("l2") {
                assert_eq!(fs::read_to_string(target.join("one")).unwrap(), "1");
                assert_eq!(fs::read_to_string(target.join("two")).unwrap(), "2");
            }
        });
        s.remove(view).unwrap();
    }
    s.remove("l2").unwrap();
    s.remove("l1").unwrap();
}

fn a_parent_with_children_cannot_be_removed<S: Snapshotter>(make: Make<'_, S>, scratch: &Scratch) {
    let s = make(&scratch.dir("root"));
    layer(&s, "base", None, &[("f", "f")]);
    s.prepare("ctr-2", Some("base")).unwrap();
    s.view("ctr-1", Some("base")).unwrap();
    let err = s.remove("base").unwrap_err();
    assert_eq!(
        err.to_string(),
        "snapshot \"base\" is the parent of \"ctr-1\", \"ctr-2\""
    );
    assert!(s.upper_dir("ctr-2").unwrap().exists());
    assert_eq!(s.list().unwrap().len(), 3);
    assert_eq!(snapshot_dirs(s.root()), 3);
    s.remove("ctr-1").unwrap();
    s.remove("ctr-2").unwrap();
    s.remove("base").unwrap();
    assert_eq!(snapshot_dirs(s.root()), 0);
    assert!(matches!(
        s.remove("base"),
        Err(SnapshotError::NotFound { .. })
    ));
}

/// Builds 64 committed layers, each adding one file, and mounts a container over them.
fn chain_of_64<S: Snapshotter>(s: &S, target: &Path) {
    let mut parent: Option<String> = None;
    for n in 0..64 {
        let name = format!("sha256:{n:064x}");
        layer(s, &name, parent.as_deref(), &[(&format!("layer-{n}"), "x")]);
        parent = Some(name);
    }
    let mounts = s.prepare("ctr", parent.as_deref()).unwrap();
    mounted(&mounts, target, || {
        let files = fs::read_dir(target).unwrap().count();
        assert_eq!(files, 64);
        assert!(target.join("layer-0").exists() && target.join("layer-63").exists());
        fs::write(target.join("written"), "w").unwrap();
    });
    assert!(s.upper_dir("ctr").unwrap().join("written").exists());
    s.remove("ctr").unwrap();
    for n in (0..64).rev() {
        s.remove(&format!("sha256:{n:064x}")).unwrap();
    }
    assert_eq!(snapshot_dirs(s.root()), 0);
}

fn a_64_layer_chain_mounts<S: Snapshotter>(make: Make<'_, S>, scratch: &Scratch) {
    let s = make(&scratch.dir("root"));
    chain_of_64(&s, &scratch.dir("mnt"));
}

fn a_64_layer_chain_under_a_long_root_mounts<S: Snapshotter>(make: Make<'_, S>, scratch: &Scratch) {
    // About 100 bytes per lower directory: 64 of them overflow mount(2)'s page.
    let root = scratch.dir(&format!("{}/root", "r".repeat(60)));
    let s = make(&root);
    let mut parent = None;
    for n in 0..63 {
        let name = format!("l{n}");
        layer(&s, &name, parent.as_deref(), &[]);
        parent = Some(name);
    }
    let mounts = s.prepare("probe", parent.as_deref()).unwrap();
    if mounts[0].fstype == "overlay" {
        let options = mounts[0].options.join(",");
        assert!(options.len() > 4096, "options are {} bytes", options.len());
    }
    s.remove("probe").unwrap();
    for n in (0..63).rev() {
        s.remove(&format!("l{n}")).unwrap();
    }
    chain_of_64(&s, &scratch.dir("mnt"));
}

fn file_attributes_survive_into_a_child<S: Snapshotter>(make: Make<'_, S>, scratch: &Scratch) {
    let s = make(&scratch.dir("root"));
    let target = scratch.dir("mnt");
    let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_007);
    s.prepare("base-active", None).unwrap();
    let up = s.upper_dir("base-active").unwrap();
    fs::create_dir(up.join("d")).unwrap();
    fs::write(up.join("d/suid"), "binary").unwrap();
    std::os::unix::fs::chown(up.join("d/suid"), Some(1000), Some(1001)).unwrap();
    fs::set_permissions(up.join("d/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    rustix::fs::setxattr(
        up.join("d/suid"),
        "user.note",
        b"hello",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::File::options()
        .write(true)
        .open(up.join("d/suid"))
        .unwrap()
        .set_modified(then)
        .unwrap();
    std::os::unix::fs::symlink("suid", up.join("d/link")).unwrap();
    std::os::unix::fs::lchown(up.join("d/link"), Some(1002), Some(1002)).unwrap();
    fs::hard_link(up.join("d/suid"), up.join("d/hard")).unwrap();
    let dev = rustix::fs::makedev(1, 3);
    let (fifo, chr) = (
        rustix::fs::FileType::Fifo,
        rustix::fs::FileType::CharacterDevice,
    );
    for (name, kind, rdev) in [("d/pipe", fifo, 0), ("d/null", chr, dev)] {
        let mode = rustix::fs::Mode::from_raw_mode(0o640);
        rustix::fs::mknodat(rustix::fs::CWD, up.join(name), kind, mode, rdev).unwrap();
    }
    fs::set_permissions(up.join("d"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::File::open(up.join("d"))
        .unwrap()
        .set_modified(then)
        .unwrap();
    s.commit("base", "base-active").unwrap();

    mounted(&s.prepare("ctr", Some("base")).unwrap(), &target, || {
        let d = target.join("d");
        let suid = fs::symlink_metadata(d.join("suid")).unwrap();
        assert_eq!((suid.uid(), suid.gid()), (1000, 1001));
        assert_eq!(suid.mode() & 0o7777, 0o4755);
        assert_eq!(suid.modified().unwrap(), then);
        assert_eq!(suid.nlink(), 2);
        let hard = fs::symlink_metadata(d.join("hard")).unwrap();
        assert_eq!(hard.ino(), suid.ino());
        let mut note = [0; 16];
        let len = rustix::fs::getxattr(d.join("suid"), "user.note", &mut note[..]).unwrap();
        assert_eq!(&note[..len], b"hello");
        assert_eq!(fs::read_link(d.join("link")).unwrap(), Path::new("suid"));
        assert_eq!(fs::symlink_metadata(d.join("link")).unwrap().uid(), 1002);
        let pipe = fs::symlink_metadata(d.join("pipe")).unwrap();
        assert!(pipe.file_type().is_fifo());
        assert_eq!(pipe.mode() & 0o7777, 0o640);
        let null = fs::symlink_metadata(d.join("null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), dev);
        let dir = fs::symlink_metadata(&d).unwrap();
        assert_eq!(dir.mode() & 0o7777, 0o750);
        assert_eq!(dir.modified().unwrap(), then);
    });
    s.remove("ctr").unwrap();
    s.remove("base").unwrap();
}

fn bad_keys_and_wrong_kinds_are_refused_and_leave_nothing<S: Snapshotter>(
    make: Make<'_, S>,
    scratch: &Scratch,
) {
    let s = make(&scratch.dir("root"));
    let long = "k".repeat(256);
    for bad in ["", "a/b", "../up", "nul\0byte", long.as_str()] {
        let err = s.prepare(bad, None).unwrap_err();
        assert!(
            matches!(err, SnapshotError::InvalidKey { .. }),
            "{bad:?}: {err}"
        );
        assert!(s.view("v", Some(bad)).is_err());
        assert!(s.stat(bad).is_err());
    }
    assert!(s.list().unwrap().is_empty());
    assert_eq!(snapshot_dirs(s.root()), 0);

    let err = s.prepare("c", Some("missing")).unwrap_err();
    assert_eq!(err.to_string(), "snapshot \"missing\" does not exist");
    s.prepare("active", None).unwrap();
    let err = s.prepare("c", Some("active")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot base a snapshot on active snapshot \"active\": parents must be committed"
    );
    let err = s.prepare("active", None).unwrap_err();
    assert_eq!(err.to_string(), "snapshot \"active\" already exists");
    s.view("view", None).unwrap();
    let err = s.commit("x", "view").unwrap_err();
    assert_eq!(err.to_string(), "cannot commit view snapshot \"view\"");
    let err = s.upper_dir("view").unwrap_err();
    assert_eq!(err.to_string(), "cannot unpack into view snapshot \"view\"");
    s.commit("done", "active").unwrap();
    let err = s.mounts("done").unwrap_err();
    assert_eq!(err.to_string(), "cannot mount committed snapshot \"done\"");
    assert!(matches!(
        s.mounts("active"),
        Err(SnapshotError::NotFound { .. })
    ));
    let err = s.commit("done", "view").unwrap_err();
    assert!(matches!(err, SnapshotError::WrongKind { .. }));

    let keys: Vec<String> = s.list().unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(keys, vec!["done", "view"]);
    assert_eq!(snapshot_dirs(s.root()), 2);
    s.remove("view").unwrap();
    s.remove("done").unwrap();
}

fn cleanup_removes_what_a_crash_left<S: Snapshotter>(make: Make<'_, S>, scratch: &Scratch) {
    let s = make(&scratch.dir("root"));
    layer(&s, "kept", None, &[("f", "f")]);
    let kept = s.stat("kept").unwrap();
    // A snapshot directory whose record was never written, and a half-written metadata file.
    let orphan = s.root().join("snapshots/999");
    fs::create_dir_all(orphan.join("fs/deep")).unwrap();
    fs::write(orphan.join("fs/deep/file"), "x").unwrap();
    let temp = s.root().join("metadata.json.tmp");
    fs::write(&temp, "{ half").unwrap();

    let removed = s.cleanup().unwrap();
    assert_eq!(removed, vec![temp.clone(), orphan.clone()]);
    assert!(!orphan.exists() && !temp.exists());
    assert_eq!(s.stat("kept").unwrap(), kept);
    assert_eq!(snapshot_dirs(s.root()), 1);
    assert!(s.cleanup().unwrap().is_empty());
    s.remove("kept").unwrap();
}

fn state_survives_reopening<S: Snapshotter>(make: Make<'_, S>, scratch: &Scratch) {
    let root = scratch.dir("root");
    let target = scratch.dir("mnt");
    {
        let s = make(&root);
        layer(&s, "base", None, &[("f", "persisted")]);
        s.prepare("ctr", Some("base")).unwrap();
    }
    let s = make(&root);
    let info = s.stat("ctr").unwrap();
    assert_eq!(info.parent.as_deref(), Some("base"));
    assert_eq!(info.kind, SnapshotKind::Active);
    assert!(info.created <= SystemTime::now());
    mounted(&s.mounts("ctr").unwrap(), &target, || {
        assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "persisted");
    });
    s.remove("ctr").unwrap();
    s.remove("base").unwrap();
    let err = s.stat("ctr").unwrap_err();
    assert!(matches!(err, SnapshotError::NotFound { .. }));
}

fn concurrent_changes_from_two_handles_all_land<S: Snapshotter>(
    make: Make<'_, S>,
    scratch: &Scratch,
) {
    let root = scratch.dir("root");
    // Two handles on one root, as two processes would have: only the file lock orders them.
    let handles = [make(&root), make(&root)];
    layer(&handles[0], "base", None, &[("f", "f")]);
    std::thread::scope(|threads| {
        for (n, s) in handles.iter().enumerate() {
            threads.spawn(move || {
                for i in 0..20 {
                    s.prepare(&format!("ctr-{n}-{i}"), Some("base")).unwrap();
                }
            });
        }
    });
    let s = &handles[1];
    assert_eq!(s.list().unwrap().len(), 41);
    assert_eq!(snapshot_dirs(s.root()), 41);
    for n in 0..2 {
        for i in 0..20 {
            s.remove(&format!("ctr-{n}-{i}")).unwrap();
        }
    }
    s.remove("base").unwrap();
    assert_eq!(snapshot_dirs(s.root()), 0);
}
