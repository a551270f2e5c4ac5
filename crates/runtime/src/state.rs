//! The state directory: one directory per container under the runtime root, holding `state.json`
//! (what the runtime knows about the container), `config.json` (the spec it was created from) and
//! `exec.fifo` (present until the container is started).
//!
//! Every write is a temp file plus `rename`, so a crash leaves either the old or the new record; a lock
//! file serialises the verbs that change a container. A record is written before the container's init
//! exists (phase `creating`, with the creating process's pid), so `delete --force` can always find what a
//! crashed `create` left behind.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::id::ContainerId;
use crate::plan::HookPlan;

const RECORD: &str = "state.json";
const CONFIG: &str = "config.json";
const FIFO: &str = "exec.fifo";
const LOCK: &str = "lock";

/// Errors reading or changing the state directory.
#[derive(Debug, Error)]
pub enum StateError {
    /// No state directory exists for the id.
    #[error("container \"{0}\" does not exist")]
    NotExist(String),
    /// A container with this id exists already.
    #[error("container with id exists: {0}")]
    AlreadyExists(String),
    /// A file of the state directory could not be read or written.
    #[error("state file {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A state file holds something that is not a valid record.
    #[error("corrupt state file {path}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How far `create` got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `create` is running (or died) before the init reported ready.
    Creating,
    /// The init is set up and waits for `start` (or has been started since).
    Created,
}

/// What the runtime records about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The container id.
    pub id: String,
    /// The `ociVersion` of the spec it was created from.
    pub oci_version: String,
    /// Absolute path of the bundle.
    pub bundle: PathBuf,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
    /// How far creation got.
    pub phase: Phase,
    /// Host pid of the container's init, 0 before it exists.
    pub pid: i32,
    /// Start time of the init (field 22 of `/proc/<pid>/stat`), to tell it from a reused pid.
    pub pid_start: u64,
    /// Pid of the `create` process, to tell a running creation from a crashed one.
    pub creator_pid: i32,
    /// Start time of the `create` process.
    pub creator_start: u64,
    /// Creation time, RFC 3339 with nanoseconds.
    pub created: String,
    /// The container's cgroup manager, as `testudo-cgroups` serialises it.
    pub cgroup: serde_json::Value,
    /// The spec's annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The spec's poststart hooks, kept here so that `start` need not parse the spec.
    #[serde(default)]
    pub poststart: Vec<HookPlan>,
    /// The spec's poststop hooks, kept here so that `delete` need not parse the spec.
    #[serde(default)]
    pub poststop: Vec<HookPlan>,
}

/// The root directory under which each container has its state directory.
#[derive(Debug, Clone)]
pub struct StateRoot {
    root: PathBuf,
}

impl StateRoot {
    /// A state root at `root` (created on first use, mode 0700).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Creates the state directory of a new container and takes its lock.
    pub fn create(&self, id: &ContainerId) -> Result<ContainerDir, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io_err(&self.root))?;
        let path = self.root.join(id.as_str());
        match fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StateError::AlreadyExists(id.to_string()))
            }
            Err(err) => return Err(io_err(&path)(err)),
        }
        let dir = ContainerDir {
            id: id.clone(),
            path,
            _lock: None,
        };
        dir.locked()
    }

    /// Opens the state directory of an existing container, without locking it.
    pub fn open(&self, id: &ContainerId) -> Result<ContainerDir, StateError> {
        let path = self.root.join(id.as_str());
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Ok(ContainerDir {
                id: id.clone(),
                path,
                _lock: None,
            }),
            Ok(_) => Err(StateError::NotExist(id.to_string())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                Err(StateError::NotExist(id.to_string()))
            }
            Err(err) => Err(io_err(&path)(err)),
        }
    }

    /// The ids of every container with a state directory, sorted.
    pub fn list(&self) -> Result<Vec<ContainerId>, StateError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io_err(&self.root)(err)),
        };
        let mut ids: Vec<ContainerId> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| ContainerId::new(n).ok())
            })
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// One container's state directory, locked when obtained through [`ContainerDir::locked`].
#[derive(Debug)]
pub struct ContainerDir {
    id: ContainerId,
    path: PathBuf,
    _lock: Option<File>,
}

impl ContainerDir {
    /// The container id.
    pub fn id(&self) -> &ContainerId {
        &self.id
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the container's exclusive lock, waiting for other verbs to finish with it.
    pub fn locked(mut self) -> Result<Self, StateError> {
        let path = self.path.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .mode(0o600)
            .open(&path)
            .map_err(|err| match err.kind() {
                io::ErrorKind::NotFound => StateError::NotExist(self.id.to_string()),
                _ => io_err(&path)(err),
            })?;
        flock(&file, FlockOperation::LockExclusive).map_err(|e| io_err(&path)(e.into()))?;
        self._lock = Some(file);
        if !self.path.is_dir() {
            // Deleted by the verb that held the lock before us.
            return Err(StateError::NotExist(self.id.to_string()));
        }
        Ok(self)
    }

    /// Reads the container's record; `Ok(None)` if `create` died before writing one.
    pub fn record(&self) -> Result<Option<ContainerRecord>, StateError> {
        let path = self.path.join(RECORD);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_err(&path)(err)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path, source })
    }

    /// Replaces the container's record atomically.
    pub fn write_record(&self, record: &ContainerRecord) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(record).map_err(|source| StateError::Corrupt {
            path: self.path.join(RECORD),
            source,
        })?;
        self.write_atomic(RECORD, &bytes)
    }

    /// Stores the spec the container was created from.
    pub fn write_config(&self, bytes: &[u8]) -> Result<(), StateError> {
        self.write_atomic(CONFIG, bytes)
    }

    /// Path of the stored spec.
    pub fn config_path(&self) -> PathBuf {
        self.path.join(CONFIG)
    }

    /// Path of the fifo that the init blocks on until `start`.
    pub fn fifo_path(&self) -> PathBuf {
        self.path.join(FIFO)
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let target = self.path.join(name);
        let temp = self.path.join(format!(".{name}.tmp"));
        let mut file = File::create(&temp).map_err(io_err(&temp))?;
        file.write_all(bytes).map_err(io_err(&temp))?;
        drop(file);
        fs::rename(&temp, &target).map_err(io_err(&target))
    }

    /// Removes the state directory and everything in it.
    pub fn remove(&self) -> Result<(), StateError> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_err(&self.path)(err)),
        }
    }
}

/// A process's state letter and start time from `/proc/<pid>/stat`; `None` if it does not exist.
pub fn process_stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<(char, u64)> {
    // The command name (field 2) may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // starttime is field 22 overall, the 20th after the state field.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// True if `pid` is a live (not zombie, not dead) process that started at `start`.
pub fn process_alive(pid: i32, start: u64) -> bool {
    pid > 0
        && matches!(process_stat(pid), Some((state, s)) if s == start && state != 'Z' && state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_command_name() {
        let line = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 987_654)));
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = i32::try_from(std::process::id()).expect("pid fits");
        let (_, start) = process_stat(pid).expect("own stat");
        assert!(process_alive(pid, start));
        assert!(!process_alive(pid, start + 1));
    }

    #[test]
    fn create_refuses_an_existing_id_and_open_reports_missing_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = StateRoot::new(tmp.path().join("root"));
        let id = ContainerId::new("c1").expect("id");
        let dir = root.create(&id).expect("create");
        assert!(matches!(
            root.create(&id),
            Err(StateError::AlreadyExists(_))
        ));
        drop(dir);
        let missing = ContainerId::new("nope").expect("id");
        let err = root.open(&missing).expect_err("missing");
        assert_eq!(err.to_string(), "container \"nope\" does not exist");
        assert_eq!(root.list().expect("list"), vec![id]);
    }
}
