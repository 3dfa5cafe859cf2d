//! The image contract shared by `build` (build arguments), `verify` and the tests: who runs Airflow in the
//! image, which workspace binaries it carries, and the paths it must have with their owners and modes
//! ([`PATHS`], checked by `verify`'s probe and by the end-to-end tests).

/// The image's user, as in the seed.
pub const ASTRONOMER_USER: &str = "astro";
pub const ASTRONOMER_UID: u32 = 50000;
/// The user's home (not `AIRFLOW_HOME`): where an arbitrary UID's writes go too.
pub const ASTRONOMER_HOME: &str = "/home/astro";
/// The seed's extra group of the user.
pub const ASTRONOMER_GROUP: &str = "astrogroup";
pub const ASTRONOMER_GROUP_GID: u32 = 101;
/// The platform UID allowed to step down to astro (the original's `_apt`/UID 100 with gosu).
pub const PLATFORM_UID: u32 = 100;
/// The group of the platform UID: the only one that may run the setuid step-down copy.
pub const PLATFORM_GROUP: &str = "gosuers";
pub const ORG: &str = "astronomer";
/// The workspace's binaries copied into the image (cargo binary names; the build context's `bin/<name>`).
pub const RUNTIME_BINARIES: [&str; 3] = ["entrypoint", "tini", "clean-airflow-logs"];
/// `AIRFLOW_HOME`, the working directory.
pub const AIRFLOW_HOME: &str = "/usr/local/airflow";
/// The setuid-root copy of the entrypoint and, next to it, the file naming the user it steps down to (the
/// runtime's `privilege::STEPDOWN_PATH` and `STEPDOWN_CONF`).
pub const STEPDOWN: &str = "/usr/local/libexec/ap-airflow/stepdown";
pub const STEPDOWN_USER_FILE: &str = "/usr/local/libexec/ap-airflow/stepdown-user";

/// A path the image must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImagePath {
    pub path: &'static str,
    /// Owner, group and mode; `None`: it only has to exist (the man folders, which a JRE install needs).
    pub owned: Option<Owned>,
    /// A symlink's target.
    pub link: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned {
    pub user: &'static str,
    pub group: &'static str,
    pub mode: u32,
}

impl ImagePath {
    /// What `stat -c '%U:%G %a'` prints for it, with ` -> target` for a symlink (`verify-probe.sh`'s `st`).
    pub fn stat(&self) -> Option<String> {
        let o = self.owned?;
        let link = self.link.map(|t| format!(" -> {t}")).unwrap_or_default();
        Some(format!("{}:{} {:o}{link}", o.user, o.group, o.mode))
    }
}

const fn owned(
    path: &'static str,
    user: &'static str,
    group: &'static str,
    mode: u32,
) -> ImagePath {
    ImagePath {
        path,
        owned: Some(Owned { user, group, mode }),
        link: None,
    }
}

const fn exists(path: &'static str) -> ImagePath {
    ImagePath {
        path,
        owned: None,
        link: None,
    }
}

/// Group root may write `AIRFLOW_HOME`: arbitrary UIDs run in group 0 (images/airflow/Dockerfile).
const HOME_DIR: (&str, &str, u32) = (ASTRONOMER_USER, "root", 0o775);

/// The paths of the image, in the order `verify`'s probe lists them.
pub const PATHS: [ImagePath; 11] = [
    owned(AIRFLOW_HOME, HOME_DIR.0, HOME_DIR.1, HOME_DIR.2),
    owned(
        "/usr/local/airflow/logs",
        HOME_DIR.0,
        HOME_DIR.1,
        HOME_DIR.2,
    ),
    owned("/entrypoint", "root", "root", 0o755),
    owned("/usr/bin/tini", "root", "root", 0o755),
    owned("/usr/local/bin/clean-airflow-logs", "root", "root", 0o755),
    owned(STEPDOWN, "root", PLATFORM_GROUP, 0o4750),
    owned(STEPDOWN_USER_FILE, "root", "root", 0o644),
    exists("/usr/share/man/man1"),
    exists("/usr/share/man/man7"),
    // The official chart's path (the seed's images have it too).
    ImagePath {
        link: Some(AIRFLOW_HOME),
        ..owned("/opt/airflow", "root", "root", 0o777)
    },
    // The chart's log groomer sidecar runs /clean-logs.
    owned("/clean-logs", "root", "root", 0o755),
];

/// The image's executables that run Airflow: the runtime's binaries where the image installs them.
pub const EXECUTABLES: [&str; 3] = [
    "/entrypoint",
    "/usr/bin/tini",
    "/usr/local/bin/clean-airflow-logs",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_stats_format() {
        assert_eq!(PATHS[0].stat().unwrap(), "astro:root 775");
        let stepdown = PATHS.iter().find(|p| p.path == STEPDOWN).unwrap();
        assert_eq!(stepdown.stat().unwrap(), "root:gosuers 4750");
        let opt = PATHS.iter().find(|p| p.path == "/opt/airflow").unwrap();
        assert_eq!(opt.stat().unwrap(), "root:root 777 -> /usr/local/airflow");
        assert_eq!(exists("/x").stat(), None);
    }

    #[test]
    fn every_executable_is_a_root_owned_path_of_the_table() {
        for e in EXECUTABLES {
            let p = PATHS.iter().find(|p| p.path == e).unwrap();
            assert_eq!(p.stat().unwrap(), "root:root 755", "{e}");
        }
    }
}
