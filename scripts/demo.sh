#!/usr/bin/env bash
# The main job end to end, as root: builds testudo (scripts/build.sh), testudod and testudoctl,
# starts testudod on a temporary root and socket, builds a busybox image as an OCI layout tar from
# busybox-static (tar, sha256sum and python3; no network), imports it, and runs a container that
# prints from inside with `testudoctl run --rm`, attached to the daemon's default bridge network
# (a bridge of the demo's own). The daemon and everything it made (its bridge and NAT rules
# included) are removed on exit, however the script ends.
#
# Usage: bash scripts/demo.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v cargo >/dev/null || PATH="${HOME:-/root}/.cargo/bin:$PATH"

if [[ "$(id -u)" -ne 0 ]]; then
    echo "demo.sh: must run as root (containers need namespaces, mounts and cgroups)" >&2
    exit 1
fi
BUSYBOX=/bin/busybox
if [[ ! -x "$BUSYBOX" ]] || ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "demo.sh: $BUSYBOX must be a static busybox (run: bash scripts/setup.sh)" >&2
    exit 1
fi

echo "==> building the runtime (scripts/build.sh), testudod and testudoctl"
TESTUDO="$(bash "$REPO/scripts/build.sh")"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
# The dev profile: the daemon and client are not on a container's start-up path.
(cd "$REPO" && cargo build -q -p testudo-daemon -p testudo-ctl)
TESTUDOD="$TARGET_DIR/debug/testudod"
TESTUDOCTL="$TARGET_DIR/debug/testudoctl"

WORK="$(mktemp -d /tmp/testudo-demo.XXXXXX)"
SOCKET="$WORK/run/testudod.sock"
CGROUP_PARENT="/testudo-demo-$$"
BRIDGE="tdemo$$"
# The daemon turns IP forwarding on with its first bridge network; the demo puts it back.
IP_FORWARD="$(cat /proc/sys/net/ipv4/ip_forward)"
DAEMON_PID=""

# Deletes the demo's bridge and the NAT rules tagged with it in testudo's nftables table (the
# daemon keeps a network's bridge set up for later containers, as podman does).
remove_bridge() {
    ip link del "$BRIDGE" 2>/dev/null || true
    nft -j list table inet testudo 2>/dev/null | python3 -c '
import json, subprocess, sys
tag = "network:" + sys.argv[1]
for item in json.load(sys.stdin)["nftables"]:
    rule = item.get("rule")
    if rule and rule.get("comment") == tag:
        subprocess.run(["nft", "delete", "rule", "inet", "testudo", rule["chain"],
                        "handle", str(rule["handle"])], check=False)
' "$BRIDGE" || true
}

cleanup() {
    if [[ -n "$DAEMON_PID" ]]; then
        # Containers outlive the daemon by design: remove them before stopping it.
        "$TESTUDOCTL" --socket "$SOCKET" rm -f demo >/dev/null 2>&1 || true
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
        remove_bridge
        echo "$IP_FORWARD" >/proc/sys/net/ipv4/ip_forward
    fi
    for hierarchy in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
        find "$hierarchy${CGROUP_PARENT#/}" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "==> testudod --root $WORK/root --socket $SOCKET"
"$TESTUDOD" --root "$WORK/root" --socket "$SOCKET" --testudo-binary "$TESTUDO" \
    --log-root "$WORK/logs" --cgroup-parent "$CGROUP_PARENT" --default-bridge "$BRIDGE" \
    2>"$WORK/testudod.log" &
DAEMON_PID=$!
ctl() { "$TESTUDOCTL" --socket "$SOCKET" "$@"; }
for _ in $(seq 200); do
    ctl ns ls >/dev/null 2>&1 && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/testudod.log" >&2; exit 1; }
    sleep 0.05
done

echo "==> image: busybox-static as an OCI layout tar"
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS"/{bin,etc,proc,sys,dev,tmp}
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [[ -e "$ROOTFS/bin/$applet" ]] || ln -s busybox "$ROOTFS/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOTFS/etc/passwd"
echo 'root:x:0:' >"$ROOTFS/etc/group"
echo "a file in the image" >"$ROOTFS/etc/motd"
LAYOUT="$WORK/layout"
mkdir -p "$LAYOUT/blobs/sha256"
tar -C "$ROOTFS" --numeric-owner --owner=0 --group=0 -cf "$WORK/layer.tar" .
python3 - "$LAYOUT" "$WORK/layer.tar" <<'EOF'
import hashlib, json, os, shutil, sys
layout, layer = sys.argv[1], sys.argv[2]
def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs/sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}
layer_bytes = open(layer, "rb").read()
layer_ref = blob(layer_bytes)
config = {
    "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
    "os": "linux",
    "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
    "rootfs": {"type": "layers", "diff_ids": [layer_ref["digest"]]},
}
config_ref = blob(json.dumps(config).encode())
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_ref},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_ref}],
}
manifest_ref = blob(json.dumps(manifest).encode())
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_ref,
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
    }],
}
json.dump(index, open(os.path.join(layout, "index.json"), "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(layout, "oci-layout"), "w"))
EOF
tar -C "$LAYOUT" -cf "$WORK/busybox.tar" .
(cd "$LAYOUT/blobs/sha256" && for f in *; do echo "$f  $f"; done | sha256sum --check --quiet)
ctl image import "$WORK/busybox.tar" --name demo.local/busybox

echo "==> testudoctl run --rm --name demo demo.local/busybox:v1 sh -c ..."
status=0
ctl run --rm --name demo -e GREETING="hello from testudo" demo.local/busybox:v1 \
    sh -c 'echo "$GREETING"; echo "hostname: $(hostname)"; echo "address: $(hostname -i)"; echo "id: $(id)"; cat /etc/motd' \
    || status=$?
echo "==> the container exited with status $status"
exit "$status"
