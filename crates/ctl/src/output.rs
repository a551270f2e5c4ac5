//! What `testudoctl` prints: aligned tables for people, JSON values for scripts.

use std::time::SystemTime;

use serde_json::{json, Value};
use testudo_client::images::Image;
use testudo_client::namespaces::Namespace;

/// Rows under `headers`, each column as wide as its widest cell, two spaces apart; no trailing
/// spaces.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            out.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// An API time in RFC 3339 (UTC, seconds); empty when absent or out of range.
pub(crate) fn time<T>(timestamp: Option<T>) -> String
where
    SystemTime: TryFrom<T>,
{
    timestamp
        .and_then(|t| SystemTime::try_from(t).ok())
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_default()
}

/// Bytes as people read them: `512 B`, `1.5 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scaled = bytes;
    let mut tenths = 0;
    while scaled >= 1024 && unit < UNITS.len() - 1 {
        tenths = (scaled % 1024) * 10 / 1024;
        scaled /= 1024;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{scaled}.{tenths} {}", UNITS[unit])
    }
}

/// The short form of a digest for tables: the algorithm and 12 hexadecimal digits.
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", &hex[..hex.len().min(12)]),
        None => digest.to_owned(),
    }
}

pub(crate) fn namespace_rows(namespaces: &[Namespace]) -> Vec<Vec<String>> {
    namespaces
        .iter()
        .map(|n| vec![n.name.clone(), time(n.created_at)])
        .collect()
}

pub(crate) fn namespace_json(namespace: &Namespace) -> Value {
    json!({
        "name": namespace.name,
        "tags": namespace.tags,
        "created_at": time(namespace.created_at),
    })
}

pub(crate) fn image_rows(images: &[Image]) -> Vec<Vec<String>> {
    images
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                short_digest(&i.digest),
                size(i.size_bytes),
                i.layers.to_string(),
                time(i.created_at),
            ]
        })
        .collect()
}

pub(crate) fn image_json(image: &Image) -> Value {
    json!({
        "name": image.name,
        "digest": image.digest,
        "manifest_digest": image.manifest_digest,
        "size_bytes": image.size_bytes,
        "layers": image.layers,
        "created_at": time(image.created_at),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn table_columns_are_aligned_to_their_widest_cell() {
        let rows = vec![
            vec!["default".to_owned(), "x".to_owned()],
            vec!["a".to_owned(), "longer".to_owned()],
        ];
        assert_eq!(
            table(&["NAME", "CREATED"], &rows),
            "NAME     CREATED\ndefault  x\na        longer\n"
        );
    }

    #[test]
    fn sizes_are_shown_in_binary_units() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 20), "3.0 MiB");
    }

    #[test]
    fn a_digest_is_shortened_to_twelve_digits() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef"),
            "sha256:0123456789ab"
        );
    }
}
