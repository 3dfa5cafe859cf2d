//! `images/airflow/clean-logs`, installed as `/clean-logs`: the official Helm chart's log-groomer entry point
//! (`bash /clean-logs`), run here under bash with the groomer built for these tests (`$CLEAN_AIRFLOW_LOGS`).

use crate::util::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../images/airflow/clean-logs"
);

/// Every variable the script or the groomer reads: the tests' own environment must not leak in.
const VARS: [&str; 8] = [
    "AIRFLOW_HOME",
    "AIRFLOW__LOG_RETENTION_DAYS",
    "AIRFLOW__LOG_RETENTION_MINUTES",
    "AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES",
    "AIRFLOW__LOG_MAX_SIZE_BYTES",
    "AIRFLOW__LOG_MAX_SIZE_PERCENT",
    "ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS",
    "CLEAN_AIRFLOW_LOGS",
];

/// `bash /clean-logs ARGS` with `AIRFLOW_HOME=home` and `env` on top.
fn clean_logs(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(SCRIPT).args(args);
    for v in VARS {
        cmd.env_remove(v);
    }
    cmd.env("AIRFLOW_HOME", home).env("CLEAN_AIRFLOW_LOGS", BIN);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A one-pass dry run: the start line tells what the variables were mapped to.
fn start_line(env: &[(&str, &str)], args: &[&str]) -> String {
    let t = tempdir();
    std::fs::create_dir(t.path().join("logs")).unwrap();
    let mut all = vec!["--once", "--dry-run"];
    all.extend(args);
    let out = clean_logs(t.path(), env, &all).ran();
    assert!(out.status.success(), "{env:?} {args:?}: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default().to_string();
    let logs = format!(" in {}/logs,", t.path().display());
    assert!(first.contains(&logs), "AIRFLOW_HOME not used: {first}");
    first
}

/// Variables, extra arguments, and what the start line must say.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);

#[test]
fn each_variable_maps_onto_its_flag() {
    let cases: &[Case] = &[
        (
            &[],
            &[],
            "retention 15 days (files at least 16d old), once, dry run",
        ),
        (
            &[("AIRFLOW__LOG_RETENTION_DAYS", "3")],
            &[],
            "retention 3 days (files at least 4d old), once",
        ),
        (
            &[("AIRFLOW__LOG_RETENTION_DAYS", "007")],
            &[],
            "retention 7 days",
        ),
        (
            &[("AIRFLOW__LOG_RETENTION_DAYS", " 0 ")],
            &[],
            "retention 0 days (files at least 1d old)",
        ),
        // Minutes, when above 0, replace the days (the official script's rule).
        (
            &[
                ("AIRFLOW__LOG_RETENTION_DAYS", "3"),
                ("AIRFLOW__LOG_RETENTION_MINUTES", "60"),
            ],
            &[],
            "retention 60 minutes (files at least 61m old)",
        ),
        (
            &[
                ("AIRFLOW__LOG_RETENTION_DAYS", "3"),
                ("AIRFLOW__LOG_RETENTION_MINUTES", "0"),
            ],
            &[],
            "retention 3 days",
        ),
        (
            &[("AIRFLOW__LOG_RETENTION_MINUTES", "90")],
            &[],
            "retention 90 minutes",
        ),
        // The seed's variable wins over both.
        (
            &[
                ("ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS", "2"),
                ("AIRFLOW__LOG_RETENTION_DAYS", "3"),
                ("AIRFLOW__LOG_RETENTION_MINUTES", "60"),
            ],
            &[],
            "retention 2 days (files at least 3d old)",
        ),
        (
            &[("ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS", "0.5")],
            &[],
            "retention 0.5 days",
        ),
        (
            &[("AIRFLOW__LOG_MAX_SIZE_BYTES", "1000")],
            &[],
            "once, capped at 1000 bytes, dry run",
        ),
        (
            &[("AIRFLOW__LOG_MAX_SIZE_PERCENT", "80")],
            &[],
            "once, capped at 80% of the file system's size, dry run",
        ),
        (
            &[("AIRFLOW__LOG_MAX_SIZE_PERCENT", "12.5")],
            &[],
            "capped at 12.5% of the file system's size",
        ),
        // Bytes win over a percentage; 0 is no cap.
        (
            &[
                ("AIRFLOW__LOG_MAX_SIZE_BYTES", "5000"),
                ("AIRFLOW__LOG_MAX_SIZE_PERCENT", "80"),
            ],
            &[],
            "capped at 5000 bytes",
        ),
        (
            &[
                ("AIRFLOW__LOG_MAX_SIZE_BYTES", "0"),
                ("AIRFLOW__LOG_MAX_SIZE_PERCENT", "80"),
            ],
            &[],
            "capped at 80% of",
        ),
        (
            &[
                ("AIRFLOW__LOG_MAX_SIZE_BYTES", "0"),
                ("AIRFLOW__LOG_MAX_SIZE_PERCENT", "0"),
            ],
            &[],
            "once, dry run",
        ),
        // Empty counts as unset (manifests often template variables empty).
        (
            &[
                ("AIRFLOW__LOG_RETENTION_DAYS", ""),
                ("AIRFLOW__LOG_RETENTION_MINUTES", " "),
                ("AIRFLOW__LOG_MAX_SIZE_BYTES", ""),
                ("ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS", ""),
            ],
            &[],
            "retention 15 days (files at least 16d old), once, dry run",
        ),
        // Arguments come after the mapped flags: the last wins.
        (
            &[
                ("AIRFLOW__LOG_RETENTION_DAYS", "3"),
                ("AIRFLOW__LOG_MAX_SIZE_BYTES", "5000"),
            ],
            &["--retention-days", "9", "--max-size", "1K"],
            "retention 9 days (files at least 10d old), once, capped at 1024 bytes",
        ),
        (
            &[("AIRFLOW__LOG_RETENTION_MINUTES", "60")],
            &["--retention-days", "9"],
            "retention 9 days",
        ),
        (
            &[],
            &["--pattern", "*.txt"],
            "clean-airflow-logs: *.txt in ",
        ),
    ];
    for (env, args, want) in cases {
        let line = start_line(env, args);
        assert!(
            line.contains(want),
            "{env:?} {args:?}: want {want:?} in {line}"
        );
    }
}

#[test]
fn frequency_maps_onto_every_minutes_and_sigterm_stops_the_groomer_itself() {
    let t = tempdir();
    let logs = t.path().join("logs");
    let old = file(&logs, &task_log("d", "r", "t", 1), 1, 62 * 60);
    let young = file(&logs, &task_log("d", "r", "t", 2), 1, 58 * 60);
    let env = [
        ("AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES", "5"),
        ("AIRFLOW__LOG_RETENTION_MINUTES", "60"),
    ];
    let mut g = spawn(&mut clean_logs(t.path(), &env, &[]));
    let start = g.wait_for("clean-airflow-logs: ");
    assert!(start.contains("every 300 s"), "{start}");
    let line = g.wait_for(": pass ");
    assert_eq!(field(&line, "files"), 1, "{line}");
    let next = line.split("next=").nth(1).expect("next=");
    assert!(
        next.ends_with("0:00Z") || next.ends_with("5:00Z"),
        "on a 5-minute boundary: {next}"
    );
    assert!(!old.exists() && young.exists());
    // exec: the process bash started is the groomer now, so SIGTERM reaches it, not a shell waiting for it.
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", g.child.id())).unwrap();
    assert_eq!(comm.trim(), "clean-airflow-l", "not exec'd: {comm}");
    g.signal(libc::SIGTERM);
    let took = g.exits_with(0, Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(g.rest().iter().any(|l| l.contains("stopping on signal")));
}

/// SIGTERM at once, maybe before bash has exec'd: status 0 from the groomer, or 143 if it landed on bash (or on
/// the groomer before its handler was installed). Either way it stops promptly.
#[test]
fn sigterm_right_after_start_stops_promptly() {
    let t = tempdir();
    std::fs::create_dir(t.path().join("logs")).unwrap();
    let mut g = spawn(&mut clean_logs(
        t.path(),
        &[("AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES", "60")],
        &[],
    ));
    g.signal(libc::SIGTERM);
    let (status, took) = g.exit_within(Duration::from_secs(5));
    use std::os::unix::process::ExitStatusExt;
    let ok = status.code() == Some(0)
        || status.code() == Some(143)
        || status.signal() == Some(libc::SIGTERM);
    assert!(ok, "{status:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn minute_retention_removes_by_the_minute() {
    let t = tempdir();
    let logs = t.path().join("logs");
    let m59 = file(&logs, "a.log", 1, 59 * 60);
    let m62 = file(&logs, "b.log", 1, 62 * 60);
    let out = clean_logs(
        t.path(),
        &[("AIRFLOW__LOG_RETENTION_MINUTES", "60")],
        &["--once"],
    )
    .ran();
    out.assert_success();
    assert!(m59.exists() && !m62.exists());
}

fn refused(out: &Ran, var: &str, value: &str) {
    assert_eq!(out.status.code(), Some(2), "{var}={value:?}: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{var}={value:?}: {err}");
    assert!(err.contains(&format!("${var}")), "{var}={value:?}: {err}");
    assert!(out.stdout.is_empty(), "the groomer ran: {out:?}");
}

#[test]
fn bad_values_are_refused_with_one_line() {
    let t = tempdir();
    let logs = t.path().join("logs");
    let f = file(&logs, "x.log", 1, 90 * DAY);
    let bad: &[(&str, &[&str])] = &[
        (
            "AIRFLOW__LOG_RETENTION_DAYS",
            &[
                "abc",
                "-1",
                "1.5",
                "6M",
                "36601",
                "99999999999999999999999",
                "1 2",
                "x\ny",
            ],
        ),
        (
            "AIRFLOW__LOG_RETENTION_MINUTES",
            &["abc", "-5", "90m", "1.5", "52704001"],
        ),
        (
            "AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES",
            &["0", "000", "abc", "-1", "15m", "10000001"],
        ),
        (
            "AIRFLOW__LOG_MAX_SIZE_BYTES",
            &["5G", "-1", "1e9", "abc", "1000000000000000000"],
        ),
        (
            "AIRFLOW__LOG_MAX_SIZE_PERCENT",
            &["101", "100.5", "80%", "-1", "abc", "1000", ".5"],
        ),
        // The seed's variable is read by the groomer itself, with the same one-line refusal.
        (
            "ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS",
            &["6M", "fifteen", "-1"],
        ),
    ];
    for (var, values) in bad {
        for value in *values {
            let out = clean_logs(t.path(), &[(var, value)], &["--once"]).ran();
            refused(&out, var, value);
            let err = String::from_utf8_lossy(&out.stderr);
            let shown = value.replace('\n', "\\n");
            assert!(err.contains(&format!("'{shown}'")), "{err}");
        }
    }
    // Also when another variable wins: a typo must not pass silently.
    let out = clean_logs(
        t.path(),
        &[
            ("AIRFLOW__LOG_RETENTION_MINUTES", "60"),
            ("AIRFLOW__LOG_RETENTION_DAYS", "15d"),
        ],
        &["--once"],
    )
    .ran();
    refused(&out, "AIRFLOW__LOG_RETENTION_DAYS", "15d");
    assert!(f.exists(), "a refused run deleted a file");
}

#[test]
fn a_missing_groomer_is_status_127() {
    let t = tempdir();
    let out = clean_logs(t.path(), &[], &[])
        .env("CLEAN_AIRFLOW_LOGS", t.path().join("nope"))
        .ran();
    out.assert_code(127);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn the_script_is_executable() {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(SCRIPT).unwrap().permissions().mode();
    assert_eq!(mode & 0o755, 0o755, "{mode:o}");
    let head = std::fs::read_to_string(SCRIPT).unwrap();
    assert!(head.starts_with("#!/usr/bin/env bash\n"));
}
