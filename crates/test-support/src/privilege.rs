//! The privilege gate of root-only tests.

use std::io::Write;

/// The environment variable that turns a skip into a failure (CI sets it to `1`).
pub const REQUIRE_ROOT_ENV: &str = "TESTUDO_REQUIRE_ROOT";

/// Returns true when the test may go on because the effective uid is 0.
///
/// Otherwise prints `SKIPPED (needs root): <test name>` to stderr and returns false, so the test
/// returns early; or panics when `TESTUDO_REQUIRE_ROOT=1`, so that nothing is silently skipped
/// in CI. The line bypasses libtest's output capture (it is written to the stderr handle, not
/// with `eprintln!`), so it shows even for a test that passes.
///
/// ```no_run
/// if !testudo_test_support::require_root() {
///     return;
/// }
/// ```
pub fn require_root() -> bool {
    let required = std::env::var(REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1");
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    match gate(effective_uid() == Some(0), required) {
        Gate::Run => true,
        Gate::Skip => {
            // Nothing more useful to do when stderr itself is gone.
            let _ = writeln!(std::io::stderr(), "SKIPPED (needs root): {test}");
            false
        }
        Gate::Fail => panic!("{test} needs root and {REQUIRE_ROOT_ENV}=1 forbids skipping it"),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Gate {
    Run,
    Skip,
    Fail,
}

fn gate(is_root: bool, required: bool) -> Gate {
    match (is_root, required) {
        (true, _) => Gate::Run,
        (false, false) => Gate::Skip,
        (false, true) => Gate::Fail,
    }
}

/// The effective uid, from the `Uid:` line of /proc/self/status (real, effective, saved, fs).
pub(crate) fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_always_runs() {
        assert_eq!(gate(true, false), Gate::Run);
        assert_eq!(gate(true, true), Gate::Run);
    }

    #[test]
    fn non_root_skips_unless_required() {
        assert_eq!(gate(false, false), Gate::Skip);
        assert_eq!(gate(false, true), Gate::Fail);
    }

    #[test]
    fn effective_uid_is_read() {
        assert!(effective_uid().is_some());
    }
}
