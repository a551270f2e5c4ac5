//! Whether a manifest inherits the workspace lints (which deny `unsafe_code`).
//!
//! A line-based reading of the few TOML spellings of `lints.workspace = true`, so that xtask
//! needs no TOML parser: `[lints]` followed by `workspace = true`, the dotted key
//! `lints.workspace = true`, or the inline table `lints = { workspace = true }`, the last two
//! before any table header.

/// Whether the manifest text sets `lints.workspace = true`.
pub(crate) fn inherits_workspace_lints(manifest: &str) -> bool {
    let mut table: Option<String> = None;
    for raw in manifest.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            table = Some(line.trim_matches(['[', ']']).trim().to_owned());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key: String = key.chars().filter(|c| !c.is_whitespace()).collect();
        let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        let found = match table.as_deref() {
            Some("lints") => key == "workspace" && value == "true",
            None => {
                (key == "lints.workspace" && value == "true")
                    || (key == "lints" && value == "{workspace=true}")
            }
            Some(_) => false,
        };
        if found {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lints_table_with_workspace_true_inherits() {
        let m = "[package]\nname = \"a\"\n\n[lints]\nworkspace = true\n\n[dependencies]\n";
        assert!(inherits_workspace_lints(m));
    }

    #[test]
    fn dotted_and_inline_spellings_inherit() {
        assert!(inherits_workspace_lints(
            "lints.workspace = true\n[package]\n"
        ));
        assert!(inherits_workspace_lints("lints = { workspace = true }\n"));
    }

    #[test]
    fn missing_or_false_does_not_inherit() {
        assert!(!inherits_workspace_lints("[package]\nname = \"a\"\n"));
        assert!(!inherits_workspace_lints("[lints]\nworkspace = false\n"));
        assert!(!inherits_workspace_lints("[lints]\n# workspace = true\n"));
    }

    #[test]
    fn workspace_key_in_another_table_does_not_count() {
        let m = "[lints]\n[package]\nworkspace = true\n";
        assert!(!inherits_workspace_lints(m));
    }
}
