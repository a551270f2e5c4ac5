//! `testudo.cells.v1.CellsService` over the engine's cells (groups of containers sharing a
//! monitor and a network namespace).

use std::sync::Arc;

use testudo_api::cells::v1::cells_service_server::CellsService;
use testudo_api::cells::v1::{
    Cell, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, InspectRequest,
    InspectResponse, ListRequest, ListResponse,
};
use testudo_engine::containers::{self as engine, CellInfo, CellRequest};
use testudo_engine::state::CellRecord;
use tonic::{Request, Response, Status};

use crate::containers::network_attachment;
use crate::namespaces::timestamp;
use crate::request::{api_network, network, object_name};
use crate::status::{offload, CallError};
use crate::Engine;

/// The cells service.
#[derive(Debug)]
pub(crate) struct Cells {
    engine: Arc<Engine>,
}

impl Cells {
    pub(crate) fn new(engine: Arc<Engine>) -> Cells {
        Cells { engine }
    }

    /// The API's form of `record`, with its attachment.
    async fn cell(&self, record: CellRecord) -> Result<Cell, CallError> {
        let engine = self.engine.clone();
        let owner = record.id.clone();
        let attachment =
            tokio::task::spawn_blocking(move || engine.containers.networks().attachment(&owner))
                .await??;
        let mode: engine::NetworkMode =
            serde_json::from_value(record.network.clone()).map_err(|source| {
                CallError::StoredConfig {
                    container: record.id.clone(),
                    source,
                }
            })?;
        Ok(Cell {
            id: record.id,
            name: record.name.to_string(),
            namespace: record.namespace.to_string(),
            network: Some(api_network(mode)),
            netns_path: record
                .netns
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            attachment: attachment
                .filter(|a| !a.network.is_empty())
                .map(network_attachment),
            tags: record.labels.into_iter().collect(),
            created_at: timestamp(&record.created),
            containers: Vec::new(),
            monitor_pid: 0,
        })
    }

    /// The API's form of an inspected cell.
    async fn inspected(&self, info: CellInfo) -> Result<Cell, CallError> {
        let mut cell = self.cell(info.record).await?;
        cell.containers = info.containers.into_iter().map(|(id, _)| id).collect();
        cell.monitor_pid = info.monitor_pid.unwrap_or(0);
        Ok(cell)
    }
}

#[tonic::async_trait]
impl CellsService for Cells {
    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let CreateRequest {
            namespace,
            name,
            network: requested,
            tags,
        } = request.into_inner();
        let request = CellRequest {
            name: object_name("cell", &name).map_err(CallError::from)?,
            network: network(requested).map_err(CallError::from)?,
            labels: tags.into_iter().collect(),
        };
        let ns = namespace.clone();
        let record = offload(&self.engine, move |e| async move {
            e.containers.create_cell(&ns, request).await
        })
        .await?;
        tracing::info!(namespace, cell = %record.name, cell_id = %record.id, "cell created");
        Ok(Response::new(CreateResponse {
            cell: Some(self.cell(record).await?),
        }))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let ListRequest { namespace } = request.into_inner();
        let records = offload(&self.engine, move |e| async move {
            e.containers.cells(&namespace)
        })
        .await?;
        let mut cells = Vec::new();
        for record in records {
            cells.push(self.cell(record).await?);
        }
        Ok(Response::new(ListResponse { cells }))
    }

    async fn inspect(
        &self,
        request: Request<InspectRequest>,
    ) -> Result<Response<InspectResponse>, Status> {
        let InspectRequest { namespace, cell } = request.into_inner();
        let info = offload(&self.engine, move |e| async move {
            e.containers.inspect_cell(&namespace, &cell).await
        })
        .await?;
        Ok(Response::new(InspectResponse {
            cell: Some(self.inspected(info).await?),
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let DeleteRequest {
            namespace,
            cell,
            force,
        } = request.into_inner();
        let (ns, c) = (namespace.clone(), cell.clone());
        offload(&self.engine, move |e| async move {
            e.containers.delete_cell(&ns, &c, force).await
        })
        .await?;
        tracing::info!(namespace, cell, force, "cell deleted");
        Ok(Response::new(DeleteResponse {}))
    }
}
