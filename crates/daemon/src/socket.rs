//! The API's unix socket: created mode 0660 in a parent directory made if missing; a stale
//! socket (nobody answers) is replaced, a live one (another daemon) is refused; removed again
//! when the daemon stops.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::Mode;
use rustix::process::umask;
use tokio::net::UnixListener;

/// The socket's mode: the owner and its group may connect.
const SOCKET_MODE: u32 = 0o660;

/// Why the socket cannot be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SocketError {
    #[error("cannot create the socket directory {path:?}")]
    Directory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("socket {path:?} is in use by a running daemon")]
    InUse { path: PathBuf },
    #[error("{path:?} exists and is not a socket")]
    NotASocket { path: PathBuf },
    #[error("cannot remove the stale socket {path:?}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {path:?}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What is at the socket path before binding.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    Nothing,
    /// A socket nobody listens on: a daemon that died left it.
    Stale,
    /// A socket a process answers on.
    Live,
    /// Something else, which is not ours to remove.
    Other,
}

fn probe(path: &Path) -> Existing {
    match std::fs::symlink_metadata(path) {
        Err(_) => Existing::Nothing,
        Ok(meta) if !meta.file_type().is_socket() => Existing::Other,
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => Existing::Live,
            Err(_) => Existing::Stale,
        },
    }
}

/// Removes the socket when dropped.
#[derive(Debug)]
pub(crate) struct SocketGuard {
    path: PathBuf,
}

impl SocketGuard {
    /// Listens on `path` (see the module docs).
    pub(crate) fn bind(path: &Path) -> Result<(UnixListener, SocketGuard), SocketError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| SocketError::Directory {
                path: parent.to_owned(),
                source,
            })?;
        }
        let path_buf = path.to_owned();
        match probe(path) {
            Existing::Nothing => {}
            Existing::Live => return Err(SocketError::InUse { path: path_buf }),
            Existing::Other => return Err(SocketError::NotASocket { path: path_buf }),
            Existing::Stale => {
                tracing::info!(socket = %path.display(), "replacing a stale socket");
                std::fs::remove_file(path).map_err(|source| SocketError::RemoveStale {
                    path: path_buf.clone(),
                    source,
                })?;
            }
        }
        let bind_error = |source| SocketError::Bind {
            path: path_buf.clone(),
            source,
        };
        // The socket is created with the mode already (0777 less the umask), so nobody outside
        // the group can connect in a window before a chmod. The umask is the process's, but
        // nothing else creates files while the daemon starts.
        let previous = umask(Mode::from_raw_mode(0o777 & !SOCKET_MODE));
        let bound = UnixListener::bind(path);
        umask(previous);
        let listener = bound.map_err(bind_error)?;
        let guard = SocketGuard {
            path: path.to_owned(),
        };
        // Exactly 0660 whatever the umask removed besides.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(bind_error)?;
        Ok((listener, guard))
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(socket = %self.path.display(), error = %e, "cannot remove the socket");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/d.sock");
        let (listener, guard) = SocketGuard::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o660);
        assert!(matches!(
            SocketGuard::bind(&path),
            Err(SocketError::InUse { .. })
        ));
        // A daemon killed with -9: the file stays, nobody listens.
        std::mem::forget(guard);
        drop(listener);
        assert_eq!(probe(&path), Existing::Stale);
        let (_listener, guard) = SocketGuard::bind(&path).unwrap();
        drop(guard);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        std::fs::write(&path, b"data").unwrap();
        assert!(matches!(
            SocketGuard::bind(&path),
            Err(SocketError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
