//! What one pass removes and keeps.

use crate::util::*;
use std::path::Path;

#[test]
fn removes_expired_logs_and_emptied_folders_only() {
    let t = tempdir();
    let root = t.path();
    let old = file(root, &task_log("etl", "r1", "extract", 1), 100, 20 * DAY);
    let old2 = file(root, &task_log("etl", "r1", "extract", 2), 50, 20 * DAY);
    let young = file(root, &task_log("etl", "r2", "extract", 1), 10, 2 * DAY);
    let mixed_old = file(root, &task_log("etl", "r3", "load", 1), 10, 30 * DAY);
    let mixed_young = file(root, &task_log("etl", "r3", "load", 2), 10, DAY);
    let other = file(
        root,
        "dag_id=etl/run_id=r4/task_id=x/notes.txt",
        10,
        40 * DAY,
    );
    let fresh_empty = root.join("dag_id=new/run_id=r0");
    std::fs::create_dir_all(&fresh_empty).unwrap();
    let old_empty = root.join("dag_id=gone");
    std::fs::create_dir_all(&old_empty).unwrap();
    set_age(&old_empty, 40 * DAY);
    set_age(root, 40 * DAY);

    let out = run(&["--once", "--directory", root.to_str().unwrap()]);
    out.assert_success();
    let line = pass_line(&out);
    assert_eq!(field(&line, "files"), 3, "{line}");
    assert_eq!(field(&line, "bytes"), 160, "{line}");
    // r1/extract and r1, which this pass emptied; never a folder that was empty already.
    assert_eq!(field(&line, "folders"), 2, "{line}");
    assert_eq!(field(&line, "errors"), 0, "{line}");
    for gone in [&old, &old2, &mixed_old] {
        assert!(!gone.exists(), "{} kept", gone.display());
    }
    assert!(
        !root.join("dag_id=etl/run_id=r1").exists(),
        "emptied run folder kept"
    );
    assert!(
        old_empty.exists(),
        "an old folder that held no log was removed"
    );
    for kept in [&young, &mixed_young, &other] {
        assert!(kept.exists(), "{} removed", kept.display());
    }
    assert!(
        fresh_empty.exists(),
        "a folder just created by Airflow must stay"
    );
    assert!(root.exists(), "root removed");

    // Emptying the whole tree keeps the root.
    let out = run(&[
        "--once",
        "--directory",
        root.to_str().unwrap(),
        "--retention-days",
        "0",
        "--pattern",
        "*",
    ]);
    out.assert_success();
    assert!(root.is_dir());
    assert_eq!(
        listing(root),
        ["dag_id=gone", "dag_id=new", "dag_id=new/run_id=r0"],
        "only the folders that were empty already remain"
    );
}

#[test]
fn day_arithmetic_matches_find_mtime() {
    let t = tempdir();
    let (a, b) = (t.path().join("ours"), t.path().join("find"));
    // Ages around the 3-day boundary. Time passes during the test, so the kept ones keep a margin of a minute.
    let ages = [
        3 * DAY,
        3 * DAY + 1,
        4 * DAY - 60,
        4 * DAY,
        4 * DAY + 1,
        10 * DAY,
        DAY,
        0,
        -DAY,
    ];
    for dir in [&a, &b] {
        for (i, age) in ages.iter().enumerate() {
            file(dir, &format!("f{i}.log"), 1, *age);
        }
    }
    let find = std::process::Command::new("find")
        .args([
            b.to_str().unwrap(),
            "-type",
            "f",
            "-name",
            "*.log",
            "-mtime",
            "+3",
            "-delete",
        ])
        .status()
        .unwrap();
    assert!(find.success());
    let out = run(&[
        "--once",
        "--directory",
        a.to_str().unwrap(),
        "--retention-days",
        "3",
    ]);
    out.assert_success();
    assert_eq!(listing(&a), listing(&b));
    assert_eq!(
        listing(&a),
        ["f0.log", "f1.log", "f2.log", "f6.log", "f7.log", "f8.log"]
    );
}

#[test]
fn minutes_and_fractional_retention() {
    let t = tempdir();
    let r = t.path();
    let m89 = file(r, "a.log", 1, 89 * 60);
    let m92 = file(r, "b.log", 1, 92 * 60);
    let out = run(&[
        "--once",
        "--directory",
        r.to_str().unwrap(),
        "--retention-minutes",
        "90",
    ]);
    out.assert_success();
    assert!(m89.exists() && !m92.exists());
    let h11 = file(r, "c.log", 1, 11 * 3600);
    let h13 = file(r, "d.log", 1, 13 * 3600);
    let out = run(&[
        "--once",
        "--directory",
        r.to_str().unwrap(),
        "--retention-days",
        "0.5",
    ]);
    out.assert_success();
    assert!(h11.exists() && !h13.exists());
}

#[test]
fn symlinks_are_never_followed() {
    let t = tempdir();
    let outside = t.path().join("outside");
    let target_file = file(&outside, "secret.log", 5, 90 * DAY);
    let target_dir_file = file(&outside, "dir/deep.log", 5, 90 * DAY);
    let root = t.path().join("logs");
    let inside = file(&root, &task_log("d", "r", "t", 1), 5, 90 * DAY);
    std::os::unix::fs::symlink(&target_file, root.join("dag_id=d/link.log")).unwrap();
    std::os::unix::fs::symlink(outside.join("dir"), root.join("dag_id=linked")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("dag_id=d/run_id=r/up")).unwrap();

    let out = run(&[
        "--once",
        "--directory",
        root.to_str().unwrap(),
        "--pattern",
        "*",
    ]);
    out.assert_success();
    assert_eq!(field(&pass_line(&out), "files"), 1);
    assert!(!inside.exists());
    assert!(
        target_file.exists() && target_dir_file.exists(),
        "a target outside the tree was deleted"
    );
    for link in ["dag_id=d/link.log", "dag_id=linked"] {
        assert!(
            root.join(link).symlink_metadata().is_ok(),
            "link {link} removed"
        );
    }
    // The run folder still holds the `up` link, so it stays.
    assert!(root.join("dag_id=d/run_id=r/up").symlink_metadata().is_ok());
}

#[test]
fn dry_run_deletes_nothing_and_lists_everything() {
    let t = tempdir();
    let root = t.path();
    for i in 0..5 {
        file(root, &task_log("d", &format!("r{i}"), "t", 1), 7, 40 * DAY);
    }
    let before = listing(root);
    let out = run(&["--once", "--dry-run", "--directory", root.to_str().unwrap()]);
    out.assert_success();
    assert_eq!(listing(root), before);
    let line = pass_line(&out);
    assert_eq!(
        (field(&line, "files"), field(&line, "bytes")),
        (5, 35),
        "{line}"
    );
    assert!(line.contains("dry_run=yes"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("would remove ") && l.ends_with(".log"))
            .count(),
        5
    );
    assert_eq!(
        field(&line, "folders"),
        11,
        "5 task + 5 run folders + the dag folder: {line}"
    );
}

#[test]
fn bad_input_exits_2_and_deletes_nothing() {
    let t = tempdir();
    let root = t.path();
    let f = file(root, "x.log", 1, 90 * DAY);
    let dir = root.to_str().unwrap();
    for (args, flag) in [
        (vec!["--retention-days", "x"], "--retention-days"),
        // Six months or six minutes? Unit suffixes are refused: the unit is the flag's.
        (vec!["--retention-days", "6M"], "--retention-days"),
        (vec!["--retention-days", "90m"], "--retention-days"),
        (vec!["--retention-minutes", "2h"], "--retention-minutes"),
        (vec!["--max-size", "12Q"], "--max-size"),
        (vec!["--every", "soon"], "--every"),
        (vec!["--jobs", "0"], "--jobs"),
    ] {
        let mut all = vec!["--once", "--directory", dir];
        all.extend(args.iter());
        let out = run(&all);
        out.assert_code(2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(flag) && err.contains(&format!("'{}'", args[1])),
            "{err}"
        );
        assert!(f.exists());
    }
    let out = std::process::Command::new(BIN)
        .args(["--once", "--directory", dir])
        .env("ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS", "soon")
        .ran();
    out.assert_code(2);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS"));
    assert!(f.exists());
}

#[test]
fn env_retention_for_the_official_image_variable() {
    let t = tempdir();
    let logs = t.path().join("logs");
    let old = file(&logs, "a.log", 1, 3 * DAY);
    let young = file(&logs, "b.log", 1, DAY + 60);
    let out = std::process::Command::new(BIN)
        .arg("--once")
        .env("AIRFLOW_HOME", t.path())
        .env_remove("ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS")
        .env("AIRFLOW__LOG_RETENTION_DAYS", "1")
        .ran();
    out.assert_success();
    assert!(!old.exists() && young.exists());
}

/// Runs the binary as `nobody` when we are root, so permission bits bite.
fn as_nobody(t: &Path, args: &[&str]) -> Ran {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return run(args);
    }
    // nobody must be able to reach the binary.
    let bin = t.join("clean-airflow-logs");
    std::fs::copy(BIN, &bin).unwrap();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args(args);
    cmd.ran()
}

#[test]
fn unwritable_and_unreadable_folders_are_errors_not_fatal() {
    use std::os::unix::fs::{chown, PermissionsExt};
    let t = tempdir();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = t.path().join("logs");
    let locked = file(&root, &task_log("a", "r", "locked", 1), 1, 30 * DAY);
    let hidden = file(&root, &task_log("a", "r", "hidden", 1), 1, 30 * DAY);
    let ok = file(&root, &task_log("b", "r", "t", 1), 1, 30 * DAY);
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        for e in listing(&root) {
            chown(root.join(e), Some(65534), Some(65534)).unwrap();
        }
        chown(&root, Some(65534), Some(65534)).unwrap();
    }
    let mode =
        |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(locked.parent().unwrap(), 0o555);
    mode(hidden.parent().unwrap(), 0o000);

    let out = as_nobody(t.path(), &["--once", "--directory", root.to_str().unwrap()]);
    mode(locked.parent().unwrap(), 0o755);
    mode(hidden.parent().unwrap(), 0o755);
    out.assert_success();
    let line = pass_line(&out);
    assert_eq!(field(&line, "errors"), 2, "{line}");
    assert_eq!(field(&line, "files"), 1, "{line}");
    assert!(!ok.exists(), "the rest of the tree is still cleaned");
    assert!(locked.exists() && hidden.exists());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot remove") && err.contains("task_id=locked/attempt=1.log"),
        "{err}"
    );
    assert!(
        err.contains("cannot open folder") && err.contains("task_id=hidden"),
        "{err}"
    );
    assert!(
        root.join("dag_id=a/run_id=r").is_dir(),
        "folders with leftovers are kept"
    );
}

/// The parallel walk (several walkers sharing the root's entries) must leave exactly what one walker leaves, and
/// count the same, whatever the mix at the root: many DAG folders, files at the root itself, young and old.
#[test]
fn parallel_walkers_leave_what_one_walker_leaves() {
    let build = |root: &Path| {
        for d in 0..40 {
            for r in 0..4 {
                let age = if (d + r) % 3 == 0 { DAY } else { 30 * DAY };
                file(
                    root,
                    &task_log(&format!("d{d}"), &format!("r{r}"), "t", 1),
                    7,
                    age,
                );
            }
        }
        file(root, "scheduler.log", 5, 30 * DAY);
        file(root, "young.log", 5, DAY);
        file(
            root,
            "dag_processor_manager/dag_processor_manager.log",
            5,
            30 * DAY,
        );
    };
    let mut results = vec![];
    for jobs in ["1", "3", "64"] {
        let t = tempdir();
        build(t.path());
        let out = run(&[
            "--once",
            "--jobs",
            jobs,
            "--directory",
            t.path().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "--jobs {jobs}: {out}");
        let line = pass_line(&out);
        let counts: Vec<u64> = ["files", "bytes", "folders", "errors"]
            .iter()
            .map(|k| field(&line, k))
            .collect();
        results.push((jobs, counts, listing(t.path())));
    }
    let (_, counts, left) = &results[0];
    assert_eq!(counts[0], 2 + 40 * 4 - 54, "files removed by one walker");
    for (jobs, c, l) in &results[1..] {
        assert_eq!(c, counts, "--jobs {jobs} counted differently");
        assert_eq!(l, left, "--jobs {jobs} left a different tree");
    }
}

/// A file name may hold a newline: printed raw, it would forge a log line (a fake pass summary, say). Every path
/// printed is escaped, so each removal stays one line and the summary stays the only `pass` line.
#[test]
fn control_characters_in_names_are_escaped() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let t = tempdir();
    let root = t.path();
    let forged = "x\nclean-airflow-logs: pass files=999 bytes=0 folders=0 errors=0 seconds=0\n.log";
    file(root, forged, 1, 30 * DAY);
    file(root, "bell\x07\x1b[2J\r.log", 1, 30 * DAY);
    let not_utf8 = root.join(OsStr::from_bytes(b"dag_id=\xff\xfe/a.log"));
    std::fs::create_dir_all(not_utf8.parent().unwrap()).unwrap();
    std::fs::write(&not_utf8, b"x").unwrap();
    set_age(&not_utf8, 30 * DAY);
    for mode in ["--dry-run", "-v"] {
        let out = run(&["--once", mode, "--directory", root.to_str().unwrap()]);
        out.assert_success();
        let stdout = &out.stdout;
        let text = String::from_utf8(stdout.clone()).expect("output is UTF-8");
        assert!(
            !stdout.iter().any(|&b| b < 0x20 && b != b'\n'),
            "raw control bytes in {text:?}"
        );
        let passes: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("clean-airflow-logs: pass "))
            .collect();
        assert_eq!(passes.len(), 1, "{text}");
        assert_eq!(field(passes[0], "files"), 3, "{text}");
        assert!(
            text.contains("/x\\nclean-airflow-logs: pass files=999"),
            "{text}"
        );
        assert!(text.contains("/bell\\x07\\x1b[2J\\r.log"), "{text}");
        assert!(text.contains("/dag_id=\\xff\\xfe/a.log"), "{text}");
        // Every line is ours: the start line, a removal, or the summary.
        for l in text.lines() {
            assert!(
                l.starts_with("clean-airflow-logs: ")
                    || l.starts_with("would remove ")
                    || l.starts_with("removed "),
                "forged line {l:?}"
            );
        }
    }
    assert_eq!(listing(root), Vec::<String>::new());
}

/// A volume mounted as the log folder has fsck's `lost+found` at its root: never entered (as the official
/// clean-logs prunes it), so nothing in it goes and, unreadable to uid 50000, it is no error line every pass.
#[test]
fn lost_and_found_is_left_alone() {
    let t = tempdir();
    let root = t.path();
    let found = file(root, "lost+found/#1234.log", 1, 90 * DAY);
    let deep = file(root, "dag_id=d/lost+found/x.log", 1, 90 * DAY);
    let log = file(root, &task_log("d", "r", "t", 1), 1, 90 * DAY);
    let out = run(&["--once", "--directory", root.to_str().unwrap()]);
    out.assert_success();
    let line = pass_line(&out);
    assert_eq!(field(&line, "files"), 1, "{line}");
    assert!(found.exists() && deep.exists() && !log.exists());
}
