//! Filesystem primitives of the unpacker, all relative to directory descriptors: resolving a
//! parent inside the target, opening a directory without following a final symlink, and removing
//! trees without ever following one.

use std::collections::HashSet;
use std::ffi::{CStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use rustix::fs::{
    openat, openat2, statat, unlinkat, AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags,
};
use rustix::io::Errno;

/// Symlinks are resolved as if the target were `/` (an absolute link restarts at the target, `..`
/// stops there), and `/proc` magic links are refused: nothing resolves outside the target.
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

const DIRECTORY: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// Opens the directory at `path` (normalised, relative) inside `root`, following symlinks on the
/// way only inside the root. The descriptor is a real one, usable for `fsetxattr` and `*at()`.
pub(crate) fn open_dir_in_root(root: BorrowedFd<'_>, path: &[u8]) -> rustix::io::Result<OwnedFd> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    openat2(root, path, DIRECTORY, Mode::empty(), IN_ROOT)
}

/// Like [`open_dir_in_root`], but a symlink as the last component is not followed (it fails).
pub(crate) fn open_dir_in_root_nofollow(
    root: BorrowedFd<'_>,
    path: &[u8],
) -> rustix::io::Result<OwnedFd> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    openat2(
        root,
        path,
        DIRECTORY | OFlags::NOFOLLOW,
        Mode::empty(),
        IN_ROOT,
    )
}

/// Opens the directory `name` in `dir`; a symlink there is refused, never followed.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    openat(dir, name, DIRECTORY | OFlags::NOFOLLOW, Mode::empty())
}

/// The kind of what is at `name` in `dir`, not following a symlink; `None` when nothing is.
pub(crate) fn kind_at(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<Option<FileType>> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `name` from `dir`, recursively if it is a directory; missing is fine. Symlinks are
/// removed, never followed, so this cannot reach outside `dir`.
pub(crate) fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
    match unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e),
    }
    let child = open_dir_at(dir, name)?;
    for (entry, _) in children(child.as_fd())? {
        remove_tree(child.as_fd(), entry.as_bytes())?;
    }
    unlinkat(dir, name, AtFlags::REMOVEDIR)
}

/// Removes what the layers below put in the directory `dir` (at `dir_path` in the target): every
/// child whose path is not in `keep` goes; kept directories are descended into, because a kept
/// directory may still hold children from below.
pub(crate) fn remove_children_except(
    dir: BorrowedFd<'_>,
    dir_path: &mut Vec<u8>,
    keep: &HashSet<Vec<u8>>,
) -> rustix::io::Result<()> {
    for (name, kind) in children(dir)? {
        let parent_len = dir_path.len();
        if parent_len > 0 {
            dir_path.push(b'/');
        }
        dir_path.extend_from_slice(name.as_bytes());
        let result = if !keep.contains(dir_path.as_slice()) {
            remove_tree(dir, name.as_bytes())
        } else if kind == FileType::Directory {
            open_dir_at(dir, name.as_bytes())
                .and_then(|child| remove_children_except(child.as_fd(), dir_path, keep))
        } else {
            Ok(())
        };
        dir_path.truncate(parent_len);
        result?;
    }
    Ok(())
}

/// The entries of a directory except `.` and `..`, read in full before the caller changes it.
fn children(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<(std::ffi::CString, FileType)>> {
    let mut out = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Unknown => kind_at(dir, name.to_bytes())?.unwrap_or(FileType::Unknown),
            kind => kind,
        };
        out.push((name.to_owned(), kind));
    }
    Ok(out)
}

/// A path naming `name` in the directory `dir` through `/proc/self/fd`, for the path-only calls
/// (`lsetxattr`) on entries that cannot be opened (symlinks, devices, fifos). The directory part
/// is the descriptor itself and `name` is one component that `l*` calls do not follow, so the
/// path cannot lead anywhere else.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    let mut bytes = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    bytes.extend_from_slice(name);
    PathBuf::from(OsString::from_vec(bytes))
}
