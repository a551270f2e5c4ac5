//! The calls of `testudo.networks.v1.NetworksService`.

use testudo_api::networks::v1::{
    CreateRequest, DeleteRequest, InspectRequest, ListRequest, Network,
};

use crate::{Client, ClientError};

impl Client {
    /// Creates bridge network `name` with `subnets` (one IPv4, at most one IPv6) and bridge
    /// `bridge` (one is chosen when `None`).
    pub async fn create_network(
        &mut self,
        name: &str,
        subnets: &[String],
        bridge: Option<&str>,
    ) -> Result<Network, ClientError> {
        self.networks
            .create(CreateRequest {
                name: name.to_owned(),
                subnets: subnets.to_vec(),
                bridge: bridge.unwrap_or_default().to_owned(),
            })
            .await?
            .into_inner()
            .network
            .ok_or(ClientError::MissingField { field: "network" })
    }

    /// Every network, the default one included, by name.
    pub async fn list_networks(&mut self) -> Result<Vec<Network>, ClientError> {
        Ok(self
            .networks
            .list(ListRequest {})
            .await?
            .into_inner()
            .networks)
    }

    /// Network `name`.
    pub async fn inspect_network(&mut self, name: &str) -> Result<Network, ClientError> {
        self.networks
            .inspect(InspectRequest {
                name: name.to_owned(),
            })
            .await?
            .into_inner()
            .network
            .ok_or(ClientError::MissingField { field: "network" })
    }

    /// Deletes network `name`.
    pub async fn delete_network(&mut self, name: &str) -> Result<(), ClientError> {
        self.networks
            .delete(DeleteRequest {
                name: name.to_owned(),
            })
            .await?;
        Ok(())
    }
}
