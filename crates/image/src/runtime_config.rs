//! The image config turned into the OCI runtime spec, as the image spec's conversion document
//! says and as docker, podman and containerd do: process args, environment, working directory
//! and user, plus the implicit annotations; the fields the runtime spec has no place for
//! (volumes, exposed ports, labels, stop signal) are returned to the caller.
//!
//! Names in `Config.User` are looked up in the image's own `/etc/passwd` and `/etc/group`. The
//! image is untrusted, so those files are opened with `openat2(RESOLVE_IN_ROOT)` from a
//! descriptor of the root filesystem (a symlink `/etc/passwd -> /etc/shadow` resolves to the
//! image's file, never the host's), must be regular files (an image could make it a device node,
//! and opening some devices has effects), and are read up to [`MAX_ACCOUNT_FILE_BYTES`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::image::{Config, ImageConfiguration};
use oci_spec::runtime::{Process, Spec, User};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The `PATH` set when neither the image nor the overrides give one (docker's and containerd's).
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The largest `/etc/passwd` or `/etc/group` read from an image.
pub const MAX_ACCOUNT_FILE_BYTES: u64 = 1 << 20;

/// The annotation carrying the image's stop signal (image spec, conversion.md).
pub const STOP_SIGNAL_ANNOTATION: &str = "org.opencontainers.image.stopSignal";

/// The annotation listing the image's exposed ports, comma-separated (image spec, conversion.md).
pub const EXPOSED_PORTS_ANNOTATION: &str = "org.opencontainers.image.exposedPorts";

/// What the caller changes relative to the image config (`docker run`'s flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessOverrides {
    /// Replaces the image's Entrypoint; a non-empty one also drops the image's Cmd.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's Cmd (an empty list counts as not given, as in docker).
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` entries that replace the image's entries of the same key or are added.
    pub env: Vec<String>,
    /// Replaces the image's WorkingDir; must be absolute.
    pub working_dir: Option<String>,
    /// Replaces the image's User: `name`, `uid`, `name:group`, `uid:gid` and mixes.
    pub user: Option<String>,
}

/// The parts of the image config that the runtime spec has no field for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRuntimeInfo {
    /// `StopSignal` as written (`SIGQUIT`, `15`).
    pub stop_signal: Option<String>,
    /// `Volumes`: container paths that should get a volume, sorted.
    pub volumes: Vec<String>,
    /// `ExposedPorts` (`80/tcp`), sorted.
    pub exposed_ports: Vec<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
}

/// Why the image config could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeConfigError {
    /// Neither the image nor the overrides give a command.
    #[error("no command: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    /// The working directory is not absolute.
    #[error("working directory {dir:?} is not absolute")]
    RelativeWorkingDir {
        /// The directory as given.
        dir: String,
    },
    /// An environment entry without `=` or with an empty name.
    #[error("environment entry {entry:?} is not NAME=value")]
    InvalidEnv {
        /// The entry.
        entry: String,
    },
    /// The root filesystem could not be opened.
    #[error("cannot open root filesystem {rootfs}")]
    OpenRootfs {
        /// The root filesystem.
        rootfs: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `/etc/passwd` or `/etc/group` exists but could not be read.
    #[error("cannot read {file} in {rootfs}")]
    ReadAccountFile {
        /// The root filesystem.
        rootfs: PathBuf,
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `/etc/passwd` or `/etc/group` is not a regular file.
    #[error("{file} in {rootfs} is not a regular file")]
    AccountFileNotRegular {
        /// The root filesystem.
        rootfs: PathBuf,
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
    },
    /// `/etc/passwd` or `/etc/group` is over [`MAX_ACCOUNT_FILE_BYTES`].
    #[error("{file} in {rootfs} is over {MAX_ACCOUNT_FILE_BYTES} bytes")]
    AccountFileTooLarge {
        /// The root filesystem.
        rootfs: PathBuf,
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
    },
    /// A user name that the image's `/etc/passwd` does not have.
    #[error("user {user:?} not found in {}/etc/passwd", rootfs.display())]
    UnknownUser {
        /// The user name.
        user: String,
        /// The root filesystem.
        rootfs: PathBuf,
    },
    /// A group name that the image's `/etc/group` does not have.
    #[error("group {group:?} not found in {}/etc/group", rootfs.display())]
    UnknownGroup {
        /// The group name.
        group: String,
        /// The root filesystem.
        rootfs: PathBuf,
    },
}

/// Applies `config` (with `overrides`) to `spec`: `process.args`, `env`, `cwd` and `user`, and
/// the implicit annotations of conversion.md (os, architecture, author, created, stop signal,
/// exposed ports, …, then the image's labels, which take precedence over them; annotations
/// already in `spec` are the caller's and are kept). Other process fields are left as they are.
///
/// The environment is the spec's, then the image's, then the overrides', a later entry replacing
/// an earlier one of the same name; `PATH` defaults to [`DEFAULT_PATH_ENV`] and `HOME` to the
/// user's home directory (else `/`), as docker does. The user's supplementary groups from the
/// image are added to any `additionalGids` the spec already has.
///
/// Nothing is written anywhere but `spec`, and `spec` is untouched when an error is returned.
pub fn apply_image_config(
    spec: &mut Spec,
    config: &ImageConfiguration,
    rootfs: &Path,
    overrides: &ProcessOverrides,
) -> Result<ImageRuntimeInfo, RuntimeConfigError> {
    let empty = Config::default();
    let image = config.config().as_ref().unwrap_or(&empty);
    let args = process_args(image.entrypoint(), image.cmd(), overrides)?;
    let cwd = working_dir(image.working_dir().as_deref(), overrides)?;
    let user_spec = overrides
        .user
        .as_deref()
        .or(image.user().as_deref())
        .unwrap_or("");
    let accounts = Accounts::read(rootfs)?;
    let user = resolve_user(user_spec, &accounts).map_err(|missing| match missing {
        Missing::User(user) => RuntimeConfigError::UnknownUser {
            user,
            rootfs: rootfs.to_owned(),
        },
        Missing::Group(group) => RuntimeConfigError::UnknownGroup {
            group,
            rootfs: rootfs.to_owned(),
        },
    })?;

    let mut process = spec.process().clone().unwrap_or_default();
    let base_env = process.env().clone().unwrap_or_default();
    let image_env = image.env().clone().unwrap_or_default();
    let mut env = merge_env([&base_env, &image_env, &overrides.env])?;
    if !has_var(&env, "PATH") {
        env.push(DEFAULT_PATH_ENV.to_owned());
    }
    if !has_var(&env, "HOME") {
        env.push(format!("HOME={}", user.home));
    }
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    set_user(&mut process, &user);
    spec.set_process(Some(process));

    let info = runtime_info(image);
    let mut annotations = image_annotations(config, &info);
    if let Some(existing) = spec.annotations() {
        annotations.extend(existing.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    spec.set_annotations(Some(annotations.into_iter().collect()));
    Ok(info)
}

fn set_user(process: &mut Process, user: &ResolvedUser) {
    let mut spec_user = User::default();
    spec_user.set_uid(user.uid);
    spec_user.set_gid(user.gid);
    spec_user.set_umask(process.user().umask());
    // The caller's additional gids (`--group-add`) stay; the image's groups are added to them.
    let mut gids = process.user().additional_gids().clone().unwrap_or_default();
    for gid in &user.additional_gids {
        if !gids.contains(gid) {
            gids.push(*gid);
        }
    }
    spec_user.set_additional_gids((!gids.is_empty()).then_some(gids));
    process.set_user(spec_user);
}

/// Docker's rules: an overriding entrypoint replaces the image's and, when non-empty, drops the
/// image's Cmd; an overriding cmd replaces the image's Cmd.
fn process_args(
    image_entrypoint: &Option<Vec<String>>,
    image_cmd: &Option<Vec<String>>,
    overrides: &ProcessOverrides,
) -> Result<Vec<String>, RuntimeConfigError> {
    let cmd_override = overrides.cmd.as_ref().filter(|c| !c.is_empty());
    let (entrypoint, cmd) = match (&overrides.entrypoint, cmd_override) {
        (Some(entrypoint), Some(cmd)) => (entrypoint.clone(), cmd.clone()),
        (Some(entrypoint), None) if !entrypoint.is_empty() => (entrypoint.clone(), Vec::new()),
        (Some(_), None) => (Vec::new(), image_cmd.clone().unwrap_or_default()),
        (None, Some(cmd)) => (image_entrypoint.clone().unwrap_or_default(), cmd.clone()),
        (None, None) => (
            image_entrypoint.clone().unwrap_or_default(),
            image_cmd.clone().unwrap_or_default(),
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(RuntimeConfigError::NoCommand);
    }
    Ok(args)
}

fn working_dir<'a>(
    image: Option<&'a str>,
    overrides: &'a ProcessOverrides,
) -> Result<&'a str, RuntimeConfigError> {
    let dir = overrides
        .working_dir
        .as_deref()
        .or(image)
        .filter(|d| !d.is_empty())
        .unwrap_or("/");
    if !dir.starts_with('/') {
        return Err(RuntimeConfigError::RelativeWorkingDir {
            dir: dir.to_owned(),
        });
    }
    Ok(dir)
}

/// Concatenates environment lists, a later entry replacing an earlier one of the same name in
/// place (so the image's order is kept).
fn merge_env<'a>(
    layers: impl IntoIterator<Item = &'a Vec<String>>,
) -> Result<Vec<String>, RuntimeConfigError> {
    let mut merged: Vec<String> = Vec::new();
    for entry in layers.into_iter().flatten() {
        let name = match entry.split_once('=') {
            Some((name, _)) if !name.is_empty() => name,
            _ => {
                return Err(RuntimeConfigError::InvalidEnv {
                    entry: entry.clone(),
                })
            }
        };
        match merged
            .iter_mut()
            .find(|e| e.split_once('=').is_some_and(|(n, _)| n == name))
        {
            Some(existing) => existing.clone_from(entry),
            None => merged.push(entry.clone()),
        }
    }
    Ok(merged)
}

fn has_var(env: &[String], name: &str) -> bool {
    env.iter()
        .any(|e| e.split_once('=').is_some_and(|(n, _)| n == name))
}

fn runtime_info(image: &Config) -> ImageRuntimeInfo {
    let sorted = |list: &Option<Vec<String>>| {
        let mut list = list.clone().unwrap_or_default();
        list.sort();
        list.dedup();
        list
    };
    ImageRuntimeInfo {
        stop_signal: image.stop_signal().clone().filter(|s| !s.is_empty()),
        volumes: sorted(image.volumes()),
        exposed_ports: sorted(image.exposed_ports()),
        labels: image
            .labels()
            .as_ref()
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    }
}

/// conversion.md's implicit annotations, overridden by the image's labels.
fn image_annotations(
    config: &ImageConfiguration,
    info: &ImageRuntimeInfo,
) -> BTreeMap<String, String> {
    let key = |name: &str| format!("org.opencontainers.image.{name}");
    let mut annotations = BTreeMap::new();
    annotations.insert(key("os"), config.os().to_string());
    annotations.insert(key("architecture"), config.architecture().to_string());
    let optional = [
        ("variant", config.variant().clone()),
        ("os.version", config.os_version().clone()),
        (
            "os.features",
            config.os_features().as_ref().map(|f| f.join(",")),
        ),
        ("author", config.author().clone()),
        ("created", config.created().clone()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            annotations.insert(key(name), value);
        }
    }
    if let Some(signal) = &info.stop_signal {
        annotations.insert(STOP_SIGNAL_ANNOTATION.to_owned(), signal.clone());
    }
    if !info.exposed_ports.is_empty() {
        annotations.insert(
            EXPOSED_PORTS_ANNOTATION.to_owned(),
            info.exposed_ports.join(","),
        );
    }
    annotations.extend(info.labels.clone());
    annotations
}

/// A resolved `Config.User`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResolvedUser {
    uid: u32,
    gid: u32,
    additional_gids: Vec<u32>,
    home: String,
}

/// A name that the image's account files do not have.
#[derive(Debug, PartialEq, Eq)]
enum Missing {
    User(String),
    Group(String),
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The image's `/etc/passwd` and `/etc/group`, parsed (lines that do not parse are skipped, as
/// libc does).
struct Accounts {
    passwd: Vec<PasswdEntry>,
    groups: Vec<GroupEntry>,
}

impl Accounts {
    fn read(rootfs: &Path) -> Result<Accounts, RuntimeConfigError> {
        let root = rustix::fs::open(
            rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RuntimeConfigError::OpenRootfs {
            rootfs: rootfs.to_owned(),
            source: e.into(),
        })?;
        let passwd = read_in_root(&root, rootfs, "/etc/passwd")?;
        let group = read_in_root(&root, rootfs, "/etc/group")?;
        Ok(Accounts::parse(&passwd, &group))
    }

    fn parse(passwd: &str, group: &str) -> Accounts {
        let fields = |line: &str| -> Vec<String> { line.split(':').map(str::to_owned).collect() };
        let passwd = passwd
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|line| {
                let f = fields(line);
                Some(PasswdEntry {
                    name: f.first().filter(|n| !n.is_empty())?.clone(),
                    uid: f.get(2)?.parse().ok()?,
                    gid: f.get(3)?.parse().ok()?,
                    home: f.get(5).cloned().unwrap_or_default(),
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|line| {
                let f = fields(line);
                Some(GroupEntry {
                    name: f.first().filter(|n| !n.is_empty())?.clone(),
                    gid: f.get(2)?.parse().ok()?,
                    members: f
                        .get(3)
                        .map(|m| {
                            m.split(',')
                                .filter(|m| !m.is_empty())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })
            .collect();
        Accounts { passwd, groups }
    }
}

/// Reads `file` (absolute inside the image) with every path component resolved inside `root`.
/// A missing file reads as empty: an image without `/etc/passwd` can still run as a numeric uid.
fn read_in_root(
    root: &OwnedFd,
    rootfs: &Path,
    file: &'static str,
) -> Result<String, RuntimeConfigError> {
    let read_error = |e: io::Error| RuntimeConfigError::ReadAccountFile {
        rootfs: rootfs.to_owned(),
        file,
        source: e,
    };
    // O_PATH: nothing is opened for reading until fstat has shown a regular file.
    let flags = OFlags::PATH | OFlags::CLOEXEC;
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let mut attempts = 0;
    let located = loop {
        match rustix::fs::openat2(
            root,
            file.trim_start_matches('/'),
            flags,
            Mode::empty(),
            resolve,
        ) {
            // The kernel asks for a retry when a rename raced the resolution.
            Err(Errno::AGAIN) if attempts < 8 => attempts += 1,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(String::new()),
            other => break other.map_err(|e| read_error(e.into()))?,
        }
    };
    let stat = rustix::fs::fstat(&located).map_err(|e| read_error(e.into()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(RuntimeConfigError::AccountFileNotRegular {
            rootfs: rootfs.to_owned(),
            file,
        });
    }
    // Reopening through /proc/self/fd opens exactly the inode checked above.
    let reopened = rustix::fs::open(
        format!("/proc/self/fd/{}", located.as_raw_fd()),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| read_error(e.into()))?;
    let mut bytes = Vec::new();
    File::from(reopened)
        .take(MAX_ACCOUNT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_ACCOUNT_FILE_BYTES {
        return Err(RuntimeConfigError::AccountFileTooLarge {
            rootfs: rootfs.to_owned(),
            file,
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Resolves `user[:group]` as runc's `GetExecUser` does, with conversion.md's rule for
/// supplementary groups: they are the groups listing the user by name, and are only added when
/// the user was given by name (or not at all, meaning root) and no group was given.
fn resolve_user(spec: &str, accounts: &Accounts) -> Result<ResolvedUser, Missing> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group).filter(|g| !g.is_empty())),
        None => (spec, None),
    };
    let numeric_uid: Option<u32> = if user.is_empty() {
        Some(0)
    } else {
        user.parse().ok()
    };
    let entry = accounts
        .passwd
        .iter()
        .find(|p| (!user.is_empty() && p.name == user) || Some(p.uid) == numeric_uid);
    let (uid, mut gid, home) = match (entry, numeric_uid) {
        (Some(p), _) => (p.uid, p.gid, p.home.clone()),
        (None, Some(uid)) => (uid, 0, String::new()),
        (None, None) => return Err(Missing::User(user.to_owned())),
    };
    let home = if home.is_empty() {
        "/".to_owned()
    } else {
        home
    };
    let mut additional_gids = Vec::new();
    if let Some(group) = group {
        let numeric_gid: Option<u32> = group.parse().ok();
        gid = match accounts
            .groups
            .iter()
            .find(|g| g.name == group || Some(g.gid) == numeric_gid)
        {
            Some(g) => g.gid,
            None => numeric_gid.ok_or_else(|| Missing::Group(group.to_owned()))?,
        };
    } else if let Some(p) = entry.filter(|_| user.parse::<u32>().is_err()) {
        for g in accounts
            .groups
            .iter()
            .filter(|g| g.members.contains(&p.name))
        {
            if !additional_gids.contains(&g.gid) {
                additional_gids.push(g.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn args(
        entrypoint: Option<&[&str]>,
        cmd: Option<&[&str]>,
        overrides: &ProcessOverrides,
    ) -> Result<Vec<String>, RuntimeConfigError> {
        process_args(&entrypoint.map(strings), &cmd.map(strings), overrides)
    }

    #[test]
    fn args_are_the_entrypoint_then_the_cmd() {
        let none = ProcessOverrides::default();
        let ep: &[&str] = &["/entry", "-x"];
        let cmd: &[&str] = &["serve"];
        assert_eq!(
            args(Some(ep), Some(cmd), &none).unwrap(),
            ["/entry", "-x", "serve"]
        );
        assert_eq!(args(None, Some(cmd), &none).unwrap(), ["serve"]);
        assert_eq!(args(Some(ep), None, &none).unwrap(), ["/entry", "-x"]);
        assert!(matches!(
            args(None, None, &none),
            Err(RuntimeConfigError::NoCommand)
        ));
        assert!(matches!(
            args(Some(&[]), Some(&[]), &none),
            Err(RuntimeConfigError::NoCommand)
        ));
    }

    #[test]
    fn an_overriding_cmd_keeps_the_image_entrypoint() {
        let o = ProcessOverrides {
            cmd: Some(strings(&["other"])),
            ..Default::default()
        };
        assert_eq!(
            args(Some(&["/entry"]), Some(&["serve"]), &o).unwrap(),
            ["/entry", "other"]
        );
        let empty_cmd = ProcessOverrides {
            cmd: Some(Vec::new()),
            ..Default::default()
        };
        assert_eq!(
            args(Some(&["/entry"]), Some(&["serve"]), &empty_cmd).unwrap(),
            ["/entry", "serve"]
        );
    }

    #[test]
    fn an_overriding_entrypoint_clears_the_image_cmd_unless_cmd_is_given() {
        let ep_only = ProcessOverrides {
            entrypoint: Some(strings(&["/bin/sh"])),
            ..Default::default()
        };
        assert_eq!(
            args(Some(&["/entry"]), Some(&["serve"]), &ep_only).unwrap(),
            ["/bin/sh"]
        );
        let both = ProcessOverrides {
            entrypoint: Some(strings(&["/bin/sh"])),
            cmd: Some(strings(&["-c", "true"])),
            ..Default::default()
        };
        assert_eq!(
            args(Some(&["/entry"]), Some(&["serve"]), &both).unwrap(),
            ["/bin/sh", "-c", "true"]
        );
        // docker: `--entrypoint ""` resets the entrypoint and keeps the image's Cmd.
        let reset = ProcessOverrides {
            entrypoint: Some(Vec::new()),
            ..Default::default()
        };
        assert_eq!(
            args(Some(&["/entry"]), Some(&["serve"]), &reset).unwrap(),
            ["serve"]
        );
    }

    #[test]
    fn overrides_replace_env_entries_of_the_same_name_in_place() {
        let base = strings(&["TERM=xterm"]);
        let image = strings(&["PATH=/opt/bin", "A=1", "B=2"]);
        let extra = strings(&["A=override", "C=3", "EMPTY="]);
        let merged = merge_env([&base, &image, &extra]).unwrap();
        assert_eq!(
            merged,
            [
                "TERM=xterm",
                "PATH=/opt/bin",
                "A=override",
                "B=2",
                "C=3",
                "EMPTY="
            ]
        );
        for bad in ["NOVALUE", "=x"] {
            let err = merge_env([&strings(&[bad])]).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn the_working_dir_defaults_to_root_and_must_be_absolute() {
        let none = ProcessOverrides::default();
        assert_eq!(working_dir(None, &none).unwrap(), "/");
        assert_eq!(working_dir(Some(""), &none).unwrap(), "/");
        assert_eq!(working_dir(Some("/srv"), &none).unwrap(), "/srv");
        let o = ProcessOverrides {
            working_dir: Some("/tmp".to_owned()),
            ..Default::default()
        };
        assert_eq!(working_dir(Some("/srv"), &o).unwrap(), "/tmp");
        let err = working_dir(Some("srv"), &none).unwrap_err();
        assert_eq!(err.to_string(), "working directory \"srv\" is not absolute");
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/sbin/nologin\n\
        broken line\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        nohome:x:1001:100::\n";
    const GROUP: &str = "root:x:0:root\n\
        bin:x:1:root,bin,daemon\n\
        users:x:100:\n\
        app:x:1000:\n\
        docker:x:999:app,other\n\
        audio:x:29:other,app\n";

    fn resolve(spec: &str) -> Result<ResolvedUser, Missing> {
        resolve_user(spec, &Accounts::parse(PASSWD, GROUP))
    }

    fn user(uid: u32, gid: u32, additional_gids: &[u32], home: &str) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: additional_gids.to_vec(),
            home: home.to_owned(),
        }
    }

    #[test]
    fn a_user_name_resolves_with_its_supplementary_groups() {
        assert_eq!(
            resolve("app").unwrap(),
            user(1000, 1000, &[999, 29], "/home/app")
        );
        assert_eq!(resolve("daemon").unwrap(), user(1, 1, &[1], "/usr/sbin"));
        assert_eq!(resolve("nohome").unwrap(), user(1001, 100, &[], "/"));
    }

    #[test]
    fn no_user_means_root_with_roots_groups() {
        assert_eq!(resolve("").unwrap(), user(0, 0, &[0, 1], "/root"));
        assert_eq!(
            resolve_user("", &Accounts::parse("", "")).unwrap(),
            user(0, 0, &[], "/")
        );
    }

    #[test]
    fn a_numeric_uid_is_taken_verbatim_without_supplementary_groups() {
        assert_eq!(resolve("1000").unwrap(), user(1000, 1000, &[], "/home/app"));
        assert_eq!(resolve("4242").unwrap(), user(4242, 0, &[], "/"));
        assert_eq!(resolve("4242:77").unwrap(), user(4242, 77, &[], "/"));
    }

    #[test]
    fn an_explicit_group_sets_the_gid_and_no_supplementary_groups() {
        assert_eq!(
            resolve("app:docker").unwrap(),
            user(1000, 999, &[], "/home/app")
        );
        assert_eq!(resolve("app:29").unwrap(), user(1000, 29, &[], "/home/app"));
        assert_eq!(
            resolve("1000:users").unwrap(),
            user(1000, 100, &[], "/home/app")
        );
        assert_eq!(
            resolve("app:").unwrap(),
            user(1000, 1000, &[999, 29], "/home/app")
        );
        assert_eq!(resolve(":bin").unwrap(), user(0, 1, &[], "/root"));
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        assert_eq!(
            resolve("nobody").unwrap_err(),
            Missing::User("nobody".to_owned())
        );
        assert_eq!(
            resolve("app:wheel").unwrap_err(),
            Missing::Group("wheel".to_owned())
        );
        assert_eq!(
            resolve("99999999999").unwrap_err(),
            Missing::User("99999999999".to_owned())
        );
    }

    #[test]
    fn arbitrary_account_files_never_panic_the_parser() {
        let mut seed = 0x853c_49e6_748f_ea9b_u64;
        let alphabet = b"ab0123:,\n#x/";
        for _ in 0..300 {
            let text: String = (0..200)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(alphabet[usize::try_from(seed % 12).unwrap()])
                })
                .collect();
            let accounts = Accounts::parse(&text, &text);
            for spec in ["", "a", "0", "a:b", "1:a", "ab:0"] {
                let _ = resolve_user(spec, &accounts);
            }
        }
    }
}
