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

/// Looks up credentials for `registry` (`host[:port]`, Docker Hub as `docker.io`).
pub fn lookup(registry: &str) -> Result<Option<Credentials>, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (env("REGISTRY_USERNAME"), env("REGISTRY_PASSWORD")) {
        (Some(username), Some(password)) => {
            return Ok(Some(Credentials {
                username,
                password,
                source: "REGISTRY_USERNAME/REGISTRY_PASSWORD".into(),
            }))
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err("set both REGISTRY_USERNAME and REGISTRY_PASSWORD, or neither".into())
        }
        _ => {}
    }
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    from_config(&path, &text, registry)
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
pub fn from_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, String> {
    use std::io::Write as _;
    let program = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run credential helper {program} (from Docker's config.json): {e}")
        })?;
    let server = helper_server(registry);
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("credential helper {program}: {e}"))?;
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
        return Err(format!(
            "credential helper {program} failed for {server}: {first}"
        ));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let a: Answer = serde_json::from_str(&stdout).map_err(|_| {
        format!("credential helper {program} answered something that is not its JSON")
    })?;
    if a.username == "<token>" {
        return Err(format!(
            "credential helper {program} holds an identity token for {server}; log in with a username and password"
        ));
    }
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
        source: format!("credential helper {program}"),
    }))
}

pub fn from_config(path: &Path, text: &str, registry: &str) -> Result<Option<Credentials>, String> {
    let file: ConfigFile = serde_json::from_str(text)
        .map_err(|e| format!("malformed Docker config {}: {e}", path.display()))?;
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
    let bad = |why: &str| format!("malformed credentials in {source}: {why}");
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
        let e = from_config(p, r#"{"auths":{"x.io":{"auth":"!!"}}}"#, "x.io").unwrap_err();
        assert!(e.contains("not base64") && !e.contains("!!"), "{e}");
        assert!(!format!("{hub:?}").contains("secret"));
    }
}
