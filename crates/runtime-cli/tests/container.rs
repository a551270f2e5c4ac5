//! What a container gets, observed from inside it: process attributes, namespaces, root filesystem,
//! devices, cgroups, seccomp, hooks, terminal and inherited descriptors.

// Integration tests panic on the first unexpected result; that is their job.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

fn add_mount(s: &mut serde_json::Value, mount: serde_json::Value) {
    s["mounts"].as_array_mut().unwrap().push(mount);
}

fn add_namespace(s: &mut serde_json::Value, ns: serde_json::Value) {
    s["linux"]["namespaces"].as_array_mut().unwrap().push(ns);
}

#[test]
fn process_user_groups_umask_cwd_and_env_are_applied() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(sh("id -u; id -g; id -G; umask; pwd; echo $FOO"), |s| {
        s["process"]["user"] =
            json!({"uid": 1000, "gid": 1000, "additionalGids": [50, 1000], "umask": 63});
        s["process"]["cwd"] = "/home/user".into();
        s["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push("FOO=bar baz".into());
    })
    .write();
    let out = run_ok(&rt, &bundle);
    assert_eq!(out, "1000\n1000\n1000 50\n0077\n/home/user\nbar baz\n");
}

#[test]
fn rlimits_no_new_privileges_and_oom_score_adj_are_applied() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(
        sh("ulimit -n; ulimit -Hn; ulimit -u; grep NoNewPrivs /proc/self/status; cat /proc/self/oom_score_adj"),
        |s| {
            s["process"]["rlimits"] = json!([
                {"type": "RLIMIT_NOFILE", "soft": 777, "hard": 888},
                {"type": "RLIMIT_NPROC", "soft": 321, "hard": 321}]);
            s["process"]["noNewPrivileges"] = true.into();
            s["process"]["oomScoreAdj"] = 500.into();
        },
    )
    .write();
    let out = run_ok(&rt, &bundle);
    assert_eq!(out, "777\n888\n321\nNoNewPrivs:\t1\n500\n");
}

#[test]
fn a_spec_without_rlimits_gets_a_nofile_soft_limit_of_1024() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(sh("ulimit -n; ulimit -Hn"), |s| {
        s["process"].as_object_mut().unwrap().remove("rlimits");
    })
    .write();
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .map_or("unlimited".to_string(), |h| h.to_string());
    assert_eq!(run_ok(&rt, &bundle), format!("1024\n{hard}\n"));
}

#[test]
fn limits_above_what_root_may_raise_are_clamped_with_a_warning() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let current_hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    let own_score: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let bundle = edit(sh("ulimit -Hn; cat /proc/self/oom_score_adj"), |s| {
        s["process"]["rlimits"] =
            json!([{"type": "RLIMIT_NOFILE", "soft": 1u64 << 40, "hard": 1u64 << 40}]);
        s["process"]["oomScoreAdj"] = (-999).into();
    })
    .write();
    let output = run(&rt, &bundle);
    assert!(output.status.success(), "{}", stderr(&output));
    let has_sys_resource = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .map(|l| u64::from_str_radix(l[7..].trim(), 16).unwrap() & (1 << 24) != 0)
        .unwrap();
    if !has_sys_resource {
        assert_eq!(stdout(&output), format!("{current_hard}\n{own_score}\n"));
        let err = stderr(&output);
        assert!(
            err.contains("RLIMIT_NOFILE hard limit 1099511627776 clamped"),
            "{err}"
        );
        assert!(err.contains("oomScoreAdj -999 clamped"), "{err}");
    }
}

#[test]
fn capabilities_are_exactly_the_five_sets_of_the_spec() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(sh("grep Cap /proc/self/status"), |s| {
        s["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"],
            "effective": ["CAP_CHOWN", "CAP_KILL"],
            "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
            "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
            "ambient": ["CAP_KILL"]});
    })
    .write();
    let out = run_ok(&rt, &bundle);
    // CHOWN 0, KILL 5, SETUID 7, NET_RAW 13; ambient KILL stays effective and permitted across exec.
    assert_eq!(
        out,
        "CapInh:\t0000000000002020\nCapPrm:\t0000000000002021\nCapEff:\t0000000000002021\nCapBnd:\t00000000000020a1\nCapAmb:\t0000000000000020\n"
    );
}

#[test]
fn namespaces_hostname_domainname_and_sysctls() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(
        sh("echo $$; hostname; cat /proc/sys/kernel/domainname; cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/kernel/shmmni; ls /sys/class/net; for n in net ipc uts; do readlink /proc/self/ns/$n; done"),
        |s| {
            s["hostname"] = "box".into();
            s["domainname"] = "example.test".into();
            s["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
        },
    )
    .write();
    let out = run_ok(&rt, &bundle);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..6],
        &["1", "box", "example.test", "1", "1234", "lo"],
        "{out}"
    );
    for (line, ns) in lines[6..].iter().zip(["net", "ipc", "uts"]) {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(
            *line,
            host.to_str().unwrap(),
            "{ns} namespace is the host's"
        );
    }
}

#[test]
fn a_user_namespace_maps_ids_and_the_cgroup_namespace_hides_the_host_path() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; grep memory /proc/self/cgroup; ls -ln /etc/passwd | awk '{print $3}'"), |s| {
        add_namespace(s, json!({"type": "user"}));
        add_namespace(s, json!({"type": "cgroup"}));
        s["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}, {"containerID": 1, "hostID": 200000, "size": 65535}]);
        s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}, {"containerID": 1, "hostID": 200000, "size": 65535}]);
    })
    .write();
    let out = run_ok(&rt, &bundle);
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = out.lines().map(squeeze).collect();
    assert_eq!(lines[0], "0 0 1");
    assert_eq!(lines[1], "1 200000 65535");
    assert_eq!(lines[2], "0 0 1");
    assert_eq!(lines[4], "0");
    assert_eq!(lines[5], "4:memory:/", "{out}");
}

#[test]
fn joining_a_network_namespace_by_path_shares_it() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let name = testudo_test_support::unique_id("netns");
    assert!(std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap()
        .success());
    let path = format!("/run/netns/{name}");
    let ino = std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let bundle = edit(sh("readlink /proc/self/ns/net"), |s| {
        for ns in s["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = path.clone().into();
            }
        }
    })
    .write();
    let out = run(&rt, &bundle);
    std::process::Command::new("ip")
        .args(["netns", "del", &name])
        .status()
        .unwrap();
    assert_eq!(stdout(&out), format!("net:[{ino}]\n"), "{}", stderr(&out));
}

#[test]
fn a_time_namespace_shifts_the_clocks_by_its_offsets() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(sh("cut -d. -f1 /proc/uptime"), |s| {
        add_namespace(s, json!({"type": "time"}));
        s["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1000000, "nanosecs": 0}});
    })
    .write();
    let inside: u64 = run_ok(&rt, &bundle).trim().parse().unwrap();
    let host: u64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        inside >= 1_000_000 + host - 5 && inside <= 1_000_000 + host + 5,
        "{inside} vs {host}"
    );
}

#[test]
fn the_root_is_read_only_and_masked_and_read_only_paths_apply() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = sh("touch /newfile 2>&1; (echo 1 > /proc/sys/kernel/shmmni) 2>&1; wc -c < /proc/timer_list; wc -c < /proc/keys; ls /sys/firmware | wc -l; touch /dev/shm/ok && echo shm-writable").write();
    let out = run_ok(&rt, &bundle);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("Read-only file system"), "{out}");
    assert!(lines[1].contains("Read-only file system"), "{out}");
    assert_eq!(lines[2].trim(), "0", "{out}");
    assert_eq!(lines[3].trim(), "0", "{out}");
    assert_eq!(lines[4].trim(), "0", "{out}");
    assert_eq!(lines[5], "shm-writable");
}

#[test]
fn bind_tmpfs_and_propagation_mounts_honour_their_options() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("data"), "from-the-host\n").unwrap();
    let file = host.path().join("single");
    std::fs::write(&file, "one-file\n").unwrap();
    let bundle = edit(
        sh("cat /data/data; cat /etc/single; touch /data/x 2>&1; touch /rw/made; grep ' /scratch ' /proc/self/mounts; grep ' /data ' /proc/self/mounts"),
        |s| {
            add_mount(s, json!({"destination": "/data", "type": "bind", "source": host.path(), "options": ["rbind", "ro", "nosuid"]}));
            add_mount(s, json!({"destination": "/rw", "type": "bind", "source": host.path(), "options": ["bind", "rw", "rprivate"]}));
            add_mount(s, json!({"destination": "/etc/single", "type": "bind", "source": file, "options": ["bind", "ro"]}));
            add_mount(s, json!({"destination": "/scratch/deep", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=700", "noexec"]}));
            add_mount(s, json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=2m", "nodev"]}));
        },
    )
    .write();
    let out = run_ok(&rt, &bundle);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from-the-host");
    assert_eq!(lines[1], "one-file");
    assert!(lines[2].contains("Read-only file system"), "{out}");
    assert!(
        host.path().join("made").exists(),
        "rw bind did not reach the host"
    );
    assert!(
        lines[3].contains("tmpfs") && lines[3].contains("nodev") && lines[3].contains("size=2048k"),
        "{out}"
    );
    assert!(lines[4].contains("ro,nosuid"), "{out}");
}

#[test]
fn no_pivot_makes_the_rootfs_the_root_with_chroot() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = sh("ls /bin/busybox; hostname").write();
    let output = rt
        .cmd([
            "run",
            "--no-pivot",
            "--bundle",
            bundle.path().to_str().unwrap(),
            bundle.id(),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "/bin/busybox\nrunc\n");
}

#[test]
fn a_symlink_in_the_image_cannot_redirect_a_mount_to_the_host() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let victim = tempfile::tempdir().unwrap();
    let bundle = sh("ls /evil").write();
    // The image says /evil -> <host dir>; the mount must land inside the rootfs, not on the host dir.
    std::os::unix::fs::symlink(victim.path(), bundle.rootfs().join("evil")).unwrap();
    let bundle = edit(bundle, |s| {
        s["root"]["readonly"] = false.into();
        add_mount(
            s,
            json!({"destination": "/evil/mnt", "type": "tmpfs", "source": "tmpfs"}),
        );
    })
    .write();
    let output = run(&rt, &bundle);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !victim.path().join("mnt").exists(),
        "the mount point was created on the host"
    );
    assert!(bundle
        .rootfs()
        .join(victim.path().strip_prefix("/").unwrap())
        .join("mnt")
        .exists());
}

#[test]
fn default_and_spec_devices_exist_and_the_device_cgroup_enforces_rules() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(
        sh("ls -l /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty /dev/fuse | awk '{print $1, $5, $6, $10}'; readlink /dev/fd; readlink /dev/ptmx; head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; head -c 1 /dev/kmsg 2>&1; true"),
        |s| {
            s["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 432, "uid": 0, "gid": 0}]);
            // A host device that no rule allows: bound in, but the device cgroup refuses it.
            add_mount(s, json!({"destination": "/dev/kmsg", "type": "bind", "source": "/dev/kmsg", "options": ["bind"]}));
        },
    )
    .write();
    let out = run_ok(&rt, &bundle);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "crw-rw-rw- 1, 7 /dev/full", "{out}");
    assert_eq!(lines[1], "crw-rw---- 10, 229 /dev/fuse", "{out}");
    assert_eq!(lines[2], "crw-rw-rw- 1, 3 /dev/null", "{out}");
    assert_eq!(lines[7], "/proc/self/fd");
    assert_eq!(lines[8], "pts/ptmx");
    assert_eq!(lines[9].trim(), "4");
    assert_eq!(lines[10], "null-ok");
    assert!(lines[11].contains("Operation not permitted"), "{out}");
}

#[test]
fn cgroup_limits_are_visible_inside_and_update_changes_them() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(Bundle::new().args(&["/bin/sleep", "1000"]), |s| {
        s["linux"]["resources"]["memory"] = json!({"limit": 67108864, "swap": 134217728});
        s["linux"]["resources"]["pids"] = json!({"limit": 42});
        s["linux"]["resources"]["cpu"] =
            json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"});
        s["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4194304}]);
    })
    .write();
    let leaks = LeakCheck::snapshot().bundle(&bundle).state_root(rt.root());
    let id = bundle.id();
    rt.run_ok(["run", "-d", "--bundle", bundle.path().to_str().unwrap(), id]);
    let read = |files: &str| {
        stdout(&rt.run_ok([
            "exec",
            id,
            "/bin/sh",
            "-c",
            &format!("cd /sys/fs/cgroup && cat {files}"),
        ]))
    };
    assert_eq!(
        read("memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes pids/pids.max cpu/cpu.shares cpu/cpu.cfs_quota_us cpuset/cpuset.cpus"),
        "67108864\n134217728\n42\n512\n50000\n0\n"
    );
    // hugetlb sits on the cgroup2 mount on this host (hybrid layout).
    let hugetlb = format!("/sys/fs/cgroup/unified/testudo-test/{id}/hugetlb.2MB.max");
    if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists()
        && std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
            .unwrap()
            .contains("hugetlb")
    {
        assert_eq!(std::fs::read_to_string(&hugetlb).unwrap().trim(), "4194304");
    }
    rt.run_ok([
        "update",
        "--memory",
        "32m",
        "--memory-swap",
        "64m",
        "--pids-limit",
        "7",
        "--cpu-quota",
        "20000",
        id,
    ]);
    assert_eq!(
        read("memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes pids/pids.max cpu/cpu.cfs_quota_us"),
        "33554432\n67108864\n7\n20000\n"
    );
    let resources = bundle.path().join("resources.json");
    std::fs::write(&resources, json!({"pids": {"limit": 9}}).to_string()).unwrap();
    rt.run_ok(["update", "--resources", resources.to_str().unwrap(), id]);
    assert_eq!(read("pids/pids.max"), "9\n");
    // The pids limit holds: the container cannot fork past it.
    let forks = rt
        .cmd([
            "exec",
            id,
            "/bin/sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done 2>&1; wait",
        ])
        .output()
        .unwrap();
    assert!(
        stdout(&forks).contains("can't fork") || stderr(&forks).contains("can't fork"),
        "{}{}",
        stdout(&forks),
        stderr(&forks)
    );
    let stats: serde_json::Value =
        serde_json::from_slice(&rt.run_ok(["events", "--stats", id]).stdout).unwrap();
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["data"]["pids"]["limit"], 9);
    assert!(stats["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0);
    rt.run_ok(["delete", "--force", id]);
    leaks.assert_no_leaks_for(id);
}

#[test]
fn seccomp_returns_the_configured_errno_and_honours_argument_conditions() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(
        sh("mkdir /dev/shm/d 2>&1; touch /dev/shm/f; chmod 700 /dev/shm/f && echo chmod-700-ok; chmod 777 /dev/shm/f 2>&1; echo done"),
        |s| {
            s["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                    {"names": ["chmod", "fchmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                     "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]},
                    {"names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                     "args": [{"index": 2, "value": 511, "op": "SCMP_CMP_EQ"}]}
                ]});
        },
    )
    .write();
    let out = run_ok(&rt, &bundle);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("Function not implemented"), "{out}");
    assert_eq!(lines[1], "chmod-700-ok");
    assert!(lines[2].contains("Permission denied"), "{out}");
    assert_eq!(lines[3], "done");
}

#[test]
fn seccomp_kill_and_default_errno_actions() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    // Everything is allowed except uname, which kills the process.
    let bundle = edit(Bundle::new().args(&["/bin/uname"]), |s| {
        s["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}]});
    })
    .write();
    assert_eq!(
        run(&rt, &bundle).status.code(),
        Some(128 + 31),
        "killed by SIGSYS"
    );
    // ERRNO without errnoRet means EPERM.
    let bundle = edit(sh("mkdir /dev/shm/x 2>&1; true"), |s| {
        s["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]});
    })
    .write();
    let out = run_ok(&rt, &bundle);
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("hooks.log");
    let runtime_hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} $(cat | tr -d '\\n' | sed 's/.*\"status\":\"\\([a-z]*\\)\".*/\\1/') >> {}", log.display())]});
    // createContainer runs before pivot_root in the container's mount namespace: host paths resolve.
    // startContainer runs inside the container: its path and output resolve there.
    let bundle = edit(sh("cat /out/start; echo process >> /out/hooks.log"), |s| {
        s["root"]["readonly"] = false.into();
        add_mount(s, json!({"destination": "/out", "type": "bind", "source": out.path(), "options": ["rbind", "rw"]}));
        s["hooks"] = json!({
            "prestart": [runtime_hook("prestart")],
            "createRuntime": [runtime_hook("createRuntime")],
            "createContainer": [runtime_hook("createContainer")],
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo startContainer >> /out/hooks.log; echo started-inside > /out/start"]}],
            "poststart": [runtime_hook("poststart")],
            "poststop": [runtime_hook("poststop")],
        });
    })
    .write();
    assert_eq!(run_ok(&rt, &bundle), "started-inside\n");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "prestart creating",
            "createRuntime creating",
            "createContainer created",
            "startContainer"
        ],
        "{text}"
    );
    // poststart runs after the process starts, concurrently with it.
    let rest: std::collections::BTreeSet<&str> = lines[4..].iter().copied().collect();
    assert_eq!(
        rest,
        ["process", "poststart running", "poststop stopped"]
            .into_iter()
            .collect(),
        "{text}"
    );
    assert_eq!(*lines.last().unwrap(), "poststop stopped", "{text}");
}

#[test]
fn a_failing_prestart_hook_fails_create_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(Bundle::new().args(&["/bin/true"]), |s| {
        s["hooks"] = json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook says no >&2; exit 3"]}]});
    })
    .write();
    let leaks = LeakCheck::snapshot().bundle(&bundle).state_root(rt.root());
    let output = rt.run_fail([
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        bundle.id(),
    ]);
    let err = stderr(&output);
    assert!(
        err.contains("prestart hook /bin/sh failed") && err.contains("hook says no"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    leaks.assert_no_leaks_for(bundle.id());
    let timeout = edit(Bundle::new().args(&["/bin/true"]), |s| {
        s["hooks"] = json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    })
    .write();
    let output = rt.run_fail([
        "create",
        "--bundle",
        timeout.path().to_str().unwrap(),
        timeout.id(),
    ]);
    assert!(
        stderr(&output).contains("timed out after 1 seconds"),
        "{}",
        stderr(&output)
    );
    LeakCheck::snapshot()
        .bundle(&timeout)
        .state_root(rt.root())
        .assert_no_leaks_for(timeout.id());
}

#[test]
fn only_stdio_and_preserved_descriptors_reach_the_container() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::write(&shared, "passed-through\n").unwrap();
    let bundle = sh(
        "ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; cat <&3; echo $LISTEN_FDS $LISTEN_PID",
    )
    .write();
    // A shell opens the file as fd 3 and executes the runtime, as a client passing descriptors does.
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("exec \"$0\" \"$@\" 3< {}", shared.display()))
        .arg(rt.binary())
        .args([
            "--root",
            rt.root().to_str().unwrap(),
            "run",
            "--preserve-fds",
            "1",
            "--bundle",
        ])
        .args([bundle.path().to_str().unwrap(), bundle.id()]);
    let output = cmd.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    // 0-2, the preserved 3, and the descriptor ls opens for /proc/self/fd.
    assert_eq!(lines[0].trim(), "0 1 2 3 4", "{out}");
    assert_eq!(lines[1], "passed-through");
    assert_eq!(lines[2].trim(), "", "no LISTEN_FDS without the variable");
}

#[test]
fn a_terminal_goes_to_the_console_socket_and_foreground_run_proxies_its_own() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let bundle = edit(
        sh("test -t 0 && test -t 1 && echo on-a-tty; tty; stty size"),
        |s| {
            s["process"]["terminal"] = true.into();
            s["process"]["consoleSize"] = json!({"height": 33, "width": 111});
        },
    )
    .write();
    // Foreground run without --console-socket: the runtime proxies the terminal itself.
    let out = run_ok(&rt, &bundle);
    assert_eq!(out.replace('\r', ""), "on-a-tty\n/dev/pts/0\n33 111\n");

    // With --console-socket the master goes to whoever listens there.
    let bundle = edit(sh("echo via-socket; tty"), |s| {
        s["process"]["terminal"] = true.into()
    })
    .write();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    rt.run_ok([
        "create",
        "--console-socket",
        socket.to_str().unwrap(),
        "--bundle",
        bundle.path().to_str().unwrap(),
        bundle.id(),
    ]);
    let (stream, _) = listener.accept().unwrap();
    let mut buf = [0u8; 64];
    let (_, master) = testudo_linux::fd::recv_fd(&stream, &mut buf).unwrap();
    let mut master = std::fs::File::from(master.expect("a descriptor"));
    rt.run_ok(["start", bundle.id()]);
    let mut seen = Vec::new();
    let mut chunk = [0u8; 256];
    while let Ok(n @ 1..) = std::io::Read::read(&mut master, &mut chunk) {
        seen.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(
        String::from_utf8_lossy(&seen).replace('\r', ""),
        "via-socket\n/dev/pts/0\n"
    );
    rt.run_ok(["delete", "--force", bundle.id()]);
}

fn readlink_ns(pid: i64, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn a_container_can_join_another_ones_user_and_network_namespaces_and_create_the_rest() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let maps = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
    let first = edit(Bundle::new().args(&["/bin/sleep", "1000"]), |s| {
        add_namespace(s, json!({"type": "user"}));
        s["linux"]["uidMappings"] = maps.clone();
        s["linux"]["gidMappings"] = maps.clone();
    })
    .write();
    rt.run_ok([
        "run",
        "-d",
        "--bundle",
        first.path().to_str().unwrap(),
        first.id(),
    ]);
    let pid = rt.state(first.id())["pid"].as_i64().unwrap();
    // A pod-like second container: the first one's user and network namespaces, its own others.
    let second = edit(sh("cat /proc/self/uid_map; readlink /proc/self/ns/net; readlink /proc/self/ns/user; hostname; echo $$"), |s| {
        add_namespace(s, json!({"type": "user", "path": format!("/proc/{pid}/ns/user")}));
        for ns in s["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = format!("/proc/{pid}/ns/net").into();
            }
        }
        s["hostname"] = "second".into();
    })
    .write();
    let out = run_ok(&rt, &second);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["0", "300000", "65536"],
        "{out}"
    );
    assert_eq!(lines[1], readlink_ns(pid, "net"));
    assert_eq!(lines[2], readlink_ns(pid, "user"));
    assert_eq!(lines[3..], ["second", "1"], "{out}");
    rt.run_ok(["delete", "--force", first.id()]);
}

#[test]
fn a_new_user_namespace_can_be_combined_with_a_joined_network_namespace() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new(&testudo());
    let name = testudo_test_support::unique_id("netns");
    assert!(std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap()
        .success());
    let path = format!("/run/netns/{name}");
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    let maps = json!([{"containerID": 0, "hostID": 400000, "size": 65536}]);
    let bundle = edit(
        sh("cat /proc/self/uid_map; readlink /proc/self/ns/net; id -u; echo $$; ls /sys/class/net"),
        |s| {
            add_namespace(s, json!({"type": "user"}));
            s["linux"]["uidMappings"] = maps.clone();
            s["linux"]["gidMappings"] = maps.clone();
            for ns in s["linux"]["namespaces"].as_array_mut().unwrap() {
                if ns["type"] == "network" {
                    ns["path"] = path.clone().into();
                }
            }
        },
    )
    .write();
    let output = run(&rt, &bundle);
    std::process::Command::new("ip")
        .args(["netns", "del", &name])
        .status()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["0", "400000", "65536"],
        "{out}"
    );
    assert_eq!(lines[1], format!("net:[{ino}]"));
    assert_eq!(lines[2..4], ["0", "1"], "{out}");
}
