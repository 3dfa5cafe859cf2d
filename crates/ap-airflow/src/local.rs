//! Images in the local Docker engine, turned into what a registry stores: config blob, compressed layer blobs,
//! an OCI image manifest per platform and an OCI image index over them.
//!
//! The layers of a run are read once (shared layers once): from the engine's layer store (`layer_store`, as
//! `docker push` reads them), else with one `docker save`; each is compressed while it is read (`compress`:
//! deterministic, on every core) and, when `publish` asks, sent to a registry at the same time (`Stream`). Only the
//! compressed layers are spooled, in a temporary folder removed at exit. The uncompressed digest of every layer is
//! checked against the config's `diff_ids`.
//!
//! Two small caches under `~/.cache/ap-airflow` make a re-publish or a tag move free of reading layers: the config of
//! an image by image ID (`images/`), and the compressed digest and size of a layer by its `diff_id`, filed under the
//! compressor's fingerprint (`layers/<fingerprint>/`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::digest::sha256_digest;
use anyhow::{anyhow, bail, Context as _};

use crate::compress::Compression;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// `os/arch` when it is not the engine's own architecture: what `docker run --platform` needs to run it (under
    /// emulation).
    pub fn foreign(&self) -> Option<String> {
        (self.architecture != crate::platform::Platform::native().arch())
            .then(|| format!("{}/{}", self.os, self.architecture))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// One platform's image, ready to push.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub reference: String,
    /// `sha256:` of the config: the engine's image ID. Two images with the same ID are the same image (the config
    /// lists the digest of every uncompressed layer), however their layers are compressed.
    pub id: String,
    pub config: Vec<u8>,
    pub config_blob: Blob,
    pub platform: Platform,
    /// Uncompressed layers (digest = `diff_id`).
    pub diff_ids: Vec<Blob>,
    /// Compressed layers, as pushed.
    pub layers: Vec<Blob>,
    pub layer_media_type: String,
    pub manifest: Vec<u8>,
    pub digest: String,
}

/// What one tag points at: an OCI image index over one manifest per platform built locally (linux/amd64, linux/arm64).
#[derive(Debug, Clone)]
pub struct IndexedImage {
    pub images: Vec<LocalImage>,
    pub index: Vec<u8>,
    pub digest: String,
}

impl IndexedImage {
    pub fn new(mut images: Vec<LocalImage>) -> IndexedImage {
        images.sort_by(|a, b| a.platform.cmp(&b.platform));
        let index = build_index(
            &images
                .iter()
                .map(|i| {
                    (
                        Blob {
                            digest: i.digest.clone(),
                            size: i.manifest.len() as u64,
                        },
                        i.platform.clone(),
                    )
                })
                .collect::<Vec<_>>(),
        );
        IndexedImage {
            digest: sha256_digest(&index),
            index,
            images,
        }
    }

    /// The image IDs, sorted: what "same image" means for the immutable-tag rule.
    pub fn identity(&self) -> String {
        let mut ids: Vec<&str> = self.images.iter().map(|i| i.id.as_str()).collect();
        ids.sort_unstable();
        ids.join(",")
    }
}

/// An OCI image manifest: compact JSON, fixed field order, so the same image always yields the same bytes.
pub fn build_manifest(config: &Blob, layers: &[Blob], layer_media_type: &str) -> Vec<u8> {
    // Written by hand: serde_json sorts map keys unless preserve_order is on, and the field order is fixed here.
    let mut out = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":["#,
        descriptor_json(OCI_CONFIG, config)
    );
    for (i, l) in layers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&descriptor_json(layer_media_type, l));
    }
    out.push_str("]}");
    out.into_bytes()
}

/// An OCI image index over per-platform manifests, in the order given.
pub fn build_index(manifests: &[(Blob, Platform)]) -> Vec<u8> {
    let mut out = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":["#);
    for (i, (m, p)) in manifests.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let d = descriptor_json(OCI_MANIFEST, m);
        let variant = p
            .variant
            .as_ref()
            .map(|v| format!(r#","variant":"{}""#, json_str(v)))
            .unwrap_or_default();
        out.push_str(&format!(
            r#"{},"platform":{{"architecture":"{}","os":"{}"{variant}}}}}"#,
            &d[..d.len() - 1],
            json_str(&p.architecture),
            json_str(&p.os)
        ));
    }
    out.push_str("]}");
    out.into_bytes()
}

fn json_str(s: &str) -> String {
    let q = serde_json::to_string(s).expect("a string serialises");
    q[1..q.len() - 1].to_owned()
}

pub fn descriptor_json(media_type: &str, b: &Blob) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#,
        b.digest, b.size
    )
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
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(serde::Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// The engine's image ID and platform of a local image (no layer is read), or None when it has no such image.
pub fn inspect(reference: &str) -> anyhow::Result<Option<(String, Platform)>> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{json .}}", reference])
        .stdin(Stdio::null())
        .output()
        .context("cannot run docker (is the Docker client installed?)")?;
    if out.status.success() {
        // JSON, since Docker leaves out an empty Variant (a template naming it would fail).
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("docker image inspect {reference}: malformed output"))?;
        let field = |name: &str| v[name].as_str().filter(|s| !s.is_empty()).map(String::from);
        return Ok(Some((
            field("Id").unwrap_or_default(),
            Platform {
                os: field("Os").unwrap_or_else(|| "linux".into()),
                architecture: field("Architecture").unwrap_or_else(|| "amd64".into()),
                variant: field("Variant"),
            },
        )));
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

fn image_id(reference: &str) -> anyhow::Result<Option<String>> {
    Ok(inspect(reference)?.map(|(id, _)| id))
}

/// `$XDG_CACHE_HOME/ap-airflow`, else `~/.cache/ap-airflow`.
fn cache_root() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("ap-airflow"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheEntry {
    layers: Vec<(String, u64)>,
}

/// Config bytes and uncompressed layers of an image ID, from the cache (re-hashed against the ID).
fn cached_config(id: &str) -> Option<(Vec<u8>, Vec<Blob>)> {
    let dir = cache_root()?.join("images");
    let hex = id.strip_prefix("sha256:")?;
    let config = std::fs::read(dir.join(format!("{hex}.config"))).ok()?;
    if sha256_digest(&config) != id {
        return None;
    }
    let entry: CacheEntry =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{hex}.layers"))).ok()?).ok()?;
    let layers = entry
        .layers
        .into_iter()
        .map(|(digest, size)| Blob { digest, size })
        .collect();
    Some((config, layers))
}

/// Best effort: without a cache the next run saves the image again, nothing worse.
fn store_config(id: &str, config: &[u8], diff_ids: &[Blob]) {
    let Some(dir) = cache_root().map(|r| r.join("images")) else {
        return;
    };
    let hex = id.trim_start_matches("sha256:");
    let entry = CacheEntry {
        layers: diff_ids
            .iter()
            .map(|b| (b.digest.clone(), b.size))
            .collect(),
    };
    let _ = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(dir.join(format!("{hex}.config")), config))
        .and_then(|_| {
            std::fs::write(
                dir.join(format!("{hex}.layers")),
                serde_json::to_vec(&entry).unwrap_or_default(),
            )
        });
}

fn layer_cache_path(fingerprint: &str, diff_id: &str) -> Option<PathBuf> {
    let hex = diff_id.strip_prefix("sha256:")?;
    Some(cache_root()?.join("layers").join(fingerprint).join(hex))
}

fn cached_layer(fingerprint: &str, diff_id: &str) -> Option<Blob> {
    let text = std::fs::read_to_string(layer_cache_path(fingerprint, diff_id)?).ok()?;
    let (digest, size) = text.trim().split_once(' ')?;
    Some(Blob {
        digest: digest.to_owned(),
        size: size.parse().ok()?,
    })
}

fn store_layer(fingerprint: &str, diff_id: &str, blob: &Blob) {
    let Some(path) = layer_cache_path(fingerprint, diff_id) else {
        return;
    };
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(path, format!("{} {}\n", blob.digest, blob.size));
}

/// The engine's images of one run and their compressed layers, spooled on first need.
pub struct Source {
    references: Vec<String>,
    spool_parent: PathBuf,
    pub compression: Compression,
    fingerprint: String,
    spool: std::cell::RefCell<Option<Spool>>,
}

/// Compressed layers on disk, by compressed digest.
struct Spool {
    files: HashMap<String, PathBuf>,
    _dir: tempfile::TempDir,
}

/// What one read of the layers gave: per reference its config and uncompressed layers; per diff_id the compressed
/// blob.
struct Saved {
    images: Vec<(Vec<u8>, Vec<Blob>)>,
    compressed: HashMap<String, Blob>,
    spool: Spool,
}

impl Source {
    /// Reads `references` from the engine (one platform image each), reading their layers once at most.
    pub fn load(
        references: &[String],
        spool_parent: &Path,
        compression: Compression,
    ) -> anyhow::Result<(Source, Vec<LocalImage>)> {
        Self::load_streaming(references, spool_parent, compression, None)
    }

    /// `load`, and when it reads the layers, every big layer's compressed bytes are also sent to `stream` while
    /// they are produced (so an upload can overlap compression); the spool keeps them as well.
    pub fn load_streaming(
        references: &[String],
        spool_parent: &Path,
        compression: Compression,
        stream: Option<Stream>,
    ) -> anyhow::Result<(Source, Vec<LocalImage>)> {
        let fingerprint = compression.fingerprint();
        let mut ids = Vec::new();
        for r in references {
            ids.push(image_id(r)?.ok_or_else(|| {
                anyhow!("local image {r} not found in the Docker engine (build it first, or pass --source-repository)")
            })?);
        }
        let source = Source {
            references: references.to_vec(),
            spool_parent: spool_parent.to_owned(),
            compression,
            fingerprint,
            spool: std::cell::RefCell::new(None),
        };
        let cached: Option<Vec<_>> = ids
            .iter()
            .map(|id| {
                let (config, diff_ids) = cached_config(id)?;
                let layers: Option<Vec<Blob>> = diff_ids
                    .iter()
                    .map(|d| cached_layer(&source.fingerprint, &d.digest))
                    .collect();
                Some((config, diff_ids, layers?))
            })
            .collect();
        let parts = match cached {
            Some(parts) => parts,
            None => {
                let saved = source.save(stream)?;
                // manifest.json need not follow the order of the references: match on image IDs.
                let mut parts = Vec::new();
                for (reference, id) in references.iter().zip(&ids) {
                    let (config, diff_ids) = saved
                        .images
                        .iter()
                        .find(|(c, _)| sha256_digest(c) == *id)
                        .ok_or_else(|| {
                            anyhow!("{reference} changed while it was read (image ID {id} is not in docker save output)")
                        })?;
                    let layers = diff_ids
                        .iter()
                        .map(|d| saved.compressed[&d.digest].clone())
                        .collect();
                    parts.push((config.clone(), diff_ids.clone(), layers));
                }
                *source.spool.borrow_mut() = Some(saved.spool);
                parts
            }
        };
        let mut images = Vec::new();
        for ((reference, id), (config, diff_ids, layers)) in references.iter().zip(&ids).zip(parts)
        {
            let image = source.assemble(reference, config, diff_ids, layers)?;
            if image.id != *id {
                bail!(
                    "{reference} changed while it was read (image ID {id}, saved {})",
                    image.id
                );
            }
            images.push(image);
        }
        Ok((source, images))
    }

    fn assemble(
        &self,
        reference: &str,
        config: Vec<u8>,
        diff_ids: Vec<Blob>,
        layers: Vec<Blob>,
    ) -> anyhow::Result<LocalImage> {
        let config_blob = Blob {
            digest: sha256_digest(&config),
            size: config.len() as u64,
        };
        let parsed: ImageConfig =
            serde_json::from_slice(&config).context("malformed image config")?;
        let want = parsed.rootfs.diff_ids;
        if want.len() != diff_ids.len() || want.iter().zip(&diff_ids).any(|(d, l)| *d != l.digest) {
            bail!("the layers of {reference} do not match the diff_ids of its config");
        }
        let media_type = self.compression.media_type();
        let manifest = build_manifest(&config_blob, &layers, media_type);
        Ok(LocalImage {
            reference: reference.to_owned(),
            id: config_blob.digest.clone(),
            digest: sha256_digest(&manifest),
            platform: Platform {
                os: if parsed.os.is_empty() {
                    "linux".into()
                } else {
                    parsed.os
                },
                architecture: if parsed.architecture.is_empty() {
                    "amd64".into()
                } else {
                    parsed.architecture
                },
                variant: parsed.variant.filter(|v| !v.is_empty()),
            },
            config,
            config_blob,
            diff_ids,
            layers,
            layer_media_type: media_type.to_owned(),
            manifest,
        })
    }

    /// Opens a compressed layer for upload, reading the layers first if they are not spooled.
    pub fn open_blob(&self, digest: &str) -> anyhow::Result<std::fs::File> {
        let mut spool = self.spool.borrow_mut();
        if spool.as_ref().is_none_or(|s| !s.files.contains_key(digest)) {
            let saved = self.save(None)?;
            *spool = Some(saved.spool);
        }
        let path = spool
            .as_ref()
            .and_then(|s| s.files.get(digest))
            .ok_or_else(|| {
                anyhow!("layer {digest} is not in the images read again from the engine (were they rebuilt? run publish again)")
            })?;
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))
    }

    /// Every layer of the references, each compressed as it is read; caches what it learns.
    fn save(&self, stream: Option<Stream>) -> anyhow::Result<Saved> {
        // The layer store first (no full temporary copy, compression starts at once), `docker save` when it cannot
        // be read; AP_AIRFLOW_DOCKER_SAVE=1 forces `docker save` (the tests compare both).
        let direct = if std::env::var_os("AP_AIRFLOW_DOCKER_SAVE").is_some_and(|v| v == "1") {
            Err(anyhow!("AP_AIRFLOW_DOCKER_SAVE=1"))
        } else {
            crate::layer_store::Store::open().and_then(|store| {
                read_store(
                    &store,
                    &self.references,
                    &self.spool_parent,
                    self.compression,
                    stream.clone(),
                )
            })
        };
        let saved = match direct {
            Ok(saved) => saved,
            Err(e) => {
                eprintln!(
                    "  reading the images with docker save ({})",
                    format!("{e:#}").replace('\n', " ")
                );
                save_and_compress(
                    &self.references,
                    &self.spool_parent,
                    self.compression,
                    stream,
                )?
            }
        };
        for (config, diff_ids) in &saved.images {
            let id = sha256_digest(config);
            store_config(&id, config, diff_ids);
        }
        for (diff_id, blob) in &saved.compressed {
            store_layer(&self.fingerprint, diff_id, blob);
        }
        Ok(saved)
    }
}

/// Files at most this big are kept in memory while the save streams (configs, manifests, small layers); bigger
/// ones are layers and are compressed on the fly.
const IN_MEMORY: u64 = 4 << 20;

enum Entry {
    Small(Vec<u8>),
    /// A compressed layer in the spool: its uncompressed and compressed blobs.
    Layer(Blob, Blob, PathBuf),
    Link(String),
}

/// What a layer stream carries, in order: `Begin`, `Data`…, then `End` (or `Abort`), for each big layer.
pub enum Piece {
    Begin,
    /// The layer's next compressed bytes.
    Data(Vec<u8>),
    /// The layer is complete: its compressed blob (the digest is only known now).
    End(Blob),
    /// Reading or compressing the layer failed: what was sent is no blob.
    Abort,
}

/// A bounded channel: a slow receiver slows compression down, so memory stays at a few chunks.
pub type Stream = std::sync::mpsc::SyncSender<Piece>;

/// The compressed output of a layer: the spool file, and the stream while its receiver listens.
struct Tee<W> {
    file: W,
    stream: Option<Stream>,
}

impl<W: Write> Tee<W> {
    fn send(&mut self, piece: Piece) {
        // A receiver that stopped (its upload failed) no longer gets anything; the spool still does.
        if self.stream.as_ref().is_some_and(|s| s.send(piece).is_err()) {
            self.stream = None;
        }
    }
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_all(buf)?;
        self.send(Piece::Data(buf.to_vec()));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The run's spool folder for compressed layers, removed when dropped.
fn spool_folder(parent: &Path) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("ap-airflow-publish-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot make a spool folder in {}", parent.display()))
}

fn save_and_compress(
    references: &[String],
    spool_parent: &Path,
    compression: Compression,
    stream: Option<Stream>,
) -> anyhow::Result<Saved> {
    let dir = spool_folder(spool_parent)?;
    let mut child = Command::new("docker")
        .arg("save")
        .args(references)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run docker save")?;
    let stdout = child.stdout.take().expect("piped");
    let read = read_save(stdout, dir.path(), compression, stream);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "docker save {} failed: {}",
            references.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let entries = read.context("cannot read docker save output")?;
    let mut spool = Spool {
        files: HashMap::new(),
        _dir: dir,
    };
    let text = match resolve(&entries, "manifest.json")? {
        (_, Entry::Small(b)) => b.clone(),
        _ => bail!("docker save output has a malformed manifest.json"),
    };
    let saved: Vec<SaveManifest> =
        serde_json::from_slice(&text).context("malformed manifest.json from docker save")?;
    if saved.len() != references.len() {
        bail!(
            "docker save of {} holds {} images, expected {}",
            references.join(" "),
            saved.len(),
            references.len()
        );
    }
    let mut images = Vec::new();
    let mut compressed = HashMap::new();
    // Small layers are compressed here, once each even when several images share them.
    let mut small_done: HashMap<String, (Blob, Blob, PathBuf)> = HashMap::new();
    for image in &saved {
        let config = match resolve(&entries, &image.config)? {
            (_, Entry::Small(b)) => b.clone(),
            _ => bail!(
                "docker save output: config {} is not a small file",
                image.config
            ),
        };
        let mut diff_ids = Vec::new();
        for layer in &image.layers {
            let (path, entry) = resolve(&entries, layer)?;
            let (plain, packed, file) = match entry {
                Entry::Layer(plain, packed, file) => (plain.clone(), packed.clone(), file.clone()),
                Entry::Small(_) if small_done.contains_key(&path) => small_done[&path].clone(),
                Entry::Small(bytes) => {
                    let file = spool
                        ._dir
                        .path()
                        .join(format!("small-{}", small_done.len()));
                    let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
                    let c = crate::compress::compress(
                        compression,
                        &bytes[..],
                        bytes.len() as u64,
                        &mut f,
                        0,
                    )?;
                    f.flush()?;
                    let done = (c.uncompressed, c.compressed, file);
                    small_done.insert(path.clone(), done.clone());
                    done
                }
                Entry::Link(_) => unreachable!("resolve follows links"),
            };
            spool.files.insert(packed.digest.clone(), file);
            compressed.insert(plain.digest.clone(), packed);
            diff_ids.push(plain);
        }
        images.push((config, diff_ids));
    }
    Ok(Saved {
        images,
        compressed,
        spool,
    })
}

/// What `save_and_compress` gives, read from the engine's layer store instead (`layer_store`): each distinct layer
/// once, in image order, compressed into the spool as it is reassembled (big ones also sent to `stream`).
fn read_store(
    store: &crate::layer_store::Store,
    references: &[String],
    spool_parent: &Path,
    compression: Compression,
    stream: Option<Stream>,
) -> anyhow::Result<Saved> {
    let dir = spool_folder(spool_parent)?;
    let mut images = Vec::new();
    let mut compressed: HashMap<String, Blob> = HashMap::new();
    let mut plain: HashMap<String, Blob> = HashMap::new();
    let mut files = HashMap::new();
    for reference in references {
        let id = image_id(reference)?.ok_or_else(|| anyhow!("{reference} vanished"))?;
        let config = store.config(&id)?;
        let parsed: ImageConfig =
            serde_json::from_slice(&config).context("malformed image config")?;
        let chains = crate::layer_store::chain_ids(&parsed.rootfs.diff_ids);
        let mut diff_ids = Vec::new();
        for (diff_id, chain) in parsed.rootfs.diff_ids.iter().zip(&chains) {
            if !plain.contains_key(diff_id) {
                let (mut layer, size) = store.layer(chain)?;
                let file = dir.path().join(format!("layer-{}", files.len()));
                let mut out = Tee {
                    file: std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&file)?),
                    stream: stream.clone().filter(|_| size > IN_MEMORY),
                };
                out.send(Piece::Begin);
                let c = crate::compress::compress(compression, &mut layer, size, &mut out, 0)
                    .map_err(anyhow::Error::from)
                    .and_then(|c| {
                        out.flush()?;
                        if c.uncompressed.digest != *diff_id {
                            bail!(
                                "layer {diff_id} of {reference} reads back as {}",
                                c.uncompressed.digest
                            );
                        }
                        Ok(c)
                    });
                match c {
                    Ok(c) => {
                        out.send(Piece::End(c.compressed.clone()));
                        files.insert(c.compressed.digest.clone(), file);
                        compressed.insert(diff_id.clone(), c.compressed);
                        plain.insert(diff_id.clone(), c.uncompressed);
                    }
                    Err(e) => {
                        out.send(Piece::Abort);
                        return Err(e.context(format!("reading layer {diff_id} of {reference}")));
                    }
                }
            }
            diff_ids.push(plain[diff_id].clone());
        }
        images.push((config, diff_ids));
    }
    Ok(Saved {
        images,
        compressed,
        spool: Spool { files, _dir: dir },
    })
}

/// Reads a `docker save` stream: small files into memory, big ones compressed into `dir`.
fn read_save(
    save: impl Read,
    dir: &Path,
    compression: Compression,
    stream: Option<Stream>,
) -> anyhow::Result<HashMap<String, Entry>> {
    let mut archive = tar::Archive::new(save);
    let mut files = HashMap::new();
    for (n, entry) in archive.entries()?.enumerate() {
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
                let size = entry.header().size()?;
                if size <= IN_MEMORY {
                    let mut bytes = Vec::with_capacity(size as usize);
                    entry.read_to_end(&mut bytes)?;
                    files.insert(path, Entry::Small(bytes));
                } else {
                    let file = dir.join(format!("layer-{n}"));
                    let mut out = Tee {
                        file: std::io::BufWriter::with_capacity(
                            1 << 20,
                            std::fs::File::create(&file)?,
                        ),
                        stream: stream.clone(),
                    };
                    out.send(Piece::Begin);
                    let c = crate::compress::compress(compression, &mut entry, size, &mut out, 0)
                        .with_context(|| format!("compressing {path}"))
                        .and_then(|c| Ok((c, out.flush()?)));
                    match c {
                        Ok((c, ())) => {
                            out.send(Piece::End(c.compressed.clone()));
                            files.insert(path, Entry::Layer(c.uncompressed, c.compressed, file));
                        }
                        Err(e) => {
                            out.send(Piece::Abort);
                            return Err(e);
                        }
                    }
                }
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
                files.insert(path, Entry::Link(resolved));
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
    files: &'a HashMap<String, Entry>,
    path: &str,
) -> anyhow::Result<(String, &'a Entry)> {
    let mut p = path.to_owned();
    for _ in 0..16 {
        match files.get(&p) {
            Some(Entry::Link(t)) => p = t.clone(),
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

    fn amd64() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    #[test]
    fn manifest_is_deterministic_and_valid_json() {
        let gz = crate::compress::GZIP_LAYER;
        let a = build_manifest(&blob(1, 10), &[blob(2, 20), blob(3, 30)], gz);
        let b = build_manifest(&blob(1, 10), &[blob(2, 20), blob(3, 30)], gz);
        assert_eq!(a, b);
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_MANIFEST);
        assert_eq!(v["config"]["mediaType"], OCI_CONFIG);
        assert_eq!(v["config"]["size"], 10);
        assert_eq!(v["layers"][1]["digest"], blob(3, 30).digest);
        assert_eq!(v["layers"][0]["mediaType"], gz);
        // Layer order is part of the image.
        assert_ne!(
            a,
            build_manifest(&blob(1, 10), &[blob(3, 30), blob(2, 20)], gz)
        );
    }

    #[test]
    fn index_lists_every_platform() {
        let arm = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        let i = build_index(&[(blob(1, 100), amd64()), (blob(2, 200), arm)]);
        let v: serde_json::Value = serde_json::from_slice(&i).unwrap();
        assert_eq!(v["mediaType"], OCI_INDEX);
        assert_eq!(v["manifests"][0]["mediaType"], OCI_MANIFEST);
        assert_eq!(v["manifests"][0]["platform"]["architecture"], "amd64");
        assert_eq!(v["manifests"][0]["platform"]["os"], "linux");
        assert!(v["manifests"][0]["platform"].get("variant").is_none());
        assert_eq!(v["manifests"][1]["platform"]["variant"], "v8");
        assert_eq!(v["manifests"][1]["size"], 200);
        assert_eq!(v["manifests"][1]["digest"], blob(2, 200).digest);
    }

    #[test]
    fn reading_a_save_compresses_big_files_and_follows_links() {
        let big: Vec<u8> = (0..(IN_MEMORY + 10) as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut data = Vec::new();
        {
            let mut b = tar::Builder::new(&mut data);
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, "aa/layer.tar", &b"abc"[..]).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(big.len() as u64);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, "cc/layer.tar", &big[..]).unwrap();
            let mut l = tar::Header::new_gnu();
            l.set_entry_type(tar::EntryType::Symlink);
            l.set_size(0);
            b.append_link(&mut l, "bb/layer.tar", "../aa/layer.tar")
                .unwrap();
            b.finish().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let files = read_save(&data[..], dir.path(), Compression::Gzip, None).unwrap();
        let (p, f) = resolve(&files, "bb/layer.tar").unwrap();
        assert_eq!(p, "aa/layer.tar");
        assert!(matches!(f, Entry::Small(b) if b == b"abc"));
        let (_, f) = resolve(&files, "cc/layer.tar").unwrap();
        let Entry::Layer(plain, packed, path) = f else {
            panic!("big file not compressed")
        };
        assert_eq!(plain.digest, sha256_digest(&big));
        let gz = std::fs::read(path).unwrap();
        assert_eq!(packed.digest, sha256_digest(&gz));
        assert_eq!(packed.size, gz.len() as u64);
        assert!(packed.size < plain.size / 4);
    }
}
