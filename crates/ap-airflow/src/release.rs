//! The release file (`releases.toml`): which Airflow lines are built, with what, and under which name.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("cannot read release file {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("malformed release file {path}: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("unknown release {name:?} in {path} (known: {known})")]
    Unknown {
        name: String,
        path: PathBuf,
        known: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub repository: String,
    /// Repository of the Python base images; a line's base is `<repository>:<python>-<distro>`.
    pub python_base_repository: String,
    pub debian_mirror: String,
}

/// One release line, e.g. Airflow 2.10.5 build 1 on bookworm.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub airflow: String,
    pub build: u32,
    pub distro: String,
    pub python: String,
    /// Release date (YYYY-MM-DD in the file): the lock excludes anything newer.
    #[serde(deserialize_with = "date")]
    pub released: time::Date,
    pub extras: Vec<String>,
    #[serde(default)]
    pub packages: Vec<String>,
    /// Constraints file, relative to the release file's folder.
    pub lock: PathBuf,
    /// The image's Airflow defaults, `SECTION.KEY=VALUE`, written into Airflow's packaged defaults at build time
    /// (their section names differ between Airflow 2 and 3, so they belong to the line, not the Dockerfile).
    #[serde(default)]
    pub config: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    defaults: Defaults,
    release: Vec<Release>,
}

#[derive(Debug, Clone)]
pub struct ReleaseFile {
    pub path: PathBuf,
    pub defaults: Defaults,
    pub releases: Vec<Release>,
}

/// The two image flavours the seed publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavour {
    Base,
    Onbuild,
}

impl Flavour {
    pub const ALL: [Flavour; 2] = [Flavour::Base, Flavour::Onbuild];

    pub fn suffix(self) -> &'static str {
        match self {
            Flavour::Base => "",
            Flavour::Onbuild => "-onbuild",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Base => "base",
            Flavour::Onbuild => "onbuild",
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The tag scheme of one Airflow version on one distro, formatted and parsed here only: immutable
/// `<airflow>-<build>-<distro>[-onbuild]`, floating `<airflow>-<distro>[-onbuild]`, CI `<floating>-<number>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagScheme {
    pub airflow: String,
    pub distro: String,
}

impl TagScheme {
    pub fn new(airflow: &str, distro: &str) -> TagScheme {
        TagScheme {
            airflow: airflow.to_owned(),
            distro: distro.to_owned(),
        }
    }

    /// Never changes once pushed: `2.10.5-1-bookworm[-onbuild]`.
    pub fn immutable(&self, build: u32, flavour: Flavour) -> String {
        format!(
            "{}-{build}-{}{}",
            self.airflow,
            self.distro,
            flavour.suffix()
        )
    }

    /// Moves to the newest build of the line: `2.10.5-bookworm[-onbuild]`.
    pub fn floating(&self, flavour: Flavour) -> String {
        format!("{}-{}{}", self.airflow, self.distro, flavour.suffix())
    }

    /// CI's build-number tag: `<floating>-<B>`.
    pub fn ci(&self, flavour: Flavour, build_number: u64) -> String {
        format!("{}-{build_number}", self.floating(flavour))
    }

    /// The build number of `tag` when it is an immutable tag of this scheme and flavour (digits only).
    pub fn build_of(&self, tag: &str, flavour: Flavour) -> Option<u32> {
        let n = tag
            .strip_prefix(&self.airflow)?
            .strip_prefix('-')?
            .strip_suffix(flavour.suffix())?
            .strip_suffix(&self.distro)?
            .strip_suffix('-')?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse().ok()
    }

    /// The build numbers of the immutable tags of `flavour` among `tags`.
    pub fn builds_in<'a>(
        &self,
        tags: impl IntoIterator<Item = &'a String>,
        flavour: Flavour,
    ) -> Vec<u32> {
        tags.into_iter()
            .filter_map(|t| self.build_of(t, flavour))
            .collect()
    }
}

impl Release {
    /// The name used on the command line: `<airflow>-<build>`, the seed's VERSION.
    pub fn name(&self) -> String {
        format!("{}-{}", self.airflow, self.build)
    }

    /// The line's tag scheme (TagScheme).
    pub fn tags(&self) -> TagScheme {
        TagScheme::new(&self.airflow, &self.distro)
    }

    /// Never changes once pushed: `2.10.5-1-bookworm[-onbuild]`.
    pub fn immutable_tag(&self, flavour: Flavour) -> String {
        self.tags().immutable(self.build, flavour)
    }

    /// Moves to the newest build of the line: `2.10.5-bookworm[-onbuild]`.
    pub fn floating_tag(&self, flavour: Flavour) -> String {
        self.tags().floating(flavour)
    }

    /// CI's build-number tag: `<floating>-<B>`.
    pub fn ci_tag(&self, flavour: Flavour, build_number: u64) -> String {
        self.tags().ci(flavour, build_number)
    }

    /// Sort key: Airflow version numerically (trailing zero parts dropped: 2.10.5.0 is 2.10.5), then build number.
    fn order_key(&self) -> (Vec<u64>, u32) {
        let mut version: Vec<u64> = self
            .airflow
            .split(['.', '-', '+'])
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        while version.len() > 1 && version.last() == Some(&0) {
            version.pop();
        }
        (version, self.build)
    }
}

/// A release line for unit tests elsewhere; each overrides what it is about.
#[cfg(test)]
impl Release {
    pub(crate) fn sample() -> Release {
        Release {
            airflow: "2.10.5".into(),
            build: 1,
            distro: "bookworm".into(),
            python: "3.11".into(),
            released: time::macros::date!(2025 - 02 - 10),
            extras: vec!["celery".into(), "cncf.kubernetes".into()],
            packages: vec![],
            lock: "locks/x.txt".into(),
            config: vec![],
        }
    }
}

impl ReleaseFile {
    pub fn load(path: &Path) -> Result<Self, ReleaseError> {
        let text = std::fs::read_to_string(path).map_err(|err| ReleaseError::Read {
            path: path.to_owned(),
            err,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ReleaseError> {
        let malformed = |message: String| ReleaseError::Malformed {
            path: path.to_owned(),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| malformed(one_line(&e.to_string())))?;
        if raw.release.is_empty() {
            return Err(malformed("no [[release]] entry".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for r in &raw.release {
            validate(r).map_err(|m| malformed(format!("release {}: {m}", r.name())))?;
            // By value, not text: 2.10.05 and 2.10.5.0 would be 2.10.5 (refused above, and here anyway).
            if !seen.insert(r.order_key()) {
                return Err(malformed(format!("release {} is listed twice", r.name())));
            }
        }
        Ok(ReleaseFile {
            path: path.to_owned(),
            defaults: raw.defaults,
            releases: raw.release,
        })
    }

    /// A release by name (`2.10.5-1`), or the newest when `name` is None.
    pub fn get(&self, name: Option<&str>) -> Result<&Release, ReleaseError> {
        match name {
            None => Ok(self
                .releases
                .iter()
                .max_by_key(|r| r.order_key())
                .expect("parse rejects an empty file")),
            Some(name) => self
                .releases
                .iter()
                .find(|r| r.name() == name)
                .ok_or_else(|| ReleaseError::Unknown {
                    name: name.to_owned(),
                    path: self.path.clone(),
                    known: self
                        .releases
                        .iter()
                        .map(Release::name)
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
        }
    }

    /// The folder that release-relative paths (locks) are resolved against.
    pub fn root(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    pub fn lock_path(&self, release: &Release) -> PathBuf {
        self.root().join(&release.lock)
    }

    /// The line's Python base image: Debian's own Python of the line's distro.
    pub fn python_base_image(&self, release: &Release) -> String {
        format!(
            "{}:{}-{}",
            self.defaults.python_base_repository, release.python, release.distro
        )
    }
}

/// The format of dates in the release file.
pub const DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// A `YYYY-MM-DD` string of the release file as a date, parsed once.
fn date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<time::Date, D::Error> {
    let text = String::deserialize(d)?;
    time::Date::parse(&text, DATE).map_err(|_| {
        serde::de::Error::custom(format!("released {text:?} is not a YYYY-MM-DD date"))
    })
}

fn validate(r: &Release) -> Result<(), String> {
    let tag_safe = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    if !tag_safe(&r.airflow) || !r.airflow.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("airflow version {:?} is not a version", r.airflow));
    }
    // One spelling per version, as PEP 440 normalises it: 2.10.05 is 2.10.5, and would tag the same Airflow twice.
    if r.airflow
        .split(['.', '-', '+'])
        .any(|p| p.len() > 1 && p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "airflow version {:?} has a number with a leading zero (write it as PEP 440 normalises it)",
            r.airflow
        ));
    }
    if !tag_safe(&r.distro) {
        return Err(format!("distro {:?} is not a tag-safe name", r.distro));
    }
    // Every tag the line gets must be a valid tag (at most 128 characters): the longest are the onbuild flavour's
    // immutable tag and CI's tag with a 20-digit build number.
    let longest = [
        r.immutable_tag(Flavour::Onbuild),
        r.ci_tag(Flavour::Onbuild, u64::MAX),
    ];
    if let Some(t) = longest
        .iter()
        .find(|t| !crate::registry::reference::valid_tag(t))
    {
        return Err(format!(
            "its tags would be invalid ({} characters, at most 128: {t:?})",
            t.len()
        ));
    }
    // The build copies the lock into the image: only a file below the release file's folder.
    let lock_ok = !r.lock.as_os_str().is_empty()
        && r.lock
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !lock_ok {
        return Err(format!(
            "lock {:?} must be a relative path below the release file's folder (no /, .. or .)",
            r.lock.display()
        ));
    }
    if r.build == 0 {
        return Err("build numbers start at 1".into());
    }
    if r.python.split('.').count() != 2 || r.python.split('.').any(|p| p.parse::<u32>().is_err()) {
        return Err(format!("python {:?} is not MAJOR.MINOR", r.python));
    }
    for c in &r.config {
        let (name, value) = c.split_once('=').unwrap_or_default();
        let (section, key) = name.split_once('.').unwrap_or_default();
        let word =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !word(section) || !word(key) || value.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!("config {c:?} is not SECTION.KEY=VALUE"));
        }
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Finds `releases.toml`: `$AP_AIRFLOW_RELEASES`, else the nearest one in the current folder or above it.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ReleaseError> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let cwd = std::env::current_dir().map_err(|err| ReleaseError::Read {
        path: PathBuf::from("."),
        err,
    })?;
    for dir in cwd.ancestors() {
        let candidate = dir.join("releases.toml");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(ReleaseError::Read {
        path: cwd.join("releases.toml"),
        err: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not found here or in any parent folder (set AP_AIRFLOW_RELEASES or --releases)",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[defaults]
repository = "astronomerinc/ap-airflow"
python_base_repository = "py"
debian_mirror = "http://deb.debian.org/debian"

[[release]]
airflow = "2.10.5"
build = 1
distro = "bookworm"
python = "3.11"
released = "2025-02-10"
extras = ["celery"]
lock = "locks/a.txt"

[[release]]
airflow = "2.9.3"
build = 4
distro = "bookworm"
python = "3.11"
released = "2024-07-15"
extras = []
lock = "locks/b.txt"
"#;

    fn file() -> ReleaseFile {
        ReleaseFile::parse(Path::new("/repo/releases.toml"), FILE).unwrap()
    }

    #[test]
    fn tags_follow_the_seed() {
        let f = file();
        let r = f.get(Some("2.10.5-1")).unwrap();
        assert_eq!(r.immutable_tag(Flavour::Base), "2.10.5-1-bookworm");
        assert_eq!(
            r.immutable_tag(Flavour::Onbuild),
            "2.10.5-1-bookworm-onbuild"
        );
        assert_eq!(r.floating_tag(Flavour::Base), "2.10.5-bookworm");
        assert_eq!(r.floating_tag(Flavour::Onbuild), "2.10.5-bookworm-onbuild");
        assert_eq!(r.ci_tag(Flavour::Onbuild, 77), "2.10.5-bookworm-onbuild-77");
    }

    #[test]
    fn builds_are_parsed_from_exactly_one_flavours_immutable_tags() {
        let tags: Vec<String> = [
            "2.10.5-1-bookworm",
            "2.10.5-12-bookworm",
            "2.10.5-3-bookworm-onbuild",
            "2.10.5-bookworm",
            "2.10.5-bookworm-77",
            "2.10.5-x-bookworm",
            "2.10.50-9-bookworm",
            "2.10.5-2-bullseye",
            "2.10.5--bookworm",
        ]
        .map(String::from)
        .to_vec();
        let scheme = TagScheme::new("2.10.5", "bookworm");
        let mut base = scheme.builds_in(&tags, Flavour::Base);
        base.sort();
        assert_eq!(base, [1, 12]);
        assert_eq!(scheme.builds_in(&tags, Flavour::Onbuild), [3]);
        // What it formats, it parses back.
        for f in Flavour::ALL {
            assert_eq!(scheme.build_of(&scheme.immutable(41, f), f), Some(41));
            assert_eq!(scheme.build_of(&scheme.floating(f), f), None);
            assert_eq!(scheme.build_of(&scheme.ci(f, 7), f), None);
        }
    }

    #[test]
    fn newest_is_by_version_not_by_text_or_order() {
        let f = file();
        assert_eq!(f.get(None).unwrap().name(), "2.10.5-1");
    }

    #[test]
    fn unknown_release_names_the_known_ones() {
        let err = file().get(Some("2.10.5-9")).unwrap_err().to_string();
        assert!(err.contains("\"2.10.5-9\""), "{err}");
        assert!(err.contains("2.10.5-1, 2.9.3-4"), "{err}");
    }

    #[test]
    fn python_base_is_per_line() {
        let f = file();
        let r = f.get(Some("2.9.3-4")).unwrap();
        assert_eq!(f.python_base_image(r), "py:3.11-bookworm");
    }

    #[test]
    fn lock_is_relative_to_the_file() {
        let f = file();
        let r = f.get(Some("2.9.3-4")).unwrap();
        assert_eq!(f.lock_path(r), Path::new("/repo/locks/b.txt"));
    }

    #[test]
    fn malformed_files_are_one_line_errors() {
        let cases = [
            ("", "missing field"),
            (
                &FILE.replace("build = 1", "build = 0"),
                "build numbers start at 1",
            ),
            (
                &FILE.replace("2025-02-10", "Feb 10"),
                "not a YYYY-MM-DD date",
            ),
            (
                &FILE.replace("\"bookworm\"", "\"book worm\""),
                "not a tag-safe name",
            ),
            (
                &FILE
                    .replace("2.9.3", "2.10.5")
                    .replace("build = 4", "build = 1"),
                "listed twice",
            ),
            (
                &FILE.replace("extras = []", "extras = []\nextra = 1"),
                "unknown field",
            ),
            (
                &FILE.replace("python = \"3.11\"", "python = \"3\""),
                "MAJOR.MINOR",
            ),
            (
                &FILE.replace("extras = []", "extras = []\nconfig = [\"core lazy=1\"]"),
                "not SECTION.KEY=VALUE",
            ),
            // Issue #11 item 15: locks outside the tree, tags over 128 characters, two spellings of a version.
            (
                &FILE.replace("locks/a.txt", "/etc/shadow"),
                "must be a relative path",
            ),
            (
                &FILE.replace("locks/a.txt", "../../../etc/shadow"),
                "must be a relative path",
            ),
            (
                &FILE.replace("locks/a.txt", "locks/../../x.txt"),
                "must be a relative path",
            ),
            (&FILE.replace("locks/a.txt", ""), "must be a relative path"),
            (
                &FILE.replace("2.10.5", &format!("2.10.5.{}", "1".repeat(100))),
                "at most 128",
            ),
            (
                &FILE.replace("\"bookworm\"", &format!("\"{}\"", "b".repeat(100))),
                "at most 128",
            ),
            (&FILE.replace("2.10.5", "2.10.05"), "leading zero"),
            (
                &FILE
                    .replace("2.9.3", "2.10.5.0")
                    .replace("build = 4", "build = 1"),
                "listed twice",
            ),
        ];
        for (text, want) in cases {
            let err = ReleaseFile::parse(Path::new("r.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("malformed release file r.toml"), "{err}");
            assert!(err.contains(want), "{want:?} not in {err:?}");
            assert!(!err.contains('\n'), "multi-line: {err:?}");
        }
    }

    #[test]
    fn the_committed_release_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../releases.toml");
        let f = ReleaseFile::load(&path).unwrap();
        let r = f.get(None).unwrap();
        assert_eq!(r.name(), "3.3.2-1");
        assert_eq!(r.distro, "trixie");
        assert_eq!(
            f.python_base_image(r),
            "astronomerinc/ap-airflow-python:3.13-trixie"
        );
        let old = f.get(Some("2.10.5-1")).unwrap();
        assert_eq!(old.distro, "bookworm");
        for r in [r, old] {
            assert!(r.extras.iter().any(|e| e == "cncf.kubernetes"));
            assert!(r
                .config
                .iter()
                .any(|c| c == "celery.operation_timeout=10.0"));
        }
    }
}
