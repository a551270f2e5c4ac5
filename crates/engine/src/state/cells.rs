//! The cells table: a cell's record keyed `(namespace, name)`. A cell's containers name it by
//! id in their own records ([`super::ContainerRecord::cell`]), so that the monitor and network
//! they share are found from the container alone.

use std::collections::BTreeMap;
use std::path::PathBuf;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{
    decode, encode, records_in, ContainerRecord, Name, StateDb, StateError, CONTAINERS, NAMESPACES,
};

pub(super) const CELLS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("cells");

pub(super) fn create_table_v4(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(CELLS)?;
    Ok(())
}

/// A cell: a group of containers that share one monitor process, one network namespace and a
/// cgroup level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellRecord {
    /// The namespace it belongs to.
    pub namespace: Name,
    /// Its id (64 hex digits, from the same space as container ids).
    pub id: String,
    /// Its name, unique among the namespace's cells.
    pub name: Name,
    /// The network it was created with, as the container service serialises a request's.
    pub network: serde_json::Value,
    /// The network namespace its containers join; `None` for the host's.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// User labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When it was created (RFC 3339).
    pub created: String,
}

impl StateDb {
    /// Records a new cell; its namespace must exist and its name be free among its cells.
    pub fn insert_cell(&self, record: &CellRecord) -> Result<(), StateError> {
        let ns = record.namespace.as_str();
        let txn = self.db.begin_write()?;
        {
            if txn.open_table(NAMESPACES)?.get(ns)?.is_none() {
                return Err(StateError::NamespaceNotFound(ns.to_owned()));
            }
            let mut cells = txn.open_table(CELLS)?;
            if cells.get((ns, record.name.as_str()))?.is_some() {
                return Err(StateError::CellExists {
                    namespace: ns.to_owned(),
                    cell: record.name.to_string(),
                });
            }
            cells.insert((ns, record.name.as_str()), encode(record).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The cell named `name` (or with id `name`) in `namespace`.
    pub fn cell(&self, namespace: &Name, name: &str) -> Result<CellRecord, StateError> {
        let txn = self.db.begin_read()?;
        let cells = txn.open_table(CELLS)?;
        if let Some(value) = cells.get((namespace.as_str(), name))? {
            return decode(name, value.value());
        }
        records_in::<CellRecord>(&cells, namespace.as_str())?
            .into_iter()
            .find(|c| c.id == name)
            .ok_or_else(|| StateError::CellNotFound {
                namespace: namespace.to_string(),
                cell: name.to_owned(),
            })
    }

    /// Every cell of `namespace`, by name.
    pub fn cells(&self, namespace: &Name) -> Result<Vec<CellRecord>, StateError> {
        let txn = self.db.begin_read()?;
        records_in(&txn.open_table(CELLS)?, namespace.as_str())
    }

    /// The containers of `namespace` in cell `cell_id`.
    pub fn cell_containers(
        &self,
        namespace: &Name,
        cell_id: &str,
    ) -> Result<Vec<ContainerRecord>, StateError> {
        Ok(self
            .containers(namespace)?
            .into_iter()
            .filter(|c| c.cell.as_deref() == Some(cell_id))
            .collect())
    }

    /// Removes the cell's record; refused while a container of the namespace names it (in the
    /// same transaction, so that a container created meanwhile is seen).
    pub fn remove_cell(&self, namespace: &Name, name: &Name) -> Result<(), StateError> {
        let ns = namespace.as_str();
        let txn = self.db.begin_write()?;
        {
            let mut cells = txn.open_table(CELLS)?;
            let record: CellRecord = match cells.get((ns, name.as_str()))? {
                Some(value) => decode(name.as_str(), value.value())?,
                None => {
                    return Err(StateError::CellNotFound {
                        namespace: ns.to_owned(),
                        cell: name.to_string(),
                    })
                }
            };
            let containers: Vec<ContainerRecord> = records_in(&txn.open_table(CONTAINERS)?, ns)?;
            let held = containers
                .iter()
                .filter(|c| c.cell.as_deref() == Some(record.id.as_str()))
                .count();
            if held > 0 {
                return Err(StateError::CellNotEmpty {
                    namespace: ns.to_owned(),
                    cell: name.to_string(),
                    containers: held,
                });
            }
            cells.remove((ns, name.as_str()))?;
        }
        txn.commit()?;
        Ok(())
    }
}
