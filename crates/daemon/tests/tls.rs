//! The API on TCP with mutual TLS, end to end: the real daemon with certificates written by
//! `testudoctl certs`, reached by the real `testudoctl -H`, and by raw TLS and TCP clients that
//! the daemon must refuse.

#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Certificates written by `testudoctl certs` into `<dir>/<name>`, with `extra` flags.
fn write_certs(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let output = Command::new(testudoctl())
        .arg("certs")
        .arg("--dir")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// A daemon listening on `host:0` with the server certificate of `certs`, and its address.
fn tls_daemon(certs: &Path, host: &str) -> (Daemon, String) {
    let listen = format!("{host}:0");
    let (cert, key, ca) = (
        certs.join("server.pem"),
        certs.join("server-key.pem"),
        certs.join("ca.pem"),
    );
    let flags: [&OsStr; 8] = [
        "--listen-tcp".as_ref(),
        listen.as_ref(),
        "--tls-cert".as_ref(),
        cert.as_ref(),
        "--tls-key".as_ref(),
        key.as_ref(),
        "--tls-ca".as_ref(),
        ca.as_ref(),
    ];
    let daemon = Daemon::start_with(&[], &flags);
    let address = logged_tcp_address(daemon.dir.path());
    (daemon, address)
}

/// `testudoctl -H address` with the CA of `ca_dir` and the client certificate of `client_dir`.
fn remote(address: &str, ca_dir: &Path, client_dir: &Path, args: &[&str]) -> Output {
    Command::new(testudoctl())
        .args(["-H", address])
        .arg("--tls-ca")
        .arg(ca_dir.join("ca.pem"))
        .arg("--tls-cert")
        .arg(client_dir.join("client.pem"))
        .arg("--tls-key")
        .arg(client_dir.join("client-key.pem"))
        .args(args)
        .output()
        .unwrap()
}

fn remote_ok(address: &str, certs: &Path, args: &[&str]) -> String {
    let output = remote(address, certs, certs, args);
    assert!(
        output.status.success(),
        "testudoctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The one line a failed testudoctl printed.
fn one_line_failure(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr.trim_end().to_owned()
}

#[test]
fn testudoctl_with_a_client_certificate_works_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let certs = write_certs(dir.path(), "certs", &[]);
    let (daemon, address) = tls_daemon(&certs, "127.0.0.1");

    let listed: serde_json::Value =
        serde_json::from_str(&remote_ok(&address, &certs, &["--json", "ns", "ls"])).unwrap();
    assert_eq!(names(&listed), ["default"]);
    assert_eq!(
        remote_ok(&address, &certs, &["ns", "create", "acme"]),
        "acme\n"
    );
    // The same daemon, seen through its unix socket.
    assert_eq!(names(&daemon.json(&["ns", "ls"])), ["acme", "default"]);
    let images = remote_ok(&address, &certs, &["-n", "acme", "image", "ls"]);
    assert!(images.starts_with("NAME  DIGEST"), "{images}");

    // The flags can come from the environment; a server certificate names localhost too.
    let port = address.rsplit_once(':').unwrap().1;
    let output = Command::new(testudoctl())
        .args(["--json", "ns", "ls"])
        .env("TESTUDO_HOST", format!("localhost:{port}"))
        .env("TESTUDO_TLS_CA", certs.join("ca.pem"))
        .env("TESTUDO_TLS_CERT", certs.join("client.pem"))
        .env("TESTUDO_TLS_KEY", certs.join("client-key.pem"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(names(&listed), ["acme", "default"]);
}

/// A TLS 1.3 handshake with the daemon at `address` trusting `ca`, without a client
/// certificate, then a read: the daemon's verdict, as the error the read returned.
async fn handshake_without_client_certificate(address: &str, ca: &Path) -> std::io::Error {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    // With TLS 1.3 the client's side of the handshake completes; the refusal follows.
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut buf = [0; 64];
    tokio::io::AsyncReadExt::read(&mut tls, &mut buf)
        .await
        .unwrap_err()
}

#[tokio::test(flavor = "current_thread")]
async fn the_tcp_listener_refuses_clients_without_a_certificate_of_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = write_certs(dir.path(), "certs", &[]);
    let other = write_certs(dir.path(), "other", &[]);
    let (daemon, address) = tls_daemon(&certs, "127.0.0.1");

    let refused = handshake_without_client_certificate(&address, &certs.join("ca.pem")).await;
    assert!(
        refused.to_string().contains("CertificateRequired"),
        "{refused}"
    );

    // A client certificate from another CA, through testudoctl.
    let output = remote(&address, &certs, &other, &["ns", "create", "intruder"]);
    assert_eq!(
        one_line_failure(&output),
        format!(
            "testudoctl: TLS handshake with the daemon at {address} failed: received fatal \
             alert: UnknownCA"
        )
    );

    // Plain-text HTTP/2 (a gRPC client without TLS): no HTTP/2 answer, at most a TLS alert.
    let mut tcp = std::net::TcpStream::connect(&address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    let mut answer = Vec::new();
    // The daemon closes the connection: a reset is as good as an end of file.
    let _ = tcp.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "not a TLS alert: {answer:?}"
    );

    // The daemon may log the last refusal just after it closed the connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(daemon.dir.path().join("testudod.log")).unwrap();
        let refused = log.matches("TLS handshake refused").count();
        if refused == 3 || std::time::Instant::now() > deadline {
            assert_eq!(refused, 3, "{log}");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // None of them changed anything.
    assert_eq!(names(&daemon.json(&["ns", "ls"])), ["default"]);
}

#[test]
fn a_client_refuses_a_daemon_of_another_ca_or_name() {
    let dir = tempfile::tempdir().unwrap();
    let certs = write_certs(dir.path(), "certs", &[]);
    let other = write_certs(dir.path(), "other", &[]);
    // All of 127/8 is loopback: 127.0.0.2 is not a name the default server certificate has.
    let (_daemon, address) = tls_daemon(&certs, "127.0.0.2");
    let wrong_name = one_line_failure(&remote(&address, &certs, &certs, &["ns", "ls"]));
    assert_eq!(
        wrong_name,
        format!(
            "testudoctl: TLS handshake with the daemon at {address} failed: invalid peer \
             certificate: certificate not valid for name \"127.0.0.2\"; certificate is only \
             valid for DnsName(\"localhost\") or IpAddress(127.0.0.1)"
        )
    );

    let (_daemon, address) = tls_daemon(&certs, "127.0.0.1");
    let wrong_ca = one_line_failure(&remote(&address, &other, &certs, &["ns", "ls"]));
    assert_eq!(
        wrong_ca,
        format!(
            "testudoctl: TLS handshake with the daemon at {address} failed: invalid peer \
             certificate: UnknownIssuer"
        )
    );

    // --ip and --server-name add names to the server certificate.
    let named = certs_with_names(dir.path());
    let (_daemon, address) = tls_daemon(&named, "127.0.0.2");
    let listed: serde_json::Value =
        serde_json::from_str(&remote_ok(&address, &named, &["--json", "ns", "ls"])).unwrap();
    assert_eq!(names(&listed), ["default"]);
}

fn certs_with_names(dir: &Path) -> PathBuf {
    write_certs(
        dir,
        "named",
        &["--ip", "127.0.0.2", "--server-name", "node1.example"],
    )
}

#[test]
fn certs_writes_private_keys_for_the_owner_only_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let certs = write_certs(dir.path(), "certs", &[]);
    for (file, mode) in [
        ("ca.pem", 0o644),
        ("ca-key.pem", 0o600),
        ("server.pem", 0o644),
        ("server-key.pem", 0o600),
        ("client.pem", 0o644),
        ("client-key.pem", 0o600),
    ] {
        let meta = std::fs::metadata(certs.join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{file}");
    }
    let before = std::fs::read(certs.join("client-key.pem")).unwrap();
    let output = Command::new(testudoctl())
        .arg("certs")
        .arg("--dir")
        .arg(&certs)
        .output()
        .unwrap();
    assert_eq!(
        one_line_failure(&output),
        format!(
            "testudoctl: {:?} exists already; choose another --dir or remove it",
            certs.join("ca.pem")
        )
    );
    assert_eq!(std::fs::read(certs.join("client-key.pem")).unwrap(), before);
    let bad_name = Command::new(testudoctl())
        .arg("certs")
        .arg("--dir")
        .arg(dir.path().join("bad"))
        .args(["--server-name", "bad name"])
        .output()
        .unwrap();
    assert_eq!(
        one_line_failure(&bad_name),
        "testudoctl: invalid server name \"bad name\": expected a DNS name such as \
         node1.example.com"
    );
    assert!(!dir.path().join("bad").exists());
}

/// testudod started with `flags`, which must fail at once: its one-line error.
fn start_error(dir: &Path, flags: &[&OsStr]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_testudod"))
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--socket")
        .arg(dir.join("run/testudod.sock"))
        .args(flags)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("testudod:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    // Nothing is left listening: the socket went with the failed start.
    assert!(!dir.join("run/testudod.sock").exists());
    errors[0].to_owned()
}

#[test]
fn bad_tls_files_are_one_line_start_errors() {
    let dir = tempfile::tempdir().unwrap();
    let certs = write_certs(dir.path(), "certs", &[]);
    let other = write_certs(dir.path(), "other", &[]);
    let flags = |cert: &Path, key: &Path, ca: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "--listen-tcp".into(),
            "127.0.0.1:0".into(),
            "--tls-cert".into(),
            cert.into(),
            "--tls-key".into(),
            key.into(),
            "--tls-ca".into(),
            ca.into(),
        ]
    };
    let start = |cert: &Path, key: &Path, ca: &Path| {
        let owned = flags(cert, key, ca);
        let flags: Vec<&OsStr> = owned.iter().map(|f| f.as_os_str()).collect();
        start_error(dir.path(), &flags)
    };
    let (cert, key, ca) = (
        certs.join("server.pem"),
        certs.join("server-key.pem"),
        certs.join("ca.pem"),
    );
    let missing = certs.join("missing.pem");
    assert_eq!(
        start(&cert, &missing, &ca),
        format!(
            "testudod: cannot read the TLS key {missing:?}: No such file or directory (os error 2)"
        )
    );
    let other_key = other.join("server-key.pem");
    let mismatch = start(&cert, &other_key, &ca);
    assert!(
        mismatch.starts_with(&format!(
            "testudod: the TLS key {other_key:?} does not fit the certificate {cert:?}"
        )),
        "{mismatch}"
    );
    assert_eq!(
        start(&cert, &key, &key),
        format!("testudod: the TLS CA {key:?} holds no PEM certificate")
    );
    assert_eq!(
        start(&key, &key, &ca),
        format!("testudod: the TLS certificate {key:?} holds no PEM certificate")
    );

    // No plain TCP mode: --listen-tcp without the TLS files is a usage error.
    let output = Command::new(env!("CARGO_BIN_EXE_testudod"))
        .arg("--root")
        .arg(dir.path().join("root"))
        .args(["--listen-tcp", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--tls-cert <FILE>"), "{stderr}");
}
