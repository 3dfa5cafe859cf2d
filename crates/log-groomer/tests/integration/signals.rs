//! SIGTERM / SIGINT while sleeping and mid-pass: exit 0 within a second.

use crate::util::*;
use std::process::Command;
use std::time::Duration;

fn one_second() -> Duration {
    Duration::from_secs(1)
}

#[test]
fn sigterm_during_sleep_exits_promptly() {
    let t = tempdir();
    let mut g = spawn(Command::new(BIN).args([
        "--every",
        "3600",
        "--directory",
        t.path().to_str().unwrap(),
    ]));
    let line = g.wait_for(": pass ");
    assert!(line.contains(" next="), "{line}");
    g.signal(libc::SIGTERM);
    let took = g.exits_with(0, Duration::from_secs(5));
    assert!(took < one_second(), "took {took:?}");
}

#[test]
fn sigint_during_sleep_exits_promptly() {
    let t = tempdir();
    let mut g = spawn(Command::new(BIN).args([
        "--every",
        "3600",
        "--directory",
        t.path().to_str().unwrap(),
    ]));
    g.wait_for(": pass ");
    g.signal(libc::SIGINT);
    let took = g.exits_with(0, Duration::from_secs(5));
    assert!(took < one_second(), "took {took:?}");
}

#[test]
fn sigterm_during_a_pass_abandons_it_cleanly() {
    let t = tempdir();
    let root = t.path().join("logs");
    big_tree(&root, 30_000);
    let mut g =
        spawn(Command::new(BIN).args(["--once", "-v", "--directory", root.to_str().unwrap()]));
    g.wait_for("removed ");
    g.signal(libc::SIGTERM);
    let took = g.exits_with(0, Duration::from_secs(5));
    assert!(took < one_second(), "took {took:?}");
    let lines = g.rest();
    let line = lines
        .iter()
        .find(|l| l.contains(": pass "))
        .expect("pass line");
    assert!(line.contains("interrupted=yes"), "{line}");
    let removed = field(line, "files");
    assert!(removed < 30_000, "{line}");
    let left = listing(&root)
        .iter()
        .filter(|p| p.ends_with(".log"))
        .count() as u64;
    assert_eq!(
        removed + left,
        30_000,
        "every file is either removed and counted, or intact"
    );
}

#[test]
fn default_mode_reads_airflow_home_and_retention_env() {
    let t = tempdir();
    let logs = t.path().join("logs");
    let old = file(&logs, &task_log("d", "r", "t", 1), 1, 3 * DAY);
    let young = file(&logs, &task_log("d", "r", "t", 2), 1, 2 * DAY - 60);
    let mut g = spawn(
        Command::new(BIN)
            .env("AIRFLOW_HOME", t.path())
            .env("ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS", "1")
            .env("AIRFLOW__LOG_RETENTION_DAYS", "30")
            .env_remove("AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES"),
    );
    let start = g.wait_for("clean-airflow-logs: ");
    assert!(start.contains("every 900 s"), "{start}");
    let line = g.wait_for(": pass ");
    assert_eq!(field(&line, "files"), 1, "{line}");
    // The next pass is on a quarter hour.
    let next = line.split("next=").nth(1).expect("next=");
    assert!(
        ["00:00Z", "15:00Z", "30:00Z", "45:00Z"]
            .iter()
            .any(|q| next.ends_with(q)),
        "{next}"
    );
    g.signal(libc::SIGTERM);
    g.exits_with(0, Duration::from_secs(5));
    assert!(!old.exists() && young.exists());
}
