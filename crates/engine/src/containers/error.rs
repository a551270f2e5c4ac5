//! Why a container operation failed, and the kind of each failure.

use std::io;
use std::path::PathBuf;

use testudo_image::runtime_config::RuntimeConfigError;
use testudo_monitor_protocol::{ClientError, ErrorKind as MonitorErrorKind};
use testudo_snapshot::MountError;

use crate::error::{ErrorKind, Kind};
use crate::images::ImageError;
use crate::networks::NetworkError;
use crate::state::StateError;

/// Why a container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The state database refused or failed (unknown namespace or container, duplicate name).
    #[error(transparent)]
    State(#[from] StateError),
    /// The image cannot be found or prepared.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The request names no image.
    #[error("no image given")]
    NoImage,
    /// A mount target is not an absolute path.
    #[error("mount target {target:?} is not an absolute path")]
    RelativeMountTarget {
        /// The target.
        target: String,
    },
    /// A bind mount's source is not an absolute path.
    #[error("bind mount source {source_path:?} is not an absolute path")]
    RelativeMountSource {
        /// The source.
        source_path: String,
    },
    /// A bind mount's source does not exist.
    #[error("bind mount source {path} does not exist")]
    MountSourceNotFound {
        /// The source.
        path: PathBuf,
    },
    /// The network namespace to join is not given as an absolute path.
    #[error("network namespace path {path} is not absolute")]
    RelativeNetnsPath {
        /// The path.
        path: PathBuf,
    },
    /// A container of a cell asked for a network of its own.
    #[error("a container of cell {cell:?} shares the cell's network: leave its network unset")]
    NetworkInCell {
        /// The cell.
        cell: String,
    },
    /// The network namespace to join does not exist.
    #[error("network namespace {path} does not exist")]
    NetnsNotFound {
        /// The path.
        path: PathBuf,
    },
    /// The container's network could not be attached or detached (boxed: its errors carry
    /// port mappings and plugin output).
    #[error(transparent)]
    Network(Box<NetworkError>),
    /// A bridge or CNI container's spec was built before its network was attached (a bug).
    #[error("the network namespace of a bridge or CNI container is not made yet")]
    NotAttached,
    /// A resource limit of zero.
    #[error("{what} limit must be more than zero")]
    ZeroLimit {
        /// `cpu`, `memory`, `pids`.
        what: &'static str,
    },
    /// A resource limit too large for the runtime spec.
    #[error("{what} limit is too large")]
    LimitTooLarge {
        /// `cpu`, `memory`, `pids`.
        what: &'static str,
    },
    /// `stdin_once` asked for a container without `stdin`: it has no input to close.
    #[error("stdin_once needs stdin")]
    StdinOnceWithoutStdin,
    /// `stdin_once` asked for a container with a terminal, whose input has no end to pass on.
    #[error("stdin_once cannot be used with a tty")]
    StdinOnceWithTty,
    /// The image config and the request do not make a process.
    #[error("container {id}: cannot apply the image config")]
    RuntimeConfig {
        /// The container id.
        id: String,
        /// The cause.
        #[source]
        source: RuntimeConfigError,
    },
    /// An OCI spec structure could not be built.
    #[error("cannot build the runtime spec")]
    Spec(#[source] oci_spec::OciSpecError),
    /// The root filesystem could not be mounted or unmounted.
    #[error("container {id}: root filesystem")]
    Rootfs {
        /// The container id.
        id: String,
        /// The cause.
        #[source]
        source: MountError,
    },
    /// A file or directory of the container could not be made or removed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The monitor process could not be started.
    #[error("container {id}: cannot start the monitor {binary}")]
    MonitorSpawn {
        /// The container id.
        id: String,
        /// The testudo binary.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `testudo monitor` failed.
    #[error("container {id}: the monitor failed to start: {stderr}")]
    MonitorStart {
        /// The container id.
        id: String,
        /// Its last line of standard error.
        stderr: String,
    },
    /// The monitor refused a request or could not be reached.
    #[error("container {id}: monitor")]
    Monitor {
        /// The container id.
        id: String,
        /// The cause.
        #[source]
        source: ClientError,
    },
    /// The monitor did not exit after its last container was deleted.
    #[error("container {id}: the monitor did not exit")]
    MonitorStuck {
        /// The container id.
        id: String,
    },
    /// The container is not in a state that allows the operation.
    #[error("container {id} is {status}, cannot {action}")]
    WrongState {
        /// The container id.
        id: String,
        /// Its status.
        status: String,
        /// The refused operation.
        action: &'static str,
    },
    /// The container was deleted while a caller waited for it to exit.
    #[error("container {id} was deleted before it exited")]
    DeletedWhileWaiting {
        /// The container id.
        id: String,
    },
    /// A blocking task panicked or was cancelled.
    #[error("a background task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The container's cgroup could not be read.
    #[error("container {id}: cannot read its cgroup")]
    Stats {
        /// The container id.
        id: String,
        /// The cause.
        #[source]
        source: testudo_cgroups::CgroupError,
    },
}

// Every variant is named, with no wildcard arm, so that a new one must be given a kind here.
impl Kind for ContainerError {
    fn kind(&self) -> ErrorKind {
        use ContainerError as E;
        match self {
            E::State(source) => source.kind(),
            E::Image(source) => source.kind(),
            E::Network(source) => source.kind(),
            E::NoImage
            | E::RelativeMountTarget { .. }
            | E::RelativeMountSource { .. }
            | E::RelativeNetnsPath { .. }
            | E::ZeroLimit { .. }
            | E::LimitTooLarge { .. }
            | E::StdinOnceWithoutStdin
            | E::StdinOnceWithTty
            | E::NetworkInCell { .. } => ErrorKind::InvalidArgument,
            E::MountSourceNotFound { .. }
            | E::NetnsNotFound { .. }
            | E::DeletedWhileWaiting { .. } => ErrorKind::NotFound,
            E::RuntimeConfig { source, .. } => source.kind(),
            E::WrongState { .. } => ErrorKind::FailedPrecondition,
            E::Monitor { source, .. } => match source.kind() {
                Some(MonitorErrorKind::NotFound) => ErrorKind::NotFound,
                Some(MonitorErrorKind::AlreadyExists) => ErrorKind::AlreadyExists,
                Some(MonitorErrorKind::InvalidArgument) => ErrorKind::InvalidArgument,
                Some(MonitorErrorKind::FailedPrecondition) => ErrorKind::FailedPrecondition,
                Some(MonitorErrorKind::Internal) => ErrorKind::Internal,
                None => ErrorKind::Unavailable,
            },
            E::Spec(_)
            | E::NotAttached
            | E::Rootfs { .. }
            | E::Io { .. }
            | E::MonitorSpawn { .. }
            | E::MonitorStart { .. }
            | E::MonitorStuck { .. }
            | E::Task(_)
            | E::Stats { .. } => ErrorKind::Internal,
        }
    }
}

impl From<NetworkError> for ContainerError {
    fn from(e: NetworkError) -> Self {
        ContainerError::Network(Box::new(e))
    }
}

impl Kind for RuntimeConfigError {
    fn kind(&self) -> ErrorKind {
        use RuntimeConfigError as E;
        match self {
            E::NoCommand
            | E::RelativeWorkingDir { .. }
            | E::InvalidEnv { .. }
            | E::UnknownUser { .. }
            | E::UnknownGroup { .. } => ErrorKind::InvalidArgument,
            // The image's account files are unusable: the image is at fault, not the request.
            E::AccountFileNotRegular { .. } | E::AccountFileTooLarge { .. } => {
                ErrorKind::FailedPrecondition
            }
            E::OpenRootfs { .. } | E::ReadAccountFile { .. } => ErrorKind::Internal,
        }
    }
}
