//! A typed async client for `testudod`: one method per API call, plain results, and errors that
//! carry the daemon's status code and message. It reaches the daemon on its unix socket
//! ([`Client::connect`]) or on TCP with mutual TLS ([`Client::connect_tcp`], rustls: see `tls.rs`).
//!
//! Non-goals: presentation (tables, JSON: `testudoctl` does that), retries, and certificate
//! management. The messages are `testudo-api`'s, re-exported as [`namespaces`], [`images`],
//! [`containers`], [`networks`] and [`events`], so callers need no other crate for them.

mod cell_calls;
mod network_calls;
mod process;
mod tls;
mod upgrade;

use std::path::{Path, PathBuf};

use futures_util::stream::{self, StreamExt};
use hyper_util::rt::TokioIo;
use testudo_api::cells::v1::cells_service_client::CellsServiceClient;
use testudo_api::containers::v1::containers_service_client::ContainersServiceClient;
use testudo_api::containers::v1::{
    Container, ContainerConfig, ContainerState, CreateRequest as CreateContainerRequest,
    DeleteRequest as DeleteContainerRequest, InspectRequest as InspectContainerRequest,
    KillRequest, ListRequest as ListContainersRequest, LogsRequest, LogsResponse, RunRequest,
    StartRequest, StatsRequest, StatsResponse, StopRequest, WaitRequest, WaitResponse,
};
use testudo_api::events::v1::events_service_client::EventsServiceClient;
use testudo_api::events::v1::{Event, SubscribeRequest, SubscribeResponse};
use testudo_api::images::v1::images_service_client::ImagesServiceClient;
use testudo_api::images::v1::{
    import_request, pull_response, DeleteRequest as DeleteImageRequest, ExportRequest, Image,
    ImportRequest, ImportStart, InspectRequest, InspectResponse, ListRequest as ListImagesRequest,
    PruneRequest, PruneResponse, PullProgress, PullRequest,
};
use testudo_api::namespaces::v1::namespaces_service_client::NamespacesServiceClient;
use testudo_api::namespaces::v1::{CreateRequest, DeleteRequest, ListRequest, Namespace};
use testudo_api::networks::v1::networks_service_client::NetworksServiceClient;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

pub use process::{ProcessEvent, ProcessInput, ProcessOutput};
pub use testudo_api::cells::v1 as cells;
pub use testudo_api::containers::v1 as containers;
pub use testudo_api::events::v1 as events;
pub use testudo_api::images::v1 as images;
pub use testudo_api::namespaces::v1 as namespaces;
pub use testudo_api::networks::v1 as networks;
pub use tls::{TlsError, TlsFiles};
pub use tonic::Code;

/// The daemon's default socket.
pub const DEFAULT_SOCKET: &str = "/run/testudo/testudod.sock";

/// How long [`Client::connect_tcp`] waits for the daemon's first record after the handshake;
/// past it, the connection is used as it is.
const VERDICT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The largest bytes chunk the API allows in a stream.
const MAX_CHUNK: usize = 1 << 20;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon's socket cannot be reached.
    #[error("cannot connect to the daemon at {socket:?}")]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// The daemon's TCP address cannot be reached.
    #[error("cannot connect to the daemon at {address}")]
    ConnectTcp {
        /// The address, `host:port`.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake with the daemon failed: the daemon's certificate is not signed by the
    /// CA or does not name the host, or the daemon refused this client's certificate.
    #[error("TLS handshake with the daemon at {address} failed")]
    Handshake {
        /// The address, `host:port`.
        address: String,
        /// The cause (rustls's reason).
        #[source]
        source: std::io::Error,
    },
    /// The TLS files or the address are not usable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The daemon refused or failed the call.
    #[error("{message}")]
    Status {
        /// The gRPC status code.
        code: Code,
        /// The daemon's one-line message.
        message: String,
    },
    /// The daemon answered without a field the API promises.
    #[error("the daemon's answer has no {field}")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// Input for an Exec or Attach call whose stream has already ended.
    #[error("the {call} call has ended")]
    CallEnded {
        /// `exec`, `attach`.
        call: &'static str,
    },
    /// Reading the archive to import, or writing the exported one, failed.
    #[error("cannot {action} the archive")]
    Archive {
        /// `read`, `write`.
        action: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// The status code, for an error the daemon returned.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            ClientError::Connect { .. }
            | ClientError::ConnectTcp { .. }
            | ClientError::Handshake { .. }
            | ClientError::Tls(_)
            | ClientError::MissingField { .. }
            | ClientError::CallEnded { .. }
            | ClientError::Archive { .. } => None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        // A status made on this side from a broken connection says only "transport error";
        // its causes say why (such as the daemon's TLS alert). The daemon's statuses have none.
        let mut message = status.message().to_owned();
        let mut source = std::error::Error::source(&status);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !message.ends_with(&cause_text) {
                message.push_str(": ");
                message.push_str(&cause_text);
            }
            source = cause.source();
        }
        ClientError::Status {
            code: status.code(),
            message,
        }
    }
}

/// A connection to the daemon.
#[derive(Debug, Clone)]
pub struct Client {
    namespaces: NamespacesServiceClient<Channel>,
    images: ImagesServiceClient<Channel>,
    containers: ContainersServiceClient<Channel>,
    networks: NetworksServiceClient<Channel>,
    cells: CellsServiceClient<Channel>,
    events: EventsServiceClient<Channel>,
}

/// The events of a subscription, as they happen.
#[derive(Debug)]
pub struct EventStream {
    stream: tonic::Streaming<SubscribeResponse>,
}

impl EventStream {
    /// The next event; `None` once the daemon ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        match self.stream.message().await? {
            Some(SubscribeResponse { event: Some(event) }) => Ok(Some(event)),
            Some(SubscribeResponse { event: None }) => {
                Err(ClientError::MissingField { field: "event" })
            }
            None => Ok(None),
        }
    }
}

impl Client {
    /// Connects to the daemon's unix socket at `socket`.
    pub async fn connect(socket: &Path) -> Result<Client, ClientError> {
        let path = socket.to_owned();
        // The URI is a placeholder that tonic requires; every connection goes to the socket.
        let channel =
            Endpoint::from_static("http://testudod.invalid")
                .connect_with_connector(service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .map_err(|source| ClientError::Connect {
                    socket: socket.to_owned(),
                    source,
                })?;
        Ok(Client::over(channel))
    }

    /// Connects to the daemon's TCP listener at `address` (`host:port`) with mutual TLS: the
    /// daemon's certificate must be signed by `files.ca` and name the host as given.
    pub async fn connect_tcp(address: &str, files: &TlsFiles) -> Result<Client, ClientError> {
        let server_name = tls::server_name(address)?;
        let connector = tokio_rustls::TlsConnector::from(tls::client_config(files)?);
        // The first connection is made here, so that its failures are this crate's errors
        // rather than tonic's "transport error"; the channel dials again if it is lost.
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|source| ClientError::ConnectTcp {
                address: address.to_owned(),
                source,
            })?;
        let handshake_error = |source| ClientError::Handshake {
            address: address.to_owned(),
            source,
        };
        let mut first = BufReader::new(
            connector
                .connect(server_name.clone(), tcp)
                .await
                .map_err(handshake_error)?,
        );
        // With TLS 1.3 the daemon judges this client's certificate after the handshake is
        // over on this side: its verdict is its first record, an alert or its HTTP/2
        // settings. It is read (and kept for the channel) so that a refusal is reported as
        // one rather than as a broken call.
        match tokio::time::timeout(VERDICT_TIMEOUT, first.fill_buf()).await {
            Ok(Ok([])) => {
                return Err(handshake_error(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the daemon closed the connection",
                )))
            }
            Ok(Err(e)) => return Err(handshake_error(e)),
            Ok(Ok(_)) | Err(_) => {}
        }
        let first = std::sync::Arc::new(std::sync::Mutex::new(Some(first)));
        let target = address.to_owned();
        // The URI is a placeholder that tonic requires; the connector dials `address` itself.
        let channel = Endpoint::from_static("http://testudod.invalid").connect_with_connector_lazy(
            service_fn(move |_: Uri| {
                let (connector, server_name, target) =
                    (connector.clone(), server_name.clone(), target.clone());
                let first = first.lock().ok().and_then(|mut first| first.take());
                async move {
                    let tls = match first {
                        Some(tls) => tls,
                        None => {
                            let tcp = TcpStream::connect(target).await?;
                            BufReader::new(connector.connect(server_name, tcp).await?)
                        }
                    };
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            }),
        );
        Ok(Client::over(channel))
    }

    fn over(channel: Channel) -> Client {
        Client {
            namespaces: NamespacesServiceClient::new(channel.clone()),
            images: ImagesServiceClient::new(channel.clone()),
            containers: ContainersServiceClient::new(channel.clone()),
            networks: NetworksServiceClient::new(channel.clone()),
            cells: CellsServiceClient::new(channel.clone()),
            events: EventsServiceClient::new(channel),
        }
    }

    /// Subscribes to the events of `namespace` (every namespace if `None`) whose topics start
    /// with one of `topics` (every topic if empty), from now on.
    pub async fn subscribe_events(
        &mut self,
        namespace: Option<&str>,
        topics: &[String],
    ) -> Result<EventStream, ClientError> {
        let stream = self
            .events
            .subscribe(SubscribeRequest {
                namespace: namespace.unwrap_or_default().to_owned(),
                topics: topics.to_vec(),
            })
            .await?
            .into_inner();
        Ok(EventStream { stream })
    }

    /// Creates namespace `name` with `tags`.
    pub async fn create_namespace(
        &mut self,
        name: &str,
        tags: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Namespace, ClientError> {
        let response = self
            .namespaces
            .create(CreateRequest {
                name: name.to_owned(),
                tags: tags.into_iter().collect(),
            })
            .await?;
        response
            .into_inner()
            .namespace
            .ok_or(ClientError::MissingField { field: "namespace" })
    }

    /// Every namespace, by name.
    pub async fn list_namespaces(&mut self) -> Result<Vec<Namespace>, ClientError> {
        Ok(self
            .namespaces
            .list(ListRequest {})
            .await?
            .into_inner()
            .namespaces)
    }

    /// Deletes namespace `name`; `force` also when it holds objects.
    pub async fn delete_namespace(&mut self, name: &str, force: bool) -> Result<(), ClientError> {
        self.namespaces
            .delete(DeleteRequest {
                name: name.to_owned(),
                force,
            })
            .await?;
        Ok(())
    }

    /// Pulls `reference` into `namespace`, calling `progress` for each progress event, and
    /// returns the image.
    pub async fn pull_image(
        &mut self,
        namespace: &str,
        reference: &str,
        mut progress: impl FnMut(&PullProgress),
    ) -> Result<Image, ClientError> {
        let mut stream = self
            .images
            .pull(PullRequest {
                namespace: namespace.to_owned(),
                reference: reference.to_owned(),
            })
            .await?
            .into_inner();
        while let Some(response) = stream.message().await? {
            match response.message {
                Some(pull_response::Message::Progress(p)) => progress(&p),
                Some(pull_response::Message::Image(image)) => return Ok(image),
                None => {}
            }
        }
        Err(ClientError::MissingField { field: "image" })
    }

    /// The images of `namespace`, by name.
    pub async fn list_images(&mut self, namespace: &str) -> Result<Vec<Image>, ClientError> {
        Ok(self
            .images
            .list(ListImagesRequest {
                namespace: namespace.to_owned(),
            })
            .await?
            .into_inner()
            .images)
    }

    /// Describes image `reference` of `namespace`, with its manifest and config.
    pub async fn inspect_image(
        &mut self,
        namespace: &str,
        reference: &str,
    ) -> Result<InspectResponse, ClientError> {
        Ok(self
            .images
            .inspect(InspectRequest {
                namespace: namespace.to_owned(),
                reference: reference.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// Deletes the reference `reference` of `namespace`.
    pub async fn delete_image(
        &mut self,
        namespace: &str,
        reference: &str,
    ) -> Result<(), ClientError> {
        self.images
            .delete(DeleteImageRequest {
                namespace: namespace.to_owned(),
                reference: reference.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Frees content no reference or container needs.
    pub async fn prune_images(&mut self, namespace: &str) -> Result<PruneResponse, ClientError> {
        Ok(self
            .images
            .prune(PruneRequest {
                namespace: namespace.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// Imports the OCI layout tar read from `archive` into `namespace`; `default_name` names
    /// images the archive names only by tag.
    pub async fn import_images(
        &mut self,
        namespace: &str,
        default_name: Option<&str>,
        archive: impl AsyncRead + Send + Unpin + 'static,
    ) -> Result<Vec<Image>, ClientError> {
        let start = ImportRequest {
            message: Some(import_request::Message::Start(ImportStart {
                namespace: namespace.to_owned(),
                default_name: default_name.unwrap_or_default().to_owned(),
            })),
        };
        // A read error ends the stream early; the daemon then refuses the truncated archive,
        // and the error itself is reported from here.
        let (read_error, mut read_failed) = tokio::sync::oneshot::channel();
        let chunks = stream::unfold(
            (archive, Some(read_error)),
            |(mut archive, mut read_error)| async move {
                let mut chunk = vec![0; MAX_CHUNK];
                match archive.read(&mut chunk).await {
                    Ok(0) => None,
                    Ok(n) => {
                        chunk.truncate(n);
                        let message = ImportRequest {
                            message: Some(import_request::Message::Chunk(chunk)),
                        };
                        Some((message, (archive, read_error)))
                    }
                    Err(e) => {
                        if let Some(sender) = read_error.take() {
                            let _ = sender.send(e);
                        }
                        None
                    }
                }
            },
        );
        let requests = stream::iter([start]).chain(chunks);
        let result = self.images.import(requests).await;
        // Not awaited: the transport may still hold the request stream after the answer.
        if let Ok(source) = read_failed.try_recv() {
            return Err(ClientError::Archive {
                action: "read",
                source,
            });
        }
        Ok(result?.into_inner().images)
    }

    /// Exports `references` of `namespace` as an OCI layout tar written to `out`.
    pub async fn export_images(
        &mut self,
        namespace: &str,
        references: &[&str],
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<(), ClientError> {
        let mut stream = self
            .images
            .export(ExportRequest {
                namespace: namespace.to_owned(),
                references: references.iter().map(|r| (*r).to_owned()).collect(),
            })
            .await?
            .into_inner();
        let write_error = |source| ClientError::Archive {
            action: "write",
            source,
        };
        while let Some(response) = stream.message().await? {
            out.write_all(&response.chunk).await.map_err(write_error)?;
        }
        out.flush().await.map_err(write_error)
    }

    /// Creates a container in `namespace` and starts it; returns its id.
    pub async fn run_container(
        &mut self,
        namespace: &str,
        config: ContainerConfig,
    ) -> Result<String, ClientError> {
        let request = RunRequest {
            namespace: namespace.to_owned(),
            config: Some(config),
        };
        Ok(self.containers.run(request).await?.into_inner().id)
    }

    /// Creates a container in `namespace` without starting it; returns its id.
    pub async fn create_container(
        &mut self,
        namespace: &str,
        config: ContainerConfig,
    ) -> Result<String, ClientError> {
        let request = CreateContainerRequest {
            namespace: namespace.to_owned(),
            config: Some(config),
        };
        Ok(self.containers.create(request).await?.into_inner().id)
    }

    /// Starts container `container` (an id or a name) of `namespace`.
    pub async fn start_container(
        &mut self,
        namespace: &str,
        container: &str,
    ) -> Result<(), ClientError> {
        self.containers
            .start(StartRequest {
                namespace: namespace.to_owned(),
                container: container.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Stops a container: `signal` (empty: its stop signal), then SIGKILL after `timeout`
    /// (`None`: the daemon's default); returns its exit code.
    pub async fn stop_container(
        &mut self,
        namespace: &str,
        container: &str,
        signal: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<i32, ClientError> {
        let timeout = timeout.map(|t| prost_types::Duration {
            seconds: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(t.subsec_nanos()).unwrap_or(0),
        });
        let response = self
            .containers
            .stop(StopRequest {
                namespace: namespace.to_owned(),
                container: container.to_owned(),
                signal: signal.to_owned(),
                timeout,
            })
            .await?;
        Ok(response.into_inner().exit_code)
    }

    /// Sends `signal` (empty: SIGKILL) to a container.
    pub async fn kill_container(
        &mut self,
        namespace: &str,
        container: &str,
        signal: &str,
    ) -> Result<(), ClientError> {
        self.containers
            .kill(KillRequest {
                namespace: namespace.to_owned(),
                container: container.to_owned(),
                signal: signal.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Deletes a container; `force` kills a running one first.
    pub async fn delete_container(
        &mut self,
        namespace: &str,
        container: &str,
        force: bool,
    ) -> Result<(), ClientError> {
        self.containers
            .delete(DeleteContainerRequest {
                namespace: namespace.to_owned(),
                container: container.to_owned(),
                force,
            })
            .await?;
        Ok(())
    }

    /// Describes a container.
    pub async fn inspect_container(
        &mut self,
        namespace: &str,
        container: &str,
    ) -> Result<Container, ClientError> {
        self.containers
            .inspect(InspectContainerRequest {
                namespace: namespace.to_owned(),
                container: container.to_owned(),
            })
            .await?
            .into_inner()
            .container
            .ok_or(ClientError::MissingField { field: "container" })
    }

    /// The containers of `namespace` (empty: of every namespace) in one of `states` (empty:
    /// any), by namespace and name.
    pub async fn list_containers(
        &mut self,
        namespace: &str,
        states: &[ContainerState],
    ) -> Result<Vec<Container>, ClientError> {
        Ok(self
            .containers
            .list(ListContainersRequest {
                namespace: namespace.to_owned(),
                tags: Default::default(),
                states: states.iter().map(|&s| s.into()).collect(),
            })
            .await?
            .into_inner()
            .containers)
    }

    /// Waits until a container has stopped; how it ended.
    pub async fn wait_container(
        &mut self,
        namespace: &str,
        container: &str,
    ) -> Result<WaitResponse, ClientError> {
        Ok(self
            .containers
            .wait(WaitRequest {
                namespace: namespace.to_owned(),
                container: container.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// The stream of a container's log records, as `request` asks.
    pub async fn container_logs(
        &mut self,
        request: LogsRequest,
    ) -> Result<LogRecords, ClientError> {
        Ok(LogRecords(
            self.containers.logs(request).await?.into_inner(),
        ))
    }

    /// One sample of a container's resource usage.
    pub async fn container_stats(
        &mut self,
        namespace: &str,
        container: &str,
    ) -> Result<StatsResponse, ClientError> {
        Ok(self
            .containers
            .stats(StatsRequest {
                namespace: namespace.to_owned(),
                container: container.to_owned(),
            })
            .await?
            .into_inner())
    }
}

/// A container's log records as the daemon streams them.
#[derive(Debug)]
pub struct LogRecords(tonic::Streaming<LogsResponse>);

impl LogRecords {
    /// The next record; `None` once the stream has ended.
    pub async fn next(&mut self) -> Result<Option<LogsResponse>, ClientError> {
        Ok(self.0.message().await?)
    }
}
