#!/usr/bin/env bash
# Builds the `testudo` binary (profile `runtime`: release, optimised for size) as a static PIE (no dynamic loader work at each of the several
# executions a container lifecycle costs) and installs it as target/release/testudo, the path the
# tests, the demo and the benchmarks use.
#
# The static build needs an explicit --target: with it, RUSTFLAGS reach only the binary's crates,
# not the build's proc-macros (which cannot be static). It is not position-independent either:
# each execution then skips relocating ~10k pointers and copying the pages that hold them (about 8%
# of a `run`'s CPU time here). The price is a fixed load address for a short-lived process that
# parses only the bundle configuration its caller wrote.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
command -v cargo >/dev/null || PATH="${HOME:-/root}/.cargo/bin:$PATH"

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
HOST="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --profile runtime -q --target "$HOST" -p testudo-runtime-cli
mkdir -p "$TARGET_DIR/release"
install -m 0755 "$TARGET_DIR/$HOST/runtime/testudo" "$TARGET_DIR/release/testudo.new"
mv -f "$TARGET_DIR/release/testudo.new" "$TARGET_DIR/release/testudo"
echo "$TARGET_DIR/release/testudo"
