#!/usr/bin/env python3
"""The node daemon side by side: testudod + testudoctl against podman (+ conmon) and containerd
(+ ctr and containerd-shim-runc-v2), on the same one-layer busybox-static image.

Runs as root. Builds the image locally (an OCI layout tar: no registry, no network) and loads
it into each stack (`testudoctl image import`, `podman import`, `ctr images import`), then
measures:

  run       `testudoctl run --rm IMAGE true` vs `podman run --rm` vs `ctr run --rm`, wall time
            of the client command, interleaved with rotating order (--iterations samples)
  idle RSS  of testudod and containerd once started with the image loaded and no container
            (RSS and PSS from /proc/<pid>/smaps_rollup)
  monitors  PSS summed over every monitor process with 1, 10 and 50 idle containers
            (`sleep`): testudo's `testudo monitor` processes (one per container, and as
            `testudo-cell` all the containers in one cell, so one monitor), podman's conmon,
            containerd's containerd-shim-runc-v2; and the cost of each further container

Each stack has a private root, state and socket in a temporary directory. podman and ctr use
their default runtime (crun 1.8 refuses the hybrid cgroup layout, so as in runtime.py the whole
benchmark runs in a private mount namespace without the cgroup2 mount at
/sys/fs/cgroup/unified). Prints medians (min-max), ratios and the issue's targets, and writes a
JSON result to bench/results/daemon-<date>.json. Python standard library only.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUSYBOX = "/bin/busybox"
UNIFIED = "/sys/fs/cgroup/unified"
PRIVATE_NS_ENV = "TESTUDO_BENCH_PRIVATE_NS"
IMAGE_NAME = "docker.io/library/bench-busybox:latest"
# podman and ctr need these here: no CAP_SYS_RESOURCE, so podman's raised rlimits fail.
PODMAN_RUN_FLAGS = ["--network", "none", "--ulimit", "nofile=1024:1024",
                    "--ulimit", "nproc=1024:1024"]
STACKS = ("testudo", "podman", "containerd")
MONITOR_COUNTS = (1, 10, 50)
KIB = 1024


class BenchError(Exception):
    """A stack failed to do what the benchmark asked."""


def run(cmd, **kwargs):
    out = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if out.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:6])} ...: exit {out.returncode}: "
                         f"{out.stderr.strip()[-400:]}")
    return out.stdout


def wait_for(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise BenchError(f"{what} did not happen within {timeout}s")


def progress(text):
    print(text, file=sys.stderr, flush=True)


# ---- the image -----------------------------------------------------------------------------


def rootfs_tar():
    """A busybox-static root filesystem as an uncompressed tar: /bin/busybox and the applets
    the benchmark runs, /etc/passwd for root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "etc", "proc", "sys", "dev", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in ("sh", "true", "sleep", "cat", "echo"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size, info.mode = len(passwd), 0o644
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


def oci_layout_tar(layer_tar, path):
    """An OCI image layout tar holding one image of one gzip layer, named IMAGE_NAME."""
    blobs = {}

    def blob(data, media_type):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps({
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                                   platform.machine()),
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
    }).encode()
    described = blob(manifest, "application/vnd.oci.image.manifest.v1+json")
    described["annotations"] = {"org.opencontainers.image.ref.name": "latest",
                                "io.containerd.image.name": IMAGE_NAME}
    index = json.dumps({"schemaVersion": 2, "manifests": [described]}).encode()
    with tarfile.open(path, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index)
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest.split(":")[1], data)


# ---- process memory ------------------------------------------------------------------------


def smaps_rollup(pid):
    values = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[key.lower()] = int(rest.split()[0])
    return values


def processes():
    """(pid, argv) of every process."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if argv:
            yield int(entry), argv


def monitor_pss(predicate):
    """The PSS (KiB) summed over the processes whose argv matches, and how many there are."""
    total, count = 0, 0
    for pid, argv in processes():
        if predicate(argv):
            try:
                total += smaps_rollup(pid)["pss"]
                count += 1
            except OSError:
                pass
    return total, count


# ---- the stacks ----------------------------------------------------------------------------


class Testudo:
    name = "testudo"

    def __init__(self, workdir, args):
        self.dir = tempfile.mkdtemp(prefix="testudo-", dir=workdir)
        self.sock = os.path.join(self.dir, "testudod.sock")
        self.log = open(os.path.join(self.dir, "testudod.log"), "w")
        self.ctl_bin = args.testudoctl
        self.monitor_marker = os.path.join(self.dir, "root")
        self.proc = subprocess.Popen(
            [args.testudod, "--root", os.path.join(self.dir, "root"), "--socket", self.sock,
             "--testudo-binary", args.testudo, "--log-root", os.path.join(self.dir, "logs"),
             "--cgroup-parent", "/testudo-bench-daemon", "--log-level", "warn"],
            stdout=self.log, stderr=self.log)
        wait_for(lambda: subprocess.run(self.ctl(["ns", "ls"]), capture_output=True)
                 .returncode == 0, "testudod answering")
        self.pid = self.proc.pid

    def ctl(self, argv):
        return [self.ctl_bin, "--socket", self.sock, *argv]

    def load(self, layout_tar):
        run(self.ctl(["image", "import", layout_tar]))

    # `--network none`, as podman is run here and as `ctr run` does by default: the figures
    # compare the daemons and monitors, not network setup (bench/network.py measures that).
    def run_rm_cmd(self, n):
        return self.ctl(["run", "--rm", "--network", "none", "--name", f"run-{n}", IMAGE_NAME,
                         "true"])

    def start_idle(self, n):
        run(self.ctl(["run", "-d", "--network", "none", "--name", f"idle-{n}", IMAGE_NAME,
                      "sleep", "3600"]))

    def remove_idle(self, n):
        run(self.ctl(["rm", "-f", f"idle-{n}"]))

    def is_monitor(self, argv):
        # `testudo monitor --state-dir <root>/containers/...`: only this daemon's.
        return (len(argv) > 1 and argv[1] == "monitor"
                and any(a.startswith(self.monitor_marker) for a in argv))

    def stop(self):
        subprocess.run(self.ctl(["rm", "-f", *[f"idle-{n}" for n in range(max(MONITOR_COUNTS))]]),
                       capture_output=True)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        subprocess.run(["umount", "-R", self.dir], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class TestudoCell:
    """The same testudod with its idle containers in one cell: one monitor for all of them."""
    name = "testudo-cell"

    def __init__(self, testudo):
        self.testudo = testudo
        run(testudo.ctl(["cell", "create", "--network", "none", "bench"]))

    def start_idle(self, n):
        run(self.testudo.ctl(["run", "-d", "--cell", "bench", "--name", f"cell-{n}", IMAGE_NAME,
                              "sleep", "3600"]))

    def remove_idle(self, n):
        run(self.testudo.ctl(["rm", "-f", f"cell-{n}"]))

    def is_monitor(self, argv):
        return self.testudo.is_monitor(argv)

    def stop(self):
        subprocess.run(self.testudo.ctl(["cell", "rm", "-f", "bench"]), capture_output=True)


class Podman:
    name = "podman"

    def __init__(self, workdir, _args):
        # podman refuses a runroot path longer than 50 characters.
        self.dir = tempfile.mkdtemp(prefix="p", dir=workdir)
        self.base = ["podman", "--root", os.path.join(self.dir, "root"),
                     "--runroot", os.path.join(self.dir, "runroot"),
                     "--tmpdir", os.path.join(self.dir, "tmp"),
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        self.pid = None

    def load(self, rootfs):
        run(self.base + ["import", "--change", "CMD=sh", rootfs, IMAGE_NAME])

    def run_rm_cmd(self, n):
        return self.base + ["run", "--rm", "--name", f"run-{n}", *PODMAN_RUN_FLAGS,
                            IMAGE_NAME, "true"]

    def start_idle(self, n):
        run(self.base + ["run", "-d", "--name", f"idle-{n}", *PODMAN_RUN_FLAGS, IMAGE_NAME,
                         "sleep", "3600"])

    def remove_idle(self, n):
        run(self.base + ["rm", "-f", "-t", "0", f"idle-{n}"])

    def is_monitor(self, argv):
        return os.path.basename(argv[0]) == "conmon" and any(self.dir in a for a in argv)

    def stop(self):
        subprocess.run(self.base + ["rm", "-a", "-f", "-t", "0"], capture_output=True)
        subprocess.run(["umount", "-R", self.dir], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class Containerd:
    """A private containerd with its own root, state and socket; ctr as the client."""
    name = "containerd"

    def __init__(self, workdir, _args):
        self.dir = tempfile.mkdtemp(prefix="ctrd-", dir=workdir)
        self.sock = os.path.join(self.dir, "containerd.sock")
        config = os.path.join(self.dir, "config.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\n'
                    f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.sock}"\n')
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(["containerd", "--config", config],
                                     stdout=self.log, stderr=self.log)
        self.ctr = ["ctr", "-a", self.sock, "-n", "bench"]
        wait_for(lambda: subprocess.run(self.ctr + ["version"], capture_output=True)
                 .returncode == 0, "containerd answering")
        self.pid = self.proc.pid

    def load(self, layout_tar):
        run(self.ctr + ["images", "import", layout_tar])

    def run_rm_cmd(self, n):
        return self.ctr + ["run", "--rm", IMAGE_NAME, f"run-{n}", "true"]

    def start_idle(self, n):
        run(self.ctr + ["run", "-d", IMAGE_NAME, f"idle-{n}", "sleep", "3600"])

    def remove_idle(self, n):
        subprocess.run(self.ctr + ["tasks", "kill", "-s", "SIGKILL", f"idle-{n}"],
                       capture_output=True)
        wait_for(lambda: "STOPPED" in subprocess.run(
            self.ctr + ["tasks", "ls"], capture_output=True, text=True).stdout
            or f"idle-{n}" not in subprocess.run(self.ctr + ["tasks", "ls"],
                                                 capture_output=True, text=True).stdout,
            f"ctr task idle-{n} stopping")
        subprocess.run(self.ctr + ["tasks", "rm", "-f", f"idle-{n}"], capture_output=True)
        run(self.ctr + ["containers", "rm", f"idle-{n}"])

    def is_monitor(self, argv):
        return (os.path.basename(argv[0]).startswith("containerd-shim")
                and any(self.sock in a or self.dir in a for a in argv))

    def stop(self):
        listed = subprocess.run(self.ctr + ["containers", "ls", "-q"], capture_output=True,
                                text=True).stdout.split()
        for cid in listed:
            subprocess.run(self.ctr + ["tasks", "kill", "-s", "SIGKILL", cid],
                           capture_output=True)
        for cid in listed:
            subprocess.run(self.ctr + ["tasks", "rm", "-f", cid], capture_output=True)
            subprocess.run(self.ctr + ["containers", "rm", cid], capture_output=True)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        subprocess.run(["umount", "-R", self.dir], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- measurements --------------------------------------------------------------------------


def time_run(stack, n):
    cmd = stack.run_rm_cmd(n)
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if out.returncode != 0:
        raise BenchError(f"{stack.name}: {' '.join(cmd[-4:])}: exit {out.returncode}: "
                         f"{out.stderr.strip()[-400:]}")
    return wall


def measure_monitors(stack, counts):
    """PSS of the stack's monitors with each count of idle containers, growing one set."""
    results, running = {}, 0
    for count in counts:
        while running < count:
            stack.start_idle(running)
            running += 1
        # Monitors give their clean pages back after 1 s without events: wait well past it.
        time.sleep(3.0)
        pss, processes_seen = monitor_pss(stack.is_monitor)
        results[str(count)] = {"pss_kib": pss, "processes": processes_seen}
        progress(f"  {stack.name}: {count} idle containers: monitors {pss} KiB PSS "
                 f"in {processes_seen} processes")
    for n in range(running):
        stack.remove_idle(n)
    return results


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def enter_private_namespace(argv):
    """The same cgroup v1 layout for every stack; see the module's docs."""
    if os.environ.get(PRIVATE_NS_ENV) == "1":
        if os.path.ismount(UNIFIED):
            subprocess.run(["umount", UNIFIED], check=True)
        return
    env = dict(os.environ, **{PRIVATE_NS_ENV: "1"})
    unshare = shutil.which("unshare")
    if unshare is None:
        sys.exit("daemon.py: unshare (util-linux) is needed")
    os.execve(unshare, [unshare, "--mount", "--propagation", "private", "--",
                        sys.executable, os.path.abspath(__file__), *argv], env)


def parse_args(argv):
    target = os.path.join(REPO, "target")
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--testudo", default=os.path.join(target, "release/testudo"))
    p.add_argument("--testudod", default=os.path.join(target, "release/testudod"))
    p.add_argument("--testudoctl", default=os.path.join(target, "release/testudoctl"))
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--counts", default=",".join(map(str, MONITOR_COUNTS)),
                   help="idle container counts for the monitor figure")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def print_report(result):
    runs = result["run_wall_seconds"]
    print("\n`run --rm IMAGE true`, client wall time (median, min-max):")
    for name in STACKS:
        s = runs[name]
        print(f"  {name:<11} {s['median'] * 1e3:8.1f} ms  ({s['min'] * 1e3:.1f}-"
              f"{s['max'] * 1e3:.1f})")
    print("\nidle daemon after start and import (KiB):")
    for name, mem in result["daemon_idle"].items():
        print(f"  {name:<11} RSS {mem['rss']:8d}  PSS {mem['pss']:8d}")
    print("\nmonitor PSS summed over all monitor processes (KiB):")
    counts = list(result["monitors"]["testudo"].keys())
    print("  " + " " * 13 + "".join(f"{c + ' ctrs':>14}" for c in counts) + "   per further")
    for name, per in result["monitors"].items():
        print(f"  {name:<13}" + "".join(f"{per[c]['pss_kib']:>14d}" for c in counts)
              + f"   {result['monitor_per_further_kib'][name]:>8.1f}")
    print("\ntargets:")
    for t in result["targets"]:
        verdict = "met" if t["met"] else "MISSED"
        print(f"  {t['figure']:<46} {t['value']:>10.3f} (limit {t['limit']}) {verdict}")


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("daemon.py: run as root")
    enter_private_namespace(argv)
    counts = sorted(int(c) for c in args.counts.split(","))
    workdir = tempfile.mkdtemp(prefix="tbd-")
    stacks = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        layer = rootfs_tar()
        rootfs = os.path.join(workdir, "rootfs.tar")
        with open(rootfs, "wb") as f:
            f.write(layer)
        layout = os.path.join(workdir, "layout.tar")
        oci_layout_tar(layer, layout)

        idle = {}
        for cls in (Testudo, Podman, Containerd):
            progress(f"starting {cls.name}")
            stack = cls(workdir, args)
            stacks.append(stack)
            stack.load(rootfs if cls is Podman else layout)
            if stack.pid is not None:
                time.sleep(2.0)
                idle[stack.name] = smaps_rollup(stack.pid)

        for stack in stacks:  # warm-up, unrecorded; also checks every stack works
            time_run(stack, "warm")
        samples = {s.name: [] for s in stacks}
        for i in range(args.iterations):
            order = stacks[i % len(stacks):] + stacks[:i % len(stacks)]
            for stack in order:
                samples[stack.name].append(time_run(stack, i))
            progress(f"run --rm: iteration {i + 1}/{args.iterations}")

        monitors = {}
        for stack in stacks:
            monitors[stack.name] = measure_monitors(stack, counts)
            if stack.name == "testudo":
                cell = TestudoCell(stack)
                monitors[cell.name] = measure_monitors(cell, counts)
                cell.stop()
        lo, hi = str(counts[0]), str(counts[-1])
        per_further = {name: (m[hi]["pss_kib"] - m[lo]["pss_kib"]) / max(1, counts[-1] - counts[0])
                       for name, m in monitors.items()}
        runs = {name: summary(v) for name, v in samples.items()}
        many = monitors["testudo"][hi]
        alone = monitors["testudo-cell"][lo]
        targets = [
            {"figure": "testudoctl run --rm / podman run --rm",
             "value": runs["testudo"]["median"] / runs["podman"]["median"], "limit": 0.35},
            {"figure": "testudod idle RSS (MiB)", "value": idle["testudo"]["rss"] / KIB,
             "limit": 15},
            # A monitor alone on the machine with one container: nothing shares its pages.
            {"figure": f"testudo monitor PSS, alone with {lo} container (KiB)",
             "value": alone["pss_kib"] / max(1, alone["processes"]), "limit": 256},
            {"figure": "testudo cell monitor PSS per further container (KiB)",
             "value": per_further["testudo-cell"], "limit": 64},
            # A monitor process's share with `hi` of them alive (as conmon's 450 KB is measured).
            {"figure": f"testudo monitor PSS per process, {hi} alive (KiB)",
             "value": many["pss_kib"] / max(1, many["processes"]), "limit": 256},
        ]
        for t in targets:
            t["met"] = t["value"] <= t["limit"]
        result = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
                     "loadavg": os.getloadavg()},
            "iterations": args.iterations,
            "run_wall_seconds": runs,
            "run_wall_samples": samples,
            "daemon_idle": idle,
            "monitors": monitors,
            "monitor_per_further_kib": per_further,
            "note": "testudo runs one monitor per container outside cells ('per further' is a "
                    "whole monitor) and one per cell (testudo-cell); podman and containerd "
                    "run one per container",
            "targets": targets,
        }
        print_report(result)
        out = args.out or os.path.join(
            REPO, "bench/results",
            "daemon-" + datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S") + ".json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"\nwrote {out}")
    except BenchError as e:
        sys.exit(f"daemon.py: {e}")
    finally:
        for stack in stacks:
            stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
