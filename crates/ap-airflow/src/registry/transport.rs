//! The transport under the registry API calls (`client`), layered as go-containerregistry's `transport`: TLS roots
//! and the scheme (ping), the auth challenge and credentials (Basic, Bearer tokens per scope), and `send`, one
//! request re-authenticated once on 401.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use ureq::http::{self, Method, Request, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::auth::{self, Challenge, Credentials};
use super::reference::Repository;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra CA certificates (PEM) trusted on top of the system bundle.
    pub ca_certs: Vec<PathBuf>,
    /// Plain HTTP for every registry, not only loopback ones.
    pub insecure_http: bool,
    /// Tag-list page size (`n`); None lets the registry choose.
    pub page_size: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

enum AuthState {
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        tokens: HashMap<String, String>,
    },
}

pub struct Client {
    pub(super) agent: ureq::Agent,
    /// `https://host:port` or `http://host:port`.
    pub(super) base: String,
    pub registry: String,
    creds: Option<Credentials>,
    auth: AuthState,
    pub(super) page_size: Option<u32>,
    /// Request bodies sent: blob uploads (layers and configs) and manifests.
    pub blob_bytes_sent: u64,
    pub manifest_bytes_sent: u64,
    /// `OCI-Subject` of the last manifest PUT: the registry indexed its `subject` (OCI 1.1 referrers API).
    pub last_oci_subject: Option<String>,
}

fn load_roots(opts: &Options) -> anyhow::Result<RootCerts> {
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    let mut read = |path: &std::path::Path, required: bool| -> anyhow::Result<()> {
        let pem = match std::fs::read(path) {
            Ok(p) => p,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => bail!("cannot read CA certificate file {}: {e}", path.display()),
        };
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(PemItem::Certificate(c)) = item {
                certs.push(c);
            }
        }
        if required && certs.len() == before {
            bail!("no PEM certificate in {}", path.display());
        }
        Ok(())
    };
    for p in &opts.ca_certs {
        read(p, true)?;
    }
    // The system bundle, as Docker uses it: SSL_CERT_FILE when set, else Debian's.
    match std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty()) {
        Some(f) => read(std::path::Path::new(&f), true)?,
        None => read(
            std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"),
            false,
        )?,
    }
    Ok(if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(&certs)
    })
}

fn agent(roots: RootCerts, loopback: bool) -> ureq::Agent {
    let mut cfg = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        .max_redirects(5)
        .user_agent("ap-airflow");
    if loopback {
        // Loopback traffic never goes through an HTTP proxy from the environment.
        cfg = cfg.proxy(None);
    }
    cfg.build().into()
}

/// `/v2/<name>/…` with a registry's error body boiled down to one line.
fn error_line(status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Es {
        errors: Vec<E>,
    }
    let detail = serde_json::from_slice::<Es>(body)
        .ok()
        .and_then(|es| {
            es.errors
                .into_iter()
                .map(|e| {
                    [e.code, e.message]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(": ")
                })
                .reduce(|a, b| format!("{a}; {b}"))
        })
        .unwrap_or_default();
    if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status} ({detail})")
    }
}

pub(super) fn read_body(resp: &mut Response<ureq::Body>, limit: u64) -> anyhow::Result<Vec<u8>> {
    Ok(resp.body_mut().with_config().limit(limit).read_to_vec()?)
}

pub(super) fn header<'a>(resp: &'a Response<ureq::Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn scope_of(repo: &str, access: Access) -> String {
    match access {
        Access::Pull => format!("repository:{repo}:pull"),
        Access::Push => format!("repository:{repo}:pull,push"),
    }
}

/// Attempts after the first of an idempotent request (`send`).
const RETRIES: u32 = 2;
const RETRY_FIRST_PAUSE: Duration = Duration::from_millis(500);

/// How one attempt of `send` failed: `Broken` connections may be tried again.
enum Attempt {
    Broken(anyhow::Error, String),
    Failed(anyhow::Error),
}

/// A connection that broke under the request (reset, closed before an answer): worth another attempt. A refused
/// connection is not (nothing listens), nor a TLS or protocol error.
fn broken_connection(e: &ureq::Error) -> Option<String> {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            ) =>
        {
            Some(format!("a broken connection ({io})"))
        }
        _ => None,
    }
}

/// Whether an https request that failed this way may be answered over plain HTTP: the server was reached but no TLS
/// session came of it (it answered in plain text, or closed on the TLS hello). A refused or failed connection, or
/// TLS that refused us (certificate, alert), is never a reason to downgrade.
fn plain_http_may_answer(e: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Rustls(
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_)
            | rustls::Error::AlertReceived(_),
        ) => false,
        ureq::Error::Rustls(_) => true,
        ureq::Error::Io(io) => !matches!(
            io.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::TimedOut | ErrorKind::AddrNotAvailable
        ),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Timeout(_) => {
            false
        }
        _ => true,
    }
}

pub(super) fn short_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        other => other.to_string(),
    }
}

impl Client {
    /// Connects to a repository's registry: picks the scheme, answers `/v2/`, learns its auth challenge.
    ///
    /// Scheme: https, unless `--insecure-http`. Loopback registries (127.0.0.0/8, ::1, localhost) may be plain
    /// HTTP, as Docker allows: https is tried first and plain HTTP only when the server does not speak TLS at all
    /// (a certificate problem stays an error, never a silent downgrade).
    pub fn connect(repo: &Repository, opts: &Options) -> anyhow::Result<Client> {
        let loopback = repo.is_loopback();
        let roots = load_roots(opts)?;
        // As a message: it already ends with its cause, which the `{:#}` main prints would otherwise repeat.
        let creds = auth::lookup(&repo.registry).map_err(|e| anyhow::Error::msg(e.to_string()))?;
        let host = repo.api_host().to_owned();
        let mut client = Client {
            agent: agent(roots, loopback),
            base: String::new(),
            registry: repo.registry.clone(),
            creds,
            auth: AuthState::Anonymous,
            page_size: opts.page_size,
            blob_bytes_sent: 0,
            manifest_bytes_sent: 0,
            last_oci_subject: None,
        };
        let schemes: &[&str] = if opts.insecure_http {
            &["http"]
        } else if loopback {
            &["https", "http"]
        } else {
            &["https"]
        };
        let mut first_err = None;
        for scheme in schemes {
            client.base = format!("{scheme}://{host}");
            match client.ping() {
                Ok(()) => return Ok(client),
                Err((e, plain_may_answer)) => {
                    first_err.get_or_insert(e);
                    if !plain_may_answer {
                        break;
                    }
                }
            }
        }
        Err(first_err.expect("at least one scheme was tried"))
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /v2/`. On failure, also whether plain HTTP may answer where this scheme did not
    /// (`plain_http_may_answer`).
    fn ping(&mut self) -> Result<(), (anyhow::Error, bool)> {
        let url = format!("{}/v2/", self.base);
        let req = Request::get(&url).body(()).map_err(|e| (e.into(), false))?;
        let resp = self.agent.run(req).map_err(|e| {
            let line = format!(
                "cannot reach registry {} ({url}): {}",
                self.registry,
                short_error(&e)
            );
            (anyhow!(line), plain_http_may_answer(&e))
        })?;
        // An answer that is no registry's: the other scheme may still find one.
        self.answered(&url, resp).map_err(|e| (e, true))
    }

    fn answered(&mut self, url: &str, mut resp: Response<ureq::Body>) -> anyhow::Result<()> {
        let status = resp.status().as_u16();
        let _ = read_body(&mut resp, 1 << 16);
        match status {
            200 => Ok(()),
            401 => {
                let challenge = header(&resp, "www-authenticate").and_then(auth::parse_challenge);
                self.auth = match challenge {
                    Some(Challenge::Basic) => AuthState::Basic,
                    Some(Challenge::Bearer { realm, service, .. }) => AuthState::Bearer {
                        realm,
                        service,
                        tokens: HashMap::new(),
                    },
                    None => bail!(
                        "registry {} wants authentication with a scheme this tool does not speak",
                        self.registry
                    ),
                };
                Ok(())
            }
            s => bail!("{url} is not a registry API: {}", error_line(s, b"")),
        }
    }

    fn no_creds_hint(&self) -> String {
        format!(
            "registry {} requires authentication and no credentials were found (set REGISTRY_USERNAME/REGISTRY_PASSWORD or log in with docker login)",
            self.registry
        )
    }

    /// The Authorization header for `scopes`, fetching a bearer token when needed.
    pub(super) fn authorization(
        &mut self,
        scopes: &[String],
        refresh: bool,
    ) -> anyhow::Result<Option<String>> {
        match &mut self.auth {
            AuthState::Anonymous => Ok(None),
            AuthState::Basic => match &self.creds {
                Some(c) => Ok(Some(c.basic_header())),
                None => bail!(self.no_creds_hint()),
            },
            AuthState::Bearer {
                realm,
                service,
                tokens,
            } => {
                let key = scopes.join(" ");
                if !refresh {
                    if let Some(t) = tokens.get(&key) {
                        return Ok(Some(format!("Bearer {t}")));
                    }
                }
                let mut url = url::Url::parse(realm).with_context(|| {
                    format!("registry {} names a malformed token realm", self.registry)
                })?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                }
                let mut req = Request::get(url.as_str());
                if let Some(c) = &self.creds {
                    req = req.header("authorization", c.basic_header());
                }
                let realm_host = url.host_str().unwrap_or("").to_owned();
                let mut resp = self.agent.run(req.body(())?).map_err(|e| {
                    anyhow!(
                        "cannot reach token server {realm_host}: {}",
                        short_error(&e)
                    )
                })?;
                let status = resp.status().as_u16();
                let body = read_body(&mut resp, 1 << 20)?;
                match status {
                    200 => {}
                    401 | 403 => match &self.creds {
                        Some(c) => bail!(
                            "authentication to {} failed for user {} (credentials from {}): {}",
                            self.registry,
                            c.username,
                            c.source,
                            error_line(status, &body)
                        ),
                        None => bail!(self.no_creds_hint()),
                    },
                    s => bail!(
                        "token server {realm_host} answered {}",
                        error_line(s, &body)
                    ),
                }
                let token = auth::parse_token_response(&body)
                    .ok_or_else(|| anyhow!("token server {realm_host} sent no token"))?;
                tokens.insert(key, token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{}", self.base, path_or_url)
        }
    }

    /// One request with a replayable body; re-authenticates once on 401. An idempotent one (GET, HEAD, PUT) is
    /// tried again, after 0.5 s then 1 s, when the registry answers 5xx or the connection breaks (reset, closed
    /// early), as go-containerregistry's `transport.retry` does; POST and PATCH never are (they open or feed an
    /// upload session).
    pub(super) fn send(
        &mut self,
        method: Method,
        path_or_url: &str,
        scopes: &[String],
        headers: &[(&str, String)],
        body: &[u8],
    ) -> anyhow::Result<Response<ureq::Body>> {
        let idempotent = matches!(method, Method::GET | Method::HEAD | Method::PUT);
        let mut pause = RETRY_FIRST_PAUSE;
        for retry in 0.. {
            let last = !idempotent || retry == RETRIES;
            let why = match self.send_once(method.clone(), path_or_url, scopes, headers, body) {
                Err(Attempt::Broken(e, why)) if !last => {
                    drop(e);
                    why
                }
                Err(Attempt::Broken(e, _)) | Err(Attempt::Failed(e)) => return Err(e),
                Ok(mut resp) if resp.status().is_server_error() && !last => {
                    let _ = read_body(&mut resp, 1 << 16);
                    format!("HTTP {}", resp.status().as_u16())
                }
                Ok(resp) => return Ok(resp),
            };
            eprintln!(
                "  (registry {} answered {method} {} with {why}; trying again in {:.1} s)",
                self.registry,
                strip_query(path_or_url),
                pause.as_secs_f64()
            );
            std::thread::sleep(pause);
            pause *= 2;
        }
        unreachable!("the last attempt returns")
    }

    fn send_once(
        &mut self,
        method: Method,
        path_or_url: &str,
        scopes: &[String],
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Response<ureq::Body>, Attempt> {
        let url = self.url(path_or_url);
        for attempt in 0..2 {
            let mut req = Request::builder().method(method.clone()).uri(&url);
            if let Some(a) = self
                .authorization(scopes, attempt > 0)
                .map_err(Attempt::Failed)?
            {
                req = req.header("authorization", a);
            }
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            let resp =
                if method == Method::PUT || method == Method::POST || method == Method::PATCH {
                    let req = req
                        .header("content-length", body.len().to_string())
                        .body(body)
                        .map_err(|e| Attempt::Failed(e.into()))?;
                    self.agent.run(req)
                } else {
                    let req = req.body(()).map_err(|e| Attempt::Failed(e.into()))?;
                    self.agent.run(req)
                }
                .map_err(|e| {
                    let line = anyhow!(
                        "registry {} failed during {method} {}: {}",
                        self.registry,
                        strip_query(path_or_url),
                        short_error(&e)
                    );
                    match broken_connection(&e) {
                        Some(why) => Attempt::Broken(line, why),
                        None => Attempt::Failed(line),
                    }
                })?;
            if resp.status() == http::StatusCode::UNAUTHORIZED && attempt == 0 {
                if let Some(c) = header(&resp, "www-authenticate").and_then(auth::parse_challenge) {
                    let switch = match (&self.auth, c) {
                        (AuthState::Anonymous, Challenge::Basic) => Some(AuthState::Basic),
                        (AuthState::Bearer { .. }, Challenge::Bearer { .. }) => None,
                        (_, Challenge::Bearer { realm, service, .. }) => Some(AuthState::Bearer {
                            realm,
                            service,
                            tokens: HashMap::new(),
                        }),
                        _ => None,
                    };
                    if let Some(s) = switch {
                        self.auth = s;
                    }
                    if !matches!(self.auth, AuthState::Basic) || self.creds.is_some() {
                        continue;
                    }
                }
            }
            return self.check_auth(resp).map_err(Attempt::Failed);
        }
        unreachable!("the loop returns on its second attempt")
    }

    pub(super) fn check_auth(
        &self,
        mut resp: Response<ureq::Body>,
    ) -> anyhow::Result<Response<ureq::Body>> {
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            let body = read_body(&mut resp, 1 << 16).unwrap_or_default();
            return Err(match (&self.creds, status) {
                (None, 401) => anyhow!(self.no_creds_hint()),
                (Some(c), 401) => anyhow!(
                    "authentication to {} failed for user {} (credentials from {}): {}",
                    self.registry,
                    c.username,
                    c.source,
                    error_line(status, &body)
                ),
                _ => anyhow!(
                    "registry {} denied access: {}",
                    self.registry,
                    error_line(status, &body)
                ),
            });
        }
        Ok(resp)
    }

    pub(super) fn unexpected(&self, what: &str, resp: &mut Response<ureq::Body>) -> anyhow::Error {
        let status = resp.status().as_u16();
        let body = read_body(resp, 1 << 16).unwrap_or_default();
        anyhow!(
            "registry {}: {what}: {}",
            self.registry,
            error_line(status, &body)
        )
    }

    pub(super) fn location(
        &self,
        resp: &Response<ureq::Body>,
        what: &str,
    ) -> anyhow::Result<String> {
        let loc = header(resp, "location")
            .ok_or_else(|| anyhow!("registry {}: {what}: no Location header", self.registry))?;
        let base = url::Url::parse(&format!("{}/", self.base))?;
        Ok(base.join(loc)?.to_string())
    }
}

fn strip_query(p: &str) -> &str {
    p.split('?').next().unwrap_or(p)
}

pub(super) struct Counting<'a> {
    pub(super) inner: &'a mut dyn Read,
    pub(super) count: u64,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_are_one_line() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            error_line(404, body),
            "HTTP 404 (MANIFEST_UNKNOWN: manifest unknown)"
        );
        assert_eq!(error_line(500, b"<html>"), "HTTP 500");
    }

    #[test]
    fn only_a_server_without_tls_is_tried_over_plain_http() {
        use std::io::{Error, ErrorKind};
        let io = |k: ErrorKind| ureq::Error::Io(Error::from(k));
        // A plain-HTTP server answers the TLS hello in plain text, or closes.
        assert!(plain_http_may_answer(&ureq::Error::Rustls(
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
        )));
        assert!(plain_http_may_answer(&io(ErrorKind::UnexpectedEof)));
        assert!(plain_http_may_answer(&io(ErrorKind::ConnectionReset)));
        // TLS that refused us, or no server at all: never a downgrade.
        assert!(!plain_http_may_answer(&ureq::Error::Rustls(
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        )));
        assert!(!plain_http_may_answer(&ureq::Error::Rustls(
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure)
        )));
        assert!(!plain_http_may_answer(&io(ErrorKind::ConnectionRefused)));
        assert!(!plain_http_may_answer(&ureq::Error::HostNotFound));
    }
}
