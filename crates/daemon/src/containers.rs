//! `testudo.containers.v1.ContainersService` over the engine's container service.
//!
//! Exec and Attach check their `start` and the container's state here, then `stdio.rs` serves
//! the rest of the stream. Inspect reports no image digest and no restart count yet: the engine's
//! record holds neither.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use testudo_api::containers::v1::containers_service_server::ContainersService;
use testudo_api::containers::v1::{
    attach_request, attach_response, exec_request, exec_response, AttachRequest, AttachResponse,
    Container, ContainerState, ContainerStatus, CpuStats, CreateRequest, CreateResponse,
    DeleteRequest, DeleteResponse, ExecRequest, ExecResponse, InspectRequest, InspectResponse,
    KillRequest, KillResponse, ListRequest, ListResponse, LogsRequest, LogsResponse, MemoryStats,
    MonitorUpgrade, NetworkAttachment, OutputStream, PidsStats, RunRequest, RunResponse,
    StartRequest, StartResponse, StatsRequest, StatsResponse, StopRequest, StopResponse,
    UpgradeMonitorsRequest, UpgradeMonitorsResponse, WaitRequest, WaitResponse,
};
use testudo_engine::containers::{self as engine, status, LogOptions, LogStream};
use testudo_engine::state::{AttachmentRecord, ContainerRecord};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::namespaces::timestamp;
use crate::request::{
    api_ports, container_config, container_ref, create_request, exec_request, signal, RequestError,
};
use crate::status::{blocking, offload, CallError};
use crate::stdio::{self, Call, ClientMessage, ServerMessage};
use crate::Engine;

/// Stop's timeout when the request gives none.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// `SIGTERM` and `SIGKILL`, the same on every Linux architecture.
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// The containers service.
#[derive(Debug)]
pub(crate) struct Containers {
    engine: Arc<Engine>,
}

impl Containers {
    pub(crate) fn new(engine: Arc<Engine>) -> Containers {
        Containers { engine }
    }

    /// The container, brought up to date with its monitor.
    async fn inspect_record(
        &self,
        namespace: &str,
        container: &str,
    ) -> Result<ContainerRecord, CallError> {
        let (ns, c) = (namespace.to_owned(), container.to_owned());
        offload(&self.engine, move |e| async move {
            e.containers.inspect(&ns, &c).await
        })
        .await
    }

    /// The container, which must be in one of `states` for `action`.
    async fn expect_state(
        &self,
        namespace: &str,
        container: &str,
        states: &[&str],
        action: &'static str,
    ) -> Result<ContainerRecord, CallError> {
        let record = self.inspect_record(namespace, container).await?;
        if !states.contains(&record.status.as_str()) {
            return Err(CallError::WrongState {
                container: container.to_owned(),
                state: record.status,
                action,
            });
        }
        Ok(record)
    }

    /// The stop signal of the container's image, if it names one that parses.
    async fn image_stop_signal(&self, record: &ContainerRecord) -> Option<i32> {
        let engine = self.engine.clone();
        let (namespace, image) = (record.namespace.clone(), record.image.clone());
        let resolved =
            tokio::task::spawn_blocking(move || engine.images.resolve(&namespace, &image))
                .await
                .ok()?
                .ok()?;
        let name = resolved.config.config().as_ref()?.stop_signal().clone()?;
        signal(&name, SIGTERM).ok()
    }
}

fn state(status: &str) -> ContainerState {
    match status {
        status::CREATED => ContainerState::Created,
        status::RUNNING => ContainerState::Running,
        status::STOPPED => ContainerState::Stopped,
        _ => ContainerState::Unknown,
    }
}

/// The request a container was created with, from its record.
fn container_config_of(record: &ContainerRecord) -> Result<engine::CreateRequest, CallError> {
    serde_json::from_value(record.config.clone()).map_err(|source| CallError::StoredConfig {
        container: record.id.clone(),
        source,
    })
}

/// The API's form of a container's network attachment.
pub(crate) fn network_attachment(attachment: AttachmentRecord) -> NetworkAttachment {
    NetworkAttachment {
        network: attachment.network,
        netns_path: attachment.netns.to_string_lossy().into_owned(),
        addresses: attachment
            .addresses
            .iter()
            .map(ToString::to_string)
            .collect(),
        gateways: attachment
            .gateways
            .iter()
            .map(ToString::to_string)
            .collect(),
        ports: api_ports(&attachment.ports),
    }
}

fn container(
    record: ContainerRecord,
    attachment: Option<AttachmentRecord>,
) -> Result<Container, CallError> {
    let request = container_config_of(&record)?;
    let state = state(&record.status);
    let running = state == ContainerState::Running;
    Ok(Container {
        status: Some(ContainerStatus {
            state: state.into(),
            pid: record.pid.filter(|_| running).unwrap_or(0),
            exit_code: record.exit_code,
            created_at: timestamp(&record.created),
            started_at: record.started.as_deref().and_then(timestamp),
            finished_at: record.finished.as_deref().and_then(timestamp),
            restart_count: record.restart_count,
            network: attachment.map(network_attachment),
        }),
        config: Some(container_config(record.name.as_str(), request)),
        id: record.id,
        namespace: record.namespace.to_string(),
        image_digest: record.image_digest,
    })
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ContainersService for Containers {
    type LogsStream = Stream_<LogsResponse>;
    type ExecStream = Stream_<ExecResponse>;
    type AttachStream = Stream_<AttachResponse>;

    async fn run(&self, request: Request<RunRequest>) -> Result<Response<RunResponse>, Status> {
        let RunRequest { namespace, config } = request.into_inner();
        let request = create_request(config).map_err(CallError::from)?;
        let ns = namespace.clone();
        let created = offload(&self.engine, move |e| async move {
            e.containers.create(&ns, request).await
        })
        .await?;
        let (ns, id) = (namespace.clone(), created.id.clone());
        let started = offload(&self.engine, move |e| async move {
            e.containers.start(&ns, &id).await
        })
        .await;
        if let Err(e) = started {
            // Nothing of a failed run is left behind.
            let (ns, id) = (namespace.clone(), created.id.clone());
            let undone = offload(&self.engine, move |e| async move {
                e.containers.delete(&ns, &id, true).await
            })
            .await;
            if let Err(undo) = undone {
                tracing::warn!(container_id = %created.id, error = %undo, "cannot undo a failed run");
            }
            return Err(e.into());
        }
        tracing::info!(namespace, container_id = %created.id, name = %created.name, "container running");
        Ok(Response::new(RunResponse { id: created.id }))
    }

    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let CreateRequest { namespace, config } = request.into_inner();
        let request = create_request(config).map_err(CallError::from)?;
        let ns = namespace.clone();
        let created = offload(&self.engine, move |e| async move {
            e.containers.create(&ns, request).await
        })
        .await?;
        tracing::info!(namespace, container_id = %created.id, name = %created.name, "container created");
        Ok(Response::new(CreateResponse { id: created.id }))
    }

    async fn start(
        &self,
        request: Request<StartRequest>,
    ) -> Result<Response<StartResponse>, Status> {
        let StartRequest {
            namespace,
            container,
        } = request.into_inner();
        let container = container_ref(&container).map_err(CallError::from)?;
        let (ns, c) = (namespace.clone(), container.to_owned());
        let started = offload(&self.engine, move |e| async move {
            e.containers.start(&ns, &c).await
        })
        .await?;
        tracing::info!(namespace, container_id = %started.id, "container started");
        Ok(Response::new(StartResponse {}))
    }

    async fn stop(&self, request: Request<StopRequest>) -> Result<Response<StopResponse>, Status> {
        let StopRequest {
            namespace,
            container,
            signal: signal_name,
            timeout,
        } = request.into_inner();
        let container = container_ref(&container).map_err(CallError::from)?;
        let timeout = match timeout {
            None => DEFAULT_STOP_TIMEOUT,
            Some(t) => Duration::try_from(t).map_err(|_| CallError::from(RequestError::Timeout))?,
        };
        let record = self
            .expect_state(
                &namespace,
                container,
                &[status::RUNNING, status::STOPPED],
                "stop",
            )
            .await?;
        let default = match signal_name.is_empty() {
            true => self.image_stop_signal(&record).await.unwrap_or(SIGTERM),
            false => SIGTERM,
        };
        let number = signal(&signal_name, default).map_err(CallError::from)?;
        let (ns, id) = (namespace.clone(), record.id.clone());
        let stopped = offload(&self.engine, move |e| async move {
            e.containers.stop(&ns, &id, number, timeout).await
        })
        .await?;
        tracing::info!(namespace, container_id = %stopped.id, "container stopped");
        Ok(Response::new(StopResponse {
            exit_code: stopped.exit_code.unwrap_or_default(),
        }))
    }

    async fn kill(&self, request: Request<KillRequest>) -> Result<Response<KillResponse>, Status> {
        let KillRequest {
            namespace,
            container,
            signal: signal_name,
        } = request.into_inner();
        let container = container_ref(&container).map_err(CallError::from)?;
        let number = signal(&signal_name, SIGKILL).map_err(CallError::from)?;
        let record = self
            .expect_state(&namespace, container, &[status::RUNNING], "kill")
            .await?;
        let (ns, id) = (namespace.clone(), record.id.clone());
        offload(&self.engine, move |e| async move {
            e.containers.kill(&ns, &id, number).await
        })
        .await?;
        tracing::info!(namespace, container_id = %record.id, signal = number, "container signalled");
        Ok(Response::new(KillResponse {}))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let DeleteRequest {
            namespace,
            container,
            force,
        } = request.into_inner();
        let container = container_ref(&container).map_err(CallError::from)?;
        let (ns, c) = (namespace.clone(), container.to_owned());
        offload(&self.engine, move |e| async move {
            e.containers.delete(&ns, &c, force).await
        })
        .await?;
        tracing::info!(namespace, container, force, "container deleted");
        Ok(Response::new(DeleteResponse {}))
    }

    async fn inspect(
        &self,
        request: Request<InspectRequest>,
    ) -> Result<Response<InspectResponse>, Status> {
        let InspectRequest {
            namespace,
            container: name,
        } = request.into_inner();
        let name = container_ref(&name).map_err(CallError::from)?;
        let record = self.inspect_record(&namespace, name).await?;
        let engine = self.engine.clone();
        let id = record.id.clone();
        let attachment =
            blocking(move || Ok(engine.containers.networks().attachment(&id)?)).await?;
        Ok(Response::new(InspectResponse {
            container: Some(container(record, attachment)?),
        }))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let ListRequest {
            namespace,
            tags,
            states,
        } = request.into_inner();
        let states = states
            .into_iter()
            .map(|s| {
                ContainerState::try_from(s)
                    .map_err(|_| CallError::from(RequestError::State { state: s }))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let all = namespace.is_empty();
        let namespaces = if all {
            let engine = self.engine.clone();
            blocking(move || Ok(engine.state.namespaces()?))
                .await?
                .into_iter()
                .map(|n| n.name.to_string())
                .collect()
        } else {
            vec![namespace]
        };
        let engine = self.engine.clone();
        let mut attachments = blocking(move || Ok(engine.state.network_state()?))
            .await?
            .attachments;
        let mut containers = Vec::new();
        for namespace in namespaces {
            let ns = namespace.clone();
            let listed = offload(&self.engine, move |e| async move {
                e.containers.list(&ns).await
            })
            .await;
            let records = match listed {
                Ok(records) => records,
                // Deleted since it was listed: it holds nothing now.
                Err(CallError::Container(e)) if all && namespace_gone(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            for record in records {
                let matches_tags = tags.iter().all(|(k, v)| record.labels.get(k) == Some(v));
                let matches_state = states.is_empty() || states.contains(&state(&record.status));
                if matches_tags && matches_state {
                    let attachment = attachments.remove(&record.id);
                    containers.push(container(record, attachment)?);
                }
            }
        }
        containers.sort_by(|a, b| {
            let name = |c: &Container| c.config.as_ref().map(|c| c.name.clone());
            (&a.namespace, name(a)).cmp(&(&b.namespace, name(b)))
        });
        Ok(Response::new(ListResponse { containers }))
    }

    async fn wait(&self, request: Request<WaitRequest>) -> Result<Response<WaitResponse>, Status> {
        let WaitRequest {
            namespace,
            container,
        } = request.into_inner();
        let container = container_ref(&container).map_err(CallError::from)?;
        let (ns, c) = (namespace.clone(), container.to_owned());
        let exit_code = offload(&self.engine, move |e| async move {
            e.containers.wait(&ns, &c).await
        })
        .await?;
        let record = self.inspect_record(&namespace, container).await?;
        Ok(Response::new(WaitResponse {
            exit_code,
            finished_at: record.finished.as_deref().and_then(timestamp),
        }))
    }

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let LogsRequest {
            namespace,
            container,
            follow,
            since,
            tail,
        } = request.into_inner();
        let container = container_ref(&container).map_err(CallError::from)?;
        let since = since
            .map(std::time::SystemTime::try_from)
            .transpose()
            .map_err(|_| CallError::from(RequestError::Since))?;
        let options = LogOptions {
            follow,
            since,
            tail,
        };
        let (ns, c) = (namespace.clone(), container.to_owned());
        let records = offload(&self.engine, move |e| async move {
            e.containers.logs(&ns, &c, options).await
        })
        .await?;
        let stream = ReceiverStream::new(records).map(|record| match record {
            Ok(record) => Ok(LogsResponse {
                time: Some(record.time.into()),
                stream: match record.stream {
                    LogStream::Stdout => OutputStream::Stdout,
                    LogStream::Stderr => OutputStream::Stderr,
                }
                .into(),
                line: record.line,
                partial: record.partial,
            }),
            Err(e) => Err(Status::from(CallError::from(e))),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn exec(
        &self,
        request: Request<Streaming<ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut requests = request.into_inner();
        let start = match requests.message().await? {
            Some(ExecRequest {
                message: Some(exec_request::Message::Start(start)),
            }) => start,
            _ => return Err(RequestError::StreamWithoutStart { call: "exec" }.into_status()),
        };
        let container = container_ref(&start.container)
            .map_err(CallError::from)?
            .to_owned();
        let exec = exec_request(&start).map_err(CallError::from)?;
        let refuse_stdin = (!exec.stdin).then_some(
            (|container| CallError::ExecWithoutStdin { container }) as fn(String) -> CallError,
        );
        let namespace = start.namespace;
        let record = self
            .expect_state(&namespace, &container, &[status::RUNNING], "exec in it")
            .await?;
        let (ns, id) = (namespace.clone(), record.id.clone());
        let io = offload(&self.engine, move |e| async move {
            e.containers.exec(&ns, &id, exec).await
        })
        .await?;
        tracing::debug!(namespace, container_id = %record.id, "exec process started");
        let call = Call {
            name: "exec",
            container,
            refuse_stdin,
            classify: |request: ExecRequest| match request.message {
                Some(exec_request::Message::Start(_)) => ClientMessage::Start,
                Some(exec_request::Message::Stdin(bytes)) => ClientMessage::Stdin(bytes),
                Some(exec_request::Message::Resize(size)) => ClientMessage::Resize(size),
                None => ClientMessage::Empty,
            },
            respond: |message| ExecResponse {
                message: Some(match message {
                    ServerMessage::Output(output) => exec_response::Message::Output(output),
                    ServerMessage::Exit(exit) => exec_response::Message::Exit(exit),
                }),
            },
        };
        Ok(Response::new(Box::pin(stdio::serve(call, requests, io))))
    }

    async fn attach(
        &self,
        request: Request<Streaming<AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut requests = request.into_inner();
        let start = match requests.message().await? {
            Some(AttachRequest {
                message: Some(attach_request::Message::Start(start)),
            }) => start,
            _ => return Err(RequestError::StreamWithoutStart { call: "attach" }.into_status()),
        };
        let container = container_ref(&start.container)
            .map_err(CallError::from)?
            .to_owned();
        let namespace = start.namespace;
        let record = self
            .expect_state(
                &namespace,
                &container,
                &[status::CREATED, status::RUNNING],
                "attach to it",
            )
            .await?;
        let refuse_stdin = (!container_config_of(&record)?.stdin)
            .then_some((|container| CallError::NoStdin { container }) as fn(String) -> CallError);
        let (ns, id) = (namespace.clone(), record.id.clone());
        let io = offload(&self.engine, move |e| async move {
            e.containers.attach(&ns, &id).await
        })
        .await?;
        tracing::debug!(namespace, container_id = %record.id, "client attached");
        let call = Call {
            name: "attach",
            container,
            refuse_stdin,
            classify: |request: AttachRequest| match request.message {
                Some(attach_request::Message::Start(_)) => ClientMessage::Start,
                Some(attach_request::Message::Stdin(bytes)) => ClientMessage::Stdin(bytes),
                Some(attach_request::Message::Resize(size)) => ClientMessage::Resize(size),
                None => ClientMessage::Empty,
            },
            respond: |message| AttachResponse {
                message: Some(match message {
                    ServerMessage::Output(output) => attach_response::Message::Output(output),
                    ServerMessage::Exit(exit) => attach_response::Message::Exit(exit),
                }),
            },
        };
        Ok(Response::new(Box::pin(stdio::serve(call, requests, io))))
    }

    async fn stats(
        &self,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        let StatsRequest {
            namespace,
            container,
        } = request.into_inner();
        let container = container_ref(&container).map_err(CallError::from)?;
        let (ns, c) = (namespace.clone(), container.to_owned());
        let stats = offload(&self.engine, move |e| async move {
            e.containers.stats(&ns, &c).await
        })
        .await?;
        Ok(Response::new(StatsResponse {
            time: Some(stats.time.into()),
            cpu: Some(CpuStats {
                usage: Some(duration(stats.cpu_usage)),
                user: Some(duration(stats.cpu_user)),
                system: Some(duration(stats.cpu_system)),
                throttled: Some(duration(stats.cpu_throttled)),
            }),
            memory: Some(MemoryStats {
                usage_bytes: stats.memory_bytes,
                limit_bytes: stats.memory_limit,
            }),
            pids: Some(PidsStats {
                current: stats.pids,
                limit: stats.pids_limit,
            }),
        }))
    }

    async fn upgrade_monitors(
        &self,
        request: Request<UpgradeMonitorsRequest>,
    ) -> Result<Response<UpgradeMonitorsResponse>, Status> {
        let UpgradeMonitorsRequest {
            namespace,
            containers,
        } = request.into_inner();
        for container in &containers {
            container_ref(container).map_err(CallError::from)?;
        }
        let ns = namespace.clone();
        let results = offload(&self.engine, move |e| async move {
            e.containers.upgrade_monitors(&ns, &containers).await
        })
        .await?;
        let upgrades = results
            .into_iter()
            .map(|result| {
                let (upgraded, monitor_pid, binary, error) = match result.outcome {
                    Ok(monitor) => (true, monitor.pid, monitor.binary.display().to_string(), String::new()),
                    Err(e) => (false, 0, String::new(), crate::chain(&e)),
                };
                if upgraded {
                    tracing::info!(namespace, container_id = %result.id, monitor_pid, binary, "monitor upgraded");
                } else {
                    tracing::warn!(namespace, container_id = %result.id, error, "monitor not upgraded");
                }
                MonitorUpgrade {
                    id: result.id,
                    name: result.name,
                    upgraded,
                    monitor_pid,
                    binary,
                    error,
                }
            })
            .collect();
        Ok(Response::new(UpgradeMonitorsResponse { upgrades }))
    }
}

/// Whether listing failed because the namespace went away meanwhile.
fn namespace_gone(error: &engine::ContainerError) -> bool {
    matches!(
        error,
        engine::ContainerError::State(testudo_engine::state::StateError::NamespaceNotFound(_))
    )
}
