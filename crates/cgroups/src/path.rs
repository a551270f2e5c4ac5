//! OCI `linux.cgroupsPath` and where it lands in each hierarchy.

use std::path::{Component, Path, PathBuf};

use crate::CgroupError;

/// A validated OCI `cgroupsPath`, normalised to `/`-free components.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupsPath {
    /// `/a/b`: below each hierarchy's mount point.
    Absolute(PathBuf),
    /// `a/b`: below the calling process's own cgroup in each hierarchy.
    Relative(PathBuf),
}

impl CgroupsPath {
    /// Validates `cgroups_path`; absent or empty means `/<container_id>`.
    ///
    /// Rejects `..` components, paths that name a hierarchy root (or the caller's own
    /// cgroup), and the systemd `slice:prefix:name` form, which needs a systemd driver.
    pub fn parse(cgroups_path: Option<&Path>, container_id: &str) -> Result<Self, CgroupError> {
        let given = cgroups_path
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| p.to_string_lossy().into_owned());
        let text = given.unwrap_or_else(|| format!("/{container_id}"));
        let invalid = |reason| CgroupError::InvalidPath {
            path: text.clone(),
            reason,
        };
        if looks_like_systemd(&text) {
            return Err(CgroupError::SystemdDriverUnavailable { path: text });
        }
        let mut normal = PathBuf::new();
        for component in Path::new(&text).components() {
            match component {
                Component::Normal(c) => normal.push(c),
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir => return Err(invalid("'..' components are not allowed")),
                Component::Prefix(_) => return Err(invalid("unexpected path prefix")),
            }
        }
        if normal.as_os_str().is_empty() {
            return Err(invalid("it names no cgroup below the hierarchy root"));
        }
        if text.starts_with('/') {
            Ok(Self::Absolute(normal))
        } else {
            Ok(Self::Relative(normal))
        }
    }

    /// The normalised components, without a leading `/`.
    #[must_use]
    pub fn components(&self) -> &Path {
        match self {
            Self::Absolute(p) | Self::Relative(p) => p,
        }
    }
}

/// `slice:prefix:name` with no `/`, the slice part empty or ending in `.slice`.
fn looks_like_systemd(path: &str) -> bool {
    if path.starts_with('/') || path.contains('/') {
        return false;
    }
    let parts: Vec<&str> = path.split(':').collect();
    parts.len() == 3 && (parts[0].is_empty() || parts[0].ends_with(".slice"))
}

/// Where a cgroup lives in one hierarchy: `mount` joined with `rel`.
///
/// `rel` never holds `..` nor a root, so the directory is always inside `mount`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct CgroupDir {
    /// The hierarchy's mount point.
    pub(crate) mount: PathBuf,
    /// The cgroup below the mount point, relative (`a/b`).
    pub(crate) rel: PathBuf,
}

impl CgroupDir {
    /// The full directory.
    #[must_use]
    pub(crate) fn path(&self) -> PathBuf {
        self.mount.join(&self.rel)
    }

    /// Directories from the mount point (excluded) down to this cgroup (included).
    pub(crate) fn levels(&self) -> Vec<PathBuf> {
        let mut dir = self.mount.clone();
        self.rel
            .components()
            .map(|c| {
                dir.push(c);
                dir.clone()
            })
            .collect()
    }
}

/// Resolves `path` in a hierarchy mounted at `mount` whose mounted root is `root`.
///
/// `own` is the caller's cgroup in that hierarchy (from `/proc/self/cgroup`), needed only
/// for relative paths; `hierarchy` names the hierarchy in errors.
pub(crate) fn resolve(
    path: &CgroupsPath,
    mount: &Path,
    root: &Path,
    own: impl FnOnce() -> Result<PathBuf, CgroupError>,
) -> Result<CgroupDir, CgroupError> {
    let rel = match path {
        CgroupsPath::Absolute(p) => p.clone(),
        CgroupsPath::Relative(p) => {
            let own = own()?;
            let below_root = own
                .strip_prefix(root)
                .map_err(|_| CgroupError::OutsideMount {
                    cgroup: own.clone(),
                    root: root.to_path_buf(),
                    mount: mount.to_path_buf(),
                })?;
            // /proc/self/cgroup is kernel-written, but stay inside the mount regardless.
            if below_root
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                return Err(CgroupError::OutsideMount {
                    cgroup: own.clone(),
                    root: root.to_path_buf(),
                    mount: mount.to_path_buf(),
                });
            }
            below_root.join(p)
        }
    };
    Ok(CgroupDir {
        mount: mount.to_path_buf(),
        rel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &str) -> Result<CgroupsPath, CgroupError> {
        CgroupsPath::parse(Some(Path::new(p)), "ctr")
    }

    #[test]
    fn absent_or_empty_path_means_slash_container_id() {
        let expected = CgroupsPath::Absolute(PathBuf::from("ctr"));
        assert_eq!(CgroupsPath::parse(None, "ctr").ok(), Some(expected.clone()));
        assert_eq!(parse("").ok(), Some(expected));
    }

    #[test]
    fn absolute_and_relative_paths_are_normalised() {
        assert_eq!(
            parse("/a//b/./c/").ok(),
            Some(CgroupsPath::Absolute(PathBuf::from("a/b/c")))
        );
        assert_eq!(
            parse("a/b").ok(),
            Some(CgroupsPath::Relative(PathBuf::from("a/b")))
        );
    }

    #[test]
    fn dot_dot_is_rejected_with_the_path_in_the_message() {
        for p in ["/a/../b", "../x", "a/.."] {
            let err = parse(p).expect_err(p);
            assert!(err.to_string().contains(&format!("{p:?}")), "{err}");
            assert!(err.to_string().contains("'..'"), "{err}");
        }
    }

    #[test]
    fn paths_naming_the_root_are_rejected() {
        for p in ["/", ".", "/./", "//"] {
            assert!(
                matches!(parse(p), Err(CgroupError::InvalidPath { .. })),
                "{p}"
            );
        }
    }

    #[test]
    fn systemd_form_asks_for_the_systemd_driver() {
        for p in ["system.slice:docker:abc", ":runc:abc"] {
            let err = parse(p).expect_err(p);
            assert!(matches!(err, CgroupError::SystemdDriverUnavailable { .. }));
            assert!(err
                .to_string()
                .contains("systemd cgroup driver is not available"));
        }
        assert!(parse("a:b").is_ok());
        assert!(parse("/x.slice:a:b").is_ok());
    }

    #[test]
    fn absolute_resolves_below_the_mount_point() {
        let p = parse("/a/b").expect("valid");
        let dir = resolve(
            &p,
            Path::new("/sys/fs/cgroup/memory"),
            Path::new("/"),
            || unreachable!("absolute paths do not read /proc/self/cgroup"),
        )
        .expect("resolves");
        assert_eq!(dir.path(), Path::new("/sys/fs/cgroup/memory/a/b"));
        assert_eq!(
            dir.levels(),
            [
                PathBuf::from("/sys/fs/cgroup/memory/a"),
                PathBuf::from("/sys/fs/cgroup/memory/a/b")
            ]
        );
    }

    #[test]
    fn relative_resolves_below_own_cgroup_minus_the_mount_root() {
        let p = parse("c").expect("valid");
        let dir = resolve(&p, Path::new("/m"), Path::new("/"), || {
            Ok(PathBuf::from("/process_api/e16f"))
        })
        .expect("resolves");
        assert_eq!(dir.path(), Path::new("/m/process_api/e16f/c"));

        let dir = resolve(&p, Path::new("/m"), Path::new("/docker/abc"), || {
            Ok(PathBuf::from("/docker/abc/sub"))
        })
        .expect("resolves");
        assert_eq!(dir.rel, Path::new("sub/c"));

        let err = resolve(&p, Path::new("/m"), Path::new("/docker/abc"), || {
            Ok(PathBuf::from("/elsewhere"))
        })
        .expect_err("outside the mounted root");
        assert!(matches!(err, CgroupError::OutsideMount { .. }));
    }
}
