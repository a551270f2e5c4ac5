//! Cells: groups of containers that share one monitor process, one network namespace and a
//! cgroup level (`<cgroup parent>/<namespace>/<cell id>/`). A Kubernetes pod is a cell.
//!
//! A cell is a record and, for every network but the host's and a joined one, an attachment
//! of its own (owner: the cell's id): a persistent namespace on a bridge or CNI network, or
//! with only its loopback interface for a cell without a network. Its containers join that
//! namespace, go by the cell's name as host name, and are supervised by the cell's monitor,
//! which the first container to need it starts and the last one to leave stops (an empty cell
//! costs no process). The cell's lock (the container locks' table, keyed by the cell's id)
//! orders a container's creation in the cell, a removal that may stop the monitor, and the
//! cell's deletion.

use std::collections::BTreeMap;
use std::time::SystemTime;

use testudo_monitor_protocol::Client;

use super::{
    monitor_paths, new_id, remove_tree, rfc3339, stop_monitor, ContainerError, ContainerService,
    CreateRequest, NetworkMode,
};
use crate::events::{Event, EventKind};
use crate::networks::{NetworkChoice, NetworkService};
use crate::state::{CellRecord, ContainerRecord, Name, StateError};

/// What a cell is created from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellRequest {
    /// Its name, unique among the namespace's cells.
    pub name: String,
    /// The network its containers share (`None`: a namespace with only loopback).
    pub network: NetworkMode,
    /// User labels.
    pub labels: BTreeMap<String, String>,
}

/// A cell as inspected: its record, its containers and its monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellInfo {
    /// The cell.
    pub record: CellRecord,
    /// Its containers' ids and names.
    pub containers: Vec<(String, String)>,
    /// The pid of its monitor while one runs (while it has containers).
    pub monitor_pid: Option<i32>,
}

/// `request` made a container of `cell`: its network becomes the cell's namespace.
pub(super) fn join_cell(
    mut request: CreateRequest,
    cell: &CellRecord,
) -> Result<CreateRequest, ContainerError> {
    if request.network != NetworkMode::None {
        return Err(ContainerError::NetworkInCell {
            cell: cell.name.to_string(),
        });
    }
    request.network = match &cell.netns {
        Some(netns) => NetworkMode::Join(netns.clone()),
        None => NetworkMode::Host,
    };
    Ok(request)
}

impl ContainerService {
    /// Creates a cell in `namespace`, with its network attached; on failure nothing of it is
    /// left.
    pub async fn create_cell(
        &self,
        namespace: &str,
        request: CellRequest,
    ) -> Result<CellRecord, ContainerError> {
        let namespace = Name::parse("namespace", namespace)?;
        let name = Name::parse("cell", &request.name)?;
        self.state.namespace(&namespace)?;
        if self.state.cell(&namespace, name.as_str()).is_ok() {
            return Err(StateError::CellExists {
                namespace: namespace.to_string(),
                cell: name.to_string(),
            }
            .into());
        }
        if let NetworkMode::Join(path) = &request.network {
            if !path.is_absolute() {
                return Err(ContainerError::RelativeNetnsPath { path: path.clone() });
            }
            if std::fs::metadata(path).is_err() {
                return Err(ContainerError::NetnsNotFound { path: path.clone() });
            }
            NetworkService::check_join(path)?;
        }
        let id = new_id();
        let netns = match &request.network {
            NetworkMode::Host => None,
            NetworkMode::Join(path) => Some(path.clone()),
            mode => {
                let (networks, owner, mode) = (self.networks.clone(), id.clone(), mode.clone());
                let attached = tokio::task::spawn_blocking(move || {
                    let (choice, ports) = match mode.attachment() {
                        Some(attachment) => attachment,
                        None => (NetworkChoice::Loopback, &[][..]),
                    };
                    networks.attach(&owner, &choice, ports)
                })
                .await??;
                Some(attached.netns)
            }
        };
        let record = CellRecord {
            namespace,
            id,
            name,
            network: serde_json::to_value(&request.network).unwrap_or_default(),
            netns,
            labels: request.labels,
            created: rfc3339(SystemTime::now()),
        };
        if let Err(e) = self.state.insert_cell(&record) {
            self.detach_cell(&record.id).await;
            return Err(e.into());
        }
        tracing::info!(cell_id = %record.id, namespace = %record.namespace, cell = %record.name,
            "cell created");
        self.events().publish(Event::new(
            record.namespace.as_str(),
            EventKind::CellCreated {
                id: record.id.clone(),
                name: record.name.to_string(),
            },
        ));
        Ok(record)
    }

    /// Every cell of `namespace`, by name.
    pub fn cells(&self, namespace: &str) -> Result<Vec<CellRecord>, ContainerError> {
        let namespace = Name::parse("namespace", namespace)?;
        self.state.namespace(&namespace)?;
        Ok(self.state.cells(&namespace)?)
    }

    /// The cell `cell` (name or id) of `namespace`, with its containers and monitor.
    pub async fn inspect_cell(
        &self,
        namespace: &str,
        cell: &str,
    ) -> Result<CellInfo, ContainerError> {
        let namespace = Name::parse("namespace", namespace)?;
        self.state.namespace(&namespace)?;
        let record = self.state.cell(&namespace, cell)?;
        let containers = self
            .state
            .cell_containers(&namespace, &record.id)?
            .into_iter()
            .map(|c: ContainerRecord| (c.id, c.name.to_string()))
            .collect();
        let (socket, _) = monitor_paths(&self.config, &namespace, &record.id);
        let monitor_pid = tokio::task::spawn_blocking(move || {
            Client::connect(&socket).ok().map(|c| c.monitor_pid())
        })
        .await?;
        Ok(CellInfo {
            record,
            containers,
            monitor_pid,
        })
    }

    /// Deletes the cell `cell` (name or id) of `namespace`: its network and record. Refused
    /// while it holds containers unless `force`, which deletes them first (killing running
    /// ones).
    pub async fn delete_cell(
        &self,
        namespace: &str,
        cell: &str,
        force: bool,
    ) -> Result<(), ContainerError> {
        let namespace = Name::parse("namespace", namespace)?;
        self.state.namespace(&namespace)?;
        let record = self.state.cell(&namespace, cell)?;
        let held = |containers: usize| StateError::CellNotEmpty {
            namespace: namespace.to_string(),
            cell: record.name.to_string(),
            containers,
        };
        let members = self.state.cell_containers(&namespace, &record.id)?;
        if !members.is_empty() && !force {
            return Err(held(members.len()).into());
        }
        for member in members {
            match self.delete(namespace.as_str(), &member.id, true).await {
                Err(ContainerError::State(StateError::ContainerNotFound { .. })) | Ok(()) => {}
                Err(e) => return Err(e),
            }
        }
        let _guard = self.supervisor.locks.lock(&namespace, &record.id).await;
        // Containers are created under this lock: none can join from here on.
        let members = self.state.cell_containers(&namespace, &record.id)?;
        if !members.is_empty() {
            return Err(held(members.len()).into());
        }
        let (socket, monitor_dir) = monitor_paths(&self.config, &namespace, &record.id);
        let owner = record.id.clone();
        tokio::task::spawn_blocking(move || stop_monitor(&owner, &socket)).await??;
        remove_tree(&monitor_dir)?;
        let (networks, owner) = (self.networks.clone(), record.id.clone());
        tokio::task::spawn_blocking(move || networks.detach(&owner)).await??;
        self.state.remove_cell(&namespace, &record.name)?;
        self.supervisor.locks.forget(&namespace, &record.id);
        tracing::info!(cell_id = %record.id, namespace = %namespace, cell = %record.name,
            "cell deleted");
        self.events().publish(Event::new(
            namespace.as_str(),
            EventKind::CellDeleted {
                id: record.id.clone(),
                name: record.name.to_string(),
            },
        ));
        Ok(())
    }

    /// Detaches the network of cell `id` after a failed create; a failure is logged.
    async fn detach_cell(&self, id: &str) {
        let (networks, owner) = (self.networks.clone(), id.to_owned());
        let detached = tokio::task::spawn_blocking(move || networks.detach(&owner)).await;
        if let Err(e) = detached.map_err(ContainerError::from).and_then(|d| Ok(d?)) {
            tracing::warn!(cell_id = %id, error = %e, "cannot undo a failed cell create");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use super::*;

    fn cell(netns: Option<&str>) -> CellRecord {
        CellRecord {
            namespace: Name::parse("namespace", "default").unwrap(),
            id: "c".repeat(64),
            name: Name::parse("cell", "web").unwrap(),
            network: serde_json::json!("none"),
            netns: netns.map(PathBuf::from),
            labels: BTreeMap::new(),
            created: String::new(),
        }
    }

    #[test]
    fn a_member_joins_the_cells_namespace_and_may_not_ask_for_its_own() {
        let request = CreateRequest {
            image: "busybox".into(),
            ..CreateRequest::default()
        };
        let joined = join_cell(request.clone(), &cell(Some("/run/netns/testudo-c"))).unwrap();
        assert_eq!(
            joined.network,
            NetworkMode::Join(PathBuf::from("/run/netns/testudo-c"))
        );
        let host = join_cell(request.clone(), &cell(None)).unwrap();
        assert_eq!(host.network, NetworkMode::Host);
        let own = CreateRequest {
            network: NetworkMode::Host,
            ..request
        };
        let refused = join_cell(own, &cell(None)).unwrap_err();
        assert!(matches!(refused, ContainerError::NetworkInCell { .. }));
        assert_eq!(
            refused.to_string(),
            "a container of cell \"web\" shares the cell's network: leave its network unset"
        );
    }
}
