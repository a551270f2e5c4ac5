//! Whiteouts: `.wh.NAME` and the opaque marker `.wh..wh..opq`, as an overlayfs upper directory
//! encodes them or applied to a directory that holds the lower layers merged.

use rustix::fs::{chownat, fsetxattr, makedev, mknodat, AtFlags, FileType, Mode, XattrFlags};
use rustix::io::Errno;
use std::os::fd::AsFd;

use super::error::{step, EntryRefusal, Failure};
use super::metadata::Metadata;
use super::{tree, Unpacker, WhiteoutMode};

impl Unpacker {
    pub(super) fn whiteout(
        &mut self,
        parent_path: &[u8],
        hidden: &[u8],
        meta: &Metadata,
    ) -> Result<(), Failure> {
        match self.whiteouts {
            WhiteoutMode::Overlay => {
                let parent = self
                    .parent(parent_path, true)?
                    .ok_or(EntryRefusal::ParentNotInside)?;
                let parent = parent.as_fd();
                let device = FileType::CharacterDevice;
                match mknodat(parent, hidden, device, Mode::empty(), makedev(0, 0)) {
                    Ok(()) => {}
                    // The upper directory holds only this layer, and a whiteout hides only what
                    // is below it, never this layer's own entry.
                    Err(Errno::EXIST) => return Ok(()),
                    Err(e) => return Err(step("create the whiteout device")(e)),
                }
                chownat(
                    parent,
                    hidden,
                    Some(meta.uid),
                    Some(meta.gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(step("set the owner of the whiteout device"))
            }
            WhiteoutMode::Remove => {
                let mut hidden_path = parent_path.to_vec();
                if !hidden_path.is_empty() {
                    hidden_path.push(b'/');
                }
                hidden_path.extend_from_slice(hidden);
                if self.written.contains(&hidden_path) {
                    return Ok(());
                }
                let Some(parent) = self.parent(parent_path, false)? else {
                    return Ok(());
                };
                self.removing();
                tree::remove_tree(parent.as_fd(), hidden).map_err(step("remove the hidden entry"))
            }
        }
    }

    pub(super) fn opaque(&mut self, dir_path: &[u8]) -> Result<(), Failure> {
        match self.whiteouts {
            WhiteoutMode::Overlay => {
                let dir = self
                    .parent(dir_path, true)?
                    .ok_or(EntryRefusal::ParentNotInside)?;
                fsetxattr(
                    dir.as_fd(),
                    "trusted.overlay.opaque",
                    b"y",
                    XattrFlags::empty(),
                )
                .map_err(|e| Failure::Xattr("trusted.overlay.opaque".to_owned(), e.into()))
            }
            WhiteoutMode::Remove => {
                let Some(dir) = self.parent(dir_path, false)? else {
                    return Ok(());
                };
                self.removing();
                let mut scratch = dir_path.to_vec();
                tree::remove_children_except(dir.as_fd(), &mut scratch, &self.written).map_err(
                    step("remove the lower layers' entries of the opaque directory"),
                )
            }
        }
    }

    /// Remembers that this layer wrote `path` (and so every directory above it), in the mode where
    /// whiteouts and opaque markers remove things.
    pub(super) fn record_written(&mut self, path: &[u8]) {
        if self.whiteouts != WhiteoutMode::Remove {
            return;
        }
        let mut end = path.len();
        while end > 0 {
            if !self.written.insert(path[..end].to_vec()) {
                // Its ancestors went in with it.
                break;
            }
            end = path[..end].iter().rposition(|&b| b == b'/').unwrap_or(0);
        }
    }
}
