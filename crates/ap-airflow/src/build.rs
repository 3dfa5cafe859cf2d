//! `ap-airflow build`: both flavours of a release line with the local engine (legacy builder).
//!
//! Steps, for each `--platform` (default: the host's): the Python base (present, pulled, or made offline by
//! `ap-airflow base`); the Rust runtime binaries (`cargo build --release`, or cross-compiled for another
//! architecture: crate::cross); a build context assembled in a temp dir from images/airflow, the binaries, the
//! lock and the CA bundle; `docker build` of the base image, then of images/onbuild on top of it. Another
//! architecture builds under emulation and is tagged locally with its suffix (`…-trixie-arm64`: crate::platform).
//! Every step's output goes to one log file; the terminal shows progress and, on failure, the tail.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::digest::sha256_file;
use crate::docker::{self, docker_build, Steps};
use crate::image::{ASTRONOMER_UID, ASTRONOMER_USER, ORG, PLATFORM_UID, RUNTIME_BINARIES};
use crate::platform::Platform;
use crate::release::{Defaults, Flavour, Release, ReleaseFile};
use crate::workspace::{
    cargo, copy_dir, git, host_ca_bundle, target_dir, workspace_repository, workspace_root,
};
use crate::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Release line, e.g. 2.10.5-1 (default: the newest in the release file).
    pub release: Option<String>,
    /// Image repository to tag (default: the release file's `repository`).
    #[arg(long)]
    pub repository: Option<String>,
    /// Python base image (default: the line's, `<python_base_repository>:<python>-<distro>`; another
    /// architecture's has its suffix, `…-trixie-arm64`).
    #[arg(long)]
    pub python_base_image: Option<String>,
    /// Architectures to build, comma-separated: linux/amd64, linux/arm64 (default: the host's). Another
    /// architecture than the host's builds under emulation and is tagged `<tag>-<arch>` locally.
    #[arg(long, value_name = "PLATFORMS", value_delimiter = ',', value_parser = parse_platform)]
    pub platform: Vec<Platform>,
    /// Take entrypoint, tini and clean-airflow-logs from DIR instead of building them with cargo (the host's
    /// architecture only; another is always cross-compiled).
    #[arg(long, value_name = "DIR")]
    pub runtime_bin: Option<PathBuf>,
    /// Ignore the engine's layer cache (security rebuilds: fresh Debian packages).
    #[arg(long)]
    pub no_cache: bool,
    /// Debian mirror for making the Python base offline (default: the release file's `debian_mirror`).
    #[arg(long)]
    pub debian_mirror: Option<String>,
    /// Never contact an image registry: a missing Python base is made from the Debian mirror straight away.
    #[arg(long, env = "AP_AIRFLOW_OFFLINE")]
    pub offline: bool,
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    s.parse()
}

/// What the labels record about this build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildMeta {
    pub build_time: String,
    pub commit: String,
    pub repo_url: String,
    pub build_url: String,
    pub lock_sha256: String,
}

/// Build arguments of images/airflow/Dockerfile for a release line. Pure.
pub fn base_build_args(
    release: &Release,
    python_base_image: &str,
    image_ref: &str,
    meta: &BuildMeta,
) -> Vec<(String, String)> {
    [
        ("PYTHON_BASE_IMAGE", python_base_image.to_owned()),
        ("ASTRONOMER_USER", ASTRONOMER_USER.to_owned()),
        ("ASTRONOMER_UID", ASTRONOMER_UID.to_string()),
        ("PLATFORM_UID", PLATFORM_UID.to_string()),
        ("ORG", ORG.to_owned()),
        ("VERSION", release.name()),
        ("AIRFLOW_VERSION", release.airflow.clone()),
        ("SUBMODULES", release.extras.join(",")),
        ("AIRFLOW_PACKAGES", release.packages.join(" ")),
        ("DISTRO", release.distro.clone()),
        ("PYTHON_VERSION", release.python.clone()),
        ("CONFIG_DEFAULTS", release.config.join(" ")),
        ("BUILD_TIME", meta.build_time.clone()),
        ("COMMIT_SHA", meta.commit.clone()),
        ("REPO_URL", meta.repo_url.clone()),
        ("BUILD_URL", meta.build_url.clone()),
        ("LOCK_SHA256", meta.lock_sha256.clone()),
        ("IMAGE_REF", image_ref.to_owned()),
        ("EMULATED", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Local `repository:tag` for both tags of a flavour, immutable first; another architecture than the host's has
/// its suffix (`2.10.5-1-bookworm-arm64`).
pub fn image_names(
    repository: &str,
    release: &Release,
    flavour: Flavour,
    platform: Platform,
) -> [String; 2] {
    [
        format!(
            "{repository}:{}",
            platform.local_tag(&release.immutable_tag(flavour))
        ),
        format!(
            "{repository}:{}",
            platform.local_tag(&release.floating_tag(flavour))
        ),
    ]
}

/// Build time (SOURCE_DATE_EPOCH when set, for reproducible labels), commit, repository and CI URLs.
pub fn build_meta(root: &Path, lock: &Path) -> anyhow::Result<BuildMeta> {
    let now = match std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    {
        Some(epoch) => time::OffsetDateTime::from_unix_timestamp(epoch)?,
        None => time::OffsetDateTime::now_utc(),
    };
    let build_time = now
        .replace_nanosecond(0)?
        .format(&time::format_description::well_known::Rfc3339)?;
    let commit = match git(root, &["rev-parse", "HEAD"]) {
        // Tracked files changed since the commit: say so rather than claim the commit.
        Some(c) if git(root, &["status", "--porcelain", "--untracked-files=no"]).is_some() => {
            format!("{c}-dirty")
        }
        Some(c) => c,
        None => String::new(),
    };
    let repo_url = git(root, &["remote", "get-url", "origin"])
        .map(|u| crate::output::redact(&u))
        .or_else(|| workspace_repository(root))
        .unwrap_or_default();
    Ok(BuildMeta {
        build_time,
        commit,
        repo_url,
        build_url: std::env::var("BUILD_URL").unwrap_or_default(),
        lock_sha256: sha256_file(lock)?,
    })
}

/// The base image's build context: images/airflow + bin/ + constraints.txt + devel-ca.crt (empty when none).
pub fn assemble_context(
    dir: &Path,
    images: &Path,
    bins: &Path,
    lock: &Path,
    ca: Option<&Path>,
) -> anyhow::Result<()> {
    copy_dir(&images.join("airflow"), dir)?;
    std::fs::create_dir_all(dir.join("bin"))?;
    for name in RUNTIME_BINARIES {
        let src = bins.join(name);
        std::fs::copy(&src, dir.join("bin").join(name))
            .with_context(|| format!("runtime binary {} missing", src.display()))?;
    }
    std::fs::copy(lock, dir.join("constraints.txt"))
        .with_context(|| format!("cannot read lock {}", lock.display()))?;
    // An emulated build's bytecode from the host's image (build_platform fills it in); empty: warm-bytecode.py.
    std::fs::write(dir.join("bytecode.tar"), b"")?;
    match ca {
        Some(ca) => std::fs::copy(ca, dir.join("devel-ca.crt"))
            .map(|_| ())
            .with_context(|| format!("cannot read CA bundle {}", ca.display()))?,
        None => std::fs::write(dir.join("devel-ca.crt"), b"")?,
    }
    Ok(())
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let file = ctx.releases()?;
    let release = file.get(args.release.as_deref())?.clone();
    let defaults: Defaults = file.defaults.clone();
    let repository = args
        .repository
        .clone()
        .unwrap_or(defaults.repository.clone());
    let python_base = args
        .python_base_image
        .clone()
        .unwrap_or_else(|| file.python_base_image(&release));
    let root = workspace_root(&file)?;
    let lock = file.lock_path(&release);
    if !lock.is_file() {
        bail!(
            "release {} has no lock at {} (run `ap-airflow lock {}`)",
            release.name(),
            lock.display(),
            release.name()
        );
    }
    let ca = host_ca_bundle()?;
    let engine = docker::ping()?;
    let platforms = Platform::ordered(&args.platform);
    for p in &platforms {
        p.check_runnable().map_err(anyhow::Error::msg)?;
    }
    let mirror = args
        .debian_mirror
        .clone()
        .unwrap_or(defaults.debian_mirror.clone());

    let target = target_dir(&root).unwrap_or_else(|_| std::env::temp_dir());
    let steps = Steps::new(
        &target
            .join("ap-airflow")
            .join(format!("build-{}.log", release.name())),
    )?;
    steps.note(&format!(
        "ap-airflow build {} → {repository} for {} (Docker {engine}; log: {})",
        release.name(),
        platforms
            .iter()
            .map(|p| p.docker())
            .collect::<Vec<_>>()
            .join(", "),
        steps.log_path().display()
    ));
    let meta = build_meta(&root, &lock)?;
    let mut rows = vec![["image", "also tagged", "size"].map(String::from)];
    for &platform in &platforms {
        let built = build_platform(
            &steps,
            &args,
            &file,
            &release,
            &repository,
            &python_base,
            &mirror,
            platform,
            ca.as_deref(),
            &meta,
        )?;
        for tags in built {
            let size = docker::image_size(&tags[0]).map_or("?".into(), docker::human_size);
            rows.push([tags[0].clone(), tags[1].clone(), size]);
        }
    }
    eprint!("{}", crate::output::columns(&rows));
    eprintln!(
        "built {} in {}",
        release.name(),
        docker::human_duration(start.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}

/// Both flavours of `release` for one architecture; returns their local names (base, then onbuild).
#[allow(clippy::too_many_arguments)]
fn build_platform(
    steps: &Steps,
    args: &Args,
    file: &ReleaseFile,
    release: &Release,
    repository: &str,
    python_base: &str,
    mirror: &str,
    platform: Platform,
    ca: Option<&Path>,
    meta: &BuildMeta,
) -> anyhow::Result<[[String; 2]; 2]> {
    let root = workspace_root(file)?;
    let target = target_dir(&root).unwrap_or_else(|_| std::env::temp_dir());
    let python_base = platform.local_tag(python_base);
    ensure_python_base(
        steps,
        file,
        release,
        &python_base,
        mirror,
        args.offline,
        platform,
    )?;

    let bins = match &args.runtime_bin {
        Some(dir) if platform == Platform::native() => dir.clone(),
        _ if platform != Platform::native() => {
            crate::cross::build_runtime(steps, &root, &target, platform, mirror)?
        }
        _ => {
            let mut cmd = cargo();
            cmd.args([
                "build",
                "--release",
                "-p",
                "airflow-runtime",
                "-p",
                "clean-airflow-logs",
            ])
            .current_dir(&root);
            steps.run("runtime binaries (cargo build --release)", cmd)?;
            target.join("release")
        }
    };
    crate::cross::check_binaries(&bins, platform)?;

    let images = root.join("images");
    let lock = file.lock_path(release);
    let base_dir = tempfile::Builder::new()
        .prefix("ap-airflow-ctx")
        .tempdir()?;
    assemble_context(base_dir.path(), &images, &bins, &lock, ca)?;
    let base_tags = image_names(repository, release, Flavour::Base, platform);
    let mut build_args = base_build_args(release, &python_base, &base_tags[0], meta);
    if platform != Platform::native() {
        set_arg(&mut build_args, "EMULATED", "1");
        let native = image_names(repository, release, Flavour::Base, Platform::native());
        bytecode_from_native(steps, &native[0], &meta.lock_sha256, base_dir.path())?;
    }
    steps.run(
        &format!("base image {}", base_tags[0]),
        docker_build(
            base_dir.path(),
            &base_tags,
            &build_args,
            args.no_cache,
            platform,
        ),
    )?;

    let onbuild_dir = tempfile::Builder::new()
        .prefix("ap-airflow-ctx")
        .tempdir()?;
    copy_dir(&images.join("onbuild"), onbuild_dir.path())?;
    let onbuild_tags = image_names(repository, release, Flavour::Onbuild, platform);
    let onbuild_args = vec![
        ("BASE_IMAGE".to_owned(), base_tags[0].clone()),
        ("IMAGE_REF".to_owned(), onbuild_tags[0].clone()),
    ];
    steps.run(
        &format!("onbuild image {}", onbuild_tags[0]),
        docker_build(
            onbuild_dir.path(),
            &onbuild_tags,
            &onbuild_args,
            args.no_cache,
            platform,
        ),
    )?;
    Ok([base_tags, onbuild_tags])
}

fn set_arg(args: &mut [(String, String)], name: &str, value: &str) {
    if let Some((_, v)) = args.iter_mut().find(|(k, _)| k == name) {
        *v = value.to_owned();
    }
}

/// For an emulated build: `bytecode.tar` in the build context, the checked-hash bytecode (PEP 552) of every module
/// the host architecture's image of the same line has bytecode for, compiled natively in that image
/// (images/airflow/install-bytecode.py installs it instead of importing everything under emulation). Left empty,
/// with a note, when that image is missing or was built from another lock.
fn bytecode_from_native(
    steps: &Steps,
    native_image: &str,
    lock_sha256: &str,
    context: &Path,
) -> anyhow::Result<()> {
    let label = "io.astronomer.docker.airflow.lock.sha256";
    let same_lock = docker::image_exists(native_image)?
        && docker::inspect_image(native_image)?["Config"]["Labels"][label] == lock_sha256;
    if !same_lock {
        steps.note(&format!(
            "bytecode: no {native_image} of this lock; importing every module under emulation instead (slow)"
        ));
        return Ok(());
    }
    if context.to_string_lossy().contains(',') {
        bail!(
            "cannot mount {} into a container: its path has a comma",
            context.display()
        );
    }
    // The tar is written into the mounted build context (a step's stdout goes to the log).
    let mut cmd = docker::docker();
    cmd.args(["run", "--rm", "--network", "none", "--user", "0", "--mount"])
        .arg(format!(
            "type=bind,source={},target=/context",
            context.display()
        ))
        .args([
            "--entrypoint",
            "sh",
            native_image,
            "-c",
            COMPILE_CHECKED_HASH,
        ]);
    steps.run(&format!("bytecode compiled in {native_image}"), cmd)?;
    let size = std::fs::metadata(context.join("bytecode.tar"))?.len();
    if size < 1 << 20 {
        bail!("the bytecode compiled in {native_image} is missing ({size} bytes)");
    }
    Ok(())
}

/// Run in the host architecture's image: compiles every module that has a .pyc below site-packages again, as a
/// checked-hash .pyc into a scratch tree, and writes that tree as /context/bytecode.tar.
const COMPILE_CHECKED_HASH: &str = r#"set -e
out=$(mktemp -d)
python -W ignore - "$out" <<'PY'
import os, py_compile, sys, sysconfig
site, out = sysconfig.get_paths()["purelib"], sys.argv[1]
n = 0
for root, _, files in os.walk(site):
    if os.path.basename(root) != "__pycache__":
        continue
    for f in files:
        if f.endswith(".pyc"):
            source = os.path.join(os.path.dirname(root), f.split(".")[0] + ".py")
            cfile = os.path.join(out, os.path.relpath(os.path.join(root, f), site))
            py_compile.compile(source, cfile=cfile, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
            n += 1
print(f"compiled {n} modules as checked-hash bytecode")
PY
# The same bytecode makes the same tar (names sorted, no times or owners): an unchanged image's build stays cached.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$out" -cf /context/bytecode.tar .
"#;

/// Uses the Python base image when present or pullable; otherwise makes it offline and says so.
fn ensure_python_base(
    steps: &Steps,
    file: &ReleaseFile,
    release: &Release,
    image: &str,
    mirror: &str,
    offline: bool,
    platform: Platform,
) -> anyhow::Result<()> {
    if docker::image_exists(image)? {
        steps.note(&format!("python base {image}: present"));
        return Ok(());
    }
    if platform != Platform::native() {
        // A registry holds another architecture under the plain tag: pulling it would replace the host's image.
        steps.note(&format!(
            "python base {image}: not present, making it for {platform} (ap-airflow base --platform)"
        ));
    } else if offline {
        steps.note(&format!(
            "python base {image}: not present, making it offline (--offline; ap-airflow base)"
        ));
    } else {
        let mut pull = docker::docker();
        pull.args(["pull", "--quiet", image]);
        if docker::quiet(pull) {
            steps.note(&format!("python base {image}: pulled"));
            return Ok(());
        }
        steps.note(&format!(
            "python base {image}: neither present nor pullable, making it offline (ap-airflow base)"
        ));
    }
    crate::base::make(steps, file, release, image, mirror, platform)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> Release {
        Release {
            packages: vec!["a".into(), "b==1".into()],
            ..Release::sample()
        }
    }

    #[test]
    fn build_args_carry_the_seed_names_and_the_release() {
        let meta = BuildMeta {
            lock_sha256: "ab".repeat(32),
            commit: "c0ffee".into(),
            ..Default::default()
        };
        let args = base_build_args(&release(), "py:3.11", "r:2.10.5-1-bookworm", &meta);
        let get = |k: &str| {
            args.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {k}"))
        };
        assert_eq!(get("PYTHON_BASE_IMAGE"), "py:3.11");
        assert_eq!(get("VERSION"), "2.10.5-1");
        assert_eq!(get("AIRFLOW_VERSION"), "2.10.5");
        assert_eq!(get("SUBMODULES"), "celery,cncf.kubernetes");
        assert_eq!(get("AIRFLOW_PACKAGES"), "a b==1");
        assert_eq!(get("ASTRONOMER_USER"), "astro");
        assert_eq!(get("ASTRONOMER_UID"), "50000");
        assert_eq!(get("PLATFORM_UID"), "100");
        assert_eq!(get("ORG"), "astronomer");
        assert_eq!(get("LOCK_SHA256"), "ab".repeat(32));
        assert_eq!(get("COMMIT_SHA"), "c0ffee");
        assert_eq!(get("IMAGE_REF"), "r:2.10.5-1-bookworm");
    }

    #[test]
    fn repository_url_falls_back_to_the_workspace_manifest() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        assert!(workspace_repository(&root).unwrap().starts_with("https://"));
    }

    #[test]
    fn images_are_tagged_immutable_and_floating() {
        assert_eq!(
            image_names(
                "astronomerinc/ap-airflow",
                &release(),
                Flavour::Onbuild,
                Platform::native()
            ),
            [
                "astronomerinc/ap-airflow:2.10.5-1-bookworm-onbuild".to_owned(),
                "astronomerinc/ap-airflow:2.10.5-bookworm-onbuild".to_owned()
            ]
        );
    }

    #[test]
    fn every_build_arg_is_declared_by_the_dockerfile() {
        let dockerfile = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/airflow/Dockerfile"),
        )
        .unwrap();
        for (name, _) in base_build_args(&release(), "p", "r", &BuildMeta::default()) {
            assert!(
                dockerfile.contains(&format!("ARG {name}")),
                "images/airflow/Dockerfile does not declare ARG {name}"
            );
        }
    }

    #[test]
    fn context_has_the_binaries_lock_and_an_empty_ca_when_none() {
        let tmp = tempfile::tempdir().unwrap();
        let images = tmp.path().join("images");
        std::fs::create_dir_all(images.join("airflow")).unwrap();
        std::fs::write(images.join("airflow/Dockerfile"), "FROM x").unwrap();
        let bins = tmp.path().join("bins");
        std::fs::create_dir_all(&bins).unwrap();
        for b in RUNTIME_BINARIES {
            std::fs::write(bins.join(b), b).unwrap();
        }
        let lock = tmp.path().join("lock.txt");
        std::fs::write(&lock, "a==1\n").unwrap();
        let ctx = tmp.path().join("ctx");
        assemble_context(&ctx, &images, &bins, &lock, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(ctx.join("bin/tini")).unwrap(),
            "tini"
        );
        assert_eq!(
            std::fs::read_to_string(ctx.join("constraints.txt")).unwrap(),
            "a==1\n"
        );
        assert_eq!(std::fs::read(ctx.join("devel-ca.crt")).unwrap(), b"");
        assert!(ctx.join("Dockerfile").is_file());

        std::fs::remove_file(bins.join("tini")).unwrap();
        let err = assemble_context(&tmp.path().join("c2"), &images, &bins, &lock, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tini"), "{err}");
    }
}

/// The onbuild helper scripts shipped in the -onbuild image, run here against stub `pip` / `apt-get`.
#[cfg(test)]
mod onbuild_scripts {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    fn script(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../images/onbuild")
            .join(name)
    }

    /// Runs `script` on a file with `content`; stubs record their arguments in `calls`.
    fn run(name: &str, content: &str) -> (Output, String) {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let calls = dir.path().join("calls");
        for stub in ["pip", "apt-get"] {
            let p = bin.join(stub);
            std::fs::write(
                &p,
                format!("#!/bin/sh\necho {stub} \"$@\" >> '{}'\n", calls.display()),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let file = dir.path().join("input.txt");
        std::fs::write(&file, content).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let out = Command::new("sh")
            .arg(script(name))
            .arg(&file)
            .env("PATH", path)
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(&calls).unwrap_or_default();
        (out, calls)
    }

    #[test]
    fn every_airflow_pin_form_is_refused_with_the_advice() {
        for line in [
            "apache-airflow==2.9.0",
            "apache-airflow>=2.9",
            "apache-airflow~=2.10",
            "apache-airflow<3",
            "apache-airflow!=2.10.5",
            "apache-airflow===2.10.5",
            "apache-airflow[celery]==2.10.4",
            "  Apache_Airflow [celery,postgres] >= 2.0",
            "apache.airflow==2.10.5 ; python_version >= '3.8'",
            "apache-airflow @ https://example.com/apache_airflow-2.10.5-py3-none-any.whl",
        ] {
            let (out, calls) = run(
                "ap-onbuild-requirements",
                &format!("requests\r\n{line}\r\n"),
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{line:?} was accepted");
            assert!(err.contains("change the FROM line"), "{line:?}: {err}");
            assert!(calls.is_empty(), "pip ran for {line:?}");
        }
    }

    #[test]
    fn providers_and_unpinned_airflow_install_under_the_lock() {
        let (out, calls) = run(
            "ap-onbuild-requirements",
            "# providers are fine\r\napache-airflow-providers-amazon==9.2.0\r\napache-airflow\r\n\r\n",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            calls.contains("--constraint /usr/local/share/ap-airflow/constraints.txt"),
            "{calls}"
        );
        assert!(calls.lines().any(|l| l == "pip check"), "{calls}");
    }

    #[test]
    fn a_conflict_with_the_lock_says_so_after_pips_output() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(
            bin.join("pip"),
            "#!/bin/sh\necho 'ERROR: ResolutionImpossible: for help visit ...'\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("pip"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.path().join("requirements.txt");
        std::fs::write(&file, "requests==2.25.0\n").unwrap();
        let out = Command::new("sh")
            .arg(script("ap-onbuild-requirements"))
            .arg(&file)
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("conflicts with the image's lock"), "{err}");
    }

    #[test]
    fn empty_or_comment_only_requirements_skip_pip() {
        let (out, calls) = run("ap-onbuild-requirements", "# nothing\r\n\r\n");
        assert!(out.status.success());
        assert!(calls.is_empty(), "{calls}");
    }

    #[test]
    fn packages_tolerate_crlf_comments_and_blank_lines() {
        let (out, calls) = run(
            "ap-onbuild-packages",
            "# tools\r\njq\r\n\r\nlibxml2-utils  vim-tiny # editor\r\n",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            calls
                .contains("apt-get install -y --no-install-recommends jq libxml2-utils vim-tiny\n"),
            "{calls}"
        );
    }

    #[test]
    fn packages_refuse_what_is_not_a_name_and_skip_empty_lists() {
        let (out, calls) = run("ap-onbuild-packages", "jq\n-o Dpkg::Options=x\n");
        assert!(!out.status.success());
        assert!(calls.is_empty(), "{calls}");
        let (out, calls) = run("ap-onbuild-packages", "\r\n# none\r\n");
        assert!(out.status.success());
        assert!(calls.is_empty(), "{calls}");
    }
}
