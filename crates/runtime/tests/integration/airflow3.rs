//! Airflow 3 start-up with a stub `airflow` on PATH: the command table, the auth manager, the JWT secret warning.

use crate::util::*;

const V3: (&str, &str) = ("AIRFLOW_VERSION", "3.3.2");
const V2: (&str, &str) = ("AIRFLOW_VERSION", "2.10.5");
const SIMPLE: &str =
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager";
const FAB: &str = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager";
const JWT_LINE: &str = "AIRFLOW__API_AUTH__JWT_SECRET is not set";

fn lines_with<'a>(out: &'a str, needle: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn which_commands_wait_for_the_database_and_the_broker() {
    // Both servers down: a command that waits for one gives up after one attempt and runs nothing.
    let (db_port, broker_port) = (Reserved::new(), Reserved::new());
    let db_down = format!("postgresql://127.0.0.1:{}/x", db_port.port);
    let broker_down = format!("redis://127.0.0.1:{}/0", broker_port.port);
    // (version, argv, waits for the database, waits for the broker)
    type Case = (Option<&'static str>, &'static [&'static str], bool, bool);
    let cases: &[Case] = &[
        (Some("3.3.2"), &["airflow", "api-server"], true, false),
        (
            Some("3.3.2"),
            &["bash", "-c", "exec airflow api-server"],
            true,
            false,
        ),
        (Some("3.3.2"), &["airflow", "scheduler"], true, true),
        (Some("3.3.2"), &["airflow", "dag-processor"], true, false),
        (Some("3.3.2"), &["airflow", "triggerer"], true, false),
        (Some("3.3.2"), &["airflow", "celery", "worker"], true, true),
        (Some("3.3.2"), &["airflow", "celery", "flower"], false, true),
        (Some("3.3.2"), &["airflow", "db", "migrate"], true, false),
        (
            Some("3.3.2"),
            &[
                "airflow",
                "jobs",
                "check",
                "--job-type",
                "SchedulerJob",
                "--local",
            ],
            true,
            false,
        ),
        (
            Some("3.3.2"),
            &["airflow", "users", "create", "-r", "Admin"],
            true,
            false,
        ),
        (Some("3.3.2"), &["airflow", "version"], false, false),
        // KubernetesExecutor task pods of 3.x: no database (and no credentials for one) there.
        (
            Some("3.3.2"),
            &[
                "python",
                "-m",
                "airflow.sdk.execution_time.execute_workload",
                "--json-string",
                "{}",
            ],
            false,
            false,
        ),
        (
            None,
            &[
                "bash",
                "-c",
                "exec python -m airflow.sdk.execution_time.execute_workload --json-string {}",
            ],
            false,
            false,
        ),
        (None, &["airflow", "api-server"], true, false),
        // 2.x as before: Flower waits for both.
        (Some("2.10.5"), &["airflow", "celery", "flower"], true, true),
        (None, &["airflow", "celery", "flower"], true, true),
        (Some("2.10.5"), &["airflow", "webserver"], true, false),
    ];
    for (version, args, db, broker) in cases {
        for (db_url, broker_url, waits, what) in [
            (db_down.as_str(), "memory://", *db, "database"),
            (
                "sqlite:////tmp/airflow.db",
                broker_down.as_str(),
                *broker,
                "broker",
            ),
        ] {
            let stub = Stub::new();
            stub.add_program("python");
            let mut env = vec![
                ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", db_url),
                ("AIRFLOW__CELERY__BROKER_URL", broker_url),
                ("CONNECTION_CHECK_MAX_COUNT", "1"),
                ("AIRFLOW__API_AUTH__JWT_SECRET", "x"),
            ];
            if let Some(v) = version {
                env.push(("AIRFLOW_VERSION", v));
            }
            let (rc, out) = run(&stub, args, &env);
            let gave_up = !lines_with(&out, &format!("gave up waiting for the {what}")).is_empty();
            assert_eq!(
                (rc != 0, gave_up),
                (waits, waits),
                "{version:?} {args:?} {what}: {out}"
            );
            // Waited and gave up: nothing ran. Did not wait: the command ran.
            assert_eq!(
                stub.calls().is_empty(),
                waits,
                "{version:?} {args:?} {what}"
            );
        }
    }
}

#[test]
fn auth_manager_decides_the_fab_commands() {
    let user_create = "users create --username admin --firstname Airflow --lastname Admin --email \
                       airflowadmin@example.com --role Admin|";
    let create = [("_AIRFLOW_WWW_USER_CREATE", "true")];
    type Case<'a> = (&'a [&'a str], Vec<(&'a str, &'a str)>, Vec<&'a str>, bool);
    // (argv, env, calls, warns that user creation needs FAB)
    let cases: Vec<Case> = vec![
        (
            &["airflow", "api-server"],
            vec![V3],
            vec!["sync-perm|", "api-server|"],
            false,
        ),
        (
            &["airflow", "api-server"],
            vec![V3, ("AIRFLOW__CORE__AUTH_MANAGER", FAB)],
            vec!["sync-perm|", "api-server|"],
            false,
        ),
        (
            &["airflow", "api-server"],
            vec![V3, ("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE)],
            vec!["api-server|"],
            false,
        ),
        (
            &["airflow", "api-server"],
            vec![
                V3,
                ("AIRFLOW__CORE__AUTH_MANAGER", FAB),
                create[0],
                ("_AIRFLOW_WWW_USER_PASSWORD", "pw"),
                ("_AIRFLOW_DB_MIGRATE", "true"),
            ],
            vec!["db migrate|", "sync-perm|", user_create, "api-server|"],
            false,
        ),
        // Another auth manager: no FAB command, one warning, start-up goes on (no password needed).
        (
            &["airflow", "api-server"],
            vec![V3, ("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE), create[0]],
            vec!["api-server|"],
            true,
        ),
        (
            &["bash", "-c", "exec airflow scheduler"],
            vec![
                V3,
                ("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE),
                create[0],
                ("_AIRFLOW_WWW_USER_PASSWORD", "pw"),
                ("_AIRFLOW_DB_MIGRATE", "true"),
            ],
            vec!["db migrate|", "scheduler|"],
            true,
        ),
        (
            &["airflow", "users", "create", "-r", "Admin"],
            vec![V3, ("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE)],
            vec!["users create -r Admin|"],
            false,
        ),
        (
            &["airflow", "users", "create", "-r", "Admin"],
            vec![V3],
            vec!["sync-perm|", "users create -r Admin|"],
            false,
        ),
        // 2.x keeps assuming FAB, as it always has.
        (
            &["airflow", "webserver"],
            vec![V2, ("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE)],
            vec!["sync-perm|", "webserver|"],
            false,
        ),
    ];
    for (args, mut env, want, warns) in cases {
        env.push(("AIRFLOW__API_AUTH__JWT_SECRET", "x"));
        let stub = Stub::new();
        let (rc, out) = run(&stub, args, &env);
        assert_eq!(rc, 0, "{args:?} {env:?}: {out}");
        assert_eq!(stub.calls(), want, "{args:?} {env:?}");
        let warning = lines_with(&out, "_AIRFLOW_WWW_USER_CREATE");
        if warns {
            assert_eq!(warning.len(), 1, "{out}");
            for needle in [
                "[WARN ",
                "needs the FAB auth manager",
                SIMPLE,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
                FAB,
            ] {
                assert!(warning[0].contains(needle), "{needle}: {out}");
            }
            assert!(!out.contains("pw"), "{out}");
        } else {
            assert!(warning.is_empty(), "{out}");
        }
    }
}

#[test]
fn jwt_secret_warning_once_for_airflow_3_components() {
    let components: &[&[&str]] = &[
        &["airflow", "api-server"],
        &["airflow", "scheduler"],
        &["airflow", "dag-processor"],
        &["airflow", "triggerer"],
        &["airflow", "celery", "worker"],
        &["bash", "-c", "exec airflow celery worker -q default"],
    ];
    let secret = "t0pS3cret-jwt";
    for args in components {
        let stub = Stub::new();
        let (rc, out) = run(&stub, args, &[V3]);
        assert_eq!(rc, 0, "{args:?}: {out}");
        let lines = lines_with(&out, "JWT");
        assert_eq!(lines.len(), 1, "{args:?}: {out}");
        for needle in [
            "[WARN ",
            JWT_LINE,
            "AIRFLOW__API_AUTH__JWT_SECRET_CMD",
            "AIRFLOW__API_AUTH__JWT_SECRET_SECRET",
            "must share the same JWT secret",
            "authentication errors between workers and the API server",
        ] {
            assert!(lines[0].contains(needle), "{needle}: {out}");
        }
        // An empty value is no secret.
        let (_, out) = run(&stub, args, &[V3, ("AIRFLOW__API_AUTH__JWT_SECRET", "")]);
        assert_eq!(lines_with(&out, JWT_LINE).len(), 1, "{args:?}: {out}");
        for var in [
            "AIRFLOW__API_AUTH__JWT_SECRET",
            "AIRFLOW__API_AUTH__JWT_SECRET_CMD",
            "AIRFLOW__API_AUTH__JWT_SECRET_SECRET",
        ] {
            let (rc, out) = run(&stub, args, &[V3, (var, secret)]);
            assert_eq!(rc, 0, "{args:?} {var}: {out}");
            assert!(
                !out.contains("JWT") && !out.contains(secret),
                "{args:?} {var}: {out}"
            );
        }
    }
    // Not on 2.x, not for other commands, and an unknown version is 3.x only when the command says so.
    type Quiet<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let quiet: &[Quiet] = &[
        (&["airflow", "scheduler"], &[V2]),
        (&["airflow", "celery", "worker"], &[V2]),
        (&["airflow", "triggerer"], &[V2]),
        (&["airflow", "dag-processor"], &[V2]),
        (&["airflow", "webserver"], &[V2]),
        (&["airflow", "scheduler"], &[]),
        (&["airflow", "celery", "worker"], &[]),
        (&["airflow", "celery", "flower"], &[V3]),
        (&["airflow", "db", "migrate"], &[V3]),
        (&["airflow", "jobs", "check"], &[V3]),
        (&["airflow", "version"], &[V3]),
        (&["airflow", "scheduler", "--help"], &[V3]),
    ];
    for (args, env) in quiet {
        let stub = Stub::new();
        let (rc, out) = run(&stub, args, env);
        assert_eq!(rc, 0, "{args:?}: {out}");
        assert!(!out.contains("JWT"), "{args:?} {env:?}: {out}");
    }
    let stub = Stub::new();
    let (_, out) = run(&stub, &["airflow", "api-server"], &[]);
    assert_eq!(lines_with(&out, JWT_LINE).len(), 1, "{out}");
}
