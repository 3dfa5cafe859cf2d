//! Who the entrypoint runs as (docs/runtime.md, "Identity").
//!
//! * `ASTRONOMER_UID` (default 50000) → nothing to do (checked first, as the seed does: `ASTRONOMER_UID=0`
//!   keeps root);
//! * root → step down to `ASTRONOMER_USER` (default `astro`) before anything else runs;
//! * the platform UID → exec the setuid-root copy ([`STEPDOWN_PATH`]), which drops to the user named in a
//!   root-owned file next to it *before* it reads any argument or environment variable;
//! * anything else (OpenShift-style arbitrary UID) → keep it, make it usable, warn once.

use crate::passwd::{self, Account};
use crate::syscall::Syscall;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where the image installs the setuid-root copy of the entrypoint (root:<platform group>, mode 4750).
pub const STEPDOWN_PATH: &str = "/usr/local/libexec/ap-airflow/stepdown";
/// Overrides [`STEPDOWN_PATH`] for the *unprivileged* entrypoint only (tests). Harmless: it only names a program
/// the caller could execute anyway; the setuid copy itself never reads the environment before dropping.
pub const STEPDOWN_ENV: &str = "AP_AIRFLOW_STEPDOWN";
/// The file, next to the setuid copy, naming the only user it steps down to.
pub const STEPDOWN_CONF: &str = "stepdown-user";
/// Set when exec'ing the setuid copy, so a copy that did not get privileges (nosuid mount) cannot loop.
pub const TRIED_ENV: &str = "_AP_AIRFLOW_STEPDOWN_TRIED";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{0} failed: {1}")]
    Syscall(&'static str, #[source] std::io::Error),
    #[error("still able to regain root after dropping privileges; refusing to continue")]
    Regained,
    #[error("ids after step-down are uid {0}/euid {1}, expected {2}")]
    Mismatch(u32, u32, u32),
    #[error("{0} is not a safe configuration file: {1}")]
    Unsafe(PathBuf, String),
    #[error("{0} names {1:?}, which is not a valid user name")]
    BadName(PathBuf, String),
    #[error("no user {0:?} in /etc/passwd")]
    NoUser(String),
    #[error("refusing to step down to uid 0 ({0:?})")]
    Root(String),
}

/// What to do about the current identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Keep,
    StepDown(String),
    ExecSetuid(PathBuf),
    Arbitrary,
}

pub struct Inputs<'a> {
    pub uid: u32,
    pub astronomer_uid: u32,
    pub astronomer_user: &'a str,
    /// The setuid copy's path when the caller may execute it.
    pub setuid_copy: Option<PathBuf>,
    pub already_tried: bool,
}

/// The seed's rule first: the current user is kept when it is `ASTRONOMER_UID`, root included
/// (`ASTRONOMER_UID=0` started as root stays root: the operator's choice).
pub fn plan(i: &Inputs) -> Plan {
    if i.uid == i.astronomer_uid {
        Plan::Keep
    } else if i.uid == 0 {
        Plan::StepDown(i.astronomer_user.to_string())
    } else if let (Some(p), false) = (&i.setuid_copy, i.already_tried) {
        Plan::ExecSetuid(p.clone())
    } else {
        Plan::Arbitrary
    }
}

/// Become `acc`: supplementary groups, then gid, then uid (the order that still has the privilege to do each),
/// then prove root cannot be regained.
pub fn step_down(sys: &dyn Syscall, acc: &Account) -> Result<(), Error> {
    sys.setgroups(&acc.groups)
        .map_err(|e| Error::Syscall("setgroups", e))?;
    sys.setgid(acc.user.gid)
        .map_err(|e| Error::Syscall("setgid", e))?;
    sys.setuid(acc.user.uid)
        .map_err(|e| Error::Syscall("setuid", e))?;
    let (uid, euid) = (sys.getuid(), sys.geteuid());
    if uid != acc.user.uid || euid != acc.user.uid {
        return Err(Error::Mismatch(uid, euid, acc.user.uid));
    }
    if acc.user.uid != 0 && sys.setuid(0).is_ok() {
        return Err(Error::Regained);
    }
    Ok(())
}

/// True when running as a setuid-root program for a non-root caller.
pub fn running_setuid(sys: &dyn Syscall) -> bool {
    sys.geteuid() == 0 && sys.getuid() != 0
}

/// A user name as `useradd` would accept it.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The target of the setuid copy: the file [`STEPDOWN_CONF`] next to `exe`. It and every directory above it
/// must be root-owned and writable by nobody else, so a caller can neither edit it nor hard-link the setuid
/// binary next to a file of their own.
pub fn setuid_target(exe: &Path) -> Result<String, Error> {
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let conf = dir.join(STEPDOWN_CONF);
    let meta = std::fs::symlink_metadata(&conf).map_err(|e| Error::Io(conf.clone(), e))?;
    if !meta.file_type().is_file() {
        return Err(Error::Unsafe(conf, "not a regular file".into()));
    }
    check_owner(&conf, &meta)?;
    for d in conf.ancestors().skip(1) {
        let m = std::fs::metadata(d).map_err(|e| Error::Io(d.to_path_buf(), e))?;
        check_owner(d, &m).map_err(|e| Error::Unsafe(conf.clone(), e.to_string()))?;
    }
    let text = std::fs::read_to_string(&conf).map_err(|e| Error::Io(conf.clone(), e))?;
    let name = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    if !valid_user_name(name) || name == "root" {
        return Err(Error::BadName(conf, name.to_string()));
    }
    Ok(name.to_string())
}

fn check_owner(p: &Path, m: &std::fs::Metadata) -> Result<(), Error> {
    if m.uid() != 0 {
        return Err(Error::Unsafe(
            p.to_path_buf(),
            format!("owned by uid {}, not root", m.uid()),
        ));
    }
    if m.mode() & 0o022 != 0 {
        return Err(Error::Unsafe(
            p.to_path_buf(),
            format!("mode {:o} is group/other-writable", m.mode() & 0o7777),
        ));
    }
    Ok(())
}

/// Look `spec` up and refuse anything that resolves to uid 0 (used by the setuid path).
pub fn resolve_unprivileged(
    spec: &str,
    users: &[passwd::User],
    groups: &[passwd::Group],
) -> Result<Account, Error> {
    let acc =
        passwd::resolve(spec, users, groups).ok_or_else(|| Error::NoUser(spec.to_string()))?;
    if acc.user.uid == 0 {
        return Err(Error::Root(spec.to_string()));
    }
    Ok(acc)
}

/// Whether `s` can be a field of a passwd line: no `:` (the separator) and no control character (a newline
/// would start a line of the caller's choosing).
pub fn passwd_field_ok(s: &str) -> bool {
    !s.chars().any(|c| c == ':' || c.is_control())
}

/// The passwd line added for an arbitrary UID when `/etc/passwd` is writable (as the official image does);
/// `None` when `home` cannot be a passwd field.
pub fn arbitrary_passwd_line(uid: u32, gid: u32, home: &str) -> Option<String> {
    passwd_field_ok(home).then(|| {
        format!("astro-{uid}:x:{uid}:{gid}:Airflow user (arbitrary UID):{home}:/usr/sbin/nologin\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passwd::User;
    use crate::syscall::fake::{Call, Fake};

    fn acc(uid: u32, gid: u32, groups: &[u32]) -> Account {
        Account {
            user: User {
                name: "astro".into(),
                uid,
                gid,
                home: "/home/astro".into(),
                shell: "/bin/sh".into(),
            },
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn plan_table() {
        let copy = Some(PathBuf::from("/s"));
        let cases = [
            (0, None, false, Plan::StepDown("astro".into())),
            (0, copy.clone(), false, Plan::StepDown("astro".into())),
            (50000, copy.clone(), false, Plan::Keep),
            (100, copy.clone(), false, Plan::ExecSetuid("/s".into())),
            (100, copy.clone(), true, Plan::Arbitrary),
            (100, None, false, Plan::Arbitrary),
            (1234567, None, false, Plan::Arbitrary),
        ];
        for (uid, setuid_copy, already_tried, want) in cases {
            let i = Inputs {
                uid,
                astronomer_uid: 50000,
                astronomer_user: "astro",
                setuid_copy,
                already_tried,
            };
            assert_eq!(plan(&i), want, "uid {uid}");
        }
        // Issue #11 item 9: the seed keeps the current user when it is ASTRONOMER_UID, root included.
        for (uid, astronomer_uid, want) in [
            (0, 0, Plan::Keep),
            (0, 50000, Plan::StepDown("astro".into())),
            (100, 100, Plan::Keep),
        ] {
            let i = Inputs {
                uid,
                astronomer_uid,
                astronomer_user: "astro",
                setuid_copy: copy.clone(),
                already_tried: false,
            };
            assert_eq!(plan(&i), want, "uid {uid}, ASTRONOMER_UID={astronomer_uid}");
        }
    }

    #[test]
    fn step_down_order_and_verification() {
        let sys = Fake::new(0, 0);
        step_down(&sys, &acc(50000, 50000, &[50000, 101])).unwrap();
        assert_eq!(
            *sys.calls.borrow(),
            [
                Call::SetGroups(vec![50000, 101]),
                Call::SetGid(50000),
                Call::SetUid(50000),
                Call::SetUid(0)
            ]
        );
        assert_eq!(
            (sys.getuid(), sys.geteuid(), sys.getgid()),
            (50000, 50000, 50000)
        );
    }

    #[test]
    fn step_down_from_setuid() {
        let sys = Fake::new(100, 0);
        assert!(running_setuid(&sys));
        step_down(&sys, &acc(50000, 50000, &[50000])).unwrap();
        assert!(!running_setuid(&sys));
        assert_eq!(sys.getuid(), 50000);
    }

    #[test]
    fn step_down_detects_regained_root() {
        let mut sys = Fake::new(0, 0);
        sys.allow_regain = true;
        assert!(matches!(
            step_down(&sys, &acc(50000, 50000, &[50000])),
            Err(Error::Regained)
        ));
    }

    #[test]
    fn step_down_stops_at_first_failure() {
        let mut sys = Fake::new(0, 0);
        sys.fail = Some(Call::SetGid(50000));
        assert!(matches!(
            step_down(&sys, &acc(50000, 50000, &[50000])),
            Err(Error::Syscall("setgid", _))
        ));
        // uid never touched: no half-dropped state with root's uid but another gid continues.
        assert!(!sys
            .calls
            .borrow()
            .iter()
            .any(|c| matches!(c, Call::SetUid(_))));
    }

    #[test]
    fn unprivileged_caller_cannot_step_anywhere() {
        let sys = Fake::new(100, 100);
        assert!(matches!(
            step_down(&sys, &acc(50000, 50000, &[50000])),
            Err(Error::Syscall("setgroups", _))
        ));
    }

    #[test]
    fn passwd_lines_refuse_separators_and_control_characters() {
        assert_eq!(
            arbitrary_passwd_line(1234, 0, "/usr/local/airflow").as_deref(),
            Some("astro-1234:x:1234:0:Airflow user (arbitrary UID):/usr/local/airflow:/usr/sbin/nologin\n")
        );
        for home in [
            "/a\nevil::0:0::/:/bin/sh",
            "/a:b",
            "/a\rb",
            "/a\0b",
            "/a\u{85}b",
        ] {
            assert_eq!(arbitrary_passwd_line(1234, 0, home), None, "{home:?}");
        }
    }

    #[test]
    fn user_names() {
        for ok in ["astro", "a_b-c.d", "x1"] {
            assert!(valid_user_name(ok), "{ok}");
        }
        for bad in ["", "-x", "a:b", "a b", "a/b", "ä", &"x".repeat(33)] {
            assert!(!valid_user_name(bad), "{bad}");
        }
    }

    #[test]
    fn setuid_refuses_uid_zero() {
        let users = passwd::parse_passwd(
            "root:x:0:0::/root:/bin/sh\ntoor:x:0:0::/root:/bin/sh\nastro:x:5:5::/h:/bin/sh\n",
        );
        assert!(matches!(
            resolve_unprivileged("toor", &users, &[]),
            Err(Error::Root(_))
        ));
        assert!(matches!(
            resolve_unprivileged("0", &users, &[]),
            Err(Error::Root(_))
        ));
        assert!(matches!(
            resolve_unprivileged("ghost", &users, &[]),
            Err(Error::NoUser(_))
        ));
        assert_eq!(
            resolve_unprivileged("astro", &users, &[]).unwrap().user.uid,
            5
        );
    }

    #[test]
    fn setuid_conf_checks() {
        use std::os::unix::fs::PermissionsExt;
        // Tests run as root in CI; as another user every file is "not root-owned", which is what we check then.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        // /run is root-owned and not world-writable (unlike /tmp), so the "safe" case can be exercised.
        let base = if root && Path::new("/run").is_dir() {
            PathBuf::from("/run")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::tempdir_in(base).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.path().join("stepdown");
        let conf = dir.path().join(STEPDOWN_CONF);
        assert!(matches!(setuid_target(&exe), Err(Error::Io(..))));
        std::fs::write(&conf, "# target\nastro\n").unwrap();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
        let parents_safe = dir.path().ancestors().all(|d| {
            std::fs::metadata(d)
                .map(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
                .unwrap_or(false)
        });
        if root && parents_safe {
            assert_eq!(setuid_target(&exe).unwrap(), "astro");
            std::fs::write(&conf, "root\n").unwrap();
            assert!(matches!(setuid_target(&exe), Err(Error::BadName(..))));
            std::fs::write(&conf, "").unwrap();
            assert!(matches!(setuid_target(&exe), Err(Error::BadName(..))));
        } else {
            assert!(matches!(setuid_target(&exe), Err(Error::Unsafe(..))));
        }
        std::fs::write(&conf, "astro\n").unwrap();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(setuid_target(&exe), Err(Error::Unsafe(..))));
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(setuid_target(&exe), Err(Error::Unsafe(..))));
        std::fs::remove_file(&conf).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &conf).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(setuid_target(&exe), Err(Error::Unsafe(..))));
    }
}
