//! An entry's metadata (owner, mode, times, xattrs), read from its header and PAX records, and
//! applied after its content in the order the kernel needs (see the `unpack` module docs).

use std::io::Read;
use std::os::fd::BorrowedFd;

use rustix::fs::{
    chmodat, chownat, fchmod, fchown, fsetxattr, lsetxattr, utimensat, AtFlags, Gid, Mode,
    Timespec, Timestamps, Uid, XattrFlags,
};

use super::error::{step, EntryRefusal, Failure};
use super::{plan, tree};

/// The metadata an entry carries, read from its header and PAX records.
pub(super) struct Metadata {
    pub(super) uid: Uid,
    pub(super) gid: Gid,
    pub(super) mode: Mode,
    pub(super) times: Timestamps,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Metadata {
    pub(super) fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Metadata, EntryRefusal> {
        let header = entry.header();
        let field = EntryRefusal::MalformedField;
        // tar has already applied PAX uid/gid records to the header.
        let uid = header.uid().map_err(|_| field("uid"))?;
        let gid = header.gid().map_err(|_| field("gid"))?;
        let uid = Uid::from_raw(u32::try_from(uid).map_err(|_| field("uid"))?);
        let gid = Gid::from_raw(u32::try_from(gid).map_err(|_| field("gid"))?);
        let mode = Mode::from_raw_mode(header.mode().map_err(|_| field("mode"))? & 0o7777);
        let mtime = header.mtime().map_err(|_| field("mtime"))?;
        let mut modified = Timespec {
            tv_sec: i64::try_from(mtime).map_err(|_| field("mtime"))?,
            tv_nsec: 0,
        };
        let mut accessed = None;
        let mut xattrs = Vec::new();
        if let Some(records) = entry
            .pax_extensions()
            .map_err(|_| EntryRefusal::MalformedPax)?
        {
            for record in records {
                let record = record.map_err(|_| EntryRefusal::MalformedPax)?;
                let key = record.key_bytes();
                if let Some(name) = plan::pax_xattr_name(key) {
                    plan::check_xattr_name(name)?;
                    xattrs.push((name.to_vec(), record.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    modified =
                        plan::parse_pax_time(record.value_bytes()).ok_or(field("PAX mtime"))?;
                } else if key == b"atime" {
                    accessed =
                        Some(plan::parse_pax_time(record.value_bytes()).ok_or(field("PAX atime"))?);
                }
            }
        }
        Ok(Metadata {
            uid,
            gid,
            mode,
            times: Timestamps {
                last_access: accessed.unwrap_or(modified),
                last_modification: modified,
            },
            xattrs,
        })
    }
}

/// Owner, mode and xattrs of an opened file or directory, in that order (see the module docs).
pub(super) fn finish_fd(fd: BorrowedFd<'_>, meta: &Metadata) -> Result<(), Failure> {
    fchown(fd, Some(meta.uid), Some(meta.gid)).map_err(step("set the owner"))?;
    fchmod(fd, meta.mode).map_err(step("set the mode"))?;
    for (name, value) in &meta.xattrs {
        fsetxattr(fd, name.as_slice(), value, XattrFlags::empty())
            .map_err(|e| Failure::Xattr(String::from_utf8_lossy(name).into_owned(), e.into()))?;
    }
    Ok(())
}

/// Owner, mode (unless a symlink), xattrs and times of `name` in `parent`, which cannot be opened
/// (symlinks, devices, fifos); nothing here follows a symlink.
pub(super) fn finish_at(
    parent: BorrowedFd<'_>,
    name: &[u8],
    meta: &Metadata,
    has_mode: bool,
) -> Result<(), Failure> {
    chownat(
        parent,
        name,
        Some(meta.uid),
        Some(meta.gid),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(step("set the owner"))?;
    if has_mode {
        // Just created by mknodat, so not a symlink that chmodat could follow.
        chmodat(parent, name, meta.mode, AtFlags::empty()).map_err(step("set the mode"))?;
    }
    if !meta.xattrs.is_empty() {
        let path = tree::proc_path(parent, name);
        for (xattr, value) in &meta.xattrs {
            lsetxattr(&path, xattr.as_slice(), value, XattrFlags::empty()).map_err(|e| {
                Failure::Xattr(String::from_utf8_lossy(xattr).into_owned(), e.into())
            })?;
        }
    }
    utimensat(parent, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW).map_err(step("set the times"))
}
