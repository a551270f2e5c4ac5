//! `testudo.namespaces.v1.NamespacesService` over the state database.

use std::sync::Arc;

use testudo_api::namespaces::v1::namespaces_service_server::NamespacesService;
use testudo_api::namespaces::v1::{
    CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, ListRequest, ListResponse,
    Namespace,
};
use testudo_engine::state::NamespaceRecord;
use tonic::{Request, Response, Status};

use crate::request::NamespaceName;
use crate::status::CallError;
use crate::Engine;

/// The namespaces service.
#[derive(Debug)]
pub(crate) struct Namespaces {
    engine: Arc<Engine>,
}

impl Namespaces {
    pub(crate) fn new(engine: Arc<Engine>) -> Namespaces {
        Namespaces { engine }
    }
}

/// An RFC 3339 time as the API's timestamp; `None` if the stored text does not parse.
pub(crate) fn timestamp(rfc3339: &str) -> Option<prost_types::Timestamp> {
    humantime::parse_rfc3339(rfc3339)
        .ok()
        .map(prost_types::Timestamp::from)
}

fn namespace(record: NamespaceRecord) -> Namespace {
    Namespace {
        created_at: timestamp(&record.created),
        name: record.name.to_string(),
        tags: record.labels.into_iter().collect(),
    }
}

#[tonic::async_trait]
impl NamespacesService for Namespaces {
    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let CreateRequest { name, tags } = request.into_inner();
        let name = NamespaceName::parse(&name).map_err(CallError::from)?;
        let record = self
            .engine
            .state
            .create_namespace(name.name(), tags.into_iter().collect())
            .map_err(CallError::from)?;
        tracing::info!(namespace = %record.name, "namespace created");
        Ok(Response::new(CreateResponse {
            namespace: Some(namespace(record)),
        }))
    }

    async fn list(&self, _: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let records = self.engine.state.namespaces().map_err(CallError::from)?;
        Ok(Response::new(ListResponse {
            namespaces: records.into_iter().map(namespace).collect(),
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let DeleteRequest { name, force } = request.into_inner();
        let name = NamespaceName::parse(&name).map_err(CallError::from)?;
        // Image references are global in this increment (see the crate docs): only containers
        // hold a namespace back.
        self.engine
            .state
            .delete_namespace(name.name(), force)
            .map_err(CallError::from)?;
        tracing::info!(namespace = %name.name(), force, "namespace deleted");
        Ok(Response::new(DeleteResponse {}))
    }
}
