#!/usr/bin/env python3
"""Network benchmark: bridge-mode setup+teardown of one network namespace with testudo's
built-in path, with the CNI chain bridge + host-local + portmap through testudo's `cni` module,
and with the same plugins invoked directly (so the CNI figure is the plugins', not testudo's);
and the throughput of a port published on 127.0.0.1 against the host's own loopback, per
wall second and per CPU second of the streams.

Needs root, containernetworking-plugins (/usr/lib/cni), nft, iproute2, and the example:
    cargo build --release -p testudo-network --example netbench
Standard library only. See bench/README.md.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PLUGIN_DIR = "/usr/lib/cni"
TARGET_SETUP_RATIO = 5.0  # built-in at least 5x faster than the CNI chain
TARGET_THROUGHPUT = 0.90  # published port within 10% of loopback


def run_example(binary, *args):
    out = subprocess.run([binary, *map(str, args)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def run_plugin(plugin, command, netns, container_id, config):
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": PLUGIN_DIR,
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    out = subprocess.run([os.path.join(PLUGIN_DIR, plugin)], input=json.dumps(config).encode(),
                         env=env, capture_output=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{plugin} {command}: {out.stdout!r} {out.stderr!r}")
    return json.loads(out.stdout) if command == "ADD" else None


class DirectCni:
    """The plugins run as a shell would: one process each, config on stdin, CNI_* env."""

    def __init__(self, workdir):
        pid = os.getpid() % 100000
        self.netns_name = f"netbench-d-{pid}"
        self.netns = f"/run/netns/{self.netns_name}"
        self.bridge = f"nbd{pid}"
        self.container_id = self.netns_name
        subprocess.run(["ip", "netns", "add", self.netns_name], check=True)
        with socket_free_port() as port:
            self.port = port
        common = {"cniVersion": "1.0.0", "name": f"netbenchd{pid}"}
        self.plugins = [
            dict(common, type="bridge", bridge=self.bridge, isGateway=True, ipMasq=True,
                 ipam={"type": "host-local", "dataDir": os.path.join(workdir, "data"),
                       "ranges": [[{"subnet": "10.233.2.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}),
            dict(common, type="portmap", capabilities={"portMappings": True}, snat=True,
                 runtimeConfig={"portMappings": [{"hostPort": self.port, "containerPort": 80,
                                                  "protocol": "tcp", "hostIP": "127.0.0.1"}]}),
        ]

    def once(self):
        prev = None
        for plugin in self.plugins:
            config = dict(plugin, prevResult=prev) if prev else plugin
            prev = run_plugin(plugin["type"], "ADD", self.netns, self.container_id, config)
        for plugin in reversed(self.plugins):
            run_plugin(plugin["type"], "DEL", self.netns, self.container_id, dict(plugin, prevResult=prev))

    def close(self):
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns_name], capture_output=True)


class socket_free_port:
    def __enter__(self):
        import socket
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


def summary(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--netbench", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release/examples/netbench"))
    parser.add_argument("--iterations", type=int, default=30, help="setup+teardown samples of each path")
    parser.add_argument("--batch", type=int, default=10, help="samples per path per interleaved round")
    parser.add_argument("--megabytes", type=int, default=1024, help="bytes per throughput sample (MiB)")
    parser.add_argument("--rounds", type=int, default=5, help="throughput samples of each")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("network.py: must run as root")
    for need in [args.netbench, os.path.join(PLUGIN_DIR, "bridge")]:
        if not os.path.exists(need):
            sys.exit(f"network.py: {need} is missing (see bench/README.md)")
    load = os.getloadavg()[0]
    if load > os.cpu_count() / 4:
        print(f"warning: load average {load:.2f} on {os.cpu_count()} CPUs: wall times will be noisy",
              file=sys.stderr)

    # Both paths turn forwarding on and leave it on; the host gets its own value back.
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        ip_forward = f.read().strip()
    try:
        run(args, load)
    finally:
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(ip_forward)


def run(args, load):
    samples = {"builtin": [], "cni_module": [], "cni_direct": []}
    workdir = tempfile.mkdtemp(prefix="netbench-")
    direct = DirectCni(workdir)
    try:
        direct.once()  # warm-up, unrecorded: creates the bridge and the shared portmap chains
        run_example(args.netbench, "builtin", 1)
        run_example(args.netbench, "cni", 1)
        order = ["builtin", "cni_module", "cni_direct"]
        rounds = max(1, args.iterations // args.batch)
        for r in range(rounds):
            for kind in order[r % 3:] + order[:r % 3]:
                if kind == "builtin":
                    samples[kind] += run_example(args.netbench, "builtin", args.batch)["samples_ns"]
                elif kind == "cni_module":
                    samples[kind] += run_example(args.netbench, "cni", args.batch)["samples_ns"]
                else:
                    for _ in range(args.batch):
                        start = time.perf_counter_ns()
                        direct.once()
                        samples[kind].append(time.perf_counter_ns() - start)
    finally:
        direct.close()
        shutil.rmtree(workdir, ignore_errors=True)
    tput = run_example(args.netbench, "throughput", args.megabytes, args.rounds)

    setup = {k: summary(v) for k, v in samples.items()}
    published = summary(tput["published_bytes_per_s"])
    loopback = summary(tput["loopback_bytes_per_s"])
    direct_tput = summary(tput["direct_bytes_per_s"])
    # The same streams per CPU second of the benchmark process (sender and receiver): what
    # each path costs, steadier than wall time when other work shares the CPUs.
    cost = {kind: summary(tput[f"{kind}_bytes_per_cpu_s"])
            for kind in ["published", "direct", "loopback"]}
    ratios = {
        "cni_direct_over_builtin": setup["cni_direct"]["median"] / setup["builtin"]["median"],
        "cni_module_over_builtin": setup["cni_module"]["median"] / setup["builtin"]["median"],
        "cni_module_over_cni_direct": setup["cni_module"]["median"] / setup["cni_direct"]["median"],
        "published_over_loopback": published["median"] / loopback["median"],
        "direct_over_loopback": direct_tput["median"] / loopback["median"],
        "published_over_direct": published["median"] / direct_tput["median"],
        "published_over_loopback_per_cpu": cost["published"]["median"] / cost["loopback"]["median"],
        "direct_over_loopback_per_cpu": cost["direct"]["median"] / cost["loopback"]["median"],
    }
    targets = {
        "setup+teardown: CNI chain (direct) / built-in >= 5x":
            ratios["cni_direct_over_builtin"] >= TARGET_SETUP_RATIO,
        "published port throughput >= 0.9x loopback":
            ratios["published_over_loopback"] >= TARGET_THROUGHPUT,
    }

    print(f"{'setup+teardown (median, min-max)':40} ms")
    for kind, s in setup.items():
        print(f"  {kind:38} {s['median'] / 1e6:8.2f}  ({s['min'] / 1e6:.2f}-{s['max'] / 1e6:.2f})")
    print(f"{'published port vs loopback':40} MB/s")
    for kind, s in [("published (127.0.0.1 -> DNAT -> netns)", published),
                    ("direct (bridge + veth, no NAT)", direct_tput), ("loopback", loopback)]:
        print(f"  {kind:38} {s['median'] / 1e6:8.0f}  ({s['min'] / 1e6:.0f}-{s['max'] / 1e6:.0f})")
    print(f"{'the same per CPU second of the streams':40} MB/cpu-s")
    for kind, s in cost.items():
        print(f"  {kind:38} {s['median'] / 1e6:8.0f}  ({s['min'] / 1e6:.0f}-{s['max'] / 1e6:.0f})")
    for name, value in ratios.items():
        print(f"  {name:38} {value:8.2f}x")
    for name, met in targets.items():
        print(f"  {'met   ' if met else 'MISSED'} {name}")

    versions = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "containernetworking-plugins"],
                              capture_output=True, text=True).stdout
    result = {
        "benchmark": "network",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "settings": vars(args),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(), "loadavg_start": load},
        "versions": {"containernetworking-plugins": versions},
        "units": {"samples": "ns", "throughput": "bytes/s, bytes/cpu-s"},
        "samples": samples,
        "throughput": tput,
        "summary": {"setup": setup, "published": published, "direct": direct_tput,
                    "loopback": loopback, "per_cpu": cost},
        "ratios": ratios,
        "targets": targets,
    }
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"network-{datetime.datetime.now():%Y-%m-%dT%H%M%S}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"results: {out}")


if __name__ == "__main__":
    main()
