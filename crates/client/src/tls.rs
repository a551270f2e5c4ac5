//! The client side of the daemon's TCP listener: mutual TLS 1.3 with rustls (ring), the server
//! checked against a given CA and the name or address it was reached by, the client identified
//! by its own certificate.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// The files that secure a TCP connection to the daemon (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the daemon's certificate.
    pub ca: PathBuf,
    /// This client's certificate chain.
    pub cert: PathBuf,
    /// This client certificate's private key.
    pub key: PathBuf,
}

/// Why the TLS configuration of a connection cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read the {what} {path:?}")]
    Read {
        /// `TLS CA`, `TLS certificate`, `TLS key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file holds no PEM item of the kind it should, or broken PEM.
    #[error("the {what} {path:?} holds no valid PEM {expected}")]
    Pem {
        /// `TLS CA`, `TLS certificate`, `TLS key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// `certificate`, `private key`.
        expected: &'static str,
    },
    /// The CA file holds no certificate rustls can use as a trust anchor.
    #[error("the TLS CA {path:?} holds no usable CA certificate")]
    Ca {
        /// The file.
        path: PathBuf,
    },
    /// The key does not fit the certificate, or is of a kind rustls does not support.
    #[error("the TLS key {key:?} does not fit the certificate {cert:?}")]
    Identity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The address is not `host:port`, or its host is neither a DNS name nor an IP address.
    #[error("invalid daemon address {address:?}: expected HOST:PORT")]
    Address {
        /// The address as given.
        address: String,
    },
}

/// The host part of `host:port`, without the brackets of an IPv6 address, as the name the
/// daemon's certificate must carry.
pub(crate) fn server_name(address: &str) -> Result<ServerName<'static>, TlsError> {
    let bad = || TlsError::Address {
        address: address.to_owned(),
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_owned()).map_err(|_| bad())
}

/// The rustls configuration for `files`.
pub(crate) fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates("TLS CA", &files.ca)?);
    if added == 0 {
        return Err(TlsError::Ca {
            path: files.ca.clone(),
        });
    }
    let identity_error = |source| TlsError::Identity {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(identity_error)?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            certificates("TLS certificate", &files.cert)?,
            private_key(&files.key)?,
        )
        .map_err(identity_error)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "TLS key";
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::Pem {
        what,
        path: path.to_owned(),
        expected: "private key",
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        assert_eq!(
            server_name("localhost:7443").unwrap(),
            ServerName::try_from("localhost").unwrap()
        );
        assert_eq!(
            server_name("[::1]:7443").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name("10.0.0.1:1").unwrap(),
            ServerName::try_from("10.0.0.1").unwrap()
        );
        for bad in ["localhost", "localhost:http", ":7443", "a b:1"] {
            assert!(
                matches!(server_name(bad), Err(TlsError::Address { .. })),
                "{bad}"
            );
        }
    }
}
