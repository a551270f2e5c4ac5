//! Reading a container's CRI log (`<RFC 3339 time> <stdout|stderr> <F|P> <line>`) back: the
//! rotated files oldest first (`<name>.log.<n>`, …, `<name>.log.1`), then the live file; with
//! `since` and `tail` filters, and `follow`, which keeps reading new records until the container
//! has stopped and everything it logged has been read.
//!
//! Following polls the live file (every [`FOLLOW_POLL`]) rather than using inotify: one reader
//! per client, and a poll costs a `read` that returns 0. A rotation while following is noticed
//! by the live path changing its inode: the reader drains the file it holds (now `.1` or older),
//! then the files rotated after it, then the new live file, so no record is skipped.
//!
//! `tail` counts records, not lines: a line longer than the monitor's line limit is several
//! (partial) records.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::{ContainerError, ContainerService};
use crate::state::ContainerRecord;

/// How often a following reader looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// How many records a reader may be ahead of its client.
const CHANNEL_DEPTH: usize = 64;

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One record of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// When the monitor read it from the container.
    pub time: SystemTime,
    /// Which stream.
    pub stream: LogStream,
    /// The line goes on in the next record (`P`).
    pub partial: bool,
    /// The bytes, without the newline.
    pub line: Vec<u8>,
}

/// Which records to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep reading new records until the container has stopped.
    pub follow: bool,
    /// Only records at or after this time.
    pub since: Option<SystemTime>,
    /// Only the last `tail` records logged so far (after `since`), then new ones.
    pub tail: Option<u64>,
}

/// Parses one CRI log record (without its newline); `None` if it is malformed.
pub fn parse_record(line: &[u8]) -> Option<LogRecord> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let time = humantime::parse_rfc3339(time).ok()?;
    let stream = match parts.next()? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    Some(LogRecord {
        time,
        stream,
        partial,
        line: parts.next().unwrap_or_default().to_vec(),
    })
}

/// `log` with a rotation suffix: `<log>.<n>`.
fn rotated(log: &Path, n: u32) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The rotated files of `log` that exist, oldest (highest number) first.
fn rotated_files(log: &Path) -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = (1..)
        .map(|n| (n, rotated(log, n)))
        .take_while(|(_, path)| path.exists())
        .collect();
    found.reverse();
    found
}

/// Reads records from one open file, keeping a trailing incomplete line for the next read.
#[derive(Debug)]
struct FileReader {
    file: File,
    inode: u64,
    pending: Vec<u8>,
}

impl FileReader {
    fn open(path: &Path) -> io::Result<Option<FileReader>> {
        match File::open(path) {
            Ok(file) => {
                let inode = file.metadata()?.ino();
                Ok(Some(FileReader {
                    file,
                    inode,
                    pending: Vec::new(),
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every complete record now in the file after what was read before.
    fn read_available(&mut self, mut emit: impl FnMut(LogRecord)) -> io::Result<()> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = self.file.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            self.pending.extend_from_slice(&buf[..n]);
            let mut start = 0;
            while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
                if let Some(record) = parse_record(&self.pending[start..start + end]) {
                    emit(record);
                }
                start += end + 1;
            }
            self.pending.drain(..start);
        }
    }
}

/// Reads `log` and its rotated files as `options` say, handing each record to `send`; stops
/// when `send` returns false (the client went away). With `follow`, goes on until `stopped` is
/// set and the files are drained.
fn read_log(
    log: &Path,
    options: LogOptions,
    stopped: &AtomicBool,
    mut send: impl FnMut(LogRecord) -> bool,
) -> io::Result<()> {
    let wanted = |record: &LogRecord| options.since.is_none_or(|since| record.time >= since);
    // The live file is opened first: a rotation while the old files are read then moves it,
    // which the follow loop below notices.
    let mut live = FileReader::open(log)?;
    let mut backlog: VecDeque<LogRecord> = VecDeque::new();
    let mut keep = |record: LogRecord| {
        if wanted(&record) {
            backlog.push_back(record);
            if let Some(tail) = options.tail {
                while u64::try_from(backlog.len()).unwrap_or(u64::MAX) > tail {
                    backlog.pop_front();
                }
            }
        }
    };
    for (_, path) in rotated_files(log) {
        if let Some(mut old) = FileReader::open(&path)? {
            old.read_available(&mut keep)?;
        }
    }
    if let Some(live) = live.as_mut() {
        live.read_available(&mut keep)?;
    }
    for record in backlog {
        if !send(record) {
            return Ok(());
        }
    }
    if !options.follow {
        return Ok(());
    }
    let open = std::cell::Cell::new(true);
    let mut forward = |record: LogRecord| {
        if open.get() && wanted(&record) {
            open.set(send(record));
        }
    };
    loop {
        // Read after checking, so that the records written before the stop are all read.
        let last_round = stopped.load(Ordering::Acquire);
        if live.is_none() {
            live = FileReader::open(log)?;
        }
        if let Some(reader) = live.as_mut() {
            reader.read_available(&mut forward)?;
            let now = std::fs::metadata(log).ok().map(|m| m.ino());
            if now.is_some() && now != Some(reader.inode) {
                // Rotated: what we hold is drained; the files rotated after it come next.
                let held = reader.inode;
                let newer: Vec<PathBuf> = rotated_files(log)
                    .into_iter()
                    .skip_while(|(_, path)| {
                        std::fs::metadata(path).map(|m| m.ino()).ok() != Some(held)
                    })
                    .skip(1)
                    .map(|(_, path)| path)
                    .collect();
                for path in newer {
                    if let Some(mut file) = FileReader::open(&path)? {
                        file.read_available(&mut forward)?;
                    }
                }
                live = FileReader::open(log)?;
                continue;
            }
        }
        if !open.get() || last_round {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// The records of a container's log, as [`ContainerService::logs`] streams them; the stream
/// ends after the last one, or with an error.
pub type LogReceiver = mpsc::Receiver<Result<LogRecord, ContainerError>>;

impl ContainerService {
    /// Streams the container's log records as `options` say. With `follow`, the stream ends
    /// once the container has stopped (or was deleted) and its log is drained; a created
    /// container is followed through its start.
    pub async fn logs(
        &self,
        namespace: &str,
        container: &str,
        options: LogOptions,
    ) -> Result<LogReceiver, ContainerError> {
        let (_, record) = self.lookup(namespace, container)?;
        let record = self.refresh(record).await?;
        let log = self.paths(&record).log;
        let stopped = Arc::new(AtomicBool::new(true));
        if options.follow && record.status != super::status::STOPPED {
            stopped.store(false, Ordering::Release);
            self.watch_exit(&record, stopped.clone());
        }
        let (sender, receiver) = mpsc::channel(CHANNEL_DEPTH);
        let id = record.id.clone();
        tokio::task::spawn_blocking(move || {
            let read = read_log(&log, options, &stopped, |record| {
                sender.blocking_send(Ok(record)).is_ok()
            });
            if let Err(source) = read {
                tracing::warn!(container_id = %id, error = %source, "cannot read the log");
                let _ = sender.blocking_send(Err(ContainerError::Io {
                    action: "read",
                    path: log,
                    source,
                }));
            }
        });
        Ok(receiver)
    }

    /// Sets `stopped` once the container's monitor reports its exit, or cannot be reached (the
    /// container was deleted, or the monitor died).
    fn watch_exit(&self, record: &ContainerRecord, stopped: Arc<AtomicBool>) {
        let socket = self.socket_of(record);
        let id = record.id.clone();
        tokio::task::spawn_blocking(move || {
            let waited =
                testudo_monitor_protocol::Client::connect(&socket).and_then(|mut c| c.wait(&id));
            if let Err(e) = waited {
                tracing::debug!(container_id = %id, error = %e, "log follower stops: no monitor");
            }
            stopped.store(true, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use super::*;

    fn line(second: u32, stream: &str, tag: &str, text: &str) -> String {
        format!("2026-01-01T00:00:{second:02}.000000000Z {stream} {tag} {text}\n")
    }

    fn texts(records: &[LogRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8(r.line.clone()).unwrap())
            .collect()
    }

    fn read(log: &Path, options: LogOptions) -> Vec<LogRecord> {
        let mut out = Vec::new();
        read_log(log, options, &AtomicBool::new(true), |r| {
            out.push(r);
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn a_record_is_parsed_with_its_stream_tag_and_bytes() {
        let record = parse_record(b"2026-01-01T00:00:01.5Z stderr P a b  c").unwrap();
        assert_eq!(record.stream, LogStream::Stderr);
        assert!(record.partial);
        assert_eq!(record.line, b"a b  c");
        let empty = parse_record(b"2026-01-01T00:00:01Z stdout F").unwrap();
        assert!(empty.line.is_empty() && !empty.partial);
        assert!(parse_record(b"yesterday stdout F x").is_none());
        assert!(parse_record(b"2026-01-01T00:00:01Z stdin F x").is_none());
        assert!(parse_record(b"2026-01-01T00:00:01Z stdout X x").is_none());
    }

    #[test]
    fn rotated_files_come_first_and_since_and_tail_filter() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c.log");
        std::fs::write(rotated(&log, 2), line(1, "stdout", "F", "one")).unwrap();
        std::fs::write(rotated(&log, 1), line(2, "stderr", "F", "two")).unwrap();
        let live = line(3, "stdout", "P", "thr") + &line(3, "stdout", "F", "ee") + "garbage\n";
        std::fs::write(&log, live).unwrap();

        let all = read(&log, LogOptions::default());
        assert_eq!(texts(&all), ["one", "two", "thr", "ee"]);
        assert_eq!(all[1].stream, LogStream::Stderr);
        assert!(all[2].partial);

        let since = humantime::parse_rfc3339("2026-01-01T00:00:02Z").unwrap();
        let options = LogOptions {
            since: Some(since),
            ..LogOptions::default()
        };
        assert_eq!(texts(&read(&log, options)), ["two", "thr", "ee"]);
        let options = LogOptions {
            tail: Some(1),
            ..LogOptions::default()
        };
        assert_eq!(texts(&read(&log, options)), ["ee"]);
        let options = LogOptions {
            tail: Some(0),
            ..LogOptions::default()
        };
        assert!(read(&log, options).is_empty());
    }

    #[test]
    fn a_missing_log_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join("none.log"), LogOptions::default()).is_empty());
    }

    #[test]
    fn following_reads_across_a_rotation_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c.log");
        std::fs::write(&log, line(1, "stdout", "F", "first")).unwrap();
        let stopped = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = std::sync::mpsc::channel();
        let reader = {
            let (log, stopped) = (log.clone(), stopped.clone());
            std::thread::spawn(move || {
                let options = LogOptions {
                    follow: true,
                    ..LogOptions::default()
                };
                read_log(&log, options, &stopped, |r| sender.send(r).is_ok()).unwrap();
            })
        };
        let next = || String::from_utf8(receiver.recv().unwrap().line).unwrap();
        assert_eq!(next(), "first");
        // Half a record, then its end: only the whole record is read.
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let second = line(2, "stdout", "F", "second");
        file.write_all(&second.as_bytes()[..10]).unwrap();
        file.write_all(&second.as_bytes()[10..]).unwrap();
        assert_eq!(next(), "second");
        // Rotate twice, as the monitor does, with records in each file.
        file.write_all(line(3, "stdout", "F", "third").as_bytes())
            .unwrap();
        drop(file);
        std::fs::rename(&log, rotated(&log, 1)).unwrap();
        std::fs::write(&log, line(4, "stdout", "F", "fourth")).unwrap();
        std::fs::rename(rotated(&log, 1), rotated(&log, 2)).unwrap();
        std::fs::rename(&log, rotated(&log, 1)).unwrap();
        std::fs::write(&log, line(5, "stdout", "F", "fifth")).unwrap();
        stopped.store(true, Ordering::Release);
        reader.join().unwrap();
        let rest: Vec<String> = receiver
            .try_iter()
            .map(|r| String::from_utf8(r.line).unwrap())
            .collect();
        assert_eq!(rest, ["third", "fourth", "fifth"]);
    }
}
