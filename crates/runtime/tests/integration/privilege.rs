//! Privilege: root steps down, the setuid copy only ever becomes its fixed target, arbitrary UIDs keep working.

use crate::require_root;
use crate::util::*;
use airflow_runtime::passwd;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const REPORT: &str = r#"echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME user=$USER logname=$LOGNAME"
grep -E '^Cap(Prm|Eff):' /proc/self/status"#;

fn run(mut c: Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        code(out.status),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn account(name: &str) -> passwd::Account {
    let (users, groups) = passwd::load(Path::new("/etc/passwd"), Path::new("/etc/group")).unwrap();
    passwd::resolve(name, &users, &groups).unwrap()
}

fn expected(acc: &passwd::Account) -> String {
    let mut gids = acc.groups.clone();
    gids.sort();
    format!(
        "uid={} gid={} groups={} home={} user={n} logname={n}",
        acc.user.uid,
        acc.user.gid,
        gids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        acc.user.home,
        n = acc.user.name
    )
}

fn normalise(report: &str) -> String {
    // `id -G` order is the kernel's; compare as a sorted set.
    let line = report.lines().next().unwrap_or("");
    let (head, rest) = line.split_once("groups=").unwrap_or((line, ""));
    let (groups, tail) = rest.split_once(" home=").unwrap_or((rest, ""));
    let mut g: Vec<u32> = groups
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    g.sort();
    format!(
        "{head}groups={} home={tail}",
        g.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
    )
}

fn no_caps(report: &str) {
    for l in report.lines().filter(|l| l.starts_with("Cap")) {
        assert!(l.ends_with("0000000000000000"), "capabilities left: {l}");
    }
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn root_steps_down_to_astronomer_user() {
    require_root!();
    // The postgres account (installed with PostgreSQL) has a supplementary group (ssl-cert) on Debian.
    let acc = account("postgres");
    let env = |c: &mut Command| {
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("ASTRONOMER_USER", "postgres")
            .env("HOME", "/root");
    };
    let mut direct = Command::new(ENTRYPOINT);
    direct.args(["/bin/sh", "-c", REPORT]);
    env(&mut direct);
    let mut as_pid1 = pid1(ENTRYPOINT, &["/bin/sh", "-c", REPORT]);
    env(&mut as_pid1);
    for c in [direct, as_pid1] {
        let (rc, out, err) = run(c);
        assert_eq!(rc, 0, "{err}");
        assert_eq!(normalise(&out), expected(&acc));
        no_caps(&out);
    }
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn root_with_unknown_user_stops() {
    require_root!();
    let mut c = Command::new(ENTRYPOINT);
    c.arg("true").env("ASTRONOMER_USER", "no-such-user-aprt");
    let (rc, _, err) = run(c);
    assert_eq!(rc, 2);
    assert_eq!(
        err.trim(),
        "entrypoint: ASTRONOMER_USER=no-such-user-aprt: no such user in /etc/passwd"
    );
}

/// A directory for the copy: on a mount that honours setuid bits, and root-owned and not group/other-writable
/// all the way up, as the copy demands (unlike /tmp). The build's temp dir usually qualifies; /run often does.
fn setuid_capable_dir() -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt;
    let candidates = [env!("CARGO_TARGET_TMPDIR"), "/run", "/var/lib", "/root"];
    for c in candidates {
        let p = Path::new(c);
        let safe = p.ancestors().all(|d| {
            fs::metadata(d)
                .map(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
                .unwrap_or(false)
        });
        let cpath = std::ffi::CString::new(c).unwrap();
        // SAFETY: all zeroes is a valid value of this plain C struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: the path is a CString that outlives the call; `st` is a local statvfs for it to fill.
        let suid = unsafe { libc::statvfs(cpath.as_ptr(), &mut st) } == 0
            && st.f_flag & libc::ST_NOSUID == 0;
        if safe && suid {
            return p.to_path_buf();
        }
    }
    panic!("no root-owned directory on a setuid-capable mount among {candidates:?}");
}

/// The image layout in miniature: a setuid-root copy, group-executable by one group, and its target file.
struct SetuidCopy {
    dir: tempfile::TempDir,
    gid: u32,
}

const PLATFORM_UID: &str = "4100";
const PLATFORM_GID: u32 = 4101;

impl SetuidCopy {
    fn new(target: &str) -> SetuidCopy {
        let dir = tempfile::Builder::new()
            .prefix("aprt-stepdown-")
            .tempdir_in(setuid_capable_dir())
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.path().join("stepdown");
        fs::copy(ENTRYPOINT, &copy).unwrap();
        std::os::unix::fs::chown(&copy, Some(0), Some(PLATFORM_GID)).unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o4750)).unwrap();
        let s = SetuidCopy {
            dir,
            gid: PLATFORM_GID,
        };
        s.set_target(target, 0o644, 0);
        s
    }
    fn path(&self) -> String {
        self.dir.path().join("stepdown").display().to_string()
    }
    fn set_target(&self, target: &str, mode: u32, owner: u32) {
        let conf = self.dir.path().join("stepdown-user");
        fs::write(&conf, format!("{target}\n")).unwrap();
        fs::set_permissions(&conf, fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&conf, Some(owner), Some(0)).unwrap();
    }
    /// Run `prog args` as the platform uid, in the platform group or not.
    fn as_platform(&self, in_group: bool, prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={PLATFORM_UID}"))
            .arg(format!("--regid={PLATFORM_UID}"));
        if in_group {
            c.arg(format!("--groups={}", self.gid));
        } else {
            c.arg("--clear-groups");
        }
        // Through a shell: setpriv keeps root's capabilities until its own exec, which would bypass the very
        // permission check (group-only execute) under test.
        c.args(["--", "/bin/sh", "-c", "exec \"$@\"", "sh", prog])
            .args(args);
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/")
            // Must be ignored by the setuid path.
            .env("ASTRONOMER_USER", "root");
        c
    }
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn setuid_copy_steps_down_only_to_its_fixed_target() {
    require_root!();
    let daemon = account("daemon");
    let s = SetuidCopy::new("daemon");
    // Directly, and through the normal entrypoint (which execs the copy for a non-astro uid).
    let direct = s.as_platform(true, &s.path(), &["/bin/sh", "-c", REPORT]);
    let mut via = s.as_platform(true, ENTRYPOINT, &["/bin/sh", "-c", REPORT]);
    via.env("AP_AIRFLOW_STEPDOWN", s.path());
    for c in [direct, via] {
        let (rc, out, err) = run(c);
        assert_eq!(rc, 0, "{err}");
        // ASTRONOMER_USER=root in the environment is ignored: the target is the file's.
        assert_eq!(normalise(&out), expected(&daemon), "{err}");
        no_caps(&out);
    }

    // Not in the platform group: cannot execute the copy at all, and the entrypoint keeps the uid.
    let (rc, _, _) = run(s.as_platform(false, &s.path(), &["true"]));
    assert_eq!(rc, 126);
    let mut via = s.as_platform(false, ENTRYPOINT, &["/bin/sh", "-c", "id -u"]);
    via.env("AP_AIRFLOW_STEPDOWN", s.path());
    let (rc, out, err) = run(via);
    assert_eq!((rc, out.trim()), (0, PLATFORM_UID), "{err}");

    // Any doubt about the target file: refuse, with one line, before running anything.
    let refusals: &[(&str, u32, u32, &str)] = &[
        ("root", 0o644, 0, "not a valid user name"),
        ("0", 0o644, 0, "refusing to step down to uid 0"),
        ("daemon", 0o664, 0, "group/other-writable"),
        ("daemon", 0o646, 0, "group/other-writable"),
        ("daemon", 0o644, 4100, "not root"),
        ("no-such-user-aprt", 0o644, 0, "no user"),
        ("", 0o644, 0, "not a valid user name"),
    ];
    for (target, mode, owner, why) in refusals {
        s.set_target(target, *mode, *owner);
        let (rc, out, err) = run(s.as_platform(true, &s.path(), &["/bin/sh", "-c", "echo ran"]));
        assert_eq!(rc, 1, "{target} {mode:o}: {err}");
        assert!(out.is_empty(), "{target}: command ran");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("entrypoint: refusing to step down:") && err.contains(why),
            "{target} {mode:o}: {err}"
        );
    }
    fs::remove_file(s.dir.path().join("stepdown-user")).unwrap();
    let (rc, _, err) = run(s.as_platform(true, &s.path(), &["true"]));
    assert_eq!(rc, 1, "{err}");
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn arbitrary_uid_keeps_working() {
    require_root!();
    let home = tempdir();
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=123457",
        "--regid=123457",
        "--clear-groups",
        "--",
        ENTRYPOINT,
        "/bin/sh",
        "-c",
    ])
    .arg(r#"echo "$(id -u) $HOME $USER"; touch "$HOME/probe" && echo writable"#)
    .env_clear()
    .env("PATH", "/usr/bin:/bin")
    .env("HOME", "/root")
    .env("AIRFLOW_HOME", home.path());
    let (rc, out, err) = run(c);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(
        out,
        format!("123457 {} astro-123457\nwritable\n", home.path().display())
    );
    assert_eq!(err.matches("running as uid 123457").count(), 1, "{err}");
    assert!(err.starts_with("[WARN  entrypoint ("), "{err}");
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn arbitrary_uid_cannot_inject_passwd_lines() {
    // Issue #11 item 8: with a writable /etc/passwd (a copy bound over it in a private mount namespace), an
    // AIRFLOW_HOME holding a newline or a ':' must not reach the file.
    require_root!();
    for (name, evil) in [
        ("newline", "home\nevil::0:0::/:/bin/sh"),
        ("colon", "home:0:0"),
    ] {
        let dir = tempdir();
        let passwd_copy = dir.path().join("passwd");
        fs::copy("/etc/passwd", &passwd_copy).unwrap();
        fs::set_permissions(&passwd_copy, fs::Permissions::from_mode(0o666)).unwrap();
        let before = fs::read_to_string(&passwd_copy).unwrap();
        let home = dir.path().join(evil);
        fs::create_dir_all(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o777)).unwrap();
        let mut c = Command::new("unshare");
        c.args(["--mount", "--", "/bin/sh", "-c"])
            .arg(
                "mount --bind \"$APRT_PASSWD\" /etc/passwd && exec setpriv --reuid=123458 --regid=123458 \
                 --clear-groups -- \"$APRT_ENTRYPOINT\" /bin/sh -c 'echo ran'",
            )
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", "/root")
            .env("APRT_PASSWD", &passwd_copy)
            .env("APRT_ENTRYPOINT", ENTRYPOINT)
            .env("AIRFLOW_HOME", &home);
        let (rc, out, err) = run(c);
        assert_eq!((rc, out.as_str()), (0, "ran\n"), "{name}: {err}");
        let after = fs::read_to_string(&passwd_copy).unwrap();
        assert!(
            after.starts_with(&before),
            "{name}: existing entries changed"
        );
        let added = &after[before.len()..];
        for line in added.lines() {
            assert_eq!(line.split(':').count(), 7, "{name}: corrupt entry {line:?}");
            assert!(
                line.starts_with("astro-123458:"),
                "{name}: injected {line:?}"
            );
        }
        assert!(!after.contains("evil:"), "{name}: {added:?}");
        assert!(err.contains("no entry added"), "{name}: {err}");
    }
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn root_with_astronomer_uid_zero_stays_root() {
    // Issue #11 item 9: the seed's rule — the current user is kept when it is ASTRONOMER_UID — applies to root.
    require_root!();
    let mut c = Command::new(ENTRYPOINT);
    c.args(["/bin/sh", "-c", REPORT])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/root")
        .env("ASTRONOMER_UID", "0")
        .env("ASTRONOMER_USER", "postgres");
    let (rc, out, err) = run(c);
    assert_eq!(rc, 0, "{err}");
    assert!(out.starts_with("uid=0 gid=0 "), "{out}");
    assert!(!err.contains("running as uid"), "{err}");
}
