//! The network tables: network records by name, IPAM leases by `(network, owner)` and
//! attachments by container id, read and changed together as a [`NetworkState`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use testudo_network::{Lease, PortMapping, Subnets};

use super::{decode, encode, StateDb, StateError};

const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
const LEASES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("leases");
const ATTACHMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("attachments");

pub(super) fn create_tables_v3(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(NETWORKS)?;
    txn.open_table(LEASES)?;
    txn.open_table(ATTACHMENTS)?;
    Ok(())
}

/// A network created with the networks service (the default network is not stored: the
/// daemon's flags define it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// Its name, unique on the node.
    pub name: String,
    /// Its bridge interface.
    pub bridge: String,
    /// Its subnets.
    pub subnets: Subnets,
    /// When it was created (RFC 3339).
    pub created: String,
}

/// How a container is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentKind {
    /// To a bridge network of testudo's own, with a lease.
    Bridge,
    /// Through a CNI network configuration list.
    Cni,
    /// A namespace with only its loopback interface (a cell without a network).
    Loopback,
}

/// A container's network attachment: written (with its lease) before anything is made on the
/// host, so that a detach after a crash half-way through setup knows what to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    /// The container's id.
    pub container_id: String,
    /// Bridge or CNI.
    pub kind: AttachmentKind,
    /// The network (a bridge network's name, or the CNI configuration list's).
    pub network: String,
    /// The persistent network namespace's file.
    pub netns: PathBuf,
    /// The interface inside.
    pub ifname: String,
    /// The container's addresses, with prefix lengths (for CNI: once the plugins answered).
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// Its gateways.
    #[serde(default)]
    pub gateways: Vec<IpAddr>,
    /// Its published ports.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
}

/// Everything of the network tables, read in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkState {
    /// The stored networks by name.
    pub networks: BTreeMap<String, NetworkRecord>,
    /// The leases by `(network, owner)`.
    pub leases: BTreeMap<(String, String), Lease>,
    /// The attachments by container id.
    pub attachments: BTreeMap<String, AttachmentRecord>,
}

fn read_state(
    networks: &impl ReadableTable<&'static str, &'static [u8]>,
    leases: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    attachments: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<NetworkState, StateError> {
    let mut state = NetworkState::default();
    for entry in networks.iter()? {
        let (key, value) = entry?;
        state
            .networks
            .insert(key.value().to_owned(), decode(key.value(), value.value())?);
    }
    for entry in leases.iter()? {
        let (key, value) = entry?;
        let (network, owner) = key.value();
        let lease = decode(&format!("{network}/{owner}"), value.value())?;
        state
            .leases
            .insert((network.to_owned(), owner.to_owned()), lease);
    }
    for entry in attachments.iter()? {
        let (key, value) = entry?;
        state
            .attachments
            .insert(key.value().to_owned(), decode(key.value(), value.value())?);
    }
    Ok(state)
}

impl StateDb {
    /// The network tables as they are.
    pub fn network_state(&self) -> Result<NetworkState, StateError> {
        let txn = self.db.begin_read()?;
        read_state(
            &txn.open_table(NETWORKS)?,
            &txn.open_table(LEASES)?,
            &txn.open_table(ATTACHMENTS)?,
        )
    }

    /// Applies `change` to the network tables in one write transaction (writers are
    /// serialised, so what `change` reads is what it changes); nothing is written when it
    /// fails.
    pub fn update_network_state<T, E: From<StateError>>(
        &self,
        change: impl FnOnce(&mut NetworkState) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.db.begin_write().map_err(StateError::from)?;
        let out = {
            let mut networks = txn.open_table(NETWORKS).map_err(StateError::from)?;
            let mut leases = txn.open_table(LEASES).map_err(StateError::from)?;
            let mut attachments = txn.open_table(ATTACHMENTS).map_err(StateError::from)?;
            let before = read_state(&networks, &leases, &attachments)?;
            let mut after = before.clone();
            let out = change(&mut after)?;
            write_changes(
                &before,
                &after,
                &mut networks,
                &mut leases,
                &mut attachments,
            )?;
            out
        };
        txn.commit().map_err(StateError::from)?;
        Ok(out)
    }
}

fn write_changes(
    before: &NetworkState,
    after: &NetworkState,
    networks: &mut redb::Table<&'static str, &'static [u8]>,
    leases: &mut redb::Table<(&'static str, &'static str), &'static [u8]>,
    attachments: &mut redb::Table<&'static str, &'static [u8]>,
) -> Result<(), StateError> {
    for name in before.networks.keys() {
        if !after.networks.contains_key(name) {
            networks.remove(name.as_str())?;
        }
    }
    for (name, record) in &after.networks {
        if before.networks.get(name) != Some(record) {
            networks.insert(name.as_str(), encode(record).as_slice())?;
        }
    }
    for (network, owner) in before.leases.keys() {
        if !after.leases.contains_key(&(network.clone(), owner.clone())) {
            leases.remove((network.as_str(), owner.as_str()))?;
        }
    }
    for ((network, owner), lease) in &after.leases {
        if before.leases.get(&(network.clone(), owner.clone())) != Some(lease) {
            leases.insert((network.as_str(), owner.as_str()), encode(lease).as_slice())?;
        }
    }
    for id in before.attachments.keys() {
        if !after.attachments.contains_key(id) {
            attachments.remove(id.as_str())?;
        }
    }
    for (id, record) in &after.attachments {
        if before.attachments.get(id) != Some(record) {
            attachments.insert(id.as_str(), encode(record).as_slice())?;
        }
    }
    Ok(())
}
