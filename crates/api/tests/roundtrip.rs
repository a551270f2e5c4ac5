//! The generated servers and clients talk to each other over a unix socket, as `testudoctl` and
//! `testudod` will: messages, status codes and a server stream arrive intact.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;

use hyper_util::rt::TokioIo;
use prost_types::Timestamp;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tonic::{Code, Request, Response, Status};
use tower::service_fn;

use testudo_api::events::v1::event::Payload;
use testudo_api::events::v1::events_service_client::EventsServiceClient;
use testudo_api::events::v1::events_service_server::{EventsService, EventsServiceServer};
use testudo_api::events::v1::{
    ContainerExited, ContainerStarted, Event, SubscribeRequest, SubscribeResponse,
};
use testudo_api::namespaces::v1::namespaces_service_client::NamespacesServiceClient;
use testudo_api::namespaces::v1::namespaces_service_server::{
    NamespacesService, NamespacesServiceServer,
};
use testudo_api::namespaces::v1::{
    CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, ListRequest, ListResponse,
    Namespace,
};

/// Namespaces kept in memory.
#[derive(Default)]
struct MemoryNamespaces {
    namespaces: Mutex<BTreeMap<String, Namespace>>,
}

#[tonic::async_trait]
impl NamespacesService for MemoryNamespaces {
    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let CreateRequest { name, tags } = request.into_inner();
        let mut namespaces = self.namespaces.lock().unwrap();
        if namespaces.contains_key(&name) {
            return Err(Status::already_exists(format!(
                "namespace \"{name}\" already exists"
            )));
        }
        let namespace = Namespace {
            name: name.clone(),
            tags,
            created_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
        };
        namespaces.insert(name, namespace.clone());
        Ok(Response::new(CreateResponse {
            namespace: Some(namespace),
        }))
    }

    async fn list(&self, _: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let namespaces = self.namespaces.lock().unwrap().values().cloned().collect();
        Ok(Response::new(ListResponse { namespaces }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let name = request.into_inner().name;
        match self.namespaces.lock().unwrap().remove(&name) {
            Some(_) => Ok(Response::new(DeleteResponse {})),
            None => Err(Status::not_found(format!(
                "namespace \"{name}\" does not exist"
            ))),
        }
    }
}

/// Replays a fixed history through the namespace filter, then ends the stream with Unavailable
/// as a daemon ends a subscriber that cannot keep up.
struct ReplayEvents {
    history: Vec<Event>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventsService for ReplayEvents {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let filter = request.into_inner().namespace;
        let matching: Vec<Result<SubscribeResponse, Status>> = self
            .history
            .iter()
            .filter(|e| filter.is_empty() || e.namespace == filter)
            .map(|e| {
                Ok(SubscribeResponse {
                    event: Some(e.clone()),
                })
            })
            .chain([Err(Status::unavailable("subscriber fell behind"))])
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(matching))))
    }
}

fn event(seconds: i64, namespace: &str, topic: &str, payload: Payload) -> Event {
    Event {
        time: Some(Timestamp { seconds, nanos: 0 }),
        namespace: namespace.to_owned(),
        topic: topic.to_owned(),
        container_id: format!("{seconds:064x}"),
        payload: Some(payload),
    }
}

fn history() -> Vec<Event> {
    vec![
        event(
            1,
            "acme",
            "/containers/start",
            Payload::ContainerStarted(ContainerStarted { pid: 4242 }),
        ),
        event(
            2,
            "other",
            "/containers/start",
            Payload::ContainerStarted(ContainerStarted { pid: 77 }),
        ),
        event(
            3,
            "acme",
            "/containers/exit",
            Payload::ContainerExited(ContainerExited {
                exit_code: 137,
                finished_at: Some(Timestamp {
                    seconds: 3,
                    nanos: 999_999_999,
                }),
            }),
        ),
    ]
}

/// A server on a unix socket in a temporary directory, and a channel to it.
struct Daemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    channel: Channel,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Daemon {
    async fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("testudod.sock");
        let incoming = UnixListenerStream::new(UnixListener::bind(&socket).unwrap());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(
            Server::builder()
                .add_service(NamespacesServiceServer::new(MemoryNamespaces::default()))
                .add_service(EventsServiceServer::new(ReplayEvents {
                    history: history(),
                }))
                .serve_with_incoming_shutdown(incoming, async {
                    stopped.await.ok();
                }),
        );
        let channel = connect(&socket).await;
        Daemon {
            _dir: dir,
            socket,
            channel,
            shutdown,
            server,
        }
    }

    /// Stops the server and checks that it ended without an error.
    async fn stop(self) {
        drop(self.channel);
        self.shutdown.send(()).unwrap();
        self.server.await.unwrap().unwrap();
    }
}

/// A channel whose every connection is a new connection to the unix socket at `path`; the URI
/// is only a placeholder that tonic requires.
async fn connect(path: &Path) -> Channel {
    let path = path.to_owned();
    Endpoint::from_static("http://testudod.invalid")
        .connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap()
}

#[tokio::test]
async fn namespaces_created_over_a_unix_socket_are_listed_back_with_their_fields() {
    let daemon = Daemon::start().await;
    assert!(daemon.socket.exists());
    let mut client = NamespacesServiceClient::new(daemon.channel.clone());

    let created = client
        .create(CreateRequest {
            name: "acme".to_owned(),
            tags: [("team".to_owned(), "storage".to_owned())].into(),
        })
        .await
        .unwrap()
        .into_inner()
        .namespace
        .unwrap();
    assert_eq!(created.name, "acme");
    assert_eq!(created.tags["team"], "storage");
    client
        .create(CreateRequest {
            name: "beta".to_owned(),
            tags: Default::default(),
        })
        .await
        .unwrap();

    let listed = client
        .list(ListRequest {})
        .await
        .unwrap()
        .into_inner()
        .namespaces;
    let names: Vec<&str> = listed.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["acme", "beta"]);
    assert_eq!(listed[0], created);
    assert_eq!(
        listed[0].created_at,
        Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 5
        })
    );

    daemon.stop().await;
}

#[tokio::test]
async fn error_statuses_arrive_with_their_code_and_message() {
    let daemon = Daemon::start().await;
    let mut client = NamespacesServiceClient::new(daemon.channel.clone());

    let missing = client
        .delete(DeleteRequest {
            name: "ghost".to_owned(),
            force: true,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), "namespace \"ghost\" does not exist");

    let request = || CreateRequest {
        name: "acme".to_owned(),
        tags: Default::default(),
    };
    client.create(request()).await.unwrap();
    let duplicate = client.create(request()).await.unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    assert_eq!(duplicate.message(), "namespace \"acme\" already exists");

    daemon.stop().await;
}

#[tokio::test]
async fn subscribed_events_stream_in_order_through_the_filter_then_end_with_the_servers_status() {
    let daemon = Daemon::start().await;
    let mut client = EventsServiceClient::new(daemon.channel.clone());

    let mut stream = client
        .subscribe(SubscribeRequest {
            namespace: "acme".to_owned(),
            topics: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut received = Vec::new();
    let status = loop {
        match stream.next().await {
            Some(Ok(response)) => received.push(response.event.unwrap()),
            Some(Err(status)) => break status,
            None => panic!("the stream ended without the server's status"),
        }
    };

    let expected: Vec<Event> = history()
        .into_iter()
        .filter(|e| e.namespace == "acme")
        .collect();
    assert_eq!(expected.len(), 2);
    assert_eq!(received, expected);
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "subscriber fell behind");
    assert!(stream.next().await.is_none());

    daemon.stop().await;
}
