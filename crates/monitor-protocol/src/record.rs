//! Where the monitor keeps each container's record in its state directory, and reading it back.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::ContainerRecord;

/// The directory of the state directory that holds one `<id>.json` per container.
pub const RECORD_DIR: &str = "containers";

/// Why a record could not be read.
#[derive(Debug, Error)]
pub enum RecordError {
    /// The file could not be read.
    #[error("read container record {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file holds no valid record.
    #[error("corrupt container record {path}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The record file of container `id` under the monitor's state directory.
pub fn record_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join(RECORD_DIR).join(format!("{id}.json"))
}

/// Container `id`'s record; `Ok(None)` if there is none.
pub fn read_record(state_dir: &Path, id: &str) -> Result<Option<ContainerRecord>, RecordError> {
    read_file(&record_path(state_dir, id))
}

/// Every record under the state directory, sorted by id. Temporary files of an interrupted write
/// are not records and are skipped.
pub fn read_records(state_dir: &Path) -> Result<Vec<ContainerRecord>, RecordError> {
    let dir = state_dir.join(RECORD_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RecordError::Io { path: dir, source }),
    };
    let mut records = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| RecordError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name();
        let is_record = name.to_str().is_some_and(|n| n.ends_with(".json"));
        if is_record {
            records.extend(read_file(&entry.path())?);
        }
    }
    records.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(records)
}

fn read_file(path: &Path) -> Result<Option<ContainerRecord>, RecordError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RecordError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| RecordError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::SystemTime;

    use super::*;
    use crate::{ContainerStatus, ExitStatus, Termination};

    fn record(id: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            pid: 42,
            status: ContainerStatus::Stopped,
            bundle: "/b".into(),
            log_path: "/l".into(),
            created_at: SystemTime::UNIX_EPOCH,
            started_at: None,
            exit: Some(ExitStatus {
                termination: Termination::Exited(7),
                at: SystemTime::UNIX_EPOCH,
            }),
        }
    }

    #[test]
    fn records_are_listed_by_id_and_temporary_files_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join(RECORD_DIR)).unwrap();
        for id in ["b", "a"] {
            let json = serde_json::to_vec(&record(id)).unwrap();
            std::fs::write(record_path(tmp.path(), id), json).unwrap();
        }
        std::fs::write(tmp.path().join(RECORD_DIR).join(".c.json.tmp"), b"{").unwrap();
        let ids: Vec<String> = read_records(tmp.path())
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(read_record(tmp.path(), "b").unwrap(), Some(record("b")));
        assert_eq!(read_record(tmp.path(), "zz").unwrap(), None);
    }
}
