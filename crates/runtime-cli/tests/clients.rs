//! testudo driven by the real clients, as users meet it: podman (through conmon) with `--runtime`,
//! and containerd's runc shim with `ctr run --runc-binary`. Each test observes the effect through
//! the client or from inside the container, then checks that the container left nothing behind
//! (mounts, cgroups, the runtime's state directory, and the runtime's `list`).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use testudo_test_support::{
    assert_success, require_root, unique_id, Containerd, LeakCheck, Podman, CONTAINERD_NAMESPACE,
};

fn testudo() -> PathBuf {
    std::env::var_os("TESTUDO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_testudo")))
}

/// The state root podman's containers live in: podman passes no `--root`, so it is the runtime's
/// default.
const PODMAN_STATE_ROOT: &str = "/run/testudo";

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Panics unless the runtime's `list -q` for `root` leaves out `id`, and `leaks` finds nothing
/// of it.
fn assert_gone(leaks: &LeakCheck, root: &Path, id: &str) {
    leaks.assert_no_leaks_for(id);
    let list = Command::new(testudo())
        .arg("--root")
        .arg(root)
        .args(["list", "-q"])
        .output()
        .expect("run testudo list");
    assert!(list.status.success(), "testudo list: {}", describe(&list));
    assert!(
        !stdout(&list).lines().any(|line| line == id),
        "{id} is still listed in {}",
        root.display()
    );
}

/// Polls `probe` until it returns `want` (a few seconds at most) and returns the last value.
fn eventually(want: &str, mut probe: impl FnMut() -> String) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = probe();
        if got == want || Instant::now() >= deadline {
            return got;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// podman

/// A private podman running testudo, with the busybox image imported.
struct PodmanFixture {
    podman: Podman,
    image: String,
    cid_dir: tempfile::TempDir,
}

impl PodmanFixture {
    fn new() -> Self {
        let podman = Podman::new(&testudo());
        let image = podman.import_busybox();
        Self {
            podman,
            image,
            cid_dir: tempfile::tempdir().expect("create a temp dir for cid files"),
        }
    }

    /// `podman run --rm <options> IMAGE <command>`: the output and the container's id.
    fn run_rm(&self, options: &[&str], command: &[&str]) -> (Output, String) {
        let cid_file = self.cid_dir.path().join(unique_id("cid"));
        let mut args: Vec<OsString> =
            vec!["--rm".into(), "--cidfile".into(), cid_file.clone().into()];
        args.extend(options.iter().map(OsString::from));
        args.push(self.image.clone().into());
        args.extend(command.iter().map(OsString::from));
        let output = self.podman.run(args);
        let id = fs::read_to_string(&cid_file).unwrap_or_default();
        (output, id.trim().to_owned())
    }

    /// `podman run --detach IMAGE <command>`: the container's id.
    fn run_detached(&self, command: &[&str]) -> String {
        let mut args = vec!["--detach", self.image.as_str()];
        args.extend(command);
        let output = self.podman.run(args);
        assert_success("podman run --detach", &output);
        stdout(&output).trim().to_owned()
    }

    fn ok(&self, what: &str, args: &[&str]) -> String {
        let output = self.podman.output(args);
        assert_success(what, &output);
        stdout(&output)
    }

    fn inspect(&self, id: &str, format: &str) -> String {
        self.ok("podman inspect", &["inspect", "--format", format, id])
            .trim()
            .to_owned()
    }

    fn remove(&self, id: &str) {
        self.ok("podman rm", &["rm", "--force", "--time", "0", id]);
    }
}

/// Runs `command` with `options` in a `--rm` container, checks it succeeded and left nothing
/// behind, and returns its stdout.
fn podman_output(options: &[&str], command: &[&str]) -> String {
    let fixture = PodmanFixture::new();
    let leaks = LeakCheck::snapshot().state_root(Path::new(PODMAN_STATE_ROOT));
    let (output, id) = fixture.run_rm(options, command);
    assert_success("podman run", &output);
    assert!(!id.is_empty(), "podman wrote no container id");
    assert_gone(&leaks, Path::new(PODMAN_STATE_ROOT), &id);
    stdout(&output)
}

#[test]
fn podman_run_prints_what_the_container_echoes() {
    if !require_root() {
        return;
    }
    assert_eq!(
        podman_output(&[], &["echo", "hello from testudo"]),
        "hello from testudo\n"
    );
}

#[test]
fn podman_default_seccomp_profile_is_loaded() {
    if !require_root() {
        return;
    }
    // containers-common's profile lists some syscalls (setns…) under two unconditional actions;
    // as with libseccomp, the first rule for a syscall decides.
    let out = podman_output(&[], &["grep", "^Seccomp:", "/proc/self/status"]);
    assert_eq!(out, "Seccomp:\t2\n", "filter mode");
}

#[test]
fn podman_run_passes_the_exit_status_through() {
    if !require_root() {
        return;
    }
    let fixture = PodmanFixture::new();
    let leaks = LeakCheck::snapshot().state_root(Path::new(PODMAN_STATE_ROOT));

    let (output, id) = fixture.run_rm(&[], &["sh", "-c", "exit 3"]);

    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert_gone(&leaks, Path::new(PODMAN_STATE_ROOT), &id);
}

#[test]
fn podman_exec_runs_in_a_detached_container_and_kill_stops_it() {
    if !require_root() {
        return;
    }
    let fixture = PodmanFixture::new();
    let leaks = LeakCheck::snapshot().state_root(Path::new(PODMAN_STATE_ROOT));
    let id = fixture.run_detached(&["sleep", "1000"]);
    assert_eq!(fixture.inspect(&id, "{{.State.Status}}"), "running");

    let exec = fixture.ok(
        "podman exec",
        &["exec", &id, "sh", "-c", "echo exec in $(hostname)"],
    );
    assert_eq!(exec, format!("exec in {}\n", &id[..12]));
    let failing = fixture.podman.output(["exec", &id, "sh", "-c", "exit 5"]);
    assert_eq!(failing.status.code(), Some(5), "{}", describe(&failing));
    let ps = fixture.ok("podman top", &["top", &id, "pid", "args"]);
    assert!(ps.contains("sleep 1000"), "{ps}");

    fixture.ok("podman kill", &["kill", &id]);
    let state = eventually("exited 137", || {
        fixture.inspect(&id, "{{.State.Status}} {{.State.ExitCode}}")
    });
    assert_eq!(
        state, "exited 137",
        "SIGKILL ends the container with 128 + 9"
    );

    fixture.remove(&id);
    assert_gone(&leaks, Path::new(PODMAN_STATE_ROOT), &id);
}

#[test]
fn podman_stop_sends_the_stop_signal_and_records_the_exit_code() {
    if !require_root() {
        return;
    }
    let fixture = PodmanFixture::new();
    let leaks = LeakCheck::snapshot().state_root(Path::new(PODMAN_STATE_ROOT));
    let handles_term = fixture.run_detached(&[
        "sh",
        "-c",
        "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done",
    ]);
    let ignores_term = fixture.run_detached(&["sleep", "1000"]);
    eventually("ready", || {
        fixture
            .ok("podman logs", &["logs", &handles_term])
            .trim()
            .to_owned()
    });

    fixture.ok("podman stop", &["stop", "--time", "20", &handles_term]);
    fixture.ok("podman stop", &["stop", "--time", "1", &ignores_term]);

    assert_eq!(
        fixture.inspect(&handles_term, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 7",
        "the TERM trap ran"
    );
    assert_eq!(
        fixture.inspect(&ignores_term, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137",
        "an init without a TERM handler is killed after the timeout"
    );
    for id in [&handles_term, &ignores_term] {
        fixture.remove(id);
        assert_gone(&leaks, Path::new(PODMAN_STATE_ROOT), id);
    }
}

#[test]
fn podman_pause_freezes_the_cgroup_and_unpause_thaws_it() {
    if !require_root() {
        return;
    }
    let fixture = PodmanFixture::new();
    let leaks = LeakCheck::snapshot().state_root(Path::new(PODMAN_STATE_ROOT));
    let id = fixture.run_detached(&["sleep", "1000"]);
    let cgroup = fixture.inspect(&id, "{{.State.CgroupPath}}");
    let freezer = Path::new("/sys/fs/cgroup/freezer")
        .join(cgroup.trim_start_matches('/'))
        .join("freezer.state");
    let freezer_state = || {
        fs::read_to_string(&freezer)
            .unwrap_or_else(|e| panic!("read {}: {e}", freezer.display()))
            .trim()
            .to_owned()
    };

    fixture.ok("podman pause", &["pause", &id]);
    assert_eq!(fixture.inspect(&id, "{{.State.Status}}"), "paused");
    assert_eq!(freezer_state(), "FROZEN");

    fixture.ok("podman unpause", &["unpause", &id]);
    assert_eq!(fixture.inspect(&id, "{{.State.Status}}"), "running");
    assert_eq!(freezer_state(), "THAWED");
    let exec = fixture.ok("podman exec", &["exec", &id, "echo", "thawed"]);
    assert_eq!(exec, "thawed\n");

    fixture.remove(&id);
    assert_gone(&leaks, Path::new(PODMAN_STATE_ROOT), &id);
}

#[test]
fn podman_run_with_tty_gives_the_process_a_terminal() {
    if !require_root() {
        return;
    }
    // Without `-i`, podman needs no terminal of its own: stdin is /dev/null here.
    let out = podman_output(
        &["--tty"],
        &["sh", "-c", "test -t 0 && test -t 1 && echo tty"],
    );
    // The terminal's line discipline turns the newline into CRLF.
    assert_eq!(out, "tty\r\n");
}

#[test]
fn podman_env_reaches_the_process() {
    if !require_root() {
        return;
    }
    let out = podman_output(
        &["--env", "GREETING=hello world"],
        &["sh", "-c", "echo \"$GREETING\""],
    );
    assert_eq!(out, "hello world\n");
}

#[test]
fn podman_user_sets_the_uid_and_gid() {
    if !require_root() {
        return;
    }
    let out = podman_output(&["--user", "1000:1000"], &["sh", "-c", "id -u; id -g"]);
    assert_eq!(out, "1000\n1000\n");
}

#[test]
fn podman_memory_limit_is_set_on_the_containers_cgroup() {
    if !require_root() {
        return;
    }
    // podman mounts the container's own cgroup directories at /sys/fs/cgroup (read-only).
    let out = podman_output(
        &["--memory", "64m"],
        &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
    );
    assert_eq!(out, format!("{}\n", 64 * 1024 * 1024));
}

#[test]
fn podman_pids_limit_is_set_on_the_containers_cgroup() {
    if !require_root() {
        return;
    }
    let out = podman_output(
        &["--pids-limit", "42"],
        &["cat", "/sys/fs/cgroup/pids/pids.max"],
    );
    assert_eq!(out, "42\n");
}

/// The capability sets of the container's process, as `CapXxx:\t<hex>` lines.
const CAP_LINES: &[&str] = &["sh", "-c", "grep ^Cap /proc/self/status"];

fn cap_set(status: &str, name: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status}"));
    u64::from_str_radix(line.trim(), 16).expect("a hex capability set")
}

#[test]
fn podman_cap_drop_all_leaves_no_capabilities() {
    if !require_root() {
        return;
    }
    let status = podman_output(&["--cap-drop", "ALL"], CAP_LINES);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(cap_set(&status, set), 0, "{set} in\n{status}");
    }
}

#[test]
fn podman_cap_drop_removes_only_that_capability() {
    if !require_root() {
        return;
    }
    const CAP_CHOWN: u64 = 1 << 0;
    const CAP_KILL: u64 = 1 << 5;
    let default = podman_output(&[], CAP_LINES);
    let dropped = podman_output(&["--cap-drop", "CHOWN"], CAP_LINES);

    let default_eff = cap_set(&default, "CapEff");
    assert_ne!(
        default_eff & CAP_CHOWN,
        0,
        "podman grants CAP_CHOWN by default"
    );
    assert_ne!(
        default_eff & CAP_KILL,
        0,
        "podman grants CAP_KILL by default"
    );
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(
            cap_set(&dropped, set),
            cap_set(&default, set) & !CAP_CHOWN,
            "{set}: only CAP_CHOWN goes\n{dropped}"
        );
    }
}

#[test]
fn podman_read_only_root_refuses_writes_but_keeps_tmp_writable() {
    if !require_root() {
        return;
    }
    let out = podman_output(
        &["--read-only"],
        &[
            "sh",
            "-c",
            "touch /written 2>/dev/null && echo root-writable || echo root-read-only; \
             touch /tmp/written && echo tmp-writable",
        ],
    );
    assert_eq!(out, "root-read-only\ntmp-writable\n");
}

#[test]
fn podman_exec_honours_tty_user_env_and_workdir() {
    if !require_root() {
        return;
    }
    let fixture = PodmanFixture::new();
    let leaks = LeakCheck::snapshot().state_root(Path::new(PODMAN_STATE_ROOT));
    let id = fixture.run_detached(&["sleep", "1000"]);

    let tty = fixture.ok(
        "podman exec --tty",
        &[
            "exec",
            "--tty",
            &id,
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo tty",
        ],
    );
    assert_eq!(tty, "tty\r\n");
    let attributes = fixture.ok(
        "podman exec --user --env --workdir",
        &[
            "exec",
            "--user",
            "1000:1000",
            "--env",
            "GREETING=hi",
            "--workdir",
            "/tmp",
            &id,
            "sh",
            "-c",
            "id -u; id -g; echo $GREETING; pwd",
        ],
    );
    assert_eq!(attributes, "1000\n1000\nhi\n/tmp\n");

    fixture.remove(&id);
    assert_gone(&leaks, Path::new(PODMAN_STATE_ROOT), &id);
}

#[test]
fn podman_update_changes_the_memory_limit_of_a_running_container() {
    if !require_root() {
        return;
    }
    let fixture = PodmanFixture::new();
    let leaks = LeakCheck::snapshot().state_root(Path::new(PODMAN_STATE_ROOT));
    let id = fixture.run_detached(&["sleep", "1000"]);

    fixture.ok("podman update", &["update", "--memory", "32m", &id]);

    let limit = fixture.ok(
        "podman exec",
        &[
            "exec",
            &id,
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ],
    );
    assert_eq!(limit, format!("{}\n", 32 * 1024 * 1024));
    fixture.remove(&id);
    assert_gone(&leaks, Path::new(PODMAN_STATE_ROOT), &id);
}

#[test]
fn podman_run_reports_a_command_that_is_not_found() {
    if !require_root() {
        return;
    }
    let fixture = PodmanFixture::new();
    let leaks = LeakCheck::snapshot().state_root(Path::new(PODMAN_STATE_ROOT));

    let (output, id) = fixture.run_rm(&[], &["no-such-command"]);

    // podman reads the runtime's message to choose 127, as a shell would.
    assert_eq!(output.status.code(), Some(127), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"no-such-command\": executable file not found in $PATH"),
        "{stderr}"
    );
    if !id.is_empty() {
        assert_gone(&leaks, Path::new(PODMAN_STATE_ROOT), &id);
    }
}

// ---------------------------------------------------------------------------------------------
// containerd

/// Prints `pid 1 is <its command line>`, as the container's processes see it.
const PID1_COMMAND_LINE: &str = "echo pid 1 is $(tr '\\0' ' ' </proc/1/cmdline)";

/// A private containerd whose runc shim runs testudo, with the busybox image imported.
struct ContainerdFixture {
    containerd: Containerd,
    image: String,
}

impl ContainerdFixture {
    fn new() -> Self {
        let containerd = Containerd::start();
        let image = containerd.import_busybox();
        Self { containerd, image }
    }

    /// Where the shim keeps testudo's state: `<runc root>/<namespace>`.
    fn state_root(&self) -> PathBuf {
        self.containerd.runc_root().join(CONTAINERD_NAMESPACE)
    }

    fn run_rm(&self, id: &str, command: &[&str]) -> Output {
        self.containerd
            .run_with_runtime(&testudo(), &self.image, id, command)
    }

    /// `ctr run --detach` with testudo as the runc binary.
    fn run_detached(&self, id: &str, command: &[&str]) {
        let mut args: Vec<OsString> = ["run", "--detach", "--runc-binary"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(testudo().into());
        args.push("--runc-root".into());
        args.push(self.containerd.runc_root().into());
        args.extend(
            [
                "--snapshotter",
                self.containerd.snapshotter(),
                &self.image,
                id,
            ]
            .iter()
            .map(OsString::from),
        );
        args.extend(command.iter().map(OsString::from));
        let output = self.containerd.ctr(args);
        assert_success("ctr run --detach", &output);
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.containerd.ctr(args)
    }

    fn ok(&self, what: &str, args: &[&str]) -> String {
        let output = self.ctr(args);
        assert!(
            output.status.success(),
            "{what} failed: {}\ncontainerd's log:\n{}",
            describe(&output),
            self.containerd.log()
        );
        stdout(&output)
    }

    /// The task's status as `ctr task ls` shows it (`RUNNING`, `PAUSED`, `STOPPED`).
    fn task_status(&self, id: &str) -> String {
        self.ok("ctr task ls", &["task", "ls"])
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.first() == Some(&id))
                    .then(|| fields.last().copied().unwrap_or("").to_owned())
            })
            .unwrap_or_default()
    }
}

#[test]
fn ctr_run_prints_what_the_container_echoes() {
    if !require_root() {
        return;
    }
    let fixture = ContainerdFixture::new();
    let id = unique_id("ctr-echo");
    let leaks = LeakCheck::snapshot().state_root(&fixture.state_root());

    let output = fixture.run_rm(&id, &["echo", "hello from testudo"]);

    assert_success("ctr run", &output);
    assert_eq!(stdout(&output), "hello from testudo\n");
    assert_gone(&leaks, &fixture.state_root(), &id);
}

#[test]
fn ctr_run_passes_the_exit_status_through() {
    if !require_root() {
        return;
    }
    let fixture = ContainerdFixture::new();
    let id = unique_id("ctr-exit");
    let leaks = LeakCheck::snapshot().state_root(&fixture.state_root());

    let output = fixture.run_rm(&id, &["sh", "-c", "exit 3"]);

    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert_gone(&leaks, &fixture.state_root(), &id);
}

#[test]
fn ctr_task_exec_kill_and_delete_act_on_a_detached_task() {
    if !require_root() {
        return;
    }
    let fixture = ContainerdFixture::new();
    let id = unique_id("ctr-detached");
    let leaks = LeakCheck::snapshot().state_root(&fixture.state_root());
    fixture.run_detached(&id, &["sleep", "1000"]);
    assert_eq!(fixture.task_status(&id), "RUNNING");

    let exec = fixture.ok(
        "ctr task exec",
        &[
            "task",
            "exec",
            "--exec-id",
            "look",
            &id,
            "sh",
            "-c",
            PID1_COMMAND_LINE,
        ],
    );
    assert_eq!(
        exec, "pid 1 is sleep 1000\n",
        "the exec shares the task's pid namespace"
    );
    let failing = fixture.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "fail",
        &id,
        "sh",
        "-c",
        "exit 5",
    ]);
    assert_eq!(failing.status.code(), Some(5), "{}", describe(&failing));
    let ps = fixture.ok("ctr task ps", &["task", "ps", &id]);
    assert!(ps.lines().count() >= 2, "ctr task ps lists the init: {ps}");

    fixture.ok(
        "ctr task kill",
        &["task", "kill", "--signal", "SIGKILL", &id],
    );
    let status = eventually("STOPPED", || fixture.task_status(&id));
    assert_eq!(status, "STOPPED");
    let deleted = fixture.ok("ctr task delete", &["task", "delete", &id]);
    assert!(deleted.contains("137") || deleted.is_empty(), "{deleted}");
    fixture.ok("ctr container delete", &["container", "delete", &id]);

    assert_gone(&leaks, &fixture.state_root(), &id);
}

#[test]
fn ctr_task_pause_and_resume_freeze_and_thaw_the_task() {
    if !require_root() {
        return;
    }
    let fixture = ContainerdFixture::new();
    let id = unique_id("ctr-pause");
    let leaks = LeakCheck::snapshot().state_root(&fixture.state_root());
    fixture.run_detached(&id, &["sleep", "1000"]);
    // containerd puts the task in the cgroup `/<namespace>/<id>`.
    let freezer = Path::new("/sys/fs/cgroup/freezer")
        .join(CONTAINERD_NAMESPACE)
        .join(&id)
        .join("freezer.state");
    let freezer_state = || {
        fs::read_to_string(&freezer)
            .unwrap_or_else(|e| panic!("read {}: {e}", freezer.display()))
            .trim()
            .to_owned()
    };

    fixture.ok("ctr task pause", &["task", "pause", &id]);
    assert_eq!(fixture.task_status(&id), "PAUSED");
    assert_eq!(freezer_state(), "FROZEN");

    fixture.ok("ctr task resume", &["task", "resume", &id]);
    assert_eq!(fixture.task_status(&id), "RUNNING");
    assert_eq!(freezer_state(), "THAWED");

    fixture.ok(
        "ctr task kill",
        &["task", "kill", "--signal", "SIGKILL", &id],
    );
    eventually("STOPPED", || fixture.task_status(&id));
    fixture.ok("ctr task delete", &["task", "delete", &id]);
    fixture.ok("ctr container delete", &["container", "delete", &id]);
    assert_gone(&leaks, &fixture.state_root(), &id);
}

#[test]
fn ctr_run_with_tty_gives_the_process_a_terminal() {
    if !require_root() {
        return;
    }
    let fixture = ContainerdFixture::new();
    let id = unique_id("ctr-tty");
    let leaks = LeakCheck::snapshot().state_root(&fixture.state_root());
    let mut ctr = fixture
        .containerd
        .ctr_cmd(["run", "--rm", "--tty", "--runc-binary"]);
    ctr.arg(testudo())
        .arg("--runc-root")
        .arg(fixture.containerd.runc_root())
        .args([
            "--snapshotter",
            fixture.containerd.snapshotter(),
            &fixture.image,
            &id,
        ])
        .args(["sh", "-c", "test -t 0 && test -t 1 && echo tty"]);

    // `ctr run --tty` puts its own stdin in raw mode, so it needs a terminal: script(1) gives it one.
    let output = Command::new("timeout")
        .args(["120", "script", "--quiet", "--return", "--command"])
        .arg(shell_line(&ctr))
        .arg("/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");

    assert!(output.status.success(), "{}", describe(&output));
    assert!(stdout(&output).contains("tty\r"), "{}", describe(&output));
    assert_gone(&leaks, &fixture.state_root(), &id);
}

#[test]
fn ctr_run_reports_a_command_that_is_not_found() {
    if !require_root() {
        return;
    }
    let fixture = ContainerdFixture::new();
    let id = unique_id("ctr-missing");
    let leaks = LeakCheck::snapshot().state_root(&fixture.state_root());

    let output = fixture.run_rm(&id, &["no-such-command"]);

    // The shim reads the message from the runtime's `--log` file (JSON lines).
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"no-such-command\": executable file not found in $PATH"),
        "{stderr}"
    );
    assert_gone(&leaks, &fixture.state_root(), &id);
}

/// `cmd` as one line for `sh -c`, each word in single quotes.
fn shell_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| format!("'{}'", word.to_string_lossy().replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}
