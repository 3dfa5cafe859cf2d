//! The init: signal forwarding, exit codes, reaping, process groups, signal masks, warnings.

use crate::require_root;
use crate::util::*;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// The child records each signal it gets in $1; TERM also ends it with status 7.
const RECORDER: &str = r#"F=$1
for s in INT USR1 USR2 HUP; do trap "echo $s >> $F" $s; done
trap "echo TERM >> $F; exit 7" TERM
echo ready >> $F
while :; do sleep 0.05; done
"#;

fn forwarding(init: &str, pre: &[&str]) {
    require_root!();
    let dir = tempdir();
    let script = dir.path().join("recorder.sh");
    let log = dir.path().join("signals.log");
    write_exe(&script, RECORDER);
    let mut args: Vec<&str> = pre.to_vec();
    args.extend(["/bin/sh", script.to_str().unwrap(), log.to_str().unwrap()]);
    let mut p = Proc::spawn({
        let mut c = pid1(init, &args);
        c.envs(same_user());
        c
    });
    lines_at_least(&log, 1, T);
    let init_pid = p.ns_init();
    let sigs = [
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
    ];
    for (i, (name, sig)) in sigs.iter().enumerate() {
        kill(init_pid, *sig);
        let lines = lines_at_least(&log, i + 2, T);
        assert_eq!(lines[i + 1], *name, "{init}: {lines:?}");
    }
    kill(init_pid, libc::SIGTERM);
    assert_eq!(code(p.wait(T)), 7, "{init}: {}", p.stderr());
    assert_eq!(read(&log).lines().last(), Some("TERM"));
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn tini_forwards_signals_as_pid1() {
    forwarding(TINI, &["--"]);
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn entrypoint_forwards_signals_as_pid1() {
    forwarding(ENTRYPOINT, &[]);
}

fn status_of(mut c: Command) -> (i32, String) {
    let out = c.output().unwrap();
    (
        code(out.status),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tini_exit_codes_all_256() {
    for n in 0..=255 {
        let mut c = Command::new(TINI);
        c.args(["-s", "--", "/bin/sh", "-c", &format!("exit {n}")]);
        assert_eq!(status_of(c).0, n);
    }
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn exit_codes_as_pid1() {
    require_root!();
    for (init, pre) in [(TINI, vec!["--"]), (ENTRYPOINT, vec![])] {
        for n in [0, 1, 2, 42, 126, 127, 254, 255] {
            let script = format!("exit {n}");
            let mut args = pre.clone();
            args.extend(["/bin/sh", "-c", &script]);
            let mut c = pid1(init, &args);
            c.envs(same_user());
            assert_eq!(status_of(c).0, n, "{init} exit {n}");
        }
        for sig in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGKILL,
            libc::SIGUSR1,
            libc::SIGTERM,
        ] {
            let script = format!("kill -{sig} $$");
            let mut args = pre.clone();
            args.extend(["/bin/sh", "-c", &script]);
            let mut c = pid1(init, &args);
            c.envs(same_user());
            assert_eq!(status_of(c).0, 128 + sig, "{init} signal {sig}");
        }
    }
}

#[test]
fn not_found_and_not_executable() {
    let dir = tempdir();
    let noexec = dir.path().join("noexec");
    std::fs::write(&noexec, "#!/bin/sh\n").unwrap();
    let noexec = noexec.to_str().unwrap();
    let cases: Vec<(Command, i32)> = vec![
        (
            {
                let mut c = Command::new(TINI);
                c.args(["-s", "--", "/nonexistent/cmd"]);
                c
            },
            127,
        ),
        (
            {
                let mut c = Command::new(TINI);
                c.args(["-s", "--", "no-such-command-anywhere"]);
                c
            },
            127,
        ),
        (
            {
                let mut c = Command::new(TINI);
                c.args(["-s", "--", noexec]);
                c
            },
            126,
        ),
        (
            {
                let mut c = Command::new(ENTRYPOINT);
                c.arg("no-such-command-anywhere").envs(same_user());
                c
            },
            127,
        ),
        (
            {
                let mut c = Command::new(ENTRYPOINT);
                c.arg(noexec).envs(same_user());
                c
            },
            126,
        ),
    ];
    for (mut c, want) in cases {
        // A PATH without unreadable directories: there execvp reports EACCES (126) for a missing command.
        c.env("PATH", "/usr/bin:/bin");
        let dbg = format!("{c:?}");
        let (got, err) = status_of(c);
        assert_eq!(got, want, "{dbg}: {err}");
        assert!(err.contains("failed:"), "{dbg}: {err}");
    }
}

/// The same as PID 1 of a new PID namespace.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn not_found_and_not_executable_as_pid1() {
    require_root!();
    let dir = tempdir();
    let noexec = dir.path().join("noexec");
    std::fs::write(&noexec, "#!/bin/sh\n").unwrap();
    let noexec = noexec.to_str().unwrap();
    for (init, pre) in [(TINI, vec!["--"]), (ENTRYPOINT, vec![])] {
        for (cmd, want) in [("no-such-command-anywhere", 127), (noexec, 126)] {
            let mut args = pre.clone();
            args.push(cmd);
            let mut c = pid1(init, &args);
            c.envs(same_user());
            assert_eq!(status_of(c).0, want, "{init} {cmd}");
        }
    }
}

/// Orphans re-parented to PID 1 must all be reaped: the child polls /proc of its namespace until there is no
/// zombie and no orphan left (or fails after 5 s).
const ORPHANS: &str = r#"for i in 1 2 3 4 5 6 7 8; do sh -c 'sleep 0.1 & exit 0'; done
n=0
while :; do
  z=$(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l)
  s=$(grep -l '^Name:.sleep$' /proc/[0-9]*/status 2>/dev/null | wc -l)
  [ "$z" = 0 ] && [ "$s" = 0 ] && exit 0
  n=$((n+1)); [ $n -gt 500 ] && { echo "zombies=$z sleeping=$s" >&2; exit 1; }
  sleep 0.01
done
"#;

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn reaps_orphaned_zombies_as_pid1() {
    require_root!();
    for (init, pre) in [(TINI, vec!["--"]), (ENTRYPOINT, vec![])] {
        let mut args = pre.clone();
        args.extend(["/bin/sh", "-c", ORPHANS]);
        let mut c = pid1(init, &args);
        c.envs(same_user());
        let (got, err) = status_of(c);
        assert_eq!(got, 0, "{init}: {err}");
    }
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn warns_on_reaping_with_w() {
    require_root!();
    let (rc, err) = status_of(pid1(TINI, &["-w", "--", "/bin/sh", "-c", ORPHANS]));
    assert_eq!(rc, 0, "{err}");
    assert!(
        err.contains("[WARN  tini (1)] Reaped zombie process with pid="),
        "{err}"
    );
    let (_, err) = status_of(pid1(TINI, &["--", "/bin/sh", "-c", ORPHANS]));
    assert!(!err.contains("Reaped zombie"), "{err}");
}

#[test]
fn subreaper_adopts_and_reaps_orphans() {
    // Not PID 1: with -s (or TINI_SUBREAPER) the orphan's parent becomes tini, and it gets reaped.
    let script = r#"sh -c 'sleep 0.2 & echo $! > "$0"; exit 0' "$1"
pid=$(cat "$1")
grep -q "^PPid:.$PPID\$" /proc/$pid/status || { echo "orphan not adopted" >&2; exit 1; }
n=0; while [ -e /proc/$pid ]; do n=$((n+1)); [ $n -gt 500 ] && { echo "orphan not reaped" >&2; exit 1; }; sleep 0.01; done
"#;
    let dir = tempdir();
    let f = dir.path().join("pid");
    let f = f.to_str().unwrap();
    let mut c = Command::new(TINI);
    c.args(["-s", "--", "/bin/sh", "-c", script, "sh", f]);
    let (got, err) = status_of(c);
    assert_eq!(got, 0, "{err}");
    assert!(!err.contains("not running as PID 1"), "{err}");
    let mut c = Command::new(TINI);
    c.args(["--", "/bin/sh", "-c", script, "sh", f])
        .env("TINI_SUBREAPER", "");
    assert_eq!(status_of(c).0, 0);
}

const GRANDCHILD: &str = r#"F=$1
trap "echo gc-USR1 >> $F" USR1
trap "echo gc-USR2 >> $F; exit 0" USR2
echo gc-ready >> $F
while :; do sleep 0.05; done
"#;

const PARENT: &str = r#"F=$1
/bin/sh "$2" "$F" &
GC=$!
trap "echo child-USR1 >> $F" USR1
trap "kill -USR2 $GC 2>/dev/null; echo child-USR2 >> $F" USR2
trap "exit 0" TERM
while ! grep -q gc-ready "$F"; do sleep 0.01; done
echo ready >> $F
while :; do sleep 0.05; done
"#;

/// Default: only the direct child gets signals (Celery warm shutdown); -g / TINI_KILL_PROCESS_GROUP: the group.
fn group_mode(init: &str, pre: &[&str], env: Option<&str>, group: bool) {
    require_root!();
    let dir = tempdir();
    let (gc, parent, log) = (
        dir.path().join("gc.sh"),
        dir.path().join("parent.sh"),
        dir.path().join("log"),
    );
    write_exe(&gc, GRANDCHILD);
    write_exe(&parent, PARENT);
    let mut args = pre.to_vec();
    args.extend([
        "/bin/sh",
        parent.to_str().unwrap(),
        log.to_str().unwrap(),
        gc.to_str().unwrap(),
    ]);
    let mut c = pid1(init, &args);
    c.envs(same_user());
    if let Some(e) = env {
        c.env(e, "");
    }
    let mut p = Proc::spawn(c);
    wait_for("ready", T, || {
        read(&log).lines().any(|l| l == "ready").then_some(())
    });
    let init_pid = p.ns_init();
    kill(init_pid, libc::SIGUSR1);
    wait_for("child-USR1", T, || {
        read(&log).contains("child-USR1").then_some(())
    });
    kill(init_pid, libc::SIGUSR2);
    wait_for("gc-USR2", T, || {
        read(&log).contains("gc-USR2").then_some(())
    });
    // USR1 is delivered before USR2 whenever the grandchild got it at all, so this is no race.
    let text = read(&log);
    assert_eq!(
        text.contains("gc-USR1"),
        group,
        "{init} group={group}: {text}"
    );
    kill(init_pid, libc::SIGTERM);
    p.wait(T);
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn signals_go_to_direct_child_by_default() {
    group_mode(TINI, &["--"], None, false);
    group_mode(ENTRYPOINT, &[], None, false);
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn signals_go_to_process_group_on_request() {
    group_mode(TINI, &["-g", "--"], None, true);
    group_mode(TINI, &["--"], Some("TINI_KILL_PROCESS_GROUP"), true);
    group_mode(ENTRYPOINT, &[], Some("TINI_KILL_PROCESS_GROUP"), true);
}

/// Start `c` with SIGUSR1 blocked and SIGHUP ignored, as a parent might; the command must see exactly that.
fn mask_of(mut c: Command) -> (u64, u64) {
    // SAFETY: the closure makes only async-signal-safe calls (sigemptyset, sigaddset, sigprocmask, signal) on a
    // local set, and allocates nothing.
    unsafe {
        c.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {text:?}"));
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    (field("SigBlk:"), field("SigIgn:"))
}

const GREP_SIGNALS: [&str; 4] = ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"];

#[test]
fn child_gets_original_signal_mask_and_dispositions() {
    let grep = GREP_SIGNALS;
    same_mask_and_dispositions(vec![
        ("tini", {
            let mut c = Command::new(TINI);
            c.args(["-s", "--"]).args(grep);
            c
        }),
        ("entrypoint exec", {
            let mut c = Command::new(ENTRYPOINT);
            c.args(grep).envs(same_user());
            c
        }),
    ]);
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn child_gets_original_signal_mask_and_dispositions_as_pid1() {
    require_root!();
    let grep = GREP_SIGNALS;
    let mut t = pid1(TINI, &["--"]);
    t.args(grep);
    let mut e = pid1(ENTRYPOINT, &grep);
    e.envs(same_user());
    same_mask_and_dispositions(vec![("tini pid1", t), ("entrypoint pid1", e)]);
}

/// Each command (running [`GREP_SIGNALS`]) sees the signal mask and dispositions the command itself sees when
/// started directly by the same parent: the init must be invisible.
fn same_mask_and_dispositions(cases: Vec<(&str, Command)>) {
    let usr1 = 1u64 << (libc::SIGUSR1 - 1);
    let hup = 1u64 << (libc::SIGHUP - 1);
    let grep = GREP_SIGNALS;
    let baseline = mask_of({
        let mut c = Command::new(grep[0]);
        c.args(&grep[1..]);
        c
    });
    assert_eq!(baseline.0, usr1);
    assert_eq!(baseline.1 & hup, hup);
    for (name, c) in cases {
        let (blk, ign) = mask_of(c);
        assert_eq!(blk, baseline.0, "{name}: SigBlk {blk:x}");
        assert_eq!(
            ign, baseline.1,
            "{name}: SigIgn {ign:x} (TTIN/TTOU must not stay ignored)"
        );
    }
}

#[test]
fn exit_code_remapping() {
    let cases: &[(&[&str], i32)] = &[
        (&["-e", "3", "--", "/bin/sh", "-c", "exit 3"], 0),
        (&["-e", "3", "--", "/bin/sh", "-c", "exit 4"], 4),
        (&["-e", "143", "--", "/bin/sh", "-c", "kill -TERM $$"], 0),
        (&["-e", "1", "-e2", "--", "/bin/sh", "-c", "exit 2"], 0),
    ];
    for (args, want) in cases {
        let mut c = Command::new(TINI);
        c.arg("-s").args(*args);
        assert_eq!(status_of(c).0, *want, "{args:?}");
    }
}

const NOT_PID1_WARNING: &str =
    "Tini is not running as PID 1 and isn't registered as a child subreaper";

#[test]
fn warns_when_neither_pid1_nor_subreaper() {
    let warn = NOT_PID1_WARNING;
    let run = |args: &[&str], env: Option<(&str, &str)>| {
        let mut c = Command::new(TINI);
        c.args(args);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        status_of(c)
    };
    let (rc, err) = run(&["true"], None);
    assert_eq!(rc, 0);
    assert!(err.contains("[WARN  tini (") && err.contains(warn), "{err}");
    assert!(!run(&["-s", "true"], None).1.contains(warn));
    assert!(!run(&["true"], Some(("TINI_SUBREAPER", "")))
        .1
        .contains(warn));
    assert!(!run(&["true"], Some(("TINI_VERBOSITY", "0")))
        .1
        .contains(warn));
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn no_warning_as_pid1() {
    require_root!();
    let (rc, err) = status_of(pid1(TINI, &["true"]));
    assert_eq!(rc, 0, "{err}");
    assert!(!err.contains(NOT_PID1_WARNING), "{err}");
}

#[test]
fn tini_command_line() {
    let out = Command::new(TINI).arg("-h").output().unwrap();
    assert_eq!(code(out.status), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: "));
    let out = Command::new(TINI).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tini version 0.19.0"));
    for (args, msg) in [
        (&["-x", "true"][..], "invalid option -- 'x'"),
        (&["-e"], "option requires an argument -- 'e'"),
        (&["-e", "300", "true"], "Not a valid option for -e: 300"),
        (
            &["-p", "SIGNOPE", "true"],
            "Not a valid option for -p: SIGNOPE",
        ),
        (&[], "Usage: "),
    ] {
        let (rc, err) = status_of({
            let mut c = Command::new(TINI);
            c.args(args);
            c
        });
        assert_eq!(rc, 1, "{args:?}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
}

#[test]
fn parent_death_signal_reaches_the_child() {
    // tini -p SIGTERM under a parent shell; SIGKILL the parent: tini gets SIGTERM and forwards it.
    let dir = tempdir();
    let (script, log) = (dir.path().join("recorder.sh"), dir.path().join("log"));
    write_exe(&script, RECORDER);
    let parent = format!(
        "{TINI} -s -p SIGTERM -- /bin/sh {} {} & wait",
        script.display(),
        log.display()
    );
    let mut p = Proc::spawn({
        let mut c = Command::new("/bin/sh");
        c.args(["-c", &parent]);
        c
    });
    lines_at_least(&log, 1, T);
    kill(p.pid(), libc::SIGKILL);
    p.wait(T);
    wait_for("TERM from the parent-death signal", T, || {
        read(&log).lines().any(|l| l == "TERM").then_some(())
    });
}

#[test]
fn entrypoint_execs_when_not_pid1() {
    // The command replaces the entrypoint: same pid, no supervising process left behind.
    let mut c = Command::new(ENTRYPOINT);
    c.args(["/bin/sh", "-c", "echo $$"]).envs(same_user());
    let child = c.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pid.to_string());
}
