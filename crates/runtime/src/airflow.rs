//! What the command is, as far as start-up is concerned.

/// The Airflow command found in the container's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Anything else still runs, with no waiting.
    Other,
    Airflow {
        cmd: Option<String>,
        sub: Option<String>,
        help: bool,
    },
}

/// Subcommands that never open a database connection: no waiting for them (README lists them).
pub const NO_DB: &[&str] = &["version", "help", "cheat-sheet", "config", "info"];

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
                if let Some(i) = words.iter().position(|w| basename(w) == "airflow") {
                    return airflow_words(&words[i + 1..]);
                }
            }
        }
    }
    Kind::Other
}

pub fn needs_db(k: &Kind) -> bool {
    match k {
        Kind::Other => false,
        Kind::Airflow { help: true, .. } | Kind::Airflow { cmd: None, .. } => false,
        Kind::Airflow { cmd: Some(c), .. } => !NO_DB.contains(&c.as_str()),
    }
}

pub fn needs_broker(k: &Kind) -> bool {
    match k {
        Kind::Airflow {
            help: false,
            cmd: Some(c),
            sub,
        } => {
            c == "scheduler"
                || (c == "celery" && matches!(sub.as_deref(), Some("worker") | Some("flower")))
        }
        _ => false,
    }
}

pub fn is_webserver(k: &Kind) -> bool {
    matches!(k, Kind::Airflow { help: false, cmd: Some(c), .. } if c == "webserver")
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

    /// argv, command, sub-command, waits for db, waits for broker, is webserver
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
        // (argv, command, sub, db, broker, webserver)
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
            assert_eq!(
                (needs_db(&kind), needs_broker(&kind), is_webserver(&kind)),
                (*db, *broker, *web),
                "{argv:?}"
            );
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
