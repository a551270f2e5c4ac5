//! Platforms (`linux/arm64/v8`) and the choice of a manifest from an index.

use std::fmt;

use oci_spec::image::{Descriptor, ImageIndex};

use super::ManifestError;

/// The platform an image runs on, in Go's `GOOS`/`GOARCH` names (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `GOOS`: `linux`.
    pub os: String,
    /// `GOARCH`: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`, …
    pub architecture: String,
    /// The CPU variant (`v7`, `v8`), if any.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on.
    pub fn host() -> Platform {
        let (architecture, variant) =
            goarch(std::env::consts::ARCH, cfg!(target_endian = "little"));
        Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Parses `os/architecture[/variant]`, normalising common aliases as containerd does
    /// (`x86_64` is `amd64`, `aarch64` is `arm64`, `armhf` is `arm/v7`, variant `8` is `v8`).
    pub fn parse(input: &str) -> Result<Platform, ManifestError> {
        let invalid = || ManifestError::InvalidPlatform {
            input: input.to_owned(),
        };
        let parts: Vec<&str> = input.split('/').collect();
        let well_formed = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(well_formed) {
            return Err(invalid());
        }
        Ok(Platform {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        }
        .normalized())
    }

    /// The same platform with containerd's aliases resolved and names lowercased.
    pub fn normalized(&self) -> Platform {
        let os = self.os.to_ascii_lowercase();
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self.variant.as_deref().map(str::to_ascii_lowercase);
        let (architecture, variant) = match arch.as_str() {
            "x86_64" | "x86-64" => ("amd64".to_owned(), variant),
            "aarch64" => ("arm64".to_owned(), variant),
            "armhf" => ("arm".to_owned(), Some("v7".to_owned())),
            "armel" => ("arm".to_owned(), Some("v6".to_owned())),
            "i386" | "i686" => ("386".to_owned(), variant),
            _ => (arch, variant),
        };
        let variant = variant.map(|v| {
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                format!("v{v}")
            } else {
                v
            }
        });
        Platform {
            os,
            architecture,
            variant,
        }
    }
}

/// Rust's `target_arch` as Go's `GOARCH` and default variant.
fn goarch(rust_arch: &str, little_endian: bool) -> (&str, Option<&'static str>) {
    match rust_arch {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" if little_endian => ("ppc64le", None),
        "powerpc64" => ("ppc64", None),
        "powerpc" => ("ppc", None),
        "loongarch64" => ("loong64", None),
        "mips64" if little_endian => ("mips64le", None),
        "mips" if little_endian => ("mipsle", None),
        other => (other, None),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl From<&oci_spec::image::Platform> for Platform {
    fn from(p: &oci_spec::image::Platform) -> Self {
        Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone(),
        }
    }
}

/// `vMAJOR[.MINOR]` as numbers, with the architecture's default for a missing variant, for the
/// architectures whose variants are ordered levels: a CPU of level N runs code for any level ≤ N.
fn variant_level(architecture: &str, variant: Option<&str>) -> Option<(u32, u32)> {
    let default = match architecture {
        "arm64" => (8, 0),
        "arm" => (7, 0),
        "amd64" => (1, 0),
        _ => return None,
    };
    let Some(variant) = variant else {
        return Some(default);
    };
    let digits = variant.strip_prefix('v')?;
    let (major, minor) = digits.split_once('.').unwrap_or((digits, "0"));
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// How well a manifest for `have` suits a host of `want`: `None` if it cannot run there, else a
/// rank where higher is better.
fn match_rank(want: &Platform, have: &Platform) -> Option<(u32, u32)> {
    if want.os != have.os || want.architecture != have.architecture {
        return None;
    }
    let arch = want.architecture.as_str();
    let levels = (
        variant_level(arch, want.variant.as_deref()),
        variant_level(arch, have.variant.as_deref()),
    );
    match levels {
        (Some(want_level), Some(have_level)) => (have_level <= want_level).then_some(have_level),
        _ => match (&want.variant, &have.variant) {
            (w, h) if w == h => Some((1, 0)),
            (None, Some(_)) => Some((0, 0)),
            _ => None,
        },
    }
}

/// Picks the manifest for `want` from `index`: same OS and architecture, and the best variant.
///
/// For `arm64`, `arm` and `amd64` the variant is a level (a missing one is `v8`, `v7` and `v1`)
/// and the highest level not above the wanted one wins, as containerd's matcher does (an `arm/v7`
/// host takes `v7`, then `v6`, then `v5`). Other architectures need an equal variant, or take any
/// when none is wanted (an entry without one first). Ties go to the first entry in the index.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    want: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    let want_normal = want.normalized();
    let mut best: Option<(&Descriptor, (u32, u32))> = None;
    for descriptor in index.manifests() {
        let Some(platform) = descriptor.platform() else {
            continue;
        };
        let have = Platform::from(platform).normalized();
        if let Some(rank) = match_rank(&want_normal, &have) {
            if best.is_none_or(|(_, best_rank)| rank > best_rank) {
                best = Some((descriptor, rank));
            }
        }
    }
    match best {
        Some((descriptor, _)) => Ok(descriptor),
        None => {
            let mut available: Vec<String> = Vec::new();
            for platform in index
                .manifests()
                .iter()
                .filter_map(|d| d.platform().as_ref())
            {
                let name = Platform::from(platform).to_string();
                if !available.contains(&name) {
                    available.push(name);
                }
            }
            Err(ManifestError::NoMatchingPlatform {
                want: want.clone(),
                available,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::tests::{digest_of, index_json};
    use super::super::{descriptor_digest, parse_manifest, Manifest};
    use super::*;

    fn index(platforms: &[&str]) -> ImageIndex {
        match parse_manifest(None, index_json(None, platforms).as_bytes()).unwrap() {
            Manifest::Index(index) => index,
            Manifest::Image(_) => panic!("parsed as an image"),
        }
    }

    fn pick(platforms: &[&str], want: &str) -> Result<String, ManifestError> {
        let index = index(platforms);
        let chosen = select_platform(&index, &Platform::parse(want).unwrap())?;
        let chosen = descriptor_digest(chosen).unwrap().to_string();
        Ok(platforms
            .iter()
            .find(|p| digest_of(p) == chosen)
            .unwrap()
            .to_string())
    }

    #[test]
    fn platforms_parse_normalise_and_display() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            Platform::parse("Linux/x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/aarch64/8").unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(
            Platform::parse("linux/armhf").unwrap().to_string(),
            "linux/arm/v7"
        );
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v1/x",
            "linux/am d64",
        ] {
            let err = Platform::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn rust_architectures_map_to_goarch_names() {
        assert_eq!(goarch("x86_64", true), ("amd64", None));
        assert_eq!(goarch("aarch64", true), ("arm64", Some("v8")));
        assert_eq!(goarch("arm", true), ("arm", Some("v7")));
        assert_eq!(goarch("x86", true), ("386", None));
        assert_eq!(goarch("powerpc64", true), ("ppc64le", None));
        assert_eq!(goarch("powerpc64", false), ("ppc64", None));
        assert_eq!(goarch("s390x", false), ("s390x", None));
        assert_eq!(goarch("riscv64", true), ("riscv64", None));
        let host = Platform::host();
        assert_eq!(host.os, std::env::consts::OS);
        assert!(!host.architecture.is_empty() && host.architecture != "x86_64");
    }

    #[test]
    fn the_exact_platform_is_selected() {
        let all = [
            "linux/amd64",
            "linux/arm64/v8",
            "linux/s390x",
            "linux/ppc64le",
        ];
        assert_eq!(pick(&all, "linux/amd64").unwrap(), "linux/amd64");
        assert_eq!(pick(&all, "linux/s390x").unwrap(), "linux/s390x");
        assert_eq!(pick(&all, "linux/ppc64le").unwrap(), "linux/ppc64le");
    }

    #[test]
    fn arm64_without_a_variant_is_v8() {
        assert_eq!(
            pick(&["linux/amd64", "linux/arm64"], "linux/arm64/v8").unwrap(),
            "linux/arm64"
        );
        assert_eq!(
            pick(&["linux/arm64/v8"], "linux/arm64").unwrap(),
            "linux/arm64/v8"
        );
        assert!(pick(&["linux/arm64/v9"], "linux/arm64").is_err());
    }

    #[test]
    fn arm_v7_prefers_v7_then_v6_then_v5() {
        let all = [
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm/v8",
        ];
        assert_eq!(pick(&all, "linux/arm/v7").unwrap(), "linux/arm/v7");
        assert_eq!(pick(&all[..2], "linux/arm/v7").unwrap(), "linux/arm/v6");
        assert_eq!(pick(&all[..1], "linux/arm/v7").unwrap(), "linux/arm/v5");
        assert!(pick(&all[3..], "linux/arm/v7").is_err());
        assert!(pick(&["linux/arm/v7"], "linux/arm/v6").is_err());
        assert_eq!(pick(&["linux/arm"], "linux/arm/v7").unwrap(), "linux/arm");
    }

    #[test]
    fn amd64_levels_fall_back_to_lower_ones_and_missing_is_v1() {
        let all = ["linux/amd64", "linux/amd64/v2", "linux/amd64/v3"];
        assert_eq!(pick(&all, "linux/amd64/v3").unwrap(), "linux/amd64/v3");
        assert_eq!(pick(&all, "linux/amd64/v4").unwrap(), "linux/amd64/v3");
        assert_eq!(pick(&all, "linux/amd64/v2").unwrap(), "linux/amd64/v2");
        assert_eq!(pick(&all, "linux/amd64").unwrap(), "linux/amd64");
        assert_eq!(pick(&all[1..], "linux/amd64/v1").unwrap_err().to_string(),
            "no manifest for linux/amd64/v1 in the index; available: linux/amd64/v2, linux/amd64/v3");
    }

    #[test]
    fn other_architectures_need_an_equal_variant_unless_none_is_wanted() {
        let all = ["linux/riscv64/rva23", "linux/riscv64"];
        assert_eq!(pick(&all, "linux/riscv64").unwrap(), "linux/riscv64");
        assert_eq!(
            pick(&all[..1], "linux/riscv64").unwrap(),
            "linux/riscv64/rva23"
        );
        assert_eq!(
            pick(&all, "linux/riscv64/rva23").unwrap(),
            "linux/riscv64/rva23"
        );
        assert!(pick(&all[1..], "linux/riscv64/rva23").is_err());
    }

    #[test]
    fn a_missing_platform_lists_what_is_available() {
        let err = pick(
            &["linux/amd64", "linux/arm64/v8", "linux/amd64"],
            "linux/s390x",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no manifest for linux/s390x in the index; available: linux/amd64, linux/arm64/v8"
        );
        let err = pick(&[], "linux/s390x").unwrap_err();
        assert!(err.to_string().ends_with("available: none"), "{err}");
        assert!(pick(&["windows/amd64"], "linux/amd64").is_err());
    }
}
