//! --max-size: shorten the retention until the folder fits, never below the one-hour floor.

use crate::util::*;

/// Twenty 1000-byte logs aged 1..=20 days, plus a 500-byte non-log file that counts towards the size.
fn aged_tree(root: &std::path::Path) {
    for d in 1..=20 {
        file(
            root,
            &task_log("d", &format!("r{d:02}"), "t", 1),
            1000,
            d * DAY + 600,
        );
    }
    file(root, "notes.txt", 500, 50 * DAY);
}

fn ages_left(root: &std::path::Path) -> Vec<i64> {
    let mut ages: Vec<i64> = listing(root)
        .iter()
        .filter_map(|p| p.strip_prefix("dag_id=d/run_id=r")?.get(..2)?.parse().ok())
        .collect();
    ages.dedup();
    ages
}

#[test]
fn byte_cap_shortens_retention_until_it_fits() {
    let t = tempdir();
    let root = t.path();
    aged_tree(root);
    // 20,500 bytes against a cap of 12,000: the 9 oldest logs must go, leaving 11,500.
    let out = run(&[
        "--once",
        "--directory",
        root.to_str().unwrap(),
        "--retention-days",
        "30",
        "--max-size",
        "12000",
    ]);
    out.assert_success();
    let line = pass_line(&out);
    assert!(line.contains("cap=shortened retention=12d"), "{line}");
    assert_eq!(field(&line, "files"), 9, "{line}");
    assert_eq!(ages_left(root), (1..=11).collect::<Vec<_>>());
    assert!(root.join("notes.txt").exists());

    // Already under the cap: nothing more goes.
    let out = run(&[
        "--once",
        "--directory",
        root.to_str().unwrap(),
        "--retention-days",
        "30",
        "--max-size",
        "12K",
    ]);
    let line = pass_line(&out);
    assert!(
        line.contains("cap=ok") && field(&line, "files") == 0,
        "{line}"
    );
}

#[test]
fn cap_never_goes_below_the_floor() {
    let t = tempdir();
    let root = t.path();
    aged_tree(root);
    let fresh = file(root, "fresh.log", 5000, 60);
    let out = run(&[
        "--once",
        "--directory",
        root.to_str().unwrap(),
        "--max-size",
        "1",
    ]);
    out.assert_success();
    let line = pass_line(&out);
    assert!(line.contains("cap=unmet retention=1h"), "{line}");
    assert_eq!(field(&line, "files"), 20, "{line}");
    assert!(fresh.exists(), "a file younger than the floor was removed");
    assert!(root.join("notes.txt").exists(), "only matching files go");
}

#[test]
fn percent_cap_of_the_file_system() {
    let t = tempdir();
    let root = t.path();
    aged_tree(root);
    let out = run(&[
        "--once",
        "--directory",
        root.to_str().unwrap(),
        "--max-size",
        "100%",
        "--retention-days",
        "30",
    ]);
    let line = pass_line(&out);
    assert!(
        line.contains("cap=ok") && field(&line, "files") == 0,
        "{line}"
    );
    // The temp file system surely holds more than these files: a tiny cap cannot be met, so all but the floor go.
    let out = run(&[
        "--once",
        "--directory",
        root.to_str().unwrap(),
        "--max-size",
        "0.0001%",
        "--dry-run",
    ]);
    let line = pass_line(&out);
    assert!(line.contains("cap=unmet retention=1h"), "{line}");
    assert_eq!(field(&line, "files"), 20, "{line}");
    assert_eq!(ages_left(root).len(), 20, "dry run removed files");
}

/// `N%` is of the volume's size (statvfs `f_blocks`, df's 1K-blocks), the official chart's measure, not of what
/// non-root users may fill (`df`'s Use%, which leaves out reserved blocks). Between the two shares the cap is met.
/// The two differ only where blocks are reserved, so the test makes such a file system: a small ext4 with half its
/// blocks reserved, loop-mounted in a private mount namespace (it vanishes with it). Needs root.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn percent_cap_is_of_the_volume_size() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "needs root to mount a file system"
    );
    let t = tempdir();
    let tree = t.path().join("tree");
    aged_tree(&tree);
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // The tree is copied with its mtimes; 8 MiB of filler make the used share large enough to tell the two apart.
    // The cap is halfway between the used share of the size and df's Use%, from the mounted file system's statvfs.
    let script = r#"
        set -e
        truncate -s 32M "$2/img"
        mkfs.ext4 -q -F -m 50 "$2/img"
        mount -o loop "$2/img" "$3"
        cp -a "$4" "$3/logs"
        dd if=/dev/zero of="$3/filler" bs=1M count=8 status=none
        set -- "$@" $(stat -f -c '%b %f %a' "$3")
        cap=$(awk -v b="$5" -v f="$6" -v a="$7" 'BEGIN { u = b - f; printf "%.3f%%", (100 * u / b + 100 * u / (u + a)) / 2 }')
        echo "statvfs $5 $6 $7 cap $cap"
        "$1" --once --dry-run --directory "$3/logs" --retention-days 30 --max-size "$cap"
    "#;
    let out = in_private_mount_namespace(
        script,
        &[BIN.as_ref(), t.path().as_ref(), mnt.as_ref(), tree.as_ref()],
    );
    out.assert_success();
    let stdout = out.stdout_text();
    let stats: Vec<&str> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("statvfs "))
        .unwrap_or_else(|| panic!("no statvfs line: {out:?}"))
        .split(' ')
        .collect();
    let [blocks, free, avail] = [0, 1, 2].map(|i| stats[i].parse::<f64>().unwrap());
    let used = blocks - free;
    let of_size = 100.0 * used / blocks;
    let use_pct = 100.0 * used / (used + avail);
    assert!(
        use_pct - of_size >= 2.0,
        "{of_size:.2}% of the size, {use_pct:.2}% in df's Use%: too close to tell apart"
    );
    let cap = stats[4];
    let line = pass_line(&out);
    assert!(line.contains(" cap=ok"), "{cap}: {line}");
    assert_eq!(field(&line, "files"), 0, "{line}");
}
