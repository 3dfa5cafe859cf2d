//! The in-image Rust runtime for another architecture than the host's, cross-compiled at native speed.
//!
//! rustup cannot add targets on every build host, and compiling under emulation takes minutes, so the runtime is
//! built in a Debian trixie container (`images/rust-cross`: trixie's rustc/cargo, the workspace's rust-version,
//! with the target's `libstd-rust-dev` and GNU toolchain). The container never reaches the network: the
//! workspace's dependencies are vendored on the host first (`cargo vendor`, redone when Cargo.lock changes) and
//! mounted read-only beside the read-only workspace.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::digest::sha256_file;
use crate::docker::{self, docker_build, Steps};
use crate::image::RUNTIME_BINARIES;
use crate::platform::Platform;
use crate::workspace::cargo;

/// The Debian release whose Rust toolchain cross-compiles (rustc 1.85, `libstd-rust-dev` Multi-Arch: same).
const TOOLCHAIN_DISTRO: &str = "trixie";

/// The packages the runtime binaries come from.
const PACKAGES: [&str; 2] = ["airflow-runtime", "clean-airflow-logs"];

/// Local name of the cross-compiler image for `platform`.
pub fn toolchain_image(platform: Platform) -> String {
    format!(
        "ap-airflow-rust-cross:{TOOLCHAIN_DISTRO}-{}",
        platform.arch()
    )
}

/// Debian's GNU triplet of the target (the `gcc-<triplet>` package, with `_` spelled `-`).
fn gnu_triplet(platform: Platform) -> &'static str {
    match platform {
        Platform::Amd64 => "x86_64-linux-gnu",
        Platform::Arm64 => "aarch64-linux-gnu",
    }
}

/// Arguments of `cargo build` in the container. Pure.
pub fn cargo_args(platform: Platform) -> Vec<String> {
    let mut args: Vec<String> = [
        "cargo",
        "build",
        "--release",
        "--locked",
        "--offline",
        "--target",
        platform.rust_target(),
        "--target-dir",
        "/out/target",
    ]
    .map(String::from)
    .to_vec();
    for p in PACKAGES {
        args.extend(["-p".to_owned(), p.to_owned()]);
    }
    args.extend(
        [
            "--config",
            r#"source.crates-io.replace-with="vendored-sources""#,
            "--config",
            r#"source.vendored-sources.directory="/vendor""#,
        ]
        .map(String::from),
    );
    args
}

/// Builds the runtime binaries for `platform` under `target/ap-airflow/cross`; returns the folder holding them.
pub fn build_runtime(
    steps: &Steps,
    root: &Path,
    target: &Path,
    platform: Platform,
    mirror: &str,
) -> anyhow::Result<PathBuf> {
    let native = Platform::native();
    let image = toolchain_image(platform);
    if !docker::image_exists(&image)? {
        let minbase = crate::base::ensure_minbase(steps, TOOLCHAIN_DISTRO, mirror, native)?;
        let args = vec![
            ("BASE_IMAGE".to_owned(), minbase),
            ("DEBIAN_MIRROR".to_owned(), mirror.to_owned()),
            ("TARGET_ARCH".to_owned(), platform.debian().to_owned()),
            ("TARGET_GNU".to_owned(), gnu_triplet(platform).to_owned()),
        ];
        steps.run(
            &format!("cross compiler {image}"),
            docker_build(
                &root.join("images/rust-cross"),
                std::slice::from_ref(&image),
                &args,
                false,
                native,
            ),
        )?;
    }

    let work = target.join("ap-airflow");
    let vendor = vendor(steps, root, &work.join("vendor"))?;
    let out = work.join("cross");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    for path in [root, vendor.as_path(), out.as_path()] {
        // --mount takes comma-separated fields: a path with a comma cannot be passed.
        if path.to_string_lossy().contains(',') {
            bail!(
                "cannot mount {} into the cross compiler: its path has a comma",
                path.display()
            );
        }
    }
    let mut run = docker::docker();
    run.args(["run", "--rm", "--network", "none"])
        // Files in target/ belong to whoever runs the build, not to root.
        .arg("--user")
        .arg(format!("{}:{}", nix_ids().0, nix_ids().1))
        .arg("--mount")
        .arg(format!(
            "type=bind,source={},target=/src,readonly",
            root.display()
        ))
        .arg("--mount")
        .arg(format!(
            "type=bind,source={},target=/vendor,readonly",
            vendor.display()
        ))
        .arg("--mount")
        .arg(format!("type=bind,source={},target=/out", out.display()))
        .args(["--workdir", "/src", "--env", "CARGO_HOME=/out/cargo-home"])
        .args(["--env", "CARGO_TERM_COLOR=never", &image])
        .args(cargo_args(platform));
    steps.run(
        &format!("runtime binaries for {platform} (cross-compiled in {image})"),
        run,
    )?;
    let bins = out
        .join("target")
        .join(platform.rust_target())
        .join("release");
    check_binaries(&bins, platform)?;
    Ok(bins)
}

/// `cargo vendor` of the workspace into `dir`, skipped when it already holds this Cargo.lock's sources.
fn vendor(steps: &Steps, root: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let lock = sha256_file(&root.join("Cargo.lock"))?;
    let stamp = dir.join(".ap-airflow-lock-sha256");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == lock) {
        return Ok(dir.to_owned());
    }
    let mut cmd = cargo();
    cmd.args(["vendor", "--locked", "--versioned-dirs", "--quiet"])
        .arg(dir)
        .current_dir(root);
    steps.run("vendored sources (cargo vendor)", cmd)?;
    std::fs::write(&stamp, format!("{lock}\n"))?;
    Ok(dir.to_owned())
}

/// Every runtime binary in `dir` is an ELF executable for `platform`: a wrong or stale binary never reaches an
/// image of another architecture.
pub fn check_binaries(dir: &Path, platform: Platform) -> anyhow::Result<()> {
    for name in RUNTIME_BINARIES {
        let path = dir.join(name);
        let mut head = Vec::with_capacity(20);
        std::fs::File::open(&path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 20), &mut head))
            .with_context(|| format!("runtime binary {} missing", path.display()))?;
        match Platform::of_elf(&head) {
            Some(p) if p == platform => {}
            Some(p) => bail!(
                "runtime binary {} is built for {p}, not {platform}",
                path.display()
            ),
            None => bail!(
                "runtime binary {} is not an ELF executable for {platform}",
                path.display()
            ),
        }
    }
    Ok(())
}

/// The caller's user and group IDs.
fn nix_ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").map_or((0, 0), |m| (m.uid(), m.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_builds_offline_from_vendored_sources() {
        let args = cargo_args(Platform::Arm64).join(" ");
        assert!(args.starts_with("cargo build --release --locked --offline"));
        assert!(args.contains("--target aarch64-unknown-linux-gnu"));
        assert!(args.contains("-p airflow-runtime -p clean-airflow-logs"));
        assert!(args.contains(r#"source.vendored-sources.directory="/vendor""#));
        assert_eq!(
            toolchain_image(Platform::Arm64),
            "ap-airflow-rust-cross:trixie-arm64"
        );
    }

    #[test]
    fn binaries_of_another_architecture_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut elf = [0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // 64-bit
        elf[5] = 1; // little-endian
        elf[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        for b in RUNTIME_BINARIES {
            std::fs::write(dir.path().join(b), elf).unwrap();
        }
        check_binaries(dir.path(), Platform::Arm64).unwrap();
        let err = check_binaries(dir.path(), Platform::Amd64)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("built for linux/arm64, not linux/amd64"),
            "{err}"
        );
        std::fs::write(dir.path().join("tini"), "#!/bin/sh\n").unwrap();
        let err = check_binaries(dir.path(), Platform::Arm64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tini is not an ELF executable"), "{err}");
    }
}
