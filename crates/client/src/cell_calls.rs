//! The calls of `testudo.cells.v1.CellsService`.

use std::collections::HashMap;

use testudo_api::cells::v1::{Cell, CreateRequest, DeleteRequest, InspectRequest, ListRequest};
use testudo_api::containers::v1::Network;

use crate::{Client, ClientError};

impl Client {
    /// Creates cell `name` in namespace `ns`, its containers sharing `network`.
    pub async fn create_cell(
        &mut self,
        ns: &str,
        name: &str,
        network: Option<Network>,
        tags: HashMap<String, String>,
    ) -> Result<Cell, ClientError> {
        self.cells
            .create(CreateRequest {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                network,
                tags,
            })
            .await?
            .into_inner()
            .cell
            .ok_or(ClientError::MissingField { field: "cell" })
    }

    /// The cells of namespace `ns`, by name.
    pub async fn list_cells(&mut self, ns: &str) -> Result<Vec<Cell>, ClientError> {
        Ok(self
            .cells
            .list(ListRequest {
                namespace: ns.to_owned(),
            })
            .await?
            .into_inner()
            .cells)
    }

    /// Cell `cell` (name or id) of namespace `ns`, with its containers and monitor.
    pub async fn inspect_cell(&mut self, ns: &str, cell: &str) -> Result<Cell, ClientError> {
        self.cells
            .inspect(InspectRequest {
                namespace: ns.to_owned(),
                cell: cell.to_owned(),
            })
            .await?
            .into_inner()
            .cell
            .ok_or(ClientError::MissingField { field: "cell" })
    }

    /// Deletes cell `cell` of namespace `ns`; `force` deletes its containers first.
    pub async fn delete_cell(
        &mut self,
        ns: &str,
        cell: &str,
        force: bool,
    ) -> Result<(), ClientError> {
        self.cells
            .delete(DeleteRequest {
                namespace: ns.to_owned(),
                cell: cell.to_owned(),
                force,
            })
            .await?;
        Ok(())
    }
}
