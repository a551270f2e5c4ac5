//! Network configuration lists (CNI 1.0, section 1): loading `.conflist` files, and `.conf`
//! files of a single plugin wrapped as a list, from a directory; picking one by name.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The CNI versions whose configurations and results this module reads. Results of 0.3.0 and
/// later share one shape (`interfaces`, `ips`, `routes`, `dns`); 0.1 and 0.2 do not.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// The directory network configuration lists are read from unless another is given.
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";

/// A network configuration list: a named network, the plugins that set it up, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The network's name.
    pub name: String,
    /// The CNI version of the configuration, passed to each plugin.
    pub cni_version: String,
    /// Whether `CHECK` is disabled for this network.
    pub disable_check: bool,
    /// Each plugin's configuration object, with `type` naming its binary.
    pub plugins: Vec<PluginConfig>,
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
}

/// One plugin's configuration object of a list, as written (`name` and `cniVersion` are added
/// when it is run).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The plugin's binary name (`bridge`, `host-local` is its IPAM's and not run directly).
    pub plugin_type: String,
    /// The whole object.
    pub object: Map<String, Value>,
}

impl PluginConfig {
    /// Whether the plugin declares capability `name` (`"capabilities": {"portMappings": true}`).
    pub fn has_capability(&self, name: &str) -> bool {
        self.object
            .get("capabilities")
            .and_then(|c| c.get(name))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// A network configuration that cannot be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum CniConfigError {
    /// The directory or a file in it could not be read.
    #[error("read CNI configuration {path}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file is not JSON.
    #[error("parse CNI configuration {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration is JSON but not a valid network configuration.
    #[error("invalid CNI configuration {origin}: {reason}")]
    Invalid {
        /// The file, or `<inline>`.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// No configuration of that name is in the directory.
    #[error("no CNI network {name} in {dir}")]
    NotFound {
        /// The network asked for.
        name: String,
        /// The directory searched.
        dir: PathBuf,
    },
}

/// Whether `name` is a valid network name: non-empty, printable, without `/` (it becomes part
/// of file names, as with libcni's cache and host-local's data directory).
pub(crate) fn valid_network_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !name.starts_with('.')
}

/// Whether `plugin_type` can name a binary inside a plugin directory (no path separator).
fn valid_plugin_type(plugin_type: &str) -> bool {
    !plugin_type.is_empty()
        && !plugin_type.contains('/')
        && plugin_type != "."
        && plugin_type != ".."
}

impl NetworkConfigList {
    /// Parses a `.conflist` document (`plugins` holds the chain) or a `.conf` document (the
    /// object is the only plugin) from `bytes`; `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: Option<&Path>) -> Result<Self, CniConfigError> {
        let origin_name = origin.map_or_else(|| "<inline>".to_owned(), |p| p.display().to_string());
        let invalid = |reason: String| CniConfigError::Invalid {
            origin: origin_name.clone(),
            reason,
        };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|source| CniConfigError::Parse {
                path: origin.map_or_else(|| PathBuf::from("<inline>"), Path::to_path_buf),
                source,
            })?;
        let Value::Object(top) = value else {
            return Err(invalid("not a JSON object".to_owned()));
        };
        let string = |key: &str| top.get(key).and_then(Value::as_str).map(str::to_owned);
        let name = string("name").ok_or_else(|| invalid("no \"name\"".to_owned()))?;
        if !valid_network_name(&name) {
            return Err(invalid(format!("network name {name:?} is not valid")));
        }
        let cni_version =
            string("cniVersion").ok_or_else(|| invalid("no \"cniVersion\"".to_owned()))?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(invalid(format!(
                "cniVersion {cni_version} is not supported (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            )));
        }
        let disable_check = top
            .get("disableCheck")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let objects: Vec<Map<String, Value>> = match top.get("plugins") {
            Some(Value::Array(plugins)) => plugins
                .iter()
                .enumerate()
                .map(|(i, p)| match p {
                    Value::Object(o) => Ok(o.clone()),
                    _ => Err(invalid(format!("plugin {i} is not an object"))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid("\"plugins\" is not a list".to_owned())),
            None if top.contains_key("type") => vec![top.clone()],
            None => return Err(invalid("neither \"plugins\" nor \"type\"".to_owned())),
        };
        if objects.is_empty() {
            return Err(invalid("\"plugins\" is empty".to_owned()));
        }
        let plugins = objects
            .into_iter()
            .enumerate()
            .map(|(i, object)| {
                let plugin_type = object
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(format!("plugin {i} has no \"type\"")))?
                    .to_owned();
                if !valid_plugin_type(&plugin_type) {
                    return Err(invalid(format!(
                        "plugin {i} has type {plugin_type:?}, which is not a binary name"
                    )));
                }
                Ok(PluginConfig {
                    plugin_type,
                    object,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name,
            cni_version,
            disable_check,
            plugins,
            source: origin.map(Path::to_path_buf),
        })
    }

    /// Whether this configuration's version knows `CHECK` (0.4.0 and later).
    pub fn supports_check(&self) -> bool {
        !self.cni_version.starts_with("0.3.")
    }

    /// The list as a `.conflist` document, for the result cache.
    pub(crate) fn to_value(&self) -> Value {
        serde_json::json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "plugins": self.plugins.iter().map(|p| Value::Object(p.object.clone())).collect::<Vec<_>>(),
        })
    }
}

/// Reads every `.conflist`, `.conf` and `.json` file of `dir`, in lexical order of file name
/// (as libcni does, so the first file of a name wins in [`find_config_list`]). A file that
/// does not parse is an error naming it: a broken configuration is not silently skipped.
pub fn load_config_lists(dir: &Path) -> Result<Vec<NetworkConfigList>, CniConfigError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CniConfigError::Read { path, source }
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err(dir))? {
        let path = entry.map_err(read_err(dir))?.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "conflist" | "conf" | "json"));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    files
        .iter()
        .map(|path| {
            let bytes = fs::read(path).map_err(read_err(path))?;
            NetworkConfigList::parse(&bytes, Some(path))
        })
        .collect()
}

/// The configuration list named `name` in `dir` (the first file of that name).
pub fn find_config_list(dir: &Path, name: &str) -> Result<NetworkConfigList, CniConfigError> {
    load_config_lists(dir)?
        .into_iter()
        .find(|list| list.name == name)
        .ok_or_else(|| CniConfigError::NotFound {
            name: name.to_owned(),
            dir: dir.to_path_buf(),
        })
}
