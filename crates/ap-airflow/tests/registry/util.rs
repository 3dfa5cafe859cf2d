//! Helpers: a real `docker-registry` on a free loopback port, tiny local images, the tool itself, a proxy that dies.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const RELEASE: &str = "2.10.5-1";
pub const IMM: &str = "2.10.5-1-bookworm";
pub const IMM_ON: &str = "2.10.5-1-bookworm-onbuild";
pub const FLOAT: &str = "2.10.5-bookworm";
pub const FLOAT_ON: &str = "2.10.5-bookworm-onbuild";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this test process and call.
pub fn unique(what: &str) -> String {
    format!(
        "{what}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Auth {
    pub user: String,
    pub password: String,
    /// The CA that signed the registry's certificate.
    pub ca: PathBuf,
}

/// Every manifest type: tags point at OCI indexes now, older publishes at Docker schema 2 manifests.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Debian's docker-registry with its own config and storage; killed on drop.
pub struct Registry {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub auth: Option<Auth>,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_with(false)
    }

    /// htpasswd (bcrypt) auth and TLS with a certificate from a throwaway CA.
    pub fn start_secure() -> Registry {
        Self::start_with(true)
    }

    fn start_with(secure: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path();
        let mut extra = String::new();
        let mut auth = None;
        if secure {
            let ext = d.join("ext.cnf");
            std::fs::write(
                &ext,
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
            )
            .unwrap();
            let p = |n: &str| d.join(n).to_string_lossy().into_owned();
            run_ok(
                Command::new("openssl")
                    .args([
                        "req",
                        "-x509",
                        "-newkey",
                        "rsa:2048",
                        "-nodes",
                        "-days",
                        "2",
                        "-subj",
                        "/CN=ap-airflow test CA",
                        "-addext",
                        "basicConstraints=critical,CA:TRUE",
                        "-addext",
                        "keyUsage=critical,keyCertSign",
                        "-keyout",
                        &p("ca.key"),
                        "-out",
                        &p("ca.pem"),
                    ])
                    .stderr(Stdio::null()),
            );
            run_ok(
                Command::new("openssl")
                    .args([
                        "req",
                        "-newkey",
                        "rsa:2048",
                        "-nodes",
                        "-subj",
                        "/CN=127.0.0.1",
                        "-keyout",
                        &p("key.pem"),
                        "-out",
                        &p("leaf.csr"),
                    ])
                    .stderr(Stdio::null()),
            );
            run_ok(
                Command::new("openssl")
                    .args([
                        "x509",
                        "-req",
                        "-in",
                        &p("leaf.csr"),
                        "-CA",
                        &p("ca.pem"),
                        "-CAkey",
                        &p("ca.key"),
                        "-CAcreateserial",
                        "-days",
                        "2",
                        "-extfile",
                        &p("ext.cnf"),
                        "-out",
                        &p("cert.pem"),
                    ])
                    .stderr(Stdio::null()),
            );
            let password = "s3cret-Pa55".to_string();
            let htpasswd = run_ok(Command::new("htpasswd").args(["-Bbn", "publisher", &password]));
            std::fs::write(d.join("htpasswd"), htpasswd).unwrap();
            extra = format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                p("htpasswd")
            );
            auth = Some(Auth {
                user: "publisher".into(),
                password,
                ca: d.join("ca.pem"),
            });
        }
        let tls = if secure {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("cert.pem").display(),
                d.join("key.pem").display()
            )
        } else {
            String::new()
        };
        let mut r = Registry {
            port,
            dir,
            child: None,
            auth,
        };
        // free_port() then bind is racy with parallel tests: on "address already in use", take another port.
        for _ in 0..5 {
            let d = r.dir.path();
            std::fs::write(
                d.join("config.yml"),
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n{extra}http:\n  addr: 127.0.0.1:{}\n  secret: test-secret\n{tls}",
                    d.join("data").display(),
                    r.port
                ),
            )
            .unwrap();
            match r.launch() {
                Ok(()) => return r,
                Err(log) if log.contains("address already in use") => r.port = free_port(),
                Err(log) => panic!("docker-registry exited: {log}"),
            }
        }
        panic!("no free port for docker-registry");
    }

    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed (apt-get install docker-registry)");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut answered = 0;
        // Listening, and still alive a moment later (not someone else's socket on a port we failed to bind).
        while answered < 3 {
            if child.try_wait().unwrap().is_some() {
                return Err(std::fs::read_to_string(&log_path).unwrap_or_default());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                answered += 1;
            }
            assert!(Instant::now() < deadline, "docker-registry did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Same storage, same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch().expect("docker-registry restarts on its port");
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// A plain ureq agent trusting the test CA: checks use neither the tool under test nor curl.
    fn agent(&self) -> ureq::Agent {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(a) = &self.auth {
            let pem = std::fs::read(&a.ca).unwrap();
            let cert = ureq::tls::Certificate::from_pem(&pem).unwrap();
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]));
        }
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .tls_config(tls.build())
            .build()
            .into()
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Option<String>, Vec<u8>) {
        use base64::Engine as _;
        let scheme = if self.auth.is_some() { "https" } else { "http" };
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{scheme}://{}{path}", self.host()))
            .header("accept", ACCEPT);
        if let Some(a) = &self.auth {
            let b = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", a.user, a.password));
            req = req.header("authorization", format!("Basic {b}"));
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let mut resp = self.agent().run(req.body(body.to_vec()).unwrap()).unwrap();
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let data = if method == "HEAD" {
            Vec::new()
        } else {
            resp.body_mut().read_to_vec().unwrap()
        };
        (resp.status().as_u16(), digest, data)
    }

    /// The digest a tag points at (None when absent).
    pub fn digest(&self, repo: &str, tag: &str) -> Option<String> {
        let (status, digest, _) =
            self.request("HEAD", &format!("/v2/{repo}/manifests/{tag}"), None, b"");
        (status == 200).then(|| digest.expect("registries send Docker-Content-Digest"))
    }

    pub fn manifest(&self, repo: &str, tag: &str) -> Vec<u8> {
        let (status, _, body) =
            self.request("GET", &format!("/v2/{repo}/manifests/{tag}"), None, b"");
        assert_eq!(status, 200, "GET {repo}:{tag}");
        body
    }

    /// Puts manifest bytes with the media type they declare.
    pub fn put_manifest(&self, repo: &str, tag: &str, bytes: &[u8]) {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let ct = v["mediaType"].as_str();
        let (status, _, _) = self.request("PUT", &format!("/v2/{repo}/manifests/{tag}"), ct, bytes);
        assert_eq!(status, 201, "PUT {repo}:{tag}");
    }

    /// Sorted tags of a repository (empty when absent).
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let (_, _, body) = self.request("GET", &format!("/v2/{repo}/tags/list?n=10000"), None, b"");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Every tag of a repository with its digest: the registry's whole visible state.
    pub fn state(&self, repo: &str) -> Vec<(String, Option<String>)> {
        self.tags(repo)
            .into_iter()
            .map(|t| {
                let d = self.digest(repo, &t);
                (t, d)
            })
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The two flavours of a release line as small local images (`docker import`), removed on drop.
pub struct Images {
    pub repo: String,
    tags: Vec<String>,
}

impl Images {
    /// `variant` changes the content, so two variants are two different builds of the same tags.
    pub fn new(build: u32, variant: &str) -> Images {
        Self::in_repo(
            &format!("ap-airflow-regtest/{}", unique("img")),
            build,
            variant,
        )
    }

    pub fn in_repo(repo: &str, build: u32, variant: &str) -> Images {
        let dir = tempfile::tempdir().unwrap();
        let mut tags = Vec::new();
        for suffix in ["", "-onbuild"] {
            let root = dir.path().join(format!("root{suffix}"));
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(root.join("etc/variant"), format!("{variant}{suffix}\n")).unwrap();
            // Some incompressible bytes, so a layer is clearly bigger than a manifest.
            // (xorshift64: gzip cannot shrink it.)
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ variant.len() as u64;
            let noise: Vec<u8> = (0..96 * 1024u32)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect();
            std::fs::write(root.join("etc/noise"), noise).unwrap();
            let tag = format!("2.10.5-{build}-bookworm{suffix}");
            let tar = dir.path().join(format!("root{suffix}.tar"));
            run_ok(
                Command::new("tar")
                    .arg("-C")
                    .arg(&root)
                    .arg("-cf")
                    .arg(&tar)
                    .arg("."),
            );
            run_ok(
                Command::new("docker")
                    .args(["import", "--change", "CMD [\"/bin/true\"]"])
                    .arg(&tar)
                    .arg(format!("{repo}:{tag}")),
            );
            tags.push(format!("{repo}:{tag}"));
        }
        Images {
            repo: repo.to_owned(),
            tags,
        }
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .arg("rmi")
            .args(&self.tags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A release file like the committed one, with another build number.
pub fn releases_with_build(dir: &Path, build: u32) -> PathBuf {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../releases.toml");
    let text = std::fs::read_to_string(committed).unwrap();
    assert!(text.contains("build = 1\n"));
    let p = dir.join(format!("releases-{build}.toml"));
    std::fs::write(
        &p,
        text.replace("build = 1\n", &format!("build = {build}\n")),
    )
    .unwrap();
    p
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Bytes of blob uploads, from the summary line.
    pub fn blob_bytes(&self) -> u64 {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("sent "))
            .unwrap_or_else(|| panic!("no summary in {}", self.stdout));
        line.split("(blobs ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `ap-airflow verify-published REFERENCE --key KEY`.
pub fn verify_published(reference: &str, key: &Path) -> Out {
    tool(
        &[
            "verify-published",
            reference,
            "--key",
            key.to_str().unwrap(),
        ],
        &[],
    )
}

/// The tool, with a clean credential environment unless `env` sets one.
pub fn tool(args: &[&str], env: &[(&str, &str)]) -> Out {
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ap-airflow"));
    cmd.args(args)
        .env_remove("REGISTRY_USERNAME")
        .env_remove("REGISTRY_PASSWORD")
        .env_remove("AP_AIRFLOW_RELEASES")
        .env("DOCKER_CONFIG", empty.path())
        // The small test images have no /bin/sh for the SBOM probe; the real-image test turns SBOMs back on.
        .env("AP_AIRFLOW_NO_SBOM", "true")
        .env_remove("AP_AIRFLOW_SIGN_KEY")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    Out {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// `publish RELEASE --from <images> --to <repo>... extra...`
pub fn publish(images: &Images, to: &[String], extra: &[&str], env: &[(&str, &str)]) -> Out {
    publish_line(&[], RELEASE, images, to, extra, env)
}

/// `publish` of build 2 of the line (`--releases` a copy of the release file whose build is 2) from `images`.
pub fn publish_build2(images: &Images, to: &[String], extra: &[&str], env: &[(&str, &str)]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let releases = releases_with_build(dir.path(), 2);
    let pre = ["--releases", releases.to_str().unwrap()];
    publish_line(&pre, "2.10.5-2", images, to, extra, env)
}

fn publish_line(
    pre: &[&str],
    line: &str,
    images: &Images,
    to: &[String],
    extra: &[&str],
    env: &[(&str, &str)],
) -> Out {
    let mut args = pre.to_vec();
    args.extend(["publish", line, "--from", &images.repo]);
    for t in to {
        args.push("--to");
        args.push(t);
    }
    args.extend_from_slice(extra);
    tool(&args, env)
}

/// A loopback TCP proxy that dies for good (drops every connection) once a client sends `trigger`.
pub struct CutProxy {
    pub port: u16,
    pub cut: Arc<AtomicBool>,
}

impl CutProxy {
    pub fn start(upstream: u16, trigger: &str) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let trigger = trigger.as_bytes().to_vec();
        let c = cut.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, trigger) = (c.clone(), trigger.clone());
                let (mut s_read, mut c_write) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let (mut client, mut server) = (client, server);
                    let mut window: Vec<u8> = Vec::new();
                    let mut buf = [0u8; 16384];
                    loop {
                        let n = match client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        window.extend_from_slice(&buf[..n]);
                        if window
                            .windows(trigger.len())
                            .any(|w| w == trigger.as_slice())
                        {
                            c2.store(true, Ordering::SeqCst);
                            break;
                        }
                        let keep = window.len().saturating_sub(trigger.len());
                        window.drain(..keep);
                        if server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                });
            }
        });
        CutProxy { port, cut }
    }
}

/// Runs a command, returning its stdout, or panics with its stderr.
pub fn must(program: &str, args: &[&str]) -> String {
    run_ok(Command::new(program).args(args).stdin(Stdio::null()))
}

/// `skopeo copy --all` of `repo:tag` from a plain-HTTP loopback registry into the OCI layout `dir` (skopeo checks
/// every blob's digest on the way); returns the digest the layout records for the tag (the index, unchanged).
pub fn skopeo_copy(reg: &Registry, repo: &str, tag: &str, dir: &Path) -> String {
    let dest = format!("oci:{}:{tag}", dir.display());
    must(
        "skopeo",
        &[
            "copy",
            "--all",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{}:{tag}", reg.repo(repo)),
            &dest,
        ],
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("{tag} not in the OCI layout: {index}"))
        .to_owned()
}

/// containerd's own client against Docker's containerd, when there is one: pulls `reference` (plain HTTP) into a
/// namespace of its own and removes it. Returns false when no containerd socket is there.
pub fn ctr_pull(reference: &str) -> bool {
    let sock = [
        "/run/docker/containerd/containerd.sock",
        "/run/containerd/containerd.sock",
    ]
    .into_iter()
    .find(|s| Path::new(s).exists());
    let Some(sock) = sock else { return false };
    let ns = unique("ap-airflow-regtest-");
    let base = ["--address", sock, "--namespace", &ns];
    let pull: Vec<&str> = base
        .iter()
        .copied()
        .chain(["images", "pull", "--plain-http", reference])
        .collect();
    let out = Command::new("ctr").args(&pull).output().expect("ctr runs");
    let rm: Vec<&str> = base
        .iter()
        .copied()
        .chain(["images", "rm", "--sync", reference])
        .collect();
    let _ = Command::new("ctr").args(&rm).output();
    let _ = Command::new("ctr")
        .args(base)
        .args(["namespaces", "rm", &ns])
        .output();
    assert!(
        out.status.success(),
        "ctr pull {reference}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// The engine's image ID of a reference.
pub fn image_id(reference: &str) -> String {
    must(
        "docker",
        &["image", "inspect", "--format", "{{.Id}}", reference],
    )
    .trim()
    .to_owned()
}

impl Registry {
    /// A blob's bytes.
    pub fn blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let (status, _, body) =
            self.request("GET", &format!("/v2/{repo}/blobs/{digest}"), None, b"");
        assert_eq!(status, 200, "GET blob {digest}");
        body
    }
}

/// A fresh PKCS#8 PEM ECDSA P-256 key pair made by openssl: (private, public) paths.
pub fn keypair(dir: &Path) -> (PathBuf, PathBuf) {
    let (key, public) = (dir.join("key.pem"), dir.join("pub.pem"));
    let k = key.to_str().unwrap();
    must(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            k,
        ],
    );
    must(
        "openssl",
        &[
            "pkey",
            "-in",
            k,
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    );
    (key, public)
}

/// Checks the cosign signature of what `tag` points at with openssl alone (no code of the tool): the payload names
/// the digest, and `openssl dgst -sha256 -verify` accepts the annotation's signature over the payload bytes.
pub fn openssl_verifies(reg: &Registry, repo: &str, tag: &str, public: &Path) -> bool {
    use base64::Engine as _;
    let digest = reg.digest(repo, tag).expect("tag");
    let sig_tag = format!("{}.sig", digest.replacen(':', "-", 1));
    let Some(_) = reg.digest(repo, &sig_tag) else {
        return false;
    };
    let m: serde_json::Value = serde_json::from_slice(&reg.manifest(repo, &sig_tag)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.dev.cosign.simplesigning.v1+json"
        );
        let payload = reg.blob(repo, l["digest"].as_str().unwrap());
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        if v["critical"]["image"]["docker-manifest-digest"] != digest.as_str()
            || v["critical"]["type"] != "cosign container image signature"
            || v["critical"]["identity"]["docker-reference"] != reg.repo(repo).as_str()
        {
            continue;
        }
        let sig = base64::engine::general_purpose::STANDARD
            .decode(
                l["annotations"]["dev.cosignproject.cosign/signature"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        std::fs::write(dir.path().join("payload"), &payload).unwrap();
        std::fs::write(dir.path().join("sig.der"), &sig).unwrap();
        let out = Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(public)
            .arg("-signature")
            .arg(dir.path().join("sig.der"))
            .arg(dir.path().join("payload"))
            .output()
            .unwrap();
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK") {
            return true;
        }
    }
    false
}

/// cosign itself (Debian's package, from trixie: scripts/setup-host) run against the loopback registry. Our
/// signatures are made offline (no transparency log, as `cosign sign --tlog-upload=false`), so verification skips
/// the log; a proxy on a closed loopback port keeps cosign from reaching anything but the registry.
pub fn cosign(args: &[&str]) -> Output {
    cosign_env(args, &[])
}

/// cosign with an empty `COSIGN_PASSWORD`: for the key pair it makes, then signs with.
pub fn cosign_with_password(args: &[&str]) -> Output {
    cosign_env(args, &[("COSIGN_PASSWORD", "")])
}

fn cosign_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new("cosign")
        .args(args)
        .envs(env.iter().copied())
        .env("HOME", dir.path())
        .env("TUF_ROOT", dir.path().join("tuf"))
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("https_proxy")
        .env_remove("http_proxy")
        .env_remove("no_proxy")
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("cosign (scripts/setup-host installs it): {e}"))
}

/// `cosign verify --key public` of `repo:tag`: true when cosign accepts a signature of what the tag points at.
pub fn cosign_verifies(reg: &Registry, repo: &str, tag: &str, public: &Path) -> bool {
    let reference = format!("{}:{tag}", reg.repo(repo));
    let out = cosign(&[
        "verify",
        "--key",
        public.to_str().unwrap(),
        "--insecure-ignore-tlog=true",
        "--allow-http-registry=true",
        "--output=json",
        &reference,
    ]);
    if !out.status.success() {
        eprintln!(
            "cosign verify {reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return false;
    }
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cosign's JSON");
    let digest = reg.digest(repo, tag).expect("tag");
    found.as_array().is_some_and(|sigs| {
        sigs.iter()
            .any(|s| s["critical"]["image"]["docker-manifest-digest"] == digest.as_str())
    })
}

impl Registry {
    /// Uploads a blob (monolithic: POST, then PUT with the digest); returns its digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        use sha2::Digest as _;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        let scheme = if self.auth.is_some() { "https" } else { "http" };
        let req = ureq::http::Request::post(format!(
            "{scheme}://{}/v2/{repo}/blobs/uploads/",
            self.host()
        ))
        .body(Vec::new())
        .unwrap();
        let resp = self.agent().run(req).unwrap();
        assert_eq!(resp.status().as_u16(), 202, "POST upload");
        let loc = resp.headers()["location"].to_str().unwrap().to_owned();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let url = if loc.starts_with("http") {
            format!("{loc}{sep}digest={digest}")
        } else {
            format!("{scheme}://{}{loc}{sep}digest={digest}", self.host())
        };
        let req = ureq::http::Request::put(url)
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .unwrap();
        let resp = self.agent().run(req).unwrap();
        assert_eq!(resp.status().as_u16(), 201, "PUT blob");
        digest
    }
}

/// What an older version of this tool pushed: a Docker schema 2 manifest with the image's uncompressed layers
/// (from `docker save`), put under `tags`.
pub fn push_uncompressed(reg: &Registry, repo: &str, image: &str, tags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("save.tar");
    must("docker", &["save", "-o", tar.to_str().unwrap(), image]);
    must(
        "tar",
        &[
            "-C",
            dir.path().to_str().unwrap(),
            "-xf",
            tar.to_str().unwrap(),
        ],
    );
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let config = std::fs::read(dir.path().join(saved[0]["Config"].as_str().unwrap())).unwrap();
    let config_digest = reg.push_blob(repo, &config);
    let mut layers = Vec::new();
    for l in saved[0]["Layers"].as_array().unwrap() {
        let bytes = std::fs::read(dir.path().join(l.as_str().unwrap())).unwrap();
        let d = reg.push_blob(repo, &bytes);
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
            "size": bytes.len(),
            "digest": d,
        }));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": config.len(),
            "digest": config_digest,
        },
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    for t in tags {
        reg.put_manifest(repo, t, &bytes);
    }
}

/// The engine's architecture as Docker names it: the one whose local images keep the plain tags.
pub fn native_arch() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    }
}

/// The local name of a tag's image of `arch` (as `ap-airflow build --platform` names it): the plain tag for the
/// native architecture, `<tag>-<arch>` for another.
pub fn local_tag(tag: &str, arch: &str) -> String {
    if arch == native_arch() {
        tag.to_owned()
    } else {
        format!("{tag}-{arch}")
    }
}

/// A tar archive (in memory) of the given files.
fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut b = tar::Builder::new(&mut out);
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, &data[..]).unwrap();
        }
        b.finish().unwrap();
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Loads an image of `arch` (its config says so: no emulation, nothing in it runs) made of `layers` into the engine
/// as `reference`, with `docker load` of a hand-made `docker save` archive.
pub fn load_image(reference: &str, arch: &str, layers: &[Vec<u8>]) {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let mut config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": "2026-11-30T00:00:00Z",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    if arch == "arm64" {
        config["variant"] = "v8".into(); // as BuildKit and the official images write it
    }
    let config = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", sha256_hex(&config));
    let mut files = vec![(config_name.as_str(), config.clone())];
    let names: Vec<String> = (0..layers.len())
        .map(|i| format!("l{i}/layer.tar"))
        .collect();
    for (name, layer) in names.iter().zip(layers) {
        files.push((name.as_str(), layer.clone()));
    }
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [reference],
        "Layers": names,
    }]))
    .unwrap();
    files.push(("manifest.json", manifest));
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    std::fs::write(&archive, tar_of(&files)).unwrap();
    must(
        "docker",
        &["load", "--quiet", "-i", archive.to_str().unwrap()],
    );
}

/// Incompressible bytes (xorshift64), different per seed.
pub fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64
        ^ u64::from_str_radix(&sha256_hex(seed.as_bytes())[..16], 16).unwrap();
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

impl Images {
    /// Both flavours of build `build` for each of `arches`, loaded under the local names `build --platform` gives
    /// them. Every image has two layers: one shared by all platforms and flavours (so sharing is visible in the
    /// registry), then one of its own.
    pub fn platforms(build: u32, variant: &str, arches: &[&str]) -> Images {
        let repo = format!("ap-airflow-regtest/{}", unique("multi"));
        let shared = tar_of(&[("etc/shared", noise(&format!("{variant}-shared"), 64 * 1024))]);
        let mut tags = Vec::new();
        for arch in arches {
            for suffix in ["", "-onbuild"] {
                let own = tar_of(&[
                    ("etc/variant", format!("{variant}{suffix}\n").into_bytes()),
                    ("etc/arch", format!("{arch}\n").into_bytes()),
                    (
                        "etc/noise",
                        noise(&format!("{variant}{suffix}{arch}"), 96 * 1024),
                    ),
                ]);
                let tag = local_tag(&format!("2.10.5-{build}-bookworm{suffix}"), arch);
                let reference = format!("{repo}:{tag}");
                load_image(&reference, arch, &[shared.clone(), own]);
                tags.push(reference);
            }
        }
        Images { repo, tags }
    }

    /// Both flavours of build 1 with a layer bigger than what is kept in memory (6 MiB, incompressible): one that
    /// streams to the registry while it compresses.
    pub fn big(variant: &str) -> Images {
        let repo = format!("ap-airflow-regtest/{}", unique("big"));
        let big = tar_of(&[("opt/big", noise(&format!("{variant}-big"), 6 << 20))]);
        let mut tags = Vec::new();
        for suffix in ["", "-onbuild"] {
            let own = tar_of(&[("etc/variant", format!("{variant}{suffix}\n").into_bytes())]);
            let reference = format!("{repo}:2.10.5-1-bookworm{suffix}");
            load_image(&reference, native_arch(), &[big.clone(), own]);
            tags.push(reference);
        }
        Images { repo, tags }
    }

    /// Adds local images to this repository (removed with it).
    pub fn adopt(&mut self, reference: String) {
        self.tags.push(reference);
    }
}

/// What skopeo resolves `repo:tag` (plain HTTP) to for linux/`arch` (`--override-arch`): the architecture it reports,
/// the layer digests, and the digest of the raw config blob (the image ID).
pub fn skopeo_resolve(
    reg: &Registry,
    repo: &str,
    tag: &str,
    arch: &str,
) -> (String, Vec<String>, String) {
    let reference = format!("docker://{}:{tag}", reg.repo(repo));
    let base = [
        "--override-os",
        "linux",
        "--override-arch",
        arch,
        "inspect",
        "--tls-verify=false",
    ];
    let mut args = base.to_vec();
    args.push(&reference);
    let v: serde_json::Value = serde_json::from_str(&must("skopeo", &args)).unwrap();
    let mut args = base.to_vec();
    args.extend(["--config", "--raw", &reference]);
    let config = std::process::Command::new("skopeo")
        .args(&args)
        .output()
        .unwrap();
    assert!(config.status.success(), "skopeo {args:?}");
    (
        v["Architecture"].as_str().unwrap().to_owned(),
        v["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect(),
        format!("sha256:{}", sha256_hex(&config.stdout)),
    )
}
