//! The container service: creates a container from an image and a request (root filesystem
//! snapshot, bundle, OCI config), hands it to a monitor process that supervises it, and records
//! its life in the state database.
//!
//! A container outside a cell gets a monitor of its own (`testudo monitor`, a re-exec of the
//! runtime binary that outlives the daemon); the containers of a cell (`cells`) share one, which
//! the cell's first container starts and its last one stops, so that a cell costs one process.
//! The service reaches the monitor only through its socket, with the blocking [`Client`] run on
//! tokio's blocking pool.
//!
//! On disk, under the service root:
//! - `bundles/<ns>/<id>/` holds `config.json` and `rootfs/` (the snapshot, mounted);
//! - `monitors/<ns>/<id>/` is the monitor's state directory (its records, log, runtime root),
//!   where `<id>` is the container's, or its cell's;
//! - `sockets/<first 32 hex of id>.sock` is the monitor's socket: a path under the state
//!   directory would pass the 108-byte limit of a unix socket address with a long namespace.
//!
//! Logs go to `<log root>/<ns>/<name>.log` in the CRI format, written by the monitor and read
//! back by `logs.rs`; `stats.rs` samples a container's cgroup.
//!
//! Supervision (the `supervise` module): a task per container waits on its monitor for every
//! exit, records it without anybody asking, wakes the waiters, publishes `/containers/exit`
//! and restarts the container when its restart policy says so. After a daemon restart,
//! [`ContainerService::adopt`] picks every stored container up again: exits that happened
//! meanwhile are read from the monitor (or from its exit record on disk) and restart policies
//! apply to them.
//!
//! Events (`/containers/create|start|exit|delete|oom`) go to the image service's
//! [`EventBus`], so that one bus carries the engine's events.
//!
//! Exec and attach (`exec`): the monitor hands over the process's stdio, which become async
//! handles.
//!
//! Networks: a bridge or CNI container is attached (`crate::networks`) before its spec is
//! written, since the spec names the persistent network namespace made for it; the name files
//! (`bundles/<ns>/<id>/network/{hosts,resolv.conf,hostname}`) are written for every mode and
//! bind-mounted over the image's, and the hostname is the container's name. The attachment
//! stays while the container restarts and is removed with the container.
//!
//! Monitors are upgraded in place (`upgrade`) to the service's `testudo` binary, with their
//! containers running on.

mod cells;
mod cgroups;
mod error;
mod exec;
mod files;
mod logs;
mod request;
mod stats;
mod supervise;
mod upgrade;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oci_spec::runtime::{RootBuilder, Spec};
use testudo_image::runtime_config::{apply_image_config, ProcessOverrides};
use testudo_monitor_protocol::{
    Client, ClientError, ContainerRecord as MonitorRecord, ContainerStatus, CreateContainer,
    LogRotation,
};
use testudo_snapshot::{mount_all, unmount};

pub use cells::{CellInfo, CellRequest};
pub use error::ContainerError;
pub use exec::{
    ExecKill, ExecRequest, ExitFuture, OutputChunk, OutputStream, ProcessIo, TerminalResize,
};
pub use logs::{parse_record, LogOptions, LogReceiver, LogRecord, LogStream};
pub use request::{
    apply_request, validate, CreateRequest, MountRequest, NetworkMode, Resources, RestartPolicy,
    SpecContext, CPU_PERIOD_MICROS, INIT_PATH,
};
pub use stats::ContainerStats;
pub use supervise::UNKNOWN_EXIT_CODE;
pub use upgrade::{MonitorUpgrade, UpgradedMonitor};

use crate::events::{Event, EventBus, EventKind};
use crate::images::ImageService;
use crate::networks::{NetworkService, NetworkServiceConfig};
use crate::state::{CellRecord, ContainerRecord, Name, StateDb, StateError};
use cgroups::CgroupDirs;
use files::{io_error, is_mount_point, remove_file, remove_logs, remove_tree};
use supervise::{Step, Supervisor};

/// Status words kept in [`ContainerRecord::status`].
pub mod status {
    /// Created, waiting to be started.
    pub const CREATED: &str = "created";
    /// Its process runs.
    pub const RUNNING: &str = "running";
    /// Its process has exited.
    pub const STOPPED: &str = "stopped";
}

/// How long a monitor may take to exit once its last container is gone.
const MONITOR_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the container service keeps its files and what it runs.
#[derive(Debug, Clone)]
pub struct ContainerServiceConfig {
    /// Holds `bundles/`, `monitors/` and `sockets/`.
    pub root: PathBuf,
    /// Logs go to `<log_root>/<namespace>/<name>.log`.
    pub log_root: PathBuf,
    /// The `testudo` binary: started as `testudo monitor`, bind-mounted as the init.
    pub testudo_binary: PathBuf,
    /// Containers' cgroups go to `<cgroup_parent>/<namespace>/<id>`.
    pub cgroup_parent: PathBuf,
    /// Networks: the default network, namespaces, CNI directories.
    pub network: NetworkServiceConfig,
}

impl ContainerServiceConfig {
    /// The default log root.
    pub const DEFAULT_LOG_ROOT: &'static str = "/var/log/testudo";
    /// The default cgroup parent.
    pub const DEFAULT_CGROUP_PARENT: &'static str = "/testudo";

    /// A configuration with the default log root, cgroup parent and networks (the CNI cache
    /// under `root`).
    pub fn new(root: PathBuf, testudo_binary: PathBuf) -> Self {
        Self {
            network: NetworkServiceConfig::new(&root),
            root,
            log_root: PathBuf::from(Self::DEFAULT_LOG_ROOT),
            testudo_binary,
            cgroup_parent: PathBuf::from(Self::DEFAULT_CGROUP_PARENT),
        }
    }
}

/// Containers: their bundles, monitors and records.
#[derive(Debug)]
pub struct ContainerService {
    config: ContainerServiceConfig,
    images: Arc<ImageService>,
    state: Arc<StateDb>,
    networks: Arc<NetworkService>,
    /// The per-container locks, exit watchers and restarts.
    supervisor: Arc<Supervisor>,
}

impl Drop for ContainerService {
    /// Ends the supervision tasks; the monitors and their containers carry on.
    fn drop(&mut self) {
        self.supervisor.abort_all();
    }
}

/// The files of one container.
#[derive(Debug, Clone)]
struct Paths {
    bundle: PathBuf,
    rootfs: PathBuf,
    monitor_dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    snapshot_key: String,
    /// Where the name files are written.
    name_files: PathBuf,
    /// The container's cgroup level below the cgroup parent.
    cgroup_level: PathBuf,
    /// The monitor is its cell's: the container stops it only if it leaves it empty.
    shared_monitor: bool,
}

/// What exists of a container, so that a failed create or a delete removes exactly that.
#[derive(Debug, Default)]
struct Made {
    bundle: bool,
    snapshot: bool,
    mounted: bool,
    log: bool,
    monitor_dir: bool,
    monitor: bool,
    container: bool,
    network: bool,
}

impl Made {
    fn everything() -> Self {
        Self {
            network: true,
            bundle: true,
            snapshot: true,
            mounted: true,
            log: true,
            monitor_dir: true,
            monitor: true,
            container: true,
        }
    }
}

/// Removes what `made` says exists, newest first; stops at the first failure so that a
/// mounted root filesystem is never removed as a directory tree.
async fn teardown(
    images: &ImageService,
    networks: &Arc<NetworkService>,
    cgroups: &CgroupDirs,
    id: &str,
    paths: &Paths,
    made: &Made,
) -> Result<(), ContainerError> {
    if made.container {
        let container = id.to_owned();
        let deleted = call_monitor(id, &paths.socket, move |client| {
            client.delete(&container, true)
        })
        .await;
        match deleted {
            Err(ContainerError::Monitor { source, .. })
                if matches!(source, ClientError::Connect { .. })
                    || source.kind() == Some(testudo_monitor_protocol::ErrorKind::NotFound) => {}
            other => other?,
        }
    }
    let mut monitor_gone = true;
    if made.monitor {
        let (socket, id, shared) = (paths.socket.clone(), id.to_owned(), paths.shared_monitor);
        monitor_gone = tokio::task::spawn_blocking(move || {
            if shared && !monitor_is_empty(&id, &socket)? {
                return Ok(false);
            }
            stop_monitor(&id, &socket).map(|()| true)
        })
        .await??;
    }
    if made.monitor_dir && monitor_gone {
        remove_tree(&paths.monitor_dir)?;
    }
    if made.log {
        remove_logs(&paths.log)?;
    }
    if made.network {
        let (networks, container_id) = (networks.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || networks.detach(&container_id)).await??;
    }
    if made.mounted && paths.rootfs.exists() {
        match unmount(&paths.rootfs) {
            // Not mounted any more (a retried delete).
            Err(_) if !is_mount_point(&paths.rootfs) => {}
            other => other.map_err(|source| ContainerError::Rootfs {
                id: id.to_owned(),
                source,
            })?,
        }
    }
    if made.snapshot {
        match images.remove_rootfs(&paths.snapshot_key) {
            Err(crate::images::ImageError::Snapshot(
                testudo_snapshot::SnapshotError::NotFound { .. },
            )) => {}
            other => other?,
        }
    }
    if made.bundle && !is_mount_point(&paths.rootfs) {
        remove_tree(&paths.bundle)?;
    }
    cgroups.remove_levels(&paths.cgroup_level);
    Ok(())
}

/// What the monitor is asked to create for container `id`, on its first run and on every
/// restart alike.
fn create_message(id: &str, paths: &Paths, request: &CreateRequest) -> CreateContainer {
    CreateContainer {
        id: id.to_owned(),
        bundle: paths.bundle.clone(),
        log_path: paths.log.clone(),
        log_rotation: LogRotation::default(),
        tty: request.tty,
        stdin: request.stdin,
    }
}

/// A new container id: 64 hex digits, hashed from the time, the pid and a counter with
/// randomly keyed SipHash, so ids do not repeat across restarts or processes.
fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let keys = RandomState::new();
    (0u8..4)
        .map(|part| {
            format!(
                "{:016x}",
                keys.hash_one((time, std::process::id(), n, part))
            )
        })
        .collect()
}

/// The socket and the state directory of the monitor of `owner` (a container's id, or its
/// cell's).
fn monitor_paths(
    config: &ContainerServiceConfig,
    namespace: &Name,
    owner: &str,
) -> (PathBuf, PathBuf) {
    let short: String = owner.chars().take(32).collect();
    (
        config.root.join("sockets").join(format!("{short}.sock")),
        config
            .root
            .join("monitors")
            .join(namespace.as_str())
            .join(owner),
    )
}

/// The socket and the state directory of the monitor of the container `record`.
fn monitor_paths_of(
    config: &ContainerServiceConfig,
    record: &ContainerRecord,
) -> (PathBuf, PathBuf) {
    let owner = record.cell.as_deref().unwrap_or(&record.id);
    monitor_paths(config, &record.namespace, owner)
}

/// The files of container `id` named `name` in `namespace`, in cell `cell` (its id) if any.
fn paths_of(
    config: &ContainerServiceConfig,
    namespace: &Name,
    id: &str,
    name: &Name,
    cell: Option<&str>,
) -> Paths {
    let ns = namespace.as_str();
    let bundle = config.root.join("bundles").join(ns).join(id);
    let (socket, monitor_dir) = monitor_paths(config, namespace, cell.unwrap_or(id));
    let cgroup_level = match cell {
        Some(cell) => Path::new(ns).join(cell).join(id),
        None => Path::new(ns).join(id),
    };
    Paths {
        rootfs: bundle.join("rootfs"),
        name_files: bundle.join("network"),
        bundle,
        monitor_dir,
        socket,
        log: config
            .log_root
            .join(ns)
            .join(format!("{}.log", name.as_str())),
        snapshot_key: format!("{ns}-{id}"),
        cgroup_level,
        shared_monitor: cell.is_some(),
    }
}

/// The files of the container `record`.
fn paths_for(config: &ContainerServiceConfig, record: &ContainerRecord) -> Paths {
    paths_of(
        config,
        &record.namespace,
        &record.id,
        &record.name,
        record.cell.as_deref(),
    )
}

/// Runs `call` on a new connection to the monitor at `socket`, on the blocking pool.
async fn call_monitor<T: Send + 'static>(
    id: &str,
    socket: &Path,
    call: impl FnOnce(&mut Client) -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ContainerError> {
    let socket = socket.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut client = Client::connect(&socket)?;
        call(&mut client)
    })
    .await?
    .map_err(|source| ContainerError::Monitor {
        id: id.to_owned(),
        source,
    })
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

/// The monitor's view copied into the record.
fn sync_record(record: &mut ContainerRecord, monitor: &MonitorRecord) {
    record.status = match monitor.status {
        ContainerStatus::Created => status::CREATED,
        ContainerStatus::Running => status::RUNNING,
        ContainerStatus::Stopped => status::STOPPED,
    }
    .to_owned();
    record.pid = u32::try_from(monitor.pid).ok().filter(|&p| p > 0);
    record.started = monitor.started_at.map(rfc3339);
    record.exit_code = monitor.exit.map(|e| e.termination.shell_code());
    record.finished = monitor.exit.map(|e| rfc3339(e.at));
}

impl ContainerService {
    /// A service keeping its files under `config.root` (created, and made absolute, here). It
    /// publishes on `images`' event bus. Call [`Self::adopt`] once, before serving, to supervise
    /// the containers already in the state database.
    pub fn new(
        mut config: ContainerServiceConfig,
        images: Arc<ImageService>,
        state: Arc<StateDb>,
    ) -> Result<Self, ContainerError> {
        for dir in ["bundles", "monitors", "sockets"] {
            let path = config.root.join(dir);
            std::fs::create_dir_all(&path).map_err(io_error("create", &path))?;
        }
        config.root =
            std::fs::canonicalize(&config.root).map_err(io_error("open", &config.root))?;
        let networks = Arc::new(NetworkService::new(config.network.clone(), state.clone())?);
        let supervisor = Arc::new(Supervisor::new(
            config.clone(),
            state.clone(),
            images.clone(),
            networks.clone(),
        ));
        Ok(Self {
            config,
            images,
            state,
            networks,
            supervisor,
        })
    }

    /// The network service the containers attach through.
    pub fn networks(&self) -> &Arc<NetworkService> {
        &self.networks
    }

    /// The bus this service publishes its events on.
    pub fn events(&self) -> &EventBus {
        &self.supervisor.events
    }

    /// Supervises every container of the state database again, as after a daemon restart:
    /// created and running ones get an exit watcher (an exit that happened while nobody watched
    /// is recorded at once, from the monitor or from its exit record on disk), and stopped ones
    /// whose restart policy is due are restarted. Returns how many containers it found. Must run
    /// inside a tokio runtime.
    pub async fn adopt(&self) -> Result<usize, ContainerError> {
        let mut found = 0;
        for namespace in self.state.namespaces()? {
            for record in self.state.containers(&namespace.name)? {
                found += 1;
                let step = Supervisor::step_for(&record);
                tracing::debug!(container_id = %record.id, namespace = %record.namespace,
                    status = %record.status, ?step, "adopting");
                self.supervisor
                    .supervise(&record.namespace, &record.id, step);
            }
        }
        tracing::info!(containers = found, "adopted the stored containers");
        Ok(found)
    }

    fn paths(&self, record: &ContainerRecord) -> Paths {
        paths_for(&self.config, record)
    }

    /// Creates a container in `namespace` (status `created`); on any failure nothing of it is
    /// left (no snapshot, mount, directory, monitor or record).
    pub async fn create(
        &self,
        namespace: &str,
        request: CreateRequest,
    ) -> Result<ContainerRecord, ContainerError> {
        let namespace = Name::parse("namespace", namespace)?;
        validate(&request)?;
        self.state.namespace(&namespace)?;
        let Some(cell_name) = request.cell.clone() else {
            return self.create_in(namespace, request, None).await;
        };
        let cell = self.state.cell(&namespace, &cell_name)?;
        let _cell_guard = self.supervisor.locks.lock(&namespace, &cell.id).await;
        // Read again under the lock: the cell's delete may have gone first.
        let cell = self.state.cell(&namespace, cell.name.as_str())?;
        let request = cells::join_cell(request, &cell)?;
        self.create_in(namespace, request, Some(cell)).await
    }

    /// [`Self::create`] once the cell, if any, is known and locked.
    async fn create_in(
        &self,
        namespace: Name,
        request: CreateRequest,
        cell: Option<CellRecord>,
    ) -> Result<ContainerRecord, ContainerError> {
        let id = new_id();
        let name = match &request.name {
            Some(name) => Name::parse("container", name)?,
            None => Name::parse("container", &id[..12])?,
        };
        if self.state.container(&namespace, name.as_str()).is_ok() {
            return Err(StateError::ContainerExists {
                namespace: namespace.to_string(),
                container: name.to_string(),
            }
            .into());
        }
        for mount in request
            .mounts
            .iter()
            .filter(|m| m.fstype.is_empty() || m.fstype == "bind")
        {
            let source = Path::new(&mount.source);
            if std::fs::symlink_metadata(source).is_err() {
                return Err(ContainerError::MountSourceNotFound {
                    path: source.to_owned(),
                });
            }
        }
        if let NetworkMode::Join(path) = &request.network {
            if std::fs::metadata(path).is_err() {
                return Err(ContainerError::NetnsNotFound { path: path.clone() });
            }
            NetworkService::check_join(path)?;
        }
        let image = self.images.resolve(&namespace, &request.image)?;

        let cell_id = cell.as_ref().map(|c| c.id.clone());
        let paths = paths_of(&self.config, &namespace, &id, &name, cell_id.as_deref());
        let mut made = Made::default();
        let record = ContainerRecord {
            namespace: namespace.clone(),
            id: id.clone(),
            name,
            image: image.record.name.clone(),
            image_digest: image.manifest_digest.to_string(),
            config: serde_json::to_value(&request).unwrap_or_default(),
            status: status::CREATED.to_owned(),
            pid: None,
            exit_code: None,
            created: rfc3339(SystemTime::now()),
            started: None,
            finished: None,
            labels: request.labels.clone(),
            restart_count: 0,
            stop_requested: false,
            cell: cell_id,
        };
        match self
            .build(
                &paths,
                &request,
                &image.config,
                record,
                cell.as_ref(),
                &mut made,
            )
            .await
        {
            Ok(record) => {
                self.supervisor
                    .supervise(&record.namespace, &record.id, Step::Wait);
                self.events().publish(Event::container(
                    record.namespace.as_str(),
                    &record.id,
                    EventKind::ContainerCreated {
                        name: record.name.to_string(),
                        image: record.image.clone(),
                    },
                ));
                Ok(record)
            }
            Err(e) => {
                if let Err(undo) = teardown(
                    &self.images,
                    &self.networks,
                    &self.supervisor.cgroups,
                    &id,
                    &paths,
                    &made,
                )
                .await
                {
                    tracing::warn!(container_id = %id, error = %undo, "cannot undo a failed create");
                }
                Err(e)
            }
        }
    }

    async fn build(
        &self,
        paths: &Paths,
        request: &CreateRequest,
        image_config: &oci_spec::image::ImageConfiguration,
        mut record: ContainerRecord,
        cell: Option<&CellRecord>,
        made: &mut Made,
    ) -> Result<ContainerRecord, ContainerError> {
        let id = record.id.clone();
        if let Some(parent) = paths.bundle.parent() {
            std::fs::create_dir_all(parent).map_err(io_error("create", parent))?;
        }
        std::fs::create_dir(&paths.bundle).map_err(io_error("create", &paths.bundle))?;
        made.bundle = true;
        std::fs::create_dir(&paths.rootfs).map_err(io_error("create", &paths.rootfs))?;

        let mounts = self
            .images
            .prepare_rootfs(&record.namespace, &request.image, &paths.snapshot_key)
            .await?;
        made.snapshot = true;
        mount_all(&mounts, &paths.rootfs).map_err(|source| ContainerError::Rootfs {
            id: id.clone(),
            source,
        })?;
        made.mounted = true;

        let attachment = match request.network.attachment() {
            Some(_) => {
                made.network = true;
                let (networks, container_id, mode) =
                    (self.networks.clone(), id.clone(), request.network.clone());
                let attached = tokio::task::spawn_blocking(move || {
                    let (choice, ports) = mode.attachment()?;
                    Some(networks.attach(&container_id, &choice, ports))
                })
                .await?;
                attached.transpose()?
            }
            None => None,
        };
        // A cell's containers go by the cell's name and address.
        let (host_name, host_attachment) = match cell {
            Some(cell) => (cell.name.as_str(), self.networks.attachment(&cell.id)?),
            None => (record.name.as_str(), attachment.clone()),
        };
        let (hostname, name_files) = self.networks.write_name_files(
            &paths.name_files,
            host_name,
            &id[..12],
            host_attachment.as_ref(),
            request.network.own_netns(),
        )?;
        let network = SpecNetwork {
            netns: attachment.map(|a| a.netns),
            hostname,
            name_files,
        };
        let spec = self.spec(&id, paths, request, image_config, network)?;
        let config_path = paths.bundle.join("config.json");
        let json = serde_json::to_vec_pretty(&spec).unwrap_or_default();
        std::fs::write(&config_path, json).map_err(io_error("write", &config_path))?;

        if let Some(log_dir) = paths.log.parent() {
            std::fs::create_dir_all(log_dir).map_err(io_error("create", log_dir))?;
        }
        made.log = true;
        if !paths.shared_monitor || !monitor_answers(&paths.socket).await {
            std::fs::create_dir_all(&paths.monitor_dir)
                .map_err(io_error("create", &paths.monitor_dir))?;
            made.monitor_dir = true;
            self.start_monitor(&id, paths).await?;
        }
        made.monitor = true;

        let create = create_message(&id, paths, request);
        let (pid, _warnings) = self
            .monitor_call(&id, &paths.socket, move |client| client.create(create))
            .await?;
        made.container = true;
        record.pid = u32::try_from(pid).ok();
        if let Err(e) = self.state.insert_container(&record) {
            // A container of the same name created meanwhile owns that log file.
            made.log = false;
            return Err(e.into());
        }
        Ok(record)
    }

    fn spec(
        &self,
        id: &str,
        paths: &Paths,
        request: &CreateRequest,
        image_config: &oci_spec::image::ImageConfiguration,
        network: SpecNetwork,
    ) -> Result<Spec, ContainerError> {
        let mut spec = Spec::default();
        spec.set_root(Some(
            RootBuilder::default()
                .path("rootfs")
                .readonly(false)
                .build()
                .map_err(ContainerError::Spec)?,
        ));
        spec.set_hostname(Some(network.hostname));
        let overrides = ProcessOverrides {
            entrypoint: request.entrypoint.clone(),
            cmd: request.cmd.clone(),
            env: request.env.clone(),
            working_dir: request.working_dir.clone(),
            user: request.user.clone(),
        };
        apply_image_config(&mut spec, image_config, &paths.rootfs, &overrides).map_err(
            |source| ContainerError::RuntimeConfig {
                id: id.to_owned(),
                source,
            },
        )?;
        let context = SpecContext {
            cgroups_path: self.config.cgroup_parent.join(&paths.cgroup_level),
            testudo_binary: self.config.testudo_binary.clone(),
            netns: network.netns,
            name_files: Some(network.name_files),
        };
        apply_request(&mut spec, request, &context)?;
        Ok(spec)
    }

    /// Runs `testudo monitor`, which returns once the detached monitor listens.
    async fn start_monitor(&self, id: &str, paths: &Paths) -> Result<(), ContainerError> {
        let mut command = Command::new(&self.config.testudo_binary);
        command
            .arg("monitor")
            .arg("--state-dir")
            .arg(&paths.monitor_dir)
            .arg("--socket")
            .arg(&paths.socket);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await?
            .map_err(|source| ContainerError::MonitorSpawn {
                id: id.to_owned(),
                binary: self.config.testudo_binary.clone(),
                source,
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(ContainerError::MonitorStart {
                id: id.to_owned(),
                stderr: stderr.trim().lines().last().unwrap_or("").to_owned(),
            });
        }
        Ok(())
    }

    /// Runs `call` on a new connection to the monitor at `socket`, on the blocking pool.
    async fn monitor_call<T: Send + 'static>(
        &self,
        id: &str,
        socket: &Path,
        call: impl FnOnce(&mut Client) -> Result<T, ClientError> + Send + 'static,
    ) -> Result<T, ContainerError> {
        call_monitor(id, socket, call).await
    }

    fn lookup(
        &self,
        namespace: &str,
        container: &str,
    ) -> Result<(Name, ContainerRecord), ContainerError> {
        let namespace = Name::parse("namespace", namespace)?;
        self.state.namespace(&namespace)?;
        let record = self.state.container(&namespace, container)?;
        Ok((namespace, record))
    }

    /// Waits for, and holds, the container's lock.
    async fn lock(&self, record: &ContainerRecord) -> tokio::sync::OwnedMutexGuard<()> {
        self.supervisor
            .locks
            .lock(&record.namespace, &record.id)
            .await
    }

    /// Notes that Stop or Kill was asked for, so the exit that follows is not restarted.
    fn request_stop(&self, record: &ContainerRecord) -> Result<(), ContainerError> {
        if !record.stop_requested {
            self.state
                .update_container(&record.namespace, &record.id, |r| r.stop_requested = true)?;
        }
        Ok(())
    }

    fn socket_of(&self, record: &ContainerRecord) -> PathBuf {
        monitor_paths_of(&self.config, record).0
    }

    /// The record brought up to date with its monitor; a monitor that cannot be reached leaves
    /// the record as stored.
    async fn refresh(&self, record: ContainerRecord) -> Result<ContainerRecord, ContainerError> {
        if record.status == status::STOPPED {
            return Ok(record);
        }
        let id = record.id.clone();
        let container = id.clone();
        let socket = self.socket_of(&record);
        let monitor = match self
            .monitor_call(&id, &socket, move |client| client.state(&container))
            .await
        {
            Ok(monitor) => monitor,
            Err(e) => {
                tracing::warn!(container_id = %id, error = %e, "monitor not reachable");
                // It may have gone after recording how the container ended.
                let monitor_dir = monitor_paths_of(&self.config, &record).1;
                match testudo_monitor_protocol::read_record(&monitor_dir, &id) {
                    Ok(Some(monitor)) if monitor.exit.is_some() => monitor,
                    _ => return Ok(record),
                }
            }
        };
        let mut updated = record.clone();
        sync_record(&mut updated, &monitor);
        if updated == record {
            return Ok(record);
        }
        Ok(self
            .state
            .update_container(&record.namespace, &id, |r| sync_record(r, &monitor))?)
    }

    /// Starts a created container; returns it running.
    pub async fn start(
        &self,
        namespace: &str,
        container: &str,
    ) -> Result<ContainerRecord, ContainerError> {
        let (namespace, record) = self.lookup(namespace, container)?;
        let _guard = self.lock(&record).await;
        // Read again under the lock: a delete may have gone first.
        let record = self.state.container(&namespace, &record.id)?;
        let record = self.refresh(record).await?;
        if record.status != status::CREATED {
            return Err(ContainerError::WrongState {
                id: record.id,
                status: record.status,
                action: "start",
            });
        }
        let id = record.id.clone();
        let socket = self.socket_of(&record);
        self.monitor_call(&record.id, &socket, move |client| {
            client.start(&id).map(drop)
        })
        .await?;
        let record = self.refresh(record).await?;
        self.events().publish(Event::container(
            record.namespace.as_str(),
            &record.id,
            EventKind::ContainerStarted {
                pid: record.pid.unwrap_or(0),
            },
        ));
        Ok(record)
    }

    /// Sends `signal` to the container's init.
    pub async fn kill(
        &self,
        namespace: &str,
        container: &str,
        signal: i32,
    ) -> Result<(), ContainerError> {
        let (namespace, record) = self.lookup(namespace, container)?;
        let _guard = self.lock(&record).await;
        // Read again under the lock: a delete may have gone first.
        let record = self.state.container(&namespace, &record.id)?;
        if record.status != status::CREATED {
            self.request_stop(&record)?;
        }
        let id = record.id.clone();
        let socket = self.socket_of(&record);
        self.monitor_call(&record.id, &socket, move |client| {
            client.kill(&id, signal, false)
        })
        .await
    }

    /// Waits for the container to exit; returns its exit code (128 + signal when killed). A
    /// stopped container returns its last exit at once; a created one is waited for through its
    /// start and exit; a run that the restart policy restarts ends the wait with its exit. A
    /// container deleted before it exits ends the wait with `NotFound`.
    pub async fn wait(&self, namespace: &str, container: &str) -> Result<i32, ContainerError> {
        let (namespace, record) = self.lookup(namespace, container)?;
        let gone = || ContainerError::DeletedWhileWaiting {
            id: record.id.clone(),
        };
        let mut exits = self
            .supervisor
            .subscribe(&namespace, &record.id)
            .ok_or_else(gone)?;
        // Read again now that exits are received: one recorded before is in the record.
        let now = self.state.container(&namespace, &record.id)?;
        if now.status == status::STOPPED {
            return Ok(now.exit_code.unwrap_or(UNKNOWN_EXIT_CODE));
        }
        exits.changed().await.map_err(|_| gone())?;
        let exit = *exits.borrow();
        exit.map(|e| e.code).ok_or_else(gone)
    }

    /// Sends `signal`, waits up to `timeout` for the container to exit, then kills it with
    /// `SIGKILL`; returns it stopped. A container that is not running is returned as it is.
    pub async fn stop(
        &self,
        namespace: &str,
        container: &str,
        signal: i32,
        timeout: Duration,
    ) -> Result<ContainerRecord, ContainerError> {
        let (namespace, record) = self.lookup(namespace, container)?;
        let _guard = self.lock(&record).await;
        // Read again under the lock: a delete may have gone first.
        let record = self.state.container(&namespace, &record.id)?;
        let record = self.refresh(record).await?;
        if record.status != status::CREATED {
            // Also a stopped one: a restart it waits for is called off.
            self.request_stop(&record)?;
        }
        if record.status != status::RUNNING {
            return Ok(self.state.container(&namespace, &record.id)?);
        }
        let id = record.id.clone();
        let socket = self.socket_of(&record);
        let (wait_id, wait_socket) = (id.clone(), socket.clone());
        // The wait has its own connection: the monitor answers it only once the container
        // has exited, and the kills below go on another.
        let mut exited =
            tokio::task::spawn_blocking(move || Client::connect(&wait_socket)?.wait(&wait_id));
        let kill = |signal: i32| {
            let id = id.clone();
            self.monitor_call(&record.id, &socket, move |client| {
                client.kill(&id, signal, false)
            })
        };
        if let Err(e) = kill(signal).await {
            // It may have exited between the refresh and the kill.
            let now = self.refresh(record.clone()).await?;
            if now.status == status::STOPPED {
                exited.abort();
                return Ok(now);
            }
            return Err(e);
        }
        let waited = match tokio::time::timeout(timeout, &mut exited).await {
            Ok(waited) => waited,
            Err(_) => {
                tracing::info!(container_id = %record.id, "stop timed out; sending SIGKILL");
                if let Err(e) = kill(SIGKILL).await {
                    tracing::warn!(container_id = %record.id, error = %e, "SIGKILL failed");
                }
                exited.await
            }
        };
        waited?.map_err(|source| ContainerError::Monitor {
            id: record.id.clone(),
            source,
        })?;
        self.refresh(record).await
    }

    /// Deletes the container: its monitor, mount, snapshot, bundle, logs and record. A running
    /// container is refused unless `force`, which kills it.
    pub async fn delete(
        &self,
        namespace: &str,
        container: &str,
        force: bool,
    ) -> Result<(), ContainerError> {
        let (namespace, record) = self.lookup(namespace, container)?;
        let _guard = self.lock(&record).await;
        // Read again under the lock: a delete may have gone first.
        let record = self.state.container(&namespace, &record.id)?;
        let record = self.refresh(record).await?;
        if record.status == status::RUNNING && !force {
            return Err(ContainerError::WrongState {
                id: record.id,
                status: record.status,
                action: "delete without force",
            });
        }
        self.supervisor.remove(&record).await
    }

    /// Deletes namespace `namespace`: refused while it holds containers, cells or image
    /// references unless `force`, which first deletes its containers (killing running ones)
    /// and cells as [`Self::delete`] and [`Self::delete_cell`] would, then drops the references.
    pub async fn delete_namespace(
        &self,
        namespace: &str,
        force: bool,
    ) -> Result<(), ContainerError> {
        let name = Name::parse("namespace", namespace)?;
        self.state.namespace(&name)?;
        if force {
            for record in self.state.containers(&name)? {
                match self.delete(namespace, &record.id, true).await {
                    Err(ContainerError::State(StateError::ContainerNotFound { .. })) | Ok(()) => {}
                    Err(e) => return Err(e),
                }
            }
            for cell in self.state.cells(&name)? {
                self.delete_cell(namespace, &cell.id, true).await?;
            }
        }
        Ok(self.state.delete_namespace(&name, force)?)
    }

    /// The container, up to date with its monitor.
    pub async fn inspect(
        &self,
        namespace: &str,
        container: &str,
    ) -> Result<ContainerRecord, ContainerError> {
        let (_, record) = self.lookup(namespace, container)?;
        self.refresh(record).await
    }

    /// Every container of `namespace`, by id, up to date with their monitors.
    pub async fn list(&self, namespace: &str) -> Result<Vec<ContainerRecord>, ContainerError> {
        let namespace = Name::parse("namespace", namespace)?;
        self.state.namespace(&namespace)?;
        let mut out = Vec::new();
        for record in self.state.containers(&namespace)? {
            out.push(self.refresh(record).await?);
        }
        Ok(out)
    }
}

/// The network part of a container's spec: the namespace made for it (bridge and CNI) and
/// its name files.
struct SpecNetwork {
    netns: Option<PathBuf>,
    hostname: String,
    name_files: [PathBuf; 3],
}

/// `SIGKILL`'s number (the same on every Linux architecture).
const SIGKILL: i32 = 9;

/// Whether a monitor answers at `socket`.
async fn monitor_answers(socket: &Path) -> bool {
    let socket = socket.to_owned();
    tokio::task::spawn_blocking(move || Client::connect(&socket).is_ok())
        .await
        .unwrap_or(false)
}

/// Whether the monitor at `socket` supervises no container; a monitor that is gone is empty.
fn monitor_is_empty(id: &str, socket: &Path) -> Result<bool, ContainerError> {
    match Client::connect(socket).and_then(|mut client| client.list()) {
        Ok(containers) => Ok(containers.is_empty()),
        Err(ClientError::Connect { .. }) => Ok(true),
        Err(source) => Err(ContainerError::Monitor {
            id: id.to_owned(),
            source,
        }),
    }
}

/// Asks the monitor at `socket` to exit and waits until it has (it removes its socket last).
fn stop_monitor(id: &str, socket: &Path) -> Result<(), ContainerError> {
    let mut client = match Client::connect(socket) {
        Ok(client) => client,
        Err(ClientError::Connect { .. }) => return remove_file(socket),
        Err(source) => {
            return Err(ContainerError::Monitor {
                id: id.to_owned(),
                source,
            })
        }
    };
    client
        .shutdown()
        .map_err(|source| ContainerError::Monitor {
            id: id.to_owned(),
            source,
        })?;
    drop(client);
    let deadline = Instant::now() + MONITOR_EXIT_TIMEOUT;
    while socket.exists() {
        if Instant::now() >= deadline {
            return Err(ContainerError::MonitorStuck { id: id.to_owned() });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
