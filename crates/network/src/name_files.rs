//! The name resolution files of a container, as data: `/etc/hosts` (localhost, the container's
//! own hostname and name with its addresses, extra entries), `/etc/resolv.conf` (the host's, or
//! given settings) and `/etc/hostname`. [`plan_name_files`] decides the contents (pure);
//! [`NameFiles::write_to`] writes them into a directory the engine bind-mounts from.
//!
//! From the host's resolver configuration, a container with a network namespace of its own
//! drops loopback name servers (`127.0.0.0/8`, `::1`: a resolver listening on the host's
//! loopback, such as systemd-resolved's `127.0.0.53`, is not reachable from inside), and gets
//! public fallback servers when none remain, as Docker does. A container in the host's
//! namespace keeps them.

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Name servers a container gets when the host's are all loopback addresses (Docker's choice).
pub const FALLBACK_NAMESERVERS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
    IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)),
];

/// The file names inside the directory [`NameFiles::write_to`] fills.
pub const HOSTS_FILE: &str = "hosts";
/// See [`HOSTS_FILE`].
pub const RESOLV_CONF_FILE: &str = "resolv.conf";
/// See [`HOSTS_FILE`].
pub const HOSTNAME_FILE: &str = "hostname";

/// Resolver settings: what `resolv.conf` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// Name servers, in order.
    pub nameservers: Vec<IpAddr>,
    /// Search domains.
    pub search: Vec<String>,
    /// Options (`ndots:2`, `edns0`).
    pub options: Vec<String>,
}

impl DnsConfig {
    /// Reads a `resolv.conf`: `nameserver`, `search` (the last one wins, as in glibc; `domain`
    /// counts as a search list of one) and `options` lines; comments and anything else are
    /// ignored, as is a name server that is not an address.
    pub fn parse(text: &str) -> Self {
        let mut config = Self::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword {
                "nameserver" => {
                    // A scoped IPv6 address (`fe80::1%eth0`) names a host interface: skip it.
                    if let Some(addr) = words.next().and_then(|w| w.parse().ok()) {
                        config.nameservers.push(addr);
                    }
                }
                "search" | "domain" => config.search = words.map(str::to_owned).collect(),
                "options" => config.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        config
    }

    /// The settings as a `resolv.conf`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for server in &self.nameservers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }

    /// The host's settings as seen from a container: with `own_netns`, loopback name servers
    /// are dropped, and [`FALLBACK_NAMESERVERS`] stand in when none is left.
    pub fn for_container(&self, own_netns: bool) -> Self {
        if !own_netns {
            return self.clone();
        }
        let mut config = self.clone();
        config.nameservers.retain(|addr| !addr.is_loopback());
        if config.nameservers.is_empty() {
            config.nameservers = FALLBACK_NAMESERVERS.to_vec();
        }
        config
    }
}

/// Where a container's resolver settings come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsSource {
    /// The host's `resolv.conf` (its text), adjusted by [`DnsConfig::for_container`].
    Host(String),
    /// Settings given by the caller, used as they are.
    Given(DnsConfig),
}

impl DnsSource {
    /// The host's resolver configuration, read from `path` (usually `/etc/resolv.conf`); a
    /// missing file is an empty one (the container then gets the fallback servers).
    pub fn read_host(path: &Path) -> Result<Self, NameFilesError> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(Self::Host(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::Host(String::new())),
            Err(source) => Err(NameFilesError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// What a container's name files say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameFilesRequest {
    /// The hostname (`/etc/hostname`, and a name of the container's addresses in `/etc/hosts`).
    pub hostname: String,
    /// Other names of its addresses (the container's name, when it differs from the hostname).
    pub aliases: Vec<String>,
    /// Its addresses; none (network mode `none`) maps the names to loopback.
    pub addresses: Vec<IpAddr>,
    /// Extra `/etc/hosts` entries (`--add-host name:ip`).
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// Whether the container has a network namespace of its own.
    pub own_netns: bool,
    /// Resolver settings.
    pub dns: DnsSource,
}

/// The contents of the three files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameFiles {
    /// `/etc/hosts`.
    pub hosts: String,
    /// `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// `/etc/hostname`.
    pub hostname: String,
}

/// Name files that cannot be planned or written.
#[derive(Debug, thiserror::Error)]
pub enum NameFilesError {
    /// A hostname, alias or extra host name is not a valid host name.
    #[error("{name:?} is not a valid host name (letters, digits, '-' and '.', labels of at most 63, at most {max} in all)")]
    InvalidName {
        /// The name.
        name: String,
        /// The longest allowed.
        max: usize,
    },
    /// The host's resolver configuration could not be read.
    #[error("read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file could not be written.
    #[error("write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The kernel's longest hostname (`HOST_NAME_MAX`).
const HOSTNAME_MAX: usize = 64;
/// The longest name in `/etc/hosts` (a DNS name).
const HOST_ENTRY_MAX: usize = 253;

fn check_name(name: &str, max: usize) -> Result<(), NameFilesError> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.len() <= max && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(NameFilesError::InvalidName {
            name: name.to_owned(),
            max,
        })
    }
}

/// Decides the three files of `request`.
pub fn plan_name_files(request: &NameFilesRequest) -> Result<NameFiles, NameFilesError> {
    check_name(&request.hostname, HOSTNAME_MAX)?;
    for name in request
        .aliases
        .iter()
        .chain(request.extra_hosts.iter().map(|(name, _)| name))
    {
        check_name(name, HOST_ENTRY_MAX)?;
    }
    let mut names = vec![request.hostname.as_str()];
    names.extend(
        request
            .aliases
            .iter()
            .map(String::as_str)
            .filter(|a| *a != request.hostname),
    );
    let names = names.join(" ");
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if request.addresses.is_empty() {
        hosts.push_str(&format!("127.0.1.1\t{names}\n"));
    }
    for addr in &request.addresses {
        hosts.push_str(&format!("{addr}\t{names}\n"));
    }
    for (name, addr) in &request.extra_hosts {
        hosts.push_str(&format!("{addr}\t{name}\n"));
    }
    let dns = match &request.dns {
        DnsSource::Host(text) => DnsConfig::parse(text).for_container(request.own_netns),
        DnsSource::Given(config) => config.clone(),
    };
    Ok(NameFiles {
        hosts,
        resolv_conf: dns.render(),
        hostname: format!("{}\n", request.hostname),
    })
}

impl NameFiles {
    /// Writes `hosts`, `resolv.conf` and `hostname` into `dir` (created if missing), each
    /// atomically (a temporary file renamed over it) with mode 0644, and returns their paths
    /// in that order. Writing again replaces them.
    pub fn write_to(&self, dir: &Path) -> Result<[PathBuf; 3], NameFilesError> {
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| NameFilesError::Write { path, source }
        };
        fs::create_dir_all(dir).map_err(write_err(dir))?;
        let files = [
            (HOSTS_FILE, &self.hosts),
            (RESOLV_CONF_FILE, &self.resolv_conf),
            (HOSTNAME_FILE, &self.hostname),
        ];
        let mut paths = files.map(|(name, _)| dir.join(name));
        for ((_, contents), path) in files.iter().zip(&mut paths) {
            let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(write_err(path))?;
            temp.write_all(contents.as_bytes())
                .map_err(write_err(path))?;
            temp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o644))
                .map_err(write_err(path))?;
            temp.persist(&*path).map_err(|e| write_err(path)(e.error))?;
        }
        Ok(paths)
    }
}

#[cfg(test)]
mod tests;
