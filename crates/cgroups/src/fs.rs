//! The thin layer that touches cgroupfs: write plans, read values, make and remove
//! directories, list processes.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::io::Errno;

use crate::path::CgroupDir;
use crate::plan::{CgroupWrite, Controller, IfMissing, OnEinval};
use crate::CgroupError;

/// Writes `value` to `path` in one `write(2)` (`O_WRONLY|O_TRUNC`, as runc).
pub(crate) fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
    file.write_all(value.as_bytes())
}

fn write_error(path: PathBuf, value: &str, source: io::Error) -> CgroupError {
    if source.kind() == ErrorKind::NotFound {
        CgroupError::MissingFile {
            path,
            value: value.to_owned(),
        }
    } else {
        CgroupError::Write {
            path,
            value: value.to_owned(),
            source,
        }
    }
}

/// Writes `value` to `dir/file`, mapping errors to [`CgroupError`].
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    write_raw(&path, value).map_err(|e| write_error(path, value, e))
}

/// Carries out `writes` in order; `dir_of` gives the directory of each controller
/// (`None`: not mounted).
pub(crate) fn apply_writes(
    writes: &[CgroupWrite],
    dir_of: impl Fn(Controller) -> Option<PathBuf>,
) -> Result<(), CgroupError> {
    // Writes refused with EINVAL, to retry after the next success.
    let mut pending: Vec<(PathBuf, &str, io::Error)> = Vec::new();
    for w in writes {
        let dir = dir_of(w.controller).ok_or_else(|| CgroupError::NotMounted {
            controller: w.controller.as_str(),
            file: w.file.clone(),
        })?;
        let path = dir.join(&w.file);
        match write_raw(&path, &w.value) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => match &w.if_missing {
                IfMissing::Fail => return Err(write_error(path, &w.value, e)),
                IfMissing::Skip => continue,
                IfMissing::WriteInstead { file, value } => {
                    let alternative = dir.join(file);
                    match write_raw(&alternative, value) {
                        Ok(()) => {}
                        // Name the file the resource maps to, not the fallback.
                        Err(e) if e.kind() == ErrorKind::NotFound => {
                            return Err(write_error(path, &w.value, e))
                        }
                        Err(e) => return Err(write_error(alternative, value, e)),
                    }
                }
            },
            Err(e)
                if e.raw_os_error() == Some(Errno::INVAL.raw_os_error())
                    && w.on_einval == OnEinval::RetryAfterNext =>
            {
                pending.push((path, &w.value, e));
                continue;
            }
            Err(e) => return Err(write_error(path, &w.value, e)),
        }
        for (path, value, _) in pending.drain(..) {
            write_raw(&path, value).map_err(|e| write_error(path, value, e))?;
        }
    }
    match pending.into_iter().next() {
        Some((path, value, first)) => Err(write_error(path, value, first)),
        None => Ok(()),
    }
}

/// Reads a whole control file.
pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|e| CgroupError::read(path, e))
}

/// Reads a control file, `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CgroupError::read(path, e)),
    }
}

/// Creates every missing level of `dir`; returns the directories it created, shallowest
/// first.
pub(crate) fn mkdir_p(dir: &CgroupDir) -> Result<Vec<PathBuf>, CgroupError> {
    let levels = dir.levels();
    let create_error = |path: &PathBuf, source| CgroupError::Create {
        path: path.clone(),
        source,
    };
    // Walk up from the leaf to the first level that exists (usually the parent: one call).
    let mut i = levels.len();
    let mut created = Vec::new();
    while i > 0 {
        match fs::create_dir(&levels[i - 1]) {
            Ok(()) => {
                created.push(levels[i - 1].clone());
                break;
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => break,
            Err(e) if e.kind() == ErrorKind::NotFound && i > 1 => i -= 1,
            Err(e) => return Err(create_error(&levels[i - 1], e)),
        }
    }
    // levels[i - 1] exists now; create the ones below it.
    for level in &levels[i..] {
        match fs::create_dir(level) {
            Ok(()) => created.push(level.clone()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(create_error(level, e)),
        }
    }
    Ok(created)
}

/// Delays between attempts to remove a busy cgroup: its last task may still be exiting.
const REMOVE_BACKOFF: [Duration; 7] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(4),
    Duration::from_millis(8),
    Duration::from_millis(16),
    Duration::from_millis(32),
    Duration::from_millis(64),
];

/// Removes the cgroup `dir` and every cgroup below it, deepest first. A missing directory
/// is not an error; a busy one is retried briefly.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let mut delays = REMOVE_BACKOFF.iter();
    let mut removed_children = false;
    loop {
        let err = match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => e,
        };
        if !is_busy(&err) {
            return Err(CgroupError::Remove {
                path: dir.to_path_buf(),
                source: err,
            });
        }
        let children = subdirectories(dir)?;
        if !children.is_empty() && !removed_children {
            // Busy because of child cgroups: remove them and retry at once.
            for child in children {
                remove_tree(&child)?;
            }
            removed_children = true;
            continue;
        }
        for child in children {
            remove_tree(&child)?;
        }
        match delays.next() {
            Some(delay) => std::thread::sleep(*delay),
            None => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source: err,
                })
            }
        }
    }
}

/// Removes `dir` if it is empty; leaves it when busy (shared with other cgroups) or gone.
pub(crate) fn remove_if_unused(dir: &Path) -> Result<(), CgroupError> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if is_busy(&e) => Ok(()),
        Err(source) => Err(CgroupError::Remove {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// EBUSY (tasks or child cgroups) or ENOTEMPTY.
fn is_busy(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(Errno::BUSY.raw_os_error()) || code == Some(Errno::NOTEMPTY.raw_os_error())
}

fn subdirectories(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CgroupError::read(dir, e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CgroupError::read(dir, e))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// Appends the pids in `dir/cgroup.procs` and in every cgroup below `dir`.
pub(crate) fn collect_pids(dir: &Path, pids: &mut Vec<i32>) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    let Some(text) = read_optional(&procs)? else {
        // The cgroup vanished while walking.
        return Ok(());
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        let pid = line
            .trim()
            .parse()
            .map_err(|_| CgroupError::parse(&procs, format!("not a pid: {line:?}")))?;
        pids.push(pid);
    }
    for child in subdirectories(dir)? {
        collect_pids(&child, pids)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(root: &Path, rel: &str) -> CgroupDir {
        CgroupDir {
            mount: root.to_path_buf(),
            rel: PathBuf::from(rel),
        }
    }

    #[test]
    fn mkdir_p_reports_only_the_levels_it_created() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::create_dir(tmp.path().join("a")).expect("mkdir");
        let created = mkdir_p(&dir(tmp.path(), "a/b/c")).expect("mkdir_p");
        assert_eq!(created, [tmp.path().join("a/b"), tmp.path().join("a/b/c")]);
        assert!(mkdir_p(&dir(tmp.path(), "a/b/c"))
            .expect("again")
            .is_empty());
        let created = mkdir_p(&dir(tmp.path(), "a/d")).expect("one level");
        assert_eq!(created, [tmp.path().join("a/d")]);
    }

    #[test]
    fn remove_tree_removes_nested_cgroups_and_tolerates_missing_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(tmp.path().join("x/y/z")).expect("mkdir");
        fs::create_dir_all(tmp.path().join("x/w")).expect("mkdir");
        remove_tree(&tmp.path().join("x")).expect("removed");
        assert!(!tmp.path().join("x").exists());
        remove_tree(&tmp.path().join("x")).expect("already gone is fine");
    }

    #[test]
    fn collect_pids_walks_sub_cgroups() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(tmp.path().join("sub")).expect("mkdir");
        fs::write(tmp.path().join("cgroup.procs"), "1\n2\n").expect("write");
        fs::write(tmp.path().join("sub/cgroup.procs"), "3\n").expect("write");
        let mut pids = Vec::new();
        collect_pids(tmp.path(), &mut pids).expect("pids");
        pids.sort_unstable();
        assert_eq!(pids, [1, 2, 3]);
    }

    fn plan_write(file: &str, value: &str) -> CgroupWrite {
        CgroupWrite::new(Controller::Memory, file, value)
    }

    #[test]
    fn apply_writes_follows_if_missing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("alt"), "").expect("write");
        let root = tmp.path().to_path_buf();
        let dir_of = |_| Some(root.clone());
        let writes = [
            plan_write("absent", "1").if_missing(IfMissing::Skip),
            plan_write("absent", "2").if_missing(IfMissing::WriteInstead {
                file: "alt".into(),
                value: "3".into(),
            }),
        ];
        apply_writes(&writes, dir_of).expect("applied");
        assert_eq!(
            fs::read_to_string(tmp.path().join("alt")).expect("read"),
            "3"
        );

        let err = apply_writes(&[plan_write("blkio.weight", "500")], dir_of).expect_err("missing");
        let message = err.to_string();
        assert!(
            message.contains("blkio.weight") && message.contains("\"500\""),
            "{message}"
        );

        let both_missing = [
            plan_write("blkio.weight", "5").if_missing(IfMissing::WriteInstead {
                file: "blkio.bfq.weight".into(),
                value: "5".into(),
            }),
        ];
        let err = apply_writes(&both_missing, dir_of).expect_err("missing");
        assert!(
            matches!(&err, CgroupError::MissingFile { path, .. } if path.ends_with("blkio.weight"))
        );
    }

    #[test]
    fn unmounted_controller_is_named_in_the_error() {
        let writes = [CgroupWrite::new(Controller::NetCls, "net_cls.classid", 1)];
        let err = apply_writes(&writes, |_| None).expect_err("not mounted");
        assert_eq!(
            err.to_string(),
            "cannot set net_cls.classid: cgroup controller net_cls is not mounted"
        );
    }

    #[test]
    fn write_errors_name_the_file_and_the_value() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // A directory cannot be opened for writing: EISDIR stands in for EINVAL/EBUSY.
        fs::create_dir(tmp.path().join("memory.limit_in_bytes")).expect("mkdir");
        let err = write(tmp.path(), "memory.limit_in_bytes", "4096").expect_err("refused");
        let message = err.to_string();
        assert!(
            message.starts_with("failed to write \"4096\" to "),
            "{message}"
        );
        assert!(message.ends_with("memory.limit_in_bytes"), "{message}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
