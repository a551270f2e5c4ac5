//! Container output in the CRI log format, `<RFC 3339 UTC time> <stdout|stderr> <F|P> <line>`, in a
//! file rotated by size.
//!
//! A line longer than [`MAX_LINE`] becomes `P` (partial) records of that size and a final `F` record,
//! as kubelet's reader expects. Output without a trailing newline is held (up to [`MAX_LINE`]) until
//! the line ends or the stream closes; a stream's last unterminated line is written as `F`, as
//! containerd does.
//!
//! Durability: records are written with one `write(2)` per batch and not synced, because the failure
//! this file must survive is the death of a process (monitor, daemon), after which the page cache
//! still holds every byte; a per-line `fsync` would make a chatty container cost a disk flush per
//! line. The file is synced when it is rotated out (so a host crash cannot leave a renamed file
//! without its data) and when the container exits, before its exit is recorded.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use testudo_monitor_protocol::LogRotation;

/// The longest line written as one record; longer lines are split.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// A held partial line keeps its buffer only up to this capacity once written out; a larger one is
/// freed so an idle container costs no memory for a long line it printed once.
const KEEP_CAPACITY: usize = 1024;

/// Which output of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static [u8] {
        match self {
            Self::Stdout => b"stdout",
            Self::Stderr => b"stderr",
        }
    }
}

/// Whether a record ends its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    /// `F`: the line is complete.
    Full,
    /// `P`: the line goes on in the next record.
    Partial,
}

/// Cuts one stream's bytes into records.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    held: Vec<u8>,
}

impl LineSplitter {
    /// A splitter that holds `held`, the start of a line (from an upgrade's handover).
    pub(crate) fn holding(held: Vec<u8>) -> Self {
        Self { held }
    }

    /// The start of a line that is held until it ends.
    pub(crate) fn held(&self) -> &[u8] {
        &self.held
    }

    /// Emits the records that `data` completes.
    pub(crate) fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(Tag, &[u8])) {
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            self.append(&data[..end], emit);
            self.emit_held(emit);
            data = &data[end + 1..];
        }
        self.append(data, emit);
    }

    /// Emits what is held as a complete line: the stream has ended.
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(Tag, &[u8])) {
        if !self.held.is_empty() {
            self.emit_held(emit);
        }
    }

    fn append(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(Tag, &[u8])) {
        if self.held.is_empty() {
            // Written straight from the read buffer; only a tail is copied.
            while bytes.len() > MAX_LINE {
                emit(Tag::Partial, &bytes[..MAX_LINE]);
                bytes = &bytes[MAX_LINE..];
            }
        }
        while !bytes.is_empty() {
            if self.held.len() == MAX_LINE {
                emit(Tag::Partial, &self.held);
                self.held.clear();
            }
            let take = bytes.len().min(MAX_LINE - self.held.len());
            self.held.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
    }

    /// Emits the held bytes as the end of a line (possibly empty).
    fn emit_held(&mut self, emit: &mut impl FnMut(Tag, &[u8])) {
        emit(Tag::Full, &self.held);
        if self.held.capacity() > KEEP_CAPACITY {
            self.held = Vec::new();
        } else {
            self.held.clear();
        }
    }
}

/// Appends one record to `out`.
pub(crate) fn format_record(out: &mut Vec<u8>, time: &str, stream: Stream, tag: Tag, line: &[u8]) {
    out.extend_from_slice(time.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.name());
    out.extend_from_slice(match tag {
        Tag::Full => b" F ",
        Tag::Partial => b" P ",
    });
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// The renames that rotate `path` keeping `keep` old files, oldest first so none is overwritten
/// before it has moved: `path.<keep-1>` -> `path.<keep>`, …, `path` -> `path.1`.
pub(crate) fn rotation_renames(path: &Path, keep: u32) -> Vec<(PathBuf, PathBuf)> {
    let numbered = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    let mut renames: Vec<_> = (1..keep)
        .rev()
        .map(|n| (numbered(n), numbered(n + 1)))
        .collect();
    if keep > 0 {
        renames.push((path.to_path_buf(), numbered(1)));
    }
    renames
}

/// A container's log file.
#[derive(Debug)]
pub(crate) struct CriLog {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: LogRotation,
}

impl CriLog {
    /// Opens (appending) or creates the log file; also says whether it was created.
    pub(crate) fn open(path: &Path, rotation: LogRotation) -> io::Result<(Self, bool)> {
        let existed = path.exists();
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let log = Self {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
        };
        Ok((log, !existed))
    }

    /// Its state for an upgrade's handover: path, file, size and rotation.
    pub(crate) fn parts(&self) -> (&Path, &File, u64, LogRotation) {
        (&self.path, &self.file, self.size, self.rotation)
    }

    /// The log whose state [`CriLog::parts`] gave.
    pub(crate) fn from_parts(path: PathBuf, file: File, size: u64, rotation: LogRotation) -> Self {
        Self {
            path,
            file,
            size,
            rotation,
        }
    }

    /// Writes whole records, rotating first whenever the next record would take the file past its
    /// size limit. `records` must hold complete records only.
    pub(crate) fn write_records(&mut self, records: &[u8]) -> io::Result<()> {
        let mut rest = records;
        while !rest.is_empty() {
            let room = self.rotation.max_bytes.saturating_sub(self.size);
            let fits = whole_records_within(rest, usize::try_from(room).unwrap_or(usize::MAX));
            let batch = if fits == 0 && self.size == 0 {
                // A record larger than the limit still goes somewhere: alone, in a fresh file.
                first_record_len(rest)
            } else {
                fits
            };
            if batch == 0 {
                self.rotate()?;
                continue;
            }
            self.file.write_all(&rest[..batch])?;
            self.size += u64::try_from(batch).unwrap_or(u64::MAX);
            rest = &rest[batch..];
        }
        Ok(())
    }

    /// Flushes the file to disk.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        for (from, to) in rotation_renames(&self.path, self.rotation.keep) {
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// The length of the longest prefix of `records` made of whole records and at most `limit` long.
fn whole_records_within(records: &[u8], limit: usize) -> usize {
    let window = &records[..records.len().min(limit)];
    window
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |end| end + 1)
}

fn first_record_len(records: &[u8]) -> usize {
    records
        .iter()
        .position(|&b| b == b'\n')
        .map_or(records.len(), |end| end + 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn split(chunks: &[&[u8]], finish: bool) -> Vec<(Tag, Vec<u8>)> {
        let mut splitter = LineSplitter::default();
        let mut records = Vec::new();
        let mut emit = |tag, line: &[u8]| records.push((tag, line.to_vec()));
        for chunk in chunks {
            splitter.feed(chunk, &mut emit);
        }
        if finish {
            splitter.finish(&mut emit);
        }
        records
    }

    #[test]
    fn complete_lines_are_full_records_and_a_line_may_span_reads() {
        let records = split(&[b"one\ntw", b"o\n\nthree"], false);
        assert_eq!(
            records,
            [
                (Tag::Full, b"one".to_vec()),
                (Tag::Full, b"two".to_vec()),
                (Tag::Full, Vec::new()),
            ]
        );
    }

    #[test]
    fn the_unterminated_last_line_is_written_when_the_stream_ends() {
        let records = split(&[b"a\nrest"], true);
        assert_eq!(records.last(), Some(&(Tag::Full, b"rest".to_vec())));
    }

    #[test]
    fn a_long_line_becomes_partial_records_then_a_full_one() {
        let line = vec![b'x'; 2 * MAX_LINE + 5];
        let (first, second) = line.split_at(MAX_LINE + 3);
        let records = split(&[first, second, b"\n"], false);
        let tags: Vec<Tag> = records.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, [Tag::Partial, Tag::Partial, Tag::Full]);
        let lens: Vec<usize> = records.iter().map(|(_, l)| l.len()).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 5]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_one_full_record() {
        let mut data = vec![b'y'; MAX_LINE];
        data.push(b'\n');
        assert_eq!(split(&[&data], false), [(Tag::Full, vec![b'y'; MAX_LINE])]);
    }

    #[test]
    fn a_record_has_time_stream_tag_and_line() {
        let mut out = Vec::new();
        let time = "2024-02-29T12:34:56.000000005Z";
        format_record(&mut out, time, Stream::Stderr, Tag::Partial, b"oops");
        assert_eq!(out, b"2024-02-29T12:34:56.000000005Z stderr P oops\n");
    }

    #[test]
    fn rotation_moves_the_oldest_first() {
        let renames = rotation_renames(Path::new("/l/c.log"), 3);
        let text: Vec<(String, String)> = renames
            .iter()
            .map(|(a, b)| (a.display().to_string(), b.display().to_string()))
            .collect();
        assert_eq!(
            text,
            [
                ("/l/c.log.2".to_owned(), "/l/c.log.3".to_owned()),
                ("/l/c.log.1".to_owned(), "/l/c.log.2".to_owned()),
                ("/l/c.log".to_owned(), "/l/c.log.1".to_owned()),
            ]
        );
    }

    #[test]
    fn records_never_straddle_files_and_none_is_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c.log");
        let rotation = LogRotation {
            max_bytes: 25,
            keep: 10,
        };
        let (mut log, created) = CriLog::open(&path, rotation).unwrap();
        assert!(created);
        log.write_records(b"0123456789\nabcdefghij\nklmnopqrst\n")
            .unwrap();
        log.write_records(b"a record longer than the limit\nz\n")
            .unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        assert_eq!(read(&numbered(3)), "0123456789\nabcdefghij\n");
        assert_eq!(read(&numbered(2)), "klmnopqrst\n");
        assert_eq!(read(&numbered(1)), "a record longer than the limit\n");
        assert_eq!(read(&path), "z\n");
    }
}
