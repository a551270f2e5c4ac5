//! Minimal busybox root filesystems, and tarballs of them.
//!
//! Building one from scratch means copying a 2 MB binary and creating ~270 applet links, so a
//! template is built once and each rootfs is a copy of it whose busybox is a hard link to the
//! template's. The template lives in the build directory of the running test binary
//! (`target/<profile>/testudo-test-support/`), named after the size and mtime of the host's
//! busybox: built once for all test binaries, rebuilt when busybox changes, and gone with
//! `cargo clean`, rather than one leaked temp dir per test process.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tempfile::TempDir;

use crate::command::{describe, output_of};
use crate::privilege::effective_uid;

/// The host's busybox; Debian's `busybox-static` package puts a static build there.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// uid of the unprivileged user `tester` in the rootfs's /etc/passwd.
pub const TESTER_UID: u32 = 1000;
/// Primary gid of `tester` (group `tester`).
pub const TESTER_GID: u32 = 1000;
/// gid of the group `staff`, of which `tester` is a supplementary member.
pub const STAFF_GID: u32 = 50;
/// uid of `nobody`.
pub const NOBODY_UID: u32 = 65534;
/// gid of `nobody`.
pub const NOBODY_GID: u32 = 65534;

/// Bump when the template's layout changes, so stale templates are not reused.
const TEMPLATE_VERSION: u32 = 2;

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
tester:x:1000:1000:tester:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";

const GROUP: &str = "\
root:x:0:
staff:x:50:tester
tester:x:1000:
nobody:x:65534:
";

/// Directories of the rootfs and their modes.
const DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("tmp", 0o1777),
    ("etc", 0o755),
    ("root", 0o700),
    ("home", 0o755),
    ("home/user", 0o755),
];

/// A minimal root filesystem: static busybox with a link per applet, the usual mount points,
/// and /etc/passwd and /etc/group with `root` (0), `tester` (1000:1000, also in `staff` (50))
/// and `nobody` (65534).
///
/// Each rootfs is a copy of a template built once per busybox version in
/// `target/<profile>/testudo-test-support/` (beside the test binary; the temp dir when that is
/// unknown), rebuilt when the host's busybox changes and gone with `cargo clean`. Its
/// `/bin/busybox` is a hard link to the template's, shared with every other rootfs: treat it as
/// read-only. Everything else is the rootfs's own. Requires the static busybox at
/// [`HOST_BUSYBOX`] (Debian's `busybox-static`).
#[derive(Debug)]
pub struct BusyboxRootfs {
    path: PathBuf,
    _temp: Option<TempDir>,
}

impl BusyboxRootfs {
    /// Builds a rootfs in a new temporary directory, removed when the value is dropped.
    pub fn new() -> Self {
        let temp = tempfile::Builder::new()
            .prefix("testudo-rootfs-")
            .tempdir()
            .expect("create a temp dir for a rootfs");
        let path = temp.path().join("rootfs");
        Self::populate(&path);
        Self {
            path,
            _temp: Some(temp),
        }
    }

    /// Builds a rootfs at `path`, which must not exist or be an empty directory. The caller owns
    /// the directory: it is not removed on drop.
    pub fn build_at(path: &Path) -> Self {
        Self::populate(path);
        Self {
            path: path.to_path_buf(),
            _temp: None,
        }
    }

    /// The rootfs directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn populate(path: &Path) {
        let copied = copy_tree(template(), path).and_then(|()| set_modes(path));
        copied.unwrap_or_else(|e| panic!("copy the busybox template to {}: {e}", path.display()));
        // Ownership is not part of the template, which a non-root run may have built.
        if effective_uid() == Some(0) {
            let home = path.join("home/user");
            std::os::unix::fs::chown(&home, Some(TESTER_UID), Some(TESTER_GID))
                .unwrap_or_else(|e| panic!("chown {}: {e}", home.display()));
        }
    }
}

impl Default for BusyboxRootfs {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes a tar archive of `rootfs` to `out`, entries relative to the rootfs (`./bin/sh`) with
/// numeric owners, as a single image layer or `podman import` wants it.
pub fn rootfs_tar(rootfs: &Path, out: &Path) {
    let output = output_of(
        Command::new("tar")
            .args(["--numeric-owner", "--warning=no-file-changed"])
            .arg("-C")
            .arg(rootfs)
            .arg("-cf")
            .arg(out)
            .arg("."),
    );
    // GNU tar exits 1 when a file's ctime changed while it was read. /bin/busybox is a hard link
    // that other tests keep linking and unlinking, which changes its ctime but not its contents;
    // with that warning silenced, anything else tar has to say still fails the call.
    let only_ctime_changed = output.status.code() == Some(1) && output.stderr.is_empty();
    assert!(
        output.status.success() || only_ctime_changed,
        "tar {} into {}: {}",
        rootfs.display(),
        out.display(),
        describe(&output)
    );
}

fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        cached_template().unwrap_or_else(|e| panic!("build the busybox rootfs template: {e}"))
    })
}

fn cached_template() -> io::Result<PathBuf> {
    let busybox = fs::metadata(HOST_BUSYBOX)?;
    let cache = cache_dir();
    let name = format!(
        "busybox-v{TEMPLATE_VERSION}-{}-{}.{}",
        busybox.size(),
        busybox.mtime(),
        busybox.mtime_nsec()
    );
    let target = cache.join(name);
    if target.is_dir() {
        return Ok(target);
    }
    fs::create_dir_all(&cache)?;
    let building = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(&cache)?;
    let staging = building.path().join("rootfs");
    build_template(&staging)?;
    // rename is atomic: a concurrent test process either wins or finds the finished template.
    match fs::rename(&staging, &target) {
        Ok(()) => Ok(target),
        Err(_) if target.is_dir() => Ok(target),
        Err(e) => Err(e),
    }
}

/// `target/<profile>/testudo-test-support` of the running test binary
/// (`target/<profile>/deps/<test>-<hash>`), or the temp dir when that cannot be found.
fn cache_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(std::env::temp_dir)
        .join("testudo-test-support")
}

/// Builds the template with every directory readable, so that a user other than the one who
/// built it can copy it; [`set_modes`] gives each copy the real modes.
fn build_template(root: &Path) -> io::Result<()> {
    fs::create_dir(root)?;
    for (dir, _) in DIRS {
        fs::create_dir(root.join(dir))?;
    }
    fs::copy(HOST_BUSYBOX, root.join("bin/busybox"))?;
    for applet in applets()? {
        link_applet(root, &applet)?;
    }
    write_file(&root.join("etc/passwd"), PASSWD, 0o644)?;
    write_file(&root.join("etc/group"), GROUP, 0o644)?;
    Ok(())
}

/// The applets' install paths (`bin/sh`, `usr/bin/id`, ...), from `busybox --list-full`.
fn applets() -> io::Result<Vec<String>> {
    let output = output_of(Command::new(HOST_BUSYBOX).arg("--list-full"));
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{HOST_BUSYBOX} --list-full: {}",
            describe(&output)
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Links `/bin/<name>` to busybox, and also the applet's own install path when that is another
/// of the rootfs's bin directories (`/sbin/ifconfig`, `/usr/bin/id`), with relative targets so
/// the links resolve on the host too.
fn link_applet(root: &Path, install_path: &str) -> io::Result<()> {
    let path = Path::new(install_path);
    let Some(name) = path.file_name() else {
        return Ok(());
    };
    if name == "busybox" {
        return Ok(());
    }
    let in_bin = root.join("bin").join(name);
    if fs::symlink_metadata(&in_bin).is_err() {
        symlink("busybox", &in_bin)?;
    }
    let parent = path.parent().unwrap_or(Path::new(""));
    let other_bin_dir =
        parent != Path::new("bin") && DIRS.iter().any(|(dir, _)| Path::new(dir) == parent);
    if other_bin_dir && fs::symlink_metadata(root.join(path)).is_err() {
        let up = "../".repeat(parent.components().count());
        symlink(format!("{up}bin/busybox"), root.join(path))?;
    }
    Ok(())
}

/// Gives the rootfs and its directories their modes (`/tmp` 1777, `/root` 0700, ...).
fn set_modes(root: &Path) -> io::Result<()> {
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    for (dir, mode) in DIRS {
        fs::set_permissions(root.join(dir), fs::Permissions::from_mode(*mode))?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &str, mode: u32) -> io::Result<()> {
    fs::write(path, contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Copies the tree at `from` to `to` (which must not exist or be empty), hard-linking
/// `bin/busybox` when both are on one filesystem.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    copy_dir(from, to, Path::new(""))
}

fn copy_dir(from: &Path, to: &Path, relative: &Path) -> io::Result<()> {
    let mode = fs::metadata(from)?.permissions().mode();
    match fs::create_dir(to) {
        Err(e)
            if e.kind() == io::ErrorKind::AlreadyExists && fs::read_dir(to)?.next().is_none() => {}
        other => other?,
    }
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let rel = relative.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_dir(&src, &dst, &rel)?;
        } else if rel == Path::new("bin/busybox") {
            if fs::hard_link(&src, &dst).is_err() {
                fs::copy(&src, &dst)?;
            }
        } else {
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_has_busybox_applets_and_users() {
        let rootfs = BusyboxRootfs::new();
        let root = rootfs.path();
        for applet in [
            "bin/sh",
            "bin/true",
            "bin/sleep",
            "bin/cat",
            "bin/id",
            "bin/ps",
            "bin/mount",
        ] {
            let target = fs::read_link(root.join(applet)).expect(applet);
            assert_eq!(target, Path::new("busybox"), "{applet}");
        }
        assert_eq!(
            fs::read_link(root.join("usr/bin/id")).expect("usr/bin/id"),
            Path::new("../../bin/busybox")
        );
        assert!(root.join("sbin/ifconfig").exists(), "sbin link resolves");
        assert!(fs::symlink_metadata(root.join("bin/busybox"))
            .expect("busybox")
            .is_file());
        let passwd = fs::read_to_string(root.join("etc/passwd")).expect("passwd");
        assert!(passwd.contains("tester:x:1000:1000:"));
        let group = fs::read_to_string(root.join("etc/group")).expect("group");
        assert!(group.contains("staff:x:50:tester"));
        let tmp_mode = fs::metadata(root.join("tmp"))
            .expect("tmp")
            .permissions()
            .mode();
        assert_eq!(tmp_mode & 0o7777, 0o1777);
        let root_mode = fs::metadata(root.join("root"))
            .expect("root")
            .permissions()
            .mode();
        assert_eq!(root_mode & 0o7777, 0o700);
        for dir in ["proc", "sys", "dev", "root", "home/user"] {
            assert!(root.join(dir).is_dir(), "{dir}");
        }
    }

    #[test]
    fn each_rootfs_is_a_separate_copy() {
        let a = BusyboxRootfs::new();
        let b = BusyboxRootfs::new();
        fs::write(a.path().join("etc/passwd"), "changed").expect("write");
        let passwd = fs::read_to_string(b.path().join("etc/passwd")).expect("passwd");
        assert!(passwd.starts_with("root:"));
    }

    #[test]
    fn rootfs_can_be_built_into_an_empty_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = BusyboxRootfs::build_at(dir.path());
        assert!(rootfs.path().join("bin/sh").exists());
    }

    #[test]
    fn tar_holds_relative_entries() {
        let rootfs = BusyboxRootfs::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let tar = dir.path().join("rootfs.tar");
        rootfs_tar(rootfs.path(), &tar);
        let list = output_of(Command::new("tar").arg("-tf").arg(&tar));
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(list.lines().any(|l| l == "./bin/sh"), "{list}");
        assert!(list.lines().any(|l| l == "./etc/passwd"));
    }
}
