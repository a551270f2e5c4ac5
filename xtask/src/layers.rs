//! The allowed dependency edges between workspace crates, and the pure check against them.

use std::fmt;

use crate::metadata::{DepKind, Package};

/// Every edge a workspace package may have to another workspace package, for normal and build
/// dependencies. Arrows point down: binaries at the top, `testudo-linux` at the bottom.
const ALLOWED: &[(&str, &[&str])] = &[
    ("testudo-ctl", &["testudo-client"]),
    ("testudo-client", &["testudo-api"]),
    (
        "testudo-daemon",
        &["testudo-engine", "testudo-cri", "testudo-api"],
    ),
    (
        "testudo-engine",
        &[
            "testudo-image",
            "testudo-snapshot",
            "testudo-network",
            "testudo-cgroups",
            "testudo-monitor-protocol",
        ],
    ),
    (
        "testudo-runtime-cli",
        &["testudo-runtime", "testudo-monitor", "testudo-linux"],
    ),
    (
        "testudo-monitor",
        &[
            "testudo-runtime",
            "testudo-linux",
            "testudo-monitor-protocol",
        ],
    ),
    (
        "testudo-runtime",
        &["testudo-cgroups", "testudo-seccomp", "testudo-linux"],
    ),
    ("testudo-image", &["testudo-linux"]),
    ("testudo-snapshot", &["testudo-linux"]),
    ("testudo-network", &["testudo-linux"]),
    ("testudo-cgroups", &["testudo-linux"]),
];

/// The one extra edge every crate may have in `[dev-dependencies]`.
const TEST_SUPPORT: &str = "testudo-test-support";

/// A dependency between workspace crates that the layering forbids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) kind: DepKind,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let section = match self.kind {
            DepKind::Normal => "dependencies",
            DepKind::Build => "build-dependencies",
            DepKind::Dev => "dev-dependencies",
        };
        write!(
            f,
            "{} -> {} ([{section}]) is not an allowed edge",
            self.from, self.to
        )
    }
}

/// Whether `from` may depend on `to` in the given manifest section.
pub(crate) fn is_allowed(from: &str, to: &str, kind: DepKind) -> bool {
    if kind == DepKind::Dev && to == TEST_SUPPORT {
        return true;
    }
    ALLOWED
        .iter()
        .any(|(f, targets)| *f == from && targets.contains(&to))
}

/// Lists every edge between the given workspace packages that is not allowed. Dependencies on
/// crates outside the workspace are not this check's business.
pub(crate) fn check_edges(packages: &[Package]) -> Vec<Violation> {
    let members: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    packages
        .iter()
        .flat_map(|p| {
            p.dependencies
                .iter()
                .filter(|d| members.contains(&d.name.as_str()))
                .filter(|d| !is_allowed(&p.name, &d.name, d.kind))
                .map(|d| Violation {
                    from: p.name.clone(),
                    to: d.name.clone(),
                    kind: d.kind,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::metadata::Dependency;

    fn package(name: &str, deps: &[(&str, DepKind)]) -> Package {
        Package {
            name: name.to_owned(),
            manifest_path: PathBuf::from(format!("/w/{name}/Cargo.toml")),
            dependencies: deps
                .iter()
                .map(|(n, k)| Dependency {
                    name: (*n).to_owned(),
                    kind: *k,
                })
                .collect(),
        }
    }

    #[test]
    fn downward_edges_are_allowed() {
        let packages = [
            package(
                "testudo-runtime",
                &[
                    ("testudo-cgroups", DepKind::Normal),
                    ("testudo-seccomp", DepKind::Normal),
                    ("testudo-linux", DepKind::Build),
                ],
            ),
            package("testudo-cgroups", &[("testudo-linux", DepKind::Normal)]),
            package("testudo-seccomp", &[]),
            package("testudo-linux", &[]),
        ];
        assert_eq!(check_edges(&packages), []);
    }

    #[test]
    fn upward_edge_is_reported() {
        let packages = [
            package("testudo-cgroups", &[("testudo-runtime", DepKind::Normal)]),
            package("testudo-runtime", &[]),
        ];
        assert_eq!(
            check_edges(&packages),
            [Violation {
                from: "testudo-cgroups".to_owned(),
                to: "testudo-runtime".to_owned(),
                kind: DepKind::Normal,
            }]
        );
    }

    #[test]
    fn skipping_a_layer_is_reported() {
        // The daemon reaches the runtime only through the monitor process.
        assert!(!is_allowed(
            "testudo-daemon",
            "testudo-runtime",
            DepKind::Normal
        ));
        assert!(!is_allowed("testudo-ctl", "testudo-api", DepKind::Normal));
    }

    #[test]
    fn test_support_is_allowed_only_as_dev_dependency() {
        assert!(is_allowed("testudo-runtime", TEST_SUPPORT, DepKind::Dev));
        assert!(!is_allowed(
            "testudo-runtime",
            TEST_SUPPORT,
            DepKind::Normal
        ));
        assert!(!is_allowed("testudo-runtime", TEST_SUPPORT, DepKind::Build));
    }

    #[test]
    fn dev_dependencies_follow_the_normal_edges_too() {
        assert!(is_allowed(
            "testudo-monitor",
            "testudo-runtime",
            DepKind::Dev
        ));
        assert!(!is_allowed(
            "testudo-linux",
            "testudo-runtime",
            DepKind::Dev
        ));
    }

    #[test]
    fn the_monitor_protocol_is_shared_by_engine_and_monitor_and_depends_on_nothing() {
        for user in ["testudo-engine", "testudo-monitor"] {
            assert!(is_allowed(
                user,
                "testudo-monitor-protocol",
                DepKind::Normal
            ));
        }
        assert!(!is_allowed(
            "testudo-monitor-protocol",
            "testudo-linux",
            DepKind::Normal
        ));
        assert!(!is_allowed(
            "testudo-engine",
            "testudo-monitor",
            DepKind::Normal
        ));
    }

    #[test]
    fn a_crate_not_in_the_table_may_depend_on_no_workspace_crate() {
        let packages = [
            package("xtask", &[("testudo-linux", DepKind::Normal)]),
            package("testudo-linux", &[]),
        ];
        assert_eq!(check_edges(&packages).len(), 1);
    }

    #[test]
    fn dependencies_outside_the_workspace_are_ignored() {
        let packages = [package(
            "testudo-linux",
            &[
                ("rustix", DepKind::Normal),
                ("testudo-api", DepKind::Normal),
            ],
        )];
        // testudo-api is not a member here, so it is some outside crate of that name.
        assert_eq!(check_edges(&packages), []);
    }

    #[test]
    fn violation_names_the_manifest_section() {
        let v = Violation {
            from: "a".to_owned(),
            to: "b".to_owned(),
            kind: DepKind::Build,
        };
        assert_eq!(
            v.to_string(),
            "a -> b ([build-dependencies]) is not an allowed edge"
        );
    }
}
