//! A client of the OCI distribution API v2: manifests and blobs of one repository, with the
//! anonymous, basic and bearer-token flows, resumable blob downloads streamed into the store while
//! they are hashed, and timeouts so a registry that hangs fails the pull instead of stalling it.
//!
//! HTTPS uses the system's roots (`rustls-native-certs`, as docker and podman trust what the host
//! trusts); plain HTTP only for registries the caller marks insecure.
//!
//! Why reqwest: the one widely used async HTTP client with rustls, HTTP/2, connection pooling and
//! read timeouts; hyper alone would mean writing the redirects (registries redirect blob reads to
//! object storage) and pooling by hand.

pub mod auth;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;

use crate::digest::{Digest, DigestError};
use crate::manifest::{MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};
use crate::reference::ImageRef;
use crate::store::{Ingest, StoreError};

pub use auth::{AuthFileError, Challenge, Credential, Credentials};

/// How many times a blob download is resumed after the connection broke.
const BLOB_ATTEMPTS: u32 = 4;

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The HTTP client could not be built (TLS roots).
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    /// A CA certificate file cannot be read or holds no PEM certificate.
    #[error("cannot use CA certificate {path}")]
    CaCertificate {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request failed in transport (connection refused, reset, timed out).
    #[error("request to {url} failed")]
    Transport {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The registry refused the credentials, or there were none where some are needed.
    #[error("{registry}: unauthorized (status {status}){hint}")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// 401 or 403.
        status: u16,
        /// What to do about it, or empty.
        hint: &'static str,
    },
    /// The manifest or blob does not exist.
    #[error("{what} not found in {repository} on {registry}")]
    NotFound {
        /// `manifest latest`, `blob sha256:...`.
        what: String,
        /// The repository.
        repository: String,
        /// The registry.
        registry: String,
    },
    /// Another unexpected status.
    #[error("{url}: unexpected status {status}: {message}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the registry's error body.
        message: String,
    },
    /// The token server's answer could not be used.
    #[error("token server {realm} gave no usable token")]
    Token {
        /// The realm URL.
        realm: String,
    },
    /// A manifest or config is larger than this client accepts.
    #[error("{url}: {what} is larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// What was being read.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The content does not have the digest it was asked for by.
    #[error("{url}: content does not match its digest")]
    Digest {
        /// The URL.
        url: String,
        /// The mismatch.
        #[source]
        source: DigestError,
    },
    /// The registry sent a different amount of data than the descriptor says.
    #[error("{url}: expected {expected} bytes, the registry sent {actual}")]
    Size {
        /// The URL.
        url: String,
        /// The descriptor's size.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// Writing the downloaded bytes to the store's ingest file failed.
    #[error("cannot write blob {digest} to the store")]
    Write {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Preparing the blob's ingest in the store failed.
    #[error("cannot store blob {digest}")]
    Store {
        /// The blob.
        digest: Digest,
        /// The cause (boxed: store errors are large and rare).
        #[source]
        source: Box<StoreError>,
    },
}

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) reached over plain HTTP instead of HTTPS.
    pub insecure: Vec<String>,
    /// Credentials by registry.
    pub credentials: Credentials,
    /// Connect timeout, and the longest wait for the next bytes of a response.
    pub timeout: Duration,
    /// PEM files of certificate authorities trusted besides the system's, for registries with
    /// a private CA (as containerd's `hosts.toml` `ca`).
    pub ca_certificates: Vec<std::path::PathBuf>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            credentials: Credentials::none(),
            timeout: Duration::from_secs(30),
            ca_certificates: Vec::new(),
        }
    }
}

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// Its bytes, exactly as served (the digest is over these).
    pub bytes: Vec<u8>,
    /// The `Content-Type` the registry gave.
    pub media_type: Option<String>,
    /// Its digest: the one asked for, verified, or the one computed.
    pub digest: Digest,
}

/// What authorises requests to one repository.
#[derive(Debug, Clone)]
enum Authorization {
    Basic(String),
    Bearer(String),
}

/// A registry client, shared by the concurrent downloads of a pull.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    options: RegistryOptions,
    /// By `registry/repository`: what the last challenge led to.
    authorizations: Mutex<HashMap<String, Authorization>>,
}

impl RegistryClient {
    /// A client with `options`.
    pub fn new(options: RegistryOptions) -> Result<Self, RegistryError> {
        let mut builder = reqwest::Client::builder();
        for path in &options.ca_certificates {
            let ca_error =
                |source: Box<dyn std::error::Error + Send + Sync>| RegistryError::CaCertificate {
                    path: path.clone(),
                    source,
                };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.into()))?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.into()))?;
            if certificates.is_empty() {
                return Err(ca_error("no PEM certificate in the file".into()));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .connect_timeout(options.timeout)
            .read_timeout(options.timeout)
            .user_agent(concat!("testudo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RegistryError::Client)?;
        Ok(RegistryClient {
            http,
            options,
            authorizations: Mutex::new(HashMap::new()),
        })
    }

    fn base_url(&self, image: &ImageRef) -> String {
        let scheme = if self.options.insecure.iter().any(|r| r == image.registry()) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/{}", image.api_host(), image.repository())
    }

    fn auth_key(image: &ImageRef) -> String {
        format!("{}/{}", image.registry(), image.repository())
    }

    /// Sends a GET, answering one 401 challenge (basic, or a bearer token fetched for the
    /// repository's pull scope) and retrying.
    async fn get(
        &self,
        image: &ImageRef,
        url: &str,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, RegistryError> {
        let key = Self::auth_key(image);
        let cached = self.lock_authorizations().get(&key).cloned();
        let response = self.send(url, headers.clone(), cached.as_ref()).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse);
        let credential = self.options.credentials.get(image.registry());
        let unauthorized = |hint| RegistryError::Unauthorized {
            registry: image.registry().to_owned(),
            status: 401,
            hint,
        };
        let authorization = match challenge {
            Some(Challenge::Basic) => match credential {
                Some(c) => Authorization::Basic(c.basic_header()),
                None => return Err(unauthorized(": no credentials for this registry")),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope =
                    scope.unwrap_or_else(|| format!("repository:{}:pull", image.repository()));
                let token = self
                    .fetch_token(&realm, service.as_deref(), &scope, credential)
                    .await?;
                Authorization::Bearer(token)
            }
            None => return Err(unauthorized(": the registry sent no usable challenge")),
        };
        let response = self.send(url, headers, Some(&authorization)).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let hint = if credential.is_some() {
                ": the credentials were refused"
            } else {
                ": no credentials for this registry"
            };
            return Err(unauthorized(hint));
        }
        self.lock_authorizations().insert(key, authorization);
        Ok(response)
    }

    fn lock_authorizations(&self) -> std::sync::MutexGuard<'_, HashMap<String, Authorization>> {
        // The map holds only finished values, so a panic elsewhere cannot leave it half-written.
        self.authorizations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn send(
        &self,
        url: &str,
        mut headers: HeaderMap,
        authorization: Option<&Authorization>,
    ) -> Result<reqwest::Response, RegistryError> {
        if let Some(a) = authorization {
            let value = match a {
                Authorization::Basic(v) => v.clone(),
                Authorization::Bearer(t) => format!("Bearer {t}"),
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(AUTHORIZATION, v);
            }
        }
        self.http
            .get(url)
            .headers(headers)
            .send()
            .await
            .map_err(|source| RegistryError::Transport {
                url: url.to_owned(),
                source,
            })
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credential: Option<&Credential>,
    ) -> Result<String, RegistryError> {
        let mut query = vec![("scope", scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut request = self.http.get(realm).query(&query);
        if let Some(c) = credential {
            request = request.header(AUTHORIZATION, c.basic_header());
        }
        let response = request
            .send()
            .await
            .map_err(|source| RegistryError::Transport {
                url: realm.to_owned(),
                source,
            })?;
        match response.status() {
            s if s.is_success() => {}
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                return Err(RegistryError::Unauthorized {
                    registry: realm.to_owned(),
                    status: s.as_u16(),
                    hint: ": the token server refused the credentials",
                })
            }
            s => return Err(status_error(realm, s, response).await),
        }
        let body = read_limited(realm, response, 1 << 20, "token response").await?;
        serde_json::from_slice::<auth::TokenResponse>(&body)
            .ok()
            .and_then(auth::TokenResponse::into_token)
            .ok_or_else(|| RegistryError::Token {
                realm: realm.to_owned(),
            })
    }

    /// Fetches the manifest `reference` (a tag or a digest) of `image`'s repository; a digest
    /// reference is verified.
    pub async fn manifest(
        &self,
        image: &ImageRef,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = format!("{}/manifests/{reference}", self.base_url(image));
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let response = self.get(image, &url, headers).await?;
        self.check_status(image, &format!("manifest {reference}"), &response)?;
        let response = ok_or_status(&url, response).await?;
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let bytes = read_limited(&url, response, MAX_MANIFEST_BYTES, "manifest").await?;
        let digest = match Digest::parse(reference) {
            Ok(expected) => {
                expected
                    .verify_bytes(&bytes)
                    .map_err(|source| RegistryError::Digest {
                        url: url.clone(),
                        source,
                    })?;
                expected
            }
            Err(_) => Digest::of(&bytes),
        };
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Fetches a small blob (a config) whole, verified against `digest`.
    pub async fn blob_bytes(
        &self,
        image: &ImageRef,
        digest: &Digest,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let url = format!("{}/blobs/{digest}", self.base_url(image));
        let response = self.get(image, &url, HeaderMap::new()).await?;
        self.check_status(image, &format!("blob {digest}"), &response)?;
        let response = ok_or_status(&url, response).await?;
        let bytes = read_limited(&url, response, limit, "blob").await?;
        digest
            .verify_bytes(&bytes)
            .map_err(|source| RegistryError::Digest { url, source })?;
        Ok(bytes)
    }

    /// Downloads the blob `digest` of `size` bytes into `ingest`, resuming where the ingest's
    /// partial data ends and after a broken connection; `progress` is told of every chunk.
    /// Returns when all bytes are written; the caller commits the ingest, which verifies them.
    pub async fn blob_to(
        &self,
        image: &ImageRef,
        digest: &Digest,
        size: u64,
        ingest: &mut Ingest,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), RegistryError> {
        let url = format!("{}/blobs/{digest}", self.base_url(image));
        let store_error = |source| RegistryError::Store {
            digest: digest.clone(),
            source: Box::new(source),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .blob_attempt(image, &url, digest, size, ingest, progress)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e @ RegistryError::Transport { .. }) if attempt < BLOB_ATTEMPTS => {
                    tracing::debug!(%digest, attempt, error = %e, "blob download broke; resuming");
                }
                Err(RegistryError::Size { .. }) if attempt < BLOB_ATTEMPTS => {
                    // More bytes than expected after a resume: start over once.
                    ingest.restart().map_err(store_error)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn blob_attempt(
        &self,
        image: &ImageRef,
        url: &str,
        digest: &Digest,
        size: u64,
        ingest: &mut Ingest,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), RegistryError> {
        let store_error = |source| RegistryError::Store {
            digest: digest.clone(),
            source: Box::new(source),
        };
        let io_error = |source| RegistryError::Write {
            digest: digest.clone(),
            source,
        };
        let offset = ingest.offset();
        if offset == size && size > 0 {
            return Ok(());
        }
        let mut headers = HeaderMap::new();
        if offset > 0 {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes={offset}-")) {
                headers.insert(RANGE, v);
            }
        }
        let response = self.get(image, url, headers).await?;
        self.check_status(image, &format!("blob {digest}"), &response)?;
        let mut response = ok_or_status(url, response).await?;
        if offset > 0 && response.status() != StatusCode::PARTIAL_CONTENT {
            // The server ignored the range: the body starts at byte 0.
            ingest.restart().map_err(store_error)?;
        }
        progress(ingest.offset());
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|source| RegistryError::Transport {
                    url: url.to_owned(),
                    source,
                })?;
            let Some(chunk) = chunk else { break };
            ingest.write_all(&chunk).map_err(io_error)?;
            let written = ingest.offset();
            if written > size {
                return Err(RegistryError::Size {
                    url: url.to_owned(),
                    expected: size,
                    actual: written,
                });
            }
            progress(written);
        }
        let written = ingest.offset();
        if written != size {
            return Err(RegistryError::Size {
                url: url.to_owned(),
                expected: size,
                actual: written,
            });
        }
        Ok(())
    }

    fn check_status(
        &self,
        image: &ImageRef,
        what: &str,
        response: &reqwest::Response,
    ) -> Result<(), RegistryError> {
        match response.status() {
            StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
                what: what.to_owned(),
                repository: image.repository().to_owned(),
                registry: image.registry().to_owned(),
            }),
            StatusCode::FORBIDDEN => Err(RegistryError::Unauthorized {
                registry: image.registry().to_owned(),
                status: 403,
                hint: "",
            }),
            // Other statuses become a Status error with the body, in ok_or_status.
            _ => Ok(()),
        }
    }
}

/// The response if it succeeded, else a status error with the start of its body.
async fn ok_or_status(
    url: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, RegistryError> {
    if response.status().is_success() {
        Ok(response)
    } else {
        let status = response.status();
        Err(status_error(url, status, response).await)
    }
}

async fn status_error(url: &str, status: StatusCode, response: reqwest::Response) -> RegistryError {
    let body = response.text().await.unwrap_or_default();
    let message: String = body.chars().take(200).collect();
    RegistryError::Status {
        url: url.to_owned(),
        status: status.as_u16(),
        message: message.trim().replace('\n', " "),
    }
}

/// Reads a whole body of at most `limit` bytes, refusing larger ones without reading them.
async fn read_limited(
    url: &str,
    mut response: reqwest::Response,
    limit: usize,
    what: &'static str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        url: url.to_owned(),
        what,
        limit,
    };
    if response
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit))
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| RegistryError::Transport {
            url: url.to_owned(),
            source,
        })?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
