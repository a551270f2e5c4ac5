//! The daemon's state database: namespaces (tenants) and the containers and image references
//! they hold, with a schema version and migrations from the first release.
//!
//! Why redb: an embedded, pure-Rust key-value store with ACID transactions over copy-on-write
//! B-trees (a crash at any point leaves the last committed state, with no recovery step and no
//! write-ahead log to replay), a single file, and no C toolchain in the build, unlike SQLite.
//! The engine's queries are lookups by key and scans of one namespace, which a sorted key
//! space serves directly; nothing here needs SQL.
//!
//! Layout: values are JSON (readable with any redb tool, and tolerant of added fields);
//! container keys are `(namespace, id)` so that one namespace is one contiguous range, and a
//! second table maps `(namespace, name)` to the id so names are unique per namespace. Image
//! references are keyed `(namespace, canonical name)` and hold the content store's
//! [`ImageRecord`] (target descriptor, creation time, labels): the content they name is shared
//! by every namespace, the names are not.
//!
//! Networks (node-level objects, not a namespace's) live in three more tables (the `networks`
//! submodule): their records by name, IPAM leases keyed `(network, owner)`, and each container's
//! attachment by container id; a change to them is one transaction over the three, so a lease
//! never exists without its attachment or the other way round.
//!
//! Cells (groups of containers sharing a monitor and a network namespace) are keyed
//! `(namespace, name)` in their own table (the `cells` submodule); a container names its cell
//! by id.
//!
//! Schema versions: 1 namespaces and containers; 2 adds image references (the image service
//! moves the content store's older global records into `default` when it opens); 3 adds
//! networks, leases and attachments; 4 adds cells.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use testudo_image::store::ImageRecord;

use crate::error::{ErrorKind, Kind};

mod cells;
mod networks;

pub use cells::CellRecord;
pub use networks::{AttachmentKind, AttachmentRecord, NetworkRecord, NetworkState};

/// The schema this build writes. Bump it with a new entry in [`MIGRATIONS`].
pub const SCHEMA_VERSION: u32 = 4;

const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");
const CONTAINERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("containers");
const CONTAINER_NAMES: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("container_names");
const IMAGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("images");

/// The key under which `META` keeps the schema version.
const SCHEMA_KEY: &str = "schema_version";

/// One migration: from version `n` (its index) to `n + 1`, inside the opening transaction.
type Migration = fn(&redb::WriteTransaction) -> Result<(), redb::Error>;

/// Version 0 is an empty file; version 1 creates the tables; version 2 the image references;
/// version 3 the network tables; version 4 the cells.
const MIGRATIONS: &[Migration] = &[
    create_tables_v1,
    create_images_v2,
    networks::create_tables_v3,
    cells::create_table_v4,
];

fn create_tables_v1(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(NAMESPACES)?;
    txn.open_table(CONTAINERS)?;
    txn.open_table(CONTAINER_NAMES)?;
    Ok(())
}

fn create_images_v2(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(IMAGES)?;
    Ok(())
}

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database file cannot be opened or read or written.
    #[error("state database")]
    Database(#[source] Box<redb::Error>),
    /// The file was written by a newer daemon.
    #[error("state database has schema version {found}; this daemon knows up to {SCHEMA_VERSION}")]
    NewerSchema {
        /// The version in the file.
        found: u32,
    },
    /// A stored value cannot be read.
    #[error("state database: record {key} is corrupt")]
    Corrupt {
        /// The record's key.
        key: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A namespace or container name is not valid.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// `namespace`, `container`.
        what: &'static str,
        /// The name.
        name: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// The namespace does not exist.
    #[error("namespace {0:?} not found")]
    NamespaceNotFound(String),
    /// The namespace exists already.
    #[error("namespace {0:?} already exists")]
    NamespaceExists(String),
    /// The namespace still holds containers, cells or image references.
    #[error(
        "namespace {namespace:?} still holds {containers} container(s), {cells} cell(s) and {images} image(s)"
    )]
    NamespaceNotEmpty {
        /// The namespace.
        namespace: String,
        /// How many containers.
        containers: usize,
        /// How many cells.
        cells: usize,
        /// How many image references.
        images: usize,
    },
    /// No container with this id or name in the namespace.
    #[error("container {container:?} not found in namespace {namespace:?}")]
    ContainerNotFound {
        /// The namespace.
        namespace: String,
        /// The id or name asked for.
        container: String,
    },
    /// A container with this id or name exists already in the namespace.
    #[error("container {container:?} already exists in namespace {namespace:?}")]
    ContainerExists {
        /// The namespace.
        namespace: String,
        /// The id or name.
        container: String,
    },
    /// No cell with this name or id in the namespace.
    #[error("cell {cell:?} not found in namespace {namespace:?}")]
    CellNotFound {
        /// The namespace.
        namespace: String,
        /// The name or id asked for.
        cell: String,
    },
    /// A cell of this name exists already in the namespace.
    #[error("cell {cell:?} already exists in namespace {namespace:?}")]
    CellExists {
        /// The namespace.
        namespace: String,
        /// The name.
        cell: String,
    },
    /// The cell still holds containers.
    #[error("cell {cell:?} in namespace {namespace:?} still holds {containers} container(s)")]
    CellNotEmpty {
        /// The namespace.
        namespace: String,
        /// The cell.
        cell: String,
        /// How many containers.
        containers: usize,
    },
}

impl<E: Into<redb::Error>> From<E> for StateError {
    fn from(e: E) -> Self {
        StateError::Database(Box::new(e.into()))
    }
}

impl Kind for StateError {
    fn kind(&self) -> ErrorKind {
        match self {
            StateError::Database(_)
            | StateError::NewerSchema { .. }
            | StateError::Corrupt { .. } => ErrorKind::Internal,
            StateError::InvalidName { .. } => ErrorKind::InvalidArgument,
            StateError::NamespaceNotFound(_)
            | StateError::ContainerNotFound { .. }
            | StateError::CellNotFound { .. } => ErrorKind::NotFound,
            StateError::NamespaceExists(_)
            | StateError::ContainerExists { .. }
            | StateError::CellExists { .. } => ErrorKind::AlreadyExists,
            StateError::NamespaceNotEmpty { .. } | StateError::CellNotEmpty { .. } => {
                ErrorKind::FailedPrecondition
            }
        }
    }
}

/// A validated namespace or container name: 1 to 128 characters of letters, digits, `_`, `.`,
/// `-`, starting and ending with a letter or digit (containerd's namespace rule, with the
/// length the API documents; a name is a path component of a log file, never a cgroup name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// The longest name.
    pub const MAX_LEN: usize = 128;

    /// Validates `name` as a name of `what` (for the error).
    pub fn parse(what: &'static str, name: &str) -> Result<Name, StateError> {
        let bad = |reason| StateError::InvalidName {
            what,
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(bad("it is longer than 128 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(bad("only letters, digits, '_', '.' and '-' are allowed"));
        }
        let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
        if !edge_ok(name.bytes().next()) || !edge_ok(name.bytes().last()) {
            return Err(bad("it must start and end with a letter or digit"));
        }
        Ok(Name(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Name {
    type Error = StateError;
    fn try_from(s: String) -> Result<Self, StateError> {
        Name::parse("stored", &s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

/// A namespace (tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    /// Its name.
    pub name: Name,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Labels given at creation.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What the engine keeps about one container; the engine's container service owns the
/// meaning of `status` and `config`, this module only stores them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The namespace it belongs to.
    pub namespace: Name,
    /// Its id (unique in the namespace; also its runtime id).
    pub id: String,
    /// Its name (unique in the namespace).
    pub name: Name,
    /// The canonical image reference it was made from.
    pub image: String,
    /// The digest of the image manifest that reference resolved to at creation (empty in
    /// records written before it was kept).
    #[serde(default)]
    pub image_digest: String,
    /// The request it was made from, as the container service serialises it.
    pub config: serde_json::Value,
    /// Lifecycle status word (`created`, `running`, `stopped`, ...).
    pub status: String,
    /// The init's pid while it runs.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The exit code once it stopped.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// When it was created, started and finished (RFC 3339).
    pub created: String,
    /// When it last started.
    #[serde(default)]
    pub started: Option<String>,
    /// When it last stopped.
    #[serde(default)]
    pub finished: Option<String>,
    /// User labels (tags).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How often its restart policy restarted it.
    #[serde(default)]
    pub restart_count: u32,
    /// Stop or Kill was asked for since it last started: its restart policy does not apply to
    /// the exit that follows (kept here so that it holds across a daemon restart).
    #[serde(default)]
    pub stop_requested: bool,
    /// The id of the cell it belongs to: it shares that cell's monitor and network namespace.
    #[serde(default)]
    pub cell: Option<String>,
}

/// The state database.
pub struct StateDb {
    db: redb::Database,
}

impl fmt::Debug for StateDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateDb").finish_non_exhaustive()
    }
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|source| StateError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no custom
    // serialisers that error.
    serde_json::to_vec(value).unwrap_or_default()
}

impl StateDb {
    /// Opens (creating) the database at `path` and brings its schema to [`SCHEMA_VERSION`];
    /// refuses a file written by a newer daemon rather than guessing at it.
    pub fn open(path: &Path) -> Result<StateDb, StateError> {
        let db = redb::Database::create(path)?;
        let found = {
            let txn = db.begin_read()?;
            match txn.open_table(META) {
                Ok(meta) => meta.get(SCHEMA_KEY)?.map_or(0, |v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(e) => return Err(e.into()),
            }
        };
        if found > SCHEMA_VERSION {
            return Err(StateError::NewerSchema { found });
        }
        if found < SCHEMA_VERSION {
            // Every step and the new version in one transaction: a crash leaves the old schema.
            let txn = db.begin_write()?;
            for (from, migrate) in MIGRATIONS.iter().enumerate().skip(found as usize) {
                migrate(&txn)?;
                tracing::info!(from, to = from + 1, "state database migrated");
            }
            txn.open_table(META)?.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
            txn.commit()?;
        }
        Ok(StateDb { db })
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<u32, StateError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(SCHEMA_KEY)?.map_or(0, |v| v.value()))
    }

    /// Creates namespace `name`.
    pub fn create_namespace(
        &self,
        name: &Name,
        labels: BTreeMap<String, String>,
    ) -> Result<NamespaceRecord, StateError> {
        let record = NamespaceRecord {
            name: name.clone(),
            created: now(),
            labels,
        };
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(NAMESPACES)?;
            if table.get(name.as_str())?.is_some() {
                return Err(StateError::NamespaceExists(name.to_string()));
            }
            table.insert(name.as_str(), encode(&record).as_slice())?;
        }
        txn.commit()?;
        Ok(record)
    }

    /// Every namespace, by name.
    pub fn namespaces(&self) -> Result<Vec<NamespaceRecord>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NAMESPACES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.push(decode(key.value(), value.value())?);
        }
        Ok(out)
    }

    /// The namespace `name`.
    pub fn namespace(&self, name: &Name) -> Result<NamespaceRecord, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NAMESPACES)?;
        let value = table
            .get(name.as_str())?
            .ok_or_else(|| StateError::NamespaceNotFound(name.to_string()))?;
        decode(name.as_str(), value.value())
    }

    /// Deletes namespace `name`: refused while it holds containers, cells or image references
    /// unless `force`, which drops their records too (the caller stops and removes the
    /// containers first; the images' content goes with the next prune).
    pub fn delete_namespace(&self, name: &Name, force: bool) -> Result<(), StateError> {
        let txn = self.db.begin_write()?;
        {
            let mut namespaces = txn.open_table(NAMESPACES)?;
            if namespaces.get(name.as_str())?.is_none() {
                return Err(StateError::NamespaceNotFound(name.to_string()));
            }
            let mut containers = txn.open_table(CONTAINERS)?;
            let ids: Vec<String> = containers
                .range((name.as_str(), "")..)?
                .map_while(|e| {
                    e.ok().and_then(|(k, _)| {
                        let (ns, id) = k.value();
                        (ns == name.as_str()).then(|| id.to_owned())
                    })
                })
                .collect();
            let mut images = txn.open_table(IMAGES)?;
            let image_names = names_in(&images, name.as_str())?;
            let mut cells = txn.open_table(cells::CELLS)?;
            let cell_names = names_in(&cells, name.as_str())?;
            if (!ids.is_empty() || !image_names.is_empty() || !cell_names.is_empty()) && !force {
                return Err(StateError::NamespaceNotEmpty {
                    namespace: name.to_string(),
                    containers: ids.len(),
                    cells: cell_names.len(),
                    images: image_names.len(),
                });
            }
            for image in &image_names {
                images.remove((name.as_str(), image.as_str()))?;
            }
            for cell in &cell_names {
                cells.remove((name.as_str(), cell.as_str()))?;
            }
            let mut names = txn.open_table(CONTAINER_NAMES)?;
            for id in &ids {
                if let Some(value) = containers.remove((name.as_str(), id.as_str()))? {
                    let record: ContainerRecord = decode(id, value.value())?;
                    names.remove((name.as_str(), record.name.as_str()))?;
                }
            }
            namespaces.remove(name.as_str())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Records a new container; its namespace must exist and its id and name be free there.
    pub fn insert_container(&self, record: &ContainerRecord) -> Result<(), StateError> {
        let ns = record.namespace.as_str();
        let txn = self.db.begin_write()?;
        {
            if txn.open_table(NAMESPACES)?.get(ns)?.is_none() {
                return Err(StateError::NamespaceNotFound(ns.to_owned()));
            }
            let mut containers = txn.open_table(CONTAINERS)?;
            let mut names = txn.open_table(CONTAINER_NAMES)?;
            let exists = |container: &str| StateError::ContainerExists {
                namespace: ns.to_owned(),
                container: container.to_owned(),
            };
            if containers.get((ns, record.id.as_str()))?.is_some() {
                return Err(exists(&record.id));
            }
            if names.get((ns, record.name.as_str()))?.is_some() {
                return Err(exists(record.name.as_str()));
            }
            containers.insert((ns, record.id.as_str()), encode(record).as_slice())?;
            names.insert((ns, record.name.as_str()), record.id.as_str())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The container `id_or_name` of `namespace`.
    pub fn container(
        &self,
        namespace: &Name,
        id_or_name: &str,
    ) -> Result<ContainerRecord, StateError> {
        let ns = namespace.as_str();
        let txn = self.db.begin_read()?;
        let containers = txn.open_table(CONTAINERS)?;
        let names = txn.open_table(CONTAINER_NAMES)?;
        let id = match names.get((ns, id_or_name))? {
            Some(id) => id.value().to_owned(),
            None => id_or_name.to_owned(),
        };
        let value =
            containers
                .get((ns, id.as_str()))?
                .ok_or_else(|| StateError::ContainerNotFound {
                    namespace: ns.to_owned(),
                    container: id_or_name.to_owned(),
                })?;
        decode(&id, value.value())
    }

    /// Every container of `namespace`, by id.
    pub fn containers(&self, namespace: &Name) -> Result<Vec<ContainerRecord>, StateError> {
        let txn = self.db.begin_read()?;
        records_in(&txn.open_table(CONTAINERS)?, namespace.as_str())
    }

    /// Applies `change` to the stored container and writes it back in one transaction; the id,
    /// namespace and name cannot change.
    pub fn update_container(
        &self,
        namespace: &Name,
        id: &str,
        change: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord, StateError> {
        let ns = namespace.as_str();
        let txn = self.db.begin_write()?;
        let updated = {
            let mut containers = txn.open_table(CONTAINERS)?;
            let mut record: ContainerRecord = match containers.get((ns, id))? {
                Some(value) => decode(id, value.value())?,
                None => {
                    return Err(StateError::ContainerNotFound {
                        namespace: ns.to_owned(),
                        container: id.to_owned(),
                    })
                }
            };
            let (keep_id, keep_ns, keep_name) = (
                record.id.clone(),
                record.namespace.clone(),
                record.name.clone(),
            );
            change(&mut record);
            (record.id, record.namespace, record.name) = (keep_id, keep_ns, keep_name);
            containers.insert((ns, id), encode(&record).as_slice())?;
            record
        };
        txn.commit()?;
        Ok(updated)
    }

    /// Removes the container's record.
    pub fn remove_container(&self, namespace: &Name, id: &str) -> Result<(), StateError> {
        let ns = namespace.as_str();
        let txn = self.db.begin_write()?;
        {
            let mut containers = txn.open_table(CONTAINERS)?;
            let record: ContainerRecord = match containers.remove((ns, id))? {
                Some(value) => decode(id, value.value())?,
                None => {
                    return Err(StateError::ContainerNotFound {
                        namespace: ns.to_owned(),
                        container: id.to_owned(),
                    })
                }
            };
            txn.open_table(CONTAINER_NAMES)?
                .remove((ns, record.name.as_str()))?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Records the image references `records` in `namespace` in one transaction, each
    /// replacing a reference of the same name there; the namespace must exist.
    pub fn put_images(&self, namespace: &Name, records: &[ImageRecord]) -> Result<(), StateError> {
        let ns = namespace.as_str();
        let txn = self.db.begin_write()?;
        {
            if txn.open_table(NAMESPACES)?.get(ns)?.is_none() {
                return Err(StateError::NamespaceNotFound(ns.to_owned()));
            }
            let mut images = txn.open_table(IMAGES)?;
            for record in records {
                images.insert((ns, record.name.as_str()), encode(record).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The image reference `name` of `namespace`, if there is one.
    pub fn image(&self, namespace: &Name, name: &str) -> Result<Option<ImageRecord>, StateError> {
        let txn = self.db.begin_read()?;
        let images = txn.open_table(IMAGES)?;
        let value = images.get((namespace.as_str(), name))?;
        value.map(|v| decode(name, v.value())).transpose()
    }

    /// Every image reference of `namespace`, by name.
    pub fn images(&self, namespace: &Name) -> Result<Vec<ImageRecord>, StateError> {
        let txn = self.db.begin_read()?;
        records_in(&txn.open_table(IMAGES)?, namespace.as_str())
    }

    /// Every image reference of every namespace: the roots of garbage collection.
    pub fn all_images(&self) -> Result<Vec<ImageRecord>, StateError> {
        let txn = self.db.begin_read()?;
        let images = txn.open_table(IMAGES)?;
        let mut out = Vec::new();
        for entry in images.iter()? {
            let (key, value) = entry?;
            out.push(decode(key.value().1, value.value())?);
        }
        Ok(out)
    }

    /// Removes the image reference `name` of `namespace` and returns it, if there was one.
    pub fn remove_image(
        &self,
        namespace: &Name,
        name: &str,
    ) -> Result<Option<ImageRecord>, StateError> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut images = txn.open_table(IMAGES)?;
            let value = images.remove((namespace.as_str(), name))?;
            value.map(|v| decode(name, v.value())).transpose()?
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Adopts image records of an older, global image store into `namespace` (created if
    /// missing), keeping any reference of the same name that namespace has already.
    pub fn adopt_images(
        &self,
        namespace: &Name,
        records: &[ImageRecord],
    ) -> Result<(), StateError> {
        let ns = namespace.as_str();
        let txn = self.db.begin_write()?;
        {
            let mut namespaces = txn.open_table(NAMESPACES)?;
            if namespaces.get(ns)?.is_none() {
                let record = NamespaceRecord {
                    name: namespace.clone(),
                    created: now(),
                    labels: BTreeMap::new(),
                };
                namespaces.insert(ns, encode(&record).as_slice())?;
            }
            let mut images = txn.open_table(IMAGES)?;
            for record in records {
                if images.get((ns, record.name.as_str()))?.is_none() {
                    images.insert((ns, record.name.as_str()), encode(record).as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// The records of `table`'s entries in namespace `ns`, in key order.
fn records_in<T: for<'de> Deserialize<'de>>(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    ns: &str,
) -> Result<Vec<T>, StateError> {
    let mut out = Vec::new();
    for entry in table.range((ns, "")..)? {
        let (key, value) = entry?;
        let (record_ns, name) = key.value();
        if record_ns != ns {
            break;
        }
        out.push(decode(name, value.value())?);
    }
    Ok(out)
}

/// The second key parts of `table`'s entries in namespace `ns`.
fn names_in<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, &'static str), V>,
    ns: &str,
) -> Result<Vec<String>, StateError> {
    let mut out = Vec::new();
    for entry in table.range((ns, "")..)? {
        let (key, _) = entry?;
        let (record_ns, name) = key.value();
        if record_ns != ns {
            break;
        }
        out.push(name.to_owned());
    }
    Ok(out)
}

/// Now, RFC 3339 in UTC with seconds.
fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
