//! Idmapped bind mounts: a mount's `uidMappings`/`gidMappings` (runtime-spec 1.2) and runc's `idmap`
//! and `ridmap` options. Which mounts are idmapped, and through which mappings, is decided here as
//! plain data ([`plan_mount_idmap`]); the runtime process then prepares each one as a detached,
//! idmapped mount tree that the init attaches at its destination.
//!
//! Why the runtime process prepares them rather than the init: `mount_setattr(MOUNT_ATTR_IDMAP)`
//! needs CAP_SYS_ADMIN over the user namespace that owns the source's filesystem — the initial one
//! for host filesystems — and an init in the container's user namespace no longer has it. So, as
//! runc 1.2 does, the runtime clones the source with `open_tree(OPEN_TREE_CLONE)` (`AT_RECURSIVE`
//! for `rbind`), idmaps the detached tree with a user namespace carrying the mappings, and passes
//! the descriptor to the init, which resolves the destination inside the root as for any mount and
//! attaches the tree with `move_mount`. This happens before the runtime enters the namespaces that
//! only its children take (a joined pid namespace, a new time namespace), so the short-lived process
//! that holds each new user namespace is not created in them. A detached tree vanishes with its last
//! descriptor: a failed `create` leaves no mount behind.
//!
//! The mappings read as runc reads them: `containerID` is an id of the source filesystem and
//! `hostID` the id it shows as through the mount (`{containerID: 0, hostID: 1000}` shows root's files
//! as owned by 1000; files of ids outside the mappings show as the overflow id).

use std::collections::hash_map::{Entry, HashMap};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType, Mount};
use rustix::fs::CWD;
use rustix::mount::{open_tree, OpenTreeFlags};
use serde::{Deserialize, Serialize};
use testudo_linux::mount::{set_mount_idmap, set_mount_propagation};
use testudo_linux::userns::{user_namespace_with_mappings, UserNamespaceError};
use thiserror::Error;

use crate::mount_options::{self, IdmapOption};
use crate::plan::RootfsPlan;

/// The user namespace whose mappings an idmapped mount shows ids through.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdmapNamespace {
    /// A new one with these mappings, in the format of `/proc/<pid>/uid_map` (the mount's own
    /// mappings, or those of the user namespace the container creates).
    Mappings {
        /// uid mappings.
        uid: String,
        /// gid mappings.
        gid: String,
    },
    /// The user namespace the container joins (`idmap` without mappings), as runc does.
    Path(PathBuf),
}

/// How a bind mount is idmapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountIdmap {
    /// Whose mappings.
    pub namespace: IdmapNamespace,
    /// Every mount of an `rbind` tree is idmapped (`ridmap`), not only its top.
    pub recursive: bool,
}

/// Why a mount's id mapping is invalid.
#[derive(Debug, Error)]
pub enum MountIdmapError {
    /// Mappings or an idmap option on a mount that is not a bind mount.
    #[error("mount {destination}: id mappings are only supported for bind mounts")]
    NotBind {
        /// The mount's destination.
        destination: String,
    },
    /// Only one of `uidMappings` and `gidMappings` is given.
    #[error("mount {destination}: uidMappings and gidMappings must be given together")]
    Incomplete {
        /// The mount's destination.
        destination: String,
    },
    /// `idmap`/`ridmap` without mappings, in a container without a user namespace to take them from.
    #[error(
        "mount {destination}: the idmap option needs uidMappings and gidMappings or a user namespace"
    )]
    NoMappings {
        /// The mount's destination.
        destination: String,
    },
}

/// The `/proc/<pid>/uid_map` text of spec mappings.
pub(crate) fn id_map_text(maps: Option<&[LinuxIdMapping]>) -> String {
    maps.into_iter()
        .flatten()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Decides whether and how a spec mount is idmapped: with its own mappings when it has them (with or
/// without an idmap option), else with the container's user namespace when it has `idmap` or
/// `ridmap`, else not at all. `is_bind` says whether the mount is a bind mount.
pub fn plan_mount_idmap(
    mount: &Mount,
    is_bind: bool,
    linux: Option<&Linux>,
) -> Result<Option<MountIdmap>, MountIdmapError> {
    let destination = || mount.destination().display().to_string();
    let non_empty = |m: &Option<Vec<LinuxIdMapping>>| m.as_ref().is_some_and(|m| !m.is_empty());
    let (has_uid, has_gid) = (
        non_empty(mount.uid_mappings()),
        non_empty(mount.gid_mappings()),
    );
    let option = mount_options::parse(mount.options().as_deref().unwrap_or_default()).idmap;
    if !has_uid && !has_gid && option.is_none() {
        return Ok(None);
    }
    if !is_bind {
        return Err(MountIdmapError::NotBind {
            destination: destination(),
        });
    }
    if has_uid != has_gid {
        return Err(MountIdmapError::Incomplete {
            destination: destination(),
        });
    }
    let namespace = if has_uid {
        IdmapNamespace::Mappings {
            uid: id_map_text(mount.uid_mappings().as_deref()),
            gid: id_map_text(mount.gid_mappings().as_deref()),
        }
    } else {
        container_namespace(linux).ok_or_else(|| MountIdmapError::NoMappings {
            destination: destination(),
        })?
    };
    Ok(Some(MountIdmap {
        namespace,
        recursive: option == Some(IdmapOption::Recursive),
    }))
}

/// The container's user namespace: the one it joins, or the mappings of the one it creates.
fn container_namespace(linux: Option<&Linux>) -> Option<IdmapNamespace> {
    let linux = linux?;
    let user = linux
        .namespaces()
        .iter()
        .flatten()
        .find(|n| n.typ() == LinuxNamespaceType::User)?;
    match user.path().as_ref().filter(|p| !p.as_os_str().is_empty()) {
        Some(path) => Some(IdmapNamespace::Path(path.clone())),
        None => Some(IdmapNamespace::Mappings {
            uid: id_map_text(linux.uid_mappings().as_deref()),
            gid: id_map_text(linux.gid_mappings().as_deref()),
        }),
    }
}

/// Preparing an idmapped mount in the runtime process failed.
#[derive(Debug, Error)]
pub enum IdmappedMountError {
    /// A mount system call failed.
    #[error("mount {destination}: {step}")]
    Mount {
        /// The mount's destination.
        destination: String,
        /// What was being done.
        step: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The user namespace carrying the mappings could not be made.
    #[error("mount {destination}: create the user namespace of its id mappings")]
    UserNamespace {
        /// The mount's destination.
        destination: String,
        /// The cause.
        #[source]
        source: UserNamespaceError,
    },
}

/// Clones the source of each idmapped bind mount of `plan` as a detached tree, idmaps it, gives it the
/// propagation a plain bind would have in the container (that of its `/`, so that a tree cloned from
/// a shared host mount does not stay a peer of it), and records its descriptor, placed at `min_fd` or
/// above, in the plan for the init. Mounts with the same mappings share one user namespace.
///
/// The returned descriptors must stay open until the init is started with them.
pub(crate) fn detach_idmapped_sources(
    plan: &mut RootfsPlan,
    min_fd: u32,
) -> Result<Vec<OwnedFd>, IdmappedMountError> {
    let propagation = plan.propagation & !libc::MS_REC;
    let mut namespaces: HashMap<IdmapNamespace, OwnedFd> = HashMap::new();
    let mut trees = Vec::new();
    for m in &mut plan.mounts {
        let Some(idmap) = &m.idmap else { continue };
        let fail = |step: &'static str| {
            let destination = m.destination.clone();
            move |source: io::Error| IdmappedMountError::Mount {
                destination,
                step,
                source,
            }
        };
        let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        if m.options.flags & libc::MS_REC != 0 {
            flags |= OpenTreeFlags::AT_RECURSIVE;
        }
        let tree = open_tree(CWD, m.source.as_str(), flags)
            .map_err(|e| fail("clone the bind source")(e.into()))?;
        let namespace = match namespaces.entry(idmap.namespace.clone()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => {
                let namespace = open_namespace(new.key(), &m.destination)?;
                new.insert(namespace)
            }
        };
        set_mount_idmap(tree.as_fd(), namespace.as_fd(), idmap.recursive)
            .map_err(fail("idmap the mount"))?;
        if propagation != 0 {
            set_mount_propagation(tree.as_fd(), propagation, true)
                .map_err(fail("set the propagation of the idmapped mount"))?;
        }
        let tree = if u32::try_from(tree.as_raw_fd()).unwrap_or(0) >= min_fd {
            tree
        } else {
            let min = i32::try_from(min_fd).unwrap_or(i32::MAX);
            rustix::io::fcntl_dupfd_cloexec(&tree, min)
                .map_err(|e| fail("move the idmapped mount's descriptor")(e.into()))?
        };
        m.idmapped_tree_fd = Some(tree.as_raw_fd());
        trees.push(tree);
    }
    Ok(trees)
}

fn open_namespace(
    namespace: &IdmapNamespace,
    destination: &str,
) -> Result<OwnedFd, IdmappedMountError> {
    match namespace {
        IdmapNamespace::Mappings { uid, gid } => {
            user_namespace_with_mappings(uid, gid).map_err(|source| {
                IdmappedMountError::UserNamespace {
                    destination: destination.to_string(),
                    source,
                }
            })
        }
        IdmapNamespace::Path(path) => {
            std::fs::File::open(path)
                .map(OwnedFd::from)
                .map_err(|source| IdmappedMountError::Mount {
                    destination: destination.to_string(),
                    step: "open the container's user namespace",
                    source,
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(json: &str) -> Mount {
        serde_json::from_str(json).expect("mount")
    }

    fn linux(json: &str) -> Linux {
        serde_json::from_str(json).expect("linux")
    }

    const MAPS: &str = r#""uidMappings":[{"containerID":0,"hostID":1000,"size":1}],
        "gidMappings":[{"containerID":0,"hostID":2000,"size":10}]"#;

    #[test]
    fn a_bind_mount_with_mappings_is_idmapped_with_them() {
        let m = mount(&format!(
            r#"{{"destination":"/data","source":"/src","options":["rbind"],{MAPS}}}"#
        ));
        let idmap = plan_mount_idmap(&m, true, None).expect("valid");
        assert_eq!(
            idmap,
            Some(MountIdmap {
                namespace: IdmapNamespace::Mappings {
                    uid: "0 1000 1\n".into(),
                    gid: "0 2000 10\n".into()
                },
                recursive: false,
            })
        );
    }

    #[test]
    fn ridmap_makes_the_idmapping_recursive() {
        let m = mount(&format!(
            r#"{{"destination":"/data","source":"/src","options":["rbind","ridmap"],{MAPS}}}"#
        ));
        let idmap = plan_mount_idmap(&m, true, None).expect("valid");
        assert!(idmap.expect("idmapped").recursive);
    }

    #[test]
    fn a_mount_without_mappings_or_options_is_not_idmapped() {
        let m = mount(r#"{"destination":"/data","source":"/src","options":["bind"]}"#);
        assert_eq!(plan_mount_idmap(&m, true, None).expect("valid"), None);
        let empty =
            mount(r#"{"destination":"/data","source":"/src","uidMappings":[],"gidMappings":[]}"#);
        assert_eq!(plan_mount_idmap(&empty, true, None).expect("valid"), None);
    }

    #[test]
    fn idmap_without_mappings_takes_the_containers_user_namespace() {
        let m = mount(r#"{"destination":"/data","source":"/src","options":["bind","idmap"]}"#);
        let created = linux(&format!(r#"{{"namespaces":[{{"type":"user"}}],{MAPS}}}"#));
        assert_eq!(
            plan_mount_idmap(&m, true, Some(&created))
                .expect("valid")
                .map(|i| i.namespace),
            Some(IdmapNamespace::Mappings {
                uid: "0 1000 1\n".into(),
                gid: "0 2000 10\n".into()
            })
        );
        let joined = linux(r#"{"namespaces":[{"type":"user","path":"/proc/1/ns/user"}]}"#);
        assert_eq!(
            plan_mount_idmap(&m, true, Some(&joined))
                .expect("valid")
                .map(|i| i.namespace),
            Some(IdmapNamespace::Path("/proc/1/ns/user".into()))
        );
    }

    #[test]
    fn idmap_without_mappings_or_user_namespace_is_refused_by_destination() {
        let m = mount(r#"{"destination":"/data","source":"/src","options":["bind","idmap"]}"#);
        let none = linux(r#"{"namespaces":[{"type":"mount"}]}"#);
        let err = plan_mount_idmap(&m, true, Some(&none)).expect_err("no mappings");
        assert!(matches!(err, MountIdmapError::NoMappings { .. }));
        assert!(err.to_string().starts_with("mount /data: "), "{err}");
    }

    #[test]
    fn mappings_on_a_filesystem_mount_are_refused_by_destination() {
        let m = mount(&format!(
            r#"{{"destination":"/scratch","type":"tmpfs","source":"tmpfs",{MAPS}}}"#
        ));
        let err = plan_mount_idmap(&m, false, None).expect_err("not a bind");
        assert_eq!(
            err.to_string(),
            "mount /scratch: id mappings are only supported for bind mounts"
        );
        let option = mount(r#"{"destination":"/proc","type":"proc","options":["idmap"]}"#);
        assert!(matches!(
            plan_mount_idmap(&option, false, None),
            Err(MountIdmapError::NotBind { .. })
        ));
    }

    #[test]
    fn uid_mappings_without_gid_mappings_are_refused() {
        let m = mount(
            r#"{"destination":"/data","source":"/src","options":["bind"],
                "uidMappings":[{"containerID":0,"hostID":1000,"size":1}]}"#,
        );
        assert!(matches!(
            plan_mount_idmap(&m, true, None),
            Err(MountIdmapError::Incomplete { .. })
        ));
    }
}
