//! The API on TCP with mutual TLS: the same services as the unix socket, to clients that
//! present a certificate signed by the configured CA. There is no plain-text TCP mode.
//!
//! Design decisions:
//! - rustls is driven here directly (tokio-rustls) rather than through tonic's TLS features:
//!   the certificate files are checked before the daemon serves anything (a key that does not
//!   match its certificate is a start error, not a failure of the first handshake), and the
//!   errors name the file at fault.
//! - TLS 1.3 only, with ring: both ends are this project's, so there is no older peer to serve.
//! - Each handshake runs in its own task with a deadline: a client that connects and says
//!   nothing, or speaks plain HTTP/2, holds up nobody else and is dropped with a log line.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// The TCP listener's flags; the default is no listener.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct TcpConfig {
    /// Also serve the API on TCP (HOST:PORT) with mutual TLS; needs --tls-cert, --tls-key and
    /// --tls-ca
    #[arg(long, value_name = "HOST:PORT", requires_all = ["tls_cert", "tls_key", "tls_ca"])]
    listen_tcp: Option<SocketAddr>,
    /// The server's certificate chain (PEM) for --listen-tcp
    #[arg(long, value_name = "FILE", requires = "listen_tcp")]
    tls_cert: Option<PathBuf>,
    /// The server certificate's private key (PEM) for --listen-tcp
    #[arg(long, value_name = "FILE", requires = "listen_tcp")]
    tls_key: Option<PathBuf>,
    /// The CA (PEM) that signs the client certificates --listen-tcp accepts
    #[arg(long, value_name = "FILE", requires = "listen_tcp")]
    tls_ca: Option<PathBuf>,
}

/// Why the TCP listener cannot be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TcpError {
    #[error("cannot read the {what} {path:?}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the {what} {path:?} holds no PEM {expected}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("the {what} {path:?} is not valid PEM")]
    Pem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the TLS CA {path:?} holds no usable CA certificate")]
    Ca {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("the TLS key {key:?} does not fit the certificate {cert:?}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// The TLS connections of the TCP listener, for `serve_with_incoming`.
pub(crate) type Incoming = ReceiverStream<Result<TlsConnection, io::Error>>;

impl TcpConfig {
    /// Checks the certificate files and listens, when `--listen-tcp` was given.
    pub(crate) async fn listen(&self) -> Result<Option<(SocketAddr, Incoming)>, TcpError> {
        let (Some(addr), Some(cert), Some(key), Some(ca)) =
            (self.listen_tcp, &self.tls_cert, &self.tls_key, &self.tls_ca)
        else {
            return Ok(None);
        };
        let acceptor = TlsAcceptor::from(server_config(cert, key, ca)?);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TcpError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| TcpError::Bind { addr, source })?;
        Ok(Some((local, accept(listener, acceptor))))
    }
}

/// A client connection after its handshake.
#[derive(Debug)]
pub(crate) struct TlsConnection(TlsStream<TcpStream>);

impl Connected for TlsConnection {
    type ConnectInfo = Option<SocketAddr>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.peer_addr().ok()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Accepts connections and handshakes each in its own task; only those that complete reach
/// the server. The accept loop ends when the server drops the stream.
fn accept(listener: TcpListener, acceptor: TlsAcceptor) -> Incoming {
    let (sender, receiver) = tokio::sync::mpsc::channel(ACCEPTED_BACKLOG);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: the next accept may work.
                        tracing::warn!(error = %e, "cannot accept a TCP connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = sender.closed() => return,
            };
            let (acceptor, sender) = (acceptor.clone(), sender.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = sender.send(Ok(TlsConnection(tls))).await;
                    }
                    Ok(Err(e)) => {
                        tracing::info!(peer = %peer, error = %e, "TLS handshake refused");
                    }
                    Err(_) => tracing::info!(peer = %peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// The TLS configuration: `cert` and `key` identify the server, clients must present a
/// certificate that `ca` signed.
fn server_config(cert: &Path, key: &Path, ca: &Path) -> Result<Arc<ServerConfig>, TcpError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca_cert in certificates("TLS CA", ca)? {
        // A certificate webpki cannot use is reported by the verifier builder below when
        // none is left.
        let _ = roots.add(ca_cert);
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|source| TcpError::Ca {
            path: ca.to_owned(),
            source,
        })?;
    let chain = certificates("TLS certificate", cert)?;
    let private_key = private_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TcpError::Identity {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key)
        .map_err(|source| TcpError::Identity {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TcpError> {
    std::fs::read(path).map_err(|source| TcpError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of the PEM file `path`; at least one.
fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TcpError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TcpError::Pem {
            what,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TcpError::Empty {
            what,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

/// The private key of the PEM file `path`.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TcpError> {
    let what = "TLS key";
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TcpError::Empty {
            what,
            path: path.to_owned(),
            expected: "private key",
        },
        source => TcpError::Pem {
            what,
            path: path.to_owned(),
            source,
        },
    })
}
