//! `apply_image_config` against real root filesystem directories: the image config lands in the
//! spec, and `/etc/passwd` and `/etc/group` are read inside the rootfs only.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use oci_spec::runtime::Spec;
use testudo_image::manifest::parse_config;
use testudo_image::runtime_config::{
    apply_image_config, ImageRuntimeInfo, ProcessOverrides, RuntimeConfigError, DEFAULT_PATH_ENV,
    MAX_ACCOUNT_FILE_BYTES, STOP_SIGNAL_ANNOTATION,
};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:root\napp:x:1000:\nwheel:x:10:app\n";

fn config(user: &str) -> oci_spec::image::ImageConfiguration {
    let json = format!(
        r#"{{"architecture": "amd64", "os": "linux", "author": "someone",
            "config": {{"User": "{user}", "Env": ["PATH=/opt/bin:/bin", "LANG=C"],
                "Entrypoint": ["/entry"], "Cmd": ["serve", "--port=80"], "WorkingDir": "/srv",
                "StopSignal": "SIGQUIT", "Volumes": {{"/data": {{}}, "/cache": {{}}}},
                "ExposedPorts": {{"8080/tcp": {{}}, "53/udp": {{}}}},
                "Labels": {{"org.example.role": "web", "org.opencontainers.image.author": "label"}}}},
            "rootfs": {{"type": "layers", "diff_ids": []}}}}"#
    );
    parse_config(json.as_bytes()).unwrap()
}

fn rootfs_with(passwd: &str, group: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("etc")).unwrap();
    fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
    fs::write(dir.path().join("etc/group"), group).unwrap();
    dir
}

fn apply(
    rootfs: &Path,
    user: &str,
    overrides: &ProcessOverrides,
) -> Result<(Spec, ImageRuntimeInfo), RuntimeConfigError> {
    let mut spec = Spec::default();
    let info = apply_image_config(&mut spec, &config(user), rootfs, overrides)?;
    Ok((spec, info))
}

#[test]
fn the_image_config_becomes_the_process_and_annotations() {
    let rootfs = rootfs_with(PASSWD, GROUP);
    let (spec, info) = apply(rootfs.path(), "app", &ProcessOverrides::default()).unwrap();
    let process = spec.process().as_ref().unwrap();
    assert_eq!(
        process.args().as_ref().unwrap(),
        &["/entry", "serve", "--port=80"]
    );
    assert_eq!(process.cwd().to_str(), Some("/srv"));
    let env = process.env().as_ref().unwrap();
    // Spec::default's PATH is replaced by the image's; its TERM stays; HOME comes from passwd.
    assert_eq!(
        env,
        &[
            "PATH=/opt/bin:/bin",
            "TERM=xterm",
            "LANG=C",
            "HOME=/home/app"
        ]
    );
    let user = process.user();
    assert_eq!((user.uid(), user.gid()), (1000, 1000));
    assert_eq!(user.additional_gids().as_deref(), Some(&[10][..]));

    assert_eq!(info.stop_signal.as_deref(), Some("SIGQUIT"));
    assert_eq!(info.volumes, ["/cache", "/data"]);
    assert_eq!(info.exposed_ports, ["53/udp", "8080/tcp"]);
    assert_eq!(info.labels["org.example.role"], "web");

    let annotations = spec.annotations().as_ref().unwrap();
    assert_eq!(annotations[STOP_SIGNAL_ANNOTATION], "SIGQUIT");
    assert_eq!(
        annotations["org.opencontainers.image.exposedPorts"],
        "53/udp,8080/tcp"
    );
    assert_eq!(annotations["org.opencontainers.image.os"], "linux");
    assert_eq!(
        annotations["org.opencontainers.image.architecture"],
        "amd64"
    );
    assert_eq!(annotations["org.example.role"], "web");
    // A label wins over the implicit annotation of the same key (conversion.md).
    assert_eq!(annotations["org.opencontainers.image.author"], "label");
}

#[test]
fn overrides_win_and_a_missing_path_gets_the_default() {
    let rootfs = rootfs_with(PASSWD, GROUP);
    let json = r#"{"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": []}}"#;
    let overrides = ProcessOverrides {
        entrypoint: Some(vec!["/bin/echo".to_owned()]),
        cmd: None,
        env: vec!["HOME=/custom".to_owned()],
        working_dir: Some("/tmp".to_owned()),
        user: Some("1000:10".to_owned()),
    };
    let mut spec = Spec::default();
    spec.set_process(Some(oci_spec::runtime::Process::default()));
    let mut process = spec.process().clone().unwrap();
    process.set_env(None);
    process.user_mut().set_additional_gids(Some(vec![5]));
    spec.set_process(Some(process));
    apply_image_config(
        &mut spec,
        &parse_config(json.as_bytes()).unwrap(),
        rootfs.path(),
        &overrides,
    )
    .unwrap();
    let process = spec.process().as_ref().unwrap();
    assert_eq!(process.args().as_ref().unwrap(), &["/bin/echo"]);
    assert_eq!(process.cwd().to_str(), Some("/tmp"));
    assert_eq!(
        process.env().as_ref().unwrap(),
        &["HOME=/custom", DEFAULT_PATH_ENV]
    );
    assert_eq!((process.user().uid(), process.user().gid()), (1000, 10));
    // The caller's gid stays; an explicit group adds none from /etc/group.
    assert_eq!(process.user().additional_gids().as_deref(), Some(&[5][..]));
}

#[test]
fn a_user_missing_from_the_image_passwd_is_an_error_naming_it() {
    let rootfs = rootfs_with(PASSWD, GROUP);
    let err = apply(rootfs.path(), "ghost", &ProcessOverrides::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "user \"ghost\" not found in {}/etc/passwd",
            rootfs.path().display()
        )
    );
    let mut spec = Spec::default();
    let overrides = ProcessOverrides {
        user: Some("app:nogroup".to_owned()),
        ..Default::default()
    };
    let err = apply_image_config(&mut spec, &config("app"), rootfs.path(), &overrides).unwrap_err();
    assert_eq!(spec, Spec::default(), "a failed apply changed the spec");
    assert!(
        err.to_string().contains("group \"nogroup\" not found"),
        "{err}"
    );
}

#[test]
fn a_numeric_uid_runs_without_any_account_files() {
    let rootfs = tempfile::tempdir().unwrap();
    let (spec, _) = apply(rootfs.path(), "4242", &ProcessOverrides::default()).unwrap();
    let user = spec.process().as_ref().unwrap().user();
    assert_eq!((user.uid(), user.gid()), (4242, 0));
    assert!(apply(rootfs.path(), "app", &ProcessOverrides::default()).is_err());
}

#[test]
fn a_symlinked_passwd_resolves_inside_the_rootfs_not_on_the_host() {
    let outside = tempfile::tempdir().unwrap();
    let host_passwd = outside.path().join("passwd");
    fs::write(&host_passwd, "intruder:x:4242:4242::/:/bin/sh\n").unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    fs::create_dir(rootfs.path().join("etc")).unwrap();
    let depth = rootfs.path().components().count();
    let relative_escape = format!("{}{}", "../".repeat(depth + 2), host_passwd.display());
    for target in [host_passwd.display().to_string(), relative_escape] {
        let link = rootfs.path().join("etc/passwd");
        let _ = fs::remove_file(&link);
        symlink(&target, &link).unwrap();
        let err = apply(rootfs.path(), "intruder", &ProcessOverrides::default()).unwrap_err();
        assert!(
            matches!(err, RuntimeConfigError::UnknownUser { .. }),
            "{target}: {err}"
        );
    }
    // The same absolute target, recreated inside the rootfs, is what the link reaches.
    let inside = rootfs.path().join(host_passwd.strip_prefix("/").unwrap());
    fs::create_dir_all(inside.parent().unwrap()).unwrap();
    fs::write(&inside, "intruder:x:77:78::/home/i:/bin/sh\n").unwrap();
    let link = rootfs.path().join("etc/passwd");
    fs::remove_file(&link).unwrap();
    symlink(&host_passwd, &link).unwrap();
    let (spec, _) = apply(rootfs.path(), "intruder", &ProcessOverrides::default()).unwrap();
    let user = spec.process().as_ref().unwrap().user();
    assert_eq!((user.uid(), user.gid()), (77, 78));
}

#[test]
fn a_passwd_that_is_not_a_regular_file_is_refused() {
    let rootfs = rootfs_with("", GROUP);
    let passwd = rootfs.path().join("etc/passwd");
    fs::remove_file(&passwd).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &passwd,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let err = apply(rootfs.path(), "app", &ProcessOverrides::default()).unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeConfigError::AccountFileNotRegular {
                file: "/etc/passwd",
                ..
            }
        ),
        "{err}"
    );
    fs::remove_file(&passwd).unwrap();
    fs::create_dir(&passwd).unwrap();
    let err = apply(rootfs.path(), "app", &ProcessOverrides::default()).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn an_oversized_group_file_is_refused() {
    let big = "g:x:1:app\n".repeat(usize::try_from(MAX_ACCOUNT_FILE_BYTES).unwrap() / 10 + 1);
    let rootfs = rootfs_with(PASSWD, &big);
    let err = apply(rootfs.path(), "app", &ProcessOverrides::default()).unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeConfigError::AccountFileTooLarge {
                file: "/etc/group",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_missing_rootfs_is_an_error_naming_it() {
    let err = apply(
        Path::new("/nonexistent/rootfs"),
        "",
        &ProcessOverrides::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot open root filesystem /nonexistent/rootfs"
    );
}
