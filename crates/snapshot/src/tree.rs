//! Copying a snapshot's tree into a new one for the copy snapshotter, keeping what a layer
//! carries: contents, modes (set-id bits included), owners, extended attributes (file
//! capabilities, opaque markers, ACLs), access and modification times, symlinks, device nodes,
//! fifos, sockets and hard links. Nothing is followed: a symlink is copied as a symlink.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timestamps, XattrFlags, CWD};
use rustix::io::Errno;
use rustix::time::Timespec;

use crate::SnapshotError;

/// Copies the contents and attributes of directory `from` into the existing, empty directory
/// `to`. The error names the entry of `from` that could not be copied.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<(), SnapshotError> {
    let mut copy = TreeCopy::default();
    copy.contents(from, to)?;
    let meta = fs::symlink_metadata(from).map_err(failed(from))?;
    copy_attributes(from, to, &meta).map_err(failed(from))
}

fn failed(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.to_owned();
    move |source| SnapshotError::Copy { path, source }
}

#[derive(Default)]
struct TreeCopy {
    /// The first copy of each multiply-linked inode, by (device, inode) of the original.
    links: HashMap<(u64, u64), PathBuf>,
}

impl TreeCopy {
    fn contents(&mut self, from: &Path, to: &Path) -> Result<(), SnapshotError> {
        for entry in fs::read_dir(from).map_err(failed(from))? {
            let entry = entry.map_err(failed(from))?;
            self.entry(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    }

    fn entry(&mut self, src: &Path, dst: &Path) -> Result<(), SnapshotError> {
        let meta = fs::symlink_metadata(src).map_err(failed(src))?;
        if meta.is_dir() {
            fs::create_dir(dst).map_err(failed(src))?;
            self.contents(src, dst)?;
        } else {
            if meta.nlink() > 1 {
                let inode = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&inode) {
                    return fs::hard_link(first, dst).map_err(failed(src));
                }
                self.links.insert(inode, dst.to_owned());
            }
            create_leaf(src, dst, &meta).map_err(failed(src))?;
        }
        // A directory's times are set after its contents, which would change them.
        copy_attributes(src, dst, &meta).map_err(failed(src))
    }
}

fn create_leaf(src: &Path, dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let file_type = meta.file_type();
    if file_type.is_file() {
        let mut input = File::open(src)?;
        let mut output = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)?;
        io::copy(&mut input, &mut output)?;
    } else if file_type.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
    } else {
        rustix::fs::mknodat(
            CWD,
            dst,
            FileType::from_raw_mode(meta.mode()),
            Mode::from_raw_mode(meta.mode() & 0o7777),
            meta.rdev(),
        )?;
    }
    Ok(())
}

fn copy_attributes(src: &Path, dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
    // Owner first: chown clears set-id bits and file capabilities, which the next steps restore.
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    // Linux has no mode for symlinks.
    if !meta.is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    copy_xattrs(src, dst)?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    let names = sized(|buf| match buf {
        None => rustix::fs::llistxattr_query(src),
        Some(buf) => rustix::fs::llistxattr(src, buf),
    });
    let names = match names {
        Ok(names) => names,
        // A file system without extended attributes has none to copy.
        Err(e) if e.raw_os_error() == Some(Errno::OPNOTSUPP.raw_os_error()) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let value = sized(|buf| match buf {
            None => rustix::fs::lgetxattr_query(src, name),
            Some(buf) => rustix::fs::lgetxattr(src, name, buf),
        })?;
        rustix::fs::lsetxattr(dst, name, &value, XattrFlags::empty())?;
    }
    Ok(())
}

/// Calls a size query (`None`) then a read into a buffer of that size, again if the value grew
/// in between (`ERANGE`).
fn sized(
    mut call: impl FnMut(Option<&mut [u8]>) -> rustix::io::Result<usize>,
) -> io::Result<Vec<u8>> {
    loop {
        let size = call(None)?;
        let mut buf = vec![0; size];
        match call(Some(&mut buf)) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
