//! What can go wrong while applying a layer, and how an entry's failure gets its name.

use std::io;
use std::path::PathBuf;

use rustix::io::Errno;

/// Why a layer entry was refused before anything was written for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryRefusal {
    /// The member name is empty.
    #[error("its name is empty")]
    EmptyPath,
    /// The member name contains a NUL byte.
    #[error("its name contains a NUL byte")]
    NulInPath,
    /// A `..` component would leave the target.
    #[error("its path climbs out of the target with ..")]
    ClimbsOut,
    /// A hard link's target has a `..` that would leave the target.
    #[error("its hard link target climbs out of the target with ..")]
    LinkClimbsOut,
    /// A link entry has no link name.
    #[error("it is a link without a target")]
    LinkWithoutTarget,
    /// A hard link names the target directory itself.
    #[error("its hard link target is the target directory itself")]
    LinkToTarget,
    /// A non-directory entry names the target directory itself.
    #[error("it would replace the target directory with a non-directory")]
    ReplacesTarget,
    /// The parent is not a directory inside the target (a file, or a symlink whose target does
    /// not exist inside it).
    #[error("its parent does not resolve to a directory inside the target")]
    ParentNotInside,
    /// A `.wh.` name without a name to hide.
    #[error("its whiteout names no file")]
    WhiteoutNamesNothing,
    /// A tar entry type this unpacker does not apply (volume labels, multi-volume parts, ...).
    #[error("its tar type {:?} is not supported", char::from(*.0))]
    UnsupportedType(u8),
    /// An xattr in overlayfs's private namespace.
    #[error("it sets overlayfs's private xattr {0}")]
    ReservedXattr(String),
    /// An xattr with an empty name or a NUL byte in it.
    #[error("it has a malformed xattr name")]
    MalformedXattr,
    /// A PAX extended header that does not parse.
    #[error("its PAX header is malformed")]
    MalformedPax,
    /// A numeric header field that does not parse or is out of range.
    #[error("its {0} field is malformed")]
    MalformedField(&'static str),
}

/// Applying a layer failed. The target may be partly written; the caller discards it.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The target directory could not be opened.
    #[error("cannot open the unpack target {path}")]
    Target {
        /// The target.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The layer stream could not be read: corrupt or truncated compression, a bad tar header,
    /// or the source failing.
    #[error("reading the {format} layer stream failed after {entries} entries")]
    Stream {
        /// `gzip`, `zstd` or `tar`.
        format: &'static str,
        /// Entries applied before the failure.
        entries: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The stream ended inside an entry's content.
    #[error("layer entry {entry:?} is truncated: {actual} of {expected} bytes")]
    Truncated {
        /// The member name as the tar stream gives it.
        entry: String,
        /// The size its header gives.
        expected: u64,
        /// The bytes there were.
        actual: u64,
    },
    /// An entry was refused as unsafe or malformed.
    #[error("refusing layer entry {entry:?}: {reason}")]
    Refused {
        /// The member name as the tar stream gives it.
        entry: String,
        /// Why.
        reason: EntryRefusal,
    },
    /// A filesystem operation for an entry failed.
    #[error("cannot {step} for layer entry {entry:?}")]
    Apply {
        /// The member name as the tar stream gives it.
        entry: String,
        /// What was being done.
        step: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Setting one of an entry's xattrs failed.
    #[error("cannot set xattr {name} for layer entry {entry:?}")]
    Xattr {
        /// The member name as the tar stream gives it.
        entry: String,
        /// The xattr.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What went wrong with one entry, before its name is attached.
#[derive(Debug)]
pub(super) enum Failure {
    Refused(EntryRefusal),
    Io(&'static str, io::Error),
    Xattr(String, io::Error),
    Truncated { expected: u64, actual: u64 },
    Stream(io::Error),
}

impl Failure {
    pub(super) fn for_entry(
        self,
        entry: String,
        format: &'static str,
        entries: u64,
    ) -> UnpackError {
        match self {
            Failure::Refused(reason) => UnpackError::Refused { entry, reason },
            Failure::Io(step, source) => UnpackError::Apply {
                entry,
                step,
                source,
            },
            Failure::Xattr(name, source) => UnpackError::Xattr {
                entry,
                name,
                source,
            },
            Failure::Truncated { expected, actual } => UnpackError::Truncated {
                entry,
                expected,
                actual,
            },
            Failure::Stream(source) => UnpackError::Stream {
                format,
                entries,
                source,
            },
        }
    }
}

impl From<EntryRefusal> for Failure {
    fn from(reason: EntryRefusal) -> Self {
        Failure::Refused(reason)
    }
}

pub(super) fn step(step: &'static str) -> impl FnOnce(Errno) -> Failure {
    move |errno| Failure::Io(step, errno.into())
}
