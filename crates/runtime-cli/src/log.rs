//! Where the runtime reports errors and warnings: stderr, plus the `--log` file in runc's text or JSON
//! format (conmon and containerd's shim read the last `error` line of that file).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::SystemTime;

/// The `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `time="…" level=error msg="…"`
    Text,
    /// `{"level":"error","msg":"…","time":"…"}`
    Json,
}

/// The runtime's log.
pub(crate) struct Log {
    file: Option<File>,
    format: LogFormat,
}

impl Log {
    /// Opens (appends to) `path` when given.
    pub(crate) fn open(path: Option<&std::path::Path>, format: LogFormat) -> Self {
        let file = path.and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
        Self { file, format }
    }

    /// Reports an error: stderr gets `testudo: <message>`.
    pub(crate) fn error(&mut self, message: &str) {
        eprintln!("testudo: {message}");
        self.write("error", message);
    }

    /// Reports a warning.
    pub(crate) fn warn(&mut self, message: &str) {
        eprintln!("testudo: warning: {message}");
        self.write("warning", message);
    }

    fn write(&mut self, level: &str, message: &str) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let time = testudo_runtime::timefmt::rfc3339_nanos(SystemTime::now());
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({"level": level, "msg": message, "time": time}).to_string()
            }
            LogFormat::Text => format!("time=\"{time}\" level={level} msg={message:?}"),
        };
        let _ = writeln!(file, "{line}");
    }
}
