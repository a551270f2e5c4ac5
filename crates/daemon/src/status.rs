//! Every error a call can end with, and its one mapping to a gRPC status.

use std::sync::Arc;

use testudo_engine::containers::ContainerError;
use testudo_engine::error::{ErrorKind, Kind};
use testudo_engine::images::ImageError;
use testudo_engine::networks::NetworkError;
use testudo_engine::state::StateError;
use tonic::{Code, Status};

use crate::request::RequestError;
use crate::Engine;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("cannot spool the archive")]
    Spool(#[source] std::io::Error),
    #[error("cannot encode the image config")]
    Encode(#[source] serde_json::Error),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("container {container:?} is {state}, cannot {action}")]
    WrongState {
        container: String,
        state: String,
        action: &'static str,
    },
    #[error("the stored configuration of container {container:?} does not parse")]
    StoredConfig {
        container: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("a background task failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("container {container:?} was created without stdin")]
    NoStdin { container: String },
    #[error("the exec in container {container:?} was started without stdin")]
    ExecWithoutStdin { container: String },
}

impl Kind for CallError {
    fn kind(&self) -> ErrorKind {
        match self {
            CallError::Request(_) => ErrorKind::InvalidArgument,
            CallError::State(e) => e.kind(),
            CallError::Image(e) => e.kind(),
            CallError::Container(e) => e.kind(),
            CallError::Network(e) => e.kind(),
            CallError::WrongState { .. }
            | CallError::NoStdin { .. }
            | CallError::ExecWithoutStdin { .. } => ErrorKind::FailedPrecondition,
            CallError::Spool(_)
            | CallError::Encode(_)
            | CallError::StoredConfig { .. }
            | CallError::Task(_) => ErrorKind::Internal,
        }
    }
}

/// The status code of each kind: the one place where kinds become codes (`docs/api.md`).
fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Internal => Code::Internal,
    }
}

impl From<CallError> for Status {
    fn from(error: CallError) -> Status {
        let kind = error.kind();
        let chain = crate::chain(&error);
        if kind == ErrorKind::Internal {
            // A host failure's causes name paths and internals: they go to the log, the client
            // learns which operation failed (docs/api.md).
            tracing::error!(error = %chain, "call failed");
            Status::internal(error.to_string())
        } else {
            tracing::debug!(error = %chain, code = ?code(kind), "call refused");
            Status::new(code(kind), chain)
        }
    }
}

/// Runs `call`, which reads or writes the state database or the image store, on tokio's
/// blocking pool: those block on file I/O and locks.
pub(crate) async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, CallError> + Send + 'static,
) -> Result<T, Status> {
    Ok(tokio::task::spawn_blocking(call)
        .await
        .map_err(CallError::Task)??)
}

/// Runs `call` on the engine's container service on tokio's blocking pool, driven by a
/// `block_on` there: the service's async methods read the state database synchronously,
/// which must not hold up the async threads that serve every other call.
pub(crate) async fn offload<T, F, Fut>(engine: &Arc<Engine>, call: F) -> Result<T, CallError>
where
    T: Send + 'static,
    F: FnOnce(Arc<Engine>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, ContainerError>>,
{
    let engine = engine.clone();
    let runtime = tokio::runtime::Handle::current();
    Ok(tokio::task::spawn_blocking(move || runtime.block_on(call(engine))).await??)
}

/// `status` with every mention of the daemon's own file `path` replaced by `name`: the spool
/// file of an import is the daemon's business, not the client's (`docs/api.md`: no host paths).
pub(crate) fn hide_path(status: Status, path: &std::path::Path, name: &str) -> Status {
    let path = path.to_string_lossy();
    if status.message().contains(path.as_ref()) {
        Status::new(status.code(), status.message().replace(path.as_ref(), name))
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::request::NamespaceName;

    #[test]
    fn a_request_error_is_invalid_argument_with_its_message() {
        let error = NamespaceName::parse("Bad_Name").unwrap_err();
        let status = Status::from(CallError::from(error));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status
            .message()
            .starts_with("invalid namespace name \"Bad_Name\""));
        assert!(!status.message().contains('\n'));
    }

    #[test]
    fn the_spool_path_is_hidden_from_the_client() {
        let status = Status::invalid_argument("cannot read the tar archive /root/tmp/import-1.tar");
        let hidden = hide_path(
            status,
            std::path::Path::new("/root/tmp/import-1.tar"),
            "the upload",
        );
        assert_eq!(hidden.code(), Code::InvalidArgument);
        assert_eq!(hidden.message(), "cannot read the tar archive the upload");
    }

    #[test]
    fn a_missing_namespace_is_not_found() {
        let status = Status::from(CallError::from(StateError::NamespaceNotFound(
            "ghost".to_owned(),
        )));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "namespace \"ghost\" not found");
    }

    #[test]
    fn an_internal_error_keeps_its_causes_out_of_the_message() {
        let io = std::io::Error::other("/secret/path is broken");
        let status = Status::from(CallError::Spool(io));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "cannot spool the archive");
    }
}
