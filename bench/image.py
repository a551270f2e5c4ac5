#!/usr/bin/env python3
"""Pull and unpack of a multi-layer image: testudo against containerd, side by side, plus the
raw `tar -x` of the same layers as the unpack floor.

The benchmark builds an OCI image of about --size-mb MB (--layers gzip layers of many small and
some large files, semi-compressible), pushes it to a private reference registry on 127.0.0.1,
then in every iteration, interleaved with rotating order:
  - testudo: `pull` (the engine's example binary) into a fresh root: fetch + unpack to overlay
    snapshots; it reports its fetch and unpack phases;
  - containerd: a fresh private containerd, `ctr image pull --plain-http` (which unpacks into the
    overlayfs snapshotter), timed from the request to the end of the unpack;
  - tar: `tar -xzf` of each layer blob into one directory (decompression + extraction).
It prints medians (min-max), MB/s over the compressed image size, and the ratios the issue
names. Needs root, docker-registry, skopeo, containerd/ctr, tar. Standard library only.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    sys.exit(f"image.py: {what} did not happen within {timeout}s")


def text_pool(rng, size=4 << 20):
    """Semi-compressible bytes (about 3:1 with gzip): words with random numbers."""
    words = [b"layer", b"image", b"testudo", b"container", b"blob", b"digest", b"unpack"]
    parts, total = [], 0
    while total < size:
        part = rng.choice(words) + b"%d " % rng.randrange(1 << 30)
        parts.append(part)
        total += len(part)
    return b"".join(parts)[:size]


def text_block(rng, pool, size):
    """`size` bytes from a random offset of the pool (repeats lie beyond gzip's window)."""
    start = rng.randrange(0, len(pool) - size)
    return pool[start:start + size]


def build_layer(rng, pool, index, target_bytes):
    """A gzip'd tar of many small files and a few large ones; returns (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        written = 0
        n = 0
        dirs = [f"layer{index}/d{k}" for k in range(20)]
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        while written < target_bytes:
            big = n % 50 == 0
            size = rng.randrange(1 << 20, 4 << 20) if big else rng.randrange(512, 64 << 10)
            data = text_block(rng, pool, size)
            info = tarfile.TarInfo(f"{dirs[n % len(dirs)]}/f{n}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
            written += size
            n += 1
    tar_bytes = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    blob = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
    return blob, diff_id


def write_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs/sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def build_image(layout, size_mb, layers, seed):
    rng = random.Random(seed)
    os.makedirs(os.path.join(layout, "blobs/sha256"))
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    per_layer = size_mb * 1_000_000 // layers * 3  # text compresses about 3:1
    pool = text_pool(rng)
    descs, diff_ids = [], []
    for i in range(layers):
        blob, diff_id = build_layer(rng, pool, i, per_layer)
        d = write_blob(layout, blob)
        d["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
        descs.append(d)
        diff_ids.append(diff_id)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = write_blob(layout, json.dumps({
        "architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())
    config["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = write_blob(layout, json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": descs}).encode())
    manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    manifest["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [manifest]}, f)
    return descs, sum(d["size"] for d in descs)


class Registry:
    def __init__(self, workdir):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        config = os.path.join(workdir, "registry.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {workdir}/registry\n"
                    f"http:\n  addr: {self.address}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ready, "the registry listening")

    def ready(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Containerd:
    """A private containerd with its own root, state and socket."""

    def __init__(self, workdir):
        self.dir = tempfile.mkdtemp(prefix="ctrd-", dir=workdir)
        self.sock = os.path.join(self.dir, "containerd.sock")
        config = os.path.join(self.dir, "config.toml")
        with open(config, "w") as f:
            f.write(f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\n'
                    f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.sock}"\n')
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(["containerd", "--config", config],
                                     stdout=self.log, stderr=self.log)
        wait_for(lambda: subprocess.run(["ctr", "-a", self.sock, "version"],
                                        capture_output=True).returncode == 0,
                 "containerd answering")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        subprocess.run(["umount", "-R", self.dir], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def cpu_children():
    r = os.times()
    return r.children_user + r.children_system


def run_testudo(args, ref, workdir):
    root = tempfile.mkdtemp(prefix="testudo-", dir=workdir)
    try:
        t0, c0 = time.monotonic(), cpu_children()
        out = subprocess.run([args.pull_bin, "--root", root, "--insecure", ref.split("/")[0], ref],
                             capture_output=True, text=True)
        wall, cpu = time.monotonic() - t0, cpu_children() - c0
        if out.returncode != 0:
            sys.exit(f"image.py: testudo pull failed: {out.stderr.strip()}")
        phases = json.loads(out.stdout.strip().splitlines()[-1])
        return {"wall": wall, "cpu": cpu, "fetch": phases["fetch_seconds"],
                "unpack": phases["unpack_seconds"]}
    finally:
        subprocess.run(["umount", "-R", root], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def run_containerd(ref, workdir):
    ctrd = Containerd(workdir)
    try:
        t0, c0 = time.monotonic(), cpu_children()
        out = subprocess.run(["ctr", "-a", ctrd.sock, "-n", "bench", "images", "pull",
                              "--plain-http", ref], capture_output=True, text=True)
        wall, cpu = time.monotonic() - t0, cpu_children() - c0
        if out.returncode != 0:
            sys.exit(f"image.py: ctr pull failed: {out.stderr.strip()}")
        # ctr's CPU is the client only; the daemon's work shows in wall time.
        return {"wall": wall, "cpu_client": cpu}
    finally:
        ctrd.stop()


def run_tar(layout, layers, workdir):
    target = tempfile.mkdtemp(prefix="tar-", dir=workdir)
    try:
        t0, c0 = time.monotonic(), cpu_children()
        for d in layers:
            blob = os.path.join(layout, "blobs/sha256", d["digest"].split(":")[1])
            subprocess.run(["tar", "-xzf", blob, "-C", target], check=True)
        return {"wall": time.monotonic() - t0, "cpu": cpu_children() - c0}
    finally:
        shutil.rmtree(target, ignore_errors=True)


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pull-bin", default=os.path.join(REPO, "target/release/examples/pull"))
    p.add_argument("--size-mb", type=int, default=200)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("image.py: run as root (overlay mounts, containerd)")
    if not os.access(args.pull_bin, os.X_OK):
        sys.exit(f"image.py: {args.pull_bin} missing: "
                 "cargo build --release -p testudo-engine --example pull")

    workdir = tempfile.mkdtemp(prefix="testudo-bench-image-", dir="/var/tmp")
    registry = None
    try:
        layout = os.path.join(workdir, "layout")
        print(f"building a {args.size_mb} MB image of {args.layers} layers ...", flush=True)
        layers, image_bytes = build_image(layout, args.size_mb, args.layers, args.seed)
        registry = Registry(workdir)
        ref = f"{registry.address}/bench/image:v1"
        subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "--preserve-digests",
                        "--dest-tls-verify=false", f"oci:{layout}:bench", f"docker://{ref}"],
                       check=True)
        mb = image_bytes / 1e6
        print(f"image: {mb:.1f} MB compressed in {len(layers)} layers, served at {ref}")

        samples = {"testudo": [], "containerd": [], "tar": []}
        runners = {
            "testudo": lambda: run_testudo(args, ref, workdir),
            "containerd": lambda: run_containerd(ref, workdir),
            "tar": lambda: run_tar(layout, layers, workdir),
        }
        order = list(runners)
        for name in order:  # warm-up, unrecorded: page cache, binaries
            runners[name]()
        for i in range(args.iterations):
            for name in order[i % 3:] + order[:i % 3]:
                samples[name].append(runners[name]())
            print(f"iteration {i + 1}/{args.iterations} done", flush=True)

        result = {"image_mb": mb, "layers": len(layers), "iterations": args.iterations}
        for name, runs in samples.items():
            result[name] = {k: summary([r[k] for r in runs]) for k in runs[0]}
        t, c, x = result["testudo"], result["containerd"], result["tar"]
        result["ratios"] = {
            "containerd_wall_over_testudo_wall": c["wall"]["median"] / t["wall"]["median"],
            "testudo_unpack_over_tar": t["unpack"]["median"] / x["wall"]["median"],
        }
        print()
        print(f"{'':28} {'median s':>9} {'min-max s':>15} {'MB/s':>8}")
        rows = [("testudo pull+unpack", t["wall"]), ("  of which fetch", t["fetch"]),
                ("  of which unpack", t["unpack"]), ("containerd pull+unpack", c["wall"]),
                ("tar -xzf of the layers", x["wall"])]
        for label, s in rows:
            print(f"{label:28} {s['median']:9.2f} {s['min']:7.2f}-{s['max']:<7.2f} "
                  f"{mb / s['median']:8.1f}")
        r = result["ratios"]
        print(f"\ncontainerd / testudo (wall): {r['containerd_wall_over_testudo_wall']:.2f}x "
              f"(target >= 1.5x)")
        print(f"testudo unpack / tar -x:     {r['testudo_unpack_over_tar']:.2f}x (target <= 2x)")
        out = args.out or os.path.join(
            REPO, "bench/results",
            "image-" + datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M%S") + ".json")
        with open(out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"result: {out}")
    finally:
        if registry:
            registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
