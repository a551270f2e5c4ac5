//! Registry authentication: credentials from docker-style auth files, the `WWW-Authenticate`
//! challenge of a 401, and the token server's answer.
//!
//! A registry answers an unauthenticated request with 401 and a challenge: `Basic realm=...`
//! (send the user's credentials) or `Bearer realm=...,service=...,scope=...` (get a token from the
//! realm, with the credentials if there are any, and send it). This module is the pure part of
//! that flow; the client in `registry` does the requests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Why an auth file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// The file cannot be read.
    #[error("cannot read auth file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the JSON of a docker `config.json` / containers `auth.json`.
    #[error("auth file {path} is not valid JSON")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An `auth` entry is not base64 of `user:password`.
    #[error("auth file {path}: the entry for {registry} is not base64 of user:password")]
    BadEntry {
        /// The file.
        path: PathBuf,
        /// The registry whose entry is bad.
        registry: String,
    },
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name.
    pub user: String,
    /// The password or identity token.
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("Credential")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Credentials by registry host (`127.0.0.1:5000`, `docker.io`).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_registry: HashMap<String, Credential>,
}

impl Credentials {
    /// No credentials: anonymous access only.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the credential for `registry`.
    pub fn insert(&mut self, registry: &str, user: &str, password: &str) {
        self.by_registry.insert(
            normalize_registry(registry),
            Credential {
                user: user.into(),
                password: password.into(),
            },
        );
    }

    /// The credential for `registry`, if any.
    pub fn get(&self, registry: &str) -> Option<&Credential> {
        self.by_registry.get(&normalize_registry(registry))
    }

    /// Reads a docker `config.json` or containers `auth.json`: `{"auths": {"host": {"auth":
    /// base64(user:password)}}}` (or `username`/`password` fields). Credential helpers are not run.
    pub fn from_auth_file(path: &Path) -> Result<Self, AuthFileError> {
        let text = std::fs::read(path).map_err(|source| AuthFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let doc: AuthFile =
            serde_json::from_slice(&text).map_err(|source| AuthFileError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let mut out = Credentials::none();
        for (registry, entry) in doc.auths {
            let bad = || AuthFileError::BadEntry {
                path: path.to_owned(),
                registry: registry.clone(),
            };
            let (user, password) = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|_| bad())?;
                    let raw = String::from_utf8(raw).map_err(|_| bad())?;
                    let (u, p) = raw.split_once(':').ok_or_else(bad)?;
                    (u.to_owned(), p.to_owned())
                }
                (_, Some(u), Some(p)) => (u, p),
                _ => continue,
            };
            out.insert(&registry, &user, &password);
        }
        Ok(out)
    }

    /// The credentials of the first auth file that exists, in the order podman and docker look:
    /// `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`, `$DOCKER_CONFIG/config.json`,
    /// `~/.docker/config.json`. None found is not an error.
    pub fn from_default_files() -> Result<Self, AuthFileError> {
        let env = |k: &str| std::env::var_os(k).map(PathBuf::from);
        let candidates = [
            env("REGISTRY_AUTH_FILE"),
            env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")),
            env("DOCKER_CONFIG").map(|d| d.join("config.json")),
            env("HOME").map(|d| d.join(".docker/config.json")),
        ];
        match candidates.into_iter().flatten().find(|p| p.is_file()) {
            Some(path) => Self::from_auth_file(&path),
            None => Ok(Self::none()),
        }
    }
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// `https://index.docker.io/v1/` and friends mean docker.io; other keys are host[:port].
fn normalize_registry(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        other => other.to_owned(),
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="..."`.
    Basic,
    /// `Bearer realm="...",service="...",scope="..."`.
    Bearer {
        /// The token server's URL.
        realm: String,
        /// The `service` parameter to pass on.
        service: Option<String>,
        /// The `scope` the registry asked for, if it said.
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses the header value; `None` for a scheme this client cannot answer.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header
            .split_once(char::is_whitespace)
            .unwrap_or((header, ""));
        let params = parse_params(rest);
        let get = |k: &str| {
            params
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        if scheme.eq_ignore_ascii_case("basic") {
            Some(Challenge::Basic)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Some(Challenge::Bearer {
                realm: get("realm")?,
                service: get("service"),
                scope: get("scope"),
            })
        } else {
            None
        }
    }
}

/// `k="v", k2=v2` (RFC 7235 auth-params; quoted strings may hold commas and `\"`).
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let name: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_owned();
        if name.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        out.push((name, value));
    }
}

/// The token server's answer (`token`, or OAuth2's `access_token`).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl TokenResponse {
    pub(crate) fn into_token(self) -> Option<String> {
        self.token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bearer_challenges_give_realm_service_and_scope() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"bearer realm=http://x/t"#),
            Some(Challenge::Bearer {
                realm: "http://x/t".into(),
                service: None,
                scope: None
            })
        );
    }

    #[test]
    fn basic_and_unknown_challenges() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse("Bearer service=\"x\""), None);
        assert_eq!(Challenge::parse(""), None);
    }

    #[test]
    fn quoted_values_keep_commas_and_escapes() {
        let params = parse_params(r#"a="x,y", b="q\"uote", c=plain"#);
        assert_eq!(
            params,
            vec![
                ("a".into(), "x,y".into()),
                ("b".into(), "q\"uote".into()),
                ("c".into(), "plain".into())
            ]
        );
    }

    #[test]
    fn auth_files_give_credentials_by_registry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{auth}"}},
                "https://index.docker.io/v1/": {{"username": "bob", "password": "pw"}},
                "empty.example": {{}}}}}}"#
            ),
        )
        .unwrap();
        let creds = Credentials::from_auth_file(&path).unwrap();
        let alice = creds.get("127.0.0.1:5000").unwrap();
        assert_eq!(
            (alice.user.as_str(), alice.password.as_str()),
            ("alice", "s3:cret")
        );
        assert_eq!(creds.get("docker.io").unwrap().user, "bob");
        assert!(creds.get("empty.example").is_none());
        assert!(!format!("{alice:?}").contains("s3:cret"));
    }

    #[test]
    fn bad_auth_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(&path, r#"{"auths": {"r.example": {"auth": "!!!"}}}"#).unwrap();
        let err = Credentials::from_auth_file(&path).unwrap_err();
        assert!(err.to_string().contains("r.example"), "{err}");
        std::fs::write(&path, "{").unwrap();
        let err = Credentials::from_auth_file(&path).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }
}
