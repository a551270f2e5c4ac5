//! Upgrading containers' monitors in place.

use testudo_api::containers::v1::{MonitorUpgrade, UpgradeMonitorsRequest};

use crate::{Client, ClientError};

impl Client {
    /// Upgrades the monitors of `containers` (ids or names; every container of `namespace` when
    /// empty) in place to the daemon's testudo binary; one result per container.
    pub async fn upgrade_monitors(
        &mut self,
        namespace: &str,
        containers: &[String],
    ) -> Result<Vec<MonitorUpgrade>, ClientError> {
        Ok(self
            .containers
            .upgrade_monitors(UpgradeMonitorsRequest {
                namespace: namespace.to_owned(),
                containers: containers.to_vec(),
            })
            .await?
            .into_inner()
            .upgrades)
    }
}
