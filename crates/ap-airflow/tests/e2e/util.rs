//! Helpers of the image end-to-end tests: the images under test, one-off and long-running
//! containers (removed on drop, their logs printed when a test fails), PostgreSQL and Redis on free loopback ports,
//! polling with deadlines, HTTP probes and benchmark metrics.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ap_airflow::release::{Flavour, ReleaseFile};
use test_support::{as_postgres, initdb};
pub use test_support::{free_port, poll, Redis};

/// Progress of a long test, written past libtest's capture so `scripts/test` shows where a slow run is.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::util::progress(&format!($($arg)*))
    };
}
pub(crate) use say;

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

pub fn progress(msg: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "  [e2e {:6.1}s] {msg}",
        start().elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The images under test

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the line under test is Airflow 3 (api-server, dag-processor, Task SDK) rather than 2.
pub fn airflow3() -> bool {
    images().airflow_version.starts_with("3.")
}

/// The default release line's images (or `AP_AIRFLOW_E2E_RELEASE` / `AP_AIRFLOW_E2E_REPOSITORY`).
pub struct Images {
    pub base: String,
    pub onbuild: String,
    /// `2.10.5`
    pub airflow_version: String,
    /// `2.10.5-1`
    pub ac_version: String,
}

/// The images, checked once: the engine answers and both flavours exist. Anything missing is a failure.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let path = workspace_root().join("releases.toml");
        let file = ReleaseFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let wanted = std::env::var("AP_AIRFLOW_E2E_RELEASE").ok();
        let release = file
            .get(wanted.as_deref())
            .unwrap_or_else(|e| panic!("{e}"));
        let repo = std::env::var("AP_AIRFLOW_E2E_REPOSITORY")
            .unwrap_or_else(|_| file.defaults.repository.clone());
        let images = Images {
            base: format!("{repo}:{}", release.immutable_tag(Flavour::Base)),
            onbuild: format!("{repo}:{}", release.immutable_tag(Flavour::Onbuild)),
            airflow_version: release.airflow.clone(),
            ac_version: release.name(),
        };
        let v = docker(&["version", "--format", "{{.Server.Version}}"]);
        assert!(
            v.status.success(),
            "the Docker engine is not reachable (start it with scripts/dockerd start): {}",
            text(&v.stderr).trim()
        );
        for image in [&images.base, &images.onbuild] {
            let out = docker(&["image", "inspect", "--format", "{{.Id}}", image]);
            assert!(
                out.status.success(),
                "image {image} is missing: build it first with `cargo run --release -p ap-airflow -- build {}`",
                release.name()
            );
        }
        images
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Commands

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("cannot run the docker client")
}

/// The combined stdout and stderr of a finished command.
pub fn both(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// Runs a command with a deadline; on timeout the client is killed and the output so far returned with `None` status.
pub fn run_with_timeout(
    cmd: &mut Command,
    timeout: Duration,
) -> (Option<ExitStatus>, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(s) => break Some(s),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    (
        status,
        text(&t_out.join().unwrap()),
        text(&t_err.join().unwrap()),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Containers

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique_name(role: &str) -> String {
    let role: String = role
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!(
        "ap-e2e-{}-{}-{role}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A named container on the host network, removed (with its volumes) when dropped. When the test is failing,
/// its last 40 log lines are printed first.
pub struct Container {
    pub name: String,
}

/// What a one-off container printed and how it ended.
pub struct RunOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    pub fn both(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    /// Panics with the output unless the command exited 0.
    pub fn expect_ok(self, what: &str) -> Self {
        assert!(
            self.ok(),
            "{what}: exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            tail(&self.stdout, 40),
            tail(&self.stderr, 40)
        );
        self
    }

    /// The `key=value` lines of stdout (a probe script's facts).
    pub fn facts(&self) -> std::collections::BTreeMap<String, String> {
        self.stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

impl Container {
    /// `docker run -d` of a long-running component.
    pub fn start(role: &str, image: &str, opts: &[&str], cmd: &[&str]) -> Container {
        let c = Container {
            name: unique_name(role),
        };
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &c.name,
            "--network",
            "host",
            "--label",
            "ap-airflow-e2e=1",
        ];
        args.extend_from_slice(opts);
        args.push(image);
        args.extend_from_slice(cmd);
        let out = docker(&args);
        assert!(
            out.status.success(),
            "docker run {role} failed: {}",
            both(&out)
        );
        c
    }

    /// A one-off container run to completion (with a deadline), then removed.
    pub fn run(
        role: &str,
        image: &str,
        opts: &[&str],
        cmd: &[&str],
        timeout: Duration,
    ) -> RunOutput {
        let c = Container {
            name: unique_name(role),
        };
        let mut command = Command::new("docker");
        command.args([
            "run",
            "--name",
            &c.name,
            "--network",
            "host",
            "--label",
            "ap-airflow-e2e=1",
        ]);
        command.args(opts).arg(image).args(cmd);
        let (status, stdout, stderr) = run_with_timeout(&mut command, timeout);
        let code = status.and_then(|s| s.code());
        if status.is_none() {
            panic!(
                "{role}: `{}` did not finish within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
                cmd.join(" "),
                tail(&stdout, 40),
                tail(&stderr, 40)
            );
        }
        RunOutput {
            code,
            stdout,
            stderr,
        }
    }

    pub fn exec(&self, args: &[&str], timeout: Duration) -> RunOutput {
        let mut command = Command::new("docker");
        command.args(["exec", &self.name]).args(args);
        let (status, stdout, stderr) = run_with_timeout(&mut command, timeout);
        RunOutput {
            code: status.and_then(|s| s.code()),
            stdout,
            stderr,
        }
    }

    pub fn logs(&self) -> String {
        both(&docker(&["logs", &self.name]))
    }

    pub fn state(&self) -> String {
        text(
            &docker(&[
                "inspect",
                "--format",
                "{{.State.Status}} exit={{.State.ExitCode}}",
                &self.name,
            ])
            .stdout,
        )
        .trim()
        .to_owned()
    }

    pub fn running(&self) -> bool {
        self.state().starts_with("running")
    }

    /// `docker stop -t grace`: how long it took and the exit code the container ended with.
    pub fn stop(&self, grace: u32) -> (Duration, i64) {
        let t0 = Instant::now();
        let g = grace.to_string();
        let out = docker(&["stop", "-t", &g, &self.name]);
        let took = t0.elapsed();
        assert!(
            out.status.success(),
            "docker stop {}: {}",
            self.name,
            both(&out)
        );
        let code =
            text(&docker(&["inspect", "--format", "{{.State.ExitCode}}", &self.name]).stdout)
                .trim()
                .parse()
                .unwrap_or(-1);
        (took, code)
    }

    /// Panics with the container's recent log unless `ok`.
    pub fn check(&self, ok: bool, what: &str) {
        if !ok {
            panic!(
                "{what}\n--- {} ({}), last 40 log lines\n{}",
                self.name,
                self.state(),
                tail(&self.logs(), 40)
            );
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.logs();
            if !logs.trim().is_empty() {
                let _ = writeln!(
                    std::io::stderr(),
                    "--- {} ({}), last 40 log lines\n{}",
                    self.name,
                    self.state(),
                    tail(&logs, 40)
                );
            }
        }
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An image tag removed (untagged) when dropped.
pub struct ImageGuard(pub String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Ports, polling, HTTP

/// GET on loopback: status and body, or `None` when nothing answers yet.
fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn http_reply(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Option<(u16, String)> {
    let mut resp = resp.ok()?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Some((status, body))
}

pub fn http_get(url: &str, basic_auth: Option<(&str, &str)>) -> Option<(u16, String)> {
    use base64::Engine;
    let mut req = http_agent().get(url);
    if let Some((u, p)) = basic_auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req = req.header("Authorization", &format!("Basic {token}"));
    }
    http_reply(req.call())
}

/// GET with an `Authorization: Bearer` token (Airflow 3's REST API).
pub fn http_get_bearer(url: &str, token: &str) -> Option<(u16, String)> {
    http_reply(
        http_agent()
            .get(url)
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
    )
}

/// POST of a JSON body.
pub fn http_post_json(url: &str, body: &serde_json::Value) -> Option<(u16, String)> {
    http_reply(http_agent().post(url).send_json(body))
}

/// Records a benchmark figure: printed, and appended as `key value` to `$AP_AIRFLOW_E2E_METRICS` when set.
pub fn metric(key: &str, value: f64) {
    say!("metric {key} = {value:.2}");
    if let Ok(path) = std::env::var("AP_AIRFLOW_E2E_METRICS") {
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{key} {value:.3}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// PostgreSQL and Redis on loopback

/// A throw-away PostgreSQL cluster on 127.0.0.1 (password auth over TCP), stopped and deleted on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Postgres {
    pub fn start() -> Postgres {
        let (dir, data) = initdb(&[
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
        ]);
        // A port can be taken between choosing and binding it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let opts = format!(
                "-p {port} -h 127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                 -c max_connections=300",
                dir.path().display()
            );
            let out = as_postgres("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.path().join("postgres.log"))
                .args(["-w", "-t", "60", "-o", &opts, "start"])
                .output()
                .expect("run pg_ctl");
            if out.status.success() {
                return Postgres { dir, port };
            }
        }
        let log = fs::read_to_string(dir.path().join("postgres.log")).unwrap_or_default();
        panic!("PostgreSQL did not start:\n{}", tail(&log, 20));
    }

    /// Runs SQL as the superuser over the Unix socket; returns unaligned, tuples-only output.
    pub fn sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = as_postgres("psql")
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql])
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(text(&out.stdout).trim().to_owned())
        } else {
            Err(text(&out.stderr).trim().to_owned())
        }
    }

    /// Creates a login role and a database it owns. The password must not contain `'`.
    pub fn create_db(&self, db: &str, user: &str, password: &str) {
        assert!(!password.contains('\''));
        self.sql(
            "postgres",
            &format!("CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'"),
        )
        .expect("create role");
        self.sql(
            "postgres",
            &format!("CREATE DATABASE \"{db}\" OWNER \"{user}\""),
        )
        .expect("create database");
    }

    /// A SQLAlchemy URL for 127.0.0.1 with the user and password percent-encoded.
    pub fn url(&self, scheme: &str, db: &str, user: &str, password: &str) -> String {
        format!(
            "{scheme}://{}:{}@127.0.0.1:{}/{db}",
            percent(user),
            percent(password),
            self.port
        )
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "--- postgres log\n{}",
                tail(&self.log(), 20)
            );
        }
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// RFC 3986 userinfo encoding: everything but unreserved characters.
pub fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Projects built FROM the onbuild image

/// A copy of `examples/project` in a temp dir, to be edited and built.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn example() -> Project {
        let dir = tempfile::Builder::new()
            .prefix("ap-e2e-project-")
            .tempdir()
            .expect("tempdir");
        copy_tree(&workspace_root().join("examples/project"), dir.path());
        Project { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// `docker build` with the legacy builder (it runs ONBUILD) FROM the onbuild image under test.
    pub fn build(&self, tag: &str, timeout: Duration) -> Build {
        self.build_from(&images().onbuild, None, tag, timeout)
    }

    /// `docker build` FROM `onbuild`, for `platform` (`linux/arm64`: under emulation) when given.
    pub fn build_from(
        &self,
        onbuild: &str,
        platform: Option<&str>,
        tag: &str,
        timeout: Duration,
    ) -> Build {
        let base = format!("BASE_IMAGE={onbuild}");
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_BUILDKIT", "0")
            .args([
                "build",
                "--network",
                "host",
                "--force-rm",
                "--build-arg",
                &base,
            ])
            .args(platform.map(|p| ["--platform", p]).into_iter().flatten())
            .args(ca_build_args())
            .args(["-t", tag])
            .arg(self.dir.path());
        let t0 = Instant::now();
        let (status, stdout, stderr) = run_with_timeout(&mut cmd, timeout);
        let took = t0.elapsed();
        assert!(
            status.is_some(),
            "docker build {tag} did not finish within {timeout:?}\n{}",
            tail(&stdout, 40)
        );
        Build {
            ok: status.is_some_and(|s| s.success()),
            log: format!("{stdout}{stderr}"),
            took,
        }
    }
}

/// The onbuild pip step trusts the PEM text of the `PIP_CA_PEM` build arg (docs/images.md, "CA certificates", for
/// onbuild builds). One argument is capped at 128 KiB by the kernel, so a whole system bundle does not fit: pass the CA of
/// the proxy only. Taken from `AP_AIRFLOW_E2E_CA_PEM` (a file), else the locally added CAs in
/// /usr/local/share/ca-certificates, else `PIP_CERT` / `SSL_CERT_FILE` when small enough; none: no build arg.
pub fn ca_pem() -> Option<String> {
    if let Ok(p) = std::env::var("AP_AIRFLOW_E2E_CA_PEM") {
        return Some(
            fs::read_to_string(&p).unwrap_or_else(|e| panic!("AP_AIRFLOW_E2E_CA_PEM={p}: {e}")),
        );
    }
    let mut local: Vec<PathBuf> = fs::read_dir("/usr/local/share/ca-certificates")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    local.sort();
    let pem: String = local
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .collect::<Vec<_>>()
        .join("\n");
    if pem.contains("BEGIN CERTIFICATE") {
        return Some(pem);
    }
    ["PIP_CERT", "SSL_CERT_FILE"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .filter_map(|p| fs::read_to_string(p).ok())
        .find(|pem| pem.len() < 100_000)
}

fn ca_build_args() -> Vec<String> {
    match ca_pem() {
        Some(pem) => vec!["--build-arg".into(), format!("PIP_CA_PEM={pem}")],
        None => Vec::new(),
    }
}

pub struct Build {
    pub ok: bool,
    pub log: String,
    pub took: Duration,
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_tree(&entry.path(), &target);
            }
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The example project built once per test run, tagged `ap-airflow-e2e/example:latest` and kept (it is the cache
/// that makes later runs quick).
pub fn example_image() -> &'static str {
    static BUILT: OnceLock<String> = OnceLock::new();
    BUILT.get_or_init(|| {
        let tag = "ap-airflow-e2e/example:latest".to_owned();
        let project = Project::example();
        say!("building the example project FROM {}", images().onbuild);
        let b = project.build(&tag, Duration::from_secs(900));
        assert!(
            b.ok,
            "the example project does not build:\n{}",
            tail(&b.log, 60)
        );
        say!("example project built in {:.1}s", b.took.as_secs_f64());
        tag
    })
}
