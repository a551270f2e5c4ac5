//! Applying layers built in memory, including hand-crafted malicious ones, and observing the
//! result on disk. Ownership, devices and `trusted.*` xattrs need root.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tar::{EntryType, Header};
use testudo_image::compression::LayerCompression;
use testudo_image::digest::Digest;
use testudo_image::unpack::{unpack_layer, EntryRefusal, UnpackError, WhiteoutMode};

/// A layer under construction.
struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

fn layer() -> Layer {
    Layer {
        builder: tar::Builder::new(Vec::new()),
    }
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    header.set_size(size);
    header
}

/// PAX records (`LEN key=value\n`, LEN counting itself).
fn pax_records(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len.to_string().len() + rest > len {
            len += 1;
        }
        out.extend_from_slice(format!("{len} {key}=").as_bytes());
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

impl Layer {
    fn file(self, path: &str, data: &[u8]) -> Self {
        self.file_with(path, data, 0o644, 0, 0)
    }

    fn file_with(mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = header(EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.builder.append_data(&mut h, path, data).unwrap();
        self
    }

    fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = header(EntryType::Directory, mode, 0);
        self.builder.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut h, path, target).unwrap();
        self
    }

    fn hard_link(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Link, 0o644, 0);
        self.builder.append_link(&mut h, path, target).unwrap();
        self
    }

    fn node(mut self, path: &str, kind: EntryType, major: u32, minor: u32) -> Self {
        let mut h = header(kind, 0o620, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.builder.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// A PAX extended header for the next entry.
    fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        let data = pax_records(records);
        let mut h = header(EntryType::XHeader, 0o644, data.len() as u64);
        self.builder
            .append_data(&mut h, "PaxHeaders/entry", data.as_slice())
            .unwrap();
        self
    }

    /// An entry whose name (and link name) bytes are written into the raw header, bypassing the
    /// builder's own refusal of `..` and absolute paths.
    fn raw(mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Self {
        let mut h = header(kind, 0o644, data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    fn tar(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

fn unpack(tar: &[u8], target: &Path, mode: WhiteoutMode) -> Result<u64, UnpackError> {
    unpack_layer(tar, LayerCompression::None, target, mode).map(|s| s.entries)
}

fn refusal(result: Result<u64, UnpackError>) -> (String, EntryRefusal) {
    match result {
        Err(UnpackError::Refused { entry, reason }) => (entry, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    rustix::fs::lgetxattr(path, name, &mut buf[..])
        .ok()
        .map(|n| buf[..n].to_vec())
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn every_entry_type_is_created_with_its_metadata() {
    if !testudo_test_support::require_root() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let long_name = format!("deep/{}", "n".repeat(150));
    let pax_name = format!("deep/{}", "p".repeat(200));
    // VFS_CAP_REVISION_2 with the effective flag, CAP_NET_BIND_SERVICE permitted.
    let capability = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let tar = layer()
        .dir("bin/", 0o755)
        .file_with("bin/su", b"#!/bin/sh\n", 0o4755, 1000, 1001)
        .dir("tmp/", 0o1777)
        .symlink("bin/sh", "/bin/busybox")
        .hard_link("bin/su-again", "bin/su")
        .node("dev/null", EntryType::Char, 1, 3)
        .node("dev/loop0", EntryType::Block, 7, 0)
        .node("run/fifo", EntryType::Fifo, 0, 0)
        .file(&long_name, b"gnu long name")
        .pax(&[
            ("path", pax_name.as_bytes()),
            ("mtime", b"1500000000.5"),
            ("atime", b"1400000000"),
            ("SCHILY.xattr.user.comment", b"hello"),
            ("SCHILY.xattr.trusted.note", b"root only"),
            ("SCHILY.xattr.security.capability", &capability),
        ])
        .file("ignored-by-pax-path", b"pax long name")
        .pax(&[("SCHILY.xattr.trusted.link", b"on a symlink")])
        .symlink("bin/ls", "busybox")
        .tar();
    let summary = unpack_layer(
        tar.as_slice(),
        LayerCompression::None,
        root.path(),
        WhiteoutMode::Overlay,
    )
    .unwrap();
    assert_eq!(summary.entries, 11);
    assert_eq!(
        summary.bytes,
        (b"#!/bin/sh\n".len() + b"gnu long name".len() + b"pax long name".len()) as u64
    );
    let r = root.path();

    let su = fs::symlink_metadata(r.join("bin/su")).unwrap();
    assert!(su.is_file());
    assert_eq!(su.mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!((su.uid(), su.gid()), (1000, 1001));
    assert_eq!(su.mtime(), 1_600_000_000);
    assert_eq!(su.atime(), 1_600_000_000, "atime defaults to mtime");
    assert_eq!(fs::read(r.join("bin/su")).unwrap(), b"#!/bin/sh\n");

    let tmp = fs::symlink_metadata(r.join("tmp")).unwrap();
    assert!(tmp.is_dir());
    assert_eq!(tmp.mode() & 0o7777, 0o1777, "sticky kept");

    let bin = fs::symlink_metadata(r.join("bin")).unwrap();
    assert_eq!(
        bin.mtime(),
        1_600_000_000,
        "directory times survive their children being written"
    );

    assert_eq!(
        fs::read_link(r.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    let again = fs::symlink_metadata(r.join("bin/su-again")).unwrap();
    assert_eq!(again.ino(), su.ino(), "hard link shares the inode");
    assert_eq!(again.nlink(), 2);

    let null = fs::symlink_metadata(r.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o620);
    let loop0 = fs::symlink_metadata(r.join("dev/loop0")).unwrap();
    assert!(loop0.file_type().is_block_device());
    assert_eq!(loop0.rdev(), rustix::fs::makedev(7, 0));
    assert!(fs::symlink_metadata(r.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let run = fs::symlink_metadata(r.join("run")).unwrap();
    assert_eq!(run.mode() & 0o7777, 0o755, "missing parents are made 0755");

    assert_eq!(fs::read(r.join(&long_name)).unwrap(), b"gnu long name");
    let pax_path = r.join(&pax_name);
    assert_eq!(fs::read(&pax_path).unwrap(), b"pax long name");
    assert!(!r.join("ignored-by-pax-path").exists());
    let pax_meta = fs::symlink_metadata(&pax_path).unwrap();
    assert_eq!(
        (pax_meta.mtime(), pax_meta.mtime_nsec()),
        (1_500_000_000, 500_000_000)
    );
    assert_eq!(xattr(&pax_path, "user.comment").unwrap(), b"hello");
    assert_eq!(xattr(&pax_path, "trusted.note").unwrap(), b"root only");
    assert_eq!(xattr(&pax_path, "security.capability").unwrap(), capability);
    assert_eq!(
        xattr(&r.join("bin/ls"), "trusted.link").unwrap(),
        b"on a symlink"
    );
}

#[test]
fn the_diff_id_is_the_sha256_of_the_uncompressed_tar_whatever_the_compression() {
    if !testudo_test_support::require_root() {
        return;
    }
    let mut tar = layer()
        .dir("etc/", 0o755)
        .file("etc/hostname", b"testudo\n")
        .file("big", &vec![7u8; 3 << 20])
        .tar();
    // Docker pads layers to a 10 KiB record: those zeros are part of the diff_id.
    tar.resize(tar.len().div_ceil(10240) * 10240 + 10240, 0);
    let expected = Digest::of(&tar);

    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).unwrap();
    let gzip = gzip.finish().unwrap();
    let zstd = zstd::encode_all(tar.as_slice(), 3).unwrap();

    for (compression, blob) in [
        (LayerCompression::None, tar.clone()),
        (LayerCompression::Gzip, gzip),
        (LayerCompression::Zstd, zstd),
    ] {
        let root = tempfile::tempdir().unwrap();
        let summary = unpack_layer(
            blob.as_slice(),
            compression,
            root.path(),
            WhiteoutMode::Remove,
        )
        .unwrap();
        assert_eq!(summary.diff_id, expected, "{compression:?}");
        assert_eq!(summary.entries, 3, "{compression:?}");
        assert_eq!(summary.bytes, 8 + (3 << 20), "{compression:?}");
        assert_eq!(
            fs::read(root.path().join("etc/hostname")).unwrap(),
            b"testudo\n"
        );
        assert_eq!(fs::read(root.path().join("big")).unwrap().len(), 3 << 20);
    }
}

#[test]
fn overlay_whiteouts_become_devices_and_opaque_markers_become_xattrs() {
    if !testudo_test_support::require_root() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let tar = layer()
        .dir("etc/", 0o755)
        .file("etc/.wh.passwd", b"")
        .file("var/cache/.wh..wh..opq", b"")
        .file("var/cache/kept", b"this layer")
        .file(".wh..wh.plnk", b"")
        .tar();
    unpack(&tar, root.path(), WhiteoutMode::Overlay).unwrap();
    let r = root.path();
    let whiteout = fs::symlink_metadata(r.join("etc/passwd")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert!(!r.join("etc/.wh.passwd").exists());
    assert_eq!(
        xattr(&r.join("var/cache"), "trusted.overlay.opaque").unwrap(),
        b"y"
    );
    assert_eq!(names(&r.join("var/cache")), ["kept"]);
    assert_eq!(names(r), ["etc", "var"], "aufs metadata is not content");
}

#[test]
fn an_overlay_mount_of_overlay_layers_hides_what_the_whiteouts_say() {
    if !testudo_test_support::require_root() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let top = tempfile::tempdir().unwrap();
    let lower = layer()
        .file("etc/passwd", b"root:x:0:0")
        .file("etc/group", b"root:x:0:")
        .file("cache/old", b"lower")
        .tar();
    let upper = layer()
        .file("etc/.wh.passwd", b"")
        .file("cache/new", b"upper")
        .file("cache/.wh..wh..opq", b"")
        .tar();
    unpack(&lower, base.path(), WhiteoutMode::Overlay).unwrap();
    unpack(&upper, top.path(), WhiteoutMode::Overlay).unwrap();
    let merged = tempfile::tempdir().unwrap();
    let options = format!(
        "lowerdir={}:{}",
        top.path().display(),
        base.path().display()
    );
    let status = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(merged.path())
        .status()
        .unwrap();
    assert!(status.success(), "mount overlay");
    let etc = names(&merged.path().join("etc"));
    let cache = names(&merged.path().join("cache"));
    let unmounted = std::process::Command::new("umount")
        .arg(merged.path())
        .status()
        .unwrap();
    assert!(unmounted.success());
    assert_eq!(etc, ["group"]);
    assert_eq!(cache, ["new"]);
}

#[test]
fn remove_mode_whiteouts_delete_entries_of_the_lower_layers() {
    if !testudo_test_support::require_root() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let lower = layer()
        .file("etc/passwd", b"root")
        .file("etc/group", b"root")
        .file("usr/share/doc/a", b"a")
        .file("usr/share/doc/b/c", b"c")
        .tar();
    unpack(&lower, root.path(), WhiteoutMode::Remove).unwrap();
    let upper = layer()
        .file("etc/.wh.passwd", b"")
        .file("usr/share/.wh.doc", b"")
        .file("nowhere/.wh.thing", b"")
        .tar();
    unpack(&upper, root.path(), WhiteoutMode::Remove).unwrap();
    let r = root.path();
    assert_eq!(names(&r.join("etc")), ["group"]);
    assert!(names(&r.join("usr/share")).is_empty());
    assert!(!r.join("nowhere").exists(), "a whiteout creates nothing");
}

#[test]
fn an_opaque_marker_keeps_this_layers_entries_in_either_order() {
    if !testudo_test_support::require_root() {
        return;
    }
    for marker_first in [true, false] {
        let root = tempfile::tempdir().unwrap();
        let lower = layer()
            .file("var/lib/old", b"lower")
            .file("var/lib/sub/old", b"lower")
            .file("var/lib/gone/x", b"lower")
            .file("var/keep", b"outside the opaque directory")
            .tar();
        unpack(&lower, root.path(), WhiteoutMode::Remove).unwrap();
        let mut upper = layer();
        if marker_first {
            upper = upper.file("var/lib/.wh..wh..opq", b"");
        }
        upper = upper
            .file("var/lib/new", b"upper")
            .file("var/lib/sub/new", b"upper");
        if !marker_first {
            upper = upper.file("var/lib/.wh..wh..opq", b"");
        }
        unpack(&upper.tar(), root.path(), WhiteoutMode::Remove).unwrap();
        let r = root.path();
        assert_eq!(names(&r.join("var/lib")), ["new", "sub"], "{marker_first}");
        assert_eq!(names(&r.join("var/lib/sub")), ["new"], "{marker_first}");
        assert_eq!(fs::read(r.join("var/lib/new")).unwrap(), b"upper");
        assert!(r.join("var/keep").exists());
    }
}

#[test]
fn a_whiteout_does_not_remove_an_entry_of_its_own_layer() {
    if !testudo_test_support::require_root() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let tar = layer()
        .file("etc/motd", b"same layer")
        .file("etc/.wh.motd", b"")
        .tar();
    unpack(&tar, root.path(), WhiteoutMode::Remove).unwrap();
    assert_eq!(
        fs::read(root.path().join("etc/motd")).unwrap(),
        b"same layer"
    );
}

#[test]
fn a_hard_link_inside_the_root_links_a_file_of_a_lower_layer() {
    if !testudo_test_support::require_root() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    unpack(
        &layer().file("usr/bin/busybox", b"bb").tar(),
        root.path(),
        WhiteoutMode::Remove,
    )
    .unwrap();
    let tar = layer()
        .hard_link("bin/sh", "/usr/bin/busybox")
        .hard_link("bin/ash", "./usr/bin/../bin/busybox")
        .tar();
    unpack(&tar, root.path(), WhiteoutMode::Remove).unwrap();
    let original = fs::metadata(root.path().join("usr/bin/busybox")).unwrap();
    assert_eq!(original.nlink(), 3);
    for link in ["bin/sh", "bin/ash"] {
        let meta = fs::symlink_metadata(root.path().join(link)).unwrap();
        assert_eq!(meta.ino(), original.ino(), "{link}");
    }
}

#[test]
fn a_hard_link_out_of_the_root_is_refused() {
    if !testudo_test_support::require_root() {
        return;
    }
    let outer = tempfile::tempdir().unwrap();
    let secret = outer.path().join("secret");
    fs::write(&secret, b"host").unwrap();
    let root = outer.path().join("root");
    fs::create_dir(&root).unwrap();
    let tar = layer()
        .raw(EntryType::Link, b"stolen", b"../secret", b"")
        .tar();
    let (entry, reason) = refusal(unpack(&tar, &root, WhiteoutMode::Remove));
    assert_eq!(entry, "stolen");
    assert_eq!(reason, EntryRefusal::LinkClimbsOut);
    assert!(!root.join("stolen").exists());
    assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1);

    // An absolute target means the image's root, not the host's.
    let tar = layer().hard_link("passwd", "/etc/passwd").tar();
    let err = unpack(&tar, &root, WhiteoutMode::Remove).unwrap_err();
    assert!(
        matches!(&err, UnpackError::Apply { entry, .. } if entry == "passwd"),
        "{err}"
    );
    assert!(!root.join("passwd").exists());
}

#[test]
fn a_write_through_a_symlinked_parent_pointing_out_is_refused() {
    if !testudo_test_support::require_root() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    fs::create_dir(&root).unwrap();
    let escape = format!("../../../../../../../..{}", host.path().display());
    for target in [host.path().to_str().unwrap(), escape.as_str()] {
        let tar = layer()
            .symlink("evil", target)
            .file("evil/file", b"owned")
            .tar();
        let (entry, reason) = refusal(unpack(&tar, &root, WhiteoutMode::Overlay));
        assert_eq!(entry, "evil/file");
        assert_eq!(reason, EntryRefusal::ParentNotInside);
        assert!(
            names(host.path()).is_empty(),
            "the host directory stays empty"
        );
        assert_eq!(names(outer.path()), ["root"]);
    }
    // Deeper: the missing part below a symlink is not created through it either.
    let tar = layer()
        .symlink("evil", host.path().to_str().unwrap())
        .file("evil/a/b/file", b"owned")
        .tar();
    refusal(unpack(&tar, &root, WhiteoutMode::Overlay));
    assert!(names(host.path()).is_empty());
}

#[test]
fn a_symlinked_parent_is_followed_inside_the_root() {
    if !testudo_test_support::require_root() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let tar = layer()
        .dir("usr/lib/", 0o755)
        .symlink("lib", "usr/lib")
        .symlink("lib64", "/usr/lib")
        .file("lib/libc.so", b"relative")
        .file("lib64/ld.so", b"absolute, inside the image")
        .tar();
    unpack(&tar, root.path(), WhiteoutMode::Remove).unwrap();
    assert_eq!(names(&root.path().join("usr/lib")), ["ld.so", "libc.so"]);
}

#[test]
fn names_that_climb_out_are_refused_and_absolute_names_stay_inside() {
    if !testudo_test_support::require_root() {
        return;
    }
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    fs::create_dir(&root).unwrap();
    for name in [&b"../x"[..], b"a/../../x", b"/../x", b"./.."] {
        let tar = layer().raw(EntryType::Regular, name, b"", b"escaped").tar();
        let (entry, reason) = refusal(unpack(&tar, &root, WhiteoutMode::Overlay));
        assert_eq!(entry.as_bytes(), name);
        assert_eq!(reason, EntryRefusal::ClimbsOut);
    }
    assert_eq!(names(outer.path()), ["root"]);
    assert!(names(&root).is_empty());

    let tar = layer()
        .raw(EntryType::Regular, b"/etc/absolute", b"", b"inside")
        .tar();
    unpack(&tar, &root, WhiteoutMode::Overlay).unwrap();
    assert_eq!(fs::read(root.join("etc/absolute")).unwrap(), b"inside");
}

#[test]
fn an_entry_replaces_what_is_there_without_following_it() {
    if !testudo_test_support::require_root() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let host_file = host.path().join("file");
    fs::write(&host_file, b"host").unwrap();
    let root = tempfile::tempdir().unwrap();
    let lower = layer()
        .file("dir-then-file/child", b"lower")
        .file("dir/child", b"lower")
        .file("file-then-dir", b"lower")
        .tar();
    unpack(&lower, root.path(), WhiteoutMode::Remove).unwrap();
    std::os::unix::fs::symlink(&host_file, root.path().join("link")).unwrap();
    let upper = layer()
        .file("dir-then-file", b"a file now")
        .dir("dir/", 0o700)
        .dir("file-then-dir/", 0o755)
        .file("link", b"replaces the symlink")
        .tar();
    unpack(&upper, root.path(), WhiteoutMode::Remove).unwrap();
    let r = root.path();
    assert_eq!(fs::read(r.join("dir-then-file")).unwrap(), b"a file now");
    assert_eq!(
        names(&r.join("dir")),
        ["child"],
        "a directory keeps a directory"
    );
    assert_eq!(
        fs::metadata(r.join("dir")).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(fs::symlink_metadata(r.join("file-then-dir"))
        .unwrap()
        .is_dir());
    assert!(fs::symlink_metadata(r.join("link")).unwrap().is_file());
    assert_eq!(fs::read(&host_file).unwrap(), b"host");
}

#[test]
fn a_corrupt_or_truncated_layer_is_an_error_naming_the_stream() {
    if !testudo_test_support::require_root() {
        return;
    }
    let tar = layer().file("data", &vec![1u8; 1 << 20]).tar();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).unwrap();
    let gzip = gzip.finish().unwrap();

    let truncated_gzip = &gzip[..gzip.len() / 2];
    let mut corrupt_gzip = gzip.clone();
    let middle = corrupt_gzip.len() / 2;
    corrupt_gzip[middle..middle + 16].fill(0xff);
    let not_gzip = b"this is not gzip at all, just some bytes".repeat(20);
    for (what, blob) in [
        ("truncated", truncated_gzip),
        ("corrupt", corrupt_gzip.as_slice()),
        ("not gzip", not_gzip.as_slice()),
    ] {
        let root = tempfile::tempdir().unwrap();
        let err = unpack_layer(
            blob,
            LayerCompression::Gzip,
            root.path(),
            WhiteoutMode::Overlay,
        )
        .unwrap_err();
        assert!(
            matches!(err, UnpackError::Stream { format: "gzip", .. }),
            "{what}: {err:?}"
        );
        assert!(
            err.to_string().contains("gzip layer stream"),
            "{what}: {err}"
        );
    }

    let root = tempfile::tempdir().unwrap();
    let err = unpack(&tar[..4096], root.path(), WhiteoutMode::Overlay).unwrap_err();
    assert!(
        matches!(&err, UnpackError::Truncated { entry, expected, .. }
            if entry == "data" && *expected == 1 << 20),
        "{err:?}"
    );
}

#[test]
fn a_layer_that_forges_overlay_metadata_is_refused() {
    if !testudo_test_support::require_root() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let tar = layer()
        .pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")])
        .dir("d/", 0o755)
        .tar();
    let (entry, reason) = refusal(unpack(&tar, root.path(), WhiteoutMode::Overlay));
    assert_eq!(entry, "d/");
    assert_eq!(
        reason,
        EntryRefusal::ReservedXattr("trusted.overlay.redirect".into())
    );
}

#[test]
fn a_missing_target_is_an_error_naming_it() {
    let err = unpack(
        &layer().tar(),
        Path::new("/nonexistent/target"),
        WhiteoutMode::Remove,
    )
    .unwrap_err();
    assert!(matches!(err, UnpackError::Target { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/target"), "{err}");
}
