//! `ap-airflow base`: the Python base image made offline, for machines and sites without an image registry.
//!
//! `debootstrap --variant=minbase <distro>` from a Debian mirror into a temp dir, trimmed (apt lists, caches,
//! docs), imported with `tar -C DIR -c . | docker import - ap-airflow-minbase:<distro>`, then images/python/Dockerfile
//! (Debian's Python, venv, pip) on top, tagged as the release file's `python_base_image`.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context as _};

use crate::docker::{self, Steps};
use crate::release::{Release, ReleaseFile};
use crate::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Release line whose distro and Python are used, e.g. 2.10.5-1 (default: the newest).
    pub release: Option<String>,
    /// Debian mirror (default: the release file's `debian_mirror`).
    #[arg(long)]
    pub mirror: Option<String>,
    /// Name of the image to make (default: the line's, `<python_base_repository>:<python>-<distro>`).
    #[arg(long)]
    pub tag: Option<String>,
}

/// The intermediate image holding the bare debootstrap root file system.
pub fn minbase_name(distro: &str) -> String {
    format!("ap-airflow-minbase:{distro}")
}

/// Paths removed from the debootstrap tree before import: downloaded .debs, apt indexes (apt-get update fetches
/// them again), man pages and translations; of /usr/share/doc only the copyright files stay.
pub const TRIM: &[&str] = &[
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*_*",
    "var/log/*.log",
    "var/log/apt/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*/",
    "usr/share/lintian/*",
];

pub fn debootstrap_command(distro: &str, dir: &Path, mirror: &str) -> Command {
    let mut c = Command::new("debootstrap");
    c.args(["--variant=minbase", distro]).arg(dir).arg(mirror);
    c
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let file = ctx.releases()?;
    let release = file.get(args.release.as_deref())?.clone();
    let image = args
        .tag
        .clone()
        .unwrap_or_else(|| file.python_base_image(&release));
    let mirror = args
        .mirror
        .clone()
        .unwrap_or(file.defaults.debian_mirror.clone());
    docker::ping()?;
    let root = crate::workspace::workspace_root(&file)?;
    let target = crate::workspace::target_dir(&root).unwrap_or_else(|_| std::env::temp_dir());
    let steps = Steps::new(&target.join("ap-airflow").join("base.log"))?;
    steps.note(&format!(
        "ap-airflow base {image} ({} from {}; log: {})",
        release.distro,
        crate::output::redact(&mirror),
        steps.log_path().display()
    ));
    make(&steps, &file, &release, &image, &mirror)?;
    Ok(ExitCode::SUCCESS)
}

/// Makes `image` from `mirror`; used by `base` and, when the image is missing, by `build`.
pub fn make(
    steps: &Steps,
    file: &ReleaseFile,
    release: &Release,
    image: &str,
    mirror: &str,
) -> anyhow::Result<()> {
    if Command::new("debootstrap")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        bail!("debootstrap is not installed (apt-get install debootstrap), needed to make {image}");
    }
    // debootstrap creates device nodes and chroots: it needs root.
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if uid.ok() != Some(0) {
        bail!("making {image} needs root (debootstrap); run `ap-airflow base` as root");
    }
    let work = tempfile::Builder::new()
        .prefix("ap-airflow-rootfs")
        .tempdir()
        .context("cannot create a temp dir")?;
    let rootfs = work.path().join("rootfs");
    steps.run(
        &format!("debootstrap {} (minbase)", release.distro),
        debootstrap_command(&release.distro, &rootfs, mirror),
    )?;
    let mut trim = Command::new("sh");
    trim.arg("-c")
        .arg(format!(
            "cd \"$1\" && rm -rf {} && find usr/share/doc -depth ! -name copyright ! -type d -delete",
            TRIM.join(" ")
        ))
        .arg("sh")
        .arg(&rootfs);
    steps.run("trim the root file system", trim)?;

    let minbase = minbase_name(&release.distro);
    // Paths travel as positional parameters, never spliced into the script.
    let mut import = Command::new("bash");
    import
        .arg("-c")
        .arg(r#"set -o pipefail; tar --numeric-owner -C "$1" -c . | "$2" import - "$3""#)
        .arg("bash")
        .arg(&rootfs)
        .arg(docker::docker_program())
        .arg(&minbase);
    steps.run(&format!("docker import {minbase}"), import)?;
    drop(work);

    let root = crate::workspace::workspace_root(file)?;
    let ctx = tempfile::Builder::new()
        .prefix("ap-airflow-ctx")
        .tempdir()?;
    crate::workspace::copy_dir(&root.join("images/python"), ctx.path())?;
    let args = vec![
        ("MINBASE_IMAGE".to_owned(), minbase),
        ("DISTRO".to_owned(), release.distro.clone()),
        ("DEBIAN_MIRROR".to_owned(), mirror.to_owned()),
        ("PYTHON_VERSION".to_owned(), release.python.clone()),
    ];
    steps.run(
        &format!("python base {image}"),
        crate::docker::docker_build(ctx.path(), &[image.to_owned()], &args, false),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debootstrap_is_minbase_from_the_mirror() {
        let c = debootstrap_command("bookworm", Path::new("/tmp/r"), "http://m/debian");
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            ["--variant=minbase", "bookworm", "/tmp/r", "http://m/debian"]
        );
    }

    #[test]
    fn trim_keeps_what_apt_and_dpkg_need() {
        for p in TRIM {
            assert!(!p.starts_with('/'), "{p} must be relative to the rootfs");
            assert!(!p.starts_with("var/lib/dpkg"), "{p} would break dpkg");
        }
    }
}
