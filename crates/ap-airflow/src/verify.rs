//! `ap-airflow verify IMAGE`: checks a built image against its release line and prints every difference.
//!
//! Facts come from `docker image inspect` (labels, env, user, workdir, entrypoint, cmd, ONBUILD triggers) and from
//! one probe run inside the image (`docker run --rm --network host --entrypoint /bin/sh`, as the image's user):
//! Airflow's version and config defaults, users and groups, owners and modes of the paths the seed lists,
//! `pip check`, and what must be absent (compilers, -dev packages, gosu, the build's CA bundle).

use std::collections::BTreeMap;
use std::process::{ExitCode, Stdio};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::image::{
    ASTRONOMER_GROUP, ASTRONOMER_GROUP_GID, ASTRONOMER_UID, ASTRONOMER_USER, EXECUTABLES, PATHS,
    PLATFORM_GROUP, PLATFORM_UID, STEPDOWN_USER_FILE,
};
use crate::platform::Platform;
use crate::release::{Flavour, Release};
use crate::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image to check, e.g. astronomerinc/ap-airflow:2.10.5-1-bookworm.
    pub image: String,
    /// Release line to check against (default: the image's io.astronomer.docker.ac.version label).
    #[arg(long)]
    pub release: Option<String>,
    /// Only what `docker image inspect` shows (no container is started).
    #[arg(long)]
    pub no_run: bool,
}

/// What a fact must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    Eq(String),
    /// A `:`-, `,`- or space-separated list containing this element.
    HasItem(String),
    Contains(String),
    NonEmpty,
}

impl Want {
    pub fn accepts(&self, got: &str) -> bool {
        match self {
            Want::Eq(w) => got == w,
            Want::HasItem(w) => got.split([':', ',', ' ']).any(|i| i.trim() == w),
            Want::Contains(w) => got.contains(w.as_str()),
            Want::NonEmpty => !got.trim().is_empty(),
        }
    }
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Want::Eq(w) => write!(f, "{w:?}"),
            Want::HasItem(w) => write!(f, "a list with {w:?}"),
            Want::Contains(w) => write!(f, "something containing {w:?}"),
            Want::NonEmpty => f.write_str("a value"),
        }
    }
}

/// One difference between the image and its release line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub fact: String,
    pub want: Want,
    pub got: Option<String>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.got {
            Some(g) => write!(f, "{}: expected {}, found {g:?}", self.fact, self.want),
            None => write!(f, "{}: expected {}, found nothing", self.fact, self.want),
        }
    }
}

fn eq(s: impl Into<String>) -> Want {
    Want::Eq(s.into())
}

/// The ONBUILD triggers (by their start) the onbuild image must carry, in images/onbuild/Dockerfile's order.
const ONBUILD_STEPS: [&str; 5] = [
    "COPY packages.txt",
    "RUN ap-onbuild-packages",
    "COPY requirements.txt",
    "RUN ap-onbuild-requirements",
    "COPY --chown=astro:0 . .",
];

/// What the image of `release` must show in `docker image inspect`. Pure.
pub fn expected_inspect(
    release: &Release,
    flavour: Flavour,
    lock_sha256: &str,
) -> Vec<(String, Want)> {
    let mut e: Vec<(String, Want)> = vec![
        ("label:io.astronomer.docker", eq("true")),
        ("label:io.astronomer.docker.distro", eq("debian")),
        ("label:io.astronomer.docker.module", eq("airflow")),
        ("label:io.astronomer.docker.component", eq("airflow")),
        (
            "label:io.astronomer.docker.uid",
            eq(ASTRONOMER_UID.to_string()),
        ),
        (
            "label:io.astronomer.docker.airflow.version",
            eq(&release.airflow),
        ),
        ("label:io.astronomer.docker.ac.version", eq(release.name())),
        (
            "label:io.astronomer.docker.airflow.lock.sha256",
            eq(lock_sha256),
        ),
        ("label:io.astronomer.docker.build.time", Want::NonEmpty),
        ("label:io.astronomer.docker.build.repo", Want::NonEmpty),
        ("label:maintainer", Want::NonEmpty),
        (
            "label:org.opencontainers.image.version",
            eq(format!("{}-{}", release.name(), release.distro)),
        ),
        ("label:org.opencontainers.image.created", Want::NonEmpty),
        ("label:org.opencontainers.image.source", Want::NonEmpty),
        ("env:AIRFLOW_HOME", eq("/usr/local/airflow")),
        ("env:PYTHONPATH", Want::HasItem("/usr/local/airflow".into())),
        ("env:ASTRONOMER_USER", eq(ASTRONOMER_USER)),
        ("env:ASTRONOMER_UID", eq(ASTRONOMER_UID.to_string())),
        ("env:LANG", Want::Contains("UTF-8".into())),
        ("config:User", eq(ASTRONOMER_USER)),
        ("config:WorkingDir", eq("/usr/local/airflow")),
        ("config:Entrypoint", eq(r#"["/entrypoint"]"#)),
        ("config:Cmd", eq(r#"["airflow","--help"]"#)),
    ]
    .into_iter()
    .map(|(k, w)| (k.to_owned(), w))
    .collect();
    if flavour == Flavour::Onbuild {
        e.push((
            "label:io.astronomer.docker.airflow.onbuild".into(),
            eq("true"),
        ));
        for step in ONBUILD_STEPS {
            e.push((format!("onbuild:{step}"), eq("present")));
        }
    }
    e
}

/// Facts from `docker image inspect` JSON (one image). Pure.
pub fn inspect_facts(v: &Value) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    let config = &v["Config"];
    if let Some(labels) = config["Labels"].as_object() {
        for (k, val) in labels {
            f.insert(
                format!("label:{k}"),
                val.as_str().unwrap_or_default().to_owned(),
            );
        }
    }
    for kv in config["Env"].as_array().into_iter().flatten() {
        if let Some((k, val)) = kv.as_str().and_then(|s| s.split_once('=')) {
            f.insert(format!("env:{k}"), val.to_owned());
        }
    }
    for key in ["User", "WorkingDir"] {
        f.insert(
            format!("config:{key}"),
            config[key].as_str().unwrap_or_default().to_owned(),
        );
    }
    for key in ["Entrypoint", "Cmd"] {
        f.insert(format!("config:{key}"), config[key].to_string());
    }
    let triggers: Vec<String> = config["OnBuild"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            t.as_str()
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect();
    for step in ONBUILD_STEPS {
        if triggers.iter().any(|t| t.starts_with(step)) {
            f.insert(format!("onbuild:{step}"), "present".into());
        }
    }
    f
}

/// The architecture the probe must find everything built for: the one the image's config names (crate::platform).
pub fn expected_architecture(platform: Platform) -> Vec<(String, Want)> {
    let elf = match platform {
        Platform::Amd64 => "62",
        Platform::Arm64 => "183",
    };
    let mut want = vec![
        ("uname.machine".to_owned(), eq(platform.machine())),
        ("python.machine".to_owned(), eq(platform.machine())),
    ];
    for path in arch_checked() {
        want.push((format!("elf:{path}"), eq(elf)));
    }
    want
}

/// Executables whose ELF machine the probe reads: the Rust runtime (the image contract's executables) and the
/// venv's Python.
fn arch_checked() -> impl Iterator<Item = &'static str> {
    EXECUTABLES
        .into_iter()
        .chain(["/usr/local/airflow-venv/bin/python"])
}

/// What the probe inside the image must report. Pure.
pub fn expected_probe(release: &Release) -> Vec<(String, Want)> {
    let user = ASTRONOMER_USER;
    [
        ("airflow.version", eq(&release.airflow)),
        ("python.version", eq(&release.python)),
        ("id.uid", eq(ASTRONOMER_UID.to_string())),
        ("id.user", eq(user)),
        ("id.group", eq(user)),
        ("id.groups", Want::HasItem(ASTRONOMER_GROUP.into())),
        ("astrogroup.gid", eq(ASTRONOMER_GROUP_GID.to_string())),
        ("platform.groups", Want::HasItem(PLATFORM_GROUP.into())),
    ]
    .into_iter()
    .map(|(k, w)| (k.to_owned(), w))
    .chain(PATHS.iter().map(|p| {
        let want = p.stat().map(Want::Eq).unwrap_or(Want::NonEmpty);
        (format!("path:{}", p.path), want)
    }))
    .chain(
        [
            ("stepdown.user", eq(user)),
            ("env:AIRFLOW_VERSION", eq(&release.airflow)),
            ("auth.importable", eq("yes")),
            ("pip.check", eq("ok")),
            ("absent.compilers", eq("yes")),
            ("absent.dev_packages", eq("yes")),
            ("absent.gosu", eq("yes")),
            ("absent.devel_ca", eq("yes")),
        ]
        .into_iter()
        .map(|(k, w)| (k.to_owned(), w)),
    )
    .chain(config_settings(release).map(|(name, value)| (format!("config.{name}"), eq(value))))
    .collect()
}

/// The line's config defaults as (`section.key`, value).
fn config_settings(release: &Release) -> impl Iterator<Item = (&str, &str)> {
    release.config.iter().filter_map(|c| c.split_once('='))
}

/// The probe script (verify-probe.sh) for a release line: runs inside the image as its user.
pub fn probe_script(release: &Release) -> String {
    let settings: Vec<String> = config_settings(release)
        .filter_map(|(name, _)| name.split_once('.'))
        .map(|(s, k)| format!("({s:?}, {k:?})"))
        .collect();
    let paths: Vec<&str> = PATHS.iter().map(|p| p.path).collect();
    include_str!("verify-probe.sh")
        .replace("@PLATFORM_UID@", &PLATFORM_UID.to_string())
        .replace("@PATHS@", &paths.join(" "))
        .replace(
            "@ARCH_CHECKED@",
            &arch_checked().collect::<Vec<_>>().join(" "),
        )
        .replace("@STEPDOWN_USER_FILE@", STEPDOWN_USER_FILE)
        .replace("@SETTINGS@", &settings.join(", "))
}

/// `key=value` lines into facts. Pure.
pub fn parse_probe(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Every expected fact the observed ones do not satisfy. Pure.
pub fn compare(expected: &[(String, Want)], got: &BTreeMap<String, String>) -> Vec<Difference> {
    expected
        .iter()
        .filter_map(|(fact, want)| {
            let g = got.get(fact);
            match g {
                Some(v) if want.accepts(v) => None,
                _ => Some(Difference {
                    fact: fact.clone(),
                    want: want.clone(),
                    got: g.cloned(),
                }),
            }
        })
        .collect()
}

/// An image reference docker can only take as one: not empty, no option (`--format=…`, after `verify --`), no
/// blank or control character.
pub fn check_image_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.starts_with('-')
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!(
            "{name:?} is not an image reference (e.g. astronomerinc/ap-airflow:2.10.5-1-bookworm)"
        );
    }
    Ok(())
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    check_image_name(&args.image)?;
    let file = ctx.releases()?;
    crate::docker::ping()?;
    let inspect = crate::docker::inspect_image(&args.image)?;
    let mut facts = inspect_facts(&inspect);
    let name = args
        .release
        .clone()
        .or_else(|| facts.get("label:io.astronomer.docker.ac.version").cloned());
    let release: Release = file.get(name.as_deref())?.clone();
    let flavour = if facts.contains_key("label:io.astronomer.docker.airflow.onbuild") {
        Flavour::Onbuild
    } else {
        Flavour::Base
    };
    let lock_sha = crate::digest::sha256_file(&file.lock_path(&release))?;
    let mut expected = expected_inspect(&release, flavour, &lock_sha);
    let architecture = inspect["Architecture"].as_str().unwrap_or_default();
    let platform: Platform = architecture
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: image config: {e}", args.image))?;

    if !args.no_run {
        // Another architecture runs under emulation (binfmt_misc): said explicitly, docker does not warn.
        let out = crate::docker::docker()
            .args([
                "run",
                "--rm",
                "--network",
                "host",
                "--platform",
                &platform.docker(),
                "--entrypoint",
                "/bin/sh",
            ])
            .arg(&args.image)
            .args(["-c", &probe_script(&release)])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .context("cannot run docker")?;
        if out.stdout.is_empty() {
            bail!(
                "the probe printed nothing: cannot run /bin/sh in {}",
                args.image
            );
        }
        facts.extend(parse_probe(&String::from_utf8_lossy(&out.stdout)));
        expected.extend(expected_probe(&release));
        expected.extend(expected_architecture(platform));
    }

    let diffs = compare(&expected, &facts);
    for d in &diffs {
        println!("{d}");
    }
    if diffs.is_empty() {
        println!(
            "{}: matches release {} ({flavour}, {platform}, {} checks)",
            args.image,
            release.name(),
            expected.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{}: {} of {} checks differ from release {} ({flavour})",
            args.image,
            diffs.len(),
            expected.len(),
            release.name()
        );
        Ok(ExitCode::from(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_are_never_options() {
        // Issue #11 item 15: `verify -- '--format=…'` reached docker image inspect as an option.
        for bad in ["--format={{.Id}}", "-f", "", "a b", "a\nb"] {
            assert!(check_image_name(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "astronomerinc/ap-airflow:2.10.5-1-bookworm",
            "127.0.0.1:5000/a/b@sha256:00",
        ] {
            assert!(check_image_name(ok).is_ok(), "{ok}");
        }
    }

    fn release() -> Release {
        Release {
            extras: vec![],
            lock: "l".into(),
            ..Release::sample()
        }
    }

    fn inspect_json() -> Value {
        serde_json::json!({
            "Config": {
                "User": "astro",
                "WorkingDir": "/usr/local/airflow",
                "Entrypoint": ["/entrypoint"],
                "Cmd": ["airflow", "--help"],
                "Env": ["AIRFLOW_HOME=/usr/local/airflow", "PYTHONPATH=/usr/local/airflow",
                        "ASTRONOMER_USER=astro", "ASTRONOMER_UID=50000", "LANG=C.UTF-8"],
                "OnBuild": null,
                "Labels": {
                    "io.astronomer.docker": "true",
                    "io.astronomer.docker.distro": "debian",
                    "io.astronomer.docker.module": "airflow",
                    "io.astronomer.docker.component": "airflow",
                    "io.astronomer.docker.uid": "50000",
                    "io.astronomer.docker.airflow.version": "2.10.5",
                    "io.astronomer.docker.ac.version": "2.10.5-1",
                    "io.astronomer.docker.airflow.lock.sha256": "abc",
                    "io.astronomer.docker.build.time": "2026-01-01T00:00:00Z",
                    "io.astronomer.docker.build.repo": "https://x",
                    "maintainer": "Astronomer",
                    "org.opencontainers.image.version": "2.10.5-1-bookworm",
                    "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
                    "org.opencontainers.image.source": "https://x"
                }
            }
        })
    }

    #[test]
    fn a_matching_image_has_no_differences() {
        let facts = inspect_facts(&inspect_json());
        let diffs = compare(&expected_inspect(&release(), Flavour::Base, "abc"), &facts);
        assert!(diffs.is_empty(), "{diffs:?}");
    }

    #[test]
    fn every_difference_is_reported_with_what_was_found() {
        let mut v = inspect_json();
        v["Config"]["User"] = "root".into();
        v["Config"]["Cmd"] = serde_json::json!(["bash"]);
        v["Config"]["Labels"]
            .as_object_mut()
            .unwrap()
            .remove("io.astronomer.docker.uid");
        let facts = inspect_facts(&v);
        let diffs = compare(&expected_inspect(&release(), Flavour::Base, "zzz"), &facts);
        let text: Vec<String> = diffs.iter().map(ToString::to_string).collect();
        assert_eq!(diffs.len(), 4, "{text:?}");
        assert!(text.contains(&r#"config:User: expected "astro", found "root""#.to_owned()));
        assert!(text.contains(
            &r#"config:Cmd: expected "[\"airflow\",\"--help\"]", found "[\"bash\"]""#.to_owned()
        ));
        assert!(text.contains(
            &r#"label:io.astronomer.docker.uid: expected "50000", found nothing"#.to_owned()
        ));
        assert!(text
            .iter()
            .any(|t| t.starts_with("label:io.astronomer.docker.airflow.lock.sha256")));
    }

    #[test]
    fn onbuild_needs_its_label_and_triggers() {
        let mut v = inspect_json();
        let facts = inspect_facts(&v);
        let diffs = compare(
            &expected_inspect(&release(), Flavour::Onbuild, "abc"),
            &facts,
        );
        assert_eq!(diffs.len(), 6, "{diffs:?}");
        v["Config"]["Labels"]["io.astronomer.docker.airflow.onbuild"] = "true".into();
        v["Config"]["OnBuild"] = serde_json::json!([
            "COPY packages.txt .",
            "USER root",
            "RUN ap-onbuild-packages packages.txt",
            "COPY requirements.txt .",
            "ARG PIP_CA_PEM=\"\"",
            "RUN ap-onbuild-requirements requirements.txt",
            "USER astro",
            "COPY --chown=astro:0 . ."
        ]);
        let diffs = compare(
            &expected_inspect(&release(), Flavour::Onbuild, "abc"),
            &inspect_facts(&v),
        );
        assert!(diffs.is_empty(), "{diffs:?}");
    }

    #[test]
    fn wants_match_as_documented() {
        assert!(Want::HasItem("/usr/local/airflow".into()).accepts("/x:/usr/local/airflow"));
        assert!(!Want::HasItem("/usr/local/airflow".into()).accepts("/usr/local/airflow2"));
        assert!(Want::HasItem("astrogroup".into()).accepts("astro astrogroup"));
        assert!(Want::Contains("UTF-8".into()).accepts("C.UTF-8"));
        assert!(!Want::NonEmpty.accepts("  "));
    }

    #[test]
    fn probe_output_parses_and_compares() {
        let out = "airflow.version=2.10.5\npath:/entrypoint=root:root 755\nnoise\npip.check=ok\n";
        let facts = parse_probe(out);
        assert_eq!(facts["path:/entrypoint"], "root:root 755");
        let diffs = compare(&expected_probe(&release()), &facts);
        assert!(!diffs
            .iter()
            .any(|d| d.fact == "airflow.version" || d.fact == "pip.check"));
        assert!(diffs.iter().any(|d| d.fact == "id.uid" && d.got.is_none()));
    }

    #[test]
    fn probe_script_lists_every_path_of_the_contract() {
        let script = probe_script(&Release::sample());
        assert!(!script.contains('@'), "a placeholder is left:\n{script}");
        let words: Vec<&str> = script.split([' ', ';', '\n']).collect();
        for p in PATHS {
            assert!(words.contains(&p.path), "{}", p.path);
        }
    }

    #[test]
    fn probe_script_is_valid_sh() {
        let status = std::process::Command::new("sh")
            .args(["-n", "-c", &probe_script(&Release::sample())])
            .status()
            .unwrap();
        assert!(status.success());
    }
}
