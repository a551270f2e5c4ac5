//! The kind of every engine error, which the daemon maps to a gRPC status in one place.

use testudo_image::layout::LayoutError;
use testudo_image::manifest::ManifestError;
use testudo_image::pull::PullError;
use testudo_image::reference::ReferenceError;
use testudo_image::registry::RegistryError;
use testudo_image::store::StoreError;
use testudo_snapshot::SnapshotError;

/// What kind of failure an error is, as a client needs to know it (containerd's `errdefs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The object named does not exist.
    NotFound,
    /// An object of that name exists already.
    AlreadyExists,
    /// The request itself is wrong (a bad name, reference, path).
    InvalidArgument,
    /// The request is fine but the state does not allow it (a namespace still holding
    /// containers, a running container to delete without force).
    FailedPrecondition,
    /// Something the engine depends on is not reachable now (a registry); retrying may work.
    Unavailable,
    /// The caller, or testudo on its behalf, is not allowed (a registry refused the
    /// credentials).
    PermissionDenied,
    /// A bug or a broken host: nothing the client can change.
    Internal,
}

/// An error that knows its [`ErrorKind`].
pub trait Kind {
    /// The kind of this error.
    fn kind(&self) -> ErrorKind;
}

// The matches below name every variant, with no wildcard arm, so that a new variant anywhere
// is a compile error here until someone decides its kind.

impl Kind for ReferenceError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

impl Kind for RegistryError {
    fn kind(&self) -> ErrorKind {
        use RegistryError as E;
        match self {
            E::NotFound { .. } => ErrorKind::NotFound,
            E::Unauthorized { .. } => ErrorKind::PermissionDenied,
            E::CaCertificate { .. } => ErrorKind::InvalidArgument,
            // Content that arrived wrong, or a registry that misbehaves now: a retry may work.
            E::Transport { .. }
            | E::Status { .. }
            | E::Token { .. }
            | E::Digest { .. }
            | E::Size { .. } => ErrorKind::Unavailable,
            E::TooLarge { .. } => ErrorKind::FailedPrecondition,
            E::Client(_) | E::Write { .. } => ErrorKind::Internal,
            E::Store { source, .. } => source.kind(),
        }
    }
}

impl Kind for ManifestError {
    fn kind(&self) -> ErrorKind {
        use ManifestError as E;
        match self {
            E::NoMatchingPlatform { .. } => ErrorKind::NotFound,
            E::InvalidPlatform { .. } => ErrorKind::InvalidArgument,
            // The image exists but this engine cannot use it.
            E::TooLarge { .. }
            | E::SchemaOne
            | E::UnknownMediaType { .. }
            | E::MediaTypeMismatch { .. }
            | E::UnknownKind
            | E::Ambiguous
            | E::SchemaVersion { .. }
            | E::Json { .. }
            | E::InvalidDigest { .. }
            | E::InvalidDiffId { .. }
            | E::RootfsType { .. }
            | E::NestedIndex { .. }
            | E::UnknownLayerMediaType { .. } => ErrorKind::FailedPrecondition,
        }
    }
}

impl Kind for StoreError {
    fn kind(&self) -> ErrorKind {
        use StoreError as E;
        match self {
            E::BlobNotFound { .. } | E::ImageNotFound { .. } => ErrorKind::NotFound,
            E::InvalidName { .. } | E::UnsupportedDigest { .. } => ErrorKind::InvalidArgument,
            E::IngestBusy { .. } | E::Busy { .. } => ErrorKind::Unavailable,
            E::DigestMismatch { .. }
            | E::SizeMismatch { .. }
            | E::TooLarge { .. }
            | E::BadManifest { .. } => ErrorKind::FailedPrecondition,
            E::Io { .. } | E::Records { .. } => ErrorKind::Internal,
        }
    }
}

impl Kind for PullError {
    fn kind(&self) -> ErrorKind {
        match self {
            PullError::Registry { source, .. } => source.kind(),
            PullError::Manifest { source, .. } => source.kind(),
            PullError::Store { source, .. } => source.kind(),
            PullError::LayerCount { .. } => ErrorKind::FailedPrecondition,
            PullError::Task { .. } => ErrorKind::Internal,
        }
    }
}

impl Kind for LayoutError {
    fn kind(&self) -> ErrorKind {
        use LayoutError as E;
        match self {
            E::DestinationExists { .. } => ErrorKind::AlreadyExists,
            E::NotALayout { .. }
            | E::BadLayoutFile { .. }
            | E::UnsupportedVersion { .. }
            | E::MissingIndex { .. }
            | E::BadIndex { .. }
            | E::TooLarge { .. }
            | E::MissingBlob { .. }
            | E::BadBlob { .. }
            | E::NotAFile { .. }
            | E::BadManifest { .. }
            | E::UnsupportedDigest { .. }
            | E::Unnamed { .. }
            | E::DuplicateName { .. } => ErrorKind::InvalidArgument,
            E::Io { .. } => ErrorKind::Internal,
            E::Store(source) => source.kind(),
        }
    }
}

impl Kind for SnapshotError {
    fn kind(&self) -> ErrorKind {
        use SnapshotError as E;
        match self {
            E::NotFound { .. } => ErrorKind::NotFound,
            E::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            E::InvalidKey { .. } => ErrorKind::InvalidArgument,
            E::WrongKind { .. } | E::ParentNotCommitted { .. } | E::HasChildren { .. } => {
                ErrorKind::FailedPrecondition
            }
            E::InvalidRoot { .. }
            | E::BrokenChain { .. }
            | E::CorruptMetadata { .. }
            | E::UnknownVersion { .. }
            | E::Io { .. }
            | E::Copy { .. } => ErrorKind::Internal,
        }
    }
}

/// An error and its causes as one line (`a: b: c`), as the daemon logs and answers them.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
