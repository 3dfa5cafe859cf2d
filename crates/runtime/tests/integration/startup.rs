//! Start-up work with a stub `airflow` on PATH: which Airflow commands run, in which order, and failures.

use crate::util::*;
use std::time::{Duration, Instant};

#[test]
fn webserver_syncs_permissions_first() {
    for args in [
        &["airflow", "webserver"][..],
        &["bash", "-c", "exec airflow webserver -p 8080"],
    ] {
        let stub = Stub::new();
        let (rc, out) = run(&stub, args, &[]);
        assert_eq!(rc, 0, "{out}");
        let want = if args[0] == "bash" {
            "webserver -p 8080|"
        } else {
            "webserver|"
        };
        assert_eq!(stub.calls(), ["sync-perm|", want], "{args:?}");
    }
}

#[test]
fn start_up_tasks_in_order_and_password_never_shown() {
    let stub = Stub::new();
    let (rc, out) = run(
        &stub,
        &["airflow", "webserver"],
        &[
            ("_AIRFLOW_DB_MIGRATE", "true"),
            ("_AIRFLOW_WWW_USER_CREATE", "true"),
            ("_AIRFLOW_WWW_USER_PASSWORD", "Sup3rS3cret"),
        ],
    );
    assert_eq!(rc, 0, "{out}");
    assert_eq!(
        stub.calls(),
        [
            "db migrate|",
            "sync-perm|",
            "users create --username admin --firstname Airflow --lastname Admin --email airflowadmin@example.com \
             --role Admin|",
            "webserver|"
        ]
    );
    assert!(!out.contains("Sup3rS3cret"), "{out}");
    // Issue #11 item 16: never an argument; it answers the two prompts on stdin, with no terminal to ask at.
    assert_eq!(stub.stdin(), ["Sup3rS3cret|Sup3rS3cret|no-tty"]);
}

#[test]
fn the_user_password_never_appears_in_arguments_even_with_a_terminal() {
    // Under `script` the entrypoint has a controlling terminal (docker run -t): the prompt must still read stdin,
    // never wait at the terminal, and the password must not be in any argument list.
    assert!(
        std::process::Command::new("script")
            .arg("--version")
            .output()
            .is_ok(),
        "needs script(1), from util-linux (bsdutils on Debian)"
    );
    let stub = Stub::new();
    let mut c = std::process::Command::new("script");
    c.args([
        "-qec",
        &format!("{ENTRYPOINT} airflow webserver"),
        "/dev/null",
    ])
    .env_clear()
    .env("PATH", stub.path())
    .envs(same_user())
    .env("HOME", "/root")
    .env("_AIRFLOW_WWW_USER_CREATE", "true")
    .env("_AIRFLOW_WWW_USER_PASSWORD", "Sup3rS3cret");
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(out.status), 0, "{text}");
    assert!(
        stub.calls().iter().all(|c| !c.contains("Sup3rS3cret")),
        "{:?}",
        stub.calls()
    );
    assert_eq!(stub.stdin(), ["Sup3rS3cret|Sup3rS3cret|no-tty"]);
}

#[test]
fn a_password_with_a_line_break_is_refused() {
    let stub = Stub::new();
    let (rc, out) = run(
        &stub,
        &["airflow", "webserver"],
        &[
            ("_AIRFLOW_WWW_USER_CREATE", "true"),
            ("_AIRFLOW_WWW_USER_PASSWORD", "two\nlines"),
        ],
    );
    assert_eq!(rc, 2, "{out}");
    assert!(out.contains("line break"), "{out}");
    assert!(!out.contains("two") && !out.contains("lines\n"), "{out}");
    assert!(stub.calls().is_empty());
}

#[test]
fn user_password_from_cmd() {
    let stub = Stub::new();
    let (rc, out) = run(
        &stub,
        &["airflow", "scheduler"],
        &[
            ("_AIRFLOW_WWW_USER_CREATE", "true"),
            ("_AIRFLOW_WWW_USER_USERNAME", "ops"),
            ("_AIRFLOW_WWW_USER_PASSWORD_CMD", "echo fr0mCmd"),
        ],
    );
    assert_eq!(rc, 0, "{out}");
    let calls = stub.calls();
    assert_eq!(calls[0], "sync-perm|", "roles exist before a user gets one");
    assert!(
        calls[1].starts_with("users create --username ops ") && calls[1].ends_with("--role Admin|")
    );
    assert_eq!(calls[2], "scheduler|");
    assert!(!out.contains("fr0mCmd"));
    assert_eq!(stub.stdin(), ["fr0mCmd|fr0mCmd|no-tty"]);
}

#[test]
fn user_create_without_password_stops() {
    let stub = Stub::new();
    let (rc, out) = run(
        &stub,
        &["airflow", "webserver"],
        &[("_AIRFLOW_WWW_USER_CREATE", "true")],
    );
    assert_eq!(rc, 2, "{out}");
    assert!(out.contains("_AIRFLOW_WWW_USER_PASSWORD"), "{out}");
    assert!(stub.calls().is_empty());
}

#[test]
fn a_failing_start_up_command_stops_start_up() {
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        // sync-perm and db migrate are tried three times (losing a race with another is not a failure), then
        // stop start-up.
        ("sync-perm", &[], &["sync-perm|", "sync-perm|", "sync-perm|"]),
        ("db migrate", &[("_AIRFLOW_DB_MIGRATE", "true")], &["db migrate|", "db migrate|", "db migrate|"]),
        (
            "users create",
            &[("_AIRFLOW_DB_MIGRATE", "true"), ("_AIRFLOW_WWW_USER_CREATE", "true"), ("_AIRFLOW_WWW_USER_PASSWORD", "x")],
            &["db migrate|", "sync-perm|", "users create --username admin --firstname Airflow --lastname Admin --email airflowadmin@example.com --role Admin|"],
        ),
    ];
    for (failing, env, want) in cases {
        let stub = Stub::new();
        let mut env = env.to_vec();
        env.push(("STUB_FAIL", failing));
        let (rc, out) = run(&stub, &["airflow", "webserver"], &env);
        assert_eq!(rc, 3, "{failing}: {out}");
        assert_eq!(stub.calls(), *want, "{failing}");
        // The failing command's own output is shown, then one line from us.
        let word = failing.split(' ').next().unwrap();
        assert!(
            out.contains(&format!("stub: {word} is failing on purpose")),
            "{out}"
        );
        let ours = out
            .lines()
            .find(|l| l.contains("failed with exit status 3"))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(
            ours.starts_with(&format!("entrypoint: airflow {failing}")),
            "{out}"
        );
    }
}

#[test]
fn executor_shim() {
    let stub = Stub::new();
    run(&stub, &["airflow", "version"], &[("EXECUTOR", "Celery")]);
    run(
        &stub,
        &["airflow", "version"],
        &[
            ("EXECUTOR", "Celery"),
            ("AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
        ],
    );
    run(&stub, &["airflow", "version"], &[]);
    assert_eq!(
        stub.calls(),
        [
            "version|CeleryExecutor",
            "version|LocalExecutor",
            "version|"
        ]
    );
}

#[test]
fn commands_that_never_touch_the_database_do_not_wait() {
    // A database that is never up: these must not wait for it.
    let url = format!("postgresql://127.0.0.1:{}/x", free_port());
    for args in [
        &["airflow", "version"][..],
        &["airflow", "--help"],
        &["airflow", "config", "list"],
        &["airflow", "info"],
        &["airflow", "cheat-sheet"],
        &["airflow", "scheduler", "--help"],
        &["/bin/true"],
    ] {
        let stub = Stub::new();
        let (rc, out) = run(
            &stub,
            args,
            &[("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", &url)],
        );
        assert_eq!(rc, 0, "{args:?}: {out}");
        assert!(!out.contains("waiting"), "{args:?}: {out}");
    }
}

#[test]
fn malformed_url_is_one_line_and_immediate() {
    let cases = [
        (
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            "postgresql://u:t0psecret@db:notaport/x",
            &["airflow", "scheduler"][..],
        ),
        (
            "AIRFLOW__CORE__SQL_ALCHEMY_CONN",
            "u:t0psecret@db:5432",
            &["airflow", "webserver"],
        ),
        (
            "AIRFLOW__CELERY__BROKER_URL",
            "redis://:t0psecret@[::1/0",
            &["airflow", "celery", "worker"],
        ),
    ];
    for (var, value, args) in cases {
        let stub = Stub::new();
        let start = std::time::Instant::now();
        let (rc, out) = run(&stub, args, &[(var, value)]);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(rc, 2, "{out}");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.starts_with(&format!(
                "entrypoint: {var} is not a valid connection URL: "
            )),
            "{out}"
        );
        assert!(!out.contains("t0psecret"));
        assert!(stub.calls().is_empty());
    }
}

#[test]
fn bad_settings_are_one_line() {
    let stub = Stub::new();
    let (rc, out) = run(
        &stub,
        &["airflow", "scheduler"],
        &[("CONNECTION_CHECK_MAX_COUNT", "many")],
    );
    assert_eq!((rc, out.lines().count()), (2, 1), "{out}");
    assert!(out.contains("CONNECTION_CHECK_MAX_COUNT"));
    stub.entrypoint(&[]).ran().assert_code(2);
}

#[test]
fn users_create_or_add_role_as_the_command_syncs_permissions_first() {
    // Issue #9: right after `airflow db migrate` on a fresh database the roles do not exist yet ("Admin is not a
    // valid role") because the image leaves them to sync-perm.
    let create =
        "users create --username u --firstname F --lastname L --email u@example.com --role Admin \
                  --password p";
    type Case = (
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        Vec<String>,
    );
    let cases: Vec<Case> = vec![
        (
            &[
                "airflow",
                "users",
                "create",
                "--username",
                "u",
                "--firstname",
                "F",
                "--lastname",
                "L",
                "--email",
                "u@example.com",
                "--role",
                "Admin",
                "--password",
                "p",
            ],
            &[("AIRFLOW_VERSION", "2.10.5")],
            vec!["sync-perm|".into(), format!("{create}|")],
        ),
        (
            &["bash", "-c", "exec airflow users add-role -u u -r Op"],
            &[],
            vec!["sync-perm|".into(), "users add-role -u u -r Op|".into()],
        ),
        (
            &["airflow", "users", "add-role", "-u", "u", "-r", "Op"],
            &[("_AIRFLOW_DB_MIGRATE", "true")],
            vec![
                "db migrate|".into(),
                "sync-perm|".into(),
                "users add-role -u u -r Op|".into(),
            ],
        ),
        // Once, also when _AIRFLOW_WWW_USER_CREATE creates a user first.
        (
            &["airflow", "users", "add-role", "-u", "u", "-r", "Op"],
            &[
                ("_AIRFLOW_WWW_USER_CREATE", "true"),
                ("_AIRFLOW_WWW_USER_PASSWORD", "x"),
            ],
            vec![
                "sync-perm|".into(),
                "users create --username admin --firstname Airflow --lastname Admin --email \
                 airflowadmin@example.com --role Admin|"
                    .into(),
                "users add-role -u u -r Op|".into(),
            ],
        ),
        // Not before other commands.
        (
            &["airflow", "users", "list"],
            &[],
            vec!["users list|".into()],
        ),
        (
            &["airflow", "users", "create", "--help"],
            &[],
            vec!["users create --help|".into()],
        ),
        (
            &["airflow", "roles", "list"],
            &[],
            vec!["roles list|".into()],
        ),
    ];
    for (args, env, want) in cases {
        let stub = Stub::new();
        let (rc, out) = run(&stub, args, env);
        assert_eq!(rc, 0, "{args:?}: {out}");
        assert_eq!(stub.calls(), want, "{args:?}");
    }
}

#[test]
fn sync_perm_and_migrate_are_tried_again_after_losing_a_race() {
    let stub = Stub::new();
    let (rc, out) = run(
        &stub,
        &["airflow", "webserver"],
        &[("STUB_FAIL", "sync-perm"), ("STUB_FAIL_TIMES", "1")],
    );
    assert_eq!(rc, 0, "{out}");
    assert_eq!(stub.calls(), ["sync-perm|", "sync-perm|", "webserver|"]);
    assert!(
        out.contains("airflow sync-perm failed with exit status 3; another sync-perm may be writing the same permissions: trying again in 2 s"),
        "{out}"
    );
    assert!(!out.contains("not starting the command"), "{out}");

    let stub = Stub::new();
    let (rc, out) = run(
        &stub,
        &["airflow", "scheduler"],
        &[
            ("_AIRFLOW_DB_MIGRATE", "true"),
            ("STUB_FAIL", "db migrate"),
            ("STUB_FAIL_TIMES", "2"),
        ],
    );
    assert_eq!(rc, 0, "{out}");
    assert_eq!(
        stub.calls(),
        ["db migrate|", "db migrate|", "db migrate|", "scheduler|"]
    );
    assert!(
        out.contains("airflow db migrate failed with exit status 3; another migration may be running at the same time: trying again in 4 s"),
        "{out}"
    );
}

#[test]
fn sigterm_while_waiting_to_retry_sync_perm_stops_at_once() {
    let stub = Stub::new();
    let mut p = Proc::spawn({
        let mut c = stub.entrypoint(&["airflow", "webserver"]);
        c.env("STUB_FAIL", "sync-perm");
        c
    });
    p.wait_stderr("trying again in 2 s", Duration::from_secs(20));
    let t0 = Instant::now();
    kill(p.pid(), libc::SIGTERM);
    let st = p.wait(Duration::from_secs(20));
    assert_eq!(code(st), 143, "{}", p.stderr());
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "took {:?} to stop",
        t0.elapsed()
    );
    assert_eq!(stub.calls(), ["sync-perm|"], "retried after SIGTERM");
}
