//! `testudoctl exec`, `attach` and `run -i`/`-t` end to end: the real `testudod` and real
//! containers, with `testudoctl` on a pseudo-terminal this test opens (so it meets a terminal as
//! a person's shell gives it one) or on pipes. What the process sees is read from inside: `tty`,
//! `stty size`, what it reads from its input.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rustix::process::{kill_process, Pid, Signal};
use rustix::pty::OpenptFlags;
use rustix::termios::{self, LocalModes, Winsize};

/// The state of container `name`, as `testudoctl inspect` reports it.
fn state(daemon: &Daemon, name: &str) -> String {
    let inspected = daemon.json(&["inspect", name]);
    inspected["status"]["state"].as_str().unwrap().to_owned()
}

/// `testudoctl` on `daemon` with `args`, not yet spawned.
fn ctl(daemon: &Daemon, args: &[&str]) -> Command {
    let mut command = Command::new(testudoctl());
    command.arg("--socket").arg(daemon.socket()).args(args);
    command
}

/// Waits for `child` to exit; a deadline only turns a hang into a failure.
fn exit_code(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("testudoctl did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pseudo-terminal whose slave side testudoctl gets as its stdin, stdout and stderr; the test
/// holds the master, as a terminal emulator does, and collects what is written to it.
struct Pty {
    master: OwnedFd,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    /// A new terminal of `rows` x `columns`, and its slave side.
    fn open(rows: u16, columns: u16) -> (Pty, OwnedFd) {
        let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
        let slave = rustix::fs::open(
            name.as_c_str(),
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let pty = Pty {
            master,
            seen: Arc::default(),
        };
        pty.resize(rows, columns);
        let mut reader = std::fs::File::from(pty.master.try_clone().unwrap());
        let seen = pty.seen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // EIO once no slave is open any more: the end.
            while let Ok(n @ 1..) = reader.read(&mut buffer) {
                seen.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        (pty, slave)
    }

    /// Spawns testudoctl on the slave side.
    fn spawn(&self, slave: OwnedFd, mut command: Command) -> Child {
        command
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        command.spawn().unwrap()
    }

    fn resize(&self, rows: u16, columns: u16) {
        let size = Winsize {
            ws_row: rows,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        termios::tcsetwinsize(&self.master, size).unwrap();
    }

    /// Types `text`, as a person at the terminal.
    fn type_in(&self, text: &[u8]) {
        let mut master = std::fs::File::from(self.master.try_clone().unwrap());
        master.write_all(text).unwrap();
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until `text` has been written to the terminal.
    fn wait_for(&self, text: &str) {
        poll_until(&format!("{text:?} on the terminal"), || {
            self.seen().contains(text)
        });
    }

    /// Whether the terminal is back in the cooked mode it started in (echo, line editing).
    fn is_cooked(&self) -> bool {
        let modes = termios::tcgetattr(&self.master).unwrap().local_modes;
        modes.contains(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG)
    }
}

/// What a child writes to a pipe, collected by a thread.
struct Collected {
    seen: Arc<Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

/// Collects what a child writes to a pipe.
fn collect(mut from: impl Read + Send + 'static) -> Collected {
    let seen = Arc::<Mutex<Vec<u8>>>::default();
    let into = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buffer) {
            into.lock().unwrap().extend_from_slice(&buffer[..n]);
        }
    });
    Collected { seen, reader }
}

fn text(collected: &Collected) -> String {
    String::from_utf8_lossy(&collected.seen.lock().unwrap()).into_owned()
}

impl Collected {
    /// Everything, once the writer has closed the pipe (after the child exited).
    fn all(self) -> String {
        self.reader.join().unwrap();
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}

#[test]
fn exec_with_a_terminal_gets_its_size_its_resizes_and_typed_input_and_exits_with_its_status() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    daemon.ok(&["run", "-d", "--name", "box", BUSYBOX, "sleep", "1000"]);

    // A command that asks at once sees the size from its start.
    let (pty, slave) = Pty::open(27, 77);
    let mut child = pty.spawn(slave, ctl(&daemon, &["exec", "-t", "box", "stty", "size"]));
    assert_eq!(exit_code(&mut child), Some(0), "{}", pty.seen());
    pty.wait_for("27 77");

    let (pty, slave) = Pty::open(30, 100);
    let mut child = pty.spawn(slave, ctl(&daemon, &["exec", "-it", "box", "sh"]));
    // `$((...))` makes the answer differ from the typed line, which the shell echoes.
    pty.type_in(b"tty | sed 's/^/tty=/'; stty size | sed 's/^/size=/'; echo typed-$((6*7))\r");
    pty.wait_for("typed-42");
    let seen = pty.seen();
    assert!(seen.contains("tty=/dev/pts/"), "{seen}");
    assert!(seen.contains("size=30 100"), "{seen}");

    pty.resize(40, 120);
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    kill_process(pid, Signal::WINCH).unwrap();
    // The new size travels to the daemon while the shell may already run the next command:
    // ask until it has arrived.
    poll_until("the new size inside", || {
        pty.type_in(b"stty size | sed 's/^/now=/'\r");
        std::thread::sleep(Duration::from_millis(200));
        pty.seen().contains("now=40 120")
    });

    pty.type_in(b"exit 3\r");
    assert_eq!(exit_code(&mut child), Some(3), "{}", pty.seen());
    assert!(pty.is_cooked(), "raw mode outlived testudoctl");
    assert_eq!(state(&daemon, "box"), "running");
    daemon.ok(&["rm", "-f", "box"]);
}

#[test]
fn a_signal_ends_an_exec_session_restores_the_terminal_and_kills_the_process() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    daemon.ok(&["run", "-d", "--name", "box", BUSYBOX, "sleep", "1000"]);
    let (pty, slave) = Pty::open(24, 80);
    let mut child = pty.spawn(
        slave,
        ctl(
            &daemon,
            &[
                "exec",
                "-it",
                "box",
                "sh",
                "-c",
                "echo started; exec sleep 4242",
            ],
        ),
    );
    pty.wait_for("started");
    let running = || {
        daemon
            .ok(&["exec", "box", "ps", "-o", "args"])
            .contains("sleep 4242")
    };
    poll_until("the exec process to run", running);
    assert!(
        !pty.is_cooked(),
        "testudoctl did not put its terminal in raw mode"
    );
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    kill_process(pid, Signal::TERM).unwrap();
    assert_eq!(exit_code(&mut child), Some(128 + 15), "{}", pty.seen());
    assert!(pty.is_cooked(), "raw mode outlived testudoctl");
    // The daemon kills an exec process whose client went away.
    poll_until("the exec process to be killed", || !running());
    daemon.ok(&["rm", "-f", "box"]);
}

#[test]
fn exec_without_i_reads_end_of_file_and_with_i_reads_the_piped_input() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    daemon.ok(&["run", "-d", "--name", "box", BUSYBOX, "sleep", "1000"]);

    // testudoctl's own stdin stays open: only the daemon can give the process end of file.
    let mut child = ctl(&daemon, &["exec", "box", "sh", "-c", "cat; echo eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let held_open = child.stdin.take().unwrap();
    let out = collect(child.stdout.take().unwrap());
    assert_eq!(exit_code(&mut child), Some(0));
    drop(held_open);
    assert_eq!(out.all(), "eof\n");

    let mut child = ctl(&daemon, &["exec", "-i", "box", "sh", "-c", "cat; exit 7"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let out = collect(child.stdout.take().unwrap());
    input.write_all(b"one\ntwo\n").unwrap();
    poll_until("the piped input echoed", || text(&out) == "one\ntwo\n");
    drop(input);
    assert_eq!(exit_code(&mut child), Some(7));
    assert_eq!(out.all(), "one\ntwo\n");

    // With -t and no local terminal, the end of the piped input reaches the shell as ctrl-d.
    let mut child = ctl(&daemon, &["exec", "-i", "-t", "box", "sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    input.write_all(b"echo piped-$((3*3))\n").unwrap();
    // Only once the shell reads: a ctrl-d that arrives while it switches its terminal out of
    // canonical mode can be lost, as it would be for a person typing ahead.
    poll_until("the piped command's output", || {
        text(&out).contains("piped-9")
    });
    drop(input);
    assert_eq!(exit_code(&mut child), Some(0), "{}", text(&out));
    assert!(text(&out).contains("piped-9"), "{}", text(&out));
    assert_eq!(
        err.all(),
        "testudoctl: warning: standard input is not a terminal\n"
    );

    let output = daemon.ctl(&["exec", "-e", "WHO=err", "box", "sh", "-c", "echo $WHO >&2"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8(output.stderr).unwrap(), "err\n");
    assert!(output.stdout.is_empty());
    let output = daemon.ctl(&[
        "exec",
        "-u",
        "1000:1000",
        "-w",
        "/tmp",
        "box",
        "sh",
        "-c",
        "id -u; pwd",
    ]);
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "1000\n/tmp\n");
    daemon.ok(&["rm", "-f", "box"]);
}

#[test]
fn run_i_passes_piped_input_and_ends_when_it_ends() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    let mut child = ctl(&daemon, &["run", "-i", "--rm", BUSYBOX, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let out = collect(child.stdout.take().unwrap());
    input.write_all(b"hi\n").unwrap();
    drop(input);
    assert_eq!(exit_code(&mut child), Some(0));
    assert_eq!(out.all(), "hi\n");
    assert!(names(&daemon.json(&["ps", "-a"])).is_empty());

    // Its status is the container's; output written at once is not lost to a late attach.
    let output = daemon.ctl(&[
        "run",
        "-i",
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        "echo first; exit 4",
    ]);
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "first\n");
}

#[test]
fn attach_sees_later_output_sends_input_and_ends_with_the_container() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    let script = "while read line; do echo \"got $line\"; done; echo closed; sleep 1000";
    daemon.ok(&[
        "run", "-d", "-i", "--name", "talk", BUSYBOX, "sh", "-c", script,
    ]);

    let mut child = ctl(&daemon, &["attach", "talk"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let out = collect(child.stdout.take().unwrap());
    input.write_all(b"ping\n").unwrap();
    poll_until("the answer to the input", || {
        text(&out).contains("got ping")
    });
    // The end of this client's input is not the container's (no stdin_once): a second client
    // still reaches it, and both see the answer.
    drop(input);
    let mut second = ctl(&daemon, &["attach", "talk"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut second_input = second.stdin.take().unwrap();
    let second_out = collect(second.stdout.take().unwrap());
    second_input.write_all(b"pong\n").unwrap();
    poll_until("the answer to the second client", || {
        text(&second_out).contains("got pong")
    });
    poll_until("the answer to the first client", || {
        text(&out).contains("got pong")
    });
    assert!(!text(&out).contains("closed"), "{}", text(&out));

    daemon.ok(&["kill", "talk"]);
    assert_eq!(exit_code(&mut child), Some(137));
    assert_eq!(exit_code(&mut second), Some(137));
    daemon.ok(&["rm", "talk"]);
}

#[test]
fn detach_keys_leave_an_attached_or_run_container_running() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    daemon.ok(&["run", "-d", "-i", "-t", "--name", "term", BUSYBOX, "sh"]);
    let (pty, slave) = Pty::open(24, 80);
    let mut child = pty.spawn(slave, ctl(&daemon, &["attach", "term"]));
    pty.type_in(b"echo attached-$((1+1))\r");
    pty.wait_for("attached-2");
    pty.type_in(b"\x10\x11");
    assert_eq!(exit_code(&mut child), Some(0), "{}", pty.seen());
    assert!(pty.is_cooked(), "raw mode outlived testudoctl");
    assert_eq!(state(&daemon, "term"), "running");
    daemon.ok(&["rm", "-f", "term"]);

    let (pty, slave) = Pty::open(33, 91);
    let mut child = pty.spawn(
        slave,
        ctl(&daemon, &["run", "-it", "--name", "fg", BUSYBOX, "sh"]),
    );
    pty.type_in(b"stty size | sed 's/^/size=/'\r");
    pty.wait_for("size=33 91");
    pty.type_in(b"\x10\x11");
    assert_eq!(exit_code(&mut child), Some(0), "{}", pty.seen());
    assert!(pty.is_cooked(), "raw mode outlived testudoctl");
    assert_eq!(state(&daemon, "fg"), "running");
    daemon.ok(&["rm", "-f", "fg"]);
}

#[test]
fn exec_in_a_stopped_or_unknown_container_fails_clearly() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    let refused = daemon.fails(&["exec", "ghost", "true"]);
    assert!(refused.contains("not found"), "{refused}");
    daemon.ok(&["run", "--name", "done", BUSYBOX, "true"]);
    let refused = daemon.fails(&["exec", "done", "true"]);
    assert!(
        refused.contains("is stopped, cannot exec in it"),
        "{refused}"
    );
    let refused = daemon.fails(&["attach", "done"]);
    assert!(refused.contains("is stopped"), "{refused}");
    daemon.ok(&["rm", "done"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_checks_stdin_once_and_refuses_input_to_an_exec_without_stdin() {
    use testudo_api::containers::v1::containers_service_client::ContainersServiceClient;
    use testudo_api::containers::v1::{
        exec_request, exec_response, ContainerConfig, CreateRequest, ExecRequest, ExecStart,
    };
    use tokio_stream::StreamExt;
    use tonic::Code;

    let Some(daemon) = tokio::task::spawn_blocking(daemon_with_busybox)
        .await
        .unwrap()
    else {
        return;
    };
    let mut client = ContainersServiceClient::new(channel(daemon.socket()).await);
    for (stdin, tty, message) in [
        (false, false, "stdin_once needs stdin"),
        (true, true, "stdin_once cannot be used with a tty"),
    ] {
        let request = CreateRequest {
            namespace: "default".to_owned(),
            config: Some(ContainerConfig {
                image: BUSYBOX.to_owned(),
                stdin,
                tty,
                stdin_once: true,
                ..ContainerConfig::default()
            }),
        };
        let refused = client.create(request).await.unwrap_err();
        assert_eq!(
            (refused.code(), refused.message()),
            (Code::InvalidArgument, message)
        );
    }
    assert!(
        names(&daemon.json(&["ps", "-a"])).is_empty(),
        "a refused create left a container"
    );
    daemon.ok(&["run", "-d", "--name", "box", BUSYBOX, "sleep", "1000"]);

    let start = ExecRequest {
        message: Some(exec_request::Message::Start(ExecStart {
            namespace: "default".to_owned(),
            container: "box".to_owned(),
            args: vec!["sleep".to_owned(), "1000".to_owned()],
            ..ExecStart::default()
        })),
    };
    let input = ExecRequest {
        message: Some(exec_request::Message::Stdin(b"x".to_vec())),
    };
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    sender.send(start).await.unwrap();
    let mut responses = client
        .exec(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    sender.send(input).await.unwrap();
    let refused = loop {
        match responses.next().await.unwrap() {
            Ok(response) => assert!(
                !matches!(response.message, Some(exec_response::Message::Exit(_))),
                "the exec ended instead of refusing its input"
            ),
            Err(status) => break status,
        }
    };
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(
        refused.message(),
        "the exec in container \"box\" was started without stdin"
    );
    daemon.ok(&["rm", "-f", "box"]);
}

#[test]
fn run_i_and_attach_pass_their_signals_on_to_the_container() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    let trapping = "trap 'echo got $0; exit 3' TERM; echo ready; while true; do sleep 0.1; done";
    let terminate = |child: &Child| {
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
        kill_process(pid, Signal::TERM).unwrap();
    };
    let mut run = ctl(
        &daemon,
        &["run", "-i", "--rm", BUSYBOX, "sh", "-c", trapping, "TERM"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let out = collect(run.stdout.take().unwrap());
    poll_until("the trap to be set", || text(&out).contains("ready"));
    terminate(&run);
    // The container got it, ran its trap and ended the session with its own status.
    assert_eq!(exit_code(&mut run), Some(3));
    assert_eq!(out.all(), "ready\ngot TERM\n");

    // Ready once a line came in through the attach: testudoctl then relays, signals caught.
    let reading = "trap 'echo got $0; exit 3' TERM; read line; echo ready; \
        while true; do sleep 0.1; done";
    daemon.ok(&[
        "run", "-d", "-i", "--name", "held", BUSYBOX, "sh", "-c", reading, "TERM",
    ]);
    let mut attached = ctl(&daemon, &["attach", "held"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = collect(attached.stdout.take().unwrap());
    let mut input = attached.stdin.take().unwrap();
    input.write_all(b"go\n").unwrap();
    poll_until("the line to arrive", || text(&seen).contains("ready"));
    terminate(&attached);
    assert_eq!(exit_code(&mut attached), Some(3));
    assert_eq!(seen.all(), "ready\ngot TERM\n");
    assert_eq!(daemon.ok(&["wait", "held"]), "3\n");
    daemon.ok(&["rm", "held"]);
}
