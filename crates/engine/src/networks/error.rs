//! Why a network operation failed, and the kind of each failure.

use std::path::PathBuf;

use testudo_network::cni::{AttachmentError, CniConfigError, CniError};
use testudo_network::{
    AttachPlanError, BridgeError, IfNameError, IpamError, NameFilesError, NetlinkError, NetnsError,
    PortConflict,
};

use crate::error::{ErrorKind, Kind};
use crate::state::StateError;

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The state database refused or failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The network name is not valid.
    #[error("invalid network name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// A subnet does not parse.
    #[error("invalid subnet {subnet:?}: not an address/prefix")]
    SubnetSyntax {
        /// The text given.
        subnet: String,
    },
    /// The subnets are not one IPv4 subnet and at most one IPv6 subnet.
    #[error("a network needs one IPv4 subnet and at most one IPv6 subnet, not {given}")]
    SubnetCount {
        /// What was given.
        given: String,
    },
    /// The bridge name is not a valid interface name.
    #[error("invalid bridge name")]
    BridgeName(#[source] IfNameError),
    /// Another network uses the bridge.
    #[error("bridge {bridge} is used by network {network:?}")]
    BridgeInUse {
        /// The bridge.
        bridge: String,
        /// The network that has it.
        network: String,
    },
    /// No network of that name.
    #[error("network {0:?} not found")]
    NotFound(String),
    /// A network of that name exists.
    #[error("network {0:?} already exists")]
    Exists(String),
    /// The default network is the daemon's, not the user's.
    #[error("network {0:?} is the default network and cannot be deleted")]
    DeleteDefault(String),
    /// Containers are attached to the network.
    #[error("network {network:?} still has {containers} container(s) attached")]
    InUse {
        /// The network.
        network: String,
        /// How many containers.
        containers: usize,
    },
    /// Subnet validation, overlap or exhaustion.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A published port is published already.
    #[error(transparent)]
    PortConflict(#[from] PortConflict),
    /// The ports cannot be published on this network.
    #[error(transparent)]
    Plan(#[from] AttachPlanError),
    /// A network namespace could not be made, opened or removed, or a path to join is not one.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The bridge, veth or NAT rules could not be set up or removed.
    #[error("container {container_id}: bridge network {network:?}")]
    Bridge {
        /// The container.
        container_id: String,
        /// The network.
        network: String,
        /// The cause (boxed: it is large).
        #[source]
        source: Box<BridgeError>,
    },
    /// The loopback interface of a namespace made for `owner` could not be brought up.
    #[error("{owner}: bring up the loopback interface")]
    Loopback {
        /// The cell (or container) the namespace is for.
        owner: String,
        /// The cause.
        #[source]
        source: NetlinkError,
    },
    /// The CNI configuration list cannot be found or read.
    #[error(transparent)]
    CniConfig(#[from] CniConfigError),
    /// The container cannot be described to CNI.
    #[error(transparent)]
    CniAttachment(#[from] AttachmentError),
    /// A CNI plugin failed.
    #[error(transparent)]
    Cni(#[from] CniError),
    /// The name files cannot be planned or written.
    #[error(transparent)]
    NameFiles(#[from] NameFilesError),
    /// A directory of the service cannot be created.
    #[error("create {path}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Kind for NetworkError {
    fn kind(&self) -> ErrorKind {
        use NetworkError as E;
        match self {
            E::State(source) => source.kind(),
            E::InvalidName { .. }
            | E::SubnetSyntax { .. }
            | E::SubnetCount { .. }
            | E::BridgeName(_)
            | E::Plan(_) => ErrorKind::InvalidArgument,
            E::BridgeInUse { .. } | E::Exists(_) => ErrorKind::AlreadyExists,
            E::NotFound(_) => ErrorKind::NotFound,
            E::DeleteDefault(_) | E::InUse { .. } | E::PortConflict(_) => {
                ErrorKind::FailedPrecondition
            }
            E::Ipam(source) => match source {
                IpamError::InvalidSubnet { .. } | IpamError::Overlap { .. } => {
                    ErrorKind::InvalidArgument
                }
                IpamError::NetworkExists { .. } => ErrorKind::AlreadyExists,
                IpamError::NoSuchNetwork { .. } => ErrorKind::NotFound,
                IpamError::Exhausted { .. } | IpamError::InUse { .. } => {
                    ErrorKind::FailedPrecondition
                }
            },
            E::Netns(source) => match source {
                NetnsError::InvalidName { .. } | NetnsError::NotNetns { .. } => {
                    ErrorKind::InvalidArgument
                }
                NetnsError::NotFound { .. } => ErrorKind::NotFound,
                NetnsError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
                NetnsError::Directory { .. }
                | NetnsError::Create { .. }
                | NetnsError::Open { .. }
                | NetnsError::Enter { .. }
                | NetnsError::Delete { .. }
                | NetnsError::Netlink { .. } => ErrorKind::Internal,
            },
            E::CniConfig(source) => match source {
                CniConfigError::NotFound { .. } => ErrorKind::NotFound,
                CniConfigError::Invalid { .. } | CniConfigError::Parse { .. } => {
                    ErrorKind::FailedPrecondition
                }
                CniConfigError::Read { .. } => ErrorKind::Internal,
            },
            E::CniAttachment(_) => ErrorKind::InvalidArgument,
            // A plugin's failure is the configuration's or the host's, and its message (the
            // plugin's own error) is what the client needs to see.
            E::Cni(_) => ErrorKind::FailedPrecondition,
            E::NameFiles(source) => match source {
                NameFilesError::InvalidName { .. } => ErrorKind::InvalidArgument,
                NameFilesError::Read { .. } | NameFilesError::Write { .. } => ErrorKind::Internal,
            },
            E::Bridge { .. } | E::Loopback { .. } | E::Directory { .. } => ErrorKind::Internal,
        }
    }
}
