//! Shared set-up of the engine's integration tests (included with `mod common;`): a real
//! registry holding a busybox image, the state database and the image service on a temporary
//! root with one namespace and the image pulled into it, and container services over them.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use testudo_engine::containers::{ContainerService, ContainerServiceConfig};
use testudo_engine::images::{ImageService, ImageServiceConfig, SnapshotterChoice};
use testudo_engine::state::{Name, StateDb};
use testudo_image::manifest::Platform;
use testudo_image::registry::{Credentials, RegistryOptions};
use testudo_test_support::{BusyboxRootfs, ImageLayout, Layer, PushFormat, Registry, TestImage};

/// The containers' cgroup parent: below the leak checker's, so it sees their cgroups.
pub(crate) const CGROUP_PARENT: &str = "/testudo-test";

/// What every container test starts from.
pub(crate) struct Services {
    /// Serves `test/busybox:v1`, whose command is `echo hello`.
    pub(crate) registry: Registry,
    /// The root of the state database, the image store, containers and logs.
    pub(crate) dir: TempDir,
    pub(crate) state: Arc<StateDb>,
    pub(crate) images: Arc<ImageService>,
    /// The image's reference, pulled into the namespace.
    pub(crate) reference: String,
}

impl Services {
    /// A registry with the busybox image, and `namespace` holding it, pulled.
    pub(crate) async fn start(namespace: &str) -> Services {
        let registry = Registry::start();
        let image = TestImage::new(vec![Layer::from_dir(BusyboxRootfs::new().path())])
            .config(serde_json::json!({"Cmd": ["echo", "hello"]}));
        let mut layout = ImageLayout::new();
        layout.add_image("v1", &image);
        registry.push(
            layout.path(),
            "v1",
            "test/busybox:v1",
            PushFormat::Oci,
            false,
        );
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(StateDb::open(&dir.path().join("state.redb")).unwrap());
        let namespace = Name::parse("namespace", namespace).unwrap();
        state.create_namespace(&namespace, BTreeMap::new()).unwrap();
        let images = Arc::new(
            ImageService::open(
                ImageServiceConfig {
                    root: dir.path().join("images"),
                    registry: RegistryOptions {
                        insecure: vec![registry.address()],
                        credentials: Credentials::none(),
                        timeout: Duration::from_secs(10),
                        ..RegistryOptions::default()
                    },
                    snapshotter: SnapshotterChoice::Auto,
                    platform: Platform::host(),
                },
                state.clone(),
            )
            .unwrap(),
        );
        let reference = format!("{}/test/busybox:v1", registry.address());
        images.pull(&namespace, &reference, false).await.unwrap();
        Services {
            registry,
            dir,
            state,
            images,
            reference,
        }
    }
}

/// A container service on `root` (containers and logs under it), as a daemon (re)start makes it.
pub(crate) fn container_service(
    root: &Path,
    images: &Arc<ImageService>,
    state: &Arc<StateDb>,
) -> ContainerService {
    let mut config = ContainerServiceConfig::new(
        root.join("containers"),
        testudo_test_support::testudo_binary(),
    );
    config.log_root = root.join("logs");
    config.cgroup_parent = CGROUP_PARENT.into();
    ContainerService::new(config, images.clone(), state.clone()).unwrap()
}
