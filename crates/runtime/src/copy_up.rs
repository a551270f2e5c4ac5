//! `tmpcopyup`, the mount option of runc and crun that podman gives the tmpfs mounts of
//! `--read-only` (`/tmp`, `/run`, `/var/tmp`): the new tmpfs starts with a copy of what the image
//! has at its destination.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, Stat, Uid};

/// Copies what directory `from` holds into directory `to`: directories, regular files, symlinks
/// and special files, with their mode and owner (as runc does; times are not kept).
///
/// Nothing is followed: each name is opened relative to its parent with `O_NOFOLLOW` and symlinks
/// are copied as links, so the copy cannot leave either tree whatever the image holds.
pub(crate) fn copy_dir_contents(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    for entry in Dir::read_from(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let st = rustix::fs::statat(from, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        match kind {
            FileType::Directory => {
                rustix::fs::mkdirat(to, name, Mode::from_raw_mode(0o700))?;
                let source = open_dir(from, name)?;
                let copy = open_dir(to, name)?;
                copy_dir_contents(source.as_fd(), copy.as_fd())?;
                set_owner_and_mode(copy.as_fd(), &st)?;
            }
            FileType::RegularFile => {
                let source = rustix::fs::openat(
                    from,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let copy = rustix::fs::openat(
                    to,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let mut copy = File::from(copy);
                io::copy(&mut File::from(source), &mut copy)?;
                set_owner_and_mode(copy.as_fd(), &st)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(from, name, Vec::new())?;
                rustix::fs::symlinkat(target.as_c_str(), to, name)?;
                rustix::fs::chownat(
                    to,
                    name,
                    Some(Uid::from_raw(st.st_uid)),
                    Some(Gid::from_raw(st.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            _ => {
                rustix::fs::mknodat(to, name, kind, Mode::from_raw_mode(0o600), st.st_rdev)?;
                rustix::fs::chownat(
                    to,
                    name,
                    Some(Uid::from_raw(st.st_uid)),
                    Some(Gid::from_raw(st.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
                rustix::fs::chmodat(to, name, mode_bits(&st), AtFlags::empty())?;
            }
        }
    }
    Ok(())
}

fn open_dir(parent: BorrowedFd<'_>, name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn mode_bits(st: &Stat) -> Mode {
    Mode::from_raw_mode(st.st_mode & 0o7777)
}

/// Owner first: `chown` clears the set-user-ID and set-group-ID bits that the mode may set.
fn set_owner_and_mode(fd: BorrowedFd<'_>, st: &Stat) -> io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::fchmod(fd, mode_bits(st))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn open(path: &std::path::Path) -> OwnedFd {
        open_dir(
            rustix::fs::CWD,
            &std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL"),
        )
        .expect("open dir")
    }

    #[test]
    fn files_directories_and_symlinks_are_copied_with_their_modes() {
        let from = tempfile::tempdir().expect("tempdir");
        let to = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(from.path().join("sub")).expect("mkdir");
        std::fs::write(from.path().join("sub/file"), "content").expect("write");
        std::fs::set_permissions(
            from.path().join("sub/file"),
            std::fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        std::fs::set_permissions(
            from.path().join("sub"),
            std::fs::Permissions::from_mode(0o1777),
        )
        .expect("chmod");
        std::os::unix::fs::symlink("/etc/passwd", from.path().join("link")).expect("symlink");

        copy_dir_contents(open(from.path()).as_fd(), open(to.path()).as_fd()).expect("copy");

        let file = to.path().join("sub/file");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "content");
        assert_eq!(
            std::fs::metadata(&file).expect("stat").mode() & 0o7777,
            0o640
        );
        let sub = std::fs::metadata(to.path().join("sub")).expect("stat");
        assert_eq!(sub.mode() & 0o7777, 0o1777);
        assert_eq!(
            std::fs::read_link(to.path().join("link")).expect("readlink"),
            std::path::Path::new("/etc/passwd"),
            "the link is copied, not followed"
        );
    }
}
