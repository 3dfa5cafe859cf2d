//! Files vanishing mid-pass and a root folder that appears late.

use crate::util::*;
use std::process::Command;
use std::time::Duration;

/// Stops the groomer mid-pass (SIGSTOP after its first removal), deletes the rest of the tree behind its back, and
/// lets it go on: entries it already read are gone, which must be counted as errors, not be fatal.
#[test]
fn files_vanishing_mid_pass_are_counted_and_the_pass_goes_on() {
    // The stop may land between two folders, where nothing read is stale; a few attempts make that vanishingly rare.
    for attempt in 0..4 {
        let t = tempdir();
        let root = t.path().join("logs");
        // One flat folder: glibc reads it in 32 KiB batches, so most stops land inside a batch.
        for i in 0..4000 {
            file(
                &root,
                &format!("dag_id=d/run_id=r/task_id=t/f{i:05}.log"),
                1,
                30 * DAY,
            );
        }
        let mut g =
            spawn(Command::new(BIN).args(["--once", "-v", "--directory", root.to_str().unwrap()]));
        g.wait_for("removed ");
        g.signal(libc::SIGSTOP);
        std::fs::remove_dir_all(root.join("dag_id=d")).unwrap();
        g.signal(libc::SIGCONT);
        g.exits_with(0, Duration::from_secs(30));
        let lines = g.rest();
        let line = lines
            .iter()
            .find(|l| l.contains(": pass "))
            .expect("pass line");
        assert!(field(line, "files") >= 1);
        assert!(root.is_dir(), "root kept");
        if field(line, "errors") > 0 {
            assert!(
                field(line, "files") + field(line, "errors") <= 4000,
                "{line}"
            );
            return;
        }
        eprintln!("attempt {attempt}: stop landed between batches, retrying");
    }
    panic!("no vanished file was ever counted");
}

/// The sidecar (loop mode) may start before anything created the folder: it waits for it.
#[test]
fn missing_root_is_waited_for_in_loop_mode() {
    let t = tempdir();
    let root = t.path().join("logs");
    let mut g =
        spawn(Command::new(BIN).args(["--every", "3600", "--directory", root.to_str().unwrap()]));
    g.wait_for("waiting for");
    assert!(
        g.child.try_wait().unwrap().is_none(),
        "exited instead of waiting"
    );
    // The folder appears at once, with its file (a rename), as a mounted volume would.
    let staging = t.path().join("staging");
    file(&staging, "late.log", 3, 30 * DAY);
    std::fs::rename(&staging, &root).unwrap();
    let line = g.wait_for(": pass ");
    assert_eq!(field(&line, "errors"), 0, "{line}");
    assert_eq!(field(&line, "files"), 1, "{line}");
    assert!(!root.join("late.log").exists());
    g.signal(libc::SIGTERM);
    g.exits_with(0, Duration::from_secs(5));
}

/// `--once` (cron, a CronJob) has nothing to wait for: a missing folder means nothing to do, status 0.
#[test]
fn once_with_a_missing_root_has_nothing_to_do() {
    let t = tempdir();
    let root = t.path().join("logs");
    let mut g = spawn(Command::new(BIN).args(["--once", "--directory", root.to_str().unwrap()]));
    g.exits_with(0, Duration::from_secs(10));
    let lines = g.rest();
    let nothing: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("nothing to do"))
        .collect();
    assert_eq!(nothing.len(), 1, "{lines:?}");
    assert!(nothing[0].contains(root.to_str().unwrap()), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("waiting for")),
        "{lines:?}"
    );
    assert!(!root.exists(), "the folder was created");
}
