//! Compiles every daemon API `.proto` file with protox (a protobuf compiler in Rust, so no `protoc`
//! is needed) and generates prost messages and tonic clients and servers from the result.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

/// The daemon <-> monitor protocol lives beside the API but belongs to the monitor crate, which
/// links no tonic: it is not part of this crate.
const MONITOR_DIR: &str = "monitor";

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let api_root = proto_root.join("testudo");
    println!("cargo:rerun-if-changed={}", api_root.display());

    let mut files = Vec::new();
    collect_protos(&api_root, &mut files)?;
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    // Source info carries the comments that become the generated docs.
    let descriptors = protox::compile(&files, [&proto_root])?;

    // The set the crate exports (for gRPC reflection and its own tests) needs no comments.
    let mut bare = descriptors.clone();
    for file in &mut bare.file {
        file.source_code_info = None;
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("descriptors.bin"),
        prost::Message::encode_to_vec(&bare),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Clients get their channel from the caller: the daemon listens on a unix socket, which
        // the generated `connect(uri)` helper cannot reach.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}

/// Every `.proto` file under `dir`, except the monitor's.
fn collect_protos(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), Box<dyn Error>> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == MONITOR_DIR) && dir.ends_with("testudo") {
                continue;
            }
            collect_protos(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            files.push(path);
        }
    }
    Ok(())
}
