//! A thin blocking client over the distribution API (`/v2/`), on ureq.
//!
//! Chosen over `oci-client` because that one needs tokio; everything here is sequential request/response.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use crate::digest::sha256_digest;
use anyhow::{anyhow, bail, Context as _};
use ureq::http::{self, Method, Request, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::auth::{self, Challenge, Credentials};
use super::reference::Repository;

/// Every manifest kind a tag may point at; copies keep the exact bytes and type, so digests stay equal.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

const MAX_MANIFEST: u64 = 4 << 20;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra CA certificates (PEM) trusted on top of the system bundle.
    pub ca_certs: Vec<PathBuf>,
    /// Plain HTTP for every registry, not only loopback ones.
    pub insecure_http: bool,
    /// Tag-list page size (`n`); None lets the registry choose.
    pub page_size: Option<u32>,
}

/// A manifest as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
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

/// What a mount attempt did.
pub enum Mount {
    Mounted,
    /// The registry did not mount and opened an upload session instead.
    Upload(String),
}

pub struct Client {
    agent: ureq::Agent,
    /// `https://host:port` or `http://host:port`.
    base: String,
    pub registry: String,
    creds: Option<Credentials>,
    auth: AuthState,
    page_size: Option<u32>,
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

fn read_body(resp: &mut Response<ureq::Body>, limit: u64) -> anyhow::Result<Vec<u8>> {
    Ok(resp.body_mut().with_config().limit(limit).read_to_vec()?)
}

fn header<'a>(resp: &'a Response<ureq::Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `<url>; rel="next"` from a Link header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let url = url.trim();
        (is_next && url.starts_with('<') && url.ends_with('>'))
            .then(|| url[1..url.len() - 1].to_owned())
    })
}

fn scope_of(repo: &str, access: Access) -> String {
    match access {
        Access::Pull => format!("repository:{repo}:pull"),
        Access::Push => format!("repository:{repo}:pull,push"),
    }
}

fn short_error(e: &ureq::Error) -> String {
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
        let creds = auth::lookup(&repo.registry).map_err(|e| anyhow!(e))?;
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
                Err(e) => {
                    let msg = e.to_string();
                    let tls_refused_us = msg.contains("certificate") || msg.contains("Certificate");
                    first_err.get_or_insert(e);
                    if tls_refused_us || msg.contains("Connection refused") {
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

    fn ping(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/v2/", self.base);
        let req = Request::get(&url).body(())?;
        let mut resp = self.agent.run(req).map_err(|e| {
            anyhow!(
                "cannot reach registry {} ({url}): {}",
                self.registry,
                short_error(&e)
            )
        })?;
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
    fn authorization(
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

    /// One request with a replayable body; re-authenticates once on 401.
    fn send(
        &mut self,
        method: Method,
        path_or_url: &str,
        scopes: &[String],
        headers: &[(&str, String)],
        body: &[u8],
    ) -> anyhow::Result<Response<ureq::Body>> {
        let url = self.url(path_or_url);
        for attempt in 0..2 {
            let mut req = Request::builder().method(method.clone()).uri(&url);
            if let Some(a) = self.authorization(scopes, attempt > 0)? {
                req = req.header("authorization", a);
            }
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            let resp =
                if method == Method::PUT || method == Method::POST || method == Method::PATCH {
                    let req = req
                        .header("content-length", body.len().to_string())
                        .body(body)?;
                    self.agent.run(req)
                } else {
                    self.agent.run(req.body(())?)
                }
                .map_err(|e| {
                    anyhow!(
                        "registry {} failed during {method} {}: {}",
                        self.registry,
                        strip_query(path_or_url),
                        short_error(&e)
                    )
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
            return self.check_auth(resp);
        }
        unreachable!("the loop returns on its second attempt")
    }

    fn check_auth(&self, mut resp: Response<ureq::Body>) -> anyhow::Result<Response<ureq::Body>> {
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

    fn unexpected(&self, what: &str, resp: &mut Response<ureq::Body>) -> anyhow::Error {
        let status = resp.status().as_u16();
        let body = read_body(resp, 1 << 16).unwrap_or_default();
        anyhow!(
            "registry {}: {what}: {}",
            self.registry,
            error_line(status, &body)
        )
    }

    pub fn blob_exists(&mut self, repo: &str, digest: &str) -> anyhow::Result<bool> {
        let scopes = [scope_of(repo, Access::Pull)];
        let mut resp = self.send(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{digest}"),
            &scopes,
            &[],
            &[],
        )?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.unexpected(&format!("checking blob {digest} in {repo}"), &mut resp)),
        }
    }

    fn location(&self, resp: &Response<ureq::Body>, what: &str) -> anyhow::Result<String> {
        let loc = header(resp, "location")
            .ok_or_else(|| anyhow!("registry {}: {what}: no Location header", self.registry))?;
        let base = url::Url::parse(&format!("{}/", self.base))?;
        Ok(base.join(loc)?.to_string())
    }

    /// Cross-repository mount (`?mount=&from=`): the registry links a blob it already holds, no bytes sent.
    pub fn mount_blob(&mut self, repo: &str, digest: &str, from: &str) -> anyhow::Result<Mount> {
        let scopes = [scope_of(repo, Access::Push), scope_of(from, Access::Pull)];
        let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
        let mut resp = self.send(Method::POST, &path, &scopes, &[], &[])?;
        match resp.status().as_u16() {
            201 => Ok(Mount::Mounted),
            202 => Ok(Mount::Upload(self.location(&resp, "mount")?)),
            _ => Err(self.unexpected(
                &format!("mounting {digest} from {from} into {repo}"),
                &mut resp,
            )),
        }
    }

    pub fn start_upload(&mut self, repo: &str) -> anyhow::Result<String> {
        let scopes = [scope_of(repo, Access::Push)];
        let mut resp = self.send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &scopes,
            &[],
            &[],
        )?;
        match resp.status().as_u16() {
            202 => self.location(&resp, "starting an upload"),
            _ => Err(self.unexpected(&format!("starting an upload to {repo}"), &mut resp)),
        }
    }

    /// Monolithic upload into a session opened by `start_upload` (one PUT with `?digest=`).
    pub fn finish_upload(
        &mut self,
        repo: &str,
        location: &str,
        digest: &str,
        size: u64,
        data: &mut dyn Read,
    ) -> anyhow::Result<()> {
        let mut url = url::Url::parse(location)?;
        url.query_pairs_mut().append_pair("digest", digest);
        let scopes = [scope_of(repo, Access::Push)];
        let auth = self.authorization(&scopes, false)?;
        let mut counted = Counting {
            inner: data,
            count: 0,
        };
        let mut req = Request::put(url.as_str())
            .header("content-type", "application/octet-stream")
            .header("content-length", size.to_string());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let result = self
            .agent
            .run(req.body(ureq::SendBody::from_reader(&mut counted))?);
        self.blob_bytes_sent += counted.count;
        let mut resp = result.map_err(|e| {
            anyhow!(
                "registry {} failed while uploading blob {digest} to {repo}: {}",
                self.registry,
                short_error(&e)
            )
        })?;
        match resp.status().as_u16() {
            201 => Ok(()),
            401 | 403 => self.check_auth(resp).map(|_| ()),
            _ => Err(self.unexpected(&format!("uploading blob {digest} to {repo}"), &mut resp)),
        }
    }

    /// Streams bytes of unknown length into an upload session (one chunked `PATCH`, as `docker push` sends a layer
    /// it compresses on the fly); returns the session's next location, for `close_upload`.
    pub fn patch_upload(
        &mut self,
        repo: &str,
        location: &str,
        data: &mut dyn Read,
    ) -> anyhow::Result<String> {
        let scopes = [scope_of(repo, Access::Push)];
        let auth = self.authorization(&scopes, false)?;
        let mut counted = Counting {
            inner: data,
            count: 0,
        };
        let mut req = Request::patch(location).header("content-type", "application/octet-stream");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let result = self
            .agent
            .run(req.body(ureq::SendBody::from_reader(&mut counted))?);
        self.blob_bytes_sent += counted.count;
        let mut resp = result.map_err(|e| {
            anyhow!(
                "registry {} failed while streaming a layer to {repo}: {}",
                self.registry,
                short_error(&e)
            )
        })?;
        match resp.status().as_u16() {
            202 => self.location(&resp, "streaming a layer"),
            401 | 403 => self.check_auth(resp).map(|_| String::new()),
            _ => Err(self.unexpected(&format!("streaming a layer to {repo}"), &mut resp)),
        }
    }

    /// Ends an upload session whose bytes were all sent (`PUT ?digest=` with no body).
    pub fn close_upload(&mut self, repo: &str, location: &str, digest: &str) -> anyhow::Result<()> {
        let mut url = url::Url::parse(location)?;
        url.query_pairs_mut().append_pair("digest", digest);
        let scopes = [scope_of(repo, Access::Push)];
        let mut resp = self.send(Method::PUT, url.as_str(), &scopes, &[], &[])?;
        match resp.status().as_u16() {
            201 => Ok(()),
            _ => Err(self.unexpected(
                &format!("closing the upload of {digest} to {repo}"),
                &mut resp,
            )),
        }
    }

    /// A manifest by tag or digest, byte-for-byte, or None when absent.
    pub fn get_manifest(
        &mut self,
        repo: &str,
        reference: &str,
    ) -> anyhow::Result<Option<Manifest>> {
        let scopes = [scope_of(repo, Access::Pull)];
        let accept = [("accept", MANIFEST_TYPES.join(", "))];
        let mut resp = self.send(
            Method::GET,
            &format!("/v2/{repo}/manifests/{reference}"),
            &scopes,
            &accept,
            &[],
        )?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => {
                return Err(
                    self.unexpected(&format!("reading manifest {repo}:{reference}"), &mut resp)
                )
            }
        }
        let media_type = header(&resp, "content-type")
            .unwrap_or(MANIFEST_TYPES[0])
            .to_owned();
        let bytes = read_body(&mut resp, MAX_MANIFEST)?;
        let digest = sha256_digest(&bytes);
        if let Some(claimed) = header(&resp, "docker-content-digest") {
            if claimed != digest {
                bail!("registry {}: manifest {repo}:{reference} claims {claimed} but hashes to {digest}", self.registry);
            }
        }
        Ok(Some(Manifest {
            bytes,
            media_type,
            digest,
        }))
    }

    /// A blob's bytes (at most `limit`), checked against its digest; None when absent.
    pub fn get_blob(
        &mut self,
        repo: &str,
        digest: &str,
        limit: u64,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let scopes = [scope_of(repo, Access::Pull)];
        let mut resp = self.send(
            Method::GET,
            &format!("/v2/{repo}/blobs/{digest}"),
            &scopes,
            &[],
            &[],
        )?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => {
                return Err(self.unexpected(&format!("reading blob {digest} of {repo}"), &mut resp))
            }
        }
        let bytes = read_body(&mut resp, limit)?;
        if sha256_digest(&bytes) != digest {
            bail!(
                "registry {}: blob {digest} of {repo} does not hash to its digest",
                self.registry
            );
        }
        Ok(Some(bytes))
    }

    /// The digest a tag points at, or None when the tag is absent.
    pub fn manifest_digest(
        &mut self,
        repo: &str,
        reference: &str,
    ) -> anyhow::Result<Option<String>> {
        let scopes = [scope_of(repo, Access::Pull)];
        let accept = [("accept", MANIFEST_TYPES.join(", "))];
        let mut resp = self.send(
            Method::HEAD,
            &format!("/v2/{repo}/manifests/{reference}"),
            &scopes,
            &accept,
            &[],
        )?;
        match resp.status().as_u16() {
            200 => match header(&resp, "docker-content-digest") {
                Some(d) => Ok(Some(d.to_owned())),
                None => Ok(self.get_manifest(repo, reference)?.map(|m| m.digest)),
            },
            404 => Ok(None),
            _ => Err(self.unexpected(&format!("checking manifest {repo}:{reference}"), &mut resp)),
        }
    }

    /// Puts manifest bytes under a tag, unchanged, with their own media type.
    pub fn put_manifest(
        &mut self,
        repo: &str,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> anyhow::Result<String> {
        let scopes = [scope_of(repo, Access::Push)];
        let headers = [("content-type", media_type.to_owned())];
        let result = self.send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{tag}"),
            &scopes,
            &headers,
            bytes,
        );
        self.manifest_bytes_sent += bytes.len() as u64;
        let mut resp = result?;
        self.last_oci_subject = header(&resp, "oci-subject").map(String::from);
        match resp.status().as_u16() {
            201 => {
                let want = sha256_digest(bytes);
                match header(&resp, "docker-content-digest") {
                    Some(d) if d != want => bail!(
                        "registry {} stored {repo}:{tag} as {d}, expected {want}",
                        self.registry
                    ),
                    _ => Ok(want),
                }
            }
            _ => Err(self.unexpected(&format!("putting manifest {repo}:{tag}"), &mut resp)),
        }
    }

    /// Every tag of a repository (empty when the repository does not exist), following `Link` pagination.
    pub fn list_tags(&mut self, repo: &str) -> anyhow::Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            tags: Option<Vec<String>>,
        }
        let scopes = [scope_of(repo, Access::Pull)];
        let mut next = Some(match self.page_size {
            Some(n) => format!("/v2/{repo}/tags/list?n={n}"),
            None => format!("/v2/{repo}/tags/list"),
        });
        let mut tags = Vec::new();
        let mut pages = 0;
        while let Some(path) = next.take() {
            pages += 1;
            if pages > 100_000 {
                bail!(
                    "registry {}: tag list of {repo} does not end",
                    self.registry
                );
            }
            let mut resp = self.send(Method::GET, &path, &scopes, &[], &[])?;
            match resp.status().as_u16() {
                200 => {}
                404 if tags.is_empty() => return Ok(tags),
                _ => return Err(self.unexpected(&format!("listing tags of {repo}"), &mut resp)),
            }
            next = header(&resp, "link").and_then(next_link);
            let body = read_body(&mut resp, 64 << 20)?;
            let page: Page = serde_json::from_slice(&body).with_context(|| {
                format!("registry {}: malformed tag list of {repo}", self.registry)
            })?;
            tags.extend(page.tags.unwrap_or_default());
        }
        Ok(tags)
    }
}

fn strip_query(p: &str) -> &str {
    p.split('?').next().unwrap_or(p)
}

struct Counting<'a> {
    inner: &'a mut dyn Read,
    count: u64,
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
    fn link_pagination() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=x&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=x&n=2")
        );
        assert_eq!(
            next_link(r#"<https://r/v2/a/tags/list?n=5&last=b>; rel=next"#).as_deref(),
            Some("https://r/v2/a/tags/list?n=5&last=b")
        );
        assert_eq!(
            next_link(r#"</p>; rel="prev", </n>; rel="next""#).as_deref(),
            Some("/n")
        );
        assert_eq!(next_link(r#"</p>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

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
    fn digests() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
