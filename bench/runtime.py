#!/usr/bin/env python3
"""Side-by-side benchmark of OCI runtimes: testudo against runc and crun.

Runs as root. Builds one busybox-static root filesystem, then, interleaved per iteration across
the runtimes (the order rotates each iteration), measures:

  lifecycle   create + start + wait for the init to exit + delete of /bin/true (wall and CPU)
  run         foreground one-shot `run` of /bin/true, which removes the container (wall and CPU)
  batch       N lifecycles in a row (total wall and CPU)
  peak RSS    of each verb (create, start, state, kill, delete, run), from /usr/bin/time -f %M
  init        RSS and PSS of the container's init waiting between create and start

CPU time is user + sys of every process the benchmark reaps during the figure: the verbs, and the
container init, which reparents to the benchmark because it makes itself a child subreaper (as a
container shim does). A runtime that is missing, or fails its first run, is reported and skipped.

Prints medians with min/max and the ratios testudo/crun and testudo/runc, and writes a JSON result
to bench/results/runtime-<date>.json. Python standard library only.
"""

import argparse
import ctypes
import datetime
import glob
import json
import os
import platform
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUSYBOX = "/bin/busybox"
GNU_TIME = "/usr/bin/time"
CGROUP_PARENT = "testudo-bench"
UNIFIED = "/sys/fs/cgroup/unified"
# Set on the re-exec of the benchmark inside its private mount namespace.
PRIVATE_NS_ENV = "TESTUDO_BENCH_PRIVATE_NS"
PR_SET_CHILD_SUBREAPER = 36
SUBJECT = "testudo"
PEERS = ("crun", "runc")
VERBS = ("create", "start", "state", "kill", "delete", "run")

# Figures: key -> (label, unit shown, divisor from the stored unit to the shown one).
FIGURES = {
    "lifecycle_wall": ("lifecycle wall", "ms", 1e6),
    "lifecycle_cpu": ("lifecycle CPU", "ms", 1e6),
    "run_wall": ("run wall", "ms", 1e6),
    "run_cpu": ("run CPU", "ms", 1e6),
    "batch_wall": ("batch wall (total)", "ms", 1e6),
    "batch_cpu": ("batch CPU (total)", "ms", 1e6),
    **{f"rss_{v}": (f"peak RSS {v}", "MiB", 1024) for v in VERBS},
    "init_rss": ("waiting init RSS", "MiB", 1024),
    "init_pss": ("waiting init PSS", "MiB", 1024),
}
# Stored units: nanoseconds for times, KiB for memory.
STORED_UNIT = {k: ("ns" if k.endswith(("wall", "cpu")) else "KiB") for k in FIGURES}

# The targets of the runtime issue: figure -> (peer, largest allowed ratio subject/peer).
TARGETS = [
    ("lifecycle_wall", "crun", 0.7),
    ("lifecycle_cpu", "crun", 0.6),
    ("run_wall", "crun", 0.6),
    *[(f"rss_{v}", "crun", 1.0) for v in VERBS],
    ("init_pss", "crun", 1.0),
]


class BenchError(Exception):
    """A runtime verb failed or a container did not behave."""


class Runtime:
    """One runtime under test, with its own state directory and log file."""

    def __init__(self, name, path, work):
        self.name = name
        self.path = path
        self.root = os.path.join(work, "state", name)
        os.makedirs(self.root)
        self.log_fd = os.open(
            os.path.join(work, f"{name}.log"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644
        )
        self.error = None
        self.live = set()
        self.version = version_of(path)

    def argv(self, *args):
        return [self.path, "--root", self.root, *args]


def version_of(path):
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError as err:
        return f"unknown ({err})"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


class Bench:
    """Holds the bundle, the runtimes and the samples; cleans everything up in close()."""

    def __init__(self, args, runtimes):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="testudo-bench.")
        self.rootfs = os.path.join(self.work, "rootfs")
        self.counter = 0
        # The verb being waited for, if a signal interrupts the wait.
        self.inflight = None
        self.cgroups = []
        self.runtimes = []
        self.skipped = {}
        for name, path in runtimes:
            if path is None:
                self.skipped[name] = "not found"
            else:
                self.runtimes.append(Runtime(name, path, self.work))
        self.all_runtimes = list(self.runtimes)
        self.samples = {k: {rt.name: [] for rt in self.runtimes} for k in FIGURES}

    # ---- bundle -------------------------------------------------------------------------

    def build_rootfs_and_config(self, spec_tool):
        os.makedirs(os.path.join(self.rootfs, "bin"))
        for d in ("proc", "sys", "dev", "tmp", "etc"):
            os.makedirs(os.path.join(self.rootfs, d))
        shutil.copy2(BUSYBOX, os.path.join(self.rootfs, "bin", "busybox"))
        os.symlink("busybox", os.path.join(self.rootfs, "bin", "true"))
        os.symlink("busybox", os.path.join(self.rootfs, "bin", "sh"))
        spec_dir = os.path.join(self.work, "spec")
        os.makedirs(spec_dir)
        subprocess.run([spec_tool, "spec"], cwd=spec_dir, check=True)
        with open(os.path.join(spec_dir, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        config["process"]["args"] = ["/bin/true"]
        config["process"]["terminal"] = False
        config["root"]["path"] = self.rootfs
        # Without CAP_SYS_RESOURCE no runtime may raise a hard rlimit above the current one.
        for rlimit in config["process"].get("rlimits", []):
            res = getattr(resource, rlimit["type"], None)
            if res is None:
                continue
            _, hard = resource.getrlimit(res)
            if hard != resource.RLIM_INFINITY and rlimit["hard"] > hard:
                rlimit["hard"] = hard
                rlimit["soft"] = min(rlimit["soft"], hard)
        self.config = config

    def new_container(self, rt):
        """A fresh id and bundle directory whose config has its own cgroupsPath."""
        self.counter += 1
        cid = f"{rt.name}-{os.getpid()}-{self.counter}"
        bundle = os.path.join(self.work, "bundles", cid)
        os.makedirs(bundle)
        config = dict(self.config)
        config["linux"] = dict(config["linux"], cgroupsPath=f"/{CGROUP_PARENT}/{cid}")
        with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
        self.cgroups.append(cid)
        return cid, bundle

    # ---- processes ----------------------------------------------------------------------

    def verb(self, rt, *args, rss=False, check=True):
        """Runs one runtime verb to completion; returns its peak RSS in KiB when rss is set."""
        argv = rt.argv(*args)
        rss_file = os.path.join(self.work, "rss")
        if rss:
            argv = [GNU_TIME, "-f", "%M", "-o", rss_file, *argv]
        os.ftruncate(rt.log_fd, 0)
        os.lseek(rt.log_fd, 0, os.SEEK_SET)
        pid = os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, rt.log_fd, 1),
                (os.POSIX_SPAWN_DUP2, rt.log_fd, 2),
            ],
        )
        self.inflight = pid
        _, status, _ = os.wait4(pid, 0)
        self.inflight = None
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and check:
            os.lseek(rt.log_fd, 0, os.SEEK_SET)
            output = os.read(rt.log_fd, 4096).decode(errors="replace").strip()
            raise BenchError(f"{rt.name} {' '.join(args)}: exit status {code}: {output}")
        if rss:
            with open(rss_file, encoding="utf-8") as f:
                # GNU time prints "Command exited with non-zero status" first when it did.
                return int(f.read().split()[-1])
        return None

    def create(self, rt, cid, bundle, rss=False):
        """Creates the container; returns (init pid, pidfd, peak RSS of create)."""
        pid_file = os.path.join(bundle, "pid")
        rt.live.add(cid)
        peak = self.verb(rt, "create", "--bundle", bundle, "--pid-file", pid_file, cid, rss=rss)
        try:
            with open(pid_file, encoding="utf-8") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError) as err:
            raise BenchError(f"{rt.name} create: no valid pid file {pid_file}: {err}") from err
        # The init is blocked until start, and it is our child from here on (we are its
        # subreaper and have not reaped it), so the pid cannot be reused under the pidfd.
        return pid, os.pidfd_open(pid), peak

    def wait_exit(self, rt, pid, pidfd):
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if not poller.poll(self.args.timeout * 1000):
                raise BenchError(f"{rt.name}: container init {pid} still running after "
                                 f"{self.args.timeout}s")
        finally:
            os.close(pidfd)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # not reparented to us: the runtime reaped it itself

    def delete(self, rt, cid, rss=False):
        peak = self.verb(rt, "delete", cid, rss=rss)
        rt.live.discard(cid)
        shutil.rmtree(os.path.join(self.work, "bundles", cid), ignore_errors=True)
        return peak

    @staticmethod
    def reap_strays():
        """Reaps orphans that reparented to us (intermediate processes of a runtime)."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    # ---- figures ------------------------------------------------------------------------

    def lifecycle(self, rt, cid, bundle):
        pid, pidfd, _ = self.create(rt, cid, bundle)
        self.verb(rt, "start", cid)
        self.wait_exit(rt, pid, pidfd)
        self.delete(rt, cid)

    def measure_lifecycle(self, rt):
        cid, bundle = self.new_container(rt)
        wall, cpu = timed(lambda: (self.lifecycle(rt, cid, bundle), self.reap_strays()))
        self.samples["lifecycle_wall"][rt.name].append(wall)
        self.samples["lifecycle_cpu"][rt.name].append(cpu)

    def run_once(self, rt, cid, bundle, rss=False):
        rt.live.add(cid)
        peak = self.verb(rt, "run", "--bundle", bundle, cid, rss=rss)
        if os.path.exists(os.path.join(rt.root, cid)):
            raise BenchError(f"{rt.name} run: container {cid} was not removed on exit")
        rt.live.discard(cid)
        shutil.rmtree(bundle, ignore_errors=True)
        return peak

    def measure_run(self, rt):
        cid, bundle = self.new_container(rt)
        wall, cpu = timed(lambda: (self.run_once(rt, cid, bundle), self.reap_strays()))
        self.samples["run_wall"][rt.name].append(wall)
        self.samples["run_cpu"][rt.name].append(cpu)

    def measure_batch(self, rt):
        containers = [self.new_container(rt) for _ in range(self.args.batch_size)]

        def batch():
            for cid, bundle in containers:
                self.lifecycle(rt, cid, bundle)
            self.reap_strays()

        wall, cpu = timed(batch)
        self.samples["batch_wall"][rt.name].append(wall)
        self.samples["batch_cpu"][rt.name].append(cpu)

    def measure_memory(self, rt):
        s = self.samples
        cid, bundle = self.new_container(rt)
        pid, pidfd, peak = self.create(rt, cid, bundle, rss=True)
        s["rss_create"][rt.name].append(peak)
        s["rss_state"][rt.name].append(self.verb(rt, "state", cid, rss=True))
        rollup = smaps_rollup(pid)
        s["init_rss"][rt.name].append(rollup["Rss"])
        s["init_pss"][rt.name].append(rollup["Pss"])
        s["rss_start"][rt.name].append(self.verb(rt, "start", cid, rss=True))
        self.wait_exit(rt, pid, pidfd)
        s["rss_delete"][rt.name].append(self.delete(rt, cid, rss=True))

        cid, bundle = self.new_container(rt)
        pid, pidfd, _ = self.create(rt, cid, bundle)
        s["rss_kill"][rt.name].append(self.verb(rt, "kill", cid, "KILL", rss=True))
        self.wait_exit(rt, pid, pidfd)
        self.delete(rt, cid)

        cid, bundle = self.new_container(rt)
        s["rss_run"][rt.name].append(self.run_once(rt, cid, bundle, rss=True))
        self.reap_strays()

    def attempt(self, rt, figure):
        """Runs one measurement; a failure retires the runtime from the rest of the run."""
        if rt.error:
            return
        try:
            figure(rt)
        except (BenchError, OSError, ValueError) as err:
            rt.error = str(err)
            print(f"bench: {rt.name} failed, skipping it from now on: {err}", file=sys.stderr)
            self.force_delete(rt)

    def run(self):
        for rt in self.runtimes:
            self.attempt(rt, lambda r: (self.measure_lifecycle(r), self.measure_run(r)))
            if rt.error:
                self.skipped[rt.name] = f"failed its first run: {rt.error}"
        self.runtimes = [rt for rt in self.runtimes if not rt.error]
        for figure in FIGURES:
            self.samples[figure] = {rt.name: [] for rt in self.runtimes}
        if not self.runtimes:
            raise BenchError("no runtime to measure")

        n = self.args.iterations
        for i in range(n):
            order = rotated(self.runtimes, i)
            for figure in (self.measure_lifecycle, self.measure_run, self.measure_memory):
                for rt in order:
                    self.attempt(rt, figure)
            progress(f"iteration {i + 1}/{n}")
        for i in range(self.args.batch_rounds):
            for rt in rotated(self.runtimes, i):
                self.attempt(rt, self.measure_batch)
            progress(f"batch {i + 1}/{self.args.batch_rounds}")
        progress_done()

    # ---- cleanup ------------------------------------------------------------------------

    def force_delete(self, rt):
        names = set(rt.live)
        if os.path.isdir(rt.root):
            names.update(os.listdir(rt.root))
        for cid in names:
            self.verb(rt, "delete", "--force", cid, check=False)
        rt.live.clear()
        self.reap_strays()

    def close(self):
        if self.inflight is not None:
            # Let an interrupted verb finish so that what it creates is seen and deleted.
            try:
                os.waitpid(self.inflight, 0)
            except ChildProcessError:
                pass
            self.inflight = None
        for rt in self.all_runtimes:
            self.force_delete(rt)
            os.close(rt.log_fd)
        self.reap_strays()
        shutil.rmtree(self.work, ignore_errors=True)
        remove_cgroups(self.cgroups)


def remove_cgroups(ids):
    """Removes the per-container cgroups a runtime left behind, then the shared parent."""
    for base in [*glob.glob("/sys/fs/cgroup/*/"), "/sys/fs/cgroup/"]:
        parent = os.path.join(base, CGROUP_PARENT)
        if not os.path.isdir(parent):
            continue
        for cid in ids:
            path = os.path.join(parent, cid)
            if os.path.isdir(path):
                for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        pass
        try:
            os.rmdir(parent)
        except OSError:
            pass  # another benchmark still uses it, or a container survived: leave it


def timed(action):
    """Runs action; returns (wall ns, CPU ns of the children reaped meanwhile)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter_ns()
    action()
    wall = time.perf_counter_ns() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, round(cpu * 1e9)


def smaps_rollup(pid):
    values = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[key] = int(rest.split()[0])
    return values


def rotated(items, i):
    k = i % len(items)
    return items[k:] + items[:k]


def progress(text):
    if sys.stderr.isatty():
        print(f"\r{text}   ", end="", file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)


def progress_done():
    if sys.stderr.isatty():
        print(file=sys.stderr)


# ---- report ------------------------------------------------------------------------------


def summarize(samples):
    out = {}
    for figure, per_rt in samples.items():
        out[figure] = {}
        for name, values in per_rt.items():
            if values:
                out[figure][name] = {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                    "n": len(values),
                }
    return out


def ratios(summary):
    out = {}
    for figure, per_rt in summary.items():
        out[figure] = {}
        for peer in PEERS:
            if SUBJECT in per_rt and peer in per_rt and per_rt[peer]["median"]:
                out[figure][f"{SUBJECT}/{peer}"] = per_rt[SUBJECT]["median"] / per_rt[peer]["median"]
    return out


def target_results(ratio_table):
    results = []
    for figure, peer, limit in TARGETS:
        ratio = ratio_table.get(figure, {}).get(f"{SUBJECT}/{peer}")
        results.append({
            "figure": figure,
            "peer": peer,
            "limit": limit,
            "ratio": ratio,
            "met": None if ratio is None else ratio <= limit,
        })
    return results


def print_report(summary, ratio_table, targets, names, skipped):
    def cell(figure, name):
        stats = summary[figure].get(name)
        if not stats:
            return "-"
        div = FIGURES[figure][2]
        return f"{stats['median'] / div:.2f} ({stats['min'] / div:.2f}-{stats['max'] / div:.2f})"

    ratio_cols = [f"{SUBJECT}/{peer}" for peer in PEERS]
    header = ["figure", "unit", *names, *ratio_cols]
    rows = []
    for figure, (label, unit, _) in FIGURES.items():
        row = [label, unit, *[cell(figure, n) for n in names]]
        for col in ratio_cols:
            r = ratio_table[figure].get(col)
            row.append("n/a" if r is None else f"{r:.2f}x")
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    print()
    print("median (min-max) per runtime; ratios of medians")
    print(line.format(*header))
    print(line.format(*["-" * w for w in widths]))
    for row in rows:
        print(line.format(*row))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    print()
    print(f"targets ({SUBJECT} against its peer's median):")
    for t in targets:
        verdict = "n/a" if t["met"] is None else ("met" if t["met"] else "MISSED")
        shown = "n/a" if t["ratio"] is None else f"{t['ratio']:.2f}x"
        print(f"  {FIGURES[t['figure']][0]:<22} <= {t['limit']:.1f}x {t['peer']:<5} {shown:>7}  {verdict}")


def write_json(path, payload):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# ---- environment ---------------------------------------------------------------------------


def hybrid_unified_has_controllers():
    try:
        with open(os.path.join(UNIFIED, "cgroup.controllers"), encoding="utf-8") as f:
            return bool(f.read().split())
    except OSError:
        return False


def cgroup_layout():
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2 (unified)"
    if os.path.ismount(UNIFIED):
        return "hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified)"
    return "v1 (legacy)"


def enter_private_namespace(argv):
    """crun 1.8 refuses a hybrid layout whose cgroup2 mount holds controllers (here hugetlb),
    so every runtime is measured in a private mount namespace without that mount: the same
    v1 layout for all, and nothing changes outside the benchmark."""
    if os.environ.get(PRIVATE_NS_ENV) == "1":
        subprocess.run(["umount", UNIFIED], check=True)
        return
    env = dict(os.environ, **{PRIVATE_NS_ENV: "1"})
    unshare = shutil.which("unshare")
    if unshare is None:
        sys.exit("bench: unshare (util-linux) is needed to hide the cgroup2 mount from crun")
    os.execve(unshare, [unshare, "--mount", "--propagation", "private", "--",
                        sys.executable, os.path.abspath(__file__), *argv], env)


def find_runtimes(args):
    found = []
    for name in args.runtimes.split(","):
        if name == SUBJECT:
            path = os.path.abspath(args.testudo)
            found.append((name, path if os.access(path, os.X_OK) else None))
        else:
            found.append((name, shutil.which(name)))
    return found


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--testudo", default=os.path.join(REPO, "target/release/testudo"),
                        help="path of the testudo binary (default: target/release/testudo)")
    parser.add_argument("--iterations", type=int, default=30,
                        help="samples of each per-container figure (default 30)")
    parser.add_argument("--batch-size", type=int, default=100,
                        help="lifecycles in a row for the batch figure (default 100)")
    parser.add_argument("--batch-rounds", type=int, default=3,
                        help="samples of the batch figure (default 3)")
    parser.add_argument("--runtimes", default="testudo,runc,crun",
                        help="comma-separated runtimes to compare (default testudo,runc,crun)")
    parser.add_argument("--timeout", type=int, default=10,
                        help="seconds to wait for a container to exit (default 10)")
    parser.add_argument("--out", help="JSON result file (default bench/results/runtime-<date>.json)")
    parser.add_argument("--keep-unified", action="store_true",
                        help="do not hide the cgroup2 mount of a hybrid layout (crun then fails)")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.batch_size < 1 or args.batch_rounds < 0:
        parser.error("--iterations and --batch-size must be at least 1")
    return args


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench: must run as root")
    for tool in (BUSYBOX, GNU_TIME):
        if not os.access(tool, os.X_OK):
            sys.exit(f"bench: {tool} is missing (run: bash scripts/setup.sh)")
    hidden_unified = False
    if not args.keep_unified and hybrid_unified_has_controllers():
        enter_private_namespace(argv)
        hidden_unified = True

    # The container inits reparent to us when create exits: we wait for and reap them, and
    # their CPU time counts in ours.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"bench: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)

    spec_tool = shutil.which("runc")
    if spec_tool is None:
        sys.exit("bench: runc is needed to generate the bundle's config.json (runc spec)")
    load = os.getloadavg()[0]
    if load > 0.25 * (os.cpu_count() or 1):
        print(f"bench: warning: load average {load:.2f}: other work on this machine will add "
              "noise to the wall times (CPU times and memory suffer less)", file=sys.stderr)
    bench = Bench(args, find_runtimes(args))
    started = datetime.datetime.now()
    try:
        bench.build_rootfs_and_config(spec_tool)
        for name, why in bench.skipped.items():
            print(f"bench: {name}: {why}, skipped", file=sys.stderr)
        bench.run()
        names = [rt.name for rt in bench.runtimes]
        summary = summarize(bench.samples)
        ratio_table = ratios(summary)
        targets = target_results(ratio_table)
        print_report(summary, ratio_table, targets, names, bench.skipped)
        out = args.out or os.path.join(
            REPO, "bench", "results", f"runtime-{started.strftime('%Y-%m-%dT%H%M%S')}.json")
        write_json(out, {
            "benchmark": "runtime",
            "date": started.isoformat(timespec="seconds"),
            "host": {
                "kernel": platform.release(),
                "cpus": os.cpu_count(),
                "loadavg_at_start": load,
                "cgroup_layout": cgroup_layout(),
                "unified_hidden_for_crun": hidden_unified,
            },
            "settings": {
                "iterations": args.iterations,
                "batch_size": args.batch_size,
                "batch_rounds": args.batch_rounds,
                "process": ["/bin/true"],
                "config": "runc spec, args /bin/true, terminal false, cgroupsPath "
                          f"/{CGROUP_PARENT}/<id>",
            },
            "runtimes": {rt.name: {"path": rt.path, "version": rt.version, "error": rt.error}
                         for rt in bench.runtimes},
            "skipped": bench.skipped,
            "units": STORED_UNIT,
            "samples": bench.samples,
            "summary": summary,
            "ratios": ratio_table,
            "targets": targets,
        })
        print(f"\nresults written to {out}")
        return 1 if any(rt.error for rt in bench.runtimes) else 0
    except BenchError as err:
        print(f"bench: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        bench.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
