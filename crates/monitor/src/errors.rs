//! The error kind of each runtime failure, decided in one place.

use testudo_monitor_protocol::ErrorKind;
use testudo_runtime::state::StateError;
use testudo_runtime::{ControlError, CreateError, ExecError};

fn state_error_kind(error: &StateError) -> ErrorKind {
    match error {
        StateError::NotExist(_) => ErrorKind::NotFound,
        StateError::AlreadyExists(_) => ErrorKind::AlreadyExists,
        StateError::Io { .. } | StateError::Corrupt { .. } => ErrorKind::Internal,
    }
}

/// The kind of a failed `create`: what the bundle asks for is the caller's problem, what the host
/// cannot do is ours.
pub(crate) fn create_error_kind(error: &CreateError) -> ErrorKind {
    match error {
        CreateError::Id(_)
        | CreateError::Spec(_)
        | CreateError::Seccomp(_)
        | CreateError::Namespaces(_)
        | CreateError::Unsupported(_)
        | CreateError::NoConsoleSocket
        // The init could not set up or execute what the bundle names (a missing binary, say).
        | CreateError::Init(_) => ErrorKind::InvalidArgument,
        CreateError::State(e) => state_error_kind(e),
        CreateError::Hook(_) => ErrorKind::FailedPrecondition,
        CreateError::Cgroup(_)
        | CreateError::IdmappedMount(_)
        | CreateError::Io { .. }
        | CreateError::InitExited
        | CreateError::InitDied(_) => ErrorKind::Internal,
    }
}

/// The kind of a failed verb on an existing container.
pub(crate) fn control_error_kind(error: &ControlError) -> ErrorKind {
    match error {
        ControlError::Id(_) => ErrorKind::InvalidArgument,
        ControlError::State(e) => state_error_kind(e),
        ControlError::WrongStatus(_) | ControlError::NotRunning | ControlError::Hook(_) => {
            ErrorKind::FailedPrecondition
        }
        ControlError::Spec(_) | ControlError::Cgroup(_) | ControlError::Io { .. } => {
            ErrorKind::Internal
        }
    }
}

/// The kind of a failed `exec`.
pub(crate) fn exec_error_kind(error: &ExecError) -> ErrorKind {
    match error {
        ExecError::Container(e) => control_error_kind(e),
        ExecError::Setup(e) => create_error_kind(e),
        ExecError::ProcessFile { .. } | ExecError::UnknownCapability(_) | ExecError::NoArgs => {
            ErrorKind::InvalidArgument
        }
    }
}
