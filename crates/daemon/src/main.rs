//! `testudod`, the node daemon: serves the gRPC API (`proto/testudo/`, `docs/api.md`) on a unix
//! socket, and with `--listen-tcp` also on TCP with mutual TLS (`tcp.rs`), and maps each call
//! onto the engine: namespaces, images, containers (with Exec and Attach streams, `stdio.rs`),
//! networks (`networks.rs`; the default network and CNI directories come from flags) and events (`events.rs`: the engine's event bus, namespace events published by
//! `namespaces.rs`).
//!
//! Non-goals: any logic of its own beyond validating requests, mapping errors to statuses and
//! owning the listeners; containers run in monitor processes that the engine starts (`testudo
//! monitor`, from `--testudo-binary`), never in the daemon.
//!
//! Design decisions:
//! - Image references belong to namespaces; the engine keeps them in its state database and
//!   shares their content between namespaces.
//! - A pull runs in its own task: a client that goes away does not cancel it half-way.
//! - Import and export spool the archive in a temporary file under `<root>/tmp`, which the
//!   engine's layout code reads and writes; the file is gone when the call ends.
//! - Calls that block on the state database or the image store run on tokio's blocking pool.
//! - Logs go to standard error through `tracing-subscriber`'s fmt layer, at `--log-level`.

mod cells;
mod containers;
mod events;
mod images;
mod namespaces;
mod networks;
mod request;
mod socket;
mod status;
mod stdio;
mod tcp;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use testudo_api::cells::v1::cells_service_server::CellsServiceServer;
use testudo_api::containers::v1::containers_service_server::ContainersServiceServer;
use testudo_api::events::v1::events_service_server::EventsServiceServer;
use testudo_api::images::v1::images_service_server::ImagesServiceServer;
use testudo_api::namespaces::v1::namespaces_service_server::NamespacesServiceServer;
use testudo_api::networks::v1::networks_service_server::NetworksServiceServer;
use testudo_engine::containers::{ContainerError, ContainerService, ContainerServiceConfig};
use testudo_engine::error::chain;
use testudo_engine::images::{
    ImageError, ImageService, ImageServiceConfig, Platform, RegistryOptions, SnapshotterChoice,
};
use testudo_engine::networks::{self as engine_networks, NetworkError, NetworkServiceConfig};
use testudo_engine::state::{Name, NetworkRecord, StateDb, StateError};
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;

use crate::socket::{SocketError, SocketGuard};
use crate::tcp::{TcpConfig, TcpError};

/// The namespace every daemon has: `testudoctl` uses it unless told otherwise.
const DEFAULT_NAMESPACE: &str = "default";

/// testudod: the testudo node daemon
#[derive(Debug, Parser)]
#[command(name = "testudod", version)]
struct Config {
    /// Directory of the daemon's state: state.redb and images/
    #[arg(long, default_value = "/var/lib/testudo")]
    root: PathBuf,
    /// The unix socket to serve the API on
    #[arg(long, default_value = "/run/testudo/testudod.sock")]
    socket: PathBuf,
    #[command(flatten)]
    tcp: TcpConfig,
    /// A registry (HOST:PORT) reached over plain HTTP; repeatable
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// The most verbose level logged: error, warn, info, debug or trace
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
    /// The testudo runtime binary, run as each container's monitor [default: `testudo` beside
    /// testudod, else on $PATH]
    #[arg(long, value_name = "PATH")]
    testudo_binary: Option<PathBuf>,
    /// Where containers' logs go, as <namespace>/<name>.log
    #[arg(long, default_value = ContainerServiceConfig::DEFAULT_LOG_ROOT)]
    log_root: PathBuf,
    /// The cgroup under which containers' cgroups go, as <namespace>/<id>
    #[arg(long, default_value = ContainerServiceConfig::DEFAULT_CGROUP_PARENT)]
    cgroup_parent: PathBuf,
    #[command(flatten)]
    network: NetworkFlags,
}

/// The networks' settings.
#[derive(Debug, Clone, clap::Args)]
struct NetworkFlags {
    /// The name of the default network (bridge mode without a network name)
    #[arg(long, default_value = engine_networks::DEFAULT_NETWORK, value_name = "NAME")]
    default_network: String,
    /// The default network's bridge interface
    #[arg(long, default_value = engine_networks::DEFAULT_BRIDGE, value_name = "IFNAME")]
    default_bridge: String,
    /// The default network's subnet; repeat it for an IPv6 subnet
    #[arg(long = "default-subnet", default_value = engine_networks::DEFAULT_SUBNET, value_name = "CIDR")]
    default_subnets: Vec<String>,
    /// Where CNI network configuration lists are looked up
    #[arg(long, default_value = engine_networks::DEFAULT_CNI_CONFIG_DIR, value_name = "DIR")]
    cni_config_dir: PathBuf,
    /// Where CNI plugins are looked up, in order; repeatable
    #[arg(long = "cni-plugin-dir", default_values = engine_networks::DEFAULT_CNI_PLUGIN_DIRS, value_name = "DIR")]
    cni_plugin_dirs: Vec<PathBuf>,
}

impl NetworkFlags {
    /// The network service's configuration, with the CNI cache under `root`.
    fn config(&self, root: &std::path::Path) -> Result<NetworkServiceConfig, DaemonError> {
        let mut config = NetworkServiceConfig::new(root);
        config.default_network = NetworkRecord {
            name: self.default_network.clone(),
            bridge: self.default_bridge.clone(),
            subnets: engine_networks::parse_subnets(&self.default_subnets)
                .map_err(DaemonError::DefaultNetwork)?,
            created: String::new(),
        };
        config.cni_config_dir = self.cni_config_dir.clone();
        config.cni_plugin_dirs = self.cni_plugin_dirs.clone();
        Ok(config)
    }
}

/// The `testudo` binary beside this executable if there is one, else the first on `$PATH`.
fn default_testudo_binary() -> Result<PathBuf, DaemonError> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("testudo")))
        .filter(|path| path.is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("testudo"))
                .find(|path| path.is_file())
        })
    };
    beside.or_else(on_path).ok_or(DaemonError::NoTestudo)
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
enum DaemonError {
    #[error("cannot create the root directory {path:?}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the state database")]
    State(#[source] StateError),
    #[error("cannot open the image store")]
    Images(#[source] ImageError),
    #[error("cannot set up the container service")]
    Containers(#[source] ContainerError),
    #[error("invalid default network")]
    DefaultNetwork(#[source] NetworkError),
    #[error("no testudo binary beside testudod or on $PATH; give one with --testudo-binary")]
    NoTestudo,
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Tcp(#[from] TcpError),
    #[error("cannot listen for signals")]
    Signals(#[source] std::io::Error),
    #[error("the server failed")]
    Serve(#[source] tonic::transport::Error),
    #[error("the TCP server task failed")]
    TcpTask(#[from] tokio::task::JoinError),
}

/// What every service shares.
#[derive(Debug)]
struct Engine {
    state: Arc<StateDb>,
    images: Arc<ImageService>,
    containers: ContainerService,
    /// Where import and export spool their archives.
    spool: PathBuf,
}

impl Engine {
    /// Opens the state database first: its lock keeps a second daemon on the same root out
    /// before anything of the first one's is touched (such as the spool, emptied next).
    fn open(config: &Config) -> Result<Engine, DaemonError> {
        let state =
            Arc::new(StateDb::open(&config.root.join("state.redb")).map_err(DaemonError::State)?);
        let spool = config.root.join("tmp");
        // Leftovers of a crash are removed with the directory; a missing one is fine.
        let _ = std::fs::remove_dir_all(&spool);
        std::fs::create_dir_all(&spool).map_err(|source| DaemonError::Root {
            path: spool.clone(),
            source,
        })?;
        let images = ImageService::open(
            ImageServiceConfig {
                root: config.root.join("images"),
                registry: RegistryOptions {
                    insecure: config.insecure_registries.clone(),
                    ..RegistryOptions::default()
                },
                snapshotter: SnapshotterChoice::Auto,
                platform: Platform::host(),
            },
            state.clone(),
        )
        .map_err(DaemonError::Images)?;
        let images = Arc::new(images);
        let testudo_binary = match &config.testudo_binary {
            Some(path) => path.clone(),
            None => default_testudo_binary()?,
        };
        let mut containers_config =
            ContainerServiceConfig::new(config.root.join("containers"), testudo_binary);
        containers_config.log_root = config.log_root.clone();
        containers_config.cgroup_parent = config.cgroup_parent.clone();
        containers_config.network = config.network.config(&config.root)?;
        let containers = ContainerService::new(containers_config, images.clone(), state.clone())
            .map_err(DaemonError::Containers)?;
        Ok(Engine {
            state,
            images,
            containers,
            spool,
        })
    }

    /// Creates the `default` namespace unless it exists.
    fn ensure_default_namespace(&self) -> Result<(), DaemonError> {
        let name = Name::parse("namespace", DEFAULT_NAMESPACE).map_err(DaemonError::State)?;
        match self.state.create_namespace(&name, Default::default()) {
            Ok(_) => {
                tracing::info!(namespace = DEFAULT_NAMESPACE, "namespace created");
                Ok(())
            }
            Err(StateError::NamespaceExists(_)) => Ok(()),
            Err(e) => Err(DaemonError::State(e)),
        }
    }
}

async fn serve(config: Config) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&config.root).map_err(|source| DaemonError::Root {
        path: config.root.clone(),
        source,
    })?;
    // The socket first: a daemon already serving it is refused before this one opens anything.
    let (listener, guard) = SocketGuard::bind(&config.socket)?;
    let tcp = config.tcp.listen().await?;
    let engine = Arc::new(Engine::open(&config)?);
    engine.ensure_default_namespace()?;
    // Before serving: containers of an earlier daemon get their watchers back, and exits that
    // happened while no daemon ran are recorded (and restart policies applied to them).
    let adopted = engine
        .containers
        .adopt()
        .await
        .map_err(DaemonError::Containers)?;
    tracing::info!(containers = adopted, "containers adopted");
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    tracing::info!(socket = %config.socket.display(), root = %config.root.display(), "serving");
    let router = tonic::transport::Server::builder()
        .add_service(NamespacesServiceServer::new(namespaces::Namespaces::new(
            engine.clone(),
        )))
        .add_service(EventsServiceServer::new(events::Events::new(
            engine.clone(),
        )))
        .add_service(ImagesServiceServer::new(images::Images::new(
            engine.clone(),
        )))
        .add_service(NetworksServiceServer::new(networks::Networks::new(
            engine.clone(),
        )))
        .add_service(CellsServiceServer::new(cells::Cells::new(engine.clone())))
        .add_service(ContainersServiceServer::new(containers::Containers::new(
            engine,
        )));
    // The unix server's shutdown also stops the TCP one (a dropped sender counts as a stop).
    let (stop, mut stopping) = tokio::sync::watch::channel(());
    let tcp_served = tcp.map(|(address, incoming)| {
        tracing::info!(%address, "serving on TCP with mutual TLS");
        let stopped = async move {
            let _ = stopping.changed().await;
        };
        tokio::spawn(
            router
                .clone()
                .serve_with_incoming_shutdown(incoming, stopped),
        )
    });
    let served = router
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
            }
            let _ = stop.send(());
        })
        .await;
    drop(guard);
    served.map_err(DaemonError::Serve)?;
    if let Some(tcp_served) = tcp_served {
        tcp_served.await?.map_err(DaemonError::Serve)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_max_level(config.log_level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("testudod: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testudod: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}
