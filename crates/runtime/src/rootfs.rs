//! Applying a [`RootfsPlan`] inside the container's mount namespace: mounts, devices, `pivot_root`,
//! masked and read-only paths.
//!
//! Every destination is resolved inside the root filesystem with `openat2(RESOLVE_IN_ROOT)` and mounted
//! through `/proc/self/fd/<n>`, so a symlink in the image cannot redirect a mount to the host.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{mkdirat, mknodat, openat2, symlinkat, FileType, Mode, OFlags, ResolveFlags};
use rustix::mount::{move_mount, MoveMountFlags};
use testudo_linux::mount::{mount, set_mount_attributes};
use thiserror::Error;

use crate::plan::{CgroupMountSource, DevicePlan, MountKind, MountPlan, RootfsPlan};

/// A step of building the root filesystem failed.
#[derive(Debug, Error)]
#[error("{step} {path}")]
pub struct RootfsError {
    /// What was being done.
    pub step: &'static str,
    /// The path inside or outside the container it concerned.
    pub path: String,
    /// The cause.
    #[source]
    pub source: io::Error,
}

fn err(step: &'static str, path: impl AsRef<Path>) -> impl FnOnce(io::Error) -> RootfsError {
    let path = path.as_ref().display().to_string();
    move |source| RootfsError { step, path, source }
}

fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Opens `path` (taken as relative to `root`, whatever its leading `/`) inside `root`.
fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let rel = relative(path);
    openat2(
        root,
        rel.as_os_str(),
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        IN_ROOT,
    )
    .map_err(Into::into)
}

fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// Creates `path` inside `root` (directories, and a file as the last component when `file` is set)
/// and returns an `O_PATH` descriptor of it.
///
/// Symlinks met on the way are followed as if `root` were `/` (an absolute target restarts from the
/// root, `..` stops at it), and missing targets are created inside the root, so neither an existing
/// nor a dangling link can make this create anything outside it.
fn make_in_root(root: BorrowedFd<'_>, path: &Path, file: bool) -> io::Result<OwnedFd> {
    if let Ok(fd) = open_in_root(root, path, OFlags::PATH) {
        return Ok(fd);
    }
    let mut pending: Vec<std::ffi::OsString> = relative(path).iter().map(OsStr::to_owned).collect();
    pending.reverse();
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut links_followed = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        if part == "." {
            continue;
        }
        let parent_path: PathBuf = resolved.iter().collect();
        let parent = open_in_root(root, &parent_path, OFlags::PATH | OFlags::DIRECTORY)?;
        let last = pending.is_empty();
        match rustix::fs::statat(
            &parent,
            part.as_os_str(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                links_followed += 1;
                if links_followed > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = rustix::fs::readlinkat(&parent, part.as_os_str(), Vec::new())?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut parts: Vec<std::ffi::OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_owned()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                parts.reverse();
                pending.extend(parts);
                continue;
            }
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => {
                // `parent` is an O_PATH descriptor; creating needs a real one.
                let parent = rustix::fs::openat(
                    &parent,
                    ".",
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                if last && file {
                    rustix::fs::openat(
                        &parent,
                        part.as_os_str(),
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::WRONLY
                            | OFlags::CLOEXEC
                            | OFlags::NOFOLLOW,
                        Mode::from_raw_mode(0o644),
                    )?;
                } else {
                    mkdirat(&parent, part.as_os_str(), Mode::from_raw_mode(0o755))?;
                }
            }
            Err(e) => return Err(e.into()),
        }
        resolved.push(part);
    }
    let full: PathBuf = resolved.iter().collect();
    open_in_root(root, &full, OFlags::PATH)
}

/// Mount namespace preparation and every mount of the plan, up to (not including) `pivot_root`.
pub(crate) fn prepare(plan: &RootfsPlan, cgroup_namespace: bool) -> Result<OwnedFd, RootfsError> {
    mount(None, Path::new("/"), None, plan.propagation, None)
        .map_err(err("make / private", "/"))?;
    let root_path = &plan.root;
    mount(
        Some(root_path),
        root_path,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(err("bind the rootfs", root_path))?;
    // pivot_root needs the new root's mount to be private.
    mount(None, root_path, None, libc::MS_PRIVATE, None)
        .map_err(err("make rootfs private", root_path))?;
    let root = rustix::fs::open(
        root_path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("open the rootfs", root_path)(e.into()))?;
    for m in &plan.mounts {
        apply_mount(root.as_fd(), m, cgroup_namespace)?;
    }
    let dev_is_bind = plan
        .mounts
        .iter()
        .any(|m| m.destination == "/dev" && m.kind == MountKind::Bind);
    if !dev_is_bind {
        for device in &plan.devices {
            create_device(root.as_fd(), device)?;
        }
        default_links(root.as_fd(), plan)?;
    }
    Ok(root)
}

fn apply_mount(root: BorrowedFd<'_>, m: &MountPlan, cgroupns: bool) -> Result<(), RootfsError> {
    let dest = Path::new(&m.destination);
    let opts = &m.options;
    let flags = opts.flags & !(libc::MS_REMOUNT);
    match &m.kind {
        MountKind::Bind => {
            let source = Path::new(&m.source);
            // An idmapped bind comes ready from the runtime process, as a detached tree.
            let tree = m
                .idmapped_tree_fd
                .map(testudo_linux::fd::adopt_inherited)
                .transpose()
                .map_err(err("take the idmapped mount of", dest))?;
            let is_file = match &tree {
                Some(tree) => rustix::fs::fstat(tree)
                    .map(|st| FileType::from_raw_mode(st.st_mode) != FileType::Directory)
                    .map_err(|e| err("stat bind source", source)(e.into()))?,
                None => std::fs::metadata(source)
                    .map(|md| !md.is_dir())
                    .map_err(err("stat bind source", source))?,
            };
            let target =
                make_in_root(root, dest, is_file).map_err(err("create mount point", dest))?;
            match tree {
                Some(tree) => move_mount(
                    &tree,
                    "",
                    &target,
                    "",
                    MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH
                        | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
                )
                .map_err(|e| err("attach idmapped mount", dest)(e.into()))?,
                None => mount(
                    Some(source),
                    &fd_path(target.as_fd()),
                    None,
                    libc::MS_BIND | (flags & libc::MS_REC),
                    None,
                )
                .map_err(err("bind mount", dest))?,
            }
            let extra = flags & !(libc::MS_BIND | libc::MS_REC);
            if extra != 0 {
                let fresh =
                    open_in_root(root, dest, OFlags::PATH).map_err(err("reopen mount", dest))?;
                remount(&fd_path(fresh.as_fd()), extra | libc::MS_BIND)
                    .map_err(err("remount", dest))?;
            }
        }
        MountKind::Filesystem => {
            // What the image has there: a tmpfs takes its mode (unless the options give one) and,
            // with `tmpcopyup`, a copy of its contents, as with runc.
            let shadowed = if m.fstype == "tmpfs" {
                open_in_root(root, dest, OFlags::RDONLY | OFlags::DIRECTORY).ok()
            } else {
                None
            };
            let data = match &shadowed {
                Some(dir) => {
                    let st = rustix::fs::fstat(dir).map_err(|e| err("stat", dest)(e.into()))?;
                    tmpfs_data(st.st_mode, &opts.data)
                }
                None => opts.data.clone(),
            };
            let target =
                make_in_root(root, dest, false).map_err(err("create mount point", dest))?;
            let target = fd_path(target.as_fd());
            let source = (!m.source.is_empty()).then(|| Path::new(&m.source));
            let result = mount(source, &target, Some(&m.fstype), flags, Some(&data));
            match result {
                Ok(()) => {}
                // Without its own network (or ipc) namespace the kernel refuses a new sysfs (or
                // mqueue); show the host's, as runc does.
                Err(e)
                    if e.raw_os_error() == Some(libc::EPERM)
                        && (m.fstype == "sysfs" || m.fstype == "mqueue") =>
                {
                    let host = if m.fstype == "sysfs" {
                        "/sys"
                    } else {
                        "/dev/mqueue"
                    };
                    mount(
                        Some(Path::new(host)),
                        &target,
                        None,
                        libc::MS_BIND | libc::MS_REC,
                        None,
                    )
                    .map_err(err("bind mount", dest))?;
                    let fresh = open_in_root(root, dest, OFlags::PATH)
                        .map_err(err("reopen mount", dest))?;
                    remount(&fd_path(fresh.as_fd()), flags | libc::MS_BIND)
                        .map_err(err("remount", dest))?;
                }
                Err(e) => return Err(err("mount", dest)(e)),
            }
            if let Some(shadowed) = shadowed.filter(|_| opts.copy_up) {
                let fresh = open_in_root(root, dest, OFlags::RDONLY | OFlags::DIRECTORY)
                    .map_err(err("reopen mount", dest))?;
                crate::copy_up::copy_dir_contents(shadowed.as_fd(), fresh.as_fd())
                    .map_err(err("copy the image's files into", dest))?;
            }
        }
        MountKind::Cgroup(sources) => mount_cgroups(root, dest, flags, sources, cgroupns)?,
    }
    if !opts.propagation.is_empty() || opts.recursive_set != 0 || opts.recursive_clear != 0 {
        let fresh = open_in_root(root, dest, OFlags::PATH).map_err(err("reopen mount", dest))?;
        for &p in &opts.propagation {
            mount(None, &fd_path(fresh.as_fd()), None, p, None)
                .map_err(err("set propagation", dest))?;
        }
        if opts.recursive_set != 0 || opts.recursive_clear != 0 {
            set_mount_attributes(
                fresh.as_fd(),
                opts.recursive_set,
                opts.recursive_clear,
                true,
            )
            .map_err(err("set recursive attributes", dest))?;
        }
    }
    Ok(())
}

/// A tmpfs's data with the mode of the directory it hides first, so that a `mode=` of the
/// spec's options, coming later, wins.
fn tmpfs_data(hidden_mode: u32, data: &str) -> String {
    let mode = format!("mode={:04o}", hidden_mode & 0o7777);
    if data.is_empty() {
        mode
    } else {
        format!("{mode},{data}")
    }
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locked (in a user namespace the
/// remount fails unless they are repeated).
fn remount(target: &Path, flags: u64) -> io::Result<()> {
    let flags = flags | libc::MS_REMOUNT;
    match mount(None, target, None, flags, None) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let st = rustix::fs::statvfs(target)?;
            let locked = st.f_flag.bits()
                & (libc::ST_RDONLY | libc::ST_NOSUID | libc::ST_NODEV | libc::ST_NOEXEC);
            mount(None, target, None, flags | locked, None)
        }
        other => other,
    }
}

fn mount_cgroups(
    root: BorrowedFd<'_>,
    dest: &Path,
    flags: u64,
    sources: &[CgroupMountSource],
    cgroupns: bool,
) -> Result<(), RootfsError> {
    let base = make_in_root(root, dest, false).map_err(err("create mount point", dest))?;
    if let [only] = sources {
        if only.unified {
            return mount_hierarchy(root, &fd_path(base.as_fd()), dest, flags, only, cgroupns);
        }
    }
    mount(
        Some(Path::new("tmpfs")),
        &fd_path(base.as_fd()),
        Some("tmpfs"),
        flags & !libc::MS_RDONLY,
        Some("mode=755"),
    )
    .map_err(err("mount tmpfs for cgroups", dest))?;
    for source in sources {
        let sub = dest.join(&source.name);
        let dir = make_in_root(root, &sub, false).map_err(err("create mount point", &sub))?;
        mount_hierarchy(root, &fd_path(dir.as_fd()), &sub, flags, source, cgroupns)?;
        if source.name.contains(',') {
            for single in source.name.split(',') {
                let tmpfs = open_in_root(root, dest, OFlags::PATH | OFlags::DIRECTORY)
                    .map_err(err("open", dest))?;
                match symlinkat(source.name.as_str(), &tmpfs, single) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => {
                        return Err(err("link cgroup hierarchy", dest.join(single))(e.into()))
                    }
                }
            }
        }
    }
    if flags & libc::MS_RDONLY != 0 {
        let fresh = open_in_root(root, dest, OFlags::PATH).map_err(err("reopen mount", dest))?;
        remount(&fd_path(fresh.as_fd()), flags | libc::MS_BIND).map_err(err("remount", dest))?;
    }
    Ok(())
}

fn mount_hierarchy(
    root: BorrowedFd<'_>,
    target: &Path,
    shown: &Path,
    flags: u64,
    source: &CgroupMountSource,
    cgroupns: bool,
) -> Result<(), RootfsError> {
    if cgroupns {
        let fstype = if source.unified { "cgroup2" } else { "cgroup" };
        mount(
            Some(Path::new(fstype)),
            target,
            Some(fstype),
            flags,
            Some(&source.option),
        )
        .map_err(err("mount cgroup", shown))
    } else {
        mount(
            Some(&source.host_dir),
            target,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(err("bind cgroup", shown))?;
        let fresh = open_in_root(root, shown, OFlags::PATH).map_err(err("reopen mount", shown))?;
        remount(
            &fd_path(fresh.as_fd()),
            (flags & !libc::MS_REC) | libc::MS_BIND,
        )
        .map_err(err("remount cgroup", shown))
    }
}

fn create_device(root: BorrowedFd<'_>, device: &DevicePlan) -> Result<(), RootfsError> {
    let path = Path::new(&device.path);
    let rel = relative(path);
    let parent = rel.parent().unwrap_or(Path::new("."));
    let name = rel.file_name().unwrap_or(OsStr::new("."));
    let dir = make_in_root(root, parent, false).map_err(err("create device directory", path))?;
    let dir = rustix::fs::openat(
        &dir,
        ".",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("open device directory", path)(e.into()))?;
    let _ = rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty());
    let dev = rustix::fs::makedev(
        u32::try_from(device.major).unwrap_or(0),
        u32::try_from(device.minor).unwrap_or(0),
    );
    let old = rustix::process::umask(Mode::empty());
    let made = mknodat(
        &dir,
        name,
        FileType::from_raw_mode(device.file_type),
        Mode::from_raw_mode(device.mode & 0o7777),
        dev,
    );
    rustix::process::umask(old);
    match made {
        Ok(()) => {
            rustix::fs::chownat(
                &dir,
                name,
                Some(rustix::fs::Uid::from_raw(device.uid)),
                Some(rustix::fs::Gid::from_raw(device.gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| err("chown device", path)(e.into()))?;
        }
        // In a user namespace mknod is refused: bind the host's node instead.
        Err(rustix::io::Errno::PERM) => {
            let target = make_in_root(root, path, true).map_err(err("create device", path))?;
            mount(
                Some(path),
                &fd_path(target.as_fd()),
                None,
                libc::MS_BIND,
                None,
            )
            .map_err(err("bind device", path))?;
        }
        Err(e) => return Err(err("create device", path)(e.into())),
    }
    Ok(())
}

fn default_links(root: BorrowedFd<'_>, plan: &RootfsPlan) -> Result<(), RootfsError> {
    let dev = match open_in_root(root, Path::new("/dev"), OFlags::DIRECTORY | OFlags::RDONLY) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err("open", "/dev")(e)),
    };
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    if plan.mounts.iter().any(|m| m.destination == "/dev/pts") {
        let _ = rustix::fs::unlinkat(&dev, "ptmx", rustix::fs::AtFlags::empty());
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        match symlinkat(target, &dev, name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(err("create link", Path::new("/dev").join(name))(e.into())),
        }
    }
    Ok(())
}

/// Makes the prepared root the process's root: `pivot_root` (or `MS_MOVE` + `chroot`), then detaches
/// the old root.
pub(crate) fn enter(root: OwnedFd, plan: &RootfsPlan) -> Result<(), RootfsError> {
    rustix::process::fchdir(&root).map_err(|e| err("enter rootfs", &plan.root)(e.into()))?;
    if plan.no_pivot {
        mount(
            Some(Path::new(".")),
            Path::new("/"),
            None,
            libc::MS_MOVE,
            None,
        )
        .map_err(err("move rootfs", &plan.root))?;
        rustix::process::chroot(".").map_err(|e| err("chroot", &plan.root)(e.into()))?;
    } else {
        rustix::process::pivot_root(".", ".")
            .map_err(|e| err("pivot_root", &plan.root)(e.into()))?;
        // The old root now sits on top of the new one at "."; keep its unmount from propagating.
        mount(
            None,
            Path::new("."),
            None,
            libc::MS_SLAVE | libc::MS_REC,
            None,
        )
        .map_err(err("make old root private", "/"))?;
        rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| err("detach old root", "/")(e.into()))?;
    }
    rustix::process::chdir("/").map_err(|e| err("chdir", "/")(e.into()))
}

/// Masked and read-only paths and the read-only root, applied after `pivot_root`.
pub(crate) fn finish(plan: &RootfsPlan) -> Result<(), RootfsError> {
    for path in &plan.readonly_paths {
        let p = Path::new(path);
        match mount(Some(p), p, None, libc::MS_BIND | libc::MS_REC, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err("bind read-only path", p)(e)),
        }
        remount(
            p,
            libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        )
        .map_err(err("remount read-only path", p))?;
    }
    for path in &plan.masked_paths {
        let p = Path::new(path);
        let meta = match std::fs::metadata(p) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err("stat masked path", p)(e)),
        };
        let result = if meta.is_dir() {
            mount(
                Some(Path::new("tmpfs")),
                p,
                Some("tmpfs"),
                libc::MS_RDONLY,
                None,
            )
        } else {
            mount(Some(Path::new("/dev/null")), p, None, libc::MS_BIND, None)
        };
        result.map_err(err("mask path", p))?;
    }
    if plan.readonly {
        remount(Path::new("/"), libc::MS_BIND | libc::MS_RDONLY)
            .map_err(err("remount / read-only", "/"))?;
    }
    Ok(())
}

/// Creates `/dev/console` (if missing) and binds the terminal `pts` onto it.
pub(crate) fn bind_console(pts: &Path) -> Result<(), RootfsError> {
    let console = Path::new("/dev/console");
    if std::fs::symlink_metadata(console).is_err() {
        std::fs::File::create(console).map_err(err("create", console))?;
    }
    mount(Some(pts), console, None, libc::MS_BIND, None).map_err(err("bind console", console))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tmpfs_takes_the_hidden_mode_unless_its_options_give_one() {
        assert_eq!(tmpfs_data(0o41777, ""), "mode=1777");
        assert_eq!(
            tmpfs_data(0o40755, "size=64k,mode=700"),
            "mode=0755,size=64k,mode=700"
        );
    }
}
