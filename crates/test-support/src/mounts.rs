//! The host's mount table (`/proc/self/mountinfo`), and unmounting what a harness left.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::command::output_within;

/// One line of mountinfo, reduced to what the harness needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Unique id of the mount; a mount made again at the same place gets a new one.
    pub(crate) id: u64,
    pub(crate) mount_point: PathBuf,
    pub(crate) fs_type: String,
}

/// The mounts of this process's mount namespace; empty when mountinfo cannot be read.
pub(crate) fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| parse_mountinfo(&text))
        .unwrap_or_default()
}

pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

// Fields: id parent major:minor root mount-point options [optional...] - fstype source super-options
fn parse_line(line: &str) -> Option<Mount> {
    let mut fields = line.split(' ');
    let id = fields.next()?.parse().ok()?;
    let mount_point = unescape(fields.nth(3)?);
    let fs_type = fields.skip_while(|f| *f != "-").nth(1)?.to_owned();
    Some(Mount {
        id,
        mount_point: PathBuf::from(mount_point),
        fs_type,
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts every mount at or under `dir`, deepest first. Best effort, for drops.
pub(crate) fn unmount_under(dir: &Path) {
    let mut points: Vec<PathBuf> = mounts()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    // Stacked mounts appear once per layer, and each needs its own unmount.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let _ = output_within(
            Command::new("umount").arg("-l").arg(&point),
            Duration::from_secs(30),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed() {
        let text = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
44 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw
51 27 0:40 / /tmp/with\\040space rw master:2 shared:3 - tmpfs tmpfs rw
";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].id, 22);
        assert_eq!(mounts[0].mount_point, Path::new("/proc"));
        assert_eq!(mounts[1].fs_type, "ext4");
        assert_eq!(mounts[2].mount_point, Path::new("/tmp/with space"));
        assert_eq!(mounts[2].fs_type, "tmpfs");
    }

    #[test]
    fn own_mount_table_has_the_root() {
        assert!(mounts().iter().any(|m| m.mount_point == Path::new("/")));
    }
}
