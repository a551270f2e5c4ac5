//! In-place upgrade of monitors: each monitor re-executes the service's `testudo` binary with
//! its state handed over (the monitor crate's `handover` says what survives), so a fix to the
//! monitor reaches running containers without restarting them.
//!
//! The upgrade of one monitor holds its container's lock, so it is ordered with the container's
//! other operations (a cell's monitor is upgraded once, under the lock of the first of its
//! containers asked for; the others get the same result); the supervision task's pending `Wait` connection survives the upgrade and
//! is answered by the new binary. A monitor that refuses (its new binary cannot resume it) goes
//! on as it was, and the refusal is that container's result.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{call_monitor, ContainerService};
use crate::containers::ContainerError;
use crate::state::{ContainerRecord, Name};

/// How the upgrade of one container's monitor went.
#[derive(Debug)]
pub struct MonitorUpgrade {
    /// The container's id.
    pub id: String,
    /// The container's name.
    pub name: String,
    /// The binary its monitor runs now, or why it still runs the old one.
    pub outcome: Result<UpgradedMonitor, ContainerError>,
}

/// A monitor that runs the new binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradedMonitor {
    /// The monitor's pid, the same as before the upgrade.
    pub pid: i32,
    /// The binary it runs, as the kernel names it.
    pub binary: PathBuf,
}

impl ContainerService {
    /// Upgrades the monitors of `containers` (ids or names; every container of `namespace` when
    /// empty) in place to the service's `testudo` binary, one after the other; one result per
    /// container. An unknown namespace or container fails the call before any monitor is
    /// touched.
    pub async fn upgrade_monitors(
        &self,
        namespace: &str,
        containers: &[String],
    ) -> Result<Vec<MonitorUpgrade>, ContainerError> {
        let namespace = Name::parse("namespace", namespace)?;
        self.state.namespace(&namespace)?;
        let records = if containers.is_empty() {
            self.state.containers(&namespace)?
        } else {
            containers
                .iter()
                .map(|c| self.state.container(&namespace, c))
                .collect::<Result<_, _>>()?
        };
        // The containers of a cell share a monitor, which is upgraded once for all of them.
        let mut upgraded: HashMap<PathBuf, UpgradedMonitor> = HashMap::new();
        let mut results = Vec::new();
        for record in records {
            let socket = self.socket_of(&record);
            let outcome = match upgraded.get(&socket) {
                Some(done) => Ok(done.clone()),
                None => self.upgrade_monitor(&record).await,
            };
            if let Ok(done) = &outcome {
                upgraded.insert(socket, done.clone());
            }
            results.push(MonitorUpgrade {
                id: record.id.clone(),
                name: record.name.as_str().to_owned(),
                outcome,
            });
        }
        Ok(results)
    }

    /// Upgrades the monitor of one container, under its lock.
    async fn upgrade_monitor(
        &self,
        record: &ContainerRecord,
    ) -> Result<UpgradedMonitor, ContainerError> {
        let _guard = self.lock(record).await;
        let socket = self.socket_of(record);
        let binary = self.config.testudo_binary.clone();
        call_monitor(&record.id, &socket, move |client| {
            let binary = client.upgrade(&binary)?;
            Ok(UpgradedMonitor {
                pid: client.monitor_pid(),
                binary,
            })
        })
        .await
    }
}
