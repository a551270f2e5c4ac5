//! The state both snapshotters share: numbered snapshot directories under a root, the metadata
//! file that maps keys to them, and the lock that serialises changes.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::{SnapshotError, SnapshotInfo, SnapshotKey, SnapshotKind};

const METADATA: &str = "metadata.json";
const METADATA_TEMP: &str = "metadata.json.tmp";
const LOCK: &str = "lock";
const SNAPSHOTS: &str = "snapshots";
const METADATA_VERSION: u32 = 1;

/// One snapshot's record in the metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    id: u64,
    parent: Option<SnapshotKey>,
    kind: SnapshotKind,
    created: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Metadata {
    version: u32,
    /// The id the next snapshot gets; ids are never reused while their record exists.
    next_id: u64,
    snapshots: BTreeMap<SnapshotKey, Record>,
}

impl Default for Metadata {
    fn default() -> Metadata {
        Metadata {
            version: METADATA_VERSION,
            next_id: 1,
            snapshots: BTreeMap::new(),
        }
    }
}

impl Metadata {
    fn get(&self, key: &SnapshotKey) -> Result<&Record, SnapshotError> {
        self.snapshots
            .get(key)
            .ok_or_else(|| SnapshotError::NotFound {
                key: key.to_string(),
            })
    }

    /// The ids of `record`'s ancestors, nearest first.
    fn ancestors(&self, key: &SnapshotKey, record: &Record) -> Result<Vec<u64>, SnapshotError> {
        let mut ids = Vec::new();
        let mut child = key;
        let mut parent = record.parent.as_ref();
        while let Some(parent_key) = parent {
            let parent_record =
                self.snapshots
                    .get(parent_key)
                    .ok_or_else(|| SnapshotError::BrokenChain {
                        key: child.to_string(),
                        parent: parent_key.to_string(),
                    })?;
            // A cycle can only come from a hand-edited file; it must not hang the caller.
            if ids.len() > self.snapshots.len() {
                return Err(SnapshotError::BrokenChain {
                    key: child.to_string(),
                    parent: parent_key.to_string(),
                });
            }
            ids.push(parent_record.id);
            child = parent_key;
            parent = parent_record.parent.as_ref();
        }
        Ok(ids)
    }

    fn children(&self, key: &SnapshotKey) -> Vec<String> {
        self.snapshots
            .iter()
            .filter(|(_, r)| r.parent.as_ref() == Some(key))
            .map(|(k, _)| k.to_string())
            .collect()
    }
}

/// A snapshot found in the metadata, with what its mounts are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) kind: SnapshotKind,
    pub(crate) id: u64,
    /// The ids of its ancestors, nearest first.
    pub(crate) ancestors: Vec<u64>,
}

/// An exclusive `flock` on `root/lock`, released when dropped.
struct Lock {
    _file: File,
}

/// A snapshotter's root directory.
#[derive(Debug)]
pub(crate) struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the state under `root`, which is made absolute because mount
    /// sources are given to the kernel as absolute paths.
    pub(crate) fn open(root: &Path) -> Result<Store, SnapshotError> {
        // Mount sources are strings.
        if root.to_str().is_none() {
            return Err(SnapshotError::InvalidRoot {
                root: root.to_owned(),
                reason: "it is not UTF-8",
            });
        }
        fs::create_dir_all(root).map_err(SnapshotError::io("create", root))?;
        let root = fs::canonicalize(root).map_err(SnapshotError::io("resolve", root))?;
        let snapshots = root.join(SNAPSHOTS);
        // Private: layers hold setuid binaries and device nodes that unprivileged users must not
        // reach through the host's file system.
        match DirBuilder::new().mode(0o700).create(&snapshots) {
            Ok(()) => fs::set_permissions(&snapshots, fs::Permissions::from_mode(0o700))
                .map_err(SnapshotError::io("set permissions of", &snapshots))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(SnapshotError::io("create", &snapshots)(e)),
        }
        Ok(Store { root })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.root.join(SNAPSHOTS).join(id.to_string())
    }

    /// A snapshot's file tree: the upper directory (overlay) or the whole tree (copy).
    pub(crate) fn fs_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join("fs")
    }

    /// overlayfs's work directory of an active snapshot.
    pub(crate) fn work_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join("work")
    }

    fn lock(&self) -> Result<Lock, SnapshotError> {
        let path = self.root.join(LOCK);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(SnapshotError::io("open", &path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| SnapshotError::io("lock", &path)(e.into()))?;
        Ok(Lock { _file: file })
    }

    /// Reads the metadata; readers need no lock because it is replaced by rename.
    fn load(&self) -> Result<Metadata, SnapshotError> {
        let path = self.root.join(METADATA);
        match fs::read(&path) {
            Ok(bytes) => {
                let metadata: Metadata = serde_json::from_slice(&bytes).map_err(|source| {
                    SnapshotError::CorruptMetadata {
                        path: path.clone(),
                        source,
                    }
                })?;
                if metadata.version != METADATA_VERSION {
                    return Err(SnapshotError::UnknownVersion {
                        path,
                        version: metadata.version,
                    });
                }
                Ok(metadata)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Metadata::default()),
            Err(e) => Err(SnapshotError::io("read", path)(e)),
        }
    }

    fn save(&self, metadata: &Metadata, _lock: &Lock) -> Result<(), SnapshotError> {
        let path = self.root.join(METADATA);
        let temp = self.root.join(METADATA_TEMP);
        let bytes = serde_json::to_vec_pretty(metadata).map_err(|source| {
            SnapshotError::CorruptMetadata {
                path: path.clone(),
                source,
            }
        })?;
        let written = File::create(&temp)
            .and_then(|mut file| {
                file.write_all(&bytes)?;
                file.sync_all()
            })
            .map_err(SnapshotError::io("write", &temp));
        if let Err(e) = written
            .and_then(|()| fs::rename(&temp, &path).map_err(SnapshotError::io("rename", &temp)))
        {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(SnapshotError::io("sync", &self.root))
    }

    /// Records a new snapshot. `populate` fills its directory (which holds an empty `fs/`),
    /// given the new id and the ancestors' ids; if it fails, the directory is removed and
    /// nothing is recorded.
    pub(crate) fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: SnapshotKind,
        populate: impl FnOnce(u64, &[u64]) -> Result<(), SnapshotError>,
    ) -> Result<Resolved, SnapshotError> {
        let key = SnapshotKey::parse(key)?;
        let parent = parent.map(SnapshotKey::parse).transpose()?;
        let lock = self.lock()?;
        let mut metadata = self.load()?;
        if metadata.snapshots.contains_key(&key) {
            return Err(SnapshotError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let record = Record {
            id: metadata.next_id,
            parent,
            kind,
            created: SystemTime::now(),
        };
        if let Some(parent) = &record.parent {
            let parent_record = metadata.get(parent)?;
            if parent_record.kind != SnapshotKind::Committed {
                return Err(SnapshotError::ParentNotCommitted {
                    parent: parent.to_string(),
                    kind: parent_record.kind,
                });
            }
        }
        let ancestors = metadata.ancestors(&key, &record)?;

        let dir = self.snapshot_dir(record.id);
        // Under the lock, a directory with an unrecorded id is a crash's leftover.
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(SnapshotError::io("remove", &dir))?;
        }
        let made = fs::create_dir(&dir)
            .and_then(|()| fs::create_dir(self.fs_dir(record.id)))
            .map_err(SnapshotError::io("create", &dir))
            .and_then(|()| populate(record.id, &ancestors));
        let resolved = Resolved {
            kind,
            id: record.id,
            ancestors,
        };
        metadata.next_id += 1;
        metadata.snapshots.insert(key, record);
        if let Err(e) = made.and_then(|()| self.save(&metadata, &lock)) {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(resolved)
    }

    /// Finds `key` and its ancestors.
    pub(crate) fn resolve(&self, key: &str) -> Result<Resolved, SnapshotError> {
        let key = SnapshotKey::parse(key)?;
        let metadata = self.load()?;
        let record = metadata.get(&key)?;
        Ok(Resolved {
            kind: record.kind,
            id: record.id,
            ancestors: metadata.ancestors(&key, record)?,
        })
    }

    /// The `fs/` of an active snapshot, refusing other kinds.
    pub(crate) fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        let resolved = self.resolve(key)?;
        if resolved.kind != SnapshotKind::Active {
            return Err(SnapshotError::WrongKind {
                key: key.to_owned(),
                kind: resolved.kind,
                operation: "unpack into",
            });
        }
        Ok(self.fs_dir(resolved.id))
    }

    pub(crate) fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
        let name = SnapshotKey::parse(name)?;
        let key = SnapshotKey::parse(key)?;
        let lock = self.lock()?;
        let mut metadata = self.load()?;
        let record = metadata.get(&key)?;
        if record.kind != SnapshotKind::Active {
            return Err(SnapshotError::WrongKind {
                key: key.to_string(),
                kind: record.kind,
                operation: "commit",
            });
        }
        if metadata.snapshots.contains_key(&name) {
            return Err(SnapshotError::AlreadyExists {
                key: name.to_string(),
            });
        }
        let mut record = record.clone();
        record.kind = SnapshotKind::Committed;
        let id = record.id;
        metadata.snapshots.remove(&key);
        metadata.snapshots.insert(name, record);
        self.save(&metadata, &lock)?;
        // Only an active overlay snapshot has a work directory, and it is never mounted again.
        // The commit has happened: a work directory that stays is harmless and goes with the
        // snapshot's directory, so failing to remove it is not the commit's failure.
        let _ = fs::remove_dir_all(self.work_dir(id));
        Ok(())
    }

    /// Removes `key`'s record, then its directory: a crash in between leaves only a directory
    /// without a record.
    pub(crate) fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        let key = SnapshotKey::parse(key)?;
        let lock = self.lock()?;
        let mut metadata = self.load()?;
        let id = metadata.get(&key)?.id;
        let children = metadata.children(&key);
        if !children.is_empty() {
            return Err(SnapshotError::HasChildren {
                key: key.to_string(),
                children,
            });
        }
        metadata.snapshots.remove(&key);
        self.save(&metadata, &lock)?;
        let dir = self.snapshot_dir(id);
        fs::remove_dir_all(&dir).map_err(SnapshotError::io("remove", &dir))
    }

    pub(crate) fn stat(&self, key: &str) -> Result<SnapshotInfo, SnapshotError> {
        let key = SnapshotKey::parse(key)?;
        let metadata = self.load()?;
        Ok(info(&key, metadata.get(&key)?))
    }

    pub(crate) fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        let metadata = self.load()?;
        Ok(metadata.snapshots.iter().map(|(k, r)| info(k, r)).collect())
    }

    /// Removes snapshot directories without a record and a leftover metadata temp file.
    pub(crate) fn cleanup(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        let lock = self.lock()?;
        let metadata = self.load()?;
        let recorded: HashSet<String> = metadata
            .snapshots
            .values()
            .map(|r| r.id.to_string())
            .collect();
        let snapshots = self.root.join(SNAPSHOTS);
        let mut removed = Vec::new();
        let entries = fs::read_dir(&snapshots).map_err(SnapshotError::io("read", &snapshots))?;
        for entry in entries {
            let entry = entry.map_err(SnapshotError::io("read", &snapshots))?;
            if recorded.contains(entry.file_name().to_string_lossy().as_ref()) {
                continue;
            }
            let path = entry.path();
            let gone = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            gone.map_err(SnapshotError::io("remove", &path))?;
            removed.push(path);
        }
        let temp = self.root.join(METADATA_TEMP);
        match fs::remove_file(&temp) {
            Ok(()) => removed.push(temp),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SnapshotError::io("remove", temp)(e)),
        }
        drop(lock);
        removed.sort();
        Ok(removed)
    }
}

fn info(key: &SnapshotKey, record: &Record) -> SnapshotInfo {
    SnapshotInfo {
        key: key.to_string(),
        parent: record.parent.as_ref().map(ToString::to_string),
        kind: record.kind,
        created: record.created,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(s: &str) -> SnapshotKey {
        SnapshotKey::parse(s).unwrap()
    }

    fn record(id: u64, parent: Option<&str>) -> Record {
        Record {
            id,
            parent: parent.map(key),
            kind: SnapshotKind::Committed,
            created: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn ancestors_are_listed_nearest_first() {
        let mut metadata = Metadata::default();
        metadata.snapshots.insert(key("base"), record(1, None));
        metadata
            .snapshots
            .insert(key("mid"), record(2, Some("base")));
        metadata
            .snapshots
            .insert(key("top"), record(7, Some("mid")));
        let top = metadata.get(&key("top")).unwrap().clone();
        assert_eq!(metadata.ancestors(&key("top"), &top).unwrap(), vec![2, 1]);
        assert_eq!(metadata.children(&key("base")), vec!["mid".to_owned()]);
    }

    #[test]
    fn a_missing_or_cyclic_parent_is_reported_not_followed_forever() {
        let mut metadata = Metadata::default();
        metadata.snapshots.insert(key("a"), record(1, Some("b")));
        metadata.snapshots.insert(key("b"), record(2, Some("a")));
        let a = metadata.get(&key("a")).unwrap().clone();
        assert!(matches!(
            metadata.ancestors(&key("a"), &a),
            Err(SnapshotError::BrokenChain { .. })
        ));
        let orphan = record(3, Some("gone"));
        let err = metadata.ancestors(&key("c"), &orphan).unwrap_err();
        assert_eq!(
            err.to_string(),
            "snapshot metadata is inconsistent: parent \"gone\" of \"c\" has no record"
        );
    }

    #[test]
    fn metadata_round_trips_through_json() {
        let mut metadata = Metadata::default();
        metadata
            .snapshots
            .insert(key("sha256:abc"), record(4, None));
        let json = serde_json::to_string(&metadata).unwrap();
        assert!(json.contains("\"kind\":\"committed\""));
        let back: Metadata = serde_json::from_str(&json).unwrap();
        assert_eq!(back, metadata);
    }
}
