#!/usr/bin/env bash
# Builds the testudo runtime, makes an OCI bundle from busybox-static in a temporary directory,
# and runs one container in the foreground, as root. Everything it creates is removed on exit.
#
# Usage: bash scripts/demo.sh
#   RUNTIME=/path/to/runtime   use that runtime instead of building target/release/testudo
#                              (any runc-compatible CLI: RUNTIME=runc checks the bundle part)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v cargo >/dev/null || PATH="${HOME:-/root}/.cargo/bin:$PATH"

if [[ "$(id -u)" -ne 0 ]]; then
    echo "demo.sh: must run as root (containers need namespaces, mounts and cgroups)" >&2
    exit 1
fi

if [[ -z "${RUNTIME:-}" ]]; then
    echo "==> building the runtime: scripts/build.sh"
    RUNTIME="$(bash "$REPO/scripts/build.sh")"
fi
if ! command -v "$RUNTIME" >/dev/null; then
    echo "demo.sh: runtime '$RUNTIME' not found" >&2
    exit 1
fi
BUSYBOX=/bin/busybox
if [[ ! -x "$BUSYBOX" ]] || ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "demo.sh: $BUSYBOX must be a static busybox (run: bash scripts/setup.sh)" >&2
    exit 1
fi

WORK="$(mktemp -d /tmp/testudo-demo.XXXXXX)"
BUNDLE="$WORK/bundle"
STATE="$WORK/state"
ID="demo-$$"

cleanup() {
    # A container left behind by an interrupted run still holds a cgroup and a state entry.
    if [[ -d "$STATE/$ID" ]]; then
        "$RUNTIME" --root "$STATE" delete --force "$ID" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "==> root filesystem: busybox-static in $BUNDLE/rootfs"
mkdir -p "$BUNDLE/rootfs"/{bin,proc,sys,dev,tmp,etc} "$STATE"
cp "$BUSYBOX" "$BUNDLE/rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [[ -e "$BUNDLE/rootfs/bin/$applet" ]] || ln -s busybox "$BUNDLE/rootfs/bin/$applet"
done

echo "==> config.json: $RUNTIME spec, edited with jq"
(cd "$BUNDLE" && "$RUNTIME" spec)
if [[ ! -s "$BUNDLE/config.json" ]]; then
    echo "demo.sh: '$RUNTIME spec' wrote no config.json" >&2
    exit 1
fi
# Without CAP_SYS_RESOURCE no runtime can raise a hard rlimit above the current one.
HARD_NOFILE="$(ulimit -Hn)"
[[ "$HARD_NOFILE" == unlimited ]] && HARD_NOFILE=null
jq --argjson hard "$HARD_NOFILE" '
    .process.args = ["/bin/sh", "-c", "echo hello from testudo; cat /proc/self/cgroup | head -3; hostname"]
    | .process.terminal = false
    | .hostname = "testudo-demo"
    | .process.rlimits = [(.process.rlimits // [])[]
        | if $hard != null and .type == "RLIMIT_NOFILE" and .hard > $hard
          then .hard = $hard | .soft = ([.soft, $hard] | min) else . end]
' "$BUNDLE/config.json" >"$BUNDLE/config.json.new"
mv "$BUNDLE/config.json.new" "$BUNDLE/config.json"

echo "==> $RUNTIME --root $STATE run --bundle $BUNDLE $ID"
status=0
(cd "$BUNDLE" && "$RUNTIME" --root "$STATE" run --bundle "$BUNDLE" "$ID" </dev/null) || status=$?
echo "==> container $ID exited with status $status"
exit "$status"
