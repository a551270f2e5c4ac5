//! `testudoctl certs`: a development CA, a server certificate for `testudod --listen-tcp` and a
//! client certificate for `testudoctl -H`, written as PEM files into one directory.
//!
//! Design decisions:
//! - ECDSA P-256 keys (rcgen's default, with ring), valid from a day ago (clock skew between
//!   hosts) for a year: these are for development and tests, not a PKI.
//! - Existing files are never overwritten: a second run into the same directory fails before
//!   writing anything, and a run that fails half-way removes what it wrote.
//! - Private keys are created mode 0600; certificates 0644.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The flags of `testudoctl certs`.
#[derive(Debug, clap::Args)]
pub(crate) struct CertsArgs {
    /// The directory to write into (created if missing); its files must not exist yet
    #[arg(long)]
    dir: PathBuf,
    /// A further DNS name of the daemon's host for the server certificate; repeatable
    #[arg(long = "server-name", value_name = "NAME")]
    server_names: Vec<String>,
    /// A further IP address of the daemon's host for the server certificate; repeatable
    #[arg(long = "ip", value_name = "ADDR")]
    ips: Vec<IpAddr>,
}

/// The files written, in `--dir`.
pub(crate) const FILES: [&str; 6] = [
    CA_CERT,
    CA_KEY,
    SERVER_CERT,
    SERVER_KEY,
    CLIENT_CERT,
    CLIENT_KEY,
];
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server-key.pem";
const CLIENT_CERT: &str = "client.pem";
const CLIENT_KEY: &str = "client-key.pem";

/// Why `certs` failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertsError {
    #[error("cannot create the directory {path:?}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path:?} exists already; choose another --dir or remove it")]
    Exists { path: PathBuf },
    #[error("cannot write {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid server name {name:?}: expected a DNS name such as node1.example.com")]
    ServerName { name: String },
    #[error("cannot generate the {what}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
}

/// One PEM file to write.
struct Output {
    name: &'static str,
    pem: String,
    mode: u32,
}

/// Generates the CA and the two certificates and writes them into `args.dir`; the paths written.
pub(crate) fn write(args: &CertsArgs) -> Result<Vec<PathBuf>, CertsError> {
    if let Some(name) = args.server_names.iter().find(|n| !is_dns_name(n)) {
        return Err(CertsError::ServerName { name: name.clone() });
    }
    let outputs = generate(args)?;
    std::fs::create_dir_all(&args.dir).map_err(|source| CertsError::Directory {
        path: args.dir.clone(),
        source,
    })?;
    if let Some(path) = FILES.iter().map(|f| args.dir.join(f)).find(|p| p.exists()) {
        return Err(CertsError::Exists { path });
    }
    let mut written = Vec::new();
    for output in outputs {
        let path = args.dir.join(output.name);
        if let Err(source) = write_new(&path, &output.pem, output.mode) {
            // Nothing half-written is left: the files of this run go, others were not touched.
            for path in written.iter().chain([&path]) {
                let _ = std::fs::remove_file(path);
            }
            return Err(CertsError::Write { path, source });
        }
        written.push(path);
    }
    Ok(written)
}

fn write_new(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

fn generate(args: &CertsArgs) -> Result<Vec<Output>, CertsError> {
    let generate_error = |what| move |source| CertsError::Generate { what, source };
    let ca_key = KeyPair::generate().map_err(generate_error("CA key"))?;
    // Each CA gets its own subject, so that a verifier tells two of them apart by name (a
    // certificate from another one is then "unknown issuer", not a bad signature).
    let fingerprint: String = ca_key.public_key_raw()[1..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut ca_params = params(&format!("testudo development CA {fingerprint}"), Vec::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(generate_error("CA certificate"))?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut server_names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let given = args.server_names.iter().cloned();
    for name in given.chain(args.ips.iter().map(IpAddr::to_string)) {
        if !server_names.contains(&name) {
            server_names.push(name);
        }
    }
    let mut server_params = params("testudod", server_names)?;
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let server_key = KeyPair::generate().map_err(generate_error("server key"))?;
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .map_err(generate_error("server certificate"))?;

    let mut client_params = params("testudoctl", Vec::new())?;
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let client_key = KeyPair::generate().map_err(generate_error("client key"))?;
    let client_cert = client_params
        .signed_by(&client_key, &issuer)
        .map_err(generate_error("client certificate"))?;

    let cert = |name, pem| Output {
        name,
        pem,
        mode: 0o644,
    };
    let key = |name, pem| Output {
        name,
        pem,
        mode: 0o600,
    };
    Ok(vec![
        cert(CA_CERT, ca_cert.pem()),
        key(CA_KEY, ca_key_pem),
        cert(SERVER_CERT, server_cert.pem()),
        key(SERVER_KEY, server_key.serialize_pem()),
        cert(CLIENT_CERT, client_cert.pem()),
        key(CLIENT_KEY, client_key.serialize_pem()),
    ])
}

/// Parameters with `common_name`, the subject alternative names `names` (DNS names or IP
/// addresses) and a validity from a day ago for a year.
fn params(common_name: &str, names: Vec<String>) -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(names).map_err(|source| CertsError::Generate {
        what: "certificate parameters",
        source,
    })?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, common_name);
    params.distinguished_name = subject;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    Ok(params)
}

/// Whether `name` is a DNS host name: dot-separated labels of letters, digits and inner `-`.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_must_be_dns_names() {
        for good in ["localhost", "node1.example.com", "a-b.c", "x"] {
            assert!(is_dns_name(good), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "-a.b",
            "a-.b",
            "bad name",
            "n\u{f6}de",
            "a.b.",
            "*.example",
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }
}
