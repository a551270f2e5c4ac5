//! What plugins print: results (CNI 1.0, section 5.1) and error objects (section 5.2).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A successful `ADD`'s result, typed; [`CniResult::raw`] is the document as printed, which is
/// what the next plugin receives as `prevResult`.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    /// The result's CNI version.
    pub cni_version: String,
    /// The interfaces created.
    pub interfaces: Vec<Interface>,
    /// The addresses assigned.
    pub ips: Vec<IpConfig>,
    /// The routes added.
    pub routes: Vec<Route>,
    /// DNS settings for the container.
    pub dns: Dns,
    /// The document as the plugin printed it.
    pub raw: Value,
}

/// An interface of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its hardware address.
    #[serde(default)]
    pub mac: Option<String>,
    /// The namespace path for an interface inside the container; absent on the host.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// An address of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// The address with its prefix length (`10.1.0.5/24`).
    pub address: IpNet,
    /// The gateway of its subnet.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// The index in [`CniResult::interfaces`] of the interface holding it.
    #[serde(default)]
    pub interface: Option<usize>,
}

/// A route of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The destination.
    pub dst: IpNet,
    /// The next hop; absent for the default gateway of the address.
    #[serde(default)]
    pub gw: Option<IpAddr>,
}

/// DNS settings of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in priority order.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// The local domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default)]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultDocument {
    cni_version: String,
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

impl CniResult {
    /// Parses a result document.
    pub fn parse(raw: Value) -> Result<Self, serde_json::Error> {
        let doc: ResultDocument = serde_json::from_value(raw.clone())?;
        Ok(Self {
            cni_version: doc.cni_version,
            interfaces: doc.interfaces,
            ips: doc.ips,
            routes: doc.routes,
            dns: doc.dns,
            raw,
        })
    }

    /// The addresses assigned to the interface named `ifname` inside the container (an
    /// address without an interface index counts as the container's).
    pub fn container_addresses(&self, ifname: &str) -> Vec<IpNet> {
        self.ips
            .iter()
            .filter(
                |ip| match ip.interface.and_then(|i| self.interfaces.get(i)) {
                    Some(interface) => interface.name == ifname && interface.sandbox.is_some(),
                    None => true,
                },
            )
            .map(|ip| ip.address)
            .collect()
    }
}

/// An error code of a plugin's error object (CNI 1.0, section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: the plugin does not support the configuration's CNI version.
    IncompatibleVersion,
    /// 2: a field of the configuration is not supported; `msg` names it.
    UnsupportedField,
    /// 3: the container is unknown or does not exist.
    UnknownContainer,
    /// 4: a `CNI_*` variable is missing or invalid.
    InvalidEnvironment,
    /// 5: an I/O failure.
    Io,
    /// 6: the configuration or the previous result could not be decoded.
    Decoding,
    /// 7: the network configuration is invalid.
    InvalidConfig,
    /// 11: a transient failure; the runtime may retry.
    TryAgainLater,
    /// Any other code: reserved below 100, plugin-specific from 100 on.
    Other(u32),
}

impl ErrorCode {
    /// The code for a number.
    pub fn from_number(code: u32) -> Self {
        match code {
            1 => Self::IncompatibleVersion,
            2 => Self::UnsupportedField,
            3 => Self::UnknownContainer,
            4 => Self::InvalidEnvironment,
            5 => Self::Io,
            6 => Self::Decoding,
            7 => Self::InvalidConfig,
            11 => Self::TryAgainLater,
            other => Self::Other(other),
        }
    }

    /// Its number.
    pub fn number(self) -> u32 {
        match self {
            Self::IncompatibleVersion => 1,
            Self::UnsupportedField => 2,
            Self::UnknownContainer => 3,
            Self::InvalidEnvironment => 4,
            Self::Io => 5,
            Self::Decoding => 6,
            Self::InvalidConfig => 7,
            Self::TryAgainLater => 11,
            Self::Other(n) => n,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::IncompatibleVersion => "incompatible CNI version",
            Self::UnsupportedField => "unsupported field",
            Self::UnknownContainer => "unknown container",
            Self::InvalidEnvironment => "invalid environment",
            Self::Io => "I/O failure",
            Self::Decoding => "decoding failure",
            Self::InvalidConfig => "invalid network config",
            Self::TryAgainLater => "try again later",
            Self::Other(_) => "plugin error",
        };
        write!(f, "{name} (code {})", self.number())
    }
}

/// A plugin's error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorObject {
    /// The code.
    pub code: ErrorCode,
    /// The message.
    pub msg: String,
    /// Details, possibly empty.
    pub details: String,
}

#[derive(Deserialize)]
struct ErrorDocument {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

impl ErrorObject {
    /// Parses an error object; `None` when `output` is not one.
    pub fn parse(output: &[u8]) -> Option<Self> {
        let doc: ErrorDocument = serde_json::from_slice(output).ok()?;
        Some(Self {
            code: ErrorCode::from_number(doc.code),
            msg: doc.msg,
            details: doc.details,
        })
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}
