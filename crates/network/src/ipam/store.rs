//! A JSON file holding an [`IpamState`], for use before the daemon's database holds it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use super::{IpamError, IpamState};

/// A failed read or update of an IPAM state file.
#[derive(Debug, thiserror::Error)]
pub enum IpamStoreError {
    /// The lock file could not be opened or locked.
    #[error("lock IPAM state {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The state file could not be read.
    #[error("read IPAM state {path}")]
    Read {
        /// The state file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The state file does not hold a valid state.
    #[error("parse IPAM state {path}")]
    Parse {
        /// The state file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The new state could not be written.
    #[error("write IPAM state {path}")]
    Write {
        /// The state file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The update was refused; the file is unchanged.
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

/// An [`IpamState`] kept in a JSON file, read and replaced under an exclusive `flock` on a
/// sibling `.lock` file (the state file itself is replaced by rename, so it cannot carry the
/// lock). A missing file is the empty state.
#[derive(Debug, Clone)]
pub struct IpamStore {
    path: PathBuf,
}

impl IpamStore {
    /// The state at `path`; its directory must exist.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self, operation: FlockOperation) -> Result<fs::File, IpamStoreError> {
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock_error = |source| IpamStoreError::Lock {
            path: lock_path.clone(),
            source,
        };
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(lock_error)?;
        rustix::fs::flock(&file, operation).map_err(|e| lock_error(e.into()))?;
        Ok(file)
    }

    fn read(&self) -> Result<IpamState, IpamStoreError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| IpamStoreError::Parse {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IpamState::default()),
            Err(source) => Err(IpamStoreError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// The current state.
    pub fn load(&self) -> Result<IpamState, IpamStoreError> {
        let _lock = self.lock(FlockOperation::LockShared)?;
        self.read()
    }

    /// Applies `change` to the current state and stores the result atomically (temp file,
    /// fsync, rename); when `change` fails nothing is written.
    ///
    /// One fsync, of the new file before the rename, so that after a crash the file holds
    /// either the old state or the new one, never a torn one. The directory is not synced: a
    /// crash that loses the rename loses the last update, which only a machine crash can do,
    /// and that takes every network namespace (they live under `/run`) and so every lease's
    /// reason to be with it; a daemon that restarts without a reboot sees the rename.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut IpamState) -> Result<T, IpamError>,
    ) -> Result<T, IpamStoreError> {
        let _lock = self.lock(FlockOperation::LockExclusive)?;
        let mut state = self.read()?;
        let result = change(&mut state)?;
        self.write(&state).map_err(|source| IpamStoreError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(result)
    }

    fn write(&self, state: &IpamState) -> io::Result<()> {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut temp = tempfile::Builder::new().prefix(".ipam-").tempfile_in(dir)?;
        // One write: serde_json writes a file token by token, a system call each.
        let mut bytes = serde_json::to_vec_pretty(state)?;
        bytes.push(b'\n');
        temp.write_all(&bytes)?;
        temp.as_file().sync_all()?;
        temp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ipam::Subnets;

    fn subnets() -> Subnets {
        Subnets {
            ipv4: "10.231.0.0/24".parse().unwrap(),
            ipv6: None,
        }
    }

    #[test]
    fn an_update_is_stored_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = IpamStore::new(dir.path().join("ipam.json"));
        assert_eq!(store.load().unwrap(), IpamState::default());
        let lease = store
            .update(|s| {
                s.add_network("n", subnets())?;
                s.allocate("n", "a")
            })
            .unwrap();
        let again = IpamStore::new(dir.path().join("ipam.json"));
        assert_eq!(again.load().unwrap().lease("n", "a"), Some(&lease));
    }

    #[test]
    fn a_refused_update_changes_nothing_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = IpamStore::new(dir.path().join("ipam.json"));
        store.update(|s| s.add_network("n", subnets())).unwrap();
        let before = fs::read(store.path()).unwrap();
        let err = store
            .update(|s| {
                s.allocate("n", "a")?;
                s.allocate("missing", "a")
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "network missing does not exist");
        assert_eq!(fs::read(store.path()).unwrap(), before);
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["ipam.json", "ipam.json.lock"]);
    }

    #[test]
    fn concurrent_updates_never_hand_out_an_address_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = IpamStore::new(dir.path().join("ipam.json"));
        store.update(|s| s.add_network("n", subnets())).unwrap();
        let leases: Vec<_> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let store = store.clone();
                    scope.spawn(move || {
                        (0..10)
                            .map(|i| store.update(|s| s.allocate("n", &format!("{t}-{i}"))))
                            .collect::<Result<Vec<_>, _>>()
                            .unwrap()
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        let unique: std::collections::BTreeSet<_> = leases.iter().map(|l| l.ipv4).collect();
        assert_eq!(unique.len(), 80);
        assert_eq!(store.load().unwrap().pool("n").unwrap().leases.len(), 80);
    }

    #[test]
    fn a_corrupt_file_is_reported_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        fs::write(&path, "{not json").unwrap();
        let err = IpamStore::new(&path).load().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("parse IPAM state {}", path.display())
        );
    }
}
