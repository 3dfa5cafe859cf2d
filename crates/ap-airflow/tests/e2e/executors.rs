//! Airflow running in the example project's image, one container per component on the host network:
//! LocalExecutor (scheduler + webserver) and CeleryExecutor (scheduler + celery worker), against a PostgreSQL and a
//! Redis of the test's own. The example DAG is triggered through the CLI and must reach `success`; then every
//! container is stopped with `docker stop` and must exit within its grace period, not by SIGKILL.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    e2e, example_image, free_port, http_get, metric, poll, say, Container, Postgres, Redis,
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

/// Waits until the scheduler (started with `_AIRFLOW_DB_MIGRATE=true`) has migrated the database, runs, and has
/// parsed the example DAG.
fn wait_for_scheduler_and_dag(pg: &Postgres, scheduler: &Container) {
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
fn local_executor_postgres_scheduler_webserver_health_dag_success_and_clean_stop() {
    e2e!();
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
    let health = format!("http://127.0.0.1:{port}/health");
    let mut last = String::new();
    let healthy = poll(Duration::from_secs(300), Duration::from_millis(500), || {
        if !webserver.running() {
            // Gone for good: say so now, with its log, rather than after the whole timeout.
            return Some(false);
        }
        let (status, body) = http_get(&health, None)?;
        last = format!("{status} {body}");
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200
            && v["metadatabase"]["status"] == "healthy"
            && v["scheduler"]["status"] == "healthy")
            .then_some(true)
    });
    webserver.check(
        healthy == Some(true),
        &format!("/health not healthy within 300 s (or the webserver exited); last answer: {last}"),
    );
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

#[test]
fn celery_executor_redis_worker_runs_the_dag_to_success_and_stops_cleanly() {
    e2e!();
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
        let mut all = vec![
            (
                "AIRFLOW__CELERY__BROKER_URL",
                format!("redis://127.0.0.1:{}/0", redis.port),
            ),
            (
                "AIRFLOW__CELERY__RESULT_BACKEND",
                pg.url("db+postgresql", "airflow", "airflow", PASSWORD),
            ),
            ("AIRFLOW__CELERY__WORKER_CONCURRENCY", "2".into()),
        ];
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
    let results = pg
        .sql(
            "airflow",
            "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'",
        )
        .unwrap_or_default();
    assert!(
        results.parse::<usize>().unwrap_or(0) >= TASKS,
        "celery result backend has {results:?} successful tasks"
    );

    stop_cleanly(&worker, "celery worker");
    stop_cleanly(&scheduler, "scheduler (CeleryExecutor)");
    assert!(redis.ping(), "Redis stayed up");
}
