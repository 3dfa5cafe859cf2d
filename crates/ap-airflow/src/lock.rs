//! `ap-airflow lock [RELEASE]`: the release line's constraints file, resolved by `uv pip compile` as of the
//! release date, for the image's Python and glibc. Every install of the line (the image build and users'
//! onbuild requirements) is constrained by it; its sha256 is an image label.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _};

use crate::release::Release;
use crate::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Release line, e.g. 2.10.5-1 (default: the newest in the release file).
    pub release: Option<String>,
    /// Do not write: fail when the committed lock differs from a fresh resolution.
    #[arg(long)]
    pub check: bool,
}

/// The requirement lines the lock resolves: Airflow with the line's extras at its version, plus its packages.
pub fn requirements(release: &Release) -> Vec<String> {
    let mut reqs = vec![format!(
        "apache-airflow[{}]=={}",
        release.extras.join(","),
        release.airflow
    )];
    reqs.extend(release.packages.iter().cloned());
    reqs
}

/// uv's `--exclude-newer` bound: the day after the release date (uv reads a date as its midnight UTC), so
/// everything published on the release day itself, Airflow included, is in.
pub fn exclude_newer(released: time::Date) -> anyhow::Result<String> {
    let next = released.next_day().context("date overflow")?;
    Ok(next.format(crate::release::DATE)?)
}

/// The wheel platform of the image: x86_64 manylinux at the distro's glibc, so no wheel needing a newer glibc
/// than the image has can be chosen.
pub fn python_platform(distro: &str) -> &'static str {
    match distro {
        "bullseye" => "x86_64-manylinux_2_31",
        "bookworm" => "x86_64-manylinux_2_36",
        // glibc 2.41; uv knows manylinux tags up to 2_40, which is as good for choosing wheels.
        "trixie" => "x86_64-manylinux_2_40",
        _ => "x86_64-unknown-linux-gnu",
    }
}

/// `uv pip compile` arguments (after `uv`), reading requirements from `input`, writing to `output`.
pub fn compile_args(release: &Release, input: &Path, output: &Path) -> anyhow::Result<Vec<String>> {
    Ok(vec![
        "pip".into(),
        "compile".into(),
        input.display().to_string(),
        "--exclude-newer".into(),
        exclude_newer(release.released)?,
        "--python-version".into(),
        release.python.clone(),
        "--python-platform".into(),
        python_platform(&release.distro).into(),
        "--no-header".into(),
        "--quiet".into(),
        "--output-file".into(),
        output.display().to_string(),
    ])
}

/// The comment block that says how the lock was made.
pub fn header(release: &Release, uv_version: &str) -> anyhow::Result<String> {
    let mut h = format!(
        "# Lock of release line {name} (Airflow {airflow} on {distro}, Python {python}): constraints for every install.\n\
         # Made by `ap-airflow lock {name}` with {uv_version}:\n\
         #   uv pip compile requirements.in --exclude-newer {newer} --python-version {python} --python-platform {platform}\n\
         # requirements.in:\n",
        name = release.name(),
        airflow = release.airflow,
        distro = release.distro,
        python = release.python,
        newer = exclude_newer(release.released)?,
        platform = python_platform(&release.distro),
    );
    for r in requirements(release) {
        h.push_str(&format!("#   {r}\n"));
    }
    h.push_str("# Do not edit by hand: change releases.toml and run `ap-airflow lock` again.\n");
    Ok(h)
}

/// The lock without its header comment (for comparing resolutions).
fn body(text: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.starts_with('#'));
    let mut out: Vec<&str> = Vec::new();
    for l in lines.by_ref() {
        out.push(l);
    }
    out.join("\n")
}

fn uv() -> Command {
    let mut c = Command::new(std::env::var("AP_AIRFLOW_UV").unwrap_or_else(|_| "uv".into()));
    // The lock is resolved for the image's Python version, which uv only reads about: never fetch a Python.
    c.env("UV_PYTHON_DOWNLOADS", "never");
    c
}

/// PEP 685's normal form of an extra's name: lower case, runs of `-`, `_`, `.` as one `-`.
pub fn normalize_extra(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The line's extras that `apache-airflow` of its version does not provide (`provided`: its Provides-Extra).
/// uv resolves an unknown extra to nothing, silently; a lock must not lose a seed module that way.
pub fn missing_extras(release: &Release, provided: &[String]) -> Vec<String> {
    let provided: std::collections::BTreeSet<String> =
        provided.iter().map(|e| normalize_extra(e)).collect();
    release
        .extras
        .iter()
        .filter(|e| !provided.contains(&normalize_extra(e)))
        .cloned()
        .collect()
}

/// Provides-Extra of apache-airflow==VERSION, read from its wheel's METADATA (pip downloads the one wheel).
const PROVIDED_EXTRAS: &str = r#"
import pathlib, subprocess, sys, tempfile, zipfile
with tempfile.TemporaryDirectory() as d:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--disable-pip-version-check", "-d", d, "apache-airflow==" + sys.argv[1]], check=True)
    (wheel,) = pathlib.Path(d).glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Provides-Extra:"):
                print(line.split(":", 1)[1].strip())
"#;

fn provided_extras(airflow: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new("python3")
        .args(["-c", PROVIDED_EXTRAS, airflow])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run python3 to read apache-airflow's extras")?;
    if !out.status.success() {
        bail!("cannot read the extras of apache-airflow=={airflow} (pip download failed)");
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let file = ctx.releases()?;
    let release = file.get(args.release.as_deref())?.clone();
    let lock = file.lock_path(&release);
    let uv_version = uv()
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .context("uv is not installed (pip install uv), needed to resolve the lock")?;

    let missing = missing_extras(&release, &provided_extras(&release.airflow)?);
    if !missing.is_empty() {
        bail!(
            "release {}: apache-airflow=={} has no extra {} (releases.toml `extras`)",
            release.name(),
            release.airflow,
            missing.join(", ")
        );
    }

    let tmp = tempfile::tempdir()?;
    let input = tmp.path().join("requirements.in");
    let output = tmp.path().join("lock.txt");
    std::fs::write(&input, requirements(&release).join("\n") + "\n")?;
    // Relative paths, run in the temp dir: uv's `# via -r requirements.in` annotations then name no temp dir,
    // so a fresh resolution compares equal to the committed one.
    let out = uv()
        .args(compile_args(
            &release,
            Path::new("requirements.in"),
            Path::new("lock.txt"),
        )?)
        .current_dir(tmp.path())
        .output()
        .context("cannot run uv")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        eprint!("{err}");
        bail!("uv pip compile failed for {}", release.name());
    }
    let resolved = std::fs::read_to_string(&output)?;
    let text = format!("{}{}", header(&release, &uv_version)?, resolved);
    let pins = resolved
        .lines()
        .filter(|l| l.contains("==") && !l.starts_with(' '))
        .count();

    if args.check {
        let committed = std::fs::read_to_string(&lock)
            .with_context(|| format!("cannot read {}", lock.display()))?;
        if body(&committed) != body(&text) {
            bail!(
                "{} differs from a fresh resolution (run `ap-airflow lock {}`)",
                lock.display(),
                release.name()
            );
        }
        println!("{}: up to date ({pins} pins)", lock.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&lock, text).with_context(|| format!("cannot write {}", lock.display()))?;
    println!(
        "{}: {pins} pins, sha256 {}",
        lock.display(),
        crate::digest::sha256_file(&lock)?
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> Release {
        Release {
            released: time::macros::date!(2025 - 02 - 28),
            packages: vec!["apache-airflow-providers-elasticsearch".into()],
            ..Release::sample()
        }
    }

    #[test]
    fn requirements_are_airflow_with_extras_then_packages() {
        assert_eq!(
            requirements(&release()),
            [
                "apache-airflow[celery,cncf.kubernetes]==2.10.5",
                "apache-airflow-providers-elasticsearch"
            ]
        );
    }

    #[test]
    fn extras_compare_in_pep685_form_and_unknown_ones_are_named() {
        assert_eq!(normalize_extra("Microsoft.Azure"), "microsoft-azure");
        assert_eq!(normalize_extra("cncf__kubernetes"), "cncf-kubernetes");
        let r = Release {
            extras: vec!["microsoft.azure".into(), "password".into(), "fab".into()],
            ..release()
        };
        let provided = ["microsoft-azure".to_string(), "fab".to_string()];
        assert_eq!(missing_extras(&r, &provided), ["password"]);
    }

    #[test]
    fn exclude_newer_is_the_day_after_release() {
        use time::macros::date;
        assert_eq!(exclude_newer(date!(2025 - 02 - 28)).unwrap(), "2025-03-01");
        assert_eq!(exclude_newer(date!(2024 - 12 - 31)).unwrap(), "2025-01-01");
    }

    #[test]
    fn compile_line_pins_date_python_and_platform() {
        let args = compile_args(&release(), Path::new("in"), Path::new("out")).unwrap();
        let line = args.join(" ");
        assert_eq!(
            line,
            "pip compile in --exclude-newer 2025-03-01 --python-version 3.11 \
             --python-platform x86_64-manylinux_2_36 --no-header --quiet --output-file out"
        );
    }

    #[test]
    fn header_is_comments_naming_the_command_and_inputs() {
        let h = header(&release(), "uv 0.13.9").unwrap();
        assert!(h.lines().all(|l| l.starts_with('#')), "{h}");
        assert!(h.contains("ap-airflow lock 2.10.5-1"));
        assert!(h.contains("uv 0.13.9"));
        assert!(h.contains("#   apache-airflow[celery,cncf.kubernetes]==2.10.5\n"));
        assert_eq!(
            body(&format!("{h}a==1\n    # via b\n")),
            "a==1\n    # via b"
        );
    }

    #[test]
    fn the_committed_lock_pins_airflow_of_its_line() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let file = crate::release::ReleaseFile::load(&root.join("releases.toml")).unwrap();
        for r in &file.releases {
            let text = std::fs::read_to_string(file.lock_path(r)).unwrap();
            assert!(
                text.lines()
                    .any(|l| l == format!("apache-airflow=={}", r.airflow)),
                "{} does not pin apache-airflow=={}",
                r.lock.display(),
                r.airflow
            );
            assert!(text.contains(&format!("ap-airflow lock {}", r.name())));
        }
    }
}
