//! `ap-airflow base`: the Python base image made offline, for machines and sites without an image registry.
//!
//! `debootstrap --variant=minbase --arch <arch> <distro>` from a Debian mirror into a temp dir, trimmed (apt lists,
//! caches, docs), loaded into the engine as `ap-airflow-minbase:<distro>[-<arch>]` (one layer, with its architecture
//! in the config: `docker import` of Docker 20.10 would label any root file system as the host's), then
//! images/python/Dockerfile (Debian's Python, venv, pip) on top, tagged as the release file's `python_base_image`.
//! Another architecture than the host's is debootstrapped and built under emulation (binfmt_misc + qemu).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context as _};

use crate::digest::sha256_file;
use crate::docker::{self, Steps};
use crate::platform::Platform;
use crate::release::{Release, ReleaseFile};
use crate::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Release line whose distro and Python are used, e.g. 2.10.5-1 (default: the newest).
    pub release: Option<String>,
    /// Debian mirror (default: the release file's `debian_mirror`).
    #[arg(long)]
    pub mirror: Option<String>,
    /// Name of the image to make (default: the line's, `<python_base_repository>:<python>-<distro>[-<arch>]`).
    #[arg(long)]
    pub tag: Option<String>,
    /// Architecture of the image, linux/amd64 or linux/arm64 (default: the host's).
    #[arg(long, value_parser = parse_platform)]
    pub platform: Option<Platform>,
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    s.parse()
}

/// The intermediate image holding the bare debootstrap root file system.
pub fn minbase_name(distro: &str, platform: Platform) -> String {
    platform.local_tag(&format!("ap-airflow-minbase:{distro}"))
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

/// debootstrap of `distro` for `platform`; another architecture than the host's runs its second stage under qemu.
pub fn debootstrap_command(distro: &str, dir: &Path, mirror: &str, platform: Platform) -> Command {
    let mut c = Command::new("debootstrap");
    c.args(["--variant=minbase", "--arch", platform.debian(), distro])
        .arg(dir)
        .arg(mirror);
    c
}

/// `docker load`'s manifest.json and the image config for one root file system layer (`diff_id` = its sha256).
/// The config says only what `docker import` would (no env, no command) plus the architecture. Pure.
pub fn minbase_archive(
    name: &str,
    platform: Platform,
    diff_id: &str,
    created_by: &str,
) -> (serde_json::Value, serde_json::Value) {
    let mut config = serde_json::json!({
        "architecture": platform.arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created_by": created_by}],
    });
    if platform == Platform::Arm64 {
        config["variant"] = "v8".into();
    }
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": [name],
        "Layers": ["layer.tar"],
    }]);
    (manifest, config)
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
    let platform = args.platform.unwrap_or_else(Platform::native);
    let image = match &args.tag {
        Some(_) => image,
        None => platform.local_tag(&image),
    };
    docker::ping()?;
    let root = crate::workspace::workspace_root(&file)?;
    let target = crate::workspace::target_dir(&root).unwrap_or_else(|_| std::env::temp_dir());
    let steps = Steps::new(&target.join("ap-airflow").join("base.log"))?;
    steps.note(&format!(
        "ap-airflow base {image} ({} {platform} from {}; log: {})",
        release.distro,
        crate::output::redact(&mirror),
        steps.log_path().display()
    ));
    make(&steps, &file, &release, &image, &mirror, platform)?;
    Ok(ExitCode::SUCCESS)
}

/// Makes `image` from `mirror`; used by `base` and, when the image is missing, by `build`.
pub fn make(
    steps: &Steps,
    file: &ReleaseFile,
    release: &Release,
    image: &str,
    mirror: &str,
    platform: Platform,
) -> anyhow::Result<()> {
    let minbase = make_minbase(steps, &release.distro, mirror, platform)?;
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
        crate::docker::docker_build(ctx.path(), &[image.to_owned()], &args, false, platform),
    )?;
    Ok(())
}

/// The bare root file system of `distro` for `platform` as a local image (made when missing); returns its name.
pub fn ensure_minbase(
    steps: &Steps,
    distro: &str,
    mirror: &str,
    platform: Platform,
) -> anyhow::Result<String> {
    let name = minbase_name(distro, platform);
    if docker::image_exists(&name)? {
        return Ok(name);
    }
    make_minbase(steps, distro, mirror, platform)
}

/// debootstrap, trim and load `ap-airflow-minbase:<distro>[-<arch>]`; returns its name.
fn make_minbase(
    steps: &Steps,
    distro: &str,
    mirror: &str,
    platform: Platform,
) -> anyhow::Result<String> {
    let minbase = minbase_name(distro, platform);
    if Command::new("debootstrap")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        bail!(
            "debootstrap is not installed (apt-get install debootstrap), needed to make {minbase}"
        );
    }
    // debootstrap creates device nodes and chroots: it needs root.
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if uid.ok() != Some(0) {
        bail!("making {minbase} needs root (debootstrap); run `ap-airflow base` as root");
    }
    let work = tempfile::Builder::new()
        .prefix("ap-airflow-rootfs")
        .tempdir()
        .context("cannot create a temp dir")?;
    let rootfs = work.path().join("rootfs");
    steps.run(
        &format!("debootstrap {distro} {platform} (minbase)"),
        debootstrap_command(distro, &rootfs, mirror, platform),
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

    // One uncompressed layer and a config naming its architecture, loaded as a `docker save` archive.
    let archive = work.path().join("archive");
    std::fs::create_dir(&archive)?;
    let mut tar = Command::new("tar");
    tar.arg("--numeric-owner")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(archive.join("layer.tar"))
        .arg(".");
    steps.run("archive the root file system", tar)?;
    let diff_id = sha256_file(&archive.join("layer.tar"))?;
    let created_by = format!(
        "debootstrap --variant=minbase --arch {} {distro} (ap-airflow base)",
        platform.debian()
    );
    let (manifest, config) = minbase_archive(&minbase, platform, &diff_id, &created_by);
    std::fs::write(archive.join("manifest.json"), manifest.to_string())?;
    std::fs::write(archive.join("config.json"), config.to_string())?;
    // Paths travel as positional parameters, never spliced into the script.
    let mut load = Command::new("bash");
    load.arg("-c")
        .arg(r#"set -o pipefail; tar -C "$1" -c . | "$2" load"#)
        .arg("bash")
        .arg(&archive)
        .arg(docker::docker_program());
    steps.run(&format!("docker load {minbase}"), load)?;
    drop(work);
    Ok(minbase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debootstrap_is_minbase_from_the_mirror() {
        let c = debootstrap_command(
            "bookworm",
            Path::new("/tmp/r"),
            "http://m/debian",
            Platform::Arm64,
        );
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--variant=minbase",
                "--arch",
                "arm64",
                "bookworm",
                "/tmp/r",
                "http://m/debian"
            ]
        );
    }

    #[test]
    fn the_minbase_config_names_its_architecture_and_layer() {
        let (manifest, config) = minbase_archive("m:trixie-arm64", Platform::Arm64, "ab", "x");
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["variant"], "v8");
        assert_eq!(config["rootfs"]["diff_ids"][0], "sha256:ab");
        assert_eq!(manifest[0]["RepoTags"][0], "m:trixie-arm64");
        assert_eq!(manifest[0]["Layers"][0], "layer.tar");
        let (_, config) = minbase_archive("m:trixie", Platform::Amd64, "ab", "x");
        assert_eq!(config["architecture"], "amd64");
        assert!(config.get("variant").is_none());
    }

    #[test]
    fn trim_keeps_what_apt_and_dpkg_need() {
        for p in TRIM {
            assert!(!p.starts_with('/'), "{p} must be relative to the rootfs");
            assert!(!p.starts_with("var/lib/dpkg"), "{p} would break dpkg");
        }
    }
}
