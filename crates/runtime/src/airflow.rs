//! What the command is, and everything start-up decides from it: one place, table-tested ([`plan`]).

/// The Airflow command found in the container's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Anything else still runs, with no waiting.
    Other,
    /// `python -m airflow.sdk…`: a Task SDK process, e.g. an Airflow 3 KubernetesExecutor task pod
    /// (`python -m airflow.sdk.execution_time.execute_workload …`). It talks only to the API server and has no
    /// database credentials: it waits for nothing.
    TaskSdk,
    Airflow {
        cmd: Option<String>,
        sub: Option<String>,
        help: bool,
    },
}

/// Subcommands that never open a database connection: no waiting for them (README lists them).
pub const NO_DB: &[&str] = &["version", "help", "cheat-sheet", "config", "info"];

/// Set by the images (as by the official image) to the installed Airflow version, e.g. `3.3.2`.
pub const VERSION_VAR: &str = "AIRFLOW_VERSION";
pub const AUTH_MANAGER_VAR: &str = "AIRFLOW__CORE__AUTH_MANAGER";
/// The image's default auth manager.
pub const FAB_AUTH_MANAGER: &str =
    "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager";
pub const EXECUTOR_VAR: &str = "AIRFLOW__CORE__EXECUTOR";
pub const EXECUTION_API_VAR: &str = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL";
/// `[api_auth] jwt_secret` and its `_CMD`/`_SECRET` forms: any one of them set counts.
pub const JWT_SECRET_VARS: &[&str] = &[
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API_AUTH__JWT_SECRET_CMD",
    "AIRFLOW__API_AUTH__JWT_SECRET_SECRET",
];

const SHELLS: &[&str] = &["bash", "sh", "dash", "ash", "zsh", "ksh"];

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

fn airflow_words(args: &[String]) -> Kind {
    let help = args.iter().any(|a| a == "--help" || a == "-h");
    let mut words = args.iter().take_while(|a| !a.starts_with('-'));
    let cmd = words.next().cloned();
    let sub = words.next().cloned();
    Kind::Airflow { cmd, sub, help }
}

/// `python… [options] -m airflow.sdk[.…]` in these words.
fn task_sdk(words: &[String]) -> bool {
    let Some(p) = words.iter().position(|w| basename(w).starts_with("python")) else {
        return false;
    };
    words[p..]
        .windows(2)
        .any(|w| w[0] == "-m" && (w[1] == "airflow.sdk" || w[1].starts_with("airflow.sdk.")))
}

/// Split a `sh -c` script into simple commands (at `; & | ( ) \n` and backticks), each a list of words with
/// quotes removed. Crude by design: it only has to find `airflow <cmd> [<sub>]`.
fn shell_commands(script: &str) -> Vec<Vec<String>> {
    script
        .split([';', '&', '|', '(', ')', '\n', '`'])
        .map(|c| {
            c.split_whitespace()
                .map(|w| w.trim_matches(|ch| ch == '"' || ch == '\'').to_string())
                .filter(|w| !w.is_empty())
                .collect()
        })
        .collect()
}

pub fn classify(argv: &[String]) -> Kind {
    let Some(first) = argv.first() else {
        return Kind::Other;
    };
    let prog = basename(first);
    if prog == "airflow" {
        return airflow_words(&argv[1..]);
    }
    if prog.starts_with("python") {
        if task_sdk(argv) {
            return Kind::TaskSdk;
        }
        if let Some(i) = argv.iter().position(|a| a == "-m") {
            if argv.get(i + 1).map(String::as_str) == Some("airflow") {
                return airflow_words(&argv[i + 2..]);
            }
        }
        return Kind::Other;
    }
    if SHELLS.contains(&prog) {
        // `-c`, possibly clustered as in `-ec` or `-lc`; the script is the next word.
        let c = argv
            .iter()
            .skip(1)
            .position(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('c'));
        if let Some(script) = c.and_then(|i| argv.get(i + 2)) {
            for words in shell_commands(script) {
                if task_sdk(&words) {
                    return Kind::TaskSdk;
                }
                if let Some(i) = words.iter().position(|w| basename(w) == "airflow") {
                    return airflow_words(&words[i + 1..]);
                }
            }
        }
    }
    Kind::Other
}

/// `airflow CMD [SUB]` that really runs (not `-h`/`--help`, not bare `airflow`): (CMD, SUB or "").
fn running(k: &Kind) -> Option<(&str, &str)> {
    match k {
        Kind::Airflow {
            cmd: Some(c),
            sub,
            help: false,
        } => Some((c, sub.as_deref().unwrap_or(""))),
        _ => None,
    }
}

/// Airflow's major version: the leading number of `AIRFLOW_VERSION`; when that is unset (or not a version), only
/// what the command itself says (`api-server`, `dag-processor` and the Task SDK mean 3.x); otherwise unknown,
/// which start-up treats as 2.x.
pub fn major_version(airflow_version: Option<&str>, kind: &Kind) -> Option<u32> {
    let digits: String = airflow_version
        .unwrap_or("")
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if let Ok(m) = digits.parse() {
        return Some(m);
    }
    match (kind, running(kind)) {
        (Kind::TaskSdk, _) | (_, Some(("api-server" | "dag-processor", _))) => Some(3),
        _ => None,
    }
}

fn is_3(major: Option<u32>) -> bool {
    major.is_some_and(|m| m >= 3)
}

/// Whether `AIRFLOW__CORE__AUTH_MANAGER` means FAB's auth manager: unset (the image's default) or a class path
/// with a `fab` (or `fab_auth_manager`) module in it.
pub fn is_fab(auth_manager: Option<&str>) -> bool {
    match auth_manager.map(str::trim).filter(|a| !a.is_empty()) {
        None => true,
        Some(a) => a.split('.').any(|m| m == "fab" || m == "fab_auth_manager"),
    }
}

/// Whether the executors of `AIRFLOW__CORE__EXECUTOR` (one, or a comma-separated list of names, class paths or
/// `alias:path`) include the LocalExecutor; unset is the LocalExecutor (Airflow 3's default).
pub fn runs_local_executor(executor: Option<&str>) -> bool {
    match executor.map(str::trim).filter(|e| !e.is_empty()) {
        None => true,
        Some(list) => list
            .split(',')
            .any(|e| e.trim().rsplit(['.', ':']).next() == Some("LocalExecutor")),
    }
}

pub fn needs_db(k: &Kind, major: Option<u32>) -> bool {
    match running(k) {
        None => false,
        Some((c, _)) if NO_DB.contains(&c) => false,
        // Flower reads the broker only; on 2.x it has always waited for the database too, and still does.
        Some(("celery", "flower")) => !is_3(major),
        Some(_) => true,
    }
}

pub fn needs_broker(k: &Kind) -> bool {
    matches!(
        running(k),
        Some(("scheduler", _) | ("celery", "worker" | "flower"))
    )
}

/// What start-up reads from the environment, looked up already so that [`plan`] is pure.
#[derive(Debug, Clone, Default)]
pub struct Settings<'a> {
    /// `AIRFLOW_VERSION`
    pub airflow_version: Option<&'a str>,
    /// `AIRFLOW__CORE__AUTH_MANAGER`
    pub auth_manager: Option<&'a str>,
    /// `AIRFLOW__CORE__EXECUTOR`, after the `EXECUTOR` shim
    pub executor: Option<&'a str>,
    /// any of [`JWT_SECRET_VARS`] is set
    pub jwt_secret_set: bool,
    /// `_AIRFLOW_DB_MIGRATE` (or `_AIRFLOW_DB_UPGRADE`) is true
    pub migrate: bool,
    /// `_AIRFLOW_WWW_USER_CREATE` is true
    pub user_create: bool,
}

/// Everything the entrypoint does before the command, in the order it does it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub major: Option<u32>,
    /// Warn once: a 3.x component without a shared JWT secret.
    pub jwt_warning: bool,
    /// Warn once: `_AIRFLOW_WWW_USER_CREATE` with an auth manager other than FAB; nobody is created.
    pub user_needs_fab: bool,
    pub wait_db: bool,
    pub wait_broker: bool,
    /// `airflow db migrate`
    pub migrate: bool,
    /// `airflow sync-perm`: the image leaves FAB's roles to it, so it runs before a user is given one.
    pub sync_perm: bool,
    /// `airflow users create` from `_AIRFLOW_WWW_USER_*`.
    pub create_user: bool,
    /// Wait for `AIRFLOW__CORE__EXECUTION_API_SERVER_URL`, when it is set, after the start-up tasks.
    pub wait_execution_api: bool,
}

pub fn plan(kind: &Kind, s: &Settings) -> Plan {
    let major = major_version(s.airflow_version, kind);
    let v3 = is_3(major);
    // 2.x (or unknown) assumes FAB as it always has; on 3.x the FAB commands exist only with FAB's auth manager.
    let fab = !v3 || is_fab(s.auth_manager);
    let (cmd, sub) = running(kind).unwrap_or(("", ""));
    let create_user = s.user_create && fab;
    // The UI's own start, and a container whose command gives a user a role (issue #9).
    let wants_roles = matches!(cmd, "webserver" | "api-server")
        || (cmd == "users" && matches!(sub, "create" | "add-role"));
    let celery_worker = (cmd, sub) == ("celery", "worker");
    Plan {
        major,
        jwt_warning: v3
            && !s.jwt_secret_set
            && (celery_worker
                || matches!(
                    cmd,
                    "api-server" | "scheduler" | "dag-processor" | "triggerer"
                )),
        user_needs_fab: s.user_create && !fab,
        wait_db: needs_db(kind, major) || s.migrate || create_user,
        wait_broker: needs_broker(kind),
        migrate: s.migrate,
        sync_perm: fab && (wants_roles || create_user),
        create_user,
        // Their tasks run through the execution API; an api-server never waits for itself.
        wait_execution_api: v3
            && (celery_worker || (cmd == "scheduler" && runs_local_executor(s.executor))),
    }
}

/// `EXECUTOR=Celery` → `CeleryExecutor`, unless `AIRFLOW__CORE__EXECUTOR` is set already.
pub fn executor_shim(executor: Option<&str>, current: Option<&str>) -> Option<String> {
    let e = executor.map(str::trim).filter(|e| !e.is_empty())?;
    if current.is_some_and(|c| !c.is_empty()) {
        return None;
    }
    Some(if e.ends_with("Executor") {
        e.to_string()
    } else {
        format!("{e}Executor")
    })
}

pub fn truthy(v: Option<&str>) -> bool {
    matches!(
        v.map(|s| s.trim().to_ascii_lowercase()).as_deref(),
        Some("true" | "1" | "yes" | "y" | "on")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// argv, command, sub-command, waits for db, waits for broker, runs sync-perm (version unknown, no settings)
    type Case = (
        &'static [&'static str],
        Option<&'static str>,
        Option<&'static str>,
        bool,
        bool,
        bool,
    );

    fn k(argv: &[&str]) -> Kind {
        classify(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn classification_table() {
        // (argv, command, sub, db, broker, sync-perm)
        let cases: &[Case] = &[
            (
                &["airflow", "webserver"],
                Some("webserver"),
                None,
                true,
                false,
                true,
            ),
            (
                &["/usr/local/bin/airflow", "scheduler", "-n", "5"],
                Some("scheduler"),
                None,
                true,
                true,
                false,
            ),
            (
                &["airflow", "celery", "worker"],
                Some("celery"),
                Some("worker"),
                true,
                true,
                false,
            ),
            (
                &["airflow", "celery", "flower", "--port", "5555"],
                Some("celery"),
                Some("flower"),
                true,
                true,
                false,
            ),
            (
                &["airflow", "celery", "stop"],
                Some("celery"),
                Some("stop"),
                true,
                false,
                false,
            ),
            (
                &["airflow", "triggerer"],
                Some("triggerer"),
                None,
                true,
                false,
                false,
            ),
            (
                &["airflow", "db", "check"],
                Some("db"),
                Some("check"),
                true,
                false,
                false,
            ),
            (
                &["airflow", "version"],
                Some("version"),
                None,
                false,
                false,
                false,
            ),
            (
                &["airflow", "info"],
                Some("info"),
                None,
                false,
                false,
                false,
            ),
            (
                &["airflow", "cheat-sheet"],
                Some("cheat-sheet"),
                None,
                false,
                false,
                false,
            ),
            (
                &["airflow", "config", "get-value", "core", "executor"],
                Some("config"),
                Some("get-value"),
                false,
                false,
                false,
            ),
            (
                &["airflow", "help"],
                Some("help"),
                None,
                false,
                false,
                false,
            ),
            (&["airflow", "--help"], None, None, false, false, false),
            (
                &["airflow", "scheduler", "--help"],
                Some("scheduler"),
                None,
                false,
                false,
                false,
            ),
            (
                &["airflow", "webserver", "-h"],
                Some("webserver"),
                None,
                false,
                false,
                false,
            ),
            (&["airflow"], None, None, false, false, false),
            (
                &["bash", "-c", "exec airflow scheduler"],
                Some("scheduler"),
                None,
                true,
                true,
                false,
            ),
            (
                &[
                    "/bin/bash",
                    "-ec",
                    "cd /x && exec airflow celery worker -q default",
                ],
                Some("celery"),
                Some("worker"),
                true,
                true,
                false,
            ),
            (
                &["sh", "-c", "echo hi; airflow 'webserver'"],
                Some("webserver"),
                None,
                true,
                false,
                true,
            ),
            (
                &["bash", "-c", "airflow-helper run"],
                None,
                None,
                false,
                false,
                false,
            ),
            (
                &["python", "-m", "airflow", "triggerer"],
                Some("triggerer"),
                None,
                true,
                false,
                false,
            ),
            (
                &["python3.11", "-m", "airflow", "version"],
                Some("version"),
                None,
                false,
                false,
                false,
            ),
        ];
        for (argv, cmd, sub, db, broker, web) in cases {
            let kind = k(argv);
            if cmd.is_some() || matches!(kind, Kind::Airflow { .. }) {
                let Kind::Airflow { cmd: c, sub: s, .. } = &kind else {
                    panic!("{argv:?}: {kind:?}")
                };
                assert_eq!((c.as_deref(), s.as_deref()), (*cmd, *sub), "{argv:?}");
            }
            let p = plan(&kind, &Settings::default());
            assert_eq!(
                (p.wait_db, p.wait_broker, p.sync_perm),
                (*db, *broker, *web),
                "{argv:?}"
            );
            assert_eq!(needs_db(&kind, None), *db, "{argv:?}");
        }
        for other in [
            &["true"][..],
            &["bash"],
            &["bash", "-c", "echo hi"],
            &["python", "x.py"],
            &[],
        ] {
            assert_eq!(k(other), Kind::Other, "{other:?}");
        }
        for sdk in [
            &[
                "python",
                "-m",
                "airflow.sdk.execution_time.execute_workload",
                "--json-string",
                "{}",
            ][..],
            &["python3", "-m", "airflow.sdk"],
            &[
                "sh",
                "-c",
                "exec python3 -m airflow.sdk.execution_time.execute_workload",
            ],
        ] {
            assert_eq!(k(sdk), Kind::TaskSdk, "{sdk:?}");
        }
        assert_eq!(k(&["python", "-m", "airflow.sdkx"]), Kind::Other);
    }

    /// A compact case: settings as words (`v=VERSION`, `auth=simple|fab|PATH`, `exec=VALUE`, `jwt`, `user`,
    /// `migrate`), argv, and the plan as letters: D wait for the database, B broker, M migrate, S sync-perm,
    /// U create the user, W warn that user creation needs FAB, J warn about the JWT secret, E wait for the
    /// execution API.
    fn check(settings: &str, argv: &[&str], want: &str) {
        let mut s = Settings::default();
        for w in settings.split_whitespace() {
            match w.split_once('=') {
                Some(("v", v)) => s.airflow_version = Some(v),
                Some(("auth", "simple")) => {
                    s.auth_manager = Some(
                        "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
                    )
                }
                Some(("auth", "fab")) => s.auth_manager = Some(FAB_AUTH_MANAGER),
                Some(("auth", a)) => s.auth_manager = Some(a),
                Some(("exec", e)) => s.executor = Some(e),
                None if w == "jwt" => s.jwt_secret_set = true,
                None if w == "user" => s.user_create = true,
                None if w == "migrate" => s.migrate = true,
                _ => panic!("bad setting {w}"),
            }
        }
        let p = plan(&k(argv), &s);
        let got: String = [
            (p.wait_db, 'D'),
            (p.wait_broker, 'B'),
            (p.migrate, 'M'),
            (p.sync_perm, 'S'),
            (p.create_user, 'U'),
            (p.user_needs_fab, 'W'),
            (p.jwt_warning, 'J'),
            (p.wait_execution_api, 'E'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect();
        let want: String = want.split_whitespace().collect();
        assert_eq!(got, want, "{settings} {argv:?}");
    }

    #[test]
    fn plan_airflow_3() {
        let v3 = "v=3.3.2";
        let cases: &[(&str, &[&str], &str)] = &[
            (v3, &["airflow", "api-server"], "D S J"),
            (v3, &["airflow", "api-server", "--port", "8080"], "D S J"),
            (v3, &["bash", "-c", "exec airflow api-server"], "D S J"),
            ("v=3.3.2 jwt", &["airflow", "api-server"], "D S"),
            ("v=3.3.2 auth=simple", &["airflow", "api-server"], "D J"),
            ("v=3.3.2 auth=fab", &["airflow", "api-server"], "D S J"),
            (
                "v=3.3.2 auth=airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
                &["airflow", "api-server"],
                "D S J",
            ),
            (
                "v=3.3.2 auth=mycompany.auth.CustomAuthManager",
                &["airflow", "api-server"],
                "D J",
            ),
            (v3, &["airflow", "api-server", "--help"], ""),
            // LocalExecutor (the default) runs tasks through the execution API.
            (v3, &["airflow", "scheduler"], "D B J E"),
            ("v=3.3.2 exec=LocalExecutor", &["airflow", "scheduler"], "D B J E"),
            ("v=3.3.2 exec=CeleryExecutor", &["airflow", "scheduler"], "D B J"),
            ("v=3.3.2 exec=KubernetesExecutor", &["airflow", "scheduler"], "D B J"),
            (
                "v=3.3.2 exec=LocalExecutor,CeleryExecutor",
                &["airflow", "scheduler"],
                "D B J E",
            ),
            (
                "v=3.3.2 exec=CeleryExecutor,_:airflow.executors.local_executor.LocalExecutor",
                &["airflow", "scheduler"],
                "D B J E",
            ),
            ("v=3.3.2 migrate", &["airflow", "scheduler"], "D B M J E"),
            ("v=3.3.2 jwt", &["bash", "-c", "exec airflow scheduler"], "D B E"),
            (v3, &["airflow", "dag-processor"], "D J"),
            (v3, &["airflow", "triggerer"], "D J"),
            (v3, &["airflow", "celery", "worker"], "D B J E"),
            ("v=3.3.2 exec=CeleryExecutor jwt", &["airflow", "celery", "worker"], "D B E"),
            (v3, &["airflow", "celery", "flower"], "B"),
            (v3, &["airflow", "celery", "stop"], "D"),
            (v3, &["airflow", "db", "migrate"], "D"),
            (
                v3,
                &["airflow", "db", "check-migrations", "--migration-wait-timeout=60"],
                "D",
            ),
            (
                v3,
                &["airflow", "jobs", "check", "--job-type", "SchedulerJob", "--local"],
                "D",
            ),
            (v3, &["airflow", "users", "create", "--username", "u"], "D S"),
            (v3, &["airflow", "users", "add-role", "-u", "u", "-r", "Op"], "D S"),
            (v3, &["airflow", "users", "list"], "D"),
            (v3, &["airflow", "users", "create", "--help"], ""),
            ("v=3.3.2 auth=simple", &["airflow", "users", "create"], "D"),
            (v3, &["airflow", "version"], ""),
            (v3, &["airflow", "dags", "list"], "D"),
            // KubernetesExecutor task pods: only the API server, no database credentials.
            (
                v3,
                &[
                    "python",
                    "-m",
                    "airflow.sdk.execution_time.execute_workload",
                    "--json-string",
                    "{}",
                ],
                "",
            ),
            (
                v3,
                &["/usr/local/bin/python3.12", "-u", "-m", "airflow.sdk.x"],
                "",
            ),
            (
                "",
                &["python", "-m", "airflow.sdk.execution_time.execute_workload"],
                "",
            ),
            (
                v3,
                &[
                    "bash",
                    "-c",
                    "exec python -m airflow.sdk.execution_time.execute_workload --json-string '{\"queue\": airflow scheduler}'",
                ],
                "",
            ),
            // _AIRFLOW_WWW_USER_CREATE: sync-perm then the user with FAB; a warning otherwise.
            ("v=3.3.2 user", &["airflow", "scheduler"], "D B S U J E"),
            ("v=3.3.2 user auth=fab", &["airflow", "api-server"], "D S U J"),
            ("v=3.3.2 user auth=simple", &["airflow", "api-server"], "D W J"),
            (
                "v=3.3.2 user migrate auth=simple jwt",
                &["airflow", "dag-processor"],
                "D M W",
            ),
            ("v=3.3.2 user auth=simple", &["true"], "W"),
            // Any later major counts as 3.x; pre-releases too.
            ("v=3.0.0rc1", &["airflow", "triggerer"], "D J"),
            ("v=4.0.0", &["airflow", "celery", "flower"], "B"),
        ];
        for (settings, argv, want) in cases {
            check(settings, argv, want);
        }
    }

    #[test]
    fn plan_airflow_2_and_unknown() {
        let v2 = "v=2.10.5";
        let cases: &[(&str, &[&str], &str)] = &[
            (v2, &["airflow", "webserver"], "D S"),
            // 2.x assumes FAB whatever the setting, as it always has.
            ("v=2.10.5 auth=simple", &["airflow", "webserver"], "D S"),
            (v2, &["airflow", "scheduler"], "D B"),
            (v2, &["airflow", "celery", "worker"], "D B"),
            (v2, &["airflow", "celery", "flower"], "D B"),
            (v2, &["airflow", "triggerer"], "D"),
            (v2, &["airflow", "dag-processor"], "D"),
            (v2, &["airflow", "jobs", "check"], "D"),
            // Issue #9: roles exist only after sync-perm.
            (v2, &["airflow", "users", "create", "-r", "Admin"], "D S"),
            (
                v2,
                &["bash", "-c", "exec airflow users add-role -r Admin"],
                "D S",
            ),
            (v2, &["airflow", "users", "list"], "D"),
            (
                "v=2.10.5 user migrate",
                &["airflow", "scheduler"],
                "D B M S U",
            ),
            (
                "v=2.10.5 user auth=simple",
                &["airflow", "scheduler"],
                "D B S U",
            ),
            ("v=2.10.5 migrate", &["true"], "D M"),
            // Unknown version: only what the command says.
            ("", &["airflow", "scheduler"], "D B"),
            ("", &["airflow", "celery", "worker"], "D B"),
            ("", &["airflow", "celery", "flower"], "D B"),
            ("", &["airflow", "webserver"], "D S"),
            ("", &["airflow", "api-server"], "D S J"),
            ("auth=simple", &["airflow", "api-server"], "D J"),
            ("", &["airflow", "dag-processor"], "D J"),
            ("v=main", &["airflow", "dag-processor"], "D J"),
            ("", &["true"], ""),
        ];
        for (settings, argv, want) in cases {
            check(settings, argv, want);
        }
    }

    #[test]
    fn versions_auth_managers_executors() {
        let other = k(&["airflow", "scheduler"]);
        for (v, want) in [
            (Some("3.3.2"), Some(3)),
            (Some(" 3 "), Some(3)),
            (Some("3.0.0rc1"), Some(3)),
            (Some("2.10.5"), Some(2)),
            (Some("10.1"), Some(10)),
            (Some("main"), None),
            (Some(""), None),
            (None, None),
        ] {
            assert_eq!(major_version(v, &other), want, "{v:?}");
        }
        assert_eq!(major_version(None, &k(&["airflow", "api-server"])), Some(3));
        assert_eq!(
            major_version(Some("2.10.5"), &k(&["airflow", "api-server"])),
            Some(2)
        );
        assert_eq!(
            major_version(None, &k(&["airflow", "api-server", "-h"])),
            None
        );

        for (a, fab) in [
            (None, true),
            (Some(""), true),
            (Some(FAB_AUTH_MANAGER), true),
            (
                Some("airflow.auth.managers.fab.fab_auth_manager.FabAuthManager"),
                true,
            ),
            (
                Some("airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"),
                false,
            ),
            (Some("fabulous.AuthManager"), false),
            (Some("plugins.custom.MyAuthManager"), false),
        ] {
            assert_eq!(is_fab(a), fab, "{a:?}");
        }

        for (e, local) in [
            (None, true),
            (Some(" "), true),
            (Some("LocalExecutor"), true),
            (Some("CeleryExecutor, LocalExecutor"), true),
            (Some("airflow.executors.local_executor.LocalExecutor"), true),
            (
                Some("my_local:airflow.executors.local_executor.LocalExecutor"),
                true,
            ),
            (Some("CeleryExecutor"), false),
            (Some("KubernetesExecutor,CeleryExecutor"), false),
            (Some("my.NotLocalExecutor"), false),
        ] {
            assert_eq!(runs_local_executor(e), local, "{e:?}");
        }
    }

    #[test]
    fn executor() {
        assert_eq!(
            executor_shim(Some("Celery"), None).as_deref(),
            Some("CeleryExecutor")
        );
        assert_eq!(
            executor_shim(Some("Celery"), Some("")).as_deref(),
            Some("CeleryExecutor")
        );
        assert_eq!(
            executor_shim(Some("LocalExecutor"), None).as_deref(),
            Some("LocalExecutor")
        );
        assert_eq!(
            executor_shim(Some("Celery"), Some("KubernetesExecutor")),
            None
        );
        assert_eq!(executor_shim(Some(""), None), None);
        assert_eq!(executor_shim(None, None), None);
    }

    #[test]
    fn truthiness() {
        for t in ["true", "True", "1", "yes", " TRUE "] {
            assert!(truthy(Some(t)), "{t}");
        }
        for f in ["false", "0", "", "no", "maybe"] {
            assert!(!truthy(Some(f)), "{f}");
        }
        assert!(!truthy(None));
    }
}
