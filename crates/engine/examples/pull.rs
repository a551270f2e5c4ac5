//! Pulls and unpacks one image into a fresh image-service root and prints the phase times as
//! JSON: the testudo side of `bench/image.py`, until `testudoctl image pull` exists.
//!
//! Usage: pull --root DIR [--insecure HOST:PORT]... [--copy] REFERENCE

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use testudo_engine::images::{
    ImageInfo, ImageService, ImageServiceConfig, PullPhases, SnapshotterChoice,
};
use testudo_engine::state::{Name, StateDb, StateError};
use testudo_image::manifest::Platform;
use testudo_image::registry::{Credentials, RegistryOptions};

fn usage() -> ! {
    eprintln!("usage: pull --root DIR [--insecure HOST:PORT]... [--copy] REFERENCE");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut root, mut insecure, mut reference) = (None, Vec::new(), None);
    let mut snapshotter = SnapshotterChoice::Auto;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--root" => root = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--insecure" => insecure.push(args.next().unwrap_or_else(|| usage())),
            "--copy" => snapshotter = SnapshotterChoice::Copy,
            _ if reference.is_none() && !arg.starts_with('-') => reference = Some(arg),
            _ => usage(),
        }
    }
    let (Some(root), Some(reference)) = (root, reference) else {
        usage()
    };
    let config = ImageServiceConfig {
        root,
        registry: RegistryOptions {
            insecure,
            credentials: Credentials::from_default_files().unwrap_or_default(),
            timeout: Duration::from_secs(30),
            ..RegistryOptions::default()
        },
        snapshotter,
        platform: Platform::host(),
    };
    let result = pull(config, &reference).await;
    match result {
        Ok((info, phases)) => println!(
            "{}",
            serde_json::json!({"image": info.name, "layers": info.layers, "bytes": info.size,
                "fetch_seconds": phases.fetch.as_secs_f64(),
                "unpack_seconds": phases.unpack.as_secs_f64()})
        ),
        Err(e) => {
            eprintln!("pull: {}", testudo_engine::error::chain(&*e));
            std::process::exit(1)
        }
    }
}

/// Pulls `reference` into the `default` namespace of a state database beside the images.
async fn pull(
    config: ImageServiceConfig,
    reference: &str,
) -> Result<(ImageInfo, PullPhases), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&config.root)?;
    let state = Arc::new(StateDb::open(&config.root.join("state.redb"))?);
    let namespace = Name::parse("namespace", "default")?;
    match state.create_namespace(&namespace, Default::default()) {
        Ok(_) | Err(StateError::NamespaceExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let images = ImageService::open(config, state)?;
    Ok(images.pull_with_phases(&namespace, reference, true).await?)
}
