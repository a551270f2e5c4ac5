//! The workspace as `cargo metadata --no-deps` describes it, reduced to what the checks need.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Which section of a manifest declares a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DepKind {
    /// `[dependencies]`
    Normal,
    /// `[build-dependencies]`
    Build,
    /// `[dev-dependencies]`
    Dev,
}

/// One dependency of a workspace package, by package name (not by its renamed key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dependency {
    pub(crate) name: String,
    pub(crate) kind: DepKind,
}

/// One workspace member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) manifest_path: PathBuf,
    pub(crate) dependencies: Vec<Dependency>,
}

/// The workspace root and its members.
#[derive(Debug)]
pub(crate) struct Workspace {
    pub(crate) root: PathBuf,
    pub(crate) packages: Vec<Package>,
}

/// Why the metadata could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MetadataError {
    #[error("cannot run `cargo metadata`")]
    Spawn(#[source] std::io::Error),
    #[error("`cargo metadata` failed: {stderr}")]
    Failed { stderr: String },
    #[error("`cargo metadata` printed invalid JSON")]
    Json(#[source] serde_json::Error),
    #[error("`cargo metadata` output lacks field `{field}`")]
    Missing { field: &'static str },
}

/// Runs `cargo metadata --format-version 1 --no-deps` on this workspace and parses it.
pub(crate) fn load() -> Result<Workspace, MetadataError> {
    // `cargo run` sets CARGO to the cargo that built us; fall back to PATH otherwise.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(MetadataError::Spawn)?;
    if !output.status.success() {
        return Err(MetadataError::Failed {
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let json: Value = serde_json::from_slice(&output.stdout).map_err(MetadataError::Json)?;
    parse(&json)
}

/// Reads the workspace out of `cargo metadata` JSON. Only workspace members are kept.
pub(crate) fn parse(json: &Value) -> Result<Workspace, MetadataError> {
    let root = json["workspace_root"]
        .as_str()
        .ok_or(MetadataError::Missing {
            field: "workspace_root",
        })?;
    let members: Vec<&str> = json["workspace_members"]
        .as_array()
        .ok_or(MetadataError::Missing {
            field: "workspace_members",
        })?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let packages = json["packages"]
        .as_array()
        .ok_or(MetadataError::Missing { field: "packages" })?
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(&id)))
        .map(parse_package)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Workspace {
        root: PathBuf::from(root),
        packages,
    })
}

fn parse_package(json: &Value) -> Result<Package, MetadataError> {
    let name = json["name"].as_str().ok_or(MetadataError::Missing {
        field: "packages[].name",
    })?;
    let manifest_path = json["manifest_path"]
        .as_str()
        .ok_or(MetadataError::Missing {
            field: "packages[].manifest_path",
        })?;
    let dependencies = json["dependencies"]
        .as_array()
        .ok_or(MetadataError::Missing {
            field: "packages[].dependencies",
        })?
        .iter()
        .map(|d| {
            let name = d["name"].as_str().ok_or(MetadataError::Missing {
                field: "packages[].dependencies[].name",
            })?;
            let kind = match d["kind"].as_str() {
                Some("dev") => DepKind::Dev,
                Some("build") => DepKind::Build,
                _ => DepKind::Normal,
            };
            Ok(Dependency {
                name: name.to_owned(),
                kind,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Package {
        name: name.to_owned(),
        manifest_path: PathBuf::from(manifest_path),
        dependencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_members_and_dependency_kinds() {
        let json = serde_json::json!({
            "workspace_root": "/w",
            "workspace_members": ["a 0.1.0 (path+file:///w/a)"],
            "packages": [
                {
                    "id": "a 0.1.0 (path+file:///w/a)",
                    "name": "a",
                    "manifest_path": "/w/a/Cargo.toml",
                    "dependencies": [
                        {"name": "b", "kind": null},
                        {"name": "c", "kind": "dev"},
                        {"name": "d", "kind": "build"}
                    ]
                },
                {
                    "id": "outside 1.0.0",
                    "name": "outside",
                    "manifest_path": "/x/Cargo.toml",
                    "dependencies": []
                }
            ]
        });
        let ws = parse(&json).expect("valid metadata");
        assert_eq!(ws.root, PathBuf::from("/w"));
        assert_eq!(ws.packages.len(), 1);
        let kinds: Vec<DepKind> = ws.packages[0].dependencies.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, [DepKind::Normal, DepKind::Dev, DepKind::Build]);
    }

    #[test]
    fn parse_reports_a_missing_field() {
        let json = serde_json::json!({"workspace_members": [], "packages": []});
        assert!(matches!(
            parse(&json),
            Err(MetadataError::Missing {
                field: "workspace_root"
            })
        ));
    }
}
