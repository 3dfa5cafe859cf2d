//! Credentials and `WWW-Authenticate` challenges.
//!
//! Sources, first match wins: `REGISTRY_USERNAME`/`REGISTRY_PASSWORD` (CI secrets, one registry per run), then
//! Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) as Docker reads it: the
//! registry's `credHelpers` entry, else `credsStore`, runs `docker-credential-<name> get` (server on stdin, JSON on
//! stdout); else the `auths` entry whose key names the registry.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::reference::DOCKER_HUB;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Where they came from, for error messages (never the secret itself).
    pub source: String,
}

// Never print a password, not even in a debug dump.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({} from {})", self.username, self.source)
    }
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Why credentials could not be looked up. Each message is complete on its own (a cause, where there is one,
/// is in it and is also its `source`); none ever holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("set both REGISTRY_USERNAME and REGISTRY_PASSWORD, or neither")]
    HalfEnv,
    #[error("cannot read {}: {source}", path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed Docker config {}: {source}", path.display())]
    MalformedConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `why` only: the decoding error would quote bytes of the secret.
    #[error("malformed credentials in {origin}: {why}")]
    MalformedCredentials { origin: String, why: &'static str },
    #[error("cannot run credential helper {program} (from Docker's config.json): {source}")]
    HelperSpawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("credential helper {program}: {source}")]
    HelperWait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// `first`: the first line of the helper's stdout, at most 200 characters.
    #[error("credential helper {program} failed for {server}: {first}")]
    HelperFailed {
        program: String,
        server: String,
        first: String,
    },
    /// No source: the JSON error would quote the answer, which holds the secret.
    #[error("credential helper {program} answered something that is not its JSON")]
    HelperAnswer { program: String },
    #[error(
        "credential helper {program} holds an identity token for {server}; log in with a username and password"
    )]
    IdentityToken { program: String, server: String },
}

/// Looks up credentials for `registry` (`host[:port]`, Docker Hub as `docker.io`).
pub fn lookup(registry: &str) -> Result<Option<Credentials>, Error> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (env("REGISTRY_USERNAME"), env("REGISTRY_PASSWORD")) {
        (Some(username), Some(password)) => {
            return Ok(Some(Credentials {
                username,
                password,
                source: "REGISTRY_USERNAME/REGISTRY_PASSWORD".into(),
            }))
        }
        (Some(_), None) | (None, Some(_)) => return Err(Error::HalfEnv),
        _ => {}
    }
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    match read_config(&path)? {
        Some(text) => from_config(&path, &text, registry),
        None => Ok(None),
    }
}

/// Docker's config file's text; a missing file → None.
fn read_config(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::ReadConfig {
            path: path.to_owned(),
            source,
        }),
    }
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(Path::new(&dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker/config.json"))
}

#[derive(serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `https://index.docker.io/v1/`, `quay.io`, `http://127.0.0.1:5000/v2/` → the registry they name.
fn config_key_registry(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_owned(),
        _ => host,
    }
}

/// What a credential helper is asked for: Docker Hub's legacy URL, else the registry host.
fn helper_server(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    }
}

/// `docker-credential-<helper> get`, as Docker runs it. Not found → None.
pub fn from_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, Error> {
    use std::io::Write as _;
    let program = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| Error::HelperSpawn {
            program: program.clone(),
            source,
        })?;
    let server = helper_server(registry);
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| Error::HelperWait {
            program: program.clone(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // Docker treats this answer as "no credentials", not as an error.
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        // stderr and stdout may hold anything; only the first line of stdout is shown (helpers print errors there).
        let first = stdout
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect::<String>();
        return Err(Error::HelperFailed {
            program,
            server,
            first,
        });
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let Ok(a) = serde_json::from_str::<Answer>(&stdout) else {
        return Err(Error::HelperAnswer { program });
    };
    if a.username == "<token>" {
        return Err(Error::IdentityToken { program, server });
    }
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
        source: format!("credential helper {program}"),
    }))
}

pub fn from_config(path: &Path, text: &str, registry: &str) -> Result<Option<Credentials>, Error> {
    let file: ConfigFile = serde_json::from_str(text).map_err(|source| Error::MalformedConfig {
        path: path.to_owned(),
        source,
    })?;
    let want = registry.to_ascii_lowercase();
    let helper = file
        .cred_helpers
        .iter()
        .find(|(k, _)| config_key_registry(k) == want)
        .map(|(_, h)| h.clone())
        .or(file.creds_store.clone())
        .filter(|h| !h.is_empty());
    if let Some(h) = helper {
        if let Some(c) = from_helper(&h, &want)? {
            return Ok(Some(c));
        }
    }
    let Some((key, entry)) = file
        .auths
        .iter()
        .find(|(k, _)| config_key_registry(k) == want)
    else {
        return Ok(None);
    };
    let source = format!("{} (auths.{key})", path.display());
    let bad = |why: &'static str| Error::MalformedCredentials {
        origin: source.clone(),
        why,
    };
    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) if !auth.is_empty() => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("auth is not base64"))?;
            let raw = String::from_utf8(raw).map_err(|_| bad("auth is not UTF-8"))?;
            let (u, p) = raw
                .split_once(':')
                .ok_or_else(|| bad("auth is not user:password"))?;
            (u.to_owned(), p.to_owned())
        }
        (_, Some(u), Some(p)) => (u.clone(), p.clone()),
        _ => return Ok(None),
    };
    Ok(Some(Credentials {
        username,
        password,
        source,
    }))
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="https://auth/token",service="registry",scope="repository:a:pull"` or `Basic realm="x"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

/// `k="v", k2=v2` with quoted values that may contain commas (scopes do: `repository:a:pull,push`).
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
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
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
}

/// A token server's answer: `token` (Docker) or `access_token` (OAuth2).
pub fn parse_token_response(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct T {
        token: Option<String>,
        access_token: Option<String>,
    }
    let t: T = serde_json::from_slice(body).ok()?;
    t.token.or(t.access_token).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_commas_in_scope() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
    }

    #[test]
    fn other_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("basic"), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge("Bearer realm=https://x/t, service=reg"),
            Some(Challenge::Bearer {
                realm: "https://x/t".into(),
                service: Some("reg".into()),
                scope: None
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None, "no realm");
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn token_responses() {
        assert_eq!(
            parse_token_response(br#"{"token":"t1"}"#).as_deref(),
            Some("t1")
        );
        assert_eq!(
            parse_token_response(br#"{"access_token":"t2"}"#).as_deref(),
            Some("t2")
        );
        assert_eq!(parse_token_response(br#"{"token":""}"#), None);
        assert_eq!(parse_token_response(b"nope"), None);
    }

    #[test]
    fn config_json_entries() {
        let p = Path::new("/c/config.json");
        let text = r#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
            "http://127.0.0.1:5000":{"auth":"dTpwOmFzcw=="},
            "quay.io":{"username":"q","password":"w"},
            "other.io":{}
        }}"#;
        let hub = from_config(p, text, "docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        let local = from_config(p, text, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (local.username.as_str(), local.password.as_str()),
            ("u", "p:ass")
        );
        assert!(from_config(p, text, "quay.io").unwrap().is_some());
        assert!(from_config(p, text, "other.io").unwrap().is_none());
        assert!(from_config(p, text, "ghcr.io").unwrap().is_none());
        let e = from_config(p, r#"{"auths":{"x.io":{"auth":"!!"}}}"#, "x.io")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "malformed credentials in /c/config.json (auths.x.io): auth is not base64"
        );
        assert!(!format!("{hub:?}").contains("secret"));
    }

    /// An unreadable or malformed config keeps its cause as the error's source, and the message is the one the
    /// strings used to be.
    #[test]
    fn config_errors_keep_their_cause() {
        use std::error::Error as _;
        let p = Path::new("/c/config.json");
        let e = from_config(p, "{not json", "x.io").unwrap_err();
        let cause = e.source().expect("a source");
        assert!(
            cause.downcast_ref::<serde_json::Error>().is_some(),
            "{cause:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("malformed Docker config /c/config.json: {cause}")
        );

        // A directory where the file should be: read fails, and not with NotFound.
        let dir = tempfile::tempdir().unwrap();
        let e = read_config(dir.path()).unwrap_err();
        let cause = e.source().expect("a source");
        assert!(
            cause.downcast_ref::<std::io::Error>().is_some(),
            "{cause:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("cannot read {}: {cause}", dir.path().display())
        );
        assert!(read_config(&dir.path().join("missing.json"))
            .unwrap()
            .is_none());
    }
}
