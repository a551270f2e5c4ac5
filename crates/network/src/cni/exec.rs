//! Running one plugin binary (CNI 1.0, section 3): the `CNI_*` environment, the configuration
//! on stdin, the result or error object on stdout, with a deadline.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{Map, Value};

use super::config::{NetworkConfigList, PluginConfig};
use super::result::ErrorObject;

/// A CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    /// Attach the container to the network.
    Add,
    /// Check that the attachment is as `ADD` left it.
    Check,
    /// Detach the container; succeeds when there is nothing to remove.
    Del,
}

impl CniCommand {
    /// Its `CNI_COMMAND` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Check => "CHECK",
            Self::Del => "DEL",
        }
    }
}

impl fmt::Display for CniCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most of a plugin's stdout or stderr quoted in an error.
const QUOTE_MAX: usize = 200;

/// One plugin run that failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No plugin directory holds the binary.
    #[error("plugin binary {plugin} is in none of {dirs:?}")]
    NotFound {
        /// The plugin type.
        plugin: String,
        /// The directories searched.
        dirs: Vec<PathBuf>,
    },
    /// The binary could not be started, or its pipes failed.
    #[error("run plugin {path}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The plugin failed and said why in an error object.
    #[error("plugin {plugin} failed: {error}")]
    Reported {
        /// The plugin type.
        plugin: String,
        /// Its error object.
        error: ErrorObject,
    },
    /// The plugin failed without an error object.
    #[error("plugin {plugin} failed ({status}) without an error object; stdout {stdout:?}, stderr {stderr:?}")]
    Exited {
        /// The plugin type.
        plugin: String,
        /// How it exited.
        status: ExitStatus,
        /// The start of its stdout.
        stdout: String,
        /// The start of its stderr.
        stderr: String,
    },
    /// The plugin succeeded but did not print a valid result.
    #[error("plugin {plugin} printed no valid result: {output:?}")]
    Garbage {
        /// The plugin type.
        plugin: String,
        /// The start of its stdout.
        output: String,
        /// Why it is not a result.
        #[source]
        source: serde_json::Error,
    },
    /// The plugin ran past the deadline and was killed.
    #[error("plugin {plugin} did not finish within {timeout:?} and was killed")]
    TimedOut {
        /// The plugin type.
        plugin: String,
        /// The deadline.
        timeout: Duration,
    },
}

/// Where a plugin runs and what for: the `CNI_*` variables other than the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invocation<'a> {
    pub(crate) command: CniCommand,
    pub(crate) container_id: &'a str,
    pub(crate) netns: &'a Path,
    pub(crate) ifname: &'a str,
    pub(crate) args: &'a [(String, String)],
    pub(crate) plugin_dirs: &'a [PathBuf],
}

/// The `PATH` plugins get: they run `iptables`, `ip6tables`, `nft` and `modprobe`.
const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Invocation<'_> {
    /// The plugin's whole environment: the `CNI_*` variables and `PATH`, nothing inherited,
    /// so that a plugin sees the same thing from the daemon, a test or a shell.
    pub(crate) fn environment(&self) -> Vec<(&'static str, String)> {
        let args = self
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let path = self
            .plugin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut env = vec![
            ("CNI_COMMAND", self.command.as_str().to_owned()),
            ("CNI_CONTAINERID", self.container_id.to_owned()),
            ("CNI_NETNS", self.netns.display().to_string()),
            ("CNI_IFNAME", self.ifname.to_owned()),
            ("CNI_PATH", path),
            ("PATH", PLUGIN_PATH.to_owned()),
        ];
        if !args.is_empty() {
            env.push(("CNI_ARGS", args));
        }
        env
    }
}

/// The configuration a plugin of `list` reads on stdin: its object with the list's `name` and
/// `cniVersion`, `runtimeConfig` holding those `capability_args` it declares a capability for,
/// and `prevResult` when there is one.
pub(crate) fn plugin_stdin(
    list: &NetworkConfigList,
    plugin: &PluginConfig,
    capability_args: &Map<String, Value>,
    prev_result: Option<&Value>,
) -> Value {
    let mut object = plugin.object.clone();
    object.insert("name".to_owned(), Value::String(list.name.clone()));
    object.insert(
        "cniVersion".to_owned(),
        Value::String(list.cni_version.clone()),
    );
    let runtime_config: Map<String, Value> = capability_args
        .iter()
        .filter(|(key, _)| plugin.has_capability(key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if runtime_config.is_empty() {
        object.remove("runtimeConfig");
    } else {
        object.insert("runtimeConfig".to_owned(), Value::Object(runtime_config));
    }
    match prev_result {
        Some(prev) => object.insert("prevResult".to_owned(), prev.clone()),
        None => object.remove("prevResult"),
    };
    Value::Object(object)
}

/// The first plugin directory holding an executable file named `plugin_type`.
pub(crate) fn find_plugin(plugin_type: &str, dirs: &[PathBuf]) -> Result<PathBuf, PluginError> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter()
        .map(|dir| dir.join(plugin_type))
        .find(|path| {
            path.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| PluginError::NotFound {
            plugin: plugin_type.to_owned(),
            dirs: dirs.to_vec(),
        })
}

fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(QUOTE_MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

fn read_all(mut from: impl Read) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    from.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Runs the plugin binary `path` (of type `plugin_type`) with `invocation`'s environment and
/// `stdin`, and returns its stdout when it exits 0. Killed after `timeout`.
pub(crate) fn run_plugin(
    path: &Path,
    plugin_type: &str,
    invocation: &Invocation<'_>,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, PluginError> {
    let spawn_err = |source| PluginError::Spawn {
        path: path.to_path_buf(),
        source,
    };
    let mut child = Command::new(path)
        .env_clear()
        .envs(invocation.environment())
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let (Some(mut child_stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        unreachable!("all three pipes were asked for")
    };
    // Pipes drain in threads, so a plugin writing much before reading all of stdin, or filling
    // stderr, cannot deadlock with us; the deadline is on the output's end (EOF on stdout).
    let input = stdin.to_vec();
    let writer = thread::spawn(move || child_stdin.write_all(&input));
    let err_reader = thread::spawn(move || read_all(stderr));
    let (done, output) = mpsc::channel();
    thread::spawn(move || done.send(read_all(stdout)));
    let stdout = match output.recv_timeout(timeout) {
        Ok(read) => read.map_err(spawn_err)?,
        Err(_) => {
            // Killing also ends the reader threads: the pipes close with the process.
            let _ = child.kill();
            let _ = child.wait();
            return Err(PluginError::TimedOut {
                plugin: plugin_type.to_owned(),
                timeout,
            });
        }
    };
    let status = child.wait().map_err(spawn_err)?;
    let stderr = err_reader
        .join()
        .unwrap_or_else(|_| Ok(Vec::new()))
        .unwrap_or_default();
    // A plugin that exits without reading stdin breaks the pipe: its exit status tells.
    let _ = writer.join();
    if status.success() {
        return Ok(stdout);
    }
    match ErrorObject::parse(&stdout) {
        Some(error) => Err(PluginError::Reported {
            plugin: plugin_type.to_owned(),
            error,
        }),
        None => Err(PluginError::Exited {
            plugin: plugin_type.to_owned(),
            status,
            stdout: quote(&stdout),
            stderr: quote(&stderr),
        }),
    }
}

/// Parses the stdout of a successful `ADD` as a result.
pub(crate) fn parse_result(
    plugin_type: &str,
    stdout: &[u8],
) -> Result<super::result::CniResult, PluginError> {
    let garbage = |source| PluginError::Garbage {
        plugin: plugin_type.to_owned(),
        output: quote(stdout),
        source,
    };
    let value: Value = serde_json::from_slice(stdout).map_err(garbage)?;
    super::result::CniResult::parse(value).map_err(garbage)
}
