//! The on-disk cache of `ADD` results, one file per attachment, as libcni keeps under
//! `/var/lib/cni/results`: `DEL` and `CHECK` after a restart need the result (their
//! `prevResult`), the configuration the network was added with and the runtime arguments.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The directory results are cached in unless another is given.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/testudo/cni/results";

/// What is kept of one successful `ADD`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CacheEntry {
    /// Always `testudoCniCacheV1`.
    pub(crate) kind: String,
    pub(crate) container_id: String,
    pub(crate) network_name: String,
    pub(crate) if_name: String,
    pub(crate) netns: PathBuf,
    pub(crate) cni_args: Vec<(String, String)>,
    pub(crate) capability_args: Map<String, Value>,
    /// The configuration list as it was at `ADD` time.
    pub(crate) config: Value,
    /// The chain's final result.
    pub(crate) result: Value,
}

/// The kind tag of cache entries written by this version.
pub(crate) const CACHE_KIND: &str = "testudoCniCacheV1";

/// A cache entry that could not be read, written or removed.
#[derive(Debug, thiserror::Error)]
pub enum CniCacheError {
    /// A file operation failed.
    #[error("CNI result cache {path}")]
    Io {
        /// The entry's file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file does not hold an entry.
    #[error("CNI result cache {path} is not a cache entry")]
    Parse {
        /// The entry's file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The result cache directory.
#[derive(Debug, Clone)]
pub(crate) struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The entry's file: `<network>-<container id>-<ifname>`, all three restricted to
    /// characters that cannot leave the directory.
    pub(crate) fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{network}-{container_id}-{ifname}"))
    }

    pub(crate) fn load(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CacheEntry>, CniCacheError> {
        let path = self.path(network, container_id, ifname);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CniCacheError::Io { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| CniCacheError::Parse { path, source })
    }

    /// Writes the entry atomically: a temporary file, synced, renamed over the entry.
    pub(crate) fn store(&self, entry: &CacheEntry) -> Result<(), CniCacheError> {
        let path = self.path(&entry.network_name, &entry.container_id, &entry.if_name);
        let io_err = |source| CniCacheError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(io_err)?;
        let bytes = serde_json::to_vec(entry).map_err(|source| CniCacheError::Parse {
            path: path.clone(),
            source,
        })?;
        let mut temp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io_err)?;
        temp.write_all(&bytes).map_err(io_err)?;
        temp.as_file().sync_all().map_err(io_err)?;
        temp.persist(&path).map_err(|e| io_err(e.error))?;
        sync_dir(&self.dir).map_err(io_err)
    }

    /// Removes the entry; a missing one is no error.
    pub(crate) fn remove(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<(), CniCacheError> {
        let path = self.path(network, container_id, ifname);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CniCacheError::Io { path, source }),
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}
