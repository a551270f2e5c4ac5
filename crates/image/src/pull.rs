//! Pulling an image into the content store, and reading a stored image back as the list of its
//! layers and its config.
//!
//! A pull fetches the manifest (and, for an index, the manifest of the wanted platform), the
//! config, then every layer the store lacks, several at a time, each streamed into a resumable
//! ingest and verified before it becomes a blob. The image record is written last: a pull that
//! fails at any point leaves no visible image, only verified blobs and resumable partial downloads,
//! so a retry completes it and `prune` can drop the rest.

use std::io::IsTerminal;
use std::sync::Arc;

use oci_spec::image::{ImageConfiguration, ImageManifest};

use crate::compression::LayerCompression;
use crate::digest::Digest;
use crate::manifest::{
    chain_ids, descriptor_digest, diff_ids, layer_compression, parse_config, parse_manifest,
    select_platform, Manifest, ManifestError, Platform, MAX_MANIFEST_BYTES,
};
use crate::reference::ImageRef;
use crate::registry::{RegistryClient, RegistryError};
use crate::store::{ContentStore, ImageRecord, ImageTarget, StoreError};

/// Why a pull, or reading a stored image, failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// A registry request failed.
    #[error("pull {image}")]
    Registry {
        /// The image.
        image: String,
        /// The cause (boxed, as the other causes: errors are large and rare).
        #[source]
        source: Box<RegistryError>,
    },
    /// A manifest, index or config is invalid, or has no manifest for the platform.
    #[error("{image}: invalid image")]
    Manifest {
        /// The image.
        image: String,
        /// The cause.
        #[source]
        source: Box<ManifestError>,
    },
    /// The store failed.
    #[error("{image}: content store")]
    Store {
        /// The image.
        image: String,
        /// The cause.
        #[source]
        source: Box<StoreError>,
    },
    /// The config lists another number of layers than the manifest.
    #[error("{image}: the manifest has {layers} layers but the config {diff_ids} diff ids")]
    LayerCount {
        /// The image.
        image: String,
        /// Layers in the manifest.
        layers: usize,
        /// `rootfs.diff_ids` in the config.
        diff_ids: usize,
    },
    /// A background download task died.
    #[error("{image}: a download task failed")]
    Task {
        /// The image.
        image: String,
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to pick from an index.
    pub platform: Platform,
    /// Layers downloaded at once.
    pub concurrency: usize,
    /// Show progress bars (when standard error is a terminal).
    pub progress: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            concurrency: 4,
            progress: true,
        }
    }
}

/// One layer of an image, bottom first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayer {
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size.
    pub size: u64,
    /// How the blob is compressed.
    pub compression: LayerCompression,
    /// The digest of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: Digest,
    /// The ChainID of the layers up to this one: the key of its unpacked snapshot.
    pub chain_id: Digest,
}

/// A stored image, resolved for one platform.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The image record (name and top-level target).
    pub record: ImageRecord,
    /// The digest of the platform's image manifest.
    pub manifest_digest: Digest,
    /// That manifest.
    pub manifest: ImageManifest,
    /// The image config.
    pub config: ImageConfiguration,
    /// The layers, bottom first.
    pub layers: Vec<ImageLayer>,
}

/// Pulls `image` into `store` and records it under its canonical name.
pub async fn pull(
    client: Arc<RegistryClient>,
    store: Arc<ContentStore>,
    image: &ImageRef,
    options: &PullOptions,
) -> Result<ResolvedImage, PullError> {
    let _lease = store.lease().map_err(|source| PullError::Store {
        image: image.to_string(),
        source: Box::new(source),
    })?;
    let fetched = fetch(client, store.clone(), image, options).await?;
    store
        .put_image(&fetched.record)
        .map_err(|source| PullError::Store {
            image: image.to_string(),
            source: Box::new(source),
        })?;
    Ok(fetched)
}

/// Downloads and verifies everything of `image` that `store` lacks, without recording the image:
/// for callers that record it only after more work (unpacking). Hold a [`ContentStore::lease`]
/// until the record is written, so that a prune cannot take the blobs in between.
pub async fn fetch(
    client: Arc<RegistryClient>,
    store: Arc<ContentStore>,
    image: &ImageRef,
    options: &PullOptions,
) -> Result<ResolvedImage, PullError> {
    let name = image.to_string();
    let registry_error = |source| PullError::Registry {
        image: name.clone(),
        source: Box::new(source),
    };
    let manifest_error = |source| PullError::Manifest {
        image: name.clone(),
        source: Box::new(source),
    };
    let store_error = |source| PullError::Store {
        image: name.clone(),
        source: Box::new(source),
    };

    let top = client
        .manifest(image, &image.reference())
        .await
        .map_err(registry_error)?;
    let parsed = parse_manifest(top.media_type.as_deref(), &top.bytes).map_err(manifest_error)?;
    let top_media_type = match &parsed {
        Manifest::Image(m) => media_type_of(m.media_type().as_ref(), &top.media_type, false),
        Manifest::Index(i) => media_type_of(i.media_type().as_ref(), &top.media_type, true),
    };
    store
        .write_blob(&top.digest, &top.bytes)
        .map_err(store_error)?;
    let manifest_digest = match parsed {
        Manifest::Image(_) => top.digest.clone(),
        Manifest::Index(index) => {
            let chosen = select_platform(&index, &options.platform).map_err(manifest_error)?;
            let digest = descriptor_digest(chosen).map_err(manifest_error)?;
            let child = client
                .manifest(image, digest.as_str())
                .await
                .map_err(registry_error)?;
            store
                .write_blob(&child.digest, &child.bytes)
                .map_err(store_error)?;
            digest
        }
    };
    let manifest = read_image_manifest(&store, &manifest_digest).map_err(|e| e.named(&name))?;
    let config_digest = descriptor_digest(manifest.config()).map_err(manifest_error)?;
    if !store.contains(&config_digest) {
        let bytes = client
            .blob_bytes(image, &config_digest, MAX_MANIFEST_BYTES)
            .await
            .map_err(registry_error)?;
        store
            .write_blob(&config_digest, &bytes)
            .map_err(store_error)?;
    }

    let progress = Progress::new(options.progress);
    let mut wanted = Vec::new();
    for layer in manifest.layers() {
        let digest = descriptor_digest(layer).map_err(manifest_error)?;
        layer_compression(layer.media_type().as_ref()).map_err(manifest_error)?;
        if !store.contains(&digest) && !wanted.iter().any(|(d, _)| *d == digest) {
            wanted.push((digest, layer.size()));
        }
    }
    // One task per layer (hashing runs on every core), at most `concurrency` downloading. A
    // failure aborts the others and waits for them, so no download outlives the pull and keeps
    // its ingest locked against a retry.
    let slots = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
    let mut downloads = tokio::task::JoinSet::new();
    for (digest, size) in wanted {
        let (client, store, image, bar, slots) = (
            client.clone(),
            store.clone(),
            image.clone(),
            progress.bar(&digest, size),
            slots.clone(),
        );
        downloads.spawn(async move {
            let _slot = slots.acquire_owned().await;
            download_layer(&client, &store, &image, &digest, size, &bar).await
        });
    }
    while let Some(joined) = downloads.join_next().await {
        let failed = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.named(&name),
            Err(source) => PullError::Task {
                image: name.clone(),
                source,
            },
        };
        downloads.shutdown().await;
        return Err(failed);
    }
    progress.finish();

    let record = ImageRecord::new(
        name.clone(),
        ImageTarget {
            media_type: top_media_type,
            digest: top.digest.clone(),
            size: u64::try_from(top.bytes.len()).unwrap_or(u64::MAX),
        },
    );
    resolve(&store, record, &options.platform)
}

/// What a failure inside a download task carries until it knows the image's name.
enum TaskError {
    Registry(Box<RegistryError>),
    Store(Box<StoreError>),
    Manifest(Box<ManifestError>),
}

impl TaskError {
    fn registry(e: RegistryError) -> Self {
        TaskError::Registry(Box::new(e))
    }

    fn store(e: StoreError) -> Self {
        TaskError::Store(Box::new(e))
    }

    fn manifest(e: ManifestError) -> Self {
        TaskError::Manifest(Box::new(e))
    }

    fn named(self, image: &str) -> PullError {
        let image = image.to_owned();
        match self {
            TaskError::Registry(source) => PullError::Registry { image, source },
            TaskError::Store(source) => PullError::Store { image, source },
            TaskError::Manifest(source) => PullError::Manifest { image, source },
        }
    }
}

async fn download_layer(
    client: &RegistryClient,
    store: &ContentStore,
    image: &ImageRef,
    digest: &Digest,
    size: u64,
    bar: &indicatif::ProgressBar,
) -> Result<(), TaskError> {
    let mut ingest = store.ingest(digest, Some(size)).map_err(TaskError::store)?;
    client
        .blob_to(image, digest, size, &mut ingest, &|n| bar.set_position(n))
        .await
        .map_err(TaskError::registry)?;
    ingest.commit().map_err(TaskError::store)?;
    bar.finish();
    Ok(())
}

fn media_type_of(
    declared: Option<&oci_spec::image::MediaType>,
    served: &Option<String>,
    index: bool,
) -> String {
    declared
        .map(ToString::to_string)
        .or_else(|| served.clone())
        .unwrap_or_else(|| {
            if index {
                oci_spec::image::MediaType::ImageIndex.to_string()
            } else {
                oci_spec::image::MediaType::ImageManifest.to_string()
            }
        })
}

fn read_image_manifest(store: &ContentStore, digest: &Digest) -> Result<ImageManifest, TaskError> {
    let bytes = store
        .read_blob(digest, MAX_MANIFEST_BYTES)
        .map_err(TaskError::store)?;
    match parse_manifest(None, &bytes).map_err(TaskError::manifest)? {
        Manifest::Image(m) => Ok(m),
        Manifest::Index(_) => Err(TaskError::manifest(ManifestError::NestedIndex {
            digest: digest.clone(),
        })),
    }
}

/// Reads the stored image of `record` for `platform`: its manifest, config and layers.
pub fn resolve(
    store: &ContentStore,
    record: ImageRecord,
    platform: &Platform,
) -> Result<ResolvedImage, PullError> {
    let name = record.name.clone();
    let manifest_error = |source| PullError::Manifest {
        image: name.clone(),
        source: Box::new(source),
    };
    let store_error = |source| PullError::Store {
        image: name.clone(),
        source: Box::new(source),
    };
    let top = store
        .read_blob(&record.target.digest, MAX_MANIFEST_BYTES)
        .map_err(store_error)?;
    let manifest_digest =
        match parse_manifest(Some(&record.target.media_type), &top).map_err(manifest_error)? {
            Manifest::Image(_) => record.target.digest.clone(),
            Manifest::Index(index) => {
                descriptor_digest(select_platform(&index, platform).map_err(manifest_error)?)
                    .map_err(manifest_error)?
            }
        };
    let manifest = read_image_manifest(store, &manifest_digest).map_err(|e| e.named(&name))?;
    let config_digest = descriptor_digest(manifest.config()).map_err(manifest_error)?;
    let config_bytes = store
        .read_blob(&config_digest, MAX_MANIFEST_BYTES)
        .map_err(store_error)?;
    let config = parse_config(&config_bytes).map_err(manifest_error)?;
    let diff_ids = diff_ids(&config).map_err(manifest_error)?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(PullError::LayerCount {
            image: name,
            layers: manifest.layers().len(),
            diff_ids: diff_ids.len(),
        });
    }
    let chains = chain_ids(&diff_ids);
    let layers = manifest
        .layers()
        .iter()
        .zip(diff_ids.into_iter().zip(chains))
        .map(|(layer, (diff_id, chain_id))| {
            Ok(ImageLayer {
                digest: descriptor_digest(layer).map_err(manifest_error)?,
                size: layer.size(),
                compression: layer_compression(layer.media_type().as_ref())
                    .map_err(manifest_error)?,
                diff_id,
                chain_id,
            })
        })
        .collect::<Result<Vec<_>, PullError>>()?;
    Ok(ResolvedImage {
        record,
        manifest_digest,
        manifest,
        config,
        layers,
    })
}

/// Progress bars on a terminal, hidden otherwise.
struct Progress {
    bars: Option<indicatif::MultiProgress>,
}

impl Progress {
    fn new(wanted: bool) -> Self {
        let shown = wanted && std::io::stderr().is_terminal();
        Progress {
            bars: shown.then(indicatif::MultiProgress::new),
        }
    }

    fn bar(&self, digest: &Digest, size: u64) -> indicatif::ProgressBar {
        let Some(bars) = &self.bars else {
            return indicatif::ProgressBar::hidden();
        };
        let bar = bars.add(indicatif::ProgressBar::new(size));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(digest.hex()[..12].to_owned());
        bar
    }

    fn finish(&self) {
        if let Some(bars) = &self.bars {
            let _ = bars.clear();
        }
    }
}
