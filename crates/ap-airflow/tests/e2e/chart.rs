//! The official Apache Airflow Helm chart's invocations, replayed with `docker run` against the image under test
//! (the example project built FROM its onbuild flavour, so the project's DAG must be found through the chart's
//! `AIRFLOW_HOME`).
//!
//! What is replayed is the chart's version 1.18.0 (apache/airflow, `chart/templates/**` and the defaults of
//! `chart/values.yaml`; the first release that deploys Airflow 3's api-server, standalone dag-processor and FAB as
//! the auth manager). Per container, as the chart renders it by default:
//! * no `command`, only `args`, so the image's ENTRYPOINT runs them; `runAsUser: 50000` in group 0 (`uid`, `gid`,
//!   `fsGroup`), here also with the restricted Pod Security profile (`--cap-drop ALL`, no privilege escalation);
//! * `AIRFLOW_HOME` = `airflowHome`, /opt/airflow; the ConfigMap's `airflow.cfg` mounted read-only at
//!   /opt/airflow/airflow.cfg and `airflow_local_settings.py` at /opt/airflow/config/; the logs volume at
//!   /opt/airflow/logs (`fsGroup` 0: group root may write);
//! * from Secrets: the metadata database URL (`?sslmode=disable`) as `AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`,
//!   `AIRFLOW__CORE__SQL_ALCHEMY_CONN` and `AIRFLOW_CONN_AIRFLOW_DB`, the fernet key, the webserver (2.x) or API
//!   (3.x) secret key, the JWT secret (3.x), the broker URL with the Redis password.
//!
//! Jobs and init containers: `run-airflow-migrations` (`bash -c "exec \\\nairflow db migrate"`), then `create-user`
//! (`bash -c 'exec \\\nairflow users create "$@"' -- -r Admin -u admin …`, the `webserver.defaultUser` values);
//! every long-running pod first runs `airflow db check-migrations --migration-wait-timeout=60`. Components: `bash -c
//! "exec airflow scheduler"`, `… webserver` (2.x) or `… api-server` (3.x), `… triggerer`, `… dag-processor` (3.x:
//! the chart deploys it for Airflow 3; 2.x leaves `dagProcessor.enabled` false), `exec \\\nairflow celery worker`
//! (with `DUMB_INIT_SETSID=0`), `exec \\\nairflow celery flower`, and the scheduler pod's log-groomer sidecar `bash
//! /clean-logs` (only `AIRFLOW__LOG_RETENTION_DAYS=15` and `AIRFLOW_HOME` in its env).
//!
//! Probes, with Kubernetes' semantics: a run may take `timeoutSeconds`, and one must pass in a run started by
//! `initialDelaySeconds + (failureThreshold - 1) × periodSeconds` after the container started, or kubelet would
//! have restarted it. Scheduler: startupProbe `CONNECTION_CHECK_MAX_COUNT=0 AIRFLOW__LOGGING__LOGGING_LEVEL=ERROR
//! exec /entrypoint airflow jobs check --job-type SchedulerJob --local` (0 + 5 × 10 s, 20 s each); webserver
//! (`/health`) and api-server (`/api/v2/monitor/health`): HTTP startupProbe (0 + 5 × 10 s, 20 s); triggerer and
//! dag-processor: livenessProbe `… jobs check --job-type TriggererJob --local` / `--local --job-type
//! DagProcessorJob` (10 + 4 × 60 s, 20 s); worker: `CONNECTION_CHECK_MAX_COUNT=0 exec /entrypoint python -m celery
//! --app airflow.providers.celery.executors.celery_executor.app inspect ping -d celery@$(hostname)` (10 + 4 × 60 s,
//! 20 s); flower: `curl localhost:<port>` (10 + 9 × 5 s, 5 s). `terminationGracePeriodSeconds`: scheduler (and its
//! groomer) 10, webserver and api-server 30, flower 30 (Kubernetes' default), triggerer and dag-processor 60,
//! workers 600: every `docker stop -t <grace>` must end in time, never by SIGKILL.
//!
//! Differences forced by running without Kubernetes, all in the chart-like airflow.cfg: containers share the host
//! network, so each listening port (api-server/webserver, flower, log servers) is a free loopback port and servers
//! bind 127.0.0.1; the chart's service names (`execution_api_server_url`, statsd) become 127.0.0.1. One PostgreSQL
//! (scram-sha-256 over TCP) and one Redis (`requirepass`) serve the whole deployment; init containers other than
//! one wait-for-migrations beside the migration job are left out (they run the same command); the components start
//! in two waves (the scheduler and web server with the create-user job, then the rest), since two CPUs stand in for
//! a cluster's nodes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::util::{
    airflow3, free_port, http_get, http_post_json, images, metric, poll, say, tail, Container,
    Postgres, Project, Redis, RunOutput,
};

const DB_PASSWORD: &str = "ch@rt/pw";
const REDIS_PASSWORD: &str = "chart-redis-pw";
/// A valid Fernet key (32 bytes, URL-safe base64), as the chart's fernet-key Secret holds.
const FERNET_KEY: &str = "YXAtYWlyZmxvdy1lMmUtY2hhcnQtZmVybmV0LTMyYiE=";
const HOME: &str = "/opt/airflow";
const CELERY_APP: &str = "airflow.providers.celery.executors.celery_executor.app";

/// A probe's timing in the chart's values.
#[derive(Clone, Copy)]
struct Probe {
    initial_delay: u64,
    period: u64,
    failure_threshold: u64,
    timeout: u64,
}

impl Probe {
    /// Latest start of a passing run (since the container started) that still saves the container.
    fn window(&self) -> Duration {
        Duration::from_secs(self.initial_delay + (self.failure_threshold - 1) * self.period)
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// scheduler.startupProbe, webserver.startupProbe, apiServer.startupProbe.
const STARTUP: Probe = Probe {
    initial_delay: 0,
    period: 10,
    failure_threshold: 6,
    timeout: 20,
};
/// triggerer, dagProcessor and workers livenessProbe.
const LIVENESS: Probe = Probe {
    initial_delay: 10,
    period: 60,
    failure_threshold: 5,
    timeout: 20,
};
/// flower.livenessProbe.
const FLOWER: Probe = Probe {
    initial_delay: 10,
    period: 5,
    failure_threshold: 10,
    timeout: 5,
};

/// The chart's `jobs check` probe script (a YAML `|` block: the backslash-newline is kept, sh joins the lines).
fn jobs_check(args: &str) -> String {
    format!(
        "CONNECTION_CHECK_MAX_COUNT=0 AIRFLOW__LOGGING__LOGGING_LEVEL=ERROR exec /entrypoint \\\nairflow jobs check {args}\n"
    )
}

/// How a component is probed.
enum Check {
    /// HTTP GET from outside (kubelet's httpGet): 200–399 passes.
    Http(String),
    /// `docker exec` of the chart's exec probe; `ready` is a cheap SQL or log test that must hold before the
    /// (CPU-heavy) probe is worth running.
    Exec { argv: Vec<String>, ready: Ready },
}

enum Ready {
    /// A running job of this type in the `job` table.
    Job(&'static str),
    /// This text in the container's log.
    Log(&'static str),
    Now,
}

struct Component {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    probe: Probe,
    check: Check,
    grace: u32,
    /// 1: started with the create-user job; 2: once wave 1 is up (see the test).
    wave: u8,
}

/// Loopback ports standing in for the chart's services and pod addresses.
struct Ports {
    web: u16,
    flower: u16,
    worker_logs: u16,
    trigger_logs: u16,
    statsd: u16,
}

/// The chart's rendered airflow.cfg (its `config:` defaults for a CeleryExecutor deployment), with the service
/// addresses and ports of a host-network test.
fn airflow_cfg(p: &Ports, v3: bool) -> String {
    let mut cfg = String::new();
    if v3 {
        cfg += &format!("[api]\nhost = 127.0.0.1\nport = {}\n\n", p.web);
    }
    cfg += &format!(
        "[celery]\nflower_host = 127.0.0.1\nflower_port = {}\nflower_url_prefix =\nworker_concurrency = 16\n\n",
        p.flower
    );
    cfg += "[celery_kubernetes_executor]\nkubernetes_queue = kubernetes\n\n";
    cfg += &format!(
        "[core]\ncolored_console_log = False\ndags_folder = {HOME}/dags\nexecutor = CeleryExecutor\n\
         load_examples = False\nremote_logging = False\n"
    );
    if v3 {
        cfg +=
            "auth_manager = airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager\n";
        cfg += &format!(
            "execution_api_server_url = http://127.0.0.1:{}/execution/\n",
            p.web
        );
    }
    cfg += "\n[fab]\nenable_proxy_fix = True\n\n";
    cfg += &format!(
        "[kubernetes_executor]\nmulti_namespace_mode = False\nnamespace = default\n\
         pod_template_file = {HOME}/pod_templates/pod_template_file.yaml\n\n"
    );
    cfg += &format!(
        "[logging]\ncolored_console_log = False\nremote_logging = False\nworker_log_server_port = {}\n\
         trigger_log_server_port = {}\n\n",
        p.worker_logs, p.trigger_logs
    );
    cfg += &format!(
        "[metrics]\nstatsd_host = 127.0.0.1\nstatsd_on = True\nstatsd_port = {}\nstatsd_prefix = airflow\n\n",
        p.statsd
    );
    cfg += &format!(
        "[scheduler]\nrun_duration = 41460\nstandalone_dag_processor = {}\n\n",
        if v3 { "True" } else { "False" }
    );
    cfg += "[triggerer]\ndefault_capacity = 1000\n\n";
    cfg += "[webserver]\nenable_proxy_fix = True\nrbac = True\n";
    if !v3 {
        cfg += &format!("web_server_host = 127.0.0.1\nweb_server_port = {}\n", p.web);
    }
    cfg
}

/// The chart's default `airflowLocalSettings` renders, for 2.x without a static webserver secret key, a dashboard
/// alert for admins (imported from the 2.x web UI); for 3.x nothing. Same effect, own words.
fn local_settings(v3: bool) -> String {
    if v3 {
        "# Rendered empty by the chart for Airflow 3.\n".into()
    } else {
        "from airflow.www.utils import UIAlert\n\nDASHBOARD_UIALERTS = [\n    UIAlert(\n        \
         'The webserver secret key is generated per install; set a static one.',\n        \
         category='warning',\n        roles=['Admin'],\n    )\n]\n"
            .into()
    }
}

/// One deployment: the files the chart mounts, the env its Secrets give, PostgreSQL and Redis.
struct Deployment {
    _dir: tempfile::TempDir,
    logs: std::path::PathBuf,
    image: &'static str,
    mounts: Vec<String>,
    env: Vec<(&'static str, String)>,
    ports: Ports,
}

/// `docker run` options of a chart container: security context, mounts, env.
fn security() -> Vec<String> {
    [
        "--user",
        "50000:0",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Deployment {
    fn new(pg: &Postgres, redis: &Redis) -> Deployment {
        let v3 = airflow3();
        let dir = tempfile::Builder::new()
            .prefix("ap-e2e-chart-")
            .tempdir()
            .expect("tempdir");
        let logs = dir.path().join("logs");
        fs::create_dir(&logs).unwrap();
        // fsGroup 0: the volume is the group root's and writable by it.
        std::os::unix::fs::chown(&logs, Some(50000), Some(0)).unwrap();
        fs::set_permissions(&logs, fs::Permissions::from_mode(0o2775)).unwrap();
        let ports = Ports {
            web: free_port(),
            flower: free_port(),
            worker_logs: free_port(),
            trigger_logs: free_port(),
            statsd: free_port(),
        };
        // ConfigMap files: root's, world-readable, mounted read-only.
        let cfg = dir.path().join("airflow.cfg");
        fs::write(&cfg, airflow_cfg(&ports, v3)).unwrap();
        let settings = dir.path().join("airflow_local_settings.py");
        fs::write(&settings, local_settings(v3)).unwrap();
        for f in [&cfg, &settings] {
            fs::set_permissions(f, fs::Permissions::from_mode(0o644)).unwrap();
        }
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let mounts = vec![
            format!("{}:{HOME}/logs", logs.display()),
            format!("{}:{HOME}/airflow.cfg:ro", cfg.display()),
            format!(
                "{}:{HOME}/config/airflow_local_settings.py:ro",
                settings.display()
            ),
        ];
        let db = format!(
            "{}?sslmode=disable",
            pg.url("postgresql", "airflow", "airflow", DB_PASSWORD)
        );
        let mut env: Vec<(&'static str, String)> = vec![
            ("AIRFLOW_HOME", HOME.into()),
            ("AIRFLOW__CORE__FERNET_KEY", FERNET_KEY.into()),
            ("AIRFLOW__CORE__SQL_ALCHEMY_CONN", db.clone()),
            ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", db.clone()),
            ("AIRFLOW_CONN_AIRFLOW_DB", db),
            (
                "AIRFLOW__CELERY__BROKER_URL",
                format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", redis.port),
            ),
        ];
        if v3 {
            env.push(("AIRFLOW__API__SECRET_KEY", "chart-api-secret-key".into()));
            env.push(("AIRFLOW__API_AUTH__JWT_SECRET", "chart-jwt-secret".into()));
        } else {
            env.push((
                "AIRFLOW__WEBSERVER__SECRET_KEY",
                "chart-webserver-secret-key".into(),
            ));
        }
        Deployment {
            _dir: dir,
            logs,
            image: project_image(),
            mounts,
            env,
            ports,
        }
    }

    /// Options of an Airflow container: security context, the chart's mounts and env, then `extra` env.
    fn opts(&self, extra: &[(&'static str, String)]) -> Vec<String> {
        let mut o = security();
        for m in &self.mounts {
            o.push("-v".into());
            o.push(m.clone());
        }
        for (k, v) in self.env.iter().chain(extra) {
            o.push("-e".into());
            o.push(format!("{k}={v}"));
        }
        o
    }

    fn run_job(&self, role: &str, args: &[String], timeout: Duration) -> (RunOutput, Duration) {
        let t0 = Instant::now();
        let out = Container::run(
            role,
            self.image,
            &strs(&self.opts(&[])),
            &strs(args),
            timeout,
        );
        (out, t0.elapsed())
    }

    fn components(&self) -> Vec<Component> {
        let v3 = airflow3();
        let sh = |script: &str| vec!["sh".to_string(), "-c".into(), script.into()];
        let bash = |script: &str| vec!["bash".to_string(), "-c".into(), script.into()];
        let mut all = vec![Component {
            name: "scheduler",
            args: bash("exec airflow scheduler"),
            env: vec![],
            probe: STARTUP,
            check: Check::Exec {
                argv: sh(&jobs_check("--job-type SchedulerJob --local")),
                ready: Ready::Job("SchedulerJob"),
            },
            grace: 10,
            wave: 1,
        }];
        if v3 {
            all.push(Component {
                name: "api-server",
                args: bash("exec airflow api-server"),
                env: vec![],
                probe: STARTUP,
                check: Check::Http(format!(
                    "http://127.0.0.1:{}/api/v2/monitor/health",
                    self.ports.web
                )),
                grace: 30,
                wave: 1,
            });
            all.push(Component {
                name: "dag-processor",
                args: bash("exec airflow dag-processor"),
                env: vec![],
                probe: LIVENESS,
                check: Check::Exec {
                    argv: sh(&jobs_check("--local --job-type DagProcessorJob")),
                    ready: Ready::Job("DagProcessorJob"),
                },
                grace: 60,
                wave: 2,
            });
        } else {
            all.push(Component {
                name: "webserver",
                args: bash("exec airflow webserver"),
                env: vec![],
                probe: STARTUP,
                check: Check::Http(format!("http://127.0.0.1:{}/health", self.ports.web)),
                grace: 30,
                wave: 1,
            });
        }
        all.push(Component {
            name: "triggerer",
            args: bash("exec airflow triggerer"),
            env: vec![],
            probe: LIVENESS,
            check: Check::Exec {
                argv: sh(&jobs_check("--job-type TriggererJob --local")),
                ready: Ready::Job("TriggererJob"),
            },
            grace: 60,
            wave: 2,
        });
        all.push(Component {
            name: "worker",
            args: bash("exec \\\nairflow celery worker"),
            env: vec![("DUMB_INIT_SETSID", "0".into())],
            probe: LIVENESS,
            check: Check::Exec {
                argv: sh(&format!(
                    "CONNECTION_CHECK_MAX_COUNT=0 exec /entrypoint python -m celery --app {CELERY_APP} \
                     inspect ping -d celery@$(hostname)"
                )),
                ready: Ready::Log(" ready."),
            },
            grace: 600,
            wave: 2,
        });
        all.push(Component {
            name: "flower",
            args: bash("exec \\\nairflow celery flower"),
            env: vec![],
            probe: FLOWER,
            check: Check::Exec {
                argv: vec!["curl".into(), format!("localhost:{}", self.ports.flower)],
                ready: Ready::Now,
            },
            grace: 30,
            wave: 2,
        });
        all
    }
}

/// The example project built FROM the line's onbuild image, under a tag of the line's own
/// (`ap-airflow-e2e/example:chart-<line>`, kept as the next run's cache): another line's suite running at the same
/// time rebuilds `ap-airflow-e2e/example:latest` from its own onbuild image.
fn project_image() -> &'static str {
    static BUILT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let tag = format!("ap-airflow-e2e/example:chart-{}", images().ac_version);
        let b = Project::example().build(&tag, Duration::from_secs(900));
        assert!(
            b.ok,
            "the example project does not build:\n{}",
            tail(&b.log, 60)
        );
        say!("{tag} built in {:.1}s", b.took.as_secs_f64());
        tag
    })
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// When a passing probe run started (since `docker run`) and how long it took; or why none passed in time.
type Up = Result<(Duration, Duration), String>;

/// Polls the component's probe (cheaply first, see `Ready`) until a run passes; returns when that run started
/// (since `started`) and how long it took. Err: what the last run said, once the probe window has passed.
fn probe_until_up(c: &Component, container: &Container, started: Instant, pg: &Postgres) -> Up {
    let window = c.probe.window();
    let mut last = String::from("no run yet");
    loop {
        let begun = started.elapsed();
        if begun > window {
            return Err(format!(
                "no passing probe run started within the chart's window of {window:?}; last run: {last}"
            ));
        }
        if !container.running() {
            return Err(format!("the container exited: {}", container.state()));
        }
        let t0 = Instant::now();
        let passed = match &c.check {
            Check::Http(url) => match http_get(url, None) {
                Some((status, body)) => {
                    last = format!(
                        "HTTP {status} {}",
                        body.chars().take(300).collect::<String>()
                    );
                    (200..400).contains(&status)
                }
                None => {
                    last = "no HTTP answer".into();
                    false
                }
            },
            Check::Exec { argv, ready } => {
                let ready_now = match ready {
                    Ready::Job(kind) => pg
                        .sql(
                            "airflow",
                            &format!(
                                "SELECT count(*) FROM job WHERE job_type = '{kind}' AND state = 'running'"
                            ),
                        )
                        .is_ok_and(|n| n != "0"),
                    Ready::Log(text) => container.logs().contains(text),
                    Ready::Now => true,
                };
                if ready_now {
                    let out = container.exec(&strs(argv), c.probe.timeout());
                    last = format!(
                        "exit {:?}: {}",
                        out.code,
                        out.both().trim().lines().last().unwrap_or("")
                    );
                    out.ok()
                } else {
                    last = "not ready yet (no running job / ready line)".into();
                    false
                }
            }
        };
        let took = t0.elapsed();
        if passed && took <= c.probe.timeout() {
            return Ok((begun, took));
        }
        if passed {
            last = format!(
                "passed, but took {took:?} (timeoutSeconds {})",
                c.probe.timeout
            );
        }
        std::thread::sleep(match c.check {
            Check::Http(_) => Duration::from_millis(500),
            Check::Exec { .. } => Duration::from_secs(1),
        });
    }
}

/// Log files for the groomer: one 20 days old (the chart's retention is 15 days), one fresh; both astro's.
fn plant_logs(logs: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = logs.join("dag_id=chart_groomer/run_id=r1/task_id=t1");
    fs::create_dir_all(&dir).unwrap();
    let old = dir.join("attempt=1.log");
    let fresh = dir.join("attempt=2.log");
    for f in [&old, &fresh] {
        fs::write(f, "log line\n").unwrap();
    }
    let twenty_days = SystemTime::now() - Duration::from_secs(20 * 86400);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(twenty_days)
        .unwrap();
    let chown = Command::new("chown")
        .args(["-R", "50000:0"])
        .arg(logs.join("dag_id=chart_groomer"))
        .status()
        .unwrap();
    assert!(chown.success());
    (old, fresh)
}

/// Replays a default chart install on one PostgreSQL and one Redis: the migration job with a wait-for-migrations
/// init container beside it, the create-user job right after, every component up and passing its probe within the
/// chart's window, the groomer sidecar grooming, a web server stopped while it boots, and every `docker stop` within
/// the chart's grace period.
#[test]
#[ignore = "needs Docker and the line's built images: scripts/test runs it"]
fn official_helm_chart_invocations_pass_probes_and_stop_in_grace() {
    let v3 = airflow3();
    let (pg, redis) = std::thread::scope(|s| {
        let redis = s.spawn(Redis::start);
        let pg = Postgres::start();
        (pg, redis.join().unwrap())
    });
    pg.create_db("airflow", "airflow", DB_PASSWORD);
    let set = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
        .args(["CONFIG", "SET", "requirepass", REDIS_PASSWORD])
        .output()
        .expect("run redis-cli");
    assert!(
        set.status.success() && String::from_utf8_lossy(&set.stdout).contains("OK"),
        "redis-cli CONFIG SET requirepass: {set:?}"
    );
    let d = Deployment::new(&pg, &redis);
    say!(
        "chart replay on PostgreSQL 127.0.0.1:{} and Redis 127.0.0.1:{} with {}",
        pg.port,
        redis.port,
        d.image
    );

    // The migration job and, beside it, a pod's wait-for-migrations init container (it waits up to 60 s).
    let migrate_args: Vec<String> = vec![
        "bash".into(),
        "-c".into(),
        "exec \\\nairflow db migrate".into(),
    ];
    let wait_args: Vec<String> = [
        "airflow",
        "db",
        "check-migrations",
        "--migration-wait-timeout=60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ((migrate, migrate_took), (wait, wait_took)) = std::thread::scope(|s| {
        let wait = s.spawn(|| {
            d.run_job(
                "chart-wait-for-migrations",
                &wait_args,
                Duration::from_secs(300),
            )
        });
        let migrate = d.run_job("chart-migrate", &migrate_args, Duration::from_secs(600));
        (migrate, wait.join().unwrap())
    });
    migrate.expect_ok("the chart's migration job");
    wait.expect_ok(
        "the chart's wait-for-migrations init container, started with the migration job",
    );
    say!(
        "migrate job {:.1}s, wait-for-migrations beside it {:.1}s",
        migrate_took.as_secs_f64(),
        wait_took.as_secs_f64()
    );
    metric("chart_migrate_job_s", migrate_took.as_secs_f64());

    // Right after the migration, as the chart's hooks run them: the create-user job, and every component (their
    // init containers see the migrated database at once).
    let (old_log, fresh_log) = plant_logs(&d.logs);
    let components = d.components();
    let user_args: Vec<String> = [
        "bash",
        "-c",
        "exec \\\nairflow users create \"$@\"",
        "--",
        "-r",
        "Admin",
        "-u",
        "admin",
        "-e",
        "admin@example.com",
        "-f",
        "admin",
        "-l",
        "user",
        "-p",
        "admin",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let user_job = {
        let (image, opts) = (d.image, d.opts(&[]));
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let out = Container::run(
                "chart-create-user",
                image,
                &strs(&opts),
                &strs(&user_args),
                Duration::from_secs(300),
            );
            (out, t0.elapsed())
        })
    };
    // Two waves: on the 2-CPU test machine, pods that a cluster spreads over nodes share two cores, and nine Airflow
    // processes starting at once (with the create-user job) missed the 50 s windows here while other jobs loaded
    // the machine. The components with the chart's 50 s startup windows (scheduler, web server) start with the
    // create-user job; the others (windows of 55 s and 250 s) once those passed. Each window is measured from the
    // component's own `docker run`.
    let mut running: Vec<Option<(Container, Instant)>> = components.iter().map(|_| None).collect();
    let mut results: Vec<Option<Up>> = components.iter().map(|_| None).collect();
    let mut groomer = None;
    for wave in [1, 2] {
        for (i, c) in components
            .iter()
            .enumerate()
            .filter(|(_, c)| c.wave == wave)
        {
            let t0 = Instant::now();
            let container = Container::start(
                &format!("chart-{}", c.name),
                d.image,
                &strs(&d.opts(&c.env)),
                &strs(&c.args),
            );
            running[i] = Some((container, t0));
        }
        if wave == 2 {
            let mut opts = security();
            opts.extend([
                "-v".to_string(),
                d.mounts[0].clone(),
                "-e".into(),
                "AIRFLOW__LOG_RETENTION_DAYS=15".into(),
                "-e".into(),
                format!("AIRFLOW_HOME={HOME}"),
            ]);
            groomer = Some(Container::start(
                "chart-scheduler-log-groomer",
                d.image,
                &strs(&opts),
                &["bash", "/clean-logs"],
            ));
        }
        // Probed in parallel, as kubelet would.
        let pg = &pg;
        let done: Vec<(usize, Up)> = std::thread::scope(|s| {
            let handles: Vec<_> = components
                .iter()
                .enumerate()
                .filter(|(_, c)| c.wave == wave)
                .map(|(i, c)| {
                    let (container, t0) = running[i].as_ref().unwrap();
                    s.spawn(move || (i, probe_until_up(c, container, *t0, pg)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, r) in done {
            results[i] = Some(r);
        }
    }
    let running: Vec<(Container, Instant)> = running.into_iter().map(Option::unwrap).collect();
    let results: Vec<Up> = results.into_iter().map(Option::unwrap).collect();
    let groomer = groomer.unwrap();
    let (user, user_took) = user_job
        .join()
        .expect("the create-user job's thread (did `docker run` time out?)");
    let user = user.expect_ok("the chart's create-user job right after the migration");
    assert!(
        user.both().contains("created with role \"Admin\""),
        "create-user job: {}",
        user.both()
    );
    say!("create-user job {:.1}s", user_took.as_secs_f64());
    metric("chart_create_user_job_s", user_took.as_secs_f64());
    for ((c, (container, _)), r) in components.iter().zip(&running).zip(&results) {
        match r {
            Ok((up, took)) => {
                say!(
                    "{}: probe passed in a run started {:.1}s after docker run (window {}s), run took {:.1}s",
                    c.name,
                    up.as_secs_f64(),
                    c.probe.window().as_secs(),
                    took.as_secs_f64()
                );
                metric(&format!("chart_{}_up_s", key(c.name)), up.as_secs_f64());
            }
            Err(e) => container.check(false, &format!("{}: {e}", c.name)),
        }
    }

    // The deployment works: the user has the Admin role, the project's DAG was parsed from /opt/airflow/dags and its
    // plugin loaded, the groomer removed the expired log only.
    let roles = pg
        .sql(
            "airflow",
            "SELECT u.username || ' ' || r.name FROM ab_user u JOIN ab_user_role ur ON ur.user_id = u.id \
             JOIN ab_role r ON r.id = ur.role_id",
        )
        .unwrap();
    assert!(
        roles.lines().any(|l| l == "admin Admin"),
        "ab_user roles: {roles}"
    );
    let fileloc = poll(Duration::from_secs(120), Duration::from_secs(1), || {
        pg.sql(
            "airflow",
            "SELECT fileloc FROM dag WHERE dag_id = 'example_astro'",
        )
        .ok()
        .filter(|s| !s.is_empty())
    });
    let parser = &running[if v3 { 2 } else { 0 }].0;
    parser.check(
        fileloc.as_deref() == Some("/opt/airflow/dags/example_astro.py"),
        &format!("the project's DAG was not parsed from /opt/airflow/dags: {fileloc:?}"),
    );
    // …and its plugin is loaded from /opt/airflow/plugins (Airflow's default under the chart's AIRFLOW_HOME).
    let scheduler = &running[0].0;
    let plugins = scheduler.exec(
        &["airflow", "plugins", "--output", "json"],
        Duration::from_secs(120),
    );
    scheduler.check(
        plugins.ok() && plugins.stdout.contains("example_astro_plugin"),
        &format!(
            "`airflow plugins` under the chart's env does not list the project's plugin: exit {:?}\n{}",
            plugins.code,
            plugins.both()
        ),
    );
    if v3 {
        let url = format!("http://127.0.0.1:{}/auth/token", d.ports.web);
        let reply = http_post_json(
            &url,
            &serde_json::json!({"username": "admin", "password": "admin"}),
        );
        let token = reply.as_ref().is_some_and(|(s, b)| {
            (*s == 200 || *s == 201)
                && serde_json::from_str::<Value>(b).is_ok_and(|v| v["access_token"].is_string())
        });
        running[1].0.check(
            token,
            &format!("POST {url} as the chart's admin: {reply:?}"),
        );
    }
    let groomed = poll(Duration::from_secs(20), Duration::from_millis(200), || {
        (!old_log.exists()).then_some(())
    });
    groomer.check(
        groomed.is_some() && fresh_log.exists() && groomer.running(),
        &format!(
            "the groomer sidecar should run and remove only the 20-day-old log: old exists {}, fresh exists {}",
            old_log.exists(),
            fresh_log.exists()
        ),
    );
    say!("groomer sidecar running; it removed the expired log and kept the fresh one");

    // A second web server, stopped while it boots (2.x: gunicorn booting its workers; 3.x: loading the app before
    // uvicorn serves): it must end well within the chart's 30 s, never by SIGKILL.
    stop_while_booting(&d);

    // Every container stopped at once, as a deleted release's pods are, each within its grace period.
    let mut all: Vec<(&str, &Container, u32)> = components
        .iter()
        .zip(&running)
        .map(|(c, (container, _))| (c.name, container, c.grace))
        .collect();
    all.push(("scheduler-log-groomer", &groomer, 10));
    let stops: Vec<(Duration, i64)> = std::thread::scope(|s| {
        let handles: Vec<_> = all
            .iter()
            .map(|(_, c, grace)| s.spawn(move || c.stop(*grace)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((name, c, grace), (took, code)) in all.iter().zip(&stops) {
        say!(
            "docker stop -t {grace} {name}: exit {code} after {:.1}s",
            took.as_secs_f64()
        );
        metric(&format!("chart_stop_{}_s", key(name)), took.as_secs_f64());
        c.check(
            *took < Duration::from_secs(u64::from(*grace)) && *code != 137,
            &format!("{name} did not stop within its grace period of {grace}s: exit {code} after {took:?}"),
        );
    }
}

/// Starts the chart's web server on another port, sends SIGTERM (`docker stop -t 30`) as soon as its log shows it
/// booting, and checks it ended within the chart's grace period, not by SIGKILL.
fn stop_while_booting(d: &Deployment) {
    let v3 = airflow3();
    let port = free_port();
    let (name, script, env_key, marker) = if v3 {
        (
            "api-server",
            "exec airflow api-server",
            "AIRFLOW__API__PORT",
            "Running the API server",
        )
    } else {
        (
            "webserver",
            "exec airflow webserver",
            "AIRFLOW__WEBSERVER__WEB_SERVER_PORT",
            "Booting worker with pid",
        )
    };
    let c = Container::start(
        &format!("chart-{name}-booting"),
        d.image,
        &strs(&d.opts(&[(env_key, port.to_string())])),
        &["bash", "-c", script],
    );
    let t0 = Instant::now();
    let booting = poll(Duration::from_secs(180), Duration::from_millis(100), || {
        if !c.running() {
            return Some(false);
        }
        c.logs().contains(marker).then_some(true)
    });
    c.check(
        booting == Some(true),
        &format!("the second {name} never logged {marker:?}"),
    );
    let (took, code) = c.stop(30);
    say!(
        "docker stop -t 30 {name} while booting ({:.1}s after docker run): exit {code} after {:.1}s",
        t0.elapsed().as_secs_f64() - took.as_secs_f64(),
        took.as_secs_f64()
    );
    metric(
        &format!("chart_stop_{}_booting_s", key(name)),
        took.as_secs_f64(),
    );
    c.check(
        took < Duration::from_secs(30) && code != 137,
        &format!("{name} stopped while booting took {took:?} (exit {code}); the chart gives 30 s"),
    );
}

fn key(name: &str) -> String {
    name.replace('-', "_")
}
