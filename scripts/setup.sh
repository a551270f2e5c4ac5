#!/usr/bin/env bash
# Sets up a Debian bookworm machine, as root, for building, testing and benchmarking testudo.
# Idempotent: packages already installed are not fetched again. Quiet unless a step fails.
#
# Usage: bash scripts/setup.sh
set -euo pipefail

# System packages the build, the tests and the benchmarks use.
PACKAGES=(
    # peers and real clients the tests and benchmarks drive
    runc crun podman containerd
    # test images are built from busybox-static, never downloaded
    busybox-static
    # /usr/bin/time -v and -f %M measure peak RSS in the benchmarks
    time
    # scripts and tests: JSON editing, ip, ps/pgrep, unshare/nsenter, tarballs
    jq iproute2 procps util-linux bsdutils tar python3
    # linking Rust binaries, and crates that probe the system with pkg-config
    gcc libc6-dev pkg-config
    # newuidmap/newgidmap for user-namespace tests
    uidmap
    # image tests: the reference registry on 127.0.0.1, skopeo to seed it, htpasswd (bcrypt) for its
    # basic auth, openssl for the token server's signing certificate
    docker-registry skopeo apache2-utils openssl
    # networking tests: nft for NAT and published ports, the CNI plugins for cni mode
    nftables containernetworking-plugins
)

STEP=""
LOG="$(mktemp /tmp/testudo-setup.XXXXXX.log)"

step() {
    STEP="$1"
}

on_error() {
    local status=$?
    echo "setup.sh: FAILED at step: ${STEP} (exit ${status})" >&2
    if [[ -s "$LOG" ]]; then
        echo "setup.sh: last lines of ${LOG}:" >&2
        tail -n 30 "$LOG" >&2
    fi
    exit "$status"
}
trap on_error ERR

step "check we are root"
if [[ "$(id -u)" -ne 0 ]]; then
    echo "setup.sh: must run as root (it installs packages, and the tests need root)" >&2
    exit 1
fi

step "check the distribution"
if ! grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
    echo "setup.sh: warning: written for Debian bookworm; this is $(. /etc/os-release && echo "${PRETTY_NAME:-unknown}")" >&2
fi

step "find missing packages"
missing=()
for pkg in "${PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)" != "installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} > 0)); then
    export DEBIAN_FRONTEND=noninteractive
    step "apt-get update"
    apt-get update -qq >>"$LOG" 2>&1
    step "apt-get install ${missing[*]}"
    apt-get install -y -qq "${missing[@]}" >>"$LOG" 2>&1
    echo "setup.sh: installed ${missing[*]}"
else
    echo "setup.sh: all ${#PACKAGES[@]} system packages present"
fi

step "check the installed tools"
for tool in runc crun podman ctr busybox jq ip nft python3 gcc unshare docker-registry skopeo htpasswd openssl script; do
    command -v "$tool" >/dev/null || {
        echo "setup.sh: ${tool} not found on PATH after installing packages" >&2
        false
    }
done
[[ -x /usr/bin/time ]] || {
    echo "setup.sh: /usr/bin/time missing (package time)" >&2
    false
}
# Test root filesystems copy /bin/busybox alone, so it must not need a dynamic loader.
if ldd /bin/busybox >/dev/null 2>&1; then
    echo "setup.sh: /bin/busybox is dynamically linked; install busybox-static" >&2
    false
fi

step "check the Rust toolchain"
if ! command -v cargo >/dev/null; then
    if [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
        echo "setup.sh: cargo is installed in ${HOME:-/root}/.cargo/bin but not on PATH;" \
            "run: export PATH=\"\$HOME/.cargo/bin:\$PATH\"" >&2
    else
        echo "setup.sh: cargo not found: install Rust with rustup (the project expects a stable" \
            "toolchain with the rustfmt and clippy components)" >&2
    fi
    false
fi
for component in fmt clippy; do
    cargo "$component" --version >/dev/null 2>&1 || {
        echo "setup.sh: 'cargo ${component}' is missing: rustup component add" \
            "$([[ $component == fmt ]] && echo rustfmt || echo clippy)" >&2
        false
    }
done

rm -f "$LOG"
echo "setup.sh: ready ($(cargo --version), $(runc --version | head -n 1), $(crun --version | head -n 1))"
