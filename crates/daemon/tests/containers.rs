//! Containers end to end: the real `testudod` runs real containers (through `testudo monitor`)
//! from a busybox image the test builds and imports with `testudoctl image import`, and the test
//! looks at them from inside (their output) and through `testudoctl` and the raw gRPC API.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// The name the busybox image is imported under.
const IMAGE: &str = BUSYBOX;

/// Polls `done` until it holds; a deadline only turns a hang into a failure.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The state of container `name` in namespace `ns`, as `testudoctl inspect` reports it.
fn state(daemon: &Daemon, ns: &str, name: &str) -> String {
    let inspected = daemon.json(&["-n", ns, "inspect", name]);
    inspected["status"]["state"].as_str().unwrap().to_owned()
}

/// The names `ps --json` lists.
fn listed(daemon: &Daemon, args: &[&str]) -> Vec<String> {
    let mut ps = vec!["ps"];
    ps.extend_from_slice(args);
    names(&daemon.json(&ps))
}

/// The containers' files (bundles, monitors, logs) the daemon holds in namespace `ns`.
fn files_of(daemon: &Daemon, ns: &str) -> Vec<String> {
    let mut found = Vec::new();
    for dir in [
        daemon.root().join("containers/bundles").join(ns),
        daemon.root().join("containers/monitors").join(ns),
        daemon.log_root().join(ns),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            found.extend(entries.map(|e| e.unwrap().path().display().to_string()));
        }
    }
    found
}

/// Runs testudoctl; its exit code, standard output and standard error.
fn run_ctl(daemon: &Daemon, args: &[&str]) -> (Option<i32>, String, String) {
    let output = daemon.ctl(args);
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn run_streams_the_containers_output_and_exits_with_its_status() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("file"), "from the host\n").unwrap();
    let volume = format!("{}:/data:ro", host.path().display());
    let (code, stdout, stderr) = run_ctl(
        &daemon,
        &[
            "run", "--rm", "--name", "hello", "-e", "X=forty-two", "-w", "/tmp", "-u", "1000",
            "-v", &volume, IMAGE, "sh", "-c",
            "echo $X; pwd; id -u; cat /data/file; echo oops >&2; touch /data/file 2>/dev/null || echo read-only; exit 3",
        ],
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(stdout, "forty-two\n/tmp\n1000\nfrom the host\nread-only\n");
    assert_eq!(stderr, "oops\n");
    // --rm: nothing of it is left.
    assert!(listed(&daemon, &["-a"]).is_empty());
    assert!(
        files_of(&daemon, "default").is_empty(),
        "{:?}",
        files_of(&daemon, "default")
    );

    // The image's command, a replaced entrypoint, a tmpfs mount and a network of its own.
    let (code, stdout, _) = run_ctl(&daemon, &["run", "--rm", IMAGE]);
    assert_eq!((code, stdout.as_str()), (Some(0), "the image's command\n"));
    let (_, stdout, _) = run_ctl(
        &daemon,
        &[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/echo",
            IMAGE,
            "via",
            "entrypoint",
        ],
    );
    assert_eq!(stdout, "via entrypoint\n");
    let (code, stdout, stderr) = run_ctl(
        &daemon,
        &[
            "run", "--rm", "--network", "none", "--mount", "type=tmpfs,source=tmpfs,target=/scratch,size=1m",
            IMAGE, "sh", "-c",
            "grep ' /scratch ' /proc/mounts | cut -d' ' -f3; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "tmpfs\nlo\n");
    // A container that cannot start (no such command) is removed by --rm too.
    let (code, _, stderr) = run_ctl(&daemon, &["run", "--rm", IMAGE, "/no/such/command"]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(listed(&daemon, &["-a"]).is_empty());
    assert!(files_of(&daemon, "default").is_empty());
}

#[test]
fn a_detached_container_run_with_rm_is_deleted_by_the_daemon_once_it_exits() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    let id = daemon.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "brief",
        IMAGE,
        "sh",
        "-c",
        "echo hi; sleep 0.5; exit 3",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    poll_until("the container to be removed", || {
        listed(&daemon, &["-a"]).is_empty()
    });
    let missing = daemon.fails(&["inspect", "brief"]);
    assert!(missing.contains("brief"), "{missing}");
    assert!(
        files_of(&daemon, "default").is_empty(),
        "{:?}",
        files_of(&daemon, "default")
    );
}

#[test]
fn a_container_is_created_started_logged_stopped_waited_and_removed() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    let script = "echo started; echo to stderr >&2; trap 'echo bye; exit 7' TERM; while true; do sleep 0.1; done";
    let id = daemon.ok(&[
        "create", "--name", "web", "-l", "app=web", IMAGE, "sh", "-c", script,
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    assert!(listed(&daemon, &[]).is_empty());
    assert_eq!(listed(&daemon, &["-a"]), ["web"]);
    assert_eq!(state(&daemon, "default", "web"), "created");

    assert_eq!(daemon.ok(&["start", "web"]), "web\n");
    assert_eq!(listed(&daemon, &[]), ["web"]);
    let inspected = daemon.json(&["inspect", id]);
    assert_eq!(inspected["name"], "web");
    assert_eq!(inspected["status"]["state"], "running");
    assert!(inspected["status"]["pid"].as_u64().unwrap() > 0);
    assert_eq!(inspected["config"]["tags"]["app"], "web");
    assert_eq!(inspected["config"]["cmd"][2], script);
    let image = daemon.json(&["image", "inspect", IMAGE]);
    let manifest_digest = image["image"]["manifest_digest"].as_str().unwrap();
    assert!(manifest_digest.starts_with("sha256:"), "{image}");
    assert_eq!(inspected["image_digest"], manifest_digest);
    let table = daemon.ok(&["ps"]);
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.lines().nth(1).unwrap().contains("  web  "), "{table}");
    eventually("the first line", || {
        daemon.ok(&["logs", "web"]).contains("started")
    });

    let refused = daemon.fails(&["start", "web"]);
    assert!(refused.contains("cannot start"), "{refused}");
    let refused = daemon.fails(&["rm", "web"]);
    assert!(refused.contains("cannot delete"), "{refused}");

    assert_eq!(daemon.ok(&["stop", "-t", "30", "web"]), "web\n");
    assert_eq!(daemon.ok(&["wait", "web"]), "7\n");
    assert_eq!(state(&daemon, "default", "web"), "stopped");
    let inspected = daemon.json(&["inspect", "web"]);
    assert_eq!(inspected["status"]["exit_code"], 7);
    assert_eq!(inspected["status"]["pid"], 0);
    assert!(inspected["status"]["finished_at"]
        .as_str()
        .unwrap()
        .starts_with("20"));
    // Stopping a stopped container changes nothing.
    daemon.ok(&["stop", "web"]);
    assert_eq!(daemon.ok(&["wait", "web"]), "7\n");
    assert!(listed(&daemon, &[]).is_empty());

    // Logs: the streams apart, then tail and since.
    let (_, stdout, stderr) = run_ctl(&daemon, &["logs", "web"]);
    assert_eq!(
        (stdout.as_str(), stderr.as_str()),
        ("started\nbye\n", "to stderr\n")
    );
    assert_eq!(daemon.ok(&["logs", "--tail", "1", "web"]), "bye\n");
    assert_eq!(
        daemon.ok(&["logs", "--since", "2999-01-01T00:00:00Z", "web"]),
        ""
    );
    assert_eq!(
        daemon.ok(&["logs", "--since", "1h", "web"]),
        "started\nbye\n"
    );
    // Following a stopped container prints what it logged and ends.
    assert_eq!(daemon.ok(&["logs", "-f", "web"]), "started\nbye\n");

    assert_eq!(daemon.ok(&["rm", "web"]), "web\n");
    let missing = daemon.fails(&["inspect", "web"]);
    assert!(
        missing.contains("web") && missing.contains("not found"),
        "{missing}"
    );
    assert!(files_of(&daemon, "default").is_empty());
}

#[test]
fn kill_stop_and_forced_rm_end_containers_that_ignore_sigterm() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    daemon.ok(&["run", "-d", "--name", "sleeper", IMAGE, "sleep", "1000"]);
    assert_eq!(state(&daemon, "default", "sleeper"), "running");
    daemon.ok(&["kill", "sleeper"]);
    assert_eq!(daemon.ok(&["wait", "sleeper"]), "137\n");
    let refused = daemon.fails(&["kill", "sleeper"]);
    assert!(refused.contains("cannot kill"), "{refused}");
    let refused = daemon.fails(&["kill", "-s", "SIGNOPE", "sleeper"]);
    assert_eq!(refused, "testudoctl: invalid signal \"SIGNOPE\"");

    // A chosen signal reaches the process, once it has set its trap.
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "usr1",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 42' USR1; echo ready; while true; do sleep 0.1; done",
    ]);
    eventually("the trap", || daemon.ok(&["logs", "usr1"]) == "ready\n");
    daemon.ok(&["kill", "-s", "USR1", "usr1"]);
    assert_eq!(daemon.ok(&["wait", "usr1"]), "42\n");

    // Stop falls back to SIGKILL when the process ignores the signal.
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        IMAGE,
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 0.1; done",
    ]);
    daemon.ok(&["stop", "-t", "1", "stubborn"]);
    assert_eq!(daemon.ok(&["wait", "stubborn"]), "137\n");

    // A running one is removed with -f.
    daemon.ok(&["run", "-d", "--name", "forced", IMAGE, "sleep", "1000"]);
    daemon.ok(&["rm", "-f", "forced", "sleeper", "usr1", "stubborn"]);
    assert!(listed(&daemon, &["-a"]).is_empty());
    assert!(files_of(&daemon, "default").is_empty());
}

#[test]
fn followed_logs_end_when_the_container_stops() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        IMAGE,
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.3; done",
    ]);
    assert_eq!(
        daemon.ok(&["logs", "-f", "counter"]),
        "line1\nline2\nline3\n"
    );
    assert_eq!(state(&daemon, "default", "counter"), "stopped");
    assert_eq!(
        daemon.ok(&["logs", "-f", "--tail", "2", "counter"]),
        "line2\nline3\n"
    );
    daemon.ok(&["rm", "counter"]);
}

#[test]
fn limits_are_seen_inside_and_stats_report_usage() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    // cgroup v2 files, else v1's (the container has its own cgroup namespace).
    let script = "cd /sys/fs/cgroup; \
        if [ -f memory.max ]; then cat memory.max pids.max cpu.max; \
        else cat memory/memory.limit_in_bytes pids/pids.max; \
             echo $(cat cpu/cpu.cfs_quota_us) $(cat cpu/cpu.cfs_period_us); fi; \
        sleep 1000";
    daemon.ok(&[
        "run",
        "-d",
        "--name",
        "limited",
        "--cpus",
        "0.5",
        "--memory",
        "64m",
        "--pids-limit",
        "20",
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    eventually("the limits", || {
        daemon.ok(&["logs", "limited"]).lines().count() == 3
    });
    assert_eq!(
        daemon.ok(&["logs", "limited"]),
        "67108864\n20\n50000 100000\n"
    );

    let stats = daemon.json(&["stats", "limited"]);
    assert!(
        stats["memory"]["usage_bytes"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert_eq!(stats["memory"]["limit_bytes"], 64 << 20, "{stats}");
    assert!(stats["pids"]["current"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["pids"]["limit"], 20, "{stats}");
    assert!(stats["cpu"]["usage_ns"].as_u64().unwrap() > 0, "{stats}");
    let table = daemon.ok(&["stats", "limited"]);
    assert!(table.starts_with("CPU TIME  MEMORY"), "{table}");
    assert!(table.contains("/ 64.0 MiB"), "{table}");

    let id = daemon.json(&["inspect", "limited"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    daemon.ok(&["rm", "-f", "limited"]);
    let refused = daemon.fails(&["stats", "limited"]);
    assert!(refused.contains("not found"), "{refused}");
    assert!(!Path::new("/sys/fs/cgroup/memory")
        .join(CGROUP_PARENT.trim_start_matches('/'))
        .join("default")
        .join(id)
        .exists());
}

#[test]
fn one_tenant_cannot_see_or_touch_anothers_containers() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    daemon.ok(&["ns", "create", "alpha"]);
    daemon.ok(&["ns", "create", "beta"]);
    // Image references are per namespace too: each tenant imports its own.
    let archive = daemon.dir.path().join("busybox.tar");
    for ns in ["alpha", "beta"] {
        daemon.ok(&[
            "-n",
            ns,
            "image",
            "import",
            archive.to_str().unwrap(),
            "--name",
            "example.com/busybox",
        ]);
    }
    let id = daemon.ok(&[
        "-n", "beta", "run", "-d", "--name", "secret", IMAGE, "sleep", "1000",
    ]);
    let id = id.trim();
    // The same name in another namespace is another container.
    daemon.ok(&[
        "-n", "alpha", "run", "-d", "--name", "secret", IMAGE, "sleep", "1000",
    ]);

    assert_eq!(listed(&daemon, &["-n", "alpha", "-a"]), ["secret"]);
    let alpha = daemon.json(&["-n", "alpha", "ps"]);
    assert_ne!(alpha[0]["id"], id);
    for args in [
        vec!["inspect", id],
        vec!["stop", id],
        vec!["kill", id],
        vec!["rm", "-f", id],
        vec!["logs", id],
        vec!["stats", id],
        vec!["wait", id],
    ] {
        let mut with_ns = vec!["-n", "alpha"];
        with_ns.extend(args.iter());
        let refused = daemon.fails(&with_ns);
        assert!(refused.contains("not found"), "{args:?}: {refused}");
    }
    assert_eq!(state(&daemon, "beta", "secret"), "running");
    // An empty namespace lists every namespace's containers.
    let all = daemon.json(&["-n", "", "ps"]);
    let namespaces: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["alpha", "beta"]);

    daemon.ok(&["-n", "alpha", "rm", "-f", "secret"]);
    daemon.ok(&["-n", "beta", "rm", "-f", "secret"]);
    assert!(files_of(&daemon, "alpha").is_empty() && files_of(&daemon, "beta").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_status_and_leave_nothing() {
    use testudo_api::containers::v1::containers_service_client::ContainersServiceClient;
    use testudo_api::containers::v1::{
        exec_request, ContainerConfig, CreateRequest, ExecRequest, ExecStart, InspectRequest,
        KillRequest, ListRequest, Mount, StartRequest, StopRequest,
    };
    use tonic::Code;

    let Some(daemon) = tokio::task::spawn_blocking(daemon_with_busybox)
        .await
        .unwrap()
    else {
        return;
    };
    let mut client = ContainersServiceClient::new(channel(daemon.socket()).await);
    let config = |name: &str| ContainerConfig {
        name: name.to_owned(),
        image: IMAGE.to_owned(),
        cmd: Some(testudo_api::containers::v1::Command {
            args: vec!["sleep".to_owned(), "1000".to_owned()],
        }),
        ..ContainerConfig::default()
    };
    let create = |namespace: &str, config: ContainerConfig| CreateRequest {
        namespace: namespace.to_owned(),
        config: Some(config),
    };
    let first = client
        .create(create("default", config("only")))
        .await
        .unwrap()
        .into_inner()
        .id;

    let code = |status: tonic::Status| (status.code(), status.message().to_owned());
    let refused = code(
        client
            .create(create("ghost", config("x")))
            .await
            .unwrap_err(),
    );
    assert_eq!(refused.0, Code::NotFound, "{refused:?}");
    let refused = code(
        client
            .create(create("default", config("only")))
            .await
            .unwrap_err(),
    );
    assert_eq!(refused.0, Code::AlreadyExists, "{refused:?}");
    let mut bad = config("bad-image");
    bad.image = "Bad Ref!".to_owned();
    let refused = code(client.create(create("default", bad)).await.unwrap_err());
    assert_eq!(refused.0, Code::InvalidArgument, "{refused:?}");
    assert!(
        refused
            .1
            .starts_with("invalid image reference \"Bad Ref!\""),
        "{refused:?}"
    );
    let mut absent = config("absent");
    absent.image = "example.com/absent:v1".to_owned();
    let refused = code(client.create(create("default", absent)).await.unwrap_err());
    assert_eq!(refused.0, Code::NotFound, "{refused:?}");
    let mut relative = config("relative");
    relative.mounts.push(Mount {
        source: "/tmp".to_owned(),
        target: "data".to_owned(),
        ..Mount::default()
    });
    let refused = code(
        client
            .create(create("default", relative))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        refused,
        (
            Code::InvalidArgument,
            "mount target \"data\" is not an absolute path".to_owned()
        )
    );
    let mut missing_source = config("missing-source");
    missing_source.mounts.push(Mount {
        source: "/no/such/dir".to_owned(),
        target: "/data".to_owned(),
        ..Mount::default()
    });
    let refused = code(
        client
            .create(create("default", missing_source))
            .await
            .unwrap_err(),
    );
    assert_eq!(refused.0, Code::NotFound, "{refused:?}");
    let refused = code(
        client
            .create(create("default", config(&"a".repeat(64))))
            .await
            .unwrap_err(),
    );
    assert_eq!(refused.0, Code::InvalidArgument, "{refused:?}");
    let mut huge = config("huge");
    huge.env.push(format!("BIG={}", "x".repeat(5 << 20)));
    let refused = code(client.create(create("default", huge)).await.unwrap_err());
    assert_eq!(refused.0, Code::OutOfRange, "{refused:?}");

    let start = |container: &str| StartRequest {
        namespace: "default".to_owned(),
        container: container.to_owned(),
    };
    let refused = code(client.start(start("nobody")).await.unwrap_err());
    assert_eq!(refused.0, Code::NotFound, "{refused:?}");
    let refused = code(
        client
            .inspect(InspectRequest {
                namespace: "ghost".to_owned(),
                container: first.clone(),
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(refused.0, Code::NotFound, "{refused:?}");
    let refused = code(
        client
            .kill(KillRequest {
                namespace: "default".to_owned(),
                container: first.clone(),
                signal: "NOPE".to_owned(),
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(refused.0, Code::InvalidArgument, "{refused:?}");
    let refused = code(
        client
            .kill(KillRequest {
                namespace: "default".to_owned(),
                container: first.clone(),
                signal: String::new(),
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(
        refused.0,
        Code::FailedPrecondition,
        "a created container: {refused:?}"
    );
    let refused = code(
        client
            .stop(StopRequest {
                namespace: "default".to_owned(),
                container: first.clone(),
                ..StopRequest::default()
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(
        refused.0,
        Code::FailedPrecondition,
        "a created container: {refused:?}"
    );
    let exec = ExecRequest {
        message: Some(exec_request::Message::Start(ExecStart {
            namespace: "default".to_owned(),
            container: first.clone(),
            args: vec!["true".to_owned()],
            ..ExecStart::default()
        })),
    };
    let refused = code(client.exec(tokio_stream::iter([exec])).await.unwrap_err());
    assert_eq!(
        refused.0,
        Code::FailedPrecondition,
        "exec in a created container: {refused:?}"
    );

    // Only the first container exists, with only its own files.
    let listed = client
        .list(ListRequest {
            namespace: "default".to_owned(),
            ..ListRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    let ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [first.as_str()]);
    let files = files_of(&daemon, "default");
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(daemon
        .root()
        .join("containers/bundles/default")
        .join(&first)
        .exists());
    assert!(daemon.log_root().join("default/only.log").exists());
    tokio::task::spawn_blocking(move || {
        daemon.ok(&["rm", "only"]);
        assert!(files_of(&daemon, "default").is_empty());
    })
    .await
    .unwrap();
}

#[test]
fn a_foreground_run_passes_its_signals_on_to_the_container() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    let script = "trap 'echo got INT; exit 5' INT; trap 'echo got TERM; exit 6' TERM; \
                  echo ready; while :; do sleep 0.1; done";
    let mut run = std::process::Command::new(testudoctl())
        .arg("--socket")
        .arg(daemon.socket())
        .args([
            "run", "--rm", "--name", "proxied", IMAGE, "sh", "-c", script,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(run.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    // ctrl-c in a terminal: SIGINT to testudoctl, which passes it on.
    let pid = run.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = run.wait().unwrap();
    assert_eq!(rest, "got INT\n");
    assert_eq!(status.code(), Some(5));
    assert!(listed(&daemon, &["-a"]).is_empty());
}
