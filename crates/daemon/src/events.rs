//! `testudo.events.v1.EventsService` over the engine's event bus.
//!
//! The bus is the one the image service owns (`ImageService::events`); the container service
//! publishes on it too, and the namespace calls of this daemon publish there. Each subscriber
//! gets its own task that forwards the matching events into the response stream; a subscriber
//! that falls behind loses its place on the bus and its stream ends with `Unavailable`, so a slow
//! client never holds the engine back.

use std::sync::Arc;

use testudo_api::events::v1::events_service_server::EventsService;
use testudo_api::events::v1::{
    event, CellChanged, ContainerChanged, ContainerExited, ContainerOom, ContainerStarted, Event,
    ImageChanged, NamespaceChanged, SubscribeRequest, SubscribeResponse,
};
use testudo_engine::events::{Event as EngineEvent, EventFilter, EventKind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::request::{NamespaceName, RequestError};
use crate::status::CallError;
use crate::Engine;

/// How many events wait in one subscriber's response stream; past that they wait on the bus.
const STREAM_BUFFER: usize = 64;

/// The events service.
#[derive(Debug)]
pub(crate) struct Events {
    engine: Arc<Engine>,
}

impl Events {
    pub(crate) fn new(engine: Arc<Engine>) -> Events {
        Events { engine }
    }
}

/// The API's form of an engine event.
fn event(e: EngineEvent) -> Event {
    let topic = e.topic().to_owned();
    let payload = match e.kind {
        EventKind::NamespaceCreated | EventKind::NamespaceDeleted => {
            event::Payload::NamespaceChanged(NamespaceChanged {})
        }
        EventKind::ContainerCreated { name, image }
        | EventKind::ContainerDeleted { name, image } => {
            event::Payload::ContainerChanged(ContainerChanged { name, image })
        }
        EventKind::ContainerStarted { pid } => {
            event::Payload::ContainerStarted(ContainerStarted { pid })
        }
        EventKind::ContainerExited {
            exit_code,
            finished,
        } => event::Payload::ContainerExited(ContainerExited {
            exit_code,
            finished_at: Some(finished.into()),
        }),
        EventKind::ContainerOom => event::Payload::ContainerOom(ContainerOom {}),
        EventKind::CellCreated { id, name } | EventKind::CellDeleted { id, name } => {
            event::Payload::CellChanged(CellChanged { id, name })
        }
        EventKind::ImagePulled { name, digest }
        | EventKind::ImageImported { name, digest }
        | EventKind::ImageDeleted { name, digest } => {
            event::Payload::ImageChanged(ImageChanged { name, digest })
        }
    };
    Event {
        time: Some(e.time.into()),
        namespace: e.namespace,
        topic,
        container_id: e.container_id,
        payload: Some(payload),
    }
}

/// The filter a request asks for: a valid namespace name or none, topic prefixes that are paths.
fn filter(request: SubscribeRequest) -> Result<EventFilter, CallError> {
    let namespace = if request.namespace.is_empty() {
        None
    } else {
        Some(NamespaceName::parse(&request.namespace)?.name().to_string())
    };
    if let Some(prefix) = request.topics.iter().find(|t| !t.starts_with('/')) {
        return Err(RequestError::TopicPrefix {
            prefix: prefix.clone(),
        }
        .into());
    }
    Ok(EventFilter {
        namespace,
        topic_prefixes: request.topics,
    })
}

#[tonic::async_trait]
impl EventsService for Events {
    type SubscribeStream = ReceiverStream<Result<SubscribeResponse, Status>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let filter = filter(request.into_inner())?;
        // Subscribed before the call returns: the client sees every event from here on.
        let mut subscription = self.engine.images.events().subscribe(filter);
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = sender.closed() => return,
                    next = subscription.next() => next,
                };
                let message = match next {
                    Ok(e) => Ok(SubscribeResponse {
                        event: Some(event(e)),
                    }),
                    Err(e) => {
                        tracing::info!(error = %e, "event subscriber ended");
                        Err(Status::unavailable(e.to_string()))
                    }
                };
                let ended = message.is_err();
                if sender.send(message).await.is_err() || ended {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_topic_prefix_must_be_a_path_and_a_namespace_a_valid_name() {
        let request = |namespace: &str, topics: &[&str]| SubscribeRequest {
            namespace: namespace.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        };
        let all = filter(request("", &[])).unwrap();
        assert_eq!(all, EventFilter::default());
        let some = filter(request("acme", &["/containers/"])).unwrap();
        assert_eq!(some.namespace.as_deref(), Some("acme"));
        let bad_topic = Status::from(filter(request("", &["containers"])).unwrap_err());
        assert_eq!(bad_topic.code(), tonic::Code::InvalidArgument);
        assert!(bad_topic.message().contains("\"containers\""));
        let bad_ns = Status::from(filter(request("Not A Name", &[])).unwrap_err());
        assert_eq!(bad_ns.code(), tonic::Code::InvalidArgument);
    }
}
