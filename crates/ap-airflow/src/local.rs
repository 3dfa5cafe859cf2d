//! Images in the local Docker engine, turned into what a registry stores: config blob, layer blobs, manifest.
//!
//! The image is read with `docker save` and spooled to a temporary folder while its files are hashed, so a
//! 1.5 GB image never sits in memory and is read once.
//!
//! Layers are pushed **uncompressed** (`application/vnd.docker.image.rootfs.diff.tar`): the layer digest then *is*
//! the config's `diff_id`, and the manifest is a pure function of the image. Gzip would be deterministic only for
//! one compressor version; after a toolchain upgrade the same local image would get another digest and a re-publish
//! would look like a rebuild under an existing immutable tag. The price is larger pulls; see README.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context as _};
use sha2::{Digest as _, Sha256};

pub const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const CONFIG_V1: &str = "application/vnd.docker.container.image.v1+json";
pub const LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

/// A local image ready to push. Its manifest comes from a small cache keyed by the image ID when possible, so a
/// re-publish or a tag move does not `docker save` gigabytes; layer files are spooled only when a blob must be sent.
#[derive(Debug)]
pub struct LocalImage {
    pub reference: String,
    /// `sha256:` of the config: the engine's image ID.
    pub id: String,
    pub config: Vec<u8>,
    pub config_blob: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Vec<u8>,
    pub digest: String,
    spool_parent: PathBuf,
    spooled: std::cell::RefCell<Option<Spool>>,
}

/// `docker save` output on disk: the layer files, in manifest order.
#[derive(Debug)]
struct Spool {
    layer_paths: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

/// The registry manifest of an image: compact JSON, fixed field order, so the same image always yields the same bytes.
pub fn build_manifest(config: &Blob, layers: &[Blob]) -> Vec<u8> {
    // Written by hand: serde_json sorts map keys unless preserve_order is on, and the field order is fixed here.
    let mut out = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_V2}","config":{},"layers":["#,
        descriptor_json(CONFIG_V1, config)
    );
    for (i, l) in layers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&descriptor_json(LAYER_TAR, l));
    }
    out.push_str("]}");
    out.into_bytes()
}

fn descriptor_json(media_type: &str, b: &Blob) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","size":{},"digest":"{}"}}"#,
        b.size, b.digest
    )
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveManifest {
    config: String,
    layers: Vec<String>,
}

#[derive(serde::Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(serde::Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

fn image_id(reference: &str) -> anyhow::Result<Option<String>> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .stdin(Stdio::null())
        .output()
        .context("cannot run docker (is the Docker client installed?)")?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No such image") || err.contains("No such object") {
        return Ok(None);
    }
    bail!(
        "cannot ask the Docker engine about {reference}: {}",
        err.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// `$XDG_CACHE_HOME/ap-airflow/images`, else `~/.cache/ap-airflow/images`.
fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("ap-airflow/images"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheEntry {
    layers: Vec<(String, u64)>,
}

impl LocalImage {
    /// Reads `reference` from the engine. Layer files are spooled under `spool_parent` when first needed.
    pub fn load(reference: &str, spool_parent: &Path) -> anyhow::Result<LocalImage> {
        let id = image_id(reference)?.ok_or_else(|| {
            anyhow!("local image {reference} not found in the Docker engine (build it first, or pass --source-repository)")
        })?;
        if let Some(image) = Self::from_cache(reference, &id, spool_parent) {
            return Ok(image);
        }
        let (config, layers, spool) = save(reference, spool_parent)?;
        let image = Self::assemble(reference, config, layers, spool_parent, Some(spool))?;
        if image.id != id {
            bail!(
                "{reference} changed while it was read (image ID {id}, saved {})",
                image.id
            );
        }
        image.store_cache();
        Ok(image)
    }

    fn assemble(
        reference: &str,
        config: Vec<u8>,
        layers: Vec<Blob>,
        spool_parent: &Path,
        spool: Option<Spool>,
    ) -> anyhow::Result<LocalImage> {
        let config_blob = Blob {
            digest: format!("sha256:{}", sha256_hex(&config)),
            size: config.len() as u64,
        };
        let parsed: ImageConfig =
            serde_json::from_slice(&config).context("malformed image config")?;
        let diff_ids = parsed.rootfs.diff_ids;
        if diff_ids.len() != layers.len()
            || diff_ids.iter().zip(&layers).any(|(d, l)| *d != l.digest)
        {
            bail!("the layers of {reference} do not match the diff_ids of its config");
        }
        let manifest = build_manifest(&config_blob, &layers);
        Ok(LocalImage {
            reference: reference.to_owned(),
            id: config_blob.digest.clone(),
            digest: format!("sha256:{}", sha256_hex(&manifest)),
            config,
            config_blob,
            layers,
            manifest,
            spool_parent: spool_parent.to_owned(),
            spooled: std::cell::RefCell::new(spool),
        })
    }

    /// The image ID is the config's digest and the config lists every layer's diff_id, which is the uncompressed
    /// layer's digest: config bytes + layer sizes fully determine the manifest. Checked again on load.
    fn from_cache(reference: &str, id: &str, spool_parent: &Path) -> Option<LocalImage> {
        let dir = cache_dir()?;
        let hex = id.strip_prefix("sha256:")?;
        let config = std::fs::read(dir.join(format!("{hex}.config"))).ok()?;
        if format!("sha256:{}", sha256_hex(&config)) != id {
            return None;
        }
        let entry: CacheEntry =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{hex}.layers"))).ok()?).ok()?;
        let layers = entry
            .layers
            .into_iter()
            .map(|(digest, size)| Blob { digest, size })
            .collect();
        Self::assemble(reference, config, layers, spool_parent, None).ok()
    }

    /// Best effort: without a cache the next run saves the image again, nothing worse.
    fn store_cache(&self) {
        let Some(dir) = cache_dir() else { return };
        let hex = self.id.trim_start_matches("sha256:");
        let entry = CacheEntry {
            layers: self
                .layers
                .iter()
                .map(|b| (b.digest.clone(), b.size))
                .collect(),
        };
        let _ = std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(dir.join(format!("{hex}.config")), &self.config))
            .and_then(|_| {
                std::fs::write(
                    dir.join(format!("{hex}.layers")),
                    serde_json::to_vec(&entry).unwrap_or_default(),
                )
            });
    }

    /// Opens layer `index` for upload, running `docker save` first if the layers are not spooled yet.
    pub fn open_layer(&self, index: usize) -> anyhow::Result<std::fs::File> {
        let mut spooled = self.spooled.borrow_mut();
        if spooled.is_none() {
            let (config, layers, spool) = save(&self.reference, &self.spool_parent)?;
            if config != self.config || layers != self.layers {
                bail!(
                    "{} changed since it was read; run publish again",
                    self.reference
                );
            }
            *spooled = Some(spool);
        }
        let path = &spooled.as_ref().expect("spooled above").layer_paths[index];
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))
    }
}

/// `docker save`, spooled and hashed: the config bytes, the layer blobs, and their files.
fn save(reference: &str, spool_parent: &Path) -> anyhow::Result<(Vec<u8>, Vec<Blob>, Spool)> {
    let dir = tempfile::Builder::new()
        .prefix("ap-airflow-publish-")
        .tempdir_in(spool_parent)
        .with_context(|| format!("cannot make a spool folder in {}", spool_parent.display()))?;
    let mut child = Command::new("docker")
        .args(["save", reference])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run docker save")?;
    let stdout = child.stdout.take().expect("piped");
    let spooled = spool_tar(stdout, dir.path());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "docker save {reference} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let files =
        spooled.with_context(|| format!("cannot read docker save output of {reference}"))?;
    let text = std::fs::read(dir.path().join("manifest.json"))
        .context("docker save output has no manifest.json")?;
    let mut saved: Vec<SaveManifest> =
        serde_json::from_slice(&text).context("malformed manifest.json from docker save")?;
    if saved.len() != 1 {
        bail!(
            "docker save of {reference} holds {} images, expected 1",
            saved.len()
        );
    }
    let saved = saved.remove(0);
    let (config_path, _) = resolve(&files, &saved.config)?;
    let config = std::fs::read(dir.path().join(&config_path))?;
    let mut layers = Vec::new();
    let mut layer_paths = Vec::new();
    for layer in &saved.layers {
        let (path, f) = resolve(&files, layer)?;
        let Spooled::File { sha256, size } = f else {
            unreachable!("resolve follows links")
        };
        layers.push(Blob {
            digest: format!("sha256:{sha256}"),
            size: *size,
        });
        layer_paths.push(dir.path().join(path));
    }
    Ok((
        config,
        layers,
        Spool {
            layer_paths,
            _dir: dir,
        },
    ))
}

/// A spooled file: its sha256 and size, or a symlink to another entry.
#[derive(Debug, Clone)]
enum Spooled {
    File { sha256: String, size: u64 },
    Link(String),
}

fn spool_tar(stream: impl Read, dir: &Path) -> anyhow::Result<HashMap<String, Spooled>> {
    let mut archive = tar::Archive::new(stream);
    let mut files = HashMap::new();
    let mut buf = vec![0u8; 1 << 20];
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        if path.split('/').any(|c| c == "..") {
            bail!("unsafe path {path:?} in docker save output");
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular => {
                let dest = dir.join(&path);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut f = std::io::BufWriter::new(std::fs::File::create(&dest)?);
                let mut h = Sha256::new();
                let mut size = 0u64;
                loop {
                    let n = entry.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    f.write_all(&buf[..n])?;
                    size += n as u64;
                }
                f.flush()?;
                files.insert(
                    path,
                    Spooled::File {
                        sha256: hex::encode(h.finalize()),
                        size,
                    },
                );
            }
            tar::EntryType::Symlink => {
                // docker save links a layer that appears twice to its first copy.
                let target = entry
                    .link_name()?
                    .ok_or_else(|| anyhow!("symlink {path} without a target"))?
                    .to_string_lossy()
                    .into_owned();
                let base = Path::new(&path).parent().unwrap_or(Path::new(""));
                let resolved = normalize(&base.join(target));
                files.insert(path, Spooled::Link(resolved));
            }
            _ => {}
        }
    }
    Ok(files)
}

fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

fn resolve<'a>(
    files: &'a HashMap<String, Spooled>,
    path: &str,
) -> anyhow::Result<(String, &'a Spooled)> {
    let mut p = path.to_owned();
    for _ in 0..16 {
        match files.get(&p) {
            Some(Spooled::Link(t)) => p = t.clone(),
            Some(f) => return Ok((p, f)),
            None => bail!("docker save output lacks {p}"),
        }
    }
    bail!("symlink loop at {path} in docker save output")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: u8, size: u64) -> Blob {
        Blob {
            digest: format!("sha256:{}", hex::encode([n; 32])),
            size,
        }
    }

    #[test]
    fn manifest_is_deterministic_and_valid_json() {
        let a = build_manifest(&blob(1, 10), &[blob(2, 20), blob(3, 30)]);
        let b = build_manifest(&blob(1, 10), &[blob(2, 20), blob(3, 30)]);
        assert_eq!(a, b);
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], MANIFEST_V2);
        assert_eq!(v["config"]["size"], 10);
        assert_eq!(v["layers"][1]["digest"], blob(3, 30).digest);
        assert_eq!(v["layers"][0]["mediaType"], LAYER_TAR);
        // Layer order is part of the image.
        assert_ne!(a, build_manifest(&blob(1, 10), &[blob(3, 30), blob(2, 20)]));
    }

    #[test]
    fn spooling_hashes_files_and_follows_links() {
        let mut data = Vec::new();
        {
            let mut b = tar::Builder::new(&mut data);
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, "aa/layer.tar", &b"abc"[..]).unwrap();
            let mut l = tar::Header::new_gnu();
            l.set_entry_type(tar::EntryType::Symlink);
            l.set_size(0);
            b.append_link(&mut l, "bb/layer.tar", "../aa/layer.tar")
                .unwrap();
            b.finish().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let files = spool_tar(&data[..], dir.path()).unwrap();
        let (p, f) = resolve(&files, "bb/layer.tar").unwrap();
        assert_eq!(p, "aa/layer.tar");
        match f {
            Spooled::File { sha256, size } => {
                assert_eq!(*size, 3);
                assert_eq!(sha256, &sha256_hex(b"abc"));
            }
            Spooled::Link(_) => panic!("not resolved"),
        }
        assert_eq!(
            std::fs::read(dir.path().join("aa/layer.tar")).unwrap(),
            b"abc"
        );
    }
}
