//! `testudo.namespaces.v1.NamespacesService` over the state database.

use std::sync::Arc;

use testudo_api::namespaces::v1::namespaces_service_server::NamespacesService;
use testudo_api::namespaces::v1::{
    CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, ListRequest, ListResponse,
    Namespace,
};
use testudo_engine::events::{Event, EventKind};
use testudo_engine::state::NamespaceRecord;
use tonic::{Request, Response, Status};

use crate::request::NamespaceName;
use crate::status::{blocking, offload, CallError};
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
        let engine = self.engine.clone();
        let record = blocking(move || {
            Ok(engine
                .state
                .create_namespace(name.name(), tags.into_iter().collect())?)
        })
        .await?;
        tracing::info!(namespace = %record.name, "namespace created");
        self.engine.images.events().publish(Event::new(
            record.name.as_str(),
            EventKind::NamespaceCreated,
        ));
        Ok(Response::new(CreateResponse {
            namespace: Some(namespace(record)),
        }))
    }

    async fn list(&self, _: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let engine = self.engine.clone();
        let records = blocking(move || Ok(engine.state.namespaces()?)).await?;
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
        let deleted = name.name().to_string();
        offload(&self.engine, move |e| async move {
            e.containers.delete_namespace(&deleted, force).await
        })
        .await?;
        tracing::info!(namespace = %name.name(), force, "namespace deleted");
        self.engine.images.events().publish(Event::new(
            name.name().as_str(),
            EventKind::NamespaceDeleted,
        ));
        Ok(Response::new(DeleteResponse {}))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use testudo_engine::state::{ContainerRecord, Name};
    use tonic::Code;

    use super::*;

    fn engine(root: &std::path::Path) -> Arc<Engine> {
        let config = crate::Config {
            root: root.to_owned(),
            socket: root.join("unused.sock"),
            tcp: Default::default(),
            insecure_registries: Vec::new(),
            log_level: tracing::Level::INFO,
            // Only namespaces are served here: no monitor is ever started.
            testudo_binary: Some(root.join("no-testudo")),
            log_root: root.join("logs"),
            cgroup_parent: "/testudo-unit".into(),
            network: crate::NetworkFlags {
                default_network: "testudo".into(),
                default_bridge: "testudo0".into(),
                default_subnets: vec!["10.91.0.0/16".into()],
                cni_config_dir: root.join("cni"),
                cni_plugin_dirs: Vec::new(),
            },
        };
        Arc::new(Engine::open(&config).unwrap())
    }

    fn delete(name: &str, force: bool) -> Request<DeleteRequest> {
        Request::new(DeleteRequest {
            name: name.to_owned(),
            force,
        })
    }

    #[tokio::test]
    async fn a_namespace_holding_a_container_is_deleted_only_with_force() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let service = Namespaces::new(engine.clone());
        service
            .create(Request::new(CreateRequest {
                name: "acme".to_owned(),
                tags: Default::default(),
            }))
            .await
            .unwrap();
        let acme = Name::parse("namespace", "acme").unwrap();
        engine
            .state
            .insert_container(&ContainerRecord {
                namespace: acme.clone(),
                id: "a".repeat(64),
                name: Name::parse("container", "web").unwrap(),
                image: "docker.io/library/busybox:latest".to_owned(),
                image_digest: String::new(),
                config: serde_json::Value::Null,
                status: "created".to_owned(),
                pid: None,
                exit_code: None,
                created: "2026-01-01T00:00:00Z".to_owned(),
                started: None,
                finished: None,
                labels: Default::default(),
                restart_count: 0,
                stop_requested: false,
                cell: None,
            })
            .unwrap();

        let refused = service.delete(delete("acme", false)).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert_eq!(
            refused.message(),
            "namespace \"acme\" still holds 1 container(s), 0 cell(s) and 0 image(s)"
        );
        assert_eq!(engine.state.containers(&acme).unwrap().len(), 1);

        service.delete(delete("acme", true)).await.unwrap();
        let gone = engine.state.namespace(&acme).unwrap_err();
        assert_eq!(gone.to_string(), "namespace \"acme\" not found");
    }

    #[test]
    fn a_stored_time_becomes_an_api_timestamp() {
        let t = timestamp("2026-01-02T03:04:05.5Z").unwrap();
        assert_eq!(t.nanos, 500_000_000);
        assert_eq!(t.seconds % 60, 5);
        assert!(timestamp("yesterday").is_none());
    }
}
