//! Flags and environment. Every bad value becomes one line naming the flag (or variable) and the value; main exits
//! with status 2 before touching anything.

use crate::age::Retention;
use crate::report::escape;
use clap::Parser;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub const RETENTION_VARS: [&str; 2] = [
    "ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS",
    "AIRFLOW__LOG_RETENTION_DAYS",
];
pub const FREQUENCY_VAR: &str = "AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES";
const DEFAULT_RETENTION: &str = "15";
const DEFAULT_EVERY: u64 = 900;
/// About 19 years: anything longer is surely a typo.
const MAX_EVERY_MINUTES: u64 = 10_000_000;
/// Walkers working at once: the walk mostly waits for inode reads, and a cold disk serves several in parallel
/// (measured: 8 concurrent walks stat a cold 200k-file tree 3× faster than one).
const DEFAULT_JOBS: u16 = 8;

/// Deletes expired Airflow task logs, then folders left empty, every quarter hour (UTC).
/// A flag given twice is no error: the last one wins, so arguments added after a wrapper's own (`/clean-logs`'s)
/// override them.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, args_override_self = true)]
struct Flags {
    /// Run one pass, then exit.
    #[arg(long)]
    once: bool,
    /// List what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print every file and folder removed.
    #[arg(long, short)]
    verbose: bool,
    /// Folder to clean [default: ${AIRFLOW_HOME:-/usr/local/airflow}/logs].
    #[arg(long, value_name = "DIR")]
    directory: Option<PathBuf>,
    /// Retention in days, fractional allowed, no unit suffix [default: $ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS,
    /// else $AIRFLOW__LOG_RETENTION_DAYS, else 15].
    #[arg(long, value_name = "N", value_parser = Retention::days, overrides_with = "retention_minutes")]
    retention_days: Option<Retention>,
    /// Retention in minutes instead (as find -mmin +N); the last of the two retention flags wins.
    #[arg(long, value_name = "N", value_parser = Retention::minutes, overrides_with = "retention_days")]
    retention_minutes: Option<Retention>,
    /// Seconds between passes, aligned to multiples since the epoch (UTC) [default: 60 ×
    /// $AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES, else 900].
    #[arg(long, value_name = "SECONDS", value_parser = parse_every, overrides_with = "every_minutes")]
    every: Option<u64>,
    /// The same in whole minutes (1 to 10000000); the last of --every and --every-minutes wins.
    #[arg(long, value_name = "MINUTES", value_parser = parse_every_minutes, overrides_with = "every")]
    every_minutes: Option<u64>,
    /// Size cap: BYTES (with K/M/G/T suffixes) for the folder, or N% of its file system's size.
    #[arg(long, value_name = "BYTES|N%", value_parser = Cap::parse)]
    max_size: Option<Cap>,
    /// File-name pattern (shell glob, as find -name).
    #[arg(long, value_name = "GLOB", default_value = "*.log", value_parser = parse_pattern)]
    pattern: CString,
    /// Folders under the root walked at once (1 to 64). More keep a cold disk busy; 1 walks in order.
    #[arg(long, short, value_name = "N", default_value_t = DEFAULT_JOBS,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
}

#[derive(Debug)]
pub struct Config {
    pub once: bool,
    pub dry_run: bool,
    pub verbose: bool,
    pub directory: PathBuf,
    pub retention: Retention,
    pub every: u64,
    pub cap: Option<Cap>,
    pub pattern: CString,
    pub jobs: usize,
}

/// What `--max-size` caps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cap {
    /// Total apparent size of the regular files in the folder.
    Bytes(u64),
    /// Used bytes of the folder's file system, in percent of its size (as the official chart's clean-logs counts:
    /// df's Used against its 1K-blocks, from statvfs).
    Percent(f64),
}

/// Why main must exit early: `Info` for --help/--version (printed, exit 0), `Usage` for bad input (one line on
/// stderr, exit 2).
pub enum Exit {
    Info(String),
    Usage(String),
}

pub fn from_env_and_args<I: IntoIterator<Item = std::ffi::OsString>>(
    args: I,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, Exit> {
    let flags = Flags::try_parse_from(args).map_err(|e| {
        use clap::error::ErrorKind::*;
        match e.kind() {
            DisplayHelp | DisplayVersion => Exit::Info(e.to_string()),
            // clap's message spans several lines; its first names the flag, the value and the reason.
            _ => Exit::Usage(
                e.to_string()
                    .lines()
                    .next()
                    .unwrap_or("bad arguments")
                    .to_string(),
            ),
        }
    })?;
    // Empty variables count as unset: Kubernetes manifests often template them empty.
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let directory = flags.directory.unwrap_or_else(|| {
        let home = var("AIRFLOW_HOME").unwrap_or_else(|| "/usr/local/airflow".to_string());
        PathBuf::from(home).join("logs")
    });
    let retention = match flags.retention_minutes.or(flags.retention_days) {
        Some(r) => r,
        None => match RETENTION_VARS.iter().find_map(|n| var(n).map(|v| (n, v))) {
            Some((name, value)) => Retention::days(&value).map_err(|why| {
                let value = escape(value.as_bytes());
                Exit::Usage(format!("error: invalid value '{value}' in ${name}: {why}"))
            })?,
            None => Retention::days(DEFAULT_RETENTION).expect("default retention parses"),
        },
    };
    let every = match (
        flags.every_minutes.map(|m| m * 60).or(flags.every),
        var(FREQUENCY_VAR),
    ) {
        (Some(s), _) => s,
        (None, Some(v)) => match parse_every_minutes(&v) {
            Ok(m) => m * 60,
            _ => {
                let v = escape(v.as_bytes());
                return Err(Exit::Usage(format!(
                    "error: invalid value '{v}' in ${FREQUENCY_VAR}: expected whole minutes"
                )));
            }
        },
        (None, None) => DEFAULT_EVERY,
    };
    refuse_system_folder(&directory).map_err(Exit::Usage)?;
    Ok(Config {
        once: flags.once,
        dry_run: flags.dry_run,
        verbose: flags.verbose,
        directory,
        retention,
        every,
        cap: flags.max_size,
        pattern: flags.pattern,
        jobs: usize::from(flags.jobs),
    })
}

/// Folders that are never a log folder: the root and the system's own folders (a pass there would walk the whole
/// system), the `LIBS` folders at the top and under `/usr`, and any folder under the pseudo file systems of
/// `SYSTEM_TREES`.
const SYSTEM_FOLDERS: [&str; 24] = [
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/local",
    "/usr/sbin",
    "/usr/share",
    "/var",
    "/var/lib",
    "/var/tmp",
];
const SYSTEM_TREES: [&str; 2] = ["/proc", "/sys"];
const LIBS: [&str; 4] = ["/lib", "/lib32", "/lib64", "/libx32"];

/// Refuses the system folders above, after resolving symlinks, `..` and repeated slashes; a folder that does not
/// exist yet is judged by its path alone (`..` taken lexically). Called at start-up and again before every pass,
/// since the folder may appear later, as a symlink.
pub fn refuse_system_folder(dir: &Path) -> Result<(), String> {
    let real = std::fs::canonicalize(dir).unwrap_or_else(|_| lexical_absolute(dir));
    let r = real.as_os_str().as_bytes();
    // `/lib`, `/lib32`, `/lib64`, `/libx32`, and the same under `/usr` (where merged-/usr systems keep them).
    let lib = r.strip_prefix(b"/usr").unwrap_or(r);
    let top_lib = LIBS.iter().any(|l| l.as_bytes() == lib);
    let under = SYSTEM_TREES
        .iter()
        .any(|t| r.starts_with(t.as_bytes()) && r.get(t.len()) == Some(&b'/'));
    if !(SYSTEM_FOLDERS.iter().any(|f| f.as_bytes() == r) || top_lib || under) {
        return Ok(());
    }
    let given = escape(dir.as_os_str().as_bytes());
    let resolved = escape(r);
    let that_is = if given == resolved {
        String::new()
    } else {
        format!(" (that is {resolved})")
    };
    Err(format!(
        "error: refusing to clean '{given}'{that_is}: a system folder, not a log folder"
    ))
}

/// `dir` made absolute against the working folder, with `.`, `..` and repeated slashes resolved by name.
fn lexical_absolute(dir: &Path) -> PathBuf {
    use std::path::Component;
    let joined = std::env::current_dir().unwrap_or_default().join(dir);
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn parse_every(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=1_000_000_000).contains(&n) => Ok(n),
        _ => Err("expected whole seconds, at least 1".to_string()),
    }
}

fn parse_every_minutes(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_EVERY_MINUTES).contains(&n) => Ok(n),
        _ => Err(format!("expected whole minutes, 1 to {MAX_EVERY_MINUTES}")),
    }
}

fn parse_pattern(s: &str) -> Result<CString, String> {
    if s.is_empty() || s.contains('/') {
        return Err("expected a file-name glob such as *.log (no '/')".to_string());
    }
    CString::new(s).map_err(|_| "contains a NUL byte".to_string())
}

impl Cap {
    /// `5368709120`, `500M`, `5G`, `5GiB`, `5GB` (decimal), `85%`, `85.5%`.
    pub fn parse(s: &str) -> Result<Cap, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let ok = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit() || b == b'.');
            return match p.parse::<f64>() {
                Ok(v) if ok && v > 0.0 && v <= 100.0 => Ok(Cap::Percent(v)),
                _ => Err("expected a percentage above 0 and at most 100, e.g. 85%".to_string()),
            };
        }
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, suffix) = t.split_at(split);
        let mult: u64 = match suffix.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => {
                return Err(format!(
                    "unknown size suffix '{suffix}' (use K, M, G, T, KB, MiB, … or N%)"
                ))
            }
        };
        let value: f64 = num
            .parse()
            .map_err(|_| "expected a size such as 5G, 500MiB, 1000000 or 85%".to_string())?;
        let bytes = value * mult as f64;
        if !(1.0..=u64::MAX as f64 / 2.0).contains(&bytes) {
            return Err("size out of range".to_string());
        }
        Ok(Cap::Bytes(bytes as u64))
    }
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cap::Bytes(b) => write!(f, "{b} bytes"),
            Cap::Percent(p) => write!(f, "{p}% of the file system's size"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let argv = std::iter::once("clean-airflow-logs")
            .chain(args.iter().copied())
            .map(Into::into);
        from_env_and_args(argv, |k| env.get(k).cloned()).map_err(|e| match e {
            Exit::Info(s) | Exit::Usage(s) => s,
        })
    }

    #[test]
    fn defaults_match_the_seed() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.directory, PathBuf::from("/usr/local/airflow/logs"));
        assert_eq!(c.retention.min_age, 16 * 86_400);
        assert_eq!(c.every, 900);
        assert_eq!(c.pattern.to_str().unwrap(), "*.log");
        assert!(!c.once && !c.dry_run && c.cap.is_none());
    }

    #[test]
    fn environment_is_read_in_order() {
        let c = parse(
            &[],
            &[
                ("AIRFLOW_HOME", "/opt/af"),
                ("AIRFLOW__LOG_RETENTION_DAYS", "3"),
            ],
        )
        .unwrap();
        assert_eq!(c.directory, PathBuf::from("/opt/af/logs"));
        assert_eq!(c.retention.min_age, 4 * 86_400);
        let both = [
            ("ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS", "2"),
            ("AIRFLOW__LOG_RETENTION_DAYS", "9"),
        ];
        assert_eq!(
            parse(&[], &both).unwrap().retention.min_age,
            3 * 86_400,
            "Astronomer's variable wins"
        );
        let empty = [
            ("ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS", ""),
            ("AIRFLOW_HOME", " "),
        ];
        let c = parse(&[], &empty).unwrap();
        assert_eq!(c.retention.min_age, 16 * 86_400, "empty counts as unset");
        assert_eq!(c.directory, PathBuf::from("/usr/local/airflow/logs"));
        let c = parse(&["--retention-days", "1"], &both).unwrap();
        assert_eq!(
            c.retention.min_age,
            2 * 86_400,
            "the flag wins over the environment"
        );
        assert_eq!(parse(&[], &[(FREQUENCY_VAR, "5")]).unwrap().every, 300);
        assert_eq!(
            parse(&["--every", "7"], &[(FREQUENCY_VAR, "5")])
                .unwrap()
                .every,
            7
        );
    }

    #[test]
    fn flags_parse() {
        let c = parse(
            &[
                "--once",
                "--dry-run",
                "--directory",
                "/x",
                "--retention-minutes",
                "90",
                "--every",
                "60",
                "--max-size",
                "2G",
                "--pattern",
                "*.txt",
            ],
            &[],
        )
        .unwrap();
        assert!(c.once && c.dry_run);
        assert_eq!(c.directory, PathBuf::from("/x"));
        assert_eq!(c.retention.min_age, 91 * 60);
        assert_eq!(c.every, 60);
        assert_eq!(c.cap, Some(Cap::Bytes(2 << 30)));
        assert_eq!(c.pattern.to_str().unwrap(), "*.txt");
    }

    #[test]
    fn every_minutes() {
        assert_eq!(parse(&["--every-minutes", "5"], &[]).unwrap().every, 300);
        let env = [(FREQUENCY_VAR, "7")];
        assert_eq!(parse(&["--every-minutes", "5"], &env).unwrap().every, 300);
        assert_eq!(
            parse(&["--every-minutes", "5", "--every", "20"], &[])
                .unwrap()
                .every,
            20,
            "the last wins"
        );
        assert_eq!(
            parse(&["--every", "20", "--every-minutes", "5"], &[])
                .unwrap()
                .every,
            300
        );
        for bad in ["0", "1.5", "-1", "10000001", "5m"] {
            let e = parse(&[&format!("--every-minutes={bad}")], &[]).unwrap_err();
            assert!(e.contains("--every-minutes") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn a_flag_given_twice_takes_the_last() {
        let c = parse(
            &[
                "--retention-days",
                "3",
                "--max-size",
                "1G",
                "--directory",
                "/a",
                "--retention-days",
                "5",
                "--max-size",
                "50%",
                "--directory",
                "/b",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.retention.min_age, 6 * 86_400);
        assert_eq!(c.cap, Some(Cap::Percent(50.0)));
        assert_eq!(c.directory, PathBuf::from("/b"));
    }

    #[test]
    fn the_last_retention_flag_wins() {
        let c = parse(&["--retention-days", "2", "--retention-minutes", "30"], &[]).unwrap();
        assert_eq!(c.retention.min_age, 31 * 60);
        let c = parse(&["--retention-minutes", "30", "--retention-days", "2"], &[]).unwrap();
        assert_eq!(c.retention.min_age, 3 * 86_400);
        let env = [("AIRFLOW__LOG_RETENTION_DAYS", "9")];
        let c = parse(&["--retention-minutes", "30"], &env).unwrap();
        assert_eq!(
            c.retention.min_age,
            31 * 60,
            "a flag wins over the environment"
        );
    }

    #[test]
    fn bad_values_name_the_flag_and_value_on_one_line() {
        for (args, flag, value) in [
            (&["--retention-days", "x"][..], "--retention-days", "x"),
            (&["--retention-days", "6M"], "--retention-days", "6M"),
            (&["--retention-days", "90m"], "--retention-days", "90m"),
            (&["--retention-minutes", "1h"], "--retention-minutes", "1h"),
            (&["--max-size", "12Q"], "--max-size", "12Q"),
            (&["--every", "0"], "--every", "0"),
            (&["--every", "1.5"], "--every", "1.5"),
            (&["--pattern", "a/b"], "--pattern", "a/b"),
            (&["--max-size", "101%"], "--max-size", "101%"),
        ] {
            let e = parse(args, &[]).unwrap_err();
            assert!(e.contains(flag) && e.contains(&format!("'{value}'")), "{e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let e = parse(
            &[],
            &[("ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS", "fifteen")],
        )
        .unwrap_err();
        assert!(
            e.contains("ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS") && e.contains("'fifteen'"),
            "{e}"
        );
        let e = parse(
            &[],
            &[("ASTRONOMER__AIRFLOW__WORKER_LOG_RETENTION_DAYS", "6M")],
        )
        .unwrap_err();
        assert!(e.contains("'6M'") && e.contains("no unit suffix"), "{e}");
        let e = parse(&[], &[(FREQUENCY_VAR, "0")]).unwrap_err();
        assert!(e.contains(FREQUENCY_VAR), "{e}");
        assert!(parse(&["--bogus"], &[]).unwrap_err().contains("--bogus"));
    }

    #[test]
    fn system_folders_are_refused() {
        for dir in [
            "/",
            "//",
            "/.",
            "/usr/..",
            "/tmp/../",
            "/etc",
            "/etc/",
            "/usr",
            "/usr/local",
            "/var",
            "/lib64",
            "/libx32",
            "/proc",
            "/proc/1",
            "/sys/fs",
            "/root",
            "/run",
            "/nonexistent/..",
            "/x/../../usr",
        ] {
            let e = parse(&["--directory", dir], &[]).unwrap_err();
            assert!(e.contains("refusing") && e.contains(dir), "{dir}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let e = parse(&[], &[("AIRFLOW_HOME", "/proc/1/..")]).unwrap_err();
        assert!(e.contains("that is /proc/logs"), "{e}");
        for dir in [
            "/usr/local/airflow/logs",
            "/opt/airflow/logs",
            "/var/log/airflow",
            "/library",
            "/tmp/x/logs",
            "/does/not/exist",
        ] {
            assert!(parse(&["--directory", dir], &[]).is_ok(), "{dir}");
        }
        assert!(
            parse(&[], &[("AIRFLOW_HOME", "/")]).is_ok(),
            "/logs is fine"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(Cap::parse("1000"), Ok(Cap::Bytes(1000)));
        assert_eq!(Cap::parse("1K"), Ok(Cap::Bytes(1024)));
        assert_eq!(Cap::parse("1kb"), Ok(Cap::Bytes(1000)));
        assert_eq!(Cap::parse("1.5M"), Ok(Cap::Bytes(1_572_864)));
        assert_eq!(Cap::parse("5GiB"), Ok(Cap::Bytes(5 << 30)));
        assert_eq!(Cap::parse("2GB"), Ok(Cap::Bytes(2_000_000_000)));
        assert_eq!(Cap::parse("1T"), Ok(Cap::Bytes(1 << 40)));
        assert_eq!(Cap::parse("85%"), Ok(Cap::Percent(85.0)));
        assert_eq!(Cap::parse("85.5%"), Ok(Cap::Percent(85.5)));
        assert_eq!(Cap::parse("100%"), Ok(Cap::Percent(100.0)));
        for bad in [
            "",
            "12Q",
            "G",
            "-5",
            "0",
            "0%",
            "101%",
            "%",
            "1e9",
            "x%",
            "5 G",
            "1..2K",
            "99999999999T",
        ] {
            assert!(Cap::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
