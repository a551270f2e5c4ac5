//! A private instance of the reference registry server (`docker-registry`, distribution 2.8) on
//! 127.0.0.1, anonymous or with basic or bearer-token authentication; images reach it from an
//! [`ImageLayout`](crate::ImageLayout) through `skopeo copy`, as a person would push them.
//!
//! Token authentication needs a token server: [`Registry::start_with_token_auth`] runs one in a
//! thread. It checks the client's basic credentials and answers with a JWT (RS256, the signing
//! certificate in its `x5c` header) that the registry verifies against the same self-signed
//! certificate given as its `rootcertbundle`. `openssl` makes the key and signs, so no crypto code
//! lives here.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::command::{describe, output_of};

/// How clients authenticate to a [`Registry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    /// Anyone may pull and push.
    Anonymous,
    /// HTTP basic authentication against an htpasswd file.
    Basic {
        /// The one user.
        user: String,
        /// Its password.
        password: String,
    },
    /// Bearer tokens from a token server that takes these basic credentials.
    Token {
        /// The one user.
        user: String,
        /// Its password.
        password: String,
    },
}

/// How `skopeo` writes the manifests it pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFormat {
    /// As they are in the layout, byte for byte (OCI).
    Oci,
    /// Converted to Docker schema 2 (`--format v2s2`): new manifest digests, and plain tar layers
    /// come out gzip-compressed.
    DockerV2,
}

/// A running registry server; dropping it stops the server and removes its storage.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    address: SocketAddr,
    auth: RegistryAuth,
    token_server: Option<TokenServer>,
    ca_certificate: Option<PathBuf>,
}

impl Registry {
    /// A registry that needs no authentication.
    pub fn start() -> Self {
        Self::start_with(RegistryAuth::Anonymous)
    }

    /// A registry behind HTTP basic authentication.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Self {
        Self::start_with(RegistryAuth::Basic {
            user: user.into(),
            password: password.into(),
        })
    }

    /// A registry behind bearer tokens, from a token server that checks `user` and `password`.
    pub fn start_with_token_auth(user: &str, password: &str) -> Self {
        Self::start_with(RegistryAuth::Token {
            user: user.into(),
            password: password.into(),
        })
    }

    /// An anonymous registry serving HTTPS with a certificate for 127.0.0.1 issued by a test CA
    /// of its own ([`Registry::ca_certificate`]).
    pub fn start_with_tls() -> Self {
        Self::start_configured(RegistryAuth::Anonymous, true)
    }

    fn start_with(auth: RegistryAuth) -> Self {
        Self::start_configured(auth, false)
    }

    fn start_configured(auth: RegistryAuth, tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for a registry");
        let port = free_port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  \
             filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
            dir.path().join("data").display()
        );
        let ca_certificate = tls.then(|| {
            let (ca, cert, key) = issue_server_certificate(dir.path());
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            ca
        });
        let mut token_server = None;
        match &auth {
            RegistryAuth::Anonymous => {}
            RegistryAuth::Basic { user, password } => {
                let htpasswd = dir.path().join("htpasswd");
                let output = output_of(Command::new("htpasswd").args(["-Bbn", user, password]));
                assert!(output.status.success(), "htpasswd: {}", describe(&output));
                fs::write(&htpasswd, &output.stdout).expect("write htpasswd");
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: testudo-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            RegistryAuth::Token { user, password } => {
                let server = TokenServer::start(dir.path(), user, password);
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: http://{}/token\n    service: {TOKEN_SERVICE}\n    \
                     issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    server.address,
                    server.cert.display()
                ));
                token_server = Some(server);
            }
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).expect("write the registry config");
        let log = fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("registry log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (package docker-registry)");
        let registry = Registry {
            child,
            dir,
            address,
            auth,
            token_server,
            ca_certificate,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(self.address).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "docker-registry did not listen on {} within 20s: {}",
            self.address,
            fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `127.0.0.1:<port>`, the registry part of image references.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The socket address.
    pub fn socket_address(&self) -> SocketAddr {
        self.address
    }

    /// The registry's storage directory, for tests that corrupt a stored blob.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The stored file holding the blob of `digest` (`sha256:<hex>`).
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The PEM file of the CA that issued the certificate of a TLS registry.
    pub fn ca_certificate(&self) -> Option<&Path> {
        self.ca_certificate.as_deref()
    }

    /// The user and password, when the registry needs them.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match &self.auth {
            RegistryAuth::Anonymous => None,
            RegistryAuth::Basic { user, password } | RegistryAuth::Token { user, password } => {
                Some((user, password))
            }
        }
    }

    /// Pushes the image tagged `tag` in `layout` as `<address>/<repository_tag>`; `all` copies
    /// every platform of an index.
    pub fn push(
        &self,
        layout: &Path,
        tag: &str,
        repository_tag: &str,
        format: PushFormat,
        all: bool,
    ) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"]);
        if let Some((user, password)) = self.credentials() {
            cmd.arg(format!("--dest-creds={user}:{password}"));
        }
        match format {
            // Byte for byte, so the tests know every digest the registry serves (skopeo would
            // otherwise compress plain tar layers on the way).
            PushFormat::Oci => cmd.arg("--preserve-digests"),
            PushFormat::DockerV2 => cmd.args(["--format", "v2s2"]),
        };
        if all {
            cmd.arg("--all");
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repository_tag}", self.address));
        let output = output_of(&mut cmd);
        assert!(
            output.status.success(),
            "skopeo copy to {repository_tag}: {}",
            describe(&output)
        );
    }

    /// The registry's log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many tokens the token server has issued (0 without token auth).
    pub fn tokens_issued(&self) -> usize {
        self.token_server
            .as_ref()
            .map_or(0, |t| t.issued.load(Ordering::SeqCst))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate for 127.0.0.1 signed by it: (CA cert, cert, key).
fn issue_server_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let file = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let output = output_of(Command::new("openssl").args(args).current_dir(dir));
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            describe(&output)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=testudo test CA",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server-key.pem",
        "-out",
        "server.csr",
    ]);
    fs::write(
        file("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the certificate extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    (file("ca.pem"), file("server.pem"), file("server-key.pem"))
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

const TOKEN_SERVICE: &str = "testudo-registry";
const TOKEN_ISSUER: &str = "testudo-test-issuer";

/// The token server of a token-authenticated registry.
struct TokenServer {
    address: SocketAddr,
    cert: PathBuf,
    issued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    fn start(dir: &Path, user: &str, password: &str) -> Self {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        let output = output_of(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=testudo-token-signer", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        assert!(
            output.status.success(),
            "openssl req: {}",
            describe(&output)
        );
        let der = output_of(
            Command::new("openssl")
                .args(["x509", "-outform", "DER", "-in"])
                .arg(&cert),
        );
        assert!(der.status.success(), "openssl x509: {}", describe(&der));
        let x5c = base64::engine::general_purpose::STANDARD.encode(&der.stdout);

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking token server");
        let address = listener.local_addr().expect("token server address");
        let issued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let signer = TokenSigner {
            key,
            x5c,
            user: user.into(),
        };
        let (issued2, stop2) = (issued.clone(), stop.clone());
        thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        if serve_token(stream, &expected, &signer) {
                            issued2.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TokenServer {
            address,
            cert,
            issued,
            stop,
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct TokenSigner {
    key: PathBuf,
    x5c: String,
    user: String,
}

impl TokenSigner {
    /// A JWT granting `actions` on each repository of the requested scopes.
    fn sign(&self, scopes: &[String]) -> String {
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({"type": kind, "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER, "sub": self.user, "aud": TOKEN_SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", scopes.len()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            url.encode(header.to_string()),
            url.encode(claims.to_string())
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run openssl dgst");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(signing_input.as_bytes())
            .expect("write to openssl");
        let out = child.wait_with_output().expect("openssl dgst");
        assert!(out.status.success(), "openssl dgst failed");
        format!("{signing_input}.{}", url.encode(out.stdout))
    }
}

/// Answers one token request; true when a token was issued.
fn serve_token(stream: TcpStream, expected_auth: &str, signer: &TokenSigner) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return false;
    }
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") && value.trim() == expected_auth {
                authorized = true;
            }
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let scopes: Vec<String> = target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .map(percent_decode)
        .collect();
    let mut stream = &stream;
    if !authorized {
        let _ = stream.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return false;
    }
    let token = signer.sign(&scopes);
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    true
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a [`FaultyProxy`] does to a response once the client asked for the watched path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection after this many response bytes.
    CloseAfter(usize),
    /// Stop forwarding after this many response bytes, keeping the connection open.
    HangAfter(usize),
}

/// A TCP proxy in front of a registry that breaks the responses to requests whose first line
/// contains a given text (a blob's digest), the first `times` times; later ones pass.
pub struct FaultyProxy {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    triggered: Arc<AtomicUsize>,
}

impl FaultyProxy {
    /// Starts a proxy on 127.0.0.1 forwarding to `upstream`.
    pub fn start(upstream: SocketAddr, watched: &str, fault: Fault, times: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking proxy");
        let address = listener.local_addr().expect("proxy address");
        let stop = Arc::new(AtomicBool::new(false));
        let triggered = Arc::new(AtomicUsize::new(0));
        let (stop2, triggered2) = (stop.clone(), triggered.clone());
        let watched = watched.to_owned();
        thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let connection = ProxiedConnection {
                    armed: Arc::new(AtomicBool::new(false)),
                    stop: stop2.clone(),
                    triggered: triggered2.clone(),
                    times,
                    fault,
                };
                connection.spawn(client, server, watched.clone());
            }
        });
        FaultyProxy {
            address,
            stop,
            triggered,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// How many responses were broken so far.
    pub fn faults(&self) -> usize {
        self.triggered.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct ProxiedConnection {
    armed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    triggered: Arc<AtomicUsize>,
    times: usize,
    fault: Fault,
}

impl ProxiedConnection {
    fn spawn(self, client: TcpStream, server: TcpStream, watched: String) {
        let (mut c_in, mut s_out) = (
            client.try_clone().expect("clone"),
            server.try_clone().expect("clone"),
        );
        let up = self.clone();
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = c_in.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let seen = String::from_utf8_lossy(&buf[..n]).contains(watched.as_str());
                if seen && up.triggered.load(Ordering::SeqCst) < up.times {
                    up.triggered.fetch_add(1, Ordering::SeqCst);
                    up.armed.store(true, Ordering::SeqCst);
                }
                if s_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = s_out.shutdown(Shutdown::Write);
        });
        let (mut s_in, mut c_out) = (server, client);
        thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            let mut sent_armed = 0usize;
            while let Ok(n) = s_in.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut chunk = &buf[..n];
                if self.armed.load(Ordering::SeqCst) {
                    let limit = match self.fault {
                        Fault::CloseAfter(b) | Fault::HangAfter(b) => b,
                    };
                    let room = limit.saturating_sub(sent_armed);
                    if chunk.len() >= room {
                        chunk = &chunk[..room];
                        let _ = c_out.write_all(chunk);
                        match self.fault {
                            Fault::CloseAfter(_) => {}
                            Fault::HangAfter(_) => {
                                while !self.stop.load(Ordering::SeqCst) {
                                    thread::sleep(Duration::from_millis(20));
                                }
                            }
                        }
                        let _ = c_out.shutdown(Shutdown::Both);
                        let _ = s_in.shutdown(Shutdown::Both);
                        return;
                    }
                    sent_armed += chunk.len();
                }
                if c_out.write_all(chunk).is_err() {
                    break;
                }
            }
            let _ = c_out.shutdown(Shutdown::Write);
        });
    }
}
