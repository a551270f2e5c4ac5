//! What a container gets, observed from inside it: process attributes, namespaces, root filesystem,
//! devices, cgroups, seccomp, hooks, terminal and inherited descriptors.

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
    let host: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        inside >= 1_000_000 + host as u64 - 5 && inside <= 1_000_000 + host as u64 + 5,
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
