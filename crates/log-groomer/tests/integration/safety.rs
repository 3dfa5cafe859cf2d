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
        .ran();
    out.assert_code(2);
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
    let took = g.exits_with(2, Duration::from_secs(10));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let lines = g.rest();
    assert!(!lines.iter().any(|l| l.contains(": pass ")), "{lines:?}");
    let err = g.stderr();
    assert!(
        err.contains("refusing") && err.contains("(that is /etc)"),
        "{err}"
    );
}

/// A mount point inside the tree (a volume, `/proc` under `/`, overlay2 layers) is another file system: like
/// `find -xdev`, the walk does not enter it, so nothing on it is removed, and the folders holding it stay.
/// Needs root (a tmpfs mounted in a private mount namespace): ignored unless run as root (`scripts/test` does).
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn other_file_systems_are_not_entered() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "needs root to mount a tmpfs");
    let t = tempdir();
    let root = t.path().join("logs");
    let ours = file(&root, &task_log("d", "r", "t", 1), 1, 30 * DAY);
    let mnt = root.join("dag_id=m/run_id=r");
    std::fs::create_dir_all(&mnt).unwrap();
    let old = now() - 30 * DAY;
    // In a private mount namespace: the tmpfs vanishes with it, so what is left on it is listed from inside.
    let script = r#"
        set -e
        mount -t tmpfs tmpfs "$2"
        mkdir -p "$2/task_id=t" "$2/empty"
        echo x > "$2/task_id=t/attempt=1.log"
        echo x > "$2/top.log"
        touch -d "@$3" "$2/task_id=t/attempt=1.log" "$2/top.log" "$2/task_id=t" "$2/empty" "$2"
        "$1" --once -v --pattern '*' --directory "$4"
        echo "left: $(cd "$2" && find . | sort | tr '\n' ' ')"
    "#;
    let old = old.to_string();
    let out = in_private_mount_namespace(
        script,
        &[BIN.as_ref(), mnt.as_ref(), old.as_ref(), root.as_ref()],
    );
    out.assert_success();
    let stdout = out.stdout_text();
    let line = stdout
        .lines()
        .find(|l| l.contains(": pass "))
        .expect("pass line");
    assert_eq!(field(line, "files"), 1, "{stdout}");
    assert_eq!(field(line, "errors"), 0, "{stdout}");
    assert!(!ours.exists(), "the pass ran on the root's own file system");
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with("removed ") && l.contains("dag_id=m")),
        "{stdout}"
    );
    assert!(
        stdout.contains("left: . ./empty ./task_id=t ./task_id=t/attempt=1.log ./top.log "),
        "{stdout}"
    );
    assert!(mnt.is_dir(), "the mount point was removed");
}

/// Only folders this pass emptied of matching files go. Empty folders that were there already, however old, are
/// left alone: under a wrong `--directory` they are someone else's (mount points, spool folders), and in a log
/// folder they may be one Airflow just created.
#[test]
fn only_folders_that_held_deleted_logs_are_removed() {
    let t = tempdir();
    let root = t.path();
    let log = file(root, &task_log("d", "r", "t", 1), 1, 30 * DAY);
    let kept_log = file(root, &task_log("d", "r2", "t", 1), 1, DAY);
    for empty in [
        "srv/www",
        "mnt/cdrom",
        "dag_id=d/run_id=r3/task_id=t",
        "a/b/c",
    ] {
        std::fs::create_dir_all(root.join(empty)).unwrap();
    }
    file(root, "spool/queue.txt", 1, 90 * DAY);
    for p in listing(root) {
        let p = root.join(p);
        if p.is_dir() {
            set_age(&p, 90 * DAY);
        }
    }
    let before_dirs: Vec<String> = listing(root)
        .into_iter()
        .filter(|p| root.join(p).is_dir())
        .collect();
    let out = run(&["--once", "-v", "--directory", root.to_str().unwrap()]);
    out.assert_success();
    let line = pass_line(&out);
    assert_eq!(field(&line, "files"), 1, "{line}");
    assert_eq!(field(&line, "folders"), 2, "task_id=t and run_id=r: {line}");
    assert!(!log.exists() && kept_log.exists());
    let gone: Vec<&String> = before_dirs
        .iter()
        .filter(|p| !root.join(p).exists())
        .collect();
    assert_eq!(
        gone,
        ["dag_id=d/run_id=r", "dag_id=d/run_id=r/task_id=t"],
        "{:?}",
        listing(root)
    );
}
