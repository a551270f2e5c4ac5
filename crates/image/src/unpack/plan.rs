//! Pure decisions about tar entries: where an entry goes, what it is, what its whiteout means.
//! Nothing here touches the filesystem, so every rule is unit-tested without root.

use rustix::fs::Timespec;

use super::EntryRefusal;

/// The prefix the OCI image spec gives whiteout files.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The name of the opaque-directory marker.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Normalises a tar member name into `out` as `a/b/c` (empty for the target itself), the way tar
/// does: leading `/` and `.` components are dropped and `..` pops a component. A `..` with nothing
/// left to pop would climb out of the target, so it is refused rather than clamped.
pub(crate) fn normalize_into(raw: &[u8], out: &mut Vec<u8>) -> Result<(), EntryRefusal> {
    out.clear();
    if raw.is_empty() {
        return Err(EntryRefusal::EmptyPath);
    }
    if raw.contains(&0) {
        return Err(EntryRefusal::NulInPath);
    }
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                if out.is_empty() {
                    return Err(EntryRefusal::ClimbsOut);
                }
                let keep = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(keep);
            }
            name => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
            }
        }
    }
    Ok(())
}

/// Splits a normalised path into its parent (empty for the target) and its last component.
pub(crate) fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => (&path[..slash], &path[slash + 1..]),
        None => (&[], path),
    }
}

/// What a member's last path component says about whiteouts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WhiteoutName<'a> {
    /// An ordinary name.
    None,
    /// `.wh.NAME`: NAME, from the layers below, is deleted.
    Hide(&'a [u8]),
    /// `.wh..wh..opq`: the directory's contents from the layers below are hidden.
    Opaque,
    /// Another `.wh..wh.` name: aufs bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`), not content.
    AufsMeta,
}

/// Reads the whiteout meaning of a last path component.
pub(crate) fn whiteout_name(name: &[u8]) -> Result<WhiteoutName<'_>, EntryRefusal> {
    if name == OPAQUE_MARKER {
        return Ok(WhiteoutName::Opaque);
    }
    let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(WhiteoutName::None);
    };
    if hidden.starts_with(WHITEOUT_PREFIX) {
        return Ok(WhiteoutName::AufsMeta);
    }
    match hidden {
        b"" | b"." | b".." => Err(EntryRefusal::WhiteoutNamesNothing),
        _ => Ok(WhiteoutName::Hide(hidden)),
    }
}

/// What a tar entry asks to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file (including GNU sparse and contiguous files, written out in full).
    File,
    /// A directory.
    Directory,
    /// A symbolic link; its target is data and may point anywhere.
    Symlink,
    /// A hard link to another member, which must resolve inside the target.
    HardLink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// Metadata that applies to no file (a PAX global header).
    Ignored,
}

/// Classifies a tar type flag; archive-level types this unpacker cannot honour are refused.
pub(crate) fn entry_kind(entry_type: tar::EntryType) -> Result<EntryKind, EntryRefusal> {
    use tar::EntryType as T;
    Ok(match entry_type {
        T::Regular | T::Continuous | T::GNUSparse => EntryKind::File,
        T::Directory => EntryKind::Directory,
        T::Symlink => EntryKind::Symlink,
        T::Link => EntryKind::HardLink,
        T::Char => EntryKind::CharDevice,
        T::Block => EntryKind::BlockDevice,
        T::Fifo => EntryKind::Fifo,
        T::XGlobalHeader => EntryKind::Ignored,
        other => return Err(EntryRefusal::UnsupportedType(other.as_byte())),
    })
}

/// Parses a PAX time (`1700000000`, `1700000000.25`, `-1.5`) into a timespec.
pub(crate) fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    // Nanosecond precision: digits past the ninth are dropped, missing ones are zeros.
    let mut nanos: i64 = 0;
    for position in 0..9 {
        let digit = fraction.as_bytes().get(position).map_or(0, |d| d - b'0');
        nanos = nanos * 10 + i64::from(digit);
    }
    Some(if !negative {
        Timespec {
            tv_sec: seconds,
            tv_nsec: nanos,
        }
    } else if nanos == 0 {
        Timespec {
            tv_sec: -seconds,
            tv_nsec: 0,
        }
    } else {
        // -1.25 s is 2 s before the epoch plus 0.75 s.
        Timespec {
            tv_sec: -seconds - 1,
            tv_nsec: 1_000_000_000 - nanos,
        }
    })
}

/// The xattr name a PAX record carries, if it is one (`SCHILY.xattr.NAME`, as GNU tar, bsdtar
/// and Go's archive/tar write them).
pub(crate) fn pax_xattr_name(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(b"SCHILY.xattr.")
}

/// Refuses xattrs a layer must not set: overlayfs keeps its own state (`opaque`, `redirect`,
/// `metacopy`, ...) in `trusted.overlay.*`, and a layer that wrote those directly could make the
/// merged view differ from what its whiteouts say.
pub(crate) fn check_xattr_name(name: &[u8]) -> Result<(), EntryRefusal> {
    if name.starts_with(b"trusted.overlay.") {
        return Err(EntryRefusal::ReservedXattr(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    if name.is_empty() || name.contains(&0) {
        return Err(EntryRefusal::MalformedXattr);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn normalized(raw: &str) -> Result<String, EntryRefusal> {
        let mut out = Vec::new();
        normalize_into(raw.as_bytes(), &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn names_are_normalised_like_tar_does() {
        assert_eq!(normalized("./usr/bin/sh").unwrap(), "usr/bin/sh");
        assert_eq!(normalized("/etc//passwd").unwrap(), "etc/passwd");
        assert_eq!(normalized("usr/lib/").unwrap(), "usr/lib");
        assert_eq!(normalized("a/./b/../c").unwrap(), "a/c");
        assert_eq!(normalized("./").unwrap(), "");
        assert_eq!(normalized("/").unwrap(), "");
        assert_eq!(normalized("a/..").unwrap(), "");
    }

    #[test]
    fn a_dot_dot_that_climbs_out_is_refused() {
        for bad in [
            "..",
            "../x",
            "a/../../x",
            "/../etc/passwd",
            "./a/b/../../../c",
        ] {
            assert_eq!(normalized(bad), Err(EntryRefusal::ClimbsOut), "{bad}");
        }
    }

    #[test]
    fn empty_names_and_nul_bytes_are_refused() {
        assert_eq!(normalized(""), Err(EntryRefusal::EmptyPath));
        assert_eq!(normalized("a\0b"), Err(EntryRefusal::NulInPath));
    }

    #[test]
    fn split_parent_separates_the_last_component() {
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(split_parent(b""), (&b""[..], &b""[..]));
    }

    #[test]
    fn whiteout_names_are_recognised() {
        assert_eq!(whiteout_name(b"passwd").unwrap(), WhiteoutName::None);
        assert_eq!(whiteout_name(b".whx").unwrap(), WhiteoutName::None);
        assert_eq!(
            whiteout_name(b".wh.passwd").unwrap(),
            WhiteoutName::Hide(b"passwd")
        );
        assert_eq!(
            whiteout_name(b".wh..wh..opq").unwrap(),
            WhiteoutName::Opaque
        );
        assert_eq!(
            whiteout_name(b".wh..wh.plnk").unwrap(),
            WhiteoutName::AufsMeta
        );
        for bad in [&b".wh."[..], b".wh..", b".wh..."] {
            assert_eq!(
                whiteout_name(bad),
                Err(EntryRefusal::WhiteoutNamesNothing),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn entry_types_map_to_kinds_and_unknown_ones_are_refused() {
        assert_eq!(
            entry_kind(tar::EntryType::Regular).unwrap(),
            EntryKind::File
        );
        assert_eq!(
            entry_kind(tar::EntryType::GNUSparse).unwrap(),
            EntryKind::File
        );
        assert_eq!(
            entry_kind(tar::EntryType::Link).unwrap(),
            EntryKind::HardLink
        );
        assert_eq!(
            entry_kind(tar::EntryType::XGlobalHeader).unwrap(),
            EntryKind::Ignored
        );
        assert_eq!(
            entry_kind(tar::EntryType::new(b'V')),
            Err(EntryRefusal::UnsupportedType(b'V'))
        );
    }

    #[test]
    fn pax_times_keep_their_fraction() {
        let t = parse_pax_time(b"1700000000.25").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 250_000_000));
        let t = parse_pax_time(b"12").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        let t = parse_pax_time(b"1.1234567891").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1, 123_456_789));
        let t = parse_pax_time(b"-1.25").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 750_000_000));
        for bad in [&b""[..], b"x", b"1.x", b".5", b"1e3"] {
            assert!(parse_pax_time(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn overlay_private_xattrs_are_refused() {
        assert!(check_xattr_name(b"user.comment").is_ok());
        assert!(check_xattr_name(b"security.capability").is_ok());
        assert!(matches!(
            check_xattr_name(b"trusted.overlay.redirect"),
            Err(EntryRefusal::ReservedXattr(name)) if name == "trusted.overlay.redirect"
        ));
        assert_eq!(pax_xattr_name(b"SCHILY.xattr.user.a"), Some(&b"user.a"[..]));
        assert_eq!(pax_xattr_name(b"mtime"), None);
    }
}
