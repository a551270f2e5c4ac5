#!/usr/bin/env python3
"""The memory of one container monitor: `testudo monitor` with N idle containers in it.

Runs as root. Starts `testudo monitor --state-dir D --socket S` directly (no daemon), then creates
and starts idle containers (`sleep`, busybox-static) in that ONE monitor through its socket, the
length-prefixed JSON protocol of crates/monitor-protocol (frame.rs, message.rs). At each count of
--counts (default 1, 10, 50) it waits until the monitor has been idle long enough to give its
pages back (it does so after 1 s idle), samples its PSS from /proc/<pid>/smaps_rollup and the PSS
of each class of mapping from /proc/<pid>/smaps, and prints them with the cost of each further
container (the PSS difference between the highest and lowest counts, divided by the containers
between them). A JSON result goes to bench/results/monitor-<date>.json.

PSS shares pages between processes that map them: the figure is for a monitor that is the only
one on the machine when no other process runs its binary (the script warns if one does).

Tears everything down at the end, also on error or SIGINT/SIGTERM/SIGHUP: deletes the containers
(force), shuts the monitor down, waits for it, removes the cgroups it created and the temporary
directory. Python standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUSYBOX = "/bin/busybox"
CGROUP_PARENT = "testudo-bench-monitor"
CGROUP_ROOT = "/sys/fs/cgroup"
COUNTS = (1, 10, 50)
PROTOCOL_VERSION = 1
# The monitor releases its pages after 1 s idle; sample after it has surely done so.
SETTLE_SECONDS = 2.5
TARGET_ONE_KIB = 256
TARGET_FURTHER_KIB = 64


class BenchError(Exception):
    """The monitor did not do what the benchmark asked."""


def progress(text):
    print(text, file=sys.stderr, flush=True)


def wait_for(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise BenchError(f"{what} did not happen within {timeout}s")


# ---- the monitor protocol ------------------------------------------------------------------


class MonitorClient:
    """One connection to the monitor's socket: a big-endian u32 length, then that much JSON."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(path)
        hello = self.call({"request": "hello", "version": PROTOCOL_VERSION})
        if hello.get("response") != "hello":
            raise BenchError(f"hello: {hello}")
        self.monitor_pid = hello["pid"]

    def call(self, request):
        body = json.dumps(request).encode()
        self.sock.sendall(struct.pack(">I", len(body)) + body)
        (length,) = struct.unpack(">I", self._read(4))
        return json.loads(self._read(length))

    def expect(self, request, response):
        answer = self.call(request)
        if answer.get("response") != response:
            raise BenchError(f"{request['request']}: {answer}")
        return answer

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise BenchError("the monitor closed the connection")
            data += chunk
        return data

    def close(self):
        self.sock.close()


# ---- bundles -------------------------------------------------------------------------------


def make_rootfs(path):
    """A busybox-static root filesystem shared read-only by every container."""
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin/busybox"))
    for applet in ("sh", "sleep"):
        os.symlink("busybox", os.path.join(path, "bin", applet))
    with open(os.path.join(path, "etc/passwd"), "w", encoding="utf-8") as f:
        f.write("root:x:0:0:root:/:/bin/sh\n")


def make_bundle(testudo, path, rootfs, cid):
    """A bundle of `testudo spec` running `sleep` on the shared root filesystem."""
    os.makedirs(path)
    subprocess.run([testudo, "spec"], cwd=path, check=True, capture_output=True)
    config_path = os.path.join(path, "config.json")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    config["process"]["args"] = ["/bin/sleep", "100000"]
    config["process"]["terminal"] = False
    config["root"] = {"path": rootfs, "readonly": True}
    config["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}"
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f)


# ---- process memory ------------------------------------------------------------------------


def smaps_rollup(pid):
    values = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Private_Dirty"):
                values[key.lower()] = int(rest.split()[0])
    return values


def mapping_class(perms, name, exe):
    """What a mapping is: the binary's code (r-x), constants and relocated read-only data (r--),
    or writable data (rw-); heap, stack, another file (a shared library) by name, or anonymous."""
    if name == exe:
        return f"binary {perms[:3]}"
    if name == "[heap]":
        return "heap"
    if name == "[stack]":
        return "stack"
    if name in ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"):
        return "kernel"
    if name.startswith("/"):
        return f"{os.path.basename(name)} {perms[:3]}"
    return "anonymous"


def smaps_by_class(pid):
    """PSS (KiB) of each class of mapping in /proc/<pid>/smaps."""
    exe = os.readlink(f"/proc/{pid}/exe")
    if exe.endswith(" (deleted)"):
        exe = exe[:-len(" (deleted)")]
    classes = {}
    current = None
    with open(f"/proc/{pid}/smaps", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            if "-" in fields[0] and not fields[0].endswith(":"):
                name = " ".join(fields[5:]) if len(fields) > 5 else ""
                if name.endswith(" (deleted)"):
                    name = name[:-len(" (deleted)")]
                current = mapping_class(fields[1], name, exe)
                classes.setdefault(current, 0)
            elif fields[0] == "Pss:" and current is not None:
                classes[current] += int(fields[1])
    return classes


def processes_of_binary(binary, own):
    """Pids, other than `own`, of processes running `binary`: they share its pages."""
    want = os.stat(binary)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in own:
            continue
        try:
            st = os.stat(f"/proc/{entry}/exe")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
            found.append(int(entry))
    return found


# ---- the run -------------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="testudo-bench-monitor-")
        self.state_dir = os.path.join(self.dir, "state")
        self.socket = os.path.join(self.dir, "monitor.sock")
        self.logs = os.path.join(self.dir, "logs")
        self.rootfs = os.path.join(self.dir, "rootfs")
        os.makedirs(self.logs)
        make_rootfs(self.rootfs)
        self.client = None
        self.monitor_pid = None
        self.ids = []

    def start_monitor(self):
        out = subprocess.run([self.args.testudo, "monitor", "--state-dir", self.state_dir,
                              "--socket", self.socket], capture_output=True, text=True)
        if out.returncode != 0:
            raise BenchError(f"testudo monitor: exit {out.returncode}: {out.stderr.strip()}")
        self.client = MonitorClient(self.socket)
        self.monitor_pid = self.client.monitor_pid

    def add_container(self):
        cid = f"bench-{len(self.ids)}"
        bundle = os.path.join(self.dir, "bundles", cid)
        make_bundle(self.args.testudo, bundle, self.rootfs, cid)
        self.client.expect({"request": "create_container", "id": cid, "bundle": bundle,
                            "log_path": os.path.join(self.logs, f"{cid}.log")}, "created")
        self.ids.append(cid)
        self.client.expect({"request": "start", "id": cid}, "started")

    def sample(self):
        """The idle monitor's memory: reconnecting would wake it, so the connection stays open
        and quiet while it settles."""
        time.sleep(SETTLE_SECONDS)
        rollup = smaps_rollup(self.monitor_pid)
        return {"pss_kib": rollup["pss"], "rss_kib": rollup["rss"],
                "pss_anon_kib": rollup.get("pss_anon"), "pss_file_kib": rollup.get("pss_file"),
                "by_class_kib": smaps_by_class(self.monitor_pid)}

    def teardown(self):
        if self.client is not None:
            for cid in reversed(self.ids):
                try:
                    self.client.call({"request": "delete", "id": cid, "force": True})
                except (OSError, BenchError, ValueError) as e:
                    progress(f"delete {cid}: {e}")
            try:
                self.client.call({"request": "shutdown"})
            except (OSError, BenchError, ValueError) as e:
                progress(f"shutdown: {e}")
            self.client.close()
            self.client = None
        if self.monitor_pid is not None:
            try:
                wait_for(lambda: not os.path.exists(f"/proc/{self.monitor_pid}")
                         or open(f"/proc/{self.monitor_pid}/stat").read()
                         .rsplit(")", 1)[1].split()[0] == "Z", "the monitor's exit", 15)
            except BenchError:
                progress(f"monitor {self.monitor_pid} did not exit: killing it")
                try:
                    os.kill(self.monitor_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.monitor_pid = None
        remove_cgroups()
        shutil.rmtree(self.dir, ignore_errors=True)


def remove_cgroups():
    """The benchmark's cgroups in every hierarchy, children first."""
    if not os.path.isdir(CGROUP_ROOT):
        return
    for hierarchy in os.listdir(CGROUP_ROOT):
        parent = os.path.join(CGROUP_ROOT, hierarchy, CGROUP_PARENT)
        if not os.path.isdir(parent) or os.path.islink(os.path.join(CGROUP_ROOT, hierarchy)):
            continue
        for root, dirs, _ in os.walk(parent, topdown=False):
            for d in dirs:
                try:
                    os.rmdir(os.path.join(root, d))
                except OSError:
                    pass
        try:
            os.rmdir(parent)
        except OSError as e:
            progress(f"cgroup {parent} left: {e}")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--testudo", default=os.path.join(REPO, "target/release/testudo"))
    p.add_argument("--counts", default=",".join(map(str, COUNTS)),
                   help="idle container counts at which to sample, ascending")
    p.add_argument("--out", default=None,
                   help="JSON result (default bench/results/monitor-<date>.json)")
    args = p.parse_args(argv)
    args.counts = sorted({int(c) for c in args.counts.split(",")})
    if args.counts[0] < 1:
        p.error("counts must be at least 1")
    args.testudo = os.path.abspath(args.testudo)
    return args


def print_report(result):
    counts = [str(c) for c in result["settings"]["counts"]]
    samples = result["samples"]
    classes = sorted({k for s in samples.values() for k in s["by_class_kib"]})
    print("\nmonitor PSS (KiB) with N idle containers in one monitor:")
    print(f"  {'N':<18}" + "".join(f"{c:>9}" for c in counts))
    print(f"  {'PSS':<18}" + "".join(f"{samples[c]['pss_kib']:>9}" for c in counts))
    print(f"  {'RSS':<18}" + "".join(f"{samples[c]['rss_kib']:>9}" for c in counts))
    for k in classes:
        print(f"    {k:<16}" + "".join(f"{samples[c]['by_class_kib'].get(k, 0):>9}"
                                       for c in counts))
    if result["per_further_kib"] is not None:
        print(f"  per further container: {result['per_further_kib']:.1f} KiB")
    for t in result["targets"]:
        verdict = "met" if t["met"] else "MISSED"
        print(f"  target: {t['figure']}: {t['value']:.1f} <= {t['limit']}: {verdict}")


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("monitor.py: needs root")
    if not os.access(args.testudo, os.X_OK):
        sys.exit(f"monitor.py: no testudo binary at {args.testudo} (scripts/build.sh)")
    if not os.path.exists(BUSYBOX):
        sys.exit(f"monitor.py: {BUSYBOX} (busybox-static) is needed")

    bench = Bench(args)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    samples = {}
    others = []
    try:
        bench.start_monitor()
        progress(f"monitor pid {bench.monitor_pid}")
        for count in args.counts:
            while len(bench.ids) < count:
                bench.add_container()
            others = processes_of_binary(args.testudo, {bench.monitor_pid})
            samples[str(count)] = bench.sample()
            progress(f"  {count} idle containers: PSS {samples[str(count)]['pss_kib']} KiB")
    finally:
        bench.teardown()
    if others:
        progress(f"warning: other processes ran {args.testudo} ({others[:5]}): "
                 "the monitor's PSS shares its pages with them")

    lo, hi = args.counts[0], args.counts[-1]
    per_further = None
    if hi > lo:
        per_further = (samples[str(hi)]["pss_kib"] - samples[str(lo)]["pss_kib"]) / (hi - lo)
    targets = [{"figure": f"monitor PSS with {lo} idle container (KiB)",
                "value": samples[str(lo)]["pss_kib"], "limit": TARGET_ONE_KIB,
                "met": samples[str(lo)]["pss_kib"] <= TARGET_ONE_KIB}]
    if per_further is not None:
        targets.append({"figure": "PSS per further container in the same monitor (KiB)",
                        "value": per_further, "limit": TARGET_FURTHER_KIB,
                        "met": per_further <= TARGET_FURTHER_KIB})
    result = {
        "benchmark": "monitor",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"testudo": args.testudo, "counts": args.counts,
                     "settle_seconds": SETTLE_SECONDS},
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
                 "loadavg": os.getloadavg(), "other_processes_of_binary": len(others)},
        "samples": samples,
        "per_further_kib": per_further,
        "targets": targets,
    }
    out = args.out or os.path.join(
        REPO, "bench/results",
        f"monitor-{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print_report(result)
    print(f"\nresult: {out}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except BenchError as e:
        sys.exit(f"monitor.py: {e}")
    except KeyboardInterrupt as e:
        sys.exit(f"monitor.py: interrupted ({e})")
