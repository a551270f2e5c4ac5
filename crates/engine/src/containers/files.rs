//! The container's files on the host: removing them without following a mount.

use std::io;
use std::path::{Path, PathBuf};

use super::ContainerError;

/// The mapping of an I/O error on `path` while doing `action`.
pub(super) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> ContainerError {
    let path = path.to_owned();
    move |source| ContainerError::Io {
        action,
        path,
        source,
    }
}

/// Removes `path` and everything below it; a missing path is not an error.
pub(super) fn remove_tree(path: &Path) -> Result<(), ContainerError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Removes the file `path`; a missing file is not an error.
pub(super) fn remove_file(path: &Path) -> Result<(), ContainerError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Removes the log file and its rotated copies (`.1`, `.2`, ...).
pub(super) fn remove_logs(log: &Path) -> Result<(), ContainerError> {
    remove_file(log)?;
    for n in 1.. {
        let mut rotated = log.as_os_str().to_owned();
        rotated.push(format!(".{n}"));
        let rotated = PathBuf::from(rotated);
        if std::fs::symlink_metadata(&rotated).is_err() {
            break;
        }
        remove_file(&rotated)?;
    }
    Ok(())
}

/// Whether anything is mounted at or below `path`, from `/proc/self/mountinfo` (a device
/// comparison would miss the copy snapshotter's bind mounts). Unreadable mountinfo counts as
/// mounted, so that a tree is never removed on a guess.
pub(super) fn is_mount_point(path: &Path) -> bool {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| Path::new(&unescape_mountinfo(point)).starts_with(path))
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn a_log_goes_with_its_rotated_copies() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("web.log");
        for name in ["web.log", "web.log.1", "web.log.2", "other.log"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        remove_logs(&log).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["other.log"]);
    }
}
