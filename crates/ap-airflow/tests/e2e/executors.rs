//! Airflow running in the example project's image, one container per component on the host network:
//! LocalExecutor (2.x: scheduler + webserver; 3.x: scheduler + api-server + dag-processor + triggerer) and
//! CeleryExecutor (the same plus a celery worker), against a PostgreSQL and a Redis of the test's own. The example DAG is triggered through the CLI and must reach `success`; then every
//! container is stopped with `docker stop` and must exit within its grace period, not by SIGKILL.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    airflow3, example_image, free_port, http_get, http_get_bearer, http_post_json, metric, poll,
    say, Container, Postgres, Redis,
};

const DAG: &str = "example_astro";
const TASKS: usize = 3;
/// `@`, `/` and `:` in the password: the entrypoint must parse the percent-encoded URL to find host and port.
const PASSWORD: &str = "p@ss/w:rd";
const STOP_GRACE: u32 = 20;

/// Environment shared by every Airflow container of a test, as `-e` options.
fn airflow_env(pg: &Postgres, executor: &str, extra: &[(&str, String)]) -> Vec<String> {
    let mut env: Vec<(&str, String)> = vec![
        (
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            pg.url("postgresql", "airflow", "airflow", PASSWORD),
        ),
        ("AIRFLOW__CORE__EXECUTOR", executor.into()),
        ("AIRFLOW__CORE__LOAD_EXAMPLES", "False".into()),
        ("AIRFLOW__WEBSERVER__SECRET_KEY", "e2e-not-secret".into()),
        ("AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL", "10".into()),
        // Two Airflow processes on one host network must not share the log server port (8793 by default).
        (
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
            free_port().to_string(),
        ),
        (
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
            free_port().to_string(),
        ),
        (
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_SERVER_PORT",
            free_port().to_string(),
        ),
    ];
    env.extend(extra.iter().cloned());
    env.into_iter()
        .flat_map(|(k, v)| ["-e".to_owned(), format!("{k}={v}")])
        .collect()
}

fn opts(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Waits until the scheduler (started with `_AIRFLOW_DB_MIGRATE=true`) has migrated the database, runs, and the
/// example DAG is parsed (by the scheduler on 2.x, by the dag-processor on 3.x).
fn wait_for_scheduler_and_dag(pg: &Postgres, scheduler: &Container) {
    wait_for_scheduler(pg, scheduler);
    wait_for_dag(pg, scheduler);
}

fn wait_for_scheduler(pg: &Postgres, scheduler: &Container) {
    let t0 = Instant::now();
    let up = poll(Duration::from_secs(420), Duration::from_secs(2), || {
        if !scheduler.running() {
            return Some(false);
        }
        let n = pg.sql(
            "airflow",
            "SELECT count(*) FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'",
        );
        (n.ok()?.parse::<u32>().ok()? > 0).then_some(true)
    });
    scheduler.check(
        up == Some(true),
        "the scheduler did not migrate the database and start within 420 s",
    );
    say!("scheduler running after {:.1}s", t0.elapsed().as_secs_f64());
}

fn wait_for_dag(pg: &Postgres, scheduler: &Container) {
    let t0 = Instant::now();
    let parsed = poll(Duration::from_secs(240), Duration::from_secs(2), || {
        let n = pg.sql(
            "airflow",
            &format!("SELECT count(*) FROM serialized_dag WHERE dag_id = '{DAG}'"),
        );
        (n.ok()? == "1").then_some(())
    });
    scheduler.check(
        parsed.is_some(),
        "the example DAG was not parsed into the database within 240 s",
    );
    say!("{DAG} parsed after {:.1}s", t0.elapsed().as_secs_f64());
}

/// Unpauses and triggers the DAG with the CLI inside `via`, then waits for the run to finish; panics unless it
/// succeeded, with the task states.
fn run_dag(pg: &Postgres, via: &Container, run_id: &str, watch: &[&Container]) {
    let t0 = Instant::now();
    via.exec(
        &["airflow", "dags", "unpause", DAG],
        Duration::from_secs(180),
    )
    .expect_ok("airflow dags unpause");
    via.exec(
        &["airflow", "dags", "trigger", DAG, "--run-id", run_id],
        Duration::from_secs(180),
    )
    .expect_ok("airflow dags trigger");
    say!("{DAG} triggered as {run_id}");
    let q = format!("SELECT state FROM dag_run WHERE dag_id = '{DAG}' AND run_id = '{run_id}'");
    let state = poll(Duration::from_secs(420), Duration::from_secs(2), || {
        if watch.iter().any(|c| !c.running()) {
            return Some("a component exited".to_owned());
        }
        let s = pg.sql("airflow", &q).ok()?;
        matches!(s.as_str(), "success" | "failed").then_some(s)
    });
    let tasks = pg
        .sql(
            "airflow",
            &format!(
                "SELECT task_id || ' ' || coalesce(state, 'none') || ' ' || coalesce(hostname, '') \
                 FROM task_instance WHERE dag_id = '{DAG}' AND run_id = '{run_id}' ORDER BY task_id"
            ),
        )
        .unwrap_or_default();
    if state.as_deref() != Some("success") {
        for c in watch {
            c.check(c.running(), "a component died during the DAG run");
        }
        via.check(
            false,
            &format!("{DAG} run {run_id} ended as {state:?}; task instances:\n{tasks}"),
        );
    }
    say!(
        "{DAG} run {run_id} succeeded after {:.1}s:\n{tasks}",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        tasks.lines().filter(|l| l.contains(" success")).count(),
        TASKS,
        "task instances:\n{tasks}"
    );
}

/// `docker stop -t 20`: the container must be gone within the grace period and not by SIGKILL (137).
/// Airflow exits 0 on SIGTERM for scheduler, webserver and celery worker; 143 (128 + SIGTERM) would also be a
/// clean, signalled end.
fn stop_cleanly(c: &Container, role: &str) -> i64 {
    let (took, code) = c.stop(STOP_GRACE);
    let key: String = role
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == ' ' || *c == '-')
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect();
    metric(&format!("stop_{key}_s"), took.as_secs_f64());
    say!(
        "docker stop {role}: exit {code} after {:.1}s",
        took.as_secs_f64()
    );
    c.check(
        took < Duration::from_secs(STOP_GRACE as u64) && code != 137 && (code == 0 || code == 143),
        &format!("{role} did not stop cleanly within {STOP_GRACE}s: exit {code} after {took:?}"),
    );
    code
}

#[test]
#[ignore = "needs Docker and the line's built images: scripts/test runs it"]
fn local_executor_postgres_all_components_health_dag_success_and_clean_stop() {
    if airflow3() {
        local_executor_airflow3();
    } else {
        local_executor_airflow2();
    }
}

#[test]
#[ignore = "needs Docker and the line's built images: scripts/test runs it"]
fn celery_executor_redis_worker_runs_the_dag_to_success_and_stops_cleanly() {
    if airflow3() {
        celery_executor_airflow3();
    } else {
        celery_executor_airflow2();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Airflow 3: api-server, scheduler, dag-processor, triggerer (and a celery worker), tasks through the execution API

const JWT_SECRET: &str = "e2e-jwt-secret-not-a-secret";
const API_USER: (&str, &str) = ("e2e", "e2e-pass");

/// What every component of one Airflow 3 deployment shares: the JWT secret, the execution API's URL.
fn airflow3_env(api_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET.into()),
        ("AIRFLOW__API__SECRET_KEY", "e2e-not-secret".into()),
        (
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
            format!("http://127.0.0.1:{api_port}/execution/"),
        ),
    ]
}

/// A deployment's environment as `-e` options, plus the given extra variables.
type EnvWith<'a> = dyn Fn(&[(&str, String)]) -> Vec<String> + 'a;

/// An api-server on `port`; with `create_user`, it creates the e2e user first (FAB is the image's auth manager).
fn start_api_server(
    role: &str,
    image: &str,
    env: &EnvWith,
    port: u16,
    create_user: bool,
) -> Container {
    let mut extra = vec![
        ("AIRFLOW__API__PORT", port.to_string()),
        ("AIRFLOW__API__WORKERS", "1".into()),
    ];
    if create_user {
        extra.extend([
            ("_AIRFLOW_WWW_USER_CREATE", "true".into()),
            ("_AIRFLOW_WWW_USER_USERNAME", API_USER.0.into()),
            ("_AIRFLOW_WWW_USER_PASSWORD", API_USER.1.into()),
        ]);
    }
    Container::start(role, image, &opts(&env(&extra)), &["airflow", "api-server"])
}

/// Polls a web server's health endpoint (2.x `/health`, 3.x `/api/v2/monitor/health`) until the database and
/// the scheduler are healthy; returns the last answer. A server that exits fails at once, with its log.
fn wait_for_health(web: &Container, url: &str) -> String {
    let mut last = String::new();
    let healthy = poll(Duration::from_secs(300), Duration::from_millis(500), || {
        if !web.running() {
            return Some(false);
        }
        let (status, body) = http_get(url, None)?;
        last = format!("{status} {body}");
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200
            && v["metadatabase"]["status"] == "healthy"
            && v["scheduler"]["status"] == "healthy")
            .then_some(true)
    });
    web.check(
        healthy == Some(true),
        &format!("{url} not healthy within 300 s (or the server exited); last answer: {last}"),
    );
    last
}

fn wait_for_api_health(api: &Container, port: u16) -> String {
    wait_for_health(
        api,
        &format!("http://127.0.0.1:{port}/api/v2/monitor/health"),
    )
}

/// The DAG run's state through the REST API v2, with a token from the API server's auth endpoint.
fn check_run_via_rest_api_v2(api: &Container, port: u16, run_id: &str) {
    let token_url = format!("http://127.0.0.1:{port}/auth/token");
    let body = serde_json::json!({"username": API_USER.0, "password": API_USER.1});
    let reply = http_post_json(&token_url, &body);
    let token = reply
        .as_ref()
        .and_then(|(s, b)| {
            (*s == 200 || *s == 201)
                .then(|| serde_json::from_str::<Value>(b).ok())
                .flatten()
        })
        .and_then(|v| v["access_token"].as_str().map(str::to_owned));
    let Some(token) = token else {
        api.check(false, &format!("POST {token_url}: {reply:?}"));
        return;
    };
    let url = format!("http://127.0.0.1:{port}/api/v2/dags/{DAG}/dagRuns/{run_id}");
    let got = http_get_bearer(&url, &token);
    let ok = got.as_ref().is_some_and(|(s, b)| {
        *s == 200 && serde_json::from_str::<Value>(b).is_ok_and(|v| v["state"] == "success")
    });
    api.check(ok, &format!("REST API v2 {url}: {got:?}"));
    // Without a token the API refuses: the auth manager is really in force.
    let anonymous = http_get(&url, None).map(|(s, _)| s);
    api.check(
        matches!(anonymous, Some(401 | 403)),
        &format!("REST API v2 without a token answered {anonymous:?}"),
    );
}

/// The components every Airflow 3 deployment runs, started in the order a user's compose file would.
struct Airflow3 {
    scheduler: Container,
    api: Container,
    dag_processor: Container,
}

/// The scheduler migrates the database (`_AIRFLOW_DB_MIGRATE`); once it has, the api-server starts, syncs FAB's
/// roles and creates the user. A LocalExecutor scheduler waits for that execution API before it runs. The
/// dag-processor starts once the scheduler runs. (One migration at a time: Airflow's migration lock does not cover
/// FAB's tables, so two at once make one fail and be tried again by the entrypoint.)
fn start_airflow3(
    prefix: &str,
    image: &str,
    pg: &Postgres,
    env: &EnvWith,
    api_port: u16,
) -> Airflow3 {
    let scheduler = Container::start(
        &format!("{prefix}-scheduler"),
        image,
        &opts(&env(&[("_AIRFLOW_DB_MIGRATE", "true".into())])),
        &["airflow", "scheduler"],
    );
    // Migrated: the entrypoint has gone on to wait for the execution API, or the scheduler already runs.
    let migrated = poll(Duration::from_secs(420), Duration::from_secs(1), || {
        if !scheduler.running() {
            return Some(false);
        }
        let waiting = scheduler
            .logs()
            .contains("waiting for the execution API server");
        let running = pg
            .sql(
                "airflow",
                "SELECT count(*) FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'",
            )
            .ok()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n > 0);
        (waiting || running).then_some(true)
    });
    scheduler.check(
        migrated == Some(true),
        "the scheduler did not migrate the database within 420 s",
    );
    let api = start_api_server(&format!("{prefix}-api-server"), image, env, api_port, true);
    wait_for_scheduler(pg, &scheduler);
    let dag_processor = Container::start(
        &format!("{prefix}-dag-processor"),
        image,
        &opts(&env(&[])),
        &["airflow", "dag-processor"],
    );
    Airflow3 {
        scheduler,
        api,
        dag_processor,
    }
}

/// A CeleryExecutor deployment's settings: the test's Redis as broker, its PostgreSQL as result backend.
fn celery_settings(pg: &Postgres, redis: &Redis) -> Vec<(&'static str, String)> {
    vec![
        (
            "AIRFLOW__CELERY__BROKER_URL",
            format!("redis://127.0.0.1:{}/0", redis.port),
        ),
        (
            "AIRFLOW__CELERY__RESULT_BACKEND",
            pg.url("db+postgresql", "airflow", "airflow", PASSWORD),
        ),
        ("AIRFLOW__CELERY__WORKER_CONCURRENCY", "2".into()),
    ]
}

fn local_executor_airflow3() {
    let image = example_image();
    let pg = Postgres::start();
    pg.create_db("airflow", "airflow", PASSWORD);
    say!("PostgreSQL on 127.0.0.1:{}", pg.port);
    let api_port = free_port();
    let env = |extra: &[(&str, String)]| {
        let mut all = airflow3_env(api_port);
        all.extend(extra.iter().cloned());
        airflow_env(&pg, "LocalExecutor", &all)
    };
    let Airflow3 {
        scheduler,
        api,
        dag_processor,
    } = start_airflow3("local", image, &pg, &env, api_port);
    let triggerer = Container::start(
        "local-triggerer",
        image,
        &opts(&env(&[])),
        &["airflow", "triggerer"],
    );
    wait_for_dag(&pg, &scheduler);
    let last = wait_for_api_health(&api, api_port);
    say!("/api/v2/monitor/health: {last}");

    let all = [&scheduler, &api, &dag_processor, &triggerer];
    run_dag(&pg, &scheduler, "e2e_local", &all);
    check_run_via_rest_api_v2(&api, api_port, "e2e_local");

    // Start-up time of an api-server on a migrated database: `docker run` to a healthy health endpoint.
    let port2 = free_port();
    let t0 = Instant::now();
    let api2 = start_api_server("local-api-server-2", image, &env, port2, false);
    wait_for_api_health(&api2, port2);
    metric("api_server_run_to_healthy_s", t0.elapsed().as_secs_f64());

    stop_cleanly(&api2, "api-server (second)");
    stop_cleanly(&api, "api-server");
    stop_cleanly(&triggerer, "triggerer");
    stop_cleanly(&dag_processor, "dag-processor");
    stop_cleanly(&scheduler, "scheduler (LocalExecutor)");
}

fn celery_executor_airflow3() {
    let image = example_image();
    let pg = Postgres::start();
    pg.create_db("airflow", "airflow", PASSWORD);
    let redis = Redis::start();
    say!(
        "PostgreSQL on 127.0.0.1:{}, Redis on 127.0.0.1:{}",
        pg.port,
        redis.port
    );
    let api_port = free_port();
    let env = |extra: &[(&str, String)]| {
        let mut all = airflow3_env(api_port);
        all.extend(celery_settings(&pg, &redis));
        all.extend(extra.iter().cloned());
        airflow_env(&pg, "CeleryExecutor", &all)
    };
    let Airflow3 {
        scheduler,
        api,
        dag_processor,
    } = start_airflow3("celery", image, &pg, &env, api_port);
    // The worker waits for the execution API before it starts taking tasks.
    let worker = Container::start(
        "celery-worker",
        image,
        &opts(&env(&[])),
        &["airflow", "celery", "worker"],
    );
    wait_for_dag(&pg, &scheduler);
    wait_for_worker(&worker);
    wait_for_api_health(&api, api_port);

    run_dag(
        &pg,
        &scheduler,
        "e2e_celery",
        &[&scheduler, &api, &dag_processor, &worker],
    );
    check_results_in_backend(&pg, &worker);
    check_run_via_rest_api_v2(&api, api_port, "e2e_celery");

    stop_cleanly(&worker, "celery worker");
    stop_cleanly(&api, "api-server");
    stop_cleanly(&dag_processor, "dag-processor");
    stop_cleanly(&scheduler, "scheduler (CeleryExecutor)");
    assert!(redis.ping(), "Redis stayed up");
}

fn wait_for_worker(worker: &Container) {
    let ready = poll(Duration::from_secs(240), Duration::from_secs(1), || {
        if !worker.running() {
            return Some(false);
        }
        worker.logs().contains("ready.").then_some(true)
    });
    worker.check(
        ready == Some(true),
        "the celery worker did not become ready within 240 s",
    );
    say!("celery worker ready");
}

/// The tasks ran through Celery: the result backend holds a success per task (written as each ends).
fn check_results_in_backend(pg: &Postgres, worker: &Container) {
    let q = "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'";
    let done = poll(Duration::from_secs(30), Duration::from_millis(500), || {
        let n: usize = pg.sql("airflow", q).ok()?.parse().ok()?;
        (n >= TASKS).then_some(n)
    });
    let rows = pg
        .sql(
            "airflow",
            "SELECT task_id || ' ' || coalesce(status, '') || ' ' || coalesce(name, '') FROM celery_taskmeta",
        )
        .unwrap_or_default();
    worker.check(
        done.is_some(),
        &format!("celery result backend has fewer than {TASKS} successful tasks:\n{rows}"),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Airflow 2: webserver, scheduler (parses DAGs itself), a celery worker

fn local_executor_airflow2() {
    let image = example_image();
    let pg = Postgres::start();
    pg.create_db("airflow", "airflow", PASSWORD);
    say!("PostgreSQL on 127.0.0.1:{}", pg.port);

    let env = airflow_env(
        &pg,
        "LocalExecutor",
        &[("_AIRFLOW_DB_MIGRATE", "true".into())],
    );
    let scheduler = Container::start(
        "local-scheduler",
        image,
        &opts(&env),
        &["airflow", "scheduler"],
    );
    wait_for_scheduler_and_dag(&pg, &scheduler);

    // The webserver starts on a migrated database: the time to a healthy /health is the start-up time alone.
    let port = free_port();
    let env = airflow_env(
        &pg,
        "LocalExecutor",
        &[
            ("AIRFLOW__WEBSERVER__WEB_SERVER_PORT", port.to_string()),
            ("AIRFLOW__WEBSERVER__WORKERS", "2".into()),
            (
                "AIRFLOW__API__AUTH_BACKENDS",
                "airflow.api.auth.backend.basic_auth".into(),
            ),
            ("_AIRFLOW_WWW_USER_CREATE", "true".into()),
            ("_AIRFLOW_WWW_USER_USERNAME", "e2e".into()),
            ("_AIRFLOW_WWW_USER_PASSWORD", "e2e-pass".into()),
        ],
    );
    let t0 = Instant::now();
    let webserver = Container::start(
        "local-webserver",
        image,
        &opts(&env),
        &["airflow", "webserver"],
    );
    let last = wait_for_health(&webserver, &format!("http://127.0.0.1:{port}/health"));
    metric("webserver_run_to_healthy_s", t0.elapsed().as_secs_f64());
    say!("/health: {last}");

    run_dag(&pg, &scheduler, "e2e_local", &[&scheduler, &webserver]);

    // The same run seen through the webserver's REST API (basic auth, the user the entrypoint created).
    let url = format!("http://127.0.0.1:{port}/api/v1/dags/{DAG}/dagRuns/e2e_local");
    let api = http_get(&url, Some(("e2e", "e2e-pass")));
    let ok = api.as_ref().is_some_and(|(s, b)| {
        *s == 200 && serde_json::from_str::<Value>(b).is_ok_and(|v| v["state"] == "success")
    });
    webserver.check(ok, &format!("REST API {url}: {api:?}"));

    stop_cleanly(&webserver, "webserver");
    stop_cleanly(&scheduler, "scheduler (LocalExecutor)");
}

fn celery_executor_airflow2() {
    let image = example_image();
    let pg = Postgres::start();
    pg.create_db("airflow", "airflow", PASSWORD);
    let redis = Redis::start();
    say!(
        "PostgreSQL on 127.0.0.1:{}, Redis on 127.0.0.1:{}",
        pg.port,
        redis.port
    );

    let celery = |extra: &[(&str, String)]| {
        let mut all = celery_settings(&pg, &redis);
        all.extend(extra.iter().cloned());
        airflow_env(&pg, "CeleryExecutor", &all)
    };
    let env = celery(&[("_AIRFLOW_DB_MIGRATE", "true".into())]);
    let scheduler = Container::start(
        "celery-scheduler",
        image,
        &opts(&env),
        &["airflow", "scheduler"],
    );
    wait_for_scheduler_and_dag(&pg, &scheduler);

    let env = celery(&[]);
    let worker = Container::start(
        "celery-worker",
        image,
        &opts(&env),
        &["airflow", "celery", "worker"],
    );
    wait_for_worker(&worker);

    run_dag(&pg, &scheduler, "e2e_celery", &[&scheduler, &worker]);

    // The tasks ran on the worker: it logged each command, and the result backend holds their results.
    let logs = worker.logs();
    let executed = logs
        .lines()
        .filter(|l| {
            l.contains("Executing command in Celery") && l.contains(DAG) && l.contains("e2e_celery")
        })
        .count();
    worker.check(
        executed == TASKS,
        &format!("the worker logged {executed} of {TASKS} task commands"),
    );
    check_results_in_backend(&pg, &worker);

    stop_cleanly(&worker, "celery worker");
    stop_cleanly(&scheduler, "scheduler (CeleryExecutor)");
    assert!(redis.ping(), "Redis stayed up");
}
