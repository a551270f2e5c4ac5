//! Mount attribute changes (`mount_setattr(2)`, idmapping included), which `rustix` does not wrap,
//! and `mount(2)` with raw flags.

use std::io;
#[cfg(test)]
use std::os::fd::AsFd;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `MOUNT_ATTR_RDONLY`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;

/// `MOUNT_ATTR_IDMAP`: the mount shows ids through the mappings of a user namespace.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets and clears `MOUNT_ATTR_*` flags on the mount that `fd` refers to (an `open_tree` descriptor or
/// any path descriptor), recursively when `recursive` is true.
pub fn set_mount_attributes(
    fd: BorrowedFd<'_>,
    set: u64,
    clear: u64,
    recursive: bool,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        ..MountAttr::default()
    };
    mount_setattr(fd, &attr, recursive)
}

/// Idmaps the detached mount `tree` (an `open_tree(OPEN_TREE_CLONE)` descriptor that was never
/// attached): its files show the ids of `user_namespace`'s mappings. With `recursive`, every mount of
/// the tree is idmapped, otherwise only its top.
///
/// The kernel requires CAP_SYS_ADMIN over the user namespace that owns the filesystem, a filesystem
/// that supports idmapped mounts, and a mount that is not idmapped already.
pub fn set_mount_idmap(
    tree: BorrowedFd<'_>,
    user_namespace: BorrowedFd<'_>,
    recursive: bool,
) -> io::Result<()> {
    let userns_fd = u64::try_from(user_namespace.as_raw_fd())
        .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        userns_fd,
        ..MountAttr::default()
    };
    mount_setattr(tree, &attr, recursive)
}

/// Sets the propagation of the mount that `fd` refers to (`MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE` or
/// `MS_UNBINDABLE`, without `MS_REC`), of every mount below it too when `recursive` is true. Unlike
/// `mount(2)`, this works on a detached `open_tree` tree.
pub fn set_mount_propagation(
    fd: BorrowedFd<'_>,
    propagation: u64,
    recursive: bool,
) -> io::Result<()> {
    let attr = MountAttr {
        propagation,
        ..MountAttr::default()
    };
    mount_setattr(fd, &attr, recursive)
}

fn mount_setattr(fd: BorrowedFd<'_>, attr: &MountAttr, recursive: bool) -> io::Result<()> {
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: `fd` is a live descriptor, the path is an empty NUL-terminated string used with
    // AT_EMPTY_PATH, and `attr` points at a valid `mount_attr` whose size is passed alongside; the
    // kernel only reads it during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            std::ptr::from_ref(attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn c_path(p: &std::path::Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `mount(2)` with raw `MS_*` flags, for callers that carry flags as plain data (a mount plan).
/// `None` passes a NULL pointer, as propagation changes and remounts require.
pub fn mount(
    source: Option<&std::path::Path>,
    target: &std::path::Path,
    fstype: Option<&str>,
    flags: u64,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(c_path).transpose()?;
    let target = c_path(target)?;
    let fstype = fstype
        .map(std::ffi::CString::new)
        .transpose()
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let data = data
        .filter(|d| !d.is_empty())
        .map(std::ffi::CString::new)
        .transpose()
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let ptr = |c: &Option<std::ffi::CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is NULL or points at a NUL-terminated string that lives until the call
    // returns; mount copies what it needs.
    let ret = unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags as libc::c_ulong,
            ptr(&data).cast(),
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{statat, AtFlags, CWD};
    use rustix::mount::{open_tree, OpenTreeFlags};

    #[test]
    fn an_idmapped_tree_shows_each_owner_through_the_mapping() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("root"), b"").expect("file");
        let unmapped = dir.path().join("unmapped");
        std::fs::write(&unmapped, b"").expect("file");
        std::os::unix::fs::chown(&unmapped, Some(1000), Some(1000)).expect("chown");
        let tree = open_tree(
            CWD,
            dir.path(),
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .expect("open_tree");
        let userns = crate::userns::user_namespace_with_mappings("0 1000 1\n", "0 1000 1\n")
            .expect("user namespace");
        set_mount_idmap(tree.as_fd(), userns.as_fd(), false).expect("idmap");
        set_mount_propagation(tree.as_fd(), libc::MS_SLAVE, true).expect("propagation");
        // The filesystem's id 0 shows as what the namespace maps 0 to; an id it does not map shows
        // as the overflow id.
        let owner = |name: &str| {
            let st = statat(&tree, name, AtFlags::empty()).expect("stat");
            (st.st_uid, st.st_gid)
        };
        assert_eq!(owner("root"), (1000, 1000));
        assert_eq!(owner("unmapped"), (65534, 65534));
        // An idmapped mount cannot be remapped.
        assert!(set_mount_idmap(tree.as_fd(), userns.as_fd(), false).is_err());
    }
}
