//! Persistent named network namespaces: files under a directory (`/run/netns`, as `ip netns`
//! and cri-o use) onto which a namespace is bind-mounted, so it lives on without any process in
//! it.

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountPropagationFlags, UnmountFlags};
use rustix::thread::LinkNameSpaceType;

use crate::netlink::{Netlink, NetlinkError};

/// Where `ip netns` and cri-o keep their named network namespaces.
pub const DEFAULT_NETNS_DIR: &str = "/run/netns";

/// `NSFS_MAGIC` from `<linux/magic.h>`: the file system of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// A name for a persistent network namespace: 1 to 64 bytes of ASCII letters, digits, `-`, `_`
/// and `.`, not starting with `.`, so that it is one path component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetnsName(String);

impl NetnsName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, NetnsError> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if valid {
            Ok(Self(name))
        } else {
            Err(NetnsError::InvalidName { name })
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NetnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A failed operation on a network namespace, naming its path.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The name is not a valid namespace name.
    #[error("invalid network namespace name {name:?}: use 1 to 64 of [A-Za-z0-9._-], not starting with '.'")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The namespace directory could not be created or made a shared mount point.
    #[error("prepare network namespace directory {path}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A namespace of that name exists already.
    #[error("network namespace {path} already exists")]
    AlreadyExists {
        /// Its file.
        path: PathBuf,
    },
    /// Creating the namespace or binding it to its file failed.
    #[error("create network namespace {path}")]
    Create {
        /// Its file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Nothing is at the path.
    #[error("network namespace {path} does not exist")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The path could not be opened or inspected.
    #[error("open network namespace {path}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The path is not a network namespace.
    #[error("{path} is not a network namespace ({what})")]
    NotNetns {
        /// The path given.
        path: PathBuf,
        /// What it is instead.
        what: String,
    },
    /// A thread could not enter the namespace.
    #[error("enter network namespace {path}")]
    Enter {
        /// The namespace's path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Unmounting or removing the namespace file failed.
    #[error("delete network namespace {path}")]
    Delete {
        /// Its file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A netlink socket could not be opened inside the namespace.
    #[error("open rtnetlink inside network namespace {path}")]
    Netlink {
        /// The namespace's path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: NetlinkError,
    },
}

/// The directory of persistent network namespaces (injected so tests and other layouts can use
/// their own; [`DEFAULT_NETNS_DIR`] otherwise).
#[derive(Debug, Clone)]
pub struct NetnsDir {
    dir: PathBuf,
}

impl Default for NetnsDir {
    fn default() -> Self {
        Self::new(DEFAULT_NETNS_DIR)
    }
}

impl NetnsDir {
    /// Namespaces under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of namespace `name`.
    pub fn path_of(&self, name: &NetnsName) -> PathBuf {
        self.dir.join(name.as_str())
    }

    /// Creates network namespace `name` and binds it to its file, as `ip netns add` does.
    ///
    /// The directory becomes a shared mount point first (a bind mount onto itself when it is
    /// not one), so that unmounting a namespace file propagates to other mount namespaces that
    /// inherited it (containers' ones included) and the namespace is freed. On failure the file
    /// is removed again.
    pub fn create(&self, name: &NetnsName) -> Result<Netns, NetnsError> {
        self.prepare_dir()?;
        let path = self.path_of(name);
        let create = |source| NetnsError::Create {
            path: path.clone(),
            source,
        };
        match fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(NetnsError::AlreadyExists { path })
            }
            Err(e) => return Err(create(e)),
        }
        // unshare(CLONE_NEWNET) moves only the calling thread, which then ends: the process
        // keeps its namespace, the new one lives on through the bind mount.
        let bound = std::thread::scope(|scope| {
            scope
                .spawn(|| -> io::Result<()> {
                    testudo_linux::process::unshare(libc::CLONE_NEWNET)?;
                    let own = format!(
                        "/proc/self/task/{}/ns/net",
                        rustix::thread::gettid().as_raw_nonzero()
                    );
                    rustix::mount::mount_bind(own.as_str(), &path)?;
                    Ok(())
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        });
        if let Err(e) = bound {
            // Best effort: the file was created above and holds no mount.
            let _ = fs::remove_file(&path);
            return Err(create(e));
        }
        tracing::info!(netns = %path.display(), "created network namespace");
        Netns::open(&path)
    }

    /// Makes the directory exist and be a shared mount point, under an exclusive lock so that
    /// concurrent callers do not stack bind mounts (iproute2 hit that, Debian bug 949235).
    fn prepare_dir(&self) -> Result<(), NetnsError> {
        let dir_error = |source| NetnsError::Directory {
            path: self.dir.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(dir_error)?;
        let lock = rustix::fs::open(
            &self.dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| dir_error(e.into()))?;
        rustix::fs::flock(&lock, FlockOperation::LockExclusive).map_err(|e| dir_error(e.into()))?;
        let shared = MountPropagationFlags::SHARED | MountPropagationFlags::REC;
        match rustix::mount::mount_change(&self.dir, shared) {
            Ok(()) => Ok(()),
            // Not a mount point yet.
            Err(Errno::INVAL) => rustix::mount::mount_bind_recursive(&self.dir, &self.dir)
                .and_then(|()| rustix::mount::mount_change(&self.dir, shared))
                .map_err(|e| dir_error(e.into())),
            Err(e) => Err(dir_error(e.into())),
        }
    }

    /// Opens namespace `name`.
    pub fn open(&self, name: &NetnsName) -> Result<Netns, NetnsError> {
        Netns::open(&self.path_of(name))
    }

    /// Deletes namespace `name`: unmounts its file and removes it. Deleting a namespace that
    /// is not there, or whose file was left unmounted by a crash during creation, succeeds.
    pub fn delete(&self, name: &NetnsName) -> Result<(), NetnsError> {
        let path = self.path_of(name);
        let delete = |source| NetnsError::Delete {
            path: path.clone(),
            source,
        };
        // Detach: processes that still hold the namespace keep it; the name goes now.
        loop {
            match rustix::mount::unmount(&path, UnmountFlags::DETACH) {
                Ok(()) => continue,
                Err(Errno::INVAL | Errno::NOENT) => break,
                Err(e) => return Err(delete(e.into())),
            }
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(netns = %path.display(), "deleted network namespace");
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(delete(e)),
        }
    }
}

/// An open network namespace: a namespace file (`/run/netns/x`, `/proc/<pid>/ns/net`) checked
/// to be a network namespace.
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
    fd: OwnedFd,
}

impl Netns {
    /// Opens `path` and checks that it is a network namespace, so that a wrong path is refused
    /// by name before anything is set up in it.
    pub fn open(path: &Path) -> Result<Self, NetnsError> {
        let fd = match rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                return Err(NetnsError::NotFound {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => {
                return Err(NetnsError::Open {
                    path: path.to_path_buf(),
                    source: e.into(),
                })
            }
        };
        let open_error = |source: Errno| NetnsError::Open {
            path: path.to_path_buf(),
            source: source.into(),
        };
        let statfs = rustix::fs::fstatfs(&fd).map_err(open_error)?;
        // `f_type` is an i64 on most architectures, not all.
        #[allow(clippy::useless_conversion)]
        let fs_type = i64::from(statfs.f_type);
        if fs_type != NSFS_MAGIC {
            return Err(NetnsError::NotNetns {
                path: path.to_path_buf(),
                what: "not a namespace file".to_owned(),
            });
        }
        let kind =
            testudo_linux::process::namespace_type(fd.as_fd()).map_err(|e| NetnsError::Open {
                path: path.to_path_buf(),
                source: e,
            })?;
        if kind != libc::CLONE_NEWNET {
            return Err(NetnsError::NotNetns {
                path: path.to_path_buf(),
                what: format!("a {} namespace", namespace_kind(kind)),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a thread of its own that has entered the namespace, and returns its result.
    /// Sockets that `f` opens stay in the namespace when used from other threads.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                rustix::thread::move_into_link_name_space(
                    self.fd.as_fd(),
                    Some(LinkNameSpaceType::Network),
                )
                .map(|()| f())
            });
            match thread.join() {
                Ok(result) => result.map_err(|e| NetnsError::Enter {
                    path: self.path.clone(),
                    source: e.into(),
                }),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// An rtnetlink socket that acts inside the namespace.
    pub fn netlink(&self) -> Result<Netlink, NetnsError> {
        self.run(Netlink::open)?
            .map_err(|source| NetnsError::Netlink {
                path: self.path.clone(),
                source,
            })
    }
}

/// The name `/proc/<pid>/ns` gives a namespace of type `kind`.
fn namespace_kind(kind: i32) -> &'static str {
    match kind {
        libc::CLONE_NEWNS => "mnt",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWTIME => "time",
        _ => "unknown",
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_single_safe_path_components() {
        for good in ["a", "tt123-x", "ctr_1.net"] {
            assert!(NetnsName::new(good).is_ok(), "{good} refused");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(NetnsName::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
