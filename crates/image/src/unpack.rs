//! Applying one image layer (a tar stream, possibly gzip or zstd compressed) to a directory, as the
//! OCI image spec's layer section says, without any entry being able to write outside it.
//!
//! Design decisions:
//! - Every entry's parent is resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//!   relative to a descriptor of the target, so symlinks met on the way (a lower layer's
//!   `/lib -> usr/lib`) are followed as the container will see them, and never lead out. The last
//!   component is created with `*at()` calls on that parent's descriptor, with `O_EXCL` /
//!   `O_NOFOLLOW` semantics: whatever was there (a symlink included) is removed and replaced, never
//!   written through.
//! - Missing parents are created (0755, as containerd does), but only as real directories: a parent
//!   that is a symlink whose target does not exist inside the target is refused, never created
//!   through.
//! - `..` components are resolved lexically, like tar; one that would climb above the target is
//!   refused rather than clamped, and so is a hard link whose target does. Symlink targets are data
//!   and may point anywhere.
//! - Metadata goes on after the content, in the order the kernel needs: owner (which clears
//!   set-id bits and file capabilities), then mode, then xattrs (`security.capability` among them),
//!   then times. Directory times are set last, after their children are written.
//!   `trusted.overlay.*` xattrs are refused: they are overlayfs's own state.
//! - The diff_id is hashed below the tar parser, over every byte of the uncompressed stream
//!   including the end-of-archive padding, so it equals `sha256sum` of the uncompressed layer.
//! - Whiteouts hide only what the layers below hold, never an entry of the same layer (the spec's
//!   rule), whatever the order of the entries in the tar.
//! - Speed: file content is copied through one reused 1 MiB buffer rather than `io::copy`'s 8 KiB
//!   one (fewer, larger writes; reads that large bypass the small read buffer below). The
//!   descriptor of the last parent directory is cached (entries come grouped by directory), a
//!   directory just created becoming that cache; it is dropped whenever anything is removed,
//!   since a removal can unlink it. On a 587 MB, 50k-entry tar of `/usr/share` this was as fast as
//!   GNU `tar -x` and produced the same tree.

mod error;
mod metadata;
mod plan;
mod stream;
mod tree;
mod whiteout;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{
    fchmod, futimens, linkat, makedev, mkdirat, mknodat, openat, symlinkat, AtFlags, FileType,
    Mode, OFlags, Timestamps,
};
use rustix::io::Errno;

use crate::compression::LayerCompression;
use crate::digest::Digest;
use error::{step, Failure};
use metadata::{finish_at, finish_fd, Metadata};
use plan::{EntryKind, WhiteoutName};

pub use error::{EntryRefusal, UnpackError};

/// How whiteouts (`.wh.NAME` and `.wh..wh..opq`) are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// The target is an empty overlayfs upper directory that will hold only this layer: `.wh.NAME`
    /// becomes a 0:0 character device NAME and an opaque marker sets `trusted.overlay.opaque=y` on
    /// its directory, as overlayfs expects.
    Overlay,
    /// The target already holds the lower layers merged: `.wh.NAME` removes NAME (recursively) and
    /// an opaque marker removes what the lower layers put in its directory, keeping what this layer
    /// writes there, whatever the order of the entries.
    Remove,
}

/// What applying a layer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackSummary {
    /// The sha256 of the uncompressed tar stream, as the image config's `rootfs.diff_ids` lists it.
    pub diff_id: Digest,
    /// The number of tar entries applied (PAX and GNU long-name headers belong to their entry).
    pub entries: u64,
    /// The bytes of regular file content written.
    pub bytes: u64,
}

/// Applies the layer read from `layer` (compressed as `compression`) to the directory `target`,
/// applying whiteouts as `whiteouts` says, and returns the layer's diff_id.
///
/// The whole stream is read, so the diff_id covers the tar's trailing padding. On error the target
/// may hold part of the layer (never anything outside it); the caller discards it.
pub fn unpack_layer(
    layer: impl Read + Send,
    compression: LayerCompression,
    target: &Path,
    whiteouts: WhiteoutMode,
) -> Result<UnpackSummary, UnpackError> {
    let format = format_name(compression);
    let root = rustix::fs::open(
        target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Target {
        path: target.to_owned(),
        source: e.into(),
    })?;
    let (uncompressed, produce) = stream::split(layer, compression);
    let (applied, diff_id) = std::thread::scope(|s| {
        let producer = s.spawn(produce);
        let applied = apply_stream(uncompressed, root, whiteouts, format);
        // A refused entry drops the reader, which stops the producer at its next chunk.
        (applied, producer.join())
    });
    let (entries, bytes) = applied?;
    let diff_id = match diff_id {
        Ok(Some(digest)) => digest,
        // The reader saw the producer's error and failed first; a panic is a bug.
        _ => {
            return Err(UnpackError::Stream {
                format,
                entries,
                source: io::Error::other("the decompression thread stopped"),
            })
        }
    };
    Ok(UnpackSummary {
        diff_id,
        entries,
        bytes,
    })
}

/// Applies every entry of the uncompressed stream and reads it to its end; returns the entries
/// applied and the file bytes written.
fn apply_stream(
    uncompressed: stream::ChunkReader,
    root: OwnedFd,
    whiteouts: WhiteoutMode,
    format: &'static str,
) -> Result<(u64, u64), UnpackError> {
    let stream_error = |entries: u64| {
        move |source| UnpackError::Stream {
            format,
            entries,
            source,
        }
    };
    // Small enough that content reads of the copy buffer's size bypass it, large enough that
    // headers of small files come from memory.
    let mut archive = tar::Archive::new(BufReader::with_capacity(128 << 10, uncompressed));
    let mut unpacker = Unpacker::new(root, whiteouts);
    for entry in archive.entries().map_err(stream_error(unpacker.entries))? {
        let mut entry = entry.map_err(stream_error(unpacker.entries))?;
        unpacker.apply(&mut entry).map_err(|failure| {
            failure.for_entry(
                String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                format,
                unpacker.entries,
            )
        })?;
    }
    unpacker.set_directory_times()?;
    // The diff id covers the whole stream, trailing padding included.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(stream_error(unpacker.entries))?;
    Ok((unpacker.entries, unpacker.bytes))
}

fn format_name(compression: LayerCompression) -> &'static str {
    match compression {
        LayerCompression::None => "tar",
        LayerCompression::Gzip => "gzip",
        LayerCompression::Zstd => "zstd",
    }
}

/// The state of one layer's application.
struct Unpacker {
    root: Rc<OwnedFd>,
    whiteouts: WhiteoutMode,
    /// The last parent directory resolved, by normalised path.
    parent_cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    /// In [`WhiteoutMode::Remove`], every path this layer wrote and their ancestors: what an
    /// opaque marker or a whiteout must not remove.
    written: HashSet<Vec<u8>>,
    /// Directory times, applied once all entries are written.
    directory_times: Vec<(Vec<u8>, Timestamps)>,
    /// The current entry's normalised path, and its hard link target's; reused buffers.
    path: Vec<u8>,
    link: Vec<u8>,
    copy_buffer: Vec<u8>,
    entries: u64,
    bytes: u64,
}

const COPY_BUFFER: usize = 1 << 20;

impl Unpacker {
    fn new(root: OwnedFd, whiteouts: WhiteoutMode) -> Unpacker {
        Unpacker {
            root: Rc::new(root),
            whiteouts,
            parent_cache: None,
            written: HashSet::new(),
            directory_times: Vec::new(),
            path: Vec::new(),
            link: Vec::new(),
            copy_buffer: vec![0; COPY_BUFFER],
            entries: 0,
            bytes: 0,
        }
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Failure> {
        let kind = plan::entry_kind(entry.header().entry_type())?;
        if kind == EntryKind::Ignored {
            return Ok(());
        }
        let mut path = std::mem::take(&mut self.path);
        let result = plan::normalize_into(&entry.path_bytes(), &mut path)
            .map_err(Failure::from)
            .and_then(|()| self.apply_at(&path, kind, entry));
        self.path = path;
        if result.is_ok() {
            self.entries += 1;
        }
        result
    }

    fn apply_at<R: Read>(
        &mut self,
        path: &[u8],
        kind: EntryKind,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), Failure> {
        let (parent_path, name) = plan::split_parent(path);
        if name.is_empty() {
            return match kind {
                EntryKind::Directory => self.update_target_directory(entry),
                _ => Err(EntryRefusal::ReplacesTarget.into()),
            };
        }
        match plan::whiteout_name(name)? {
            WhiteoutName::None => {}
            WhiteoutName::AufsMeta => return Ok(()),
            WhiteoutName::Hide(hidden) => {
                let meta = Metadata::read(entry)?;
                return self.whiteout(parent_path, hidden, &meta);
            }
            WhiteoutName::Opaque => return self.opaque(parent_path),
        }
        if kind == EntryKind::HardLink {
            return self.hard_link(path, entry);
        }
        let meta = Metadata::read(entry)?;
        let parent = self
            .parent(parent_path, true)?
            .ok_or(EntryRefusal::ParentNotInside)?;
        let parent = parent.as_fd();
        match kind {
            EntryKind::File => self.file(parent, name, entry, &meta)?,
            EntryKind::Directory => self.directory(path, parent, name, &meta)?,
            EntryKind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(EntryRefusal::LinkWithoutTarget)?;
                self.replacing(parent, name, || symlinkat(&*target, parent, name))
                    .map_err(step("create the symlink"))?;
                finish_at(parent, name, &meta, false)?;
            }
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
                let (file_type, dev) = match kind {
                    EntryKind::Fifo => (FileType::Fifo, makedev(0, 0)),
                    _ => {
                        let header = entry.header();
                        let major = header.device_major().ok().flatten();
                        let minor = header.device_minor().ok().flatten();
                        let (Some(major), Some(minor)) = (major, minor) else {
                            return Err(EntryRefusal::MalformedField("device number").into());
                        };
                        let file_type = if kind == EntryKind::CharDevice {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (file_type, makedev(major, minor))
                    }
                };
                self.replacing(parent, name, || {
                    mknodat(parent, name, file_type, Mode::from_raw_mode(0o600), dev)
                })
                .map_err(step("create the node"))?;
                finish_at(parent, name, &meta, true)?;
            }
            EntryKind::HardLink | EntryKind::Ignored => {}
        }
        self.record_written(path);
        Ok(())
    }

    /// Resolves the directory `path` inside the root, creating missing directories when `create`
    /// is set; `None` when it is missing and `create` is not.
    fn parent(&mut self, path: &[u8], create: bool) -> Result<Option<Rc<OwnedFd>>, Failure> {
        if path.is_empty() {
            return Ok(Some(Rc::clone(&self.root)));
        }
        if let Some((cached, fd)) = &self.parent_cache {
            if cached == path {
                return Ok(Some(Rc::clone(fd)));
            }
        }
        let fd = match tree::open_dir_in_root(self.root.as_fd(), path) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if !create => return Ok(None),
            Err(Errno::NOENT) => self.make_directories(path)?,
            Err(Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => {
                return Err(EntryRefusal::ParentNotInside.into())
            }
            Err(e) => return Err(step("open the parent directory")(e)),
        };
        Ok(Some(self.cache_parent(path, fd)))
    }

    fn cache_parent(&mut self, path: &[u8], fd: OwnedFd) -> Rc<OwnedFd> {
        let fd = Rc::new(fd);
        let mut cached_path = self.parent_cache.take().map(|(p, _)| p).unwrap_or_default();
        cached_path.clear();
        cached_path.extend_from_slice(path);
        self.parent_cache = Some((cached_path, Rc::clone(&fd)));
        fd
    }

    /// Creates the missing directories of `path` (mode 0755, as containerd does). The existing
    /// prefix is resolved inside the root; below it only real directories are made, so a dangling
    /// symlink on the way is refused, never created through.
    fn make_directories(&mut self, path: &[u8]) -> Result<OwnedFd, Failure> {
        let mut dir: Option<OwnedFd> = None;
        let mut missing = false;
        let mut end = 0;
        for component in path.split(|&b| b == b'/') {
            let start = if end == 0 { 0 } else { end + 1 };
            end = start + component.len();
            let prefix = &path[..end];
            if !missing {
                match tree::open_dir_in_root(self.root.as_fd(), prefix) {
                    Ok(fd) => {
                        dir = Some(fd);
                        continue;
                    }
                    Err(Errno::NOENT) => missing = true,
                    Err(Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => {
                        return Err(EntryRefusal::ParentNotInside.into())
                    }
                    Err(e) => return Err(step("open the parent directory")(e)),
                }
            }
            let at = dir.as_ref().map_or(self.root.as_fd(), |d| d.as_fd());
            match mkdirat(at, component, Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                Err(Errno::EXIST) => return Err(EntryRefusal::ParentNotInside.into()),
                Err(e) => return Err(step("create a missing parent directory")(e)),
            }
            let created = tree::open_dir_at(at, component)
                .map_err(step("open a created parent directory"))?;
            fchmod(&created, Mode::from_raw_mode(0o755))
                .map_err(step("set the mode of a created parent directory"))?;
            self.record_written(prefix);
            dir = Some(created);
        }
        dir.ok_or(Failure::Refused(EntryRefusal::ParentNotInside))
    }

    /// Runs `create`; if something is already at `name`, removes it (recursively: a file over a
    /// directory replaces it, as tar does) and runs `create` again.
    fn replacing<T>(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        mut create: impl FnMut() -> rustix::io::Result<T>,
    ) -> rustix::io::Result<T> {
        match create() {
            Err(Errno::EXIST) => {
                self.removing();
                tree::remove_tree(parent, name)?;
                create()
            }
            other => other,
        }
    }

    /// Forgets the cached parent: a removal may have unlinked it.
    fn removing(&mut self) {
        self.parent_cache = None;
    }

    fn file<R: Read>(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        entry: &mut tar::Entry<'_, R>,
        meta: &Metadata,
    ) -> Result<(), Failure> {
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = self
            .replacing(parent, name, || {
                openat(parent, name, flags, Mode::from_raw_mode(0o600))
            })
            .map_err(step("create the file"))?;
        let mut file = File::from(fd);
        let expected = entry.size();
        let mut written: u64 = 0;
        loop {
            let n = match entry.read(&mut self.copy_buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Stream(e)),
            };
            file.write_all(&self.copy_buffer[..n])
                .map_err(|e| Failure::Io("write the file", e))?;
            written += n as u64;
        }
        if written != expected {
            return Err(Failure::Truncated {
                expected,
                actual: written,
            });
        }
        self.bytes += written;
        finish_fd(file.as_fd(), meta)?;
        futimens(&file, &meta.times).map_err(step("set the times"))
    }

    fn directory(
        &mut self,
        path: &[u8],
        parent: BorrowedFd<'_>,
        name: &[u8],
        meta: &Metadata,
    ) -> Result<(), Failure> {
        match mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            // A directory over a directory keeps it (and its contents) and updates its metadata.
            Err(Errno::EXIST)
                if tree::kind_at(parent, name).map_err(step("inspect the existing entry"))?
                    == Some(FileType::Directory) => {}
            Err(Errno::EXIST) => {
                self.removing();
                tree::remove_tree(parent, name).map_err(step("remove the existing entry"))?;
                mkdirat(parent, name, Mode::from_raw_mode(0o700))
                    .map_err(step("create the directory"))?;
            }
            Err(e) => return Err(step("create the directory")(e)),
        }
        let dir = tree::open_dir_at(parent, name).map_err(step("open the directory"))?;
        finish_fd(dir.as_fd(), meta)?;
        self.directory_times
            .push((path.to_vec(), meta.times.clone()));
        // Its children usually follow.
        self.cache_parent(path, dir);
        Ok(())
    }

    /// A `./` entry: the target's own metadata.
    fn update_target_directory<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), Failure> {
        let meta = Metadata::read(entry)?;
        finish_fd(self.root.as_fd(), &meta)?;
        self.directory_times.push((Vec::new(), meta.times));
        Ok(())
    }

    fn hard_link<R: Read>(
        &mut self,
        path: &[u8],
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), Failure> {
        let raw_target = entry
            .link_name_bytes()
            .ok_or(EntryRefusal::LinkWithoutTarget)?;
        let mut target = std::mem::take(&mut self.link);
        let result = match plan::normalize_into(&raw_target, &mut target) {
            Err(EntryRefusal::ClimbsOut) => Err(EntryRefusal::LinkClimbsOut.into()),
            Err(refusal) => Err(refusal.into()),
            Ok(()) if target.is_empty() => Err(EntryRefusal::LinkToTarget.into()),
            // A link to itself: what is there already is the result.
            Ok(()) if target == path => Ok(()),
            Ok(()) => self.link_to(path, &target),
        };
        self.link = target;
        result
    }

    fn link_to(&mut self, path: &[u8], target: &[u8]) -> Result<(), Failure> {
        let (target_parent_path, target_name) = plan::split_parent(target);
        let target_parent = match self.parent(target_parent_path, false)? {
            Some(fd) => fd,
            None => return Err(step("find the hard link target")(Errno::NOENT)),
        };
        let (parent_path, name) = plan::split_parent(path);
        let parent = self
            .parent(parent_path, true)?
            .ok_or(EntryRefusal::ParentNotInside)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink, as tar does, so the link
        // target's last component is never followed either.
        self.replacing(parent.as_fd(), name, || {
            linkat(
                target_parent.as_fd(),
                target_name,
                parent.as_fd(),
                name,
                AtFlags::empty(),
            )
        })
        .map_err(step("create the hard link"))?;
        self.record_written(path);
        Ok(())
    }

    fn set_directory_times(&mut self) -> Result<(), UnpackError> {
        for (path, times) in &self.directory_times {
            let dir = match tree::open_dir_in_root_nofollow(self.root.as_fd(), path) {
                Ok(dir) => dir,
                // Removed or replaced by a later entry: its times no longer apply.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(directory_times_error(path, e)),
            };
            futimens(&dir, times).map_err(|e| directory_times_error(path, e))?;
        }
        Ok(())
    }
}

fn directory_times_error(path: &[u8], errno: Errno) -> UnpackError {
    UnpackError::Apply {
        entry: String::from_utf8_lossy(path).into_owned(),
        step: "set the directory times",
        source: errno.into(),
    }
}
