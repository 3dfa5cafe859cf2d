//! The workspace around the release file: its root, Cargo's target folder, git facts, the host's CA bundle,
//! and copying folders into build contexts. Shared by `build` and `base`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::release::ReleaseFile;

/// The workspace root: the release file's folder, absolute.
pub fn workspace_root(file: &ReleaseFile) -> anyhow::Result<PathBuf> {
    let root = file.root();
    let root = if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    };
    std::fs::canonicalize(root).with_context(|| format!("cannot resolve {}", root.display()))
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Cargo's target directory for the workspace (honours CARGO_TARGET_DIR and .cargo/config).
pub fn target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed in {}", root.display());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("cargo metadata")?;
    v["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

/// The CA bundle pip/uv trust in the devel stage: PIP_CERT, else SSL_CERT_FILE, else none (PyPI's own chain).
pub fn host_ca_bundle() -> anyhow::Result<Option<PathBuf>> {
    for var in ["PIP_CERT", "SSL_CERT_FILE"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let p = PathBuf::from(v);
            if !p.is_file() {
                bail!("{var} names {}, which is not a file", p.display());
            }
            return Ok(Some(p));
        }
    }
    Ok(None)
}

pub(crate) fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// `[workspace.package] repository` of the root Cargo.toml: the label's URL when git has no remote.
pub fn workspace_repository(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("Cargo.toml")).ok()?;
    let v: toml::Value = toml::from_str(&text).ok()?;
    v.get("workspace")?
        .get("package")?
        .get("repository")?
        .as_str()
        .map(str::to_owned)
}

/// Copies a folder's files (recursively) into `to`.
pub fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}
