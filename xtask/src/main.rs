//! Repository chores for the testudo workspace, run as `cargo run -p xtask -- <command>`.
//!
//! `check-layers` enforces the layering of the architecture document: workspace crates may only depend
//! on the crates below them, every crate but `testudo-linux` inherits the workspace lints (which
//! deny `unsafe_code`), and no Rust file outside `crates/linux` holds unsafe code.
//!
//! Non-goals: building, testing or formatting (cargo does that), and checking third-party
//! dependencies (licences and advisories belong to `cargo deny`).

mod layers;
mod lints;
mod metadata;
mod unsafe_scan;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::metadata::MetadataError;
use crate::unsafe_scan::ScanError;

/// The package allowed to hold `unsafe` code and to opt out of the workspace lints.
const UNSAFE_PACKAGE: &str = "testudo-linux";

const USAGE: &str = "usage: cargo run -p xtask -- <command>

commands:
  check-layers   fail on a dependency edge between workspace crates that points the wrong way,
                 a crate without `[lints] workspace = true`, or unsafe code outside crates/linux";

/// Why `check-layers` could not run to a verdict.
#[derive(Debug, thiserror::Error)]
enum CheckLayersError {
    #[error("cannot read the workspace metadata")]
    Metadata(#[from] MetadataError),
    #[error("cannot read manifest {path}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot scan the sources for unsafe code")]
    Scan(#[from] ScanError),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["check-layers"] => match check_layers() {
            Ok(0) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(err) => {
                print_error(&err);
                ExitCode::FAILURE
            }
        },
        ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Prints the error and its causes as one line, `xtask: a: b: c`.
fn print_error(err: &dyn std::error::Error) {
    let mut line = format!("xtask: {err}");
    let mut cause = err.source();
    while let Some(c) = cause {
        line.push_str(&format!(": {c}"));
        cause = c.source();
    }
    eprintln!("{line}");
}

/// Runs every layering check, prints each offence, and returns how many there were.
fn check_layers() -> Result<usize, CheckLayersError> {
    let workspace = metadata::load()?;
    let mut offences = Vec::new();

    for violation in layers::check_edges(&workspace.packages) {
        offences.push(violation.to_string());
    }

    for package in &workspace.packages {
        if package.name == UNSAFE_PACKAGE {
            continue;
        }
        let manifest = std::fs::read_to_string(&package.manifest_path).map_err(|source| {
            CheckLayersError::Manifest {
                path: package.manifest_path.clone(),
                source,
            }
        })?;
        if !lints::inherits_workspace_lints(&manifest) {
            offences.push(format!(
                "{}: {} lacks `[lints] workspace = true`, so `unsafe_code` is not denied",
                package.name,
                package.manifest_path.display()
            ));
        }
    }

    let allowed_dirs: Vec<PathBuf> = workspace
        .packages
        .iter()
        .filter(|p| p.name == UNSAFE_PACKAGE)
        .filter_map(|p| p.manifest_path.parent().map(PathBuf::from))
        .collect();
    let scan = unsafe_scan::scan_tree(&workspace.root, &allowed_dirs)?;
    for finding in &scan.findings {
        let shown = finding
            .path
            .strip_prefix(&workspace.root)
            .unwrap_or(&finding.path);
        offences.push(format!(
            "{}:{}: `unsafe {}` outside crates/linux",
            shown.display(),
            finding.line,
            finding.what
        ));
    }

    if offences.is_empty() {
        println!(
            "check-layers: ok ({} packages, {} Rust files scanned)",
            workspace.packages.len(),
            scan.files
        );
    } else {
        eprintln!("check-layers: {} offence(s):", offences.len());
        for offence in &offences {
            eprintln!("  {offence}");
        }
    }
    Ok(offences.len())
}
