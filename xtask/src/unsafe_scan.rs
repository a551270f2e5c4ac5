//! A text scan of Rust sources for unsafe code (`unsafe {`, `unsafe fn`, `unsafe impl`,
//! `unsafe trait`, `unsafe extern`), ignoring comments and string or char literals.
//!
//! The workspace lints already deny `unsafe_code`; this scan also catches a file that escapes
//! them (an `#![allow(unsafe_code)]`, a crate outside the workspace, a build script).

use std::path::{Path, PathBuf};

/// One occurrence of unsafe code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) path: PathBuf,
    /// 1-based line of the `unsafe` keyword.
    pub(crate) line: usize,
    /// What follows the keyword: `{`, `fn`, `impl`, `trait` or `extern`.
    pub(crate) what: &'static str,
}

/// The outcome of scanning a tree.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) files: usize,
    pub(crate) findings: Vec<Finding>,
}

/// Why a tree could not be scanned.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Scans every `.rs` file under `root`, skipping `allowed` directories, hidden directories
/// and directories named `target`.
pub(crate) fn scan_tree(root: &Path, allowed: &[PathBuf]) -> Result<Scan, ScanError> {
    let mut scan = Scan::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let read_err = |source| ScanError::Read {
            path: dir.clone(),
            source,
        };
        let mut entries = std::fs::read_dir(&dir)
            .map_err(read_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_err)?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // DirEntry::file_type does not follow symlinks, so a link cannot loop the walk.
            let file_type = entry.file_type().map_err(|source| ScanError::Read {
                path: path.clone(),
                source,
            })?;
            if file_type.is_dir() {
                let skip =
                    name.starts_with('.') || name == "target" || allowed.iter().any(|a| a == &path);
                if !skip {
                    pending.push(path);
                }
            } else if file_type.is_file() && name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path).map_err(|source| ScanError::Read {
                    path: path.clone(),
                    source,
                })?;
                scan.files += 1;
                scan.findings
                    .extend(find_unsafe(&text).into_iter().map(|(line, what)| Finding {
                        path: path.clone(),
                        line,
                        what,
                    }));
            }
        }
    }
    Ok(scan)
}

/// Returns the 1-based line and kind of every unsafe construct in the source text.
pub(crate) fn find_unsafe(source: &str) -> Vec<(usize, &'static str)> {
    let code = strip_comments_and_literals(source);
    let mut found = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < code.len() {
        let c = code[i];
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if is_ident(c) {
            let start = i;
            while i < code.len() && is_ident(code[i]) {
                i += 1;
            }
            if code[start..i].iter().copied().eq("unsafe".chars()) {
                if let Some(what) = following_token(&code[i..]) {
                    found.push((line, what));
                }
            }
            continue;
        }
        i += 1;
    }
    found
}

/// The construct named by the token after `unsafe`, if it is one we report.
fn following_token(rest: &[char]) -> Option<&'static str> {
    let start = rest.iter().position(|c| !c.is_whitespace())?;
    let rest = &rest[start..];
    if rest.first() == Some(&'{') {
        return Some("{");
    }
    let end = rest
        .iter()
        .position(|c| !is_ident(*c))
        .unwrap_or(rest.len());
    let word: String = rest[..end].iter().collect();
    ["fn", "impl", "trait", "extern"]
        .into_iter()
        .find(|w| *w == word)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replaces comments and the contents of string and char literals with spaces, keeping
/// newlines so that line numbers still hold.
fn strip_comments_and_literals(source: &str) -> Vec<char> {
    let s: Vec<char> = source.chars().collect();
    let mut out = Vec::with_capacity(s.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < s.len() && s[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0usize;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.extend([' ', ' ']);
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.extend([' ', ' ']);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(s[i]));
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(&s, i) {
            // r"..", r#".."#, br"..", cr"..": no escapes, ends at a quote and as many hashes.
            let open = s[i..].iter().position(|&c| c == '"').unwrap_or(0) + 1;
            out.extend(std::iter::repeat_n(' ', open));
            i += open;
            while i < s.len() {
                let closes = s[i] == '"' && (1..=hashes).all(|k| s.get(i + k) == Some(&'#'));
                if closes {
                    out.extend(std::iter::repeat_n(' ', hashes + 1));
                    i += hashes + 1;
                    break;
                }
                out.push(blank(s[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < s.len() && s[i] != '"' {
                if s[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < s.len() {
                    out.push(blank(s[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || s.get(i + 2) == Some(&'\'')) {
            // A char literal ('a', '\n', '\''), as opposed to a lifetime ('a).
            out.push(' ');
            i += 1;
            if s.get(i) == Some(&'\\') {
                // The escaped char may itself be a quote: '\''.
                out.extend([' ', ' ']);
                i += 2;
            }
            while i < s.len() && s[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// If a raw string literal starts at `i`, how many `#` it uses.
fn raw_string_start(s: &[char], i: usize) -> Option<usize> {
    if i > 0 && is_ident(s[i - 1]) {
        return None;
    }
    let mut j = i;
    if matches!(s.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if s.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = s[j..].iter().take_while(|&&c| c == '#').count();
    (s.get(j + hashes) == Some(&'"')).then_some(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The keyword is spelled with an escape in these literals so that the scan of this very
    // file (which blanks literals anyway) and a reader's grep both stay quiet.
    const KW: &str = "\x75nsafe";

    #[test]
    fn block_fn_impl_are_found_with_their_lines() {
        let src = format!(
            "fn a() {{\n    let x = {KW} {{ f() }};\n}}\n{KW} fn b() {{}}\n{KW} impl Send for T {{}}\n"
        );
        assert_eq!(find_unsafe(&src), [(2, "{"), (4, "fn"), (5, "impl")]);
    }

    #[test]
    fn block_on_the_next_line_is_found() {
        let src = format!("let x = {KW}\n{{\n    f()\n}};\n");
        assert_eq!(find_unsafe(&src), [(1, "{")]);
    }

    #[test]
    fn comments_are_ignored() {
        let src = format!(
            "// {KW} {{ }}\n/// {KW} fn doc\n/* {KW} impl\n /* nested */ {KW} {{ */\nfn ok() {{}}\n"
        );
        assert_eq!(find_unsafe(&src), []);
    }

    #[test]
    fn string_and_char_literals_are_ignored() {
        let src = format!(
            "let a = \"{KW} {{\";\nlet q = '\\''; let n = '\\n';\nlet b = r#\"{KW} fn \"quoted\"\"#;\nlet c = '\"';\nlet d = \"\\\"{KW} impl\";\n"
        );
        assert_eq!(find_unsafe(&src), []);
    }

    #[test]
    fn code_after_a_literal_is_still_scanned() {
        let src = format!("let c = '\"'; let e = \"x\"; {KW} {{ g() }}\nfn f<'a>(x: &'a u8) {{ {KW} {{ h() }} }}\n");
        assert_eq!(find_unsafe(&src), [(1, "{"), (2, "{")]);
    }

    #[test]
    fn identifiers_containing_the_word_are_not_unsafe_code() {
        let src = format!("let my_{KW} = 1;\nfn {KW}_thing() {{}}\n#![deny({KW}_code)]\n");
        assert_eq!(find_unsafe(&src), []);
    }

    #[test]
    fn scan_tree_skips_allowed_hidden_and_target_dirs() {
        let root = std::env::temp_dir().join(format!("xtask-scan-{}", std::process::id()));
        let write = |rel: &str| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
            std::fs::write(&path, format!("fn f() {{ {KW} {{ g() }} }}\n")).expect("write");
        };
        write("crates/linux/src/lib.rs");
        write("crates/other/src/lib.rs");
        write("target/debug/build/out.rs");
        write(".git/hooks/x.rs");
        let scan = scan_tree(&root, &[root.join("crates/linux")]);
        std::fs::remove_dir_all(&root).expect("cleanup");
        let scan = scan.expect("scan");
        assert_eq!(scan.files, 1);
        assert_eq!(scan.findings.len(), 1);
        assert!(scan.findings[0].path.ends_with("crates/other/src/lib.rs"));
    }
}
