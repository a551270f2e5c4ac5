//! `testudo.networks.v1.NetworksService` over the engine's network service.

use std::sync::Arc;

use testudo_api::networks::v1::networks_service_server::NetworksService;
use testudo_api::networks::v1::{
    CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, InspectRequest, InspectResponse,
    ListRequest, ListResponse, Network,
};
use testudo_engine::networks::NetworkInfo;
use tonic::{Request, Response, Status};

use crate::namespaces::timestamp;
use crate::status::blocking;
use crate::Engine;

/// The networks service.
#[derive(Debug)]
pub(crate) struct Networks {
    engine: Arc<Engine>,
}

impl Networks {
    pub(crate) fn new(engine: Arc<Engine>) -> Networks {
        Networks { engine }
    }
}

fn network(info: NetworkInfo) -> Network {
    let record = info.record;
    let mut subnets = vec![record.subnets.ipv4.to_string()];
    subnets.extend(record.subnets.ipv6.map(|v6| v6.to_string()));
    Network {
        name: record.name,
        subnets,
        bridge: record.bridge,
        created_at: Some(record.created)
            .filter(|c| !c.is_empty())
            .and_then(|c| timestamp(&c)),
        default: info.is_default,
        containers: info.containers,
    }
}

#[tonic::async_trait]
impl NetworksService for Networks {
    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let CreateRequest {
            name,
            subnets,
            bridge,
        } = request.into_inner();
        let engine = self.engine.clone();
        let created = blocking(move || {
            let bridge = Some(bridge.as_str()).filter(|b| !b.is_empty());
            Ok(engine
                .containers
                .networks()
                .create(&name, &subnets, bridge)?)
        })
        .await?;
        Ok(Response::new(CreateResponse {
            network: Some(network(created)),
        }))
    }

    async fn list(&self, _: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let engine = self.engine.clone();
        let listed = blocking(move || Ok(engine.containers.networks().list()?)).await?;
        Ok(Response::new(ListResponse {
            networks: listed.into_iter().map(network).collect(),
        }))
    }

    async fn inspect(
        &self,
        request: Request<InspectRequest>,
    ) -> Result<Response<InspectResponse>, Status> {
        let InspectRequest { name } = request.into_inner();
        let engine = self.engine.clone();
        let info = blocking(move || Ok(engine.containers.networks().inspect(&name)?)).await?;
        Ok(Response::new(InspectResponse {
            network: Some(network(info)),
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let DeleteRequest { name } = request.into_inner();
        let engine = self.engine.clone();
        blocking(move || Ok(engine.containers.networks().delete(&name)?)).await?;
        Ok(Response::new(DeleteResponse {}))
    }
}
