//! Shared helpers for the monitor's integration tests (included with `mod common;`): a monitor
//! started through the real `testudo monitor` in a private directory, and readers of CRI logs.

#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;
pub(crate) use testudo_monitor_protocol::{
    Client, ContainerStatus, CreateContainer, ErrorKind, LogRotation, Termination,
};
pub(crate) use testudo_test_support::{require_root, Bundle, LeakCheck};

/// A bundle running `sh -c script`, written.
pub(crate) fn sh(script: &str) -> Bundle {
    Bundle::new().args(&["/bin/sh", "-c", script]).write()
}

/// A monitor in a temporary directory: `state/`, `monitor.sock`, `logs/`.
pub(crate) struct TestMonitor {
    dir: TempDir,
    pub(crate) pid: i32,
}

impl TestMonitor {
    /// Runs `testudo monitor` and waits for it to return (the monitor has detached by then).
    pub(crate) fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("testudo-monitor-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        let mut monitor = Self { dir, pid: 0 };
        let output = monitor.command().output().unwrap();
        assert!(
            output.status.success(),
            "testudo monitor failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        monitor.pid = monitor.client().monitor_pid();
        monitor
    }

    /// A temporary directory whose monitor is started by the caller with [`command`](Self::command).
    pub(crate) fn unstarted() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("testudo-monitor-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        Self { dir, pid: 0 }
    }

    /// The `testudo monitor` command for this directory.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(testudo_test_support::testudo_binary());
        cmd.arg("monitor")
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--socket")
            .arg(self.socket());
        cmd
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.path().join("monitor.sock")
    }

    pub(crate) fn runtime_root(&self) -> PathBuf {
        self.state_dir().join("runtime")
    }

    pub(crate) fn log_path(&self, id: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{id}.log"))
    }

    pub(crate) fn client(&self) -> Client {
        Client::connect(&self.socket()).unwrap()
    }

    /// A create request for `bundle`, logging to `logs/<id>.log`.
    pub(crate) fn request(&self, bundle: &Bundle) -> CreateContainer {
        CreateContainer {
            id: bundle.id().to_owned(),
            bundle: bundle.path().to_path_buf(),
            log_path: self.log_path(bundle.id()),
            log_rotation: LogRotation::default(),
            tty: false,
            stdin: false,
        }
    }

    /// Creates and starts `bundle`; returns the init's pid.
    pub(crate) fn run(&self, client: &mut Client, bundle: &Bundle) -> i32 {
        let (pid, _) = client.create(self.request(bundle)).unwrap();
        client.start(bundle.id()).unwrap();
        pid
    }

    /// A leak check for `bundle` in this monitor's runtime root.
    pub(crate) fn leaks(&self, bundle: &Bundle) -> LeakCheck {
        LeakCheck::snapshot()
            .bundle(bundle)
            .state_root(&self.runtime_root())
    }

    /// Deletes every container, shuts the monitor down and waits until it has exited.
    pub(crate) fn shut_down(&self) {
        let Ok(mut client) = Client::connect(&self.socket()) else {
            return;
        };
        for record in client.list().unwrap_or_default() {
            let _ = client.delete(&record.id, true);
        }
        let _ = client.shutdown();
        assert!(
            wait_until(Duration::from_secs(10), || !process_alive(self.pid)),
            "monitor {} did not exit",
            self.pid
        );
    }
}

impl Drop for TestMonitor {
    fn drop(&mut self) {
        if self.pid > 0 && process_alive(self.pid) {
            if let Ok(mut client) = Client::connect(&self.socket()) {
                for record in client.list().unwrap_or_default() {
                    let _ = client.delete(&record.id, true);
                }
                let _ = client.shutdown();
            }
        }
    }
}

/// True if `pid` exists and is not a zombie.
pub(crate) fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next())
        })
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Field `n` (1-based, as in proc(5)) of `/proc/<pid>/stat`.
pub(crate) fn stat_field(pid: i32, n: usize) -> i64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = text.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(n - 3).unwrap().parse().unwrap()
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub(crate) fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// One CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRecord {
    pub(crate) time: String,
    pub(crate) stream: String,
    pub(crate) tag: String,
    pub(crate) line: String,
}

/// The records of one log file, each checked for the format's shape.
pub(crate) fn read_log(path: &Path) -> Vec<LogRecord> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let mut next = || parts.next().unwrap_or_default().to_owned();
            let record = LogRecord {
                time: next(),
                stream: next(),
                tag: next(),
                line: next(),
            };
            assert_rfc3339_nanos_utc(&record.time);
            assert!(
                record.stream == "stdout" || record.stream == "stderr",
                "bad stream in {line:?}"
            );
            assert!(
                record.tag == "F" || record.tag == "P",
                "bad tag in {line:?}"
            );
            record
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
fn assert_rfc3339_nanos_utc(time: &str) {
    let b = time.as_bytes();
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    let ok = b.len() == 30
        && digits.iter().all(|&i| b[i].is_ascii_digit())
        && b[20..29].iter().all(u8::is_ascii_digit)
        && [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (29, b'Z'),
        ]
        .iter()
        .all(|&(i, c)| b[i] == c);
    assert!(ok, "not an RFC 3339 UTC time with nanoseconds: {time:?}");
}

/// The log's records with `log.N` … `log.1` before `log`, oldest first.
pub(crate) fn read_rotated_log(path: &Path) -> (Vec<LogRecord>, usize) {
    let mut files = Vec::new();
    for n in 1.. {
        let rotated = PathBuf::from(format!("{}.{n}", path.display()));
        if !rotated.exists() {
            break;
        }
        files.push(rotated);
    }
    files.reverse();
    files.push(path.to_path_buf());
    let count = files.len();
    (files.iter().flat_map(|f| read_log(f)).collect(), count)
}

/// A connection that sends and receives raw frames, for requests the [`Client`] would not send and
/// for requests left pending.
pub(crate) struct RawConnection {
    stream: std::os::unix::net::UnixStream,
    decoder: testudo_monitor_protocol::FrameDecoder,
}

impl RawConnection {
    pub(crate) fn connect(socket: &Path) -> Self {
        let stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Self {
            stream,
            decoder: testudo_monitor_protocol::FrameDecoder::new(),
        }
    }

    /// Connected and past the hello.
    pub(crate) fn greeted(socket: &Path) -> Self {
        let mut raw = Self::connect(socket);
        raw.send(&testudo_monitor_protocol::Request::Hello {
            version: testudo_monitor_protocol::PROTOCOL_VERSION,
        });
        let hello = raw.receive();
        assert!(
            matches!(
                hello,
                Some(testudo_monitor_protocol::Response::Hello { .. })
            ),
            "{hello:?}"
        );
        raw
    }

    pub(crate) fn send(&mut self, request: &testudo_monitor_protocol::Request) {
        self.send_bytes(&testudo_monitor_protocol::encode(request).unwrap());
    }

    pub(crate) fn send_bytes(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.stream.write_all(bytes).unwrap();
    }

    /// The next response; `None` when the monitor closed the connection.
    pub(crate) fn receive(&mut self) -> Option<testudo_monitor_protocol::Response> {
        use std::io::Read;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(body) = self.decoder.next_frame().unwrap() {
                return Some(testudo_monitor_protocol::decode(body).unwrap());
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.decoder.push(&chunk[..n]),
            }
        }
    }
}

/// `bundle` with `process.terminal` set.
pub(crate) fn with_terminal(bundle: Bundle) -> Bundle {
    bundle
        .with_spec(|spec| {
            let mut value = serde_json::to_value(&*spec).unwrap();
            value["process"]["terminal"] = serde_json::Value::Bool(true);
            *spec = serde_json::from_value(value).unwrap();
        })
        .write()
}

/// Everything readable from `fd` until end of file (or, for a terminal's master, until no
/// process holds the terminal: `EIO`).
pub(crate) fn read_all(fd: std::os::fd::OwnedFd) -> String {
    use std::io::Read;
    let mut file = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Reads `fd` until what was read contains `needle`; returns all of it. Panics at end of file.
pub(crate) fn read_until(file: &mut std::fs::File, needle: &str) -> String {
    use std::io::Read;
    let mut text = String::new();
    let mut chunk = [0u8; 4096];
    while !text.contains(needle) {
        let n = file.read(&mut chunk).unwrap();
        assert!(n > 0, "end of file before {needle:?}; read {text:?}");
        text.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    text
}

/// Writes `text` to `fd` (a pipe's write end or a terminal's master).
pub(crate) fn write_to(fd: &std::os::fd::OwnedFd, text: &str) {
    use std::io::Write;
    let mut file = std::fs::File::from(fd.try_clone().unwrap());
    file.write_all(text.as_bytes()).unwrap();
}
