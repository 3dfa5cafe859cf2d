//! Waiting for real PostgreSQL and Redis servers, and for an HTTP server (the execution API), on loopback ports.

use crate::exec_and_pid1_tests;
use crate::require_root;
use crate::util::*;
use airflow_runtime::probe::{probe, Outcome};
use airflow_runtime::url::{parse, Parsed, Target};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);
/// The goal. Typical here: 0.12–0.25 s (a probe every 0.25 s, plus forking the stub).
const NOTICE: Duration = Duration::from_millis(500);

fn target(url: &str) -> Target {
    match parse(url).unwrap() {
        Parsed::Targets(t) => t[0].clone(),
        Parsed::Local(_) => panic!("local"),
    }
}

/// Poll the server ourselves until it is ready; returns when that happened.
fn ready_at(url: &str) -> Instant {
    let t = target(url);
    wait_for("server ready", T, || {
        (probe(&t) == Outcome::Ready).then(Instant::now)
    })
}

/// The entrypoint proceeds (runs the stub) within NOTICE of the server becoming ready.
fn proceeds_promptly(p: &mut Proc, stub: &Stub, ready: Instant) {
    wait_for("the command to start", T, || {
        (!stub.calls().is_empty()).then_some(())
    });
    let late = ready.elapsed();
    assert!(
        late <= NOTICE,
        "noticed {late:?} after the server was ready"
    );
    assert_eq!(code(p.wait(T)), 0, "{}", p.stderr());
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn waits_for_postgres_then_proceeds() {
    require_root!();
    let port = free_port();
    let url = format!("postgresql+psycopg2://airflow:pa%40ss@wd@127.0.0.1:{port}/airflow");
    let mut pg = Postgres::init(port);
    let stub = Stub::new();
    let mut p = Proc::spawn({
        let mut c = stub.entrypoint(&["airflow", "scheduler"]);
        c.env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", &url);
        c
    });
    p.wait_stderr(
        &format!(
            "waiting for the database at 127.0.0.1:{port} (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)"
        ),
        T,
    );
    assert!(
        p.running() && stub.calls().is_empty(),
        "proceeded with the database down"
    );
    pg.start();
    let ready = ready_at(&url);
    proceeds_promptly(&mut p, &stub, ready);
    assert_eq!(stub.calls(), ["scheduler|"]);
    let err = p.stderr();
    assert!(
        err.contains(&format!("database postgresql at 127.0.0.1:{port} is ready")),
        "{err}"
    );
    assert!(
        !err.contains("pa%40ss") && !err.contains("wd@") && !err.contains("airflow:"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn waits_while_postgres_is_starting_up() {
    require_root!();
    let port = free_port();
    let url = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
    let mut pg = Postgres::init(port);
    pg.as_standby();
    pg.start();
    // The port is open and the server answers, but with 57P03: not ready.
    let t = target(&url);
    wait_for("the standby to answer 57P03", T, || match probe(&t) {
        Outcome::NotReady(r) if r.contains("57P03") => Some(()),
        _ => None,
    });
    let stub = Stub::new();
    let mut p = Proc::spawn({
        let mut c = stub.entrypoint(&["airflow", "webserver"]);
        c.env("AIRFLOW__CORE__SQL_ALCHEMY_CONN", &url);
        c
    });
    p.wait_stderr("starting up (57P03)", T);
    assert!(
        p.running() && stub.calls().is_empty(),
        "proceeded while PostgreSQL was starting up"
    );
    pg.promote();
    let ready = ready_at(&url);
    proceeds_promptly(&mut p, &stub, ready);
    assert_eq!(stub.calls(), ["sync-perm|", "webserver|"]);
}

#[test]
fn gives_up_after_max_count() {
    let port = free_port();
    let stub = Stub::new();
    let start = Instant::now();
    let out = stub
        .entrypoint(&["airflow", "db", "check"])
        .env(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            format!("postgresql://u:hunter2@127.0.0.1:{port}/x"),
        )
        .env("CONNECTION_CHECK_MAX_COUNT", "3")
        .env("CONNECTION_CHECK_SLEEP_TIME", "0.1")
        .output()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "entrypoint: gave up waiting for the database at 127.0.0.1:{port} (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN) after 3 attempts"
        )),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(stub.calls().is_empty());
}

#[test]
fn max_count_zero_disables_waiting() {
    let stub = Stub::new();
    let out = stub
        .entrypoint(&["airflow", "scheduler"])
        .env(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            format!("postgresql://127.0.0.1:{}/x", free_port()),
        )
        .env("CONNECTION_CHECK_MAX_COUNT", "0")
        .ran();
    out.assert_code(0);
    assert_eq!(stub.calls(), ["scheduler|"]);
}

exec_and_pid1_tests!(
    sigterm_ends_the_wait_promptly,
    sigterm_ends_the_wait_promptly_as_pid1,
    sigterm_ends_the_wait_promptly_in
);

fn sigterm_ends_the_wait_promptly_in(inits: &[Init]) {
    let port = free_port();
    sigterm_stops_start_up(
        inits,
        &[(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            &format!("postgresql://127.0.0.1:{port}/x"),
        )],
        Until::Said("waiting for the database"),
        "SIGTERM while waiting for the database",
        |c| c,
    );
}

#[test]
fn celery_worker_waits_for_redis_broker() {
    let port = free_port();
    let url = format!("redis://:s3cret@127.0.0.1:{port}/0");
    let stub = Stub::new();
    let mut p = Proc::spawn({
        let mut c = stub.entrypoint(&["airflow", "celery", "worker"]);
        c.env(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            "sqlite:////tmp/airflow.db",
        )
        .env("AIRFLOW__CELERY__BROKER_URL", &url)
        .env("EXECUTOR", "Celery");
        c
    });
    p.wait_stderr(
        &format!("waiting for the broker at 127.0.0.1:{port} (AIRFLOW__CELERY__BROKER_URL)"),
        T,
    );
    assert!(
        p.running() && stub.calls().is_empty(),
        "worker started with the broker down"
    );
    let _redis = Redis::spawn(port);
    let ready = ready_at(&url);
    proceeds_promptly(&mut p, &stub, ready);
    assert_eq!(stub.calls(), ["celery worker|CeleryExecutor"]);
    assert!(!p.stderr().contains("s3cret"));
}

#[test]
fn broker_failover_list_any_one_is_enough() {
    let (down, up) = (free_port(), free_port());
    let _redis = Redis::spawn(up);
    ready_at(&format!("redis://127.0.0.1:{up}"));
    let stub = Stub::new();
    let out = stub
        .entrypoint(&["airflow", "celery", "flower"])
        .env(
            "AIRFLOW__CELERY__BROKER_URL",
            format!("redis://127.0.0.1:{down}/0;redis://127.0.0.1:{up}/0"),
        )
        .output()
        .unwrap();
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stub.calls(), ["celery flower|"]);
}

#[test]
fn db_url_from_cmd_variant() {
    let port = free_port();
    let _redis = Redis::spawn(port);
    ready_at(&format!("redis://127.0.0.1:{port}"));
    let stub = Stub::new();
    // Any protocol answers the question "is it up"; a redis URL as the "database" keeps this test root-free.
    let out = stub
        .entrypoint(&["airflow", "triggerer"])
        .env(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
            format!("echo redis://127.0.0.1:{port}"),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 0, "{err}");
    assert!(
        err.contains("(AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"),
        "{err}"
    );
    assert_eq!(stub.calls(), ["triggerer|"]);
}

exec_and_pid1_tests!(
    sigterm_ends_a_hung_cmd_variant_promptly,
    sigterm_ends_a_hung_cmd_variant_promptly_as_pid1,
    sigterm_ends_a_hung_cmd_variant_promptly_in
);

fn sigterm_ends_a_hung_cmd_variant_promptly_in(inits: &[Init]) {
    // A secrets backend that never answers; the shell's own child must go too.
    sigterm_stops_start_up(
        inits,
        &[(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
            "echo asking the vault >&2; sleep 60; echo postgresql://127.0.0.1/x",
        )],
        Until::Said("asking the vault"),
        "SIGTERM while running AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
        |c| c,
    );
}

const EXECUTION_API: &str = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL";

#[test]
fn execution_api_is_waited_for_after_the_migration() {
    // A 3.x scheduler with the LocalExecutor (the default): migrate first (the API server may be waiting for
    // it), then wait for the execution API, then start.
    let reserved = Reserved::new();
    let port = reserved.port;
    let stub = Stub::new();
    let mut p = Proc::spawn({
        let mut c = stub.entrypoint(&["airflow", "scheduler"]);
        c.env("AIRFLOW_VERSION", "3.3.2")
            .env("_AIRFLOW_DB_MIGRATE", "true")
            .env("AIRFLOW__API_AUTH__JWT_SECRET", "x")
            .env(
                EXECUTION_API,
                format!("http://airflow:s3cret@127.0.0.1:{port}/execution/"),
            );
        c
    });
    p.wait_stderr(
        &format!("waiting for the execution API server at 127.0.0.1:{port} ({EXECUTION_API})"),
        T,
    );
    assert!(p.running(), "{}", p.stderr());
    assert_eq!(
        stub.calls(),
        ["db migrate|"],
        "migrated before waiting, not started"
    );
    let api = reserved.serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let ready = Instant::now();
    wait_for("the scheduler to start", T, || {
        (stub.calls().len() == 2).then_some(())
    });
    let late = ready.elapsed();
    assert!(late <= NOTICE, "noticed {late:?} after the server was up");
    assert_eq!(code(p.wait(T)), 0, "{}", p.stderr());
    assert_eq!(stub.calls(), ["db migrate|", "scheduler|"]);
    let err = p.stderr();
    assert!(
        err.contains(&format!(
            "execution API server http at 127.0.0.1:{port} is ready ({EXECUTION_API}"
        )),
        "{err}"
    );
    let req = &api.requests()[0];
    assert!(
        req.starts_with(&format!(
            "GET /execution/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n"
        )),
        "{req}"
    );
    for shown in [err.as_str(), req.as_str()] {
        assert!(
            !shown.contains("s3cret") && !shown.contains("airflow:"),
            "{shown}"
        );
    }
}

#[test]
fn any_http_status_is_an_answer_and_garbage_is_not() {
    let reserved = Reserved::new();
    let port = reserved.port;
    let _api = reserved.serve(b"HTTP/1.0 404 Not Found\r\n\r\n");
    let stub = Stub::new();
    let (rc, out) = run(
        &stub,
        &["airflow", "celery", "worker"],
        &[
            ("AIRFLOW_VERSION", "3.3.2"),
            (
                EXECUTION_API,
                &format!("http://127.0.0.1:{port}/execution/"),
            ),
        ],
    );
    assert_eq!(rc, 0, "{out}");
    assert_eq!(stub.calls(), ["celery worker|"]);

    // Something that is listening but not an HTTP server is not ready.
    let reserved = Reserved::new();
    let port = reserved.port;
    let _ssh = reserved.serve(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
    let stub = Stub::new();
    let start = Instant::now();
    let (rc, out) = run(
        &stub,
        &["airflow", "celery", "worker"],
        &[
            ("AIRFLOW_VERSION", "3.3.2"),
            (
                EXECUTION_API,
                &format!("http://127.0.0.1:{port}/execution/"),
            ),
            ("CONNECTION_CHECK_MAX_COUNT", "3"),
            ("CONNECTION_CHECK_SLEEP_TIME", "0.05"),
        ],
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(rc, 1, "{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "entrypoint: gave up waiting for the execution API server at 127.0.0.1:{port} ({EXECUTION_API}) after 3 attempts"
        )) && last.ends_with(": not an HTTP reply"),
        "{out}"
    );
    assert!(stub.calls().is_empty());
}

#[test]
fn who_waits_for_the_execution_api() {
    // Nothing listens there: a command that waits gives up (exit 1) without running; the others just run.
    let closed = Reserved::new();
    let url = format!("http://127.0.0.1:{}/execution/", closed.port);
    type Case = (
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        bool,
    );
    const V3: (&str, &str) = ("AIRFLOW_VERSION", "3.3.2");
    let cases: &[Case] = &[
        (&["airflow", "scheduler"], &[V3], true),
        (
            &["airflow", "scheduler"],
            &[
                V3,
                ("AIRFLOW__CORE__EXECUTOR", "LocalExecutor,CeleryExecutor"),
            ],
            true,
        ),
        (
            &["airflow", "scheduler"],
            &[V3, ("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")],
            false,
        ),
        (
            &["airflow", "scheduler"],
            &[V3, ("AIRFLOW__CORE__EXECUTOR", "KubernetesExecutor")],
            false,
        ),
        (
            &["airflow", "scheduler"],
            &[V3, ("EXECUTOR", "Celery")],
            false,
        ),
        (&["bash", "-c", "exec airflow scheduler"], &[V3], true),
        (&["airflow", "celery", "worker"], &[V3], true),
        (
            &["airflow", "celery", "worker"],
            &[V3, ("EXECUTOR", "Celery")],
            true,
        ),
        (&["airflow", "api-server"], &[V3], false),
        (&["airflow", "api-server"], &[], false),
        (&["airflow", "dag-processor"], &[V3], false),
        (&["airflow", "triggerer"], &[V3], false),
        (&["airflow", "celery", "flower"], &[V3], false),
        (&["airflow", "scheduler", "--help"], &[V3], false),
        (
            &["airflow", "celery", "worker"],
            &[V3, ("CONNECTION_CHECK_MAX_COUNT", "0")],
            false,
        ),
        (
            &["airflow", "scheduler"],
            &[("AIRFLOW_VERSION", "2.10.5")],
            false,
        ),
        (
            &["airflow", "celery", "worker"],
            &[("AIRFLOW_VERSION", "2.10.5")],
            false,
        ),
        (&["airflow", "scheduler"], &[], false),
    ];
    for (args, env, waits) in cases {
        let stub = Stub::new();
        let mut env = env.to_vec();
        for (k, v) in [
            (EXECUTION_API, url.as_str()),
            ("CONNECTION_CHECK_MAX_COUNT", "2"),
            ("CONNECTION_CHECK_SLEEP_TIME", "0.05"),
        ] {
            // The case's own value (MAX_COUNT=0) wins.
            if !env.iter().any(|(have, _)| *have == k) {
                env.push((k, v));
            }
        }
        let (rc, out) = run(&stub, args, &env);
        let gave_up = out.contains("gave up waiting for the execution API server");
        assert_eq!(
            (rc, gave_up),
            if *waits { (1, true) } else { (0, false) },
            "{args:?} {env:?}: {out}"
        );
        assert_eq!(stub.calls().is_empty(), *waits, "{args:?} {env:?}");
    }
}

#[test]
fn malformed_execution_api_url_stops_before_anything_runs() {
    for value in [
        "http://u:t0psecret@api:notaport/execution/",
        "postgresql://u:t0psecret@db/x",
        "api-server:8080/execution/",
    ] {
        let stub = Stub::new();
        let (rc, out) = run(
            &stub,
            &["airflow", "scheduler"],
            &[
                ("AIRFLOW_VERSION", "3.3.2"),
                ("AIRFLOW__API_AUTH__JWT_SECRET", "x"),
                ("_AIRFLOW_DB_MIGRATE", "true"),
                (EXECUTION_API, value),
            ],
        );
        assert_eq!(rc, 2, "{value}: {out}");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.starts_with(&format!(
                "entrypoint: {EXECUTION_API} is not a valid connection URL: "
            )),
            "{out}"
        );
        assert!(!out.contains("t0psecret"), "{out}");
        assert!(
            stub.calls().is_empty(),
            "nothing migrated: {:?}",
            stub.calls()
        );
    }
}

exec_and_pid1_tests!(
    sigterm_ends_the_execution_api_wait_promptly,
    sigterm_ends_the_execution_api_wait_promptly_as_pid1,
    sigterm_ends_the_execution_api_wait_promptly_in
);

fn sigterm_ends_the_execution_api_wait_promptly_in(inits: &[Init]) {
    let closed = Reserved::new();
    let url = format!("http://127.0.0.1:{}/execution/", closed.port);
    sigterm_stops_start_up(
        inits,
        &[("AIRFLOW_VERSION", "3.3.2"), (EXECUTION_API, &url)],
        Until::Said("waiting for the execution API server"),
        "SIGTERM while waiting for the execution API server",
        |c| c,
    );
}

/// AuthenticationOk: what a trust-auth PostgreSQL answers to a StartupMessage.
const PG_AUTH_OK: &[u8] = b"R\x00\x00\x00\x08\x00\x00\x00\x00";

#[test]
fn url_forms_of_sqlalchemy_and_libpq_reach_the_database() {
    // Issue #11 item 6: each of these used to wait forever on a database that was up, or exit 2.
    let up = Reserved::new();
    let port = up.port;
    let _pg = up.trickle(PG_AUTH_OK, b'Z');
    let closed = Reserved::new().port;
    for url in [
        // psycopg2's host=H:P, one or several
        format!("postgresql+psycopg2://u:pw@/airflow?host=127.0.0.1:{port}"),
        format!(
            "postgresql+psycopg2://u:pw@/airflow?host=127.0.0.1:{closed}&host=127.0.0.1:{port}"
        ),
        // libpq's lists: a port per host
        format!("postgresql://u:pw@/airflow?host=127.0.0.1,127.0.0.1&port={closed},{port}"),
        format!("postgresql://u:pw@127.0.0.1:{closed},127.0.0.1:{port}/airflow"),
        // a raw ? in the password, which SQLAlchemy parses
        format!("postgresql://airflow:ZQX?pw@127.0.0.1:{port}/airflow"),
    ] {
        let stub = Stub::new();
        let (rc, out) = run(
            &stub,
            &["airflow", "scheduler"],
            &[
                ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", &url),
                ("CONNECTION_CHECK_MAX_COUNT", "3"),
            ],
        );
        let shown = url.replace(&port.to_string(), "PORT");
        assert_eq!(rc, 0, "{shown}: {out}");
        assert!(
            out.contains(&format!("127.0.0.1:{port} is ready")),
            "{shown}: {out}"
        );
        assert_eq!(stub.calls(), ["scheduler|"], "{shown}");
        for secret in ["pw", "ZQX"] {
            assert!(!out.contains(secret), "{shown}: {out}");
        }
    }
}

#[test]
fn echoed_values_are_capped_and_control_characters_refused() {
    // Issue #11 item 7: a 1 MB host from a _CMD, a %00 in a host, a 100 kB ASTRONOMER_USER.
    let stub = Stub::new();
    let (rc, out) = run(
        &stub,
        &["airflow", "scheduler"],
        &[(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
            "printf 'postgresql://u:p@'; head -c 1000000 /dev/zero | tr '\\0' h; echo /db",
        )],
    );
    assert_eq!(rc, 2, "{}", &out[..out.len().min(500)]);
    assert!(out.len() < 1000, "{} bytes echoed", out.len());
    for value in [
        "postgresql://u:p@db%00x/db",
        "postgresql://u:p@db%0Aevil/db",
    ] {
        let stub = Stub::new();
        let start = Instant::now();
        let (rc, out) = run(
            &stub,
            &["airflow", "scheduler"],
            &[("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", value)],
        );
        assert_eq!(rc, 2, "{value}: {out}");
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(out.contains("control character"), "{out}");
        assert_eq!(out.lines().count(), 1, "{out}");
    }
}

/// As root the entrypoint looks ASTRONOMER_USER up (to step down to it): a 100 kB name is capped in the message,
/// and a name with control characters cannot forge a second line. Split from the test above (run without root it
/// skipped this part).
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn an_astronomer_user_echoed_as_root_is_capped_and_cannot_forge_lines() {
    require_root!();
    let user = "x".repeat(100_000);
    let out = std::process::Command::new(ENTRYPOINT)
        .arg("true")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("ASTRONOMER_USER", &user)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 2, "{}", &err[..err.len().min(300)]);
    assert!(err.len() < 500, "{} bytes echoed", err.len());
    let user = "ghost\u{1b}[2J\nentrypoint: forged";
    let out = std::process::Command::new(ENTRYPOINT)
        .arg("true")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("ASTRONOMER_USER", user)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains('\u{1b}'), "{err}");
}

#[test]
fn a_cmd_leaving_a_background_process_on_stdout_does_not_hold_start_up() {
    // Issue #11 item 4: the URL is what the command printed when it exited; `sleep 30 &` keeps stdout open.
    let up = Reserved::new();
    let port = up.port;
    let _redis = up.trickle(b"+PONG\r\n", b' ');
    let stub = Stub::new();
    let start = Instant::now();
    let (rc, out) = run(
        &stub,
        &["airflow", "triggerer"],
        &[(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
            // Its stderr goes elsewhere: the test waits for the entrypoint's stderr to close.
            &format!("echo redis://127.0.0.1:{port}/0; sleep 30 2>/dev/null &"),
        )],
    );
    assert_eq!(rc, 0, "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}: {out}",
        start.elapsed()
    );
    assert_eq!(stub.calls(), ["triggerer|"]);
}

#[test]
fn a_cmd_printing_megabytes_is_refused() {
    let stub = Stub::new();
    let (rc, out) = run(
        &stub,
        &["airflow", "triggerer"],
        &[(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
            "head -c 10000000 /dev/zero",
        )],
    );
    assert_eq!(rc, 2, "{out}");
    assert!(out.contains("printed more than 64 KiB"), "{out}");
    assert!(stub.calls().is_empty());
}
