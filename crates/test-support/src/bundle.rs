//! OCI bundles for tests: a busybox rootfs and a `config.json` built from runc's default spec.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use tempfile::TempDir;

use crate::rootfs::BusyboxRootfs;
use crate::runtime::unique_id;

/// The parent of every cgroup that the harness's containers get, so that [`LeakCheck`] only
/// has to look there.
///
/// [`LeakCheck`]: crate::LeakCheck
pub const CGROUP_PARENT: &str = "/testudo-test";

/// What `runc spec` (runc 1.1) prints, verbatim.
const RUNC_SPEC: &str = include_str!("runc-spec.json");

/// A bundle in a temporary directory (removed on drop): `rootfs/` holding a [`BusyboxRootfs`],
/// and a spec that [`write`](Self::write) serialises to `config.json`.
///
/// The spec starts as `runc spec`'s default with `process.terminal = false` and the cgroups path
/// `/testudo-test/<id>`, where [`id`](Self::id) is unique, so tests running in parallel never
/// share a cgroup. Using that id as the container id too lets [`LeakCheck`](crate::LeakCheck)
/// find everything the container left.
///
/// ```no_run
/// use testudo_test_support::Bundle;
///
/// let bundle = Bundle::new()
///     .args(&["/bin/sh", "-c", "echo $GREETING"])
///     .env("GREETING", "hello")
///     .with_spec(|spec| {
///         spec.set_hostname(Some("box".into()));
///     })
///     .write();
/// ```
#[derive(Debug)]
pub struct Bundle {
    dir: TempDir,
    id: String,
    spec: Spec,
}

impl Bundle {
    /// Creates the bundle directory and its rootfs; the spec is written by [`write`](Self::write).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("testudo-bundle-")
            .tempdir()
            .expect("create a temp dir for a bundle");
        // A container in a user namespace must be able to reach its rootfs.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("make the bundle dir searchable");
        BusyboxRootfs::build_at(&dir.path().join("rootfs"));
        let id = unique_id("bundle");
        let mut spec = default_spec();
        spec.linux_mut()
            .as_mut()
            .expect("runc's default spec has a linux section")
            .set_cgroups_path(Some(PathBuf::from(format!("{CGROUP_PARENT}/{id}"))));
        Self { dir, id, spec }
    }

    /// Sets `process.args`.
    pub fn args(self, args: &[&str]) -> Self {
        self.with_spec(|spec| {
            process_mut(spec).set_args(Some(args.iter().map(|a| (*a).to_owned()).collect()));
        })
    }

    /// Sets the environment variable `key` to `value` in `process.env`, replacing an earlier
    /// value of `key`.
    pub fn env(self, key: &str, value: &str) -> Self {
        self.with_spec(|spec| {
            let env = process_mut(spec).env_mut().get_or_insert_with(Vec::new);
            let prefix = format!("{key}=");
            env.retain(|entry| !entry.starts_with(&prefix));
            env.push(format!("{key}={value}"));
        })
    }

    /// Changes the spec in any way.
    pub fn with_spec(mut self, change: impl FnOnce(&mut Spec)) -> Self {
        change(&mut self.spec);
        self
    }

    /// Serialises the spec to `config.json`; call it again after later changes.
    pub fn write(self) -> Self {
        let json = serde_json::to_string_pretty(&self.spec).expect("serialise the spec");
        let config = self.config_path();
        fs::write(&config, json).unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        self
    }

    /// The bundle directory, for `--bundle`.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The rootfs directory.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// `config.json` in the bundle.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// The unique id in the bundle's cgroups path; a good container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The spec as it stands (written or not).
    pub fn spec(&self) -> &Spec {
        &self.spec
    }
}

impl Default for Bundle {
    fn default() -> Self {
        Self::new()
    }
}

fn default_spec() -> Spec {
    let mut spec: Spec = serde_json::from_str(RUNC_SPEC).expect("runc's default spec parses");
    process_mut(&mut spec).set_terminal(Some(false));
    spec
}

fn process_mut(spec: &mut Spec) -> &mut oci_spec::runtime::Process {
    spec.process_mut()
        .as_mut()
        .expect("the spec has a process section")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written_config(bundle: &Bundle) -> serde_json::Value {
        let text = fs::read_to_string(bundle.config_path()).expect("config.json");
        serde_json::from_str(&text).expect("config.json is json")
    }

    #[test]
    fn default_config_is_runc_spec_without_terminal() {
        let bundle = Bundle::new().write();
        let config = written_config(&bundle);
        assert_eq!(config["process"]["terminal"], false);
        assert_eq!(config["process"]["args"], serde_json::json!(["sh"]));
        assert_eq!(config["root"]["path"], "rootfs");
        assert_eq!(config["hostname"], "runc");
        assert_eq!(
            config["linux"]["namespaces"].as_array().map(Vec::len),
            Some(5)
        );
        assert_eq!(
            config["linux"]["cgroupsPath"],
            format!("/testudo-test/{}", bundle.id())
        );
        assert!(bundle.rootfs().join("bin/sh").exists());
    }

    #[test]
    fn bundles_have_distinct_cgroups() {
        let a = Bundle::new();
        let b = Bundle::new();
        assert_ne!(a.id(), b.id());
        assert_ne!(
            a.spec()
                .linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().clone()),
            b.spec()
                .linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().clone())
        );
    }

    #[test]
    fn builder_changes_reach_config_json() {
        let bundle = Bundle::new()
            .args(&["/bin/true", "x"])
            .env("TERM", "dumb")
            .env("A", "1")
            .with_spec(|spec| {
                spec.set_hostname(Some("box".into()));
            })
            .write();
        let config = written_config(&bundle);
        assert_eq!(
            config["process"]["args"],
            serde_json::json!(["/bin/true", "x"])
        );
        assert_eq!(
            config["process"]["env"],
            serde_json::json!([
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=dumb",
                "A=1"
            ])
        );
        assert_eq!(config["hostname"], "box");
    }
}
