//! What the groomer must never touch: system folders, other file systems, folders that held no logs.

use crate::util::*;
use std::process::Command;
use std::time::Duration;

/// `--directory /` would walk the whole system (and `/proc`, and every mount): refused, like the system's own
/// folders, also when reached through `..` or a symlink, with one line and status 2 before anything is touched.
#[test]
fn system_folders_are_refused() {
    let t = tempdir();
    let link = t.path().join("root-link");
    std::os::unix::fs::symlink("/", &link).unwrap();
    let dotdot = format!("{}/../..", t.path().display());
    for dir in [
        "/",
        "//",
        "/etc",
        "/usr",
        "/var",
        "/proc",
        "/sys/kernel",
        &dotdot,
        link.to_str().unwrap(),
    ] {
        for once in [true, false] {
            let mut args = vec!["--directory", dir];
            if once {
                args.push("--once");
            }
            let out = run(&args);
            assert_eq!(out.status.code(), Some(2), "{dir}: {out:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains("refusing") && err.contains(dir), "{err}");
            assert!(out.stdout.is_empty(), "{out:?}");
        }
    }
    let out = Command::new(BIN)
        .arg("--once")
        .env("AIRFLOW_HOME", "/proc/self/..")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// The folder may appear only after start-up: it is checked again before every pass.
#[test]
fn a_late_symlink_to_a_system_folder_is_refused() {
    let t = tempdir();
    let root = t.path().join("logs");
    let mut g =
        spawn(Command::new(BIN).args(["--every", "3600", "--directory", root.to_str().unwrap()]));
    g.wait_for("waiting for");
    std::os::unix::fs::symlink("/etc", &root).unwrap();
    let (status, took) = g.exit_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let lines = g.rest();
    assert!(!lines.iter().any(|l| l.contains(": pass ")), "{lines:?}");
    let err = g.stderr();
    assert!(
        err.contains("refusing") && err.contains("(that is /etc)"),
        "{err}"
    );
}
