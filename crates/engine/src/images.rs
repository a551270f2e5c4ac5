//! The image service: pulls and imports into the content store, unpacks each layer once into a
//! committed snapshot named by its ChainID (shared by every image that has the layer), prepares a
//! container's writable root filesystem on top, and collects what no image or container uses.
//!
//! Image references belong to namespaces: each is a row `(namespace, canonical name)` of the
//! state database, and every call names its namespace; a tenant sees only its own. Content
//! (blobs) and unpacked layers are shared and deduplicated across namespaces: a prune keeps
//! whatever any namespace's reference reaches. The content store's own record file stays
//! empty; records an older daemon left there are moved into `default` when the service opens.

use std::collections::HashSet;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testudo_image::layout::{export_layout_records, import_layout_content, LayoutError};

use crate::error::{ErrorKind, Kind};
use crate::events::{Event, EventBus, EventKind};
use crate::state::{Name, StateDb, StateError};
use testudo_image::pull::{fetch, resolve, PullError, PullOptions, ResolvedImage};
use testudo_image::reference::{ImageRef, ReferenceError};
use testudo_image::registry::{RegistryClient, RegistryError};
use testudo_image::store::{ContentStore, ImageRecord, StoreError};
use testudo_image::unpack::{unpack_layer, UnpackError, WhiteoutMode};
use testudo_snapshot::{
    overlay_supported, CopySnapshotter, Mount, OverlaySnapshotter, SnapshotError, SnapshotKind,
    Snapshotter, WhiteoutFormat,
};

// The types of [`ImageServiceConfig`], so that the daemon can configure the service without
// depending on the image crate itself (the layering allows daemon -> engine only).
pub use testudo_image::manifest::Platform;
pub use testudo_image::registry::RegistryOptions;

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image reference cannot be parsed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry client cannot be set up.
    #[error("cannot set up the registry client")]
    Client(#[source] RegistryError),
    /// Pulling, or reading a stored image, failed.
    #[error(transparent)]
    Pull(#[from] Box<PullError>),
    /// The content store failed.
    #[error("image store")]
    Store(#[from] Box<StoreError>),
    /// Importing or exporting an image layout failed.
    #[error(transparent)]
    Layout(#[from] Box<LayoutError>),
    /// No image has this name in the namespace.
    #[error("image {name:?} not found in namespace {namespace:?}")]
    NotFound {
        /// The namespace.
        namespace: String,
        /// The canonical name asked for.
        name: String,
    },
    /// The state database, which holds the references, failed or refused (an unknown
    /// namespace).
    #[error(transparent)]
    State(#[from] StateError),
    /// A snapshot operation failed.
    #[error("snapshot")]
    Snapshot(#[from] SnapshotError),
    /// A layer could not be unpacked.
    #[error("cannot unpack layer {digest} of {image}")]
    Unpack {
        /// The image.
        image: String,
        /// The layer blob.
        digest: String,
        /// The cause.
        #[source]
        source: Box<UnpackError>,
    },
    /// A layer's content does not hash to the diff id the config lists.
    #[error("layer {digest} of {image} unpacks to {actual}, but the config says {expected}")]
    DiffIdMismatch {
        /// The image.
        image: String,
        /// The layer blob.
        digest: String,
        /// The config's diff id.
        expected: String,
        /// What the content hashed to.
        actual: String,
    },
    /// A blocking task (unpacking, snapshot copies) panicked or was cancelled.
    #[error("a background task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl From<StoreError> for ImageError {
    fn from(e: StoreError) -> Self {
        ImageError::Store(Box::new(e))
    }
}

impl From<PullError> for ImageError {
    fn from(e: PullError) -> Self {
        ImageError::Pull(Box::new(e))
    }
}

impl From<LayoutError> for ImageError {
    fn from(e: LayoutError) -> Self {
        ImageError::Layout(Box::new(e))
    }
}

/// Which snapshotter holds unpacked layers and container root filesystems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotterChoice {
    /// overlayfs where the host supports it, else full copies.
    Auto,
    /// overlayfs.
    Overlay,
    /// Full copies of the merged tree (no overlayfs needed).
    Copy,
}

/// Where and how the image service keeps its data.
#[derive(Debug, Clone)]
pub struct ImageServiceConfig {
    /// `content/` (the store) and `snapshots/` go here.
    pub root: PathBuf,
    /// How registries are reached.
    pub registry: RegistryOptions,
    /// Which snapshotter to use.
    pub snapshotter: SnapshotterChoice,
    /// The platform chosen from multi-platform images.
    pub platform: Platform,
}

/// What the service tells about one image.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The canonical name (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The digest of its top-level manifest or index.
    pub digest: String,
    /// The digest of the platform's manifest.
    pub manifest_digest: String,
    /// Sum of the layer blob sizes.
    pub size: u64,
    /// The number of layers.
    pub layers: usize,
    /// When it was recorded (RFC 3339).
    pub created: String,
    /// The image config.
    pub config: oci_spec::image::ImageConfiguration,
}

impl ImageInfo {
    fn of(resolved: &ResolvedImage) -> Self {
        ImageInfo {
            name: resolved.record.name.clone(),
            digest: resolved.record.target.digest.to_string(),
            manifest_digest: resolved.manifest_digest.to_string(),
            size: resolved.layers.iter().map(|l| l.size).sum(),
            layers: resolved.layers.len(),
            created: resolved.record.created.clone(),
            config: resolved.config.clone(),
        }
    }
}

/// How long the phases of a pull took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullPhases {
    /// Manifests, config and every missing blob downloaded and verified.
    pub fetch: Duration,
    /// Every layer without a snapshot unpacked.
    pub unpack: Duration,
}

/// What [`ImageService::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneSummary {
    /// Blobs removed from the content store.
    pub blobs: u64,
    /// Bytes they held.
    pub bytes: u64,
    /// Unpacked layer snapshots removed.
    pub snapshots: u64,
}

/// Images: the content store, the snapshots and the registry client, shared by every request.
pub struct ImageService {
    state: Arc<StateDb>,
    store: Arc<ContentStore>,
    snapshots: Arc<dyn Snapshotter>,
    client: Arc<RegistryClient>,
    platform: Platform,
    events: EventBus,
}

impl std::fmt::Debug for ImageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageService")
            .field("store", &self.store.root())
            .field("snapshots", &self.snapshots.root())
            .finish_non_exhaustive()
    }
}

/// Canonical name of a user's image reference: `busybox` is `docker.io/library/busybox:latest`.
pub fn canonical_name(reference: &str) -> Result<String, ImageError> {
    Ok(ImageRef::parse(reference)?.to_string())
}

/// The namespace that adopts the global image records of an older store.
const ADOPTING_NAMESPACE: &str = "default";

impl ImageService {
    /// Opens (creating) the store and snapshots under `config.root`, with image references in
    /// `state`; removes what a crash left, and moves global records of an older store into
    /// the `default` namespace (created if missing).
    pub fn open(config: ImageServiceConfig, state: Arc<StateDb>) -> Result<Self, ImageError> {
        let store = Arc::new(ContentStore::open(&config.root.join("content"))?);
        adopt_global_records(&store, &state)?;
        let snapshot_root = config.root.join("snapshots");
        std::fs::create_dir_all(&snapshot_root).map_err(|source| {
            ImageError::Snapshot(SnapshotError::Io {
                action: "create",
                path: snapshot_root.clone(),
                source,
            })
        })?;
        let overlay = match config.snapshotter {
            SnapshotterChoice::Overlay => true,
            SnapshotterChoice::Copy => false,
            SnapshotterChoice::Auto => overlay_supported(&snapshot_root),
        };
        let snapshots: Arc<dyn Snapshotter> = if overlay {
            Arc::new(OverlaySnapshotter::open(&snapshot_root.join("overlay"))?)
        } else {
            Arc::new(CopySnapshotter::open(&snapshot_root.join("copy"))?)
        };
        snapshots.cleanup()?;
        let client = Arc::new(RegistryClient::new(config.registry).map_err(ImageError::Client)?);
        Ok(ImageService {
            state,
            store,
            snapshots,
            client,
            platform: config.platform,
            events: EventBus::default(),
        })
    }

    /// The service publishing on `events` (by default it has a bus of its own).
    pub fn with_events(mut self, events: EventBus) -> Self {
        self.events = events;
        self
    }

    /// The bus this service publishes `/images/...` events on; the container service built on it
    /// publishes there too.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    fn publish_image(
        &self,
        namespace: &Name,
        info: &ImageInfo,
        kind: fn(String, String) -> EventKind,
    ) {
        self.events.publish(Event::new(
            namespace.as_str(),
            kind(info.name.clone(), info.digest.clone()),
        ));
    }

    /// The content store.
    pub fn store(&self) -> &ContentStore {
        &self.store
    }

    /// The snapshotter.
    pub fn snapshotter(&self) -> &dyn Snapshotter {
        &*self.snapshots
    }

    /// Pulls `reference` into `namespace` and unpacks its layers.
    pub async fn pull(
        &self,
        namespace: &Name,
        reference: &str,
        progress: bool,
    ) -> Result<ImageInfo, ImageError> {
        Ok(self
            .pull_with_phases(namespace, reference, progress)
            .await?
            .0)
    }

    /// [`Self::pull`], telling how long fetching and unpacking took.
    pub async fn pull_with_phases(
        &self,
        namespace: &Name,
        reference: &str,
        progress: bool,
    ) -> Result<(ImageInfo, PullPhases), ImageError> {
        let image = ImageRef::parse(reference)?;
        // An unknown namespace is refused before anything is downloaded.
        self.state.namespace(namespace)?;
        let options = PullOptions {
            platform: self.platform.clone(),
            progress,
            ..PullOptions::default()
        };
        // Recorded only once unpacked: an image whose layers cannot be unpacked is not offered.
        let _lease = self.store.lease()?;
        let started = Instant::now();
        let resolved = fetch(self.client.clone(), self.store.clone(), &image, &options).await?;
        let fetched = Instant::now();
        self.unpack(&resolved).await?;
        let phases = PullPhases {
            fetch: fetched - started,
            unpack: fetched.elapsed(),
        };
        self.state
            .put_images(namespace, std::slice::from_ref(&resolved.record))?;
        tracing::info!(namespace = %namespace, image = %resolved.record.name,
            fetch_ms = phases.fetch.as_millis(), unpack_ms = phases.unpack.as_millis(), "pulled");
        let info = ImageInfo::of(&resolved);
        self.publish_image(namespace, &info, |name, digest| EventKind::ImagePulled {
            name,
            digest,
        });
        Ok((info, phases))
    }

    /// Imports every image of an OCI layout (directory or tar) into `namespace`;
    /// `default_name` names entries that carry only a tag. Each is unpacked, and all are
    /// recorded together once every one is: an import that fails records nothing.
    pub async fn import(
        &self,
        namespace: &Name,
        source: &Path,
        default_name: Option<&str>,
    ) -> Result<Vec<ImageInfo>, ImageError> {
        self.state.namespace(namespace)?;
        // Held until the references are recorded: a prune cannot take the blobs in between.
        let _lease = self.store.lease()?;
        let (store, source, default_name) = (
            self.store.clone(),
            source.to_owned(),
            default_name.map(str::to_owned),
        );
        let records = tokio::task::spawn_blocking(move || {
            import_layout_content(&store, &source, default_name.as_deref())
        })
        .await??;
        let mut infos = Vec::new();
        let mut canonical = Vec::new();
        for record in records {
            let record = canonicalize(record);
            let resolved = resolve(&self.store, record.clone(), &self.platform)?;
            self.unpack(&resolved).await?;
            infos.push(ImageInfo::of(&resolved));
            canonical.push(record);
        }
        self.state.put_images(namespace, &canonical)?;
        for info in &infos {
            self.publish_image(namespace, info, |name, digest| EventKind::ImageImported {
                name,
                digest,
            });
        }
        Ok(infos)
    }

    /// Writes the images `references` of `namespace` as an OCI layout at `dest` (a directory,
    /// or a tar file).
    pub async fn export(
        &self,
        namespace: &Name,
        references: &[&str],
        dest: &Path,
        as_tar: bool,
    ) -> Result<(), ImageError> {
        let mut records = Vec::new();
        for r in references {
            records.push(self.record(namespace, r)?);
        }
        let (store, dest) = (self.store.clone(), dest.to_owned());
        tokio::task::spawn_blocking(move || export_layout_records(&store, &records, &dest, as_tar))
            .await??;
        Ok(())
    }

    /// The reference `reference` (canonicalised) of `namespace`.
    fn record(&self, namespace: &Name, reference: &str) -> Result<ImageRecord, ImageError> {
        let name = canonical_name(reference).unwrap_or_else(|_| reference.to_owned());
        match self.state.image(namespace, &name)? {
            Some(record) => Ok(record),
            None => {
                // An unknown namespace is reported as such, not as a missing image.
                self.state.namespace(namespace)?;
                Err(ImageError::NotFound {
                    namespace: namespace.to_string(),
                    name,
                })
            }
        }
    }

    /// The image `reference` of `namespace`, resolved for the service's platform.
    pub fn resolve(&self, namespace: &Name, reference: &str) -> Result<ResolvedImage, ImageError> {
        let record = self.record(namespace, reference)?;
        Ok(resolve(&self.store, record, &self.platform)?)
    }

    /// Describes the image `reference` of `namespace`.
    pub fn inspect(&self, namespace: &Name, reference: &str) -> Result<ImageInfo, ImageError> {
        Ok(ImageInfo::of(&self.resolve(namespace, reference)?))
    }

    /// Every image of `namespace`, by name.
    pub fn list(&self, namespace: &Name) -> Result<Vec<ImageInfo>, ImageError> {
        self.state.namespace(namespace)?;
        let mut out = Vec::new();
        for record in self.state.images(namespace)? {
            out.push(ImageInfo::of(&resolve(
                &self.store,
                record,
                &self.platform,
            )?));
        }
        Ok(out)
    }

    /// Removes the reference `reference` of `namespace`; content that no other reference
    /// needs goes with the next [`Self::prune`].
    pub fn remove(&self, namespace: &Name, reference: &str) -> Result<(), ImageError> {
        let record = self.record(namespace, reference)?;
        self.state.remove_image(namespace, &record.name)?;
        self.events.publish(Event::new(
            namespace.as_str(),
            EventKind::ImageDeleted {
                name: record.name.clone(),
                digest: record.target.digest.to_string(),
            },
        ));
        Ok(())
    }

    /// Unpacks every layer of `image` that has no snapshot yet, bottom first.
    pub async fn unpack(&self, image: &ResolvedImage) -> Result<(), ImageError> {
        let (store, snapshots, image) = (self.store.clone(), self.snapshots.clone(), image.clone());
        tokio::task::spawn_blocking(move || unpack_image(&store, &*snapshots, &image)).await?
    }

    /// Prepares the writable root filesystem `key` of a container on top of the layers of
    /// `namespace`'s image `reference` (unpacking them if an import or a crash left them
    /// packed) and returns its mounts.
    pub async fn prepare_rootfs(
        &self,
        namespace: &Name,
        reference: &str,
        key: &str,
    ) -> Result<Vec<Mount>, ImageError> {
        let image = self.resolve(namespace, reference)?;
        self.unpack(&image).await?;
        let parent = image.layers.last().map(|l| l.chain_id.to_string());
        let snapshots = self.snapshots.clone();
        let key = key.to_owned();
        Ok(
            tokio::task::spawn_blocking(move || snapshots.prepare(&key, parent.as_deref()))
                .await??,
        )
    }

    /// Removes a container's root filesystem snapshot (it must not be mounted).
    pub fn remove_rootfs(&self, key: &str) -> Result<(), ImageError> {
        Ok(self.snapshots.remove(key)?)
    }

    /// Removes the blobs and unpacked layers that no image reference of any namespace, and no
    /// container root filesystem, needs any more.
    pub fn prune(&self) -> Result<PruneSummary, ImageError> {
        let mut needed = HashSet::new();
        for record in self.state.all_images()? {
            if let Ok(image) = resolve(&self.store, record, &self.platform) {
                needed.extend(image.layers.iter().map(|l| l.chain_id.to_string()));
            }
        }
        let mut removed = 0;
        // Children first: a layer snapshot can go once nothing is stacked on it.
        loop {
            let all = self.snapshots.list()?;
            let parents: HashSet<&str> = all.iter().filter_map(|s| s.parent.as_deref()).collect();
            let doomed: Vec<&str> = all
                .iter()
                .filter(|s| s.kind == SnapshotKind::Committed)
                .filter(|s| !needed.contains(&s.key) && !parents.contains(s.key.as_str()))
                .map(|s| s.key.as_str())
                .collect();
            if doomed.is_empty() {
                break;
            }
            for key in doomed {
                self.snapshots.remove(key)?;
                removed += 1;
            }
        }
        // The roots are read again under the store's collection lock: a pull recorded since
        // the snapshots were listed keeps its blobs.
        let report = self.store.prune_with(|| -> Result<_, ImageError> {
            let references = self.state.all_images()?;
            Ok(references.into_iter().map(|r| r.target).collect())
        })?;
        Ok(PruneSummary {
            blobs: report.blobs_removed,
            bytes: report.bytes_freed,
            snapshots: removed,
        })
    }
}

/// `record` under its canonical name, when the layout used a short one.
fn canonicalize(record: ImageRecord) -> ImageRecord {
    match canonical_name(&record.name) {
        Ok(canonical) => ImageRecord {
            name: canonical,
            ..record
        },
        Err(_) => record,
    }
}

/// Moves the records of an older, global content store into the state database's `default`
/// namespace: recorded there first, then removed from the store, so that a crash in between
/// repeats the move rather than losing a reference.
fn adopt_global_records(store: &ContentStore, state: &StateDb) -> Result<(), ImageError> {
    let records = store.images()?;
    if records.is_empty() {
        return Ok(());
    }
    let default = Name::parse("namespace", ADOPTING_NAMESPACE)?;
    state.adopt_images(&default, &records)?;
    for record in &records {
        match store.remove_image(&record.name) {
            Ok(_) | Err(StoreError::ImageNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(
        namespace = ADOPTING_NAMESPACE,
        images = records.len(),
        "global image records moved into a namespace"
    );
    Ok(())
}

/// A key no other unpack in any process uses: the extraction's active snapshot.
fn extraction_key(chain_id: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("extract-{}-{n}-{chain_id}", std::process::id())
}

fn unpack_image(
    store: &ContentStore,
    snapshots: &dyn Snapshotter,
    image: &ResolvedImage,
) -> Result<(), ImageError> {
    let mode = match snapshots.whiteout_format() {
        WhiteoutFormat::Overlay => WhiteoutMode::Overlay,
        WhiteoutFormat::Remove => WhiteoutMode::Remove,
    };
    let mut parent: Option<String> = None;
    for layer in &image.layers {
        let name = layer.chain_id.to_string();
        if snapshots.stat(&name).is_ok() {
            parent = Some(name);
            continue;
        }
        let key = extraction_key(&name);
        snapshots.prepare(&key, parent.as_deref())?;
        let committed = unpack_into(store, snapshots, image, layer, &key, mode)
            .and_then(|()| Ok(snapshots.commit(&name, &key)?));
        if let Err(e) = committed {
            if let Err(cleanup) = snapshots.remove(&key) {
                tracing::warn!(key, error = %cleanup, "cannot remove a failed extraction");
            }
            // AlreadyExists: another unpack of the same layer won the race; its snapshot serves.
            if !matches!(e, ImageError::Snapshot(SnapshotError::AlreadyExists { .. })) {
                return Err(e);
            }
        }
        parent = Some(name);
    }
    Ok(())
}

fn unpack_into(
    store: &ContentStore,
    snapshots: &dyn Snapshotter,
    image: &ResolvedImage,
    layer: &testudo_image::pull::ImageLayer,
    key: &str,
    mode: WhiteoutMode,
) -> Result<(), ImageError> {
    let target = snapshots.upper_dir(key)?;
    let blob = store.open_blob(&layer.digest)?;
    let unpack_error = |source| ImageError::Unpack {
        image: image.record.name.clone(),
        digest: layer.digest.to_string(),
        source: Box::new(source),
    };
    let summary = unpack_layer(
        BufReader::with_capacity(1 << 20, blob),
        layer.compression,
        &target,
        mode,
    )
    .map_err(unpack_error)?;
    if summary.diff_id != layer.diff_id {
        return Err(ImageError::DiffIdMismatch {
            image: image.record.name.clone(),
            digest: layer.digest.to_string(),
            expected: layer.diff_id.to_string(),
            actual: summary.diff_id.to_string(),
        });
    }
    Ok(())
}

impl Kind for ImageError {
    fn kind(&self) -> ErrorKind {
        match self {
            ImageError::Reference(e) => e.kind(),
            ImageError::Client(e) => e.kind(),
            ImageError::Pull(e) => e.kind(),
            ImageError::Store(e) => e.kind(),
            ImageError::Layout(e) => e.kind(),
            ImageError::NotFound { .. } => ErrorKind::NotFound,
            ImageError::State(e) => e.kind(),
            ImageError::Snapshot(e) => e.kind(),
            // A layer that cannot be applied, or that is not what the config says: the image
            // is unusable, the engine is fine.
            ImageError::Unpack { .. } | ImageError::DiffIdMismatch { .. } => {
                ErrorKind::FailedPrecondition
            }
            ImageError::Task(_) => ErrorKind::Internal,
        }
    }
}
