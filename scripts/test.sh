#!/usr/bin/env bash
# Runs every check and test of the workspace, as CI does: rustfmt, clippy, the layering check,
# the release build of the runtime (integration tests run it), then `cargo test --workspace`
# with privileged tests required. Stops at the first failing step.
#
# Usage: bash scripts/test.sh        (as root; run scripts/setup.sh once before)
#   TESTUDO_REQUIRE_ROOT=0           let privileged tests skip instead of fail when not root
#   TESTUDO_TEST_TIMEOUT=SECONDS     limit for `cargo test` (default 4200, CI stops at 5400)
#
# Its last line is the summary of every test binary: `N passed, M failed[, K skipped]`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
command -v cargo >/dev/null || PATH="${HOME:-/root}/.cargo/bin:$PATH"

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
LOG="$TARGET_DIR/test.log"
export TESTUDO_REQUIRE_ROOT="${TESTUDO_REQUIRE_ROOT:-1}"
# Where integration tests outside the runtime-cli package find the binary built below.
export TESTUDO_BIN="$TARGET_DIR/release/testudo"

banner() {
    printf '\n==== %s ====\n' "$*"
}

fail() {
    echo "test.sh: FAILED: $*" >&2
    exit 1
}

banner "cargo fmt --all --check"
cargo fmt --all --check || fail "formatting differs (run: cargo fmt -p <package>)"

banner "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -q -- -D warnings || fail "clippy reported warnings or errors"

banner "cargo run -p xtask -- check-layers"
cargo run -q -p xtask -- check-layers || fail "layering check"

banner "scripts/build.sh (static release build of testudo)"
bash scripts/build.sh >/dev/null || fail "release build of the runtime"

banner "cargo test --workspace (TESTUDO_REQUIRE_ROOT=$TESTUDO_REQUIRE_ROOT, log: $LOG)"
mkdir -p "$TARGET_DIR"
status=0
# pipefail makes the status cargo's (or timeout's 124), not tee's.
# --no-fail-fast so that one failing test binary does not hide the results of the others.
timeout --kill-after=30 "${TESTUDO_TEST_TIMEOUT:-4200}" \
    cargo test --workspace --no-fail-fast 2>&1 </dev/null | tee "$LOG" || status=$?

# Every test binary (unit, integration, doc) ends with one `test result:` line.
read -r passed failed ignored binaries < <(
    awk '/^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i + 1) ~ /^passed;?$/) p += $i
                if ($(i + 1) ~ /^failed;?$/) f += $i
                if ($(i + 1) ~ /^ignored;?$/) s += $i
            }
            n++
         }
         END { printf "%d %d %d %d\n", p, f, s, n }' "$LOG"
)

if ((status == 124)); then
    echo "test.sh: cargo test timed out after ${TESTUDO_TEST_TIMEOUT:-4200}s" >&2
elif ((status != 0)); then
    echo "test.sh: cargo test exited with status $status" >&2
fi
if ((binaries == 0)); then
    echo "test.sh: no test binary reported a result" >&2
    ((status != 0)) || status=1
fi
echo "test.sh: $binaries test binaries, log in $LOG"
summary="$passed passed, $failed failed"
((ignored == 0)) || summary+=", $ignored skipped"
echo "$summary"
if ((status != 0 || failed != 0)); then
    exit 1
fi
