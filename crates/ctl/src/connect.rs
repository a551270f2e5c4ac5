//! How `testudoctl` reaches the daemon: its unix socket by default, or with `-H host:port` its
//! TCP listener with mutual TLS. Every flag can also come from the environment
//! (`TESTUDO_SOCKET`, `TESTUDO_HOST`, `TESTUDO_TLS_CA`, `TESTUDO_TLS_CERT`, `TESTUDO_TLS_KEY`).

use std::path::PathBuf;

use testudo_client::{Client, ClientError, TlsFiles, DEFAULT_SOCKET};

/// The connection flags, global to every command.
#[derive(Debug, clap::Args)]
pub(crate) struct Connection {
    /// The daemon's unix socket
    #[arg(long, global = true, env = "TESTUDO_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The daemon's TCP address (HOST:PORT), with mutual TLS, instead of the socket
    #[arg(
        short = 'H',
        long,
        global = true,
        env = "TESTUDO_HOST",
        value_name = "HOST:PORT"
    )]
    host: Option<String>,
    /// The CA (PEM) that signed the daemon's certificate, with --host
    #[arg(long, global = true, env = "TESTUDO_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), with --host
    #[arg(long, global = true, env = "TESTUDO_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// This client's private key (PEM), with --host
    #[arg(long, global = true, env = "TESTUDO_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

/// Why the connection flags cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionError {
    #[error("--host needs --tls-ca, --tls-cert and --tls-key (missing: {missing})")]
    MissingTls { missing: String },
    #[error("--tls-ca, --tls-cert and --tls-key go with --host")]
    TlsWithoutHost,
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl Connection {
    /// Connects as the flags say.
    pub(crate) async fn connect(&self) -> Result<Client, ConnectionError> {
        let files = [
            ("--tls-ca", &self.tls_ca),
            ("--tls-cert", &self.tls_cert),
            ("--tls-key", &self.tls_key),
        ];
        let Some(host) = &self.host else {
            if files.iter().any(|(_, f)| f.is_some()) {
                return Err(ConnectionError::TlsWithoutHost);
            }
            return Ok(Client::connect(&self.socket).await?);
        };
        let (Some(ca), Some(cert), Some(key)) = (&self.tls_ca, &self.tls_cert, &self.tls_key)
        else {
            let missing: Vec<&str> = files
                .iter()
                .filter(|(_, f)| f.is_none())
                .map(|(flag, _)| *flag)
                .collect();
            return Err(ConnectionError::MissingTls {
                missing: missing.join(", "),
            });
        };
        let files = TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        };
        Ok(Client::connect_tcp(host, &files).await?)
    }
}
