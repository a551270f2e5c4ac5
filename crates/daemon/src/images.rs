//! `testudo.images.v1.ImagesService` over the engine's image service. Image references belong
//! to the request's namespace, which must exist; content is shared, so Prune (which only frees
//! what no namespace references) is the same call whichever namespace asks.

use std::sync::Arc;

use testudo_api::images::v1::images_service_server::ImagesService;
use testudo_api::images::v1::{
    import_request, pull_response, DeleteRequest, DeleteResponse, ExportRequest, ExportResponse,
    Image, ImportRequest, ImportResponse, InspectRequest, InspectResponse, ListRequest,
    ListResponse, PruneRequest, PruneResponse, PullRequest, PullResponse,
};
use testudo_engine::images::{ImageError, ImageInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::namespaces::timestamp;
use crate::request::{ImageReference, NamespaceName, RequestError, MAX_CHUNK};
use crate::status::{blocking, hide_path, CallError};
use crate::Engine;

/// The largest manifest Inspect returns; the engine refuses larger ones at pull time anyway.
const MAX_MANIFEST: usize = 4 << 20;

/// The images service.
#[derive(Debug)]
pub(crate) struct Images {
    engine: Arc<Engine>,
}

impl Images {
    pub(crate) fn new(engine: Arc<Engine>) -> Images {
        Images { engine }
    }

    /// The request's namespace, which must be well formed and exist.
    fn namespace(&self, name: &str) -> Result<NamespaceName, CallError> {
        existing_namespace(&self.engine, name)
    }
}

/// `name`, which must be a well formed namespace that exists.
fn existing_namespace(engine: &Engine, name: &str) -> Result<NamespaceName, CallError> {
    let name = NamespaceName::parse(name)?;
    engine.state.namespace(name.name())?;
    Ok(name)
}

fn image(info: &ImageInfo) -> Image {
    Image {
        name: info.name.clone(),
        digest: info.digest.clone(),
        manifest_digest: info.manifest_digest.clone(),
        size_bytes: info.size,
        layers: u32::try_from(info.layers).unwrap_or(u32::MAX),
        created_at: timestamp(&info.created),
    }
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl ImagesService for Images {
    type PullStream = Stream<PullResponse>;
    type ExportStream = Stream<ExportResponse>;

    /// The engine reports no progress to callers yet, so the stream holds only the image.
    async fn pull(
        &self,
        request: Request<PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let PullRequest {
            namespace,
            reference,
        } = request.into_inner();
        let namespace = self.namespace(&namespace)?;
        let reference = ImageReference::parse(&reference).map_err(CallError::from)?;
        let (sender, receiver) = mpsc::channel(1);
        let engine = self.engine.clone();
        // Its own task: a client that disconnects does not cancel the pull half-way.
        tokio::spawn(async move {
            let pulled = engine
                .images
                .pull(namespace.name(), reference.as_str(), false)
                .await;
            let message = match pulled {
                Ok(info) => {
                    tracing::info!(namespace = %namespace.name(), image = %info.name, "image pulled");
                    Ok(PullResponse {
                        message: Some(pull_response::Message::Image(image(&info))),
                    })
                }
                Err(e) => Err(Status::from(CallError::from(e))),
            };
            // A client that went away gets nothing; the pull is done either way.
            let _ = sender.send(message).await;
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let name = request.into_inner().namespace;
        let engine = self.engine.clone();
        let infos = blocking(move || {
            let namespace = existing_namespace(&engine, &name)?;
            Ok(engine.images.list(namespace.name())?)
        })
        .await?;
        Ok(Response::new(ListResponse {
            images: infos.iter().map(image).collect(),
        }))
    }

    async fn inspect(
        &self,
        request: Request<InspectRequest>,
    ) -> Result<Response<InspectResponse>, Status> {
        let InspectRequest {
            namespace,
            reference,
        } = request.into_inner();
        let engine = self.engine.clone();
        let (info, manifest, config) = blocking(move || {
            let namespace = existing_namespace(&engine, &namespace)?;
            let reference = ImageReference::parse(&reference)?;
            let images = &engine.images;
            let resolved = images.resolve(namespace.name(), reference.as_str())?;
            let manifest = images
                .store()
                .read_blob(&resolved.manifest_digest, MAX_MANIFEST)
                .map_err(ImageError::from)?;
            let config = serde_json::to_vec(&resolved.config).map_err(CallError::Encode)?;
            let info = images.inspect(namespace.name(), reference.as_str())?;
            Ok((info, manifest, config))
        })
        .await?;
        Ok(Response::new(InspectResponse {
            image: Some(image(&info)),
            manifest,
            config,
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let DeleteRequest {
            namespace,
            reference,
        } = request.into_inner();
        let engine = self.engine.clone();
        let (namespace, reference) = blocking(move || {
            let namespace = existing_namespace(&engine, &namespace)?;
            let reference = ImageReference::parse(&reference)?;
            engine.images.remove(namespace.name(), reference.as_str())?;
            Ok((namespace, reference))
        })
        .await?;
        tracing::info!(namespace = %namespace.name(), image = reference.as_str(), "image deleted");
        Ok(Response::new(DeleteResponse {}))
    }

    async fn import(
        &self,
        request: Request<Streaming<ImportRequest>>,
    ) -> Result<Response<ImportResponse>, Status> {
        let mut stream = request.into_inner();
        let start = match stream.message().await? {
            Some(ImportRequest {
                message: Some(import_request::Message::Start(start)),
            }) => start,
            _ => return Err(CallError::from(RequestError::ImportWithoutStart).into()),
        };
        let namespace = self.namespace(&start.namespace)?;
        // Removed when dropped, whichever way the call ends.
        let spool = tempfile::Builder::new()
            .prefix("import-")
            .suffix(".tar")
            .tempfile_in(&self.engine.spool)
            .map_err(CallError::Spool)?;
        let mut file = tokio::fs::File::from_std(spool.reopen().map_err(CallError::Spool)?);
        while let Some(message) = stream.message().await? {
            let chunk = match message.message {
                Some(import_request::Message::Chunk(chunk)) => chunk,
                Some(import_request::Message::Start(_)) => {
                    return Err(CallError::from(RequestError::ImportStartTwice).into())
                }
                None => return Err(CallError::from(RequestError::EmptyImportMessage).into()),
            };
            if chunk.len() > MAX_CHUNK {
                let size = chunk.len();
                return Err(CallError::from(RequestError::ChunkTooLarge { size }).into());
            }
            file.write_all(&chunk).await.map_err(CallError::Spool)?;
        }
        file.flush().await.map_err(CallError::Spool)?;
        drop(file);
        let default_name = Some(start.default_name.as_str()).filter(|n| !n.is_empty());
        let infos = self
            .engine
            .images
            .import(namespace.name(), spool.path(), default_name)
            .await
            .map_err(|e| hide_path(CallError::from(e).into(), spool.path(), "(uploaded)"))?;
        for info in &infos {
            tracing::info!(namespace = %namespace.name(), image = %info.name, "image imported");
        }
        Ok(Response::new(ImportResponse {
            images: infos.iter().map(image).collect(),
        }))
    }

    async fn export(
        &self,
        request: Request<ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let ExportRequest {
            namespace,
            references,
        } = request.into_inner();
        let namespace = self.namespace(&namespace)?;
        if references.is_empty() {
            return Err(CallError::from(RequestError::NoReferences).into());
        }
        let references = references
            .iter()
            .map(|r| ImageReference::parse(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(CallError::from)?;
        let names: Vec<&str> = references.iter().map(ImageReference::as_str).collect();
        let spool = tempfile::Builder::new()
            .prefix("export-")
            .tempdir_in(&self.engine.spool)
            .map_err(CallError::Spool)?;
        let archive = spool.path().join("layout.tar");
        self.engine
            .images
            .export(namespace.name(), &names, &archive, true)
            .await
            .map_err(CallError::from)?;
        let mut file = tokio::fs::File::open(&archive)
            .await
            .map_err(CallError::Spool)?;
        // The open file keeps its data; the directory can go now.
        drop(spool);
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let mut chunk = vec![0; MAX_CHUNK];
                let message = match file.read(&mut chunk).await {
                    Ok(0) => break,
                    Ok(n) => {
                        chunk.truncate(n);
                        Ok(ExportResponse { chunk })
                    }
                    Err(e) => Err(Status::from(CallError::Spool(e))),
                };
                let failed = message.is_err();
                if sender.send(message).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn prune(
        &self,
        request: Request<PruneRequest>,
    ) -> Result<Response<PruneResponse>, Status> {
        let name = request.into_inner().namespace;
        let engine = self.engine.clone();
        let summary = blocking(move || {
            existing_namespace(&engine, &name)?;
            Ok(engine.images.prune()?)
        })
        .await?;
        tracing::info!(
            blobs = summary.blobs,
            snapshots = summary.snapshots,
            bytes = summary.bytes,
            "images pruned"
        );
        Ok(Response::new(PruneResponse {
            blobs: summary.blobs,
            snapshots: summary.snapshots,
            reclaimed_bytes: summary.bytes,
        }))
    }
}
