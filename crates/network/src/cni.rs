//! CNI 1.0 plugin execution: network configuration lists from a directory, plugin binaries
//! from configured directories, `ADD`/`CHECK`/`DEL` as the specification says, results cached
//! on disk so that `DEL` works after a restart.
//!
//! - `ADD` runs the plugins in order, each with the previous one's result as `prevResult`;
//!   when one fails (an error object, a bad exit, garbage on stdout, the deadline), the plugins
//!   that ran, the failing one included, get a `DEL` in reverse order, and the error is the
//!   `ADD`'s. The final result is cached only once the whole chain succeeded.
//! - `DEL` runs the plugins in reverse order with the cached result as `prevResult`, and the
//!   configuration and runtime arguments cached with it (so a configuration file changed since
//!   does not change what is torn down); without a cache entry it runs the given list without
//!   `prevResult`, as libcni does. Plugins succeed on what is already gone, so `DEL` twice
//!   succeeds.
//! - `CHECK` (cniVersion 0.4.0 and later, unless `disableCheck`) runs the plugins in order with
//!   the cached result; without one it is refused.
//! - `runtimeConfig` holds only the capability arguments a plugin declares in `capabilities`
//!   (`portMappings` for `portmap`).

mod cache;
mod config;
mod exec;
mod result;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::{IfName, PortMapping};
use cache::{CacheEntry, ResultCache, CACHE_KIND};

pub use cache::{CniCacheError, DEFAULT_CACHE_DIR};
pub use config::{
    find_config_list, load_config_lists, CniConfigError, NetworkConfigList, PluginConfig,
    DEFAULT_CONF_DIR, SUPPORTED_VERSIONS,
};
pub use exec::{CniCommand, PluginError};
pub use result::{CniResult, Dns, ErrorCode, ErrorObject, Interface, IpConfig, Route};

/// Where Debian's `containernetworking-plugins` installs the plugins.
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/cni";

/// How long a plugin may run before it is killed, unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A container's attachment to a CNI network: the `CNI_*` values and the capability arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    container_id: String,
    netns: PathBuf,
    ifname: IfName,
    args: Vec<(String, String)>,
    capability_args: Map<String, Value>,
}

/// An attachment that cannot be made as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// The container id has characters CNI does not allow.
    #[error("container id {0:?} is not valid for CNI (letters, digits, '_', '.', '-'; starting with a letter or digit)")]
    ContainerId(String),
    /// A `CNI_ARGS` key or value holds `=` or `;`, or the key is empty.
    #[error("CNI argument {key:?}={value:?} is not valid (no '=' or ';', a non-empty key)")]
    Arg {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

fn valid_container_id(id: &str) -> bool {
    id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Attachment {
    /// Container `container_id` with network namespace `netns` and interface `ifname` inside.
    pub fn new(
        container_id: &str,
        netns: impl Into<PathBuf>,
        ifname: IfName,
    ) -> Result<Self, AttachmentError> {
        if !valid_container_id(container_id) {
            return Err(AttachmentError::ContainerId(container_id.to_owned()));
        }
        Ok(Self {
            container_id: container_id.to_owned(),
            netns: netns.into(),
            ifname,
            args: Vec::new(),
            capability_args: Map::new(),
        })
    }

    /// Adds `key=value` to `CNI_ARGS`.
    pub fn with_arg(mut self, key: &str, value: &str) -> Result<Self, AttachmentError> {
        let bad = |s: &str| s.contains(['=', ';']);
        if key.is_empty() || bad(key) || bad(value) {
            return Err(AttachmentError::Arg {
                key: key.to_owned(),
                value: value.to_owned(),
            });
        }
        self.args.push((key.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// Sets capability argument `key` (passed in `runtimeConfig` to plugins declaring it).
    pub fn with_capability(mut self, key: &str, value: Value) -> Self {
        self.capability_args.insert(key.to_owned(), value);
        self
    }

    /// Sets the `portMappings` capability argument, as `portmap` reads it.
    pub fn with_port_mappings(self, ports: &[PortMapping]) -> Self {
        let mappings = ports
            .iter()
            .map(|p| {
                let mut m = json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol.as_str(),
                });
                if let Some(ip) = p.host_ip {
                    m["hostIP"] = Value::String(ip.to_string());
                }
                m
            })
            .collect();
        self.with_capability("portMappings", Value::Array(mappings))
    }

    /// The container id.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// The network namespace.
    pub fn netns(&self) -> &Path {
        &self.netns
    }

    /// The interface inside.
    pub fn ifname(&self) -> &IfName {
        &self.ifname
    }
}

/// A CNI operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// A plugin of the chain failed; for `ADD`, what ran was deleted again.
    #[error("CNI {command} of container {container_id} on network {network}")]
    Plugin {
        /// The operation.
        command: CniCommand,
        /// The network.
        network: String,
        /// The container.
        container_id: String,
        /// The cause (boxed: a plugin's output makes it large).
        #[source]
        source: Box<PluginError>,
    },
    /// The result cache could not be used.
    #[error(transparent)]
    Cache(#[from] CniCacheError),
    /// The cached configuration no longer parses.
    #[error(transparent)]
    Config(#[from] CniConfigError),
    /// `CHECK` asked of a network that disables it or whose version predates it.
    #[error("CNI CHECK is not available for network {network} (cniVersion {cni_version}, disableCheck {disabled})")]
    CheckUnavailable {
        /// The network.
        network: String,
        /// Its version.
        cni_version: String,
        /// Its `disableCheck`.
        disabled: bool,
    },
    /// `CHECK` of an attachment that has no cached `ADD` result.
    #[error("CNI CHECK of container {container_id} on network {network}: it was never added")]
    NotAdded {
        /// The network.
        network: String,
        /// The container.
        container_id: String,
    },
}

/// Runs CNI plugins from a list of directories, caching results in a directory.
#[derive(Debug, Clone)]
pub struct Cni {
    plugin_dirs: Vec<PathBuf>,
    cache: ResultCache,
    timeout: Duration,
}

impl Default for Cni {
    fn default() -> Self {
        Self::new(vec![PathBuf::from(DEFAULT_PLUGIN_DIR)], DEFAULT_CACHE_DIR)
    }
}

impl Cni {
    /// Plugins from `plugin_dirs` (searched in order, and passed as `CNI_PATH`), results cached
    /// under `cache_dir`.
    pub fn new(plugin_dirs: Vec<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            plugin_dirs,
            cache: ResultCache::new(cache_dir.into()),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same, with plugins killed after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attaches the container to `list`'s network and returns the chain's result, which is
    /// cached; on failure, whatever the chain did is deleted again.
    pub fn add(
        &self,
        list: &NetworkConfigList,
        attachment: &Attachment,
    ) -> Result<CniResult, CniError> {
        let mut prev: Option<CniResult> = None;
        for (index, plugin) in list.plugins.iter().enumerate() {
            let ran = self
                .run(
                    list,
                    plugin,
                    CniCommand::Add,
                    attachment,
                    &attachment.capability_args,
                    prev.as_ref().map(|r| &r.raw),
                )
                .and_then(|stdout| exec::parse_result(&plugin.plugin_type, &stdout));
            match ran {
                Ok(result) => prev = Some(result),
                Err(source) => {
                    self.roll_back(list, index, attachment, prev.as_ref());
                    return Err(self.plugin_error(CniCommand::Add, list, attachment, source));
                }
            }
        }
        let Some(result) = prev else {
            unreachable!("a configuration list has at least one plugin")
        };
        let entry = CacheEntry {
            kind: CACHE_KIND.to_owned(),
            container_id: attachment.container_id.clone(),
            network_name: list.name.clone(),
            if_name: attachment.ifname.to_string(),
            netns: attachment.netns.clone(),
            cni_args: attachment.args.clone(),
            capability_args: attachment.capability_args.clone(),
            config: list.to_value(),
            result: result.raw.clone(),
        };
        if let Err(e) = self.cache.store(&entry) {
            self.roll_back(list, list.plugins.len() - 1, attachment, Some(&result));
            return Err(e.into());
        }
        tracing::info!(container_id = %attachment.container_id, network = %list.name, "CNI network added");
        Ok(result)
    }

    /// `DEL` of plugins `0..=last` in reverse, after a failed `ADD`; failures are logged, as
    /// the `ADD`'s error is the one reported.
    fn roll_back(
        &self,
        list: &NetworkConfigList,
        last: usize,
        attachment: &Attachment,
        prev: Option<&CniResult>,
    ) {
        for plugin in list.plugins[..=last].iter().rev() {
            let del = self.run(
                list,
                plugin,
                CniCommand::Del,
                attachment,
                &attachment.capability_args,
                prev.map(|r| &r.raw),
            );
            if let Err(error) = del {
                tracing::warn!(container_id = %attachment.container_id, network = %list.name, %error, "rollback DEL failed");
            }
        }
    }

    /// Checks the container's attachment to `list`'s network against the cached result.
    pub fn check(&self, list: &NetworkConfigList, attachment: &Attachment) -> Result<(), CniError> {
        if list.disable_check || !list.supports_check() {
            return Err(CniError::CheckUnavailable {
                network: list.name.clone(),
                cni_version: list.cni_version.clone(),
                disabled: list.disable_check,
            });
        }
        let entry = self
            .cache
            .load(
                &list.name,
                &attachment.container_id,
                attachment.ifname.as_str(),
            )?
            .ok_or_else(|| CniError::NotAdded {
                network: list.name.clone(),
                container_id: attachment.container_id.clone(),
            })?;
        for plugin in &list.plugins {
            self.run(
                list,
                plugin,
                CniCommand::Check,
                attachment,
                &entry.capability_args,
                Some(&entry.result),
            )
            .map_err(|source| self.plugin_error(CniCommand::Check, list, attachment, source))?;
        }
        Ok(())
    }

    /// Detaches the container from `list`'s network (or from the configuration cached by its
    /// `ADD`) and drops the cached result; succeeds when it is already detached.
    pub fn del(&self, list: &NetworkConfigList, attachment: &Attachment) -> Result<(), CniError> {
        let ifname = attachment.ifname.as_str();
        let entry = self
            .cache
            .load(&list.name, &attachment.container_id, ifname)?;
        let cached_list;
        let (list, capability_args, prev) = match &entry {
            Some(entry) => {
                let bytes = serde_json::to_vec(&entry.config).unwrap_or_default();
                cached_list = NetworkConfigList::parse(
                    &bytes,
                    Some(
                        &self
                            .cache
                            .path(&list.name, &attachment.container_id, ifname),
                    ),
                )?;
                (&cached_list, &entry.capability_args, Some(&entry.result))
            }
            None => (list, &attachment.capability_args, None),
        };
        for plugin in list.plugins.iter().rev() {
            let deleted = self.run(
                list,
                plugin,
                CniCommand::Del,
                attachment,
                capability_args,
                prev,
            );
            match deleted {
                // A plugin that cannot be found never ran for this container (an ADD that
                // needed it failed there), so it has nothing to delete; without this rule a
                // container of a broken configuration could never be removed.
                Err(PluginError::NotFound { plugin, .. }) => {
                    tracing::warn!(container_id = %attachment.container_id, network = %list.name,
                        plugin, "CNI plugin not found: nothing of it to delete");
                }
                other => {
                    other.map_err(|source| {
                        self.plugin_error(CniCommand::Del, list, attachment, source)
                    })?;
                }
            }
        }
        self.cache
            .remove(&list.name, &attachment.container_id, ifname)?;
        tracing::info!(container_id = %attachment.container_id, network = %list.name, "CNI network deleted");
        Ok(())
    }

    /// The cached `ADD` result of the attachment, if any.
    pub fn cached_result(
        &self,
        network: &str,
        attachment: &Attachment,
    ) -> Result<Option<CniResult>, CniCacheError> {
        let path = self.cache.path(
            network,
            &attachment.container_id,
            attachment.ifname.as_str(),
        );
        self.cache
            .load(
                network,
                &attachment.container_id,
                attachment.ifname.as_str(),
            )?
            .map(|entry| {
                CniResult::parse(entry.result)
                    .map_err(|source| CniCacheError::Parse { path, source })
            })
            .transpose()
    }

    fn run(
        &self,
        list: &NetworkConfigList,
        plugin: &PluginConfig,
        command: CniCommand,
        attachment: &Attachment,
        capability_args: &Map<String, Value>,
        prev_result: Option<&Value>,
    ) -> Result<Vec<u8>, PluginError> {
        let path = exec::find_plugin(&plugin.plugin_type, &self.plugin_dirs)?;
        let stdin = exec::plugin_stdin(list, plugin, capability_args, prev_result).to_string();
        let invocation = exec::Invocation {
            command,
            container_id: &attachment.container_id,
            netns: &attachment.netns,
            ifname: attachment.ifname.as_str(),
            args: &attachment.args,
            plugin_dirs: &self.plugin_dirs,
        };
        tracing::debug!(plugin = %plugin.plugin_type, %command, container_id = %attachment.container_id, "running CNI plugin");
        exec::run_plugin(
            &path,
            &plugin.plugin_type,
            &invocation,
            stdin.as_bytes(),
            self.timeout,
        )
    }

    fn plugin_error(
        &self,
        command: CniCommand,
        list: &NetworkConfigList,
        attachment: &Attachment,
        source: PluginError,
    ) -> CniError {
        CniError::Plugin {
            command,
            network: list.name.clone(),
            container_id: attachment.container_id.clone(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests;
