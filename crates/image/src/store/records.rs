//! Image records: the names that keep blobs alive, kept in one atomically replaced file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use oci_spec::image::{Descriptor, MediaType};
use serde::{Deserialize, Serialize};

use super::{io_error, sync_dir, StoreError};
use crate::digest::{Digest, DigestError};

/// What an image name points at: the root manifest or index, as a descriptor describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageTarget {
    /// The media type of the manifest or index.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

impl ImageTarget {
    /// The target of a descriptor, with its digest validated.
    pub fn from_descriptor(descriptor: &Descriptor) -> Result<ImageTarget, DigestError> {
        Ok(ImageTarget {
            media_type: descriptor.media_type().to_string(),
            digest: Digest::try_from(descriptor.digest())?,
            size: descriptor.size(),
        })
    }

    /// A descriptor of the target, without annotations or platform.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            MediaType::from(self.media_type.as_str()),
            self.size,
            &self.digest,
        )
    }
}

/// A named image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image's name; opaque to the store (callers store the canonical reference).
    pub name: String,
    /// The manifest or index the name points at.
    pub target: ImageTarget,
    /// When the record was made, RFC 3339 in UTC (`2024-05-01T12:00:00Z`).
    pub created: String,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl ImageRecord {
    /// A record created now, without labels.
    pub fn new(name: impl Into<String>, target: ImageTarget) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            target,
            created: rfc3339_utc(SystemTime::now()),
            labels: BTreeMap::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RecordsFile {
    images: Vec<ImageRecord>,
}

/// Every record in the file, sorted by name; a missing file holds none.
pub(super) fn read(path: &Path) -> Result<Vec<ImageRecord>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("read", path)(e)),
    };
    let file: RecordsFile =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Records {
            path: path.to_owned(),
            source,
        })?;
    let mut images = file.images;
    images.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(images)
}

/// Replaces the file with `images`: temp file in the same directory, fsync, rename, fsync the
/// directory, so a crash leaves either the old or the new records. Callers hold the records lock,
/// which is why one temp name per process suffices.
pub(super) fn write(path: &Path, mut images: Vec<ImageRecord>) -> Result<(), StoreError> {
    images.sort_by(|a, b| a.name.cmp(&b.name));
    let mut bytes = serde_json::to_vec_pretty(&RecordsFile { images }).map_err(|source| {
        StoreError::Records {
            path: path.to_owned(),
            source,
        }
    })?;
    bytes.push(b'\n');
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = dir.join(format!(".images.json.tmp-{}", std::process::id()));
    let written = File::create(&temp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .map_err(io_error("write", &temp))
        .and_then(|()| fs::rename(&temp, path).map_err(io_error("rename", &temp)));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    sync_dir(dir)
}

/// `time` as RFC 3339 in UTC, to the second (`humantime`: the one formatter the workspace
/// shares, rather than calendar arithmetic in every crate that writes a timestamp).
pub(crate) fn rfc3339_utc(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(seconds: u64) -> String {
        rfc3339_utc(UNIX_EPOCH + Duration::from_secs(seconds))
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn records_round_trip_through_the_file_sorted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.json");
        let target = ImageTarget {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: Digest::of(b"m"),
            size: 1,
        };
        let mut b = ImageRecord::new("b", target.clone());
        b.labels.insert("k".into(), "v".into());
        let a = ImageRecord::new("a", target);
        write(&path, vec![b.clone(), a.clone()]).unwrap();
        assert_eq!(read(&path).unwrap(), vec![a, b]);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["images.json"], "no temp file is left");
    }

    #[test]
    fn a_missing_records_file_holds_no_images_and_a_corrupt_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.json");
        assert!(read(&path).unwrap().is_empty());
        fs::write(&path, b"{not json").unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.to_string().contains("are corrupt"), "{err}");
    }

    #[test]
    fn targets_convert_to_and_from_descriptors() {
        let target = ImageTarget {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            digest: Digest::of(b"i"),
            size: 7,
        };
        assert_eq!(
            ImageTarget::from_descriptor(&target.descriptor()).unwrap(),
            target
        );
    }
}
