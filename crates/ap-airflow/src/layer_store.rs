//! The local engine's layer store, read the way the engine itself reads it for `docker save` and `docker push`.
//!
//! Docker 20.10's `docker save` first copies every layer of the images into a temporary folder and only then streams
//! the archive (about 10 s for a 1.4 GB image here, a second full copy on disk), so nothing can be compressed before
//! that copy ends. `docker push` does not wait: it rebuilds each layer's tar stream from the overlay2 `diff` folder
//! and the layer's tar-split metadata (`layerdb/sha256/<chain ID>/tar-split.json.gz`: the raw tar headers and
//! padding, and the name and size of each file's contents) and compresses it as it goes. This module does the same,
//! read-only. The stream is the layer's exact tar bytes: its SHA-256 must be the config's `diff_id` (`local` checks
//! it), and any problem (another storage driver, no permission, missing metadata) makes the caller use `docker save`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;

use crate::digest::sha256_digest;

/// `<DockerRootDir>`, with the overlay2 driver.
pub struct Store {
    root: PathBuf,
}

/// One line of tar-split metadata: a raw segment of the archive (type 2), or a file whose contents follow
/// (type 1, `size` bytes from the layer's `diff` folder).
#[derive(serde::Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    name_raw: Option<String>,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    payload: Option<String>,
}

fn b64(s: &str) -> anyhow::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| anyhow!("malformed tar-split payload"))
}

impl Store {
    /// The engine's store, when it is overlay2 and this process may read it.
    pub fn open() -> anyhow::Result<Store> {
        let out = Command::new(crate::docker::docker_program())
            .args(["info", "--format", "{{.DockerRootDir}} {{.Driver}}"])
            .stdin(Stdio::null())
            .output()
            .context("cannot run docker info")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut f = text.split_whitespace();
        let (Some(root), Some(driver)) = (f.next(), f.next()) else {
            bail!("docker info names no storage");
        };
        if driver != "overlay2" {
            bail!("the engine's storage driver is {driver}, not overlay2");
        }
        let store = Store {
            root: PathBuf::from(root),
        };
        let probe = store.layerdb();
        std::fs::read_dir(&probe).with_context(|| format!("cannot read {}", probe.display()))?;
        Ok(store)
    }

    fn layerdb(&self) -> PathBuf {
        self.root.join("image/overlay2/layerdb/sha256")
    }

    /// The config of image `id`, byte for byte (checked against the ID).
    pub fn config(&self, id: &str) -> anyhow::Result<Vec<u8>> {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        let path = self
            .root
            .join("image/overlay2/imagedb/content/sha256")
            .join(hex);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if sha256_digest(&bytes) != id {
            bail!("{} does not hash to {id}", path.display());
        }
        Ok(bytes)
    }

    /// The layer whose chain ID is `chain_id` as a tar stream, with its length.
    pub fn layer(&self, chain_id: &str) -> anyhow::Result<(LayerStream, u64)> {
        let dir = self
            .layerdb()
            .join(chain_id.strip_prefix("sha256:").unwrap_or(chain_id));
        let cache_id = std::fs::read_to_string(dir.join("cache-id"))
            .with_context(|| format!("cannot read {}", dir.join("cache-id").display()))?;
        let diff = self
            .root
            .join("overlay2")
            .join(cache_id.trim())
            .join("diff");
        if !diff.is_dir() {
            bail!("{} is missing", diff.display());
        }
        let meta = dir.join("tar-split.json.gz");
        // The stream's length, which the compressor wants up front: every segment and every file's size.
        let mut size = 0u64;
        for e in entries(&meta)? {
            let e = e?;
            size += match e.kind {
                2 => b64(e.payload.as_deref().unwrap_or(""))?.len() as u64,
                _ => e.size,
            };
        }
        Ok((
            LayerStream {
                entries: Box::new(entries(&meta)?),
                diff,
                current: Current::Bytes(Vec::new(), 0),
            },
            size,
        ))
    }
}

fn entries(meta: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Entry>>> {
    let file = File::open(meta).with_context(|| format!("cannot read {}", meta.display()))?;
    let lines = BufReader::new(flate2::read::GzDecoder::new(file)).lines();
    Ok(lines.map(|l| {
        let l = l.context("reading tar-split metadata")?;
        serde_json::from_str::<Entry>(&l).context("malformed tar-split metadata")
    }))
}

/// The chain IDs of a config's `diff_ids`, as the layer store names layers: the first is its diff ID, each next
/// one is the SHA-256 of "<previous chain ID> <diff ID>".
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

enum Current {
    Bytes(Vec<u8>, usize),
    File(std::io::Take<File>),
}

/// A layer's tar bytes, reassembled: raw segments from the metadata, file contents from the `diff` folder.
pub struct LayerStream {
    entries: Box<dyn Iterator<Item = anyhow::Result<Entry>> + Send>,
    diff: PathBuf,
    current: Current,
}

impl LayerStream {
    /// Moves to the next entry; false at the end.
    fn advance(&mut self) -> anyhow::Result<bool> {
        let Some(e) = self.entries.next() else {
            return Ok(false);
        };
        let e = e?;
        self.current = match e.kind {
            2 => Current::Bytes(b64(e.payload.as_deref().unwrap_or(""))?, 0),
            1 if e.size == 0 => Current::Bytes(Vec::new(), 0),
            1 => {
                let name = match (&e.name_raw, &e.name) {
                    (Some(raw), _) => {
                        use std::os::unix::ffi::OsStrExt as _;
                        PathBuf::from(std::ffi::OsStr::from_bytes(&b64(raw)?))
                    }
                    (None, Some(n)) => PathBuf::from(n),
                    (None, None) => bail!("a tar-split file entry without a name"),
                };
                if name
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
                {
                    bail!("unsafe path {} in tar-split metadata", name.display());
                }
                let path = self.diff.join(&name);
                let file =
                    File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
                Current::File(file.take(e.size))
            }
            k => bail!("unknown tar-split entry type {k}"),
        };
        Ok(true)
    }
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = match &mut self.current {
                Current::Bytes(b, pos) => {
                    let n = buf.len().min(b.len() - *pos);
                    buf[..n].copy_from_slice(&b[*pos..*pos + n]);
                    *pos += n;
                    n
                }
                Current::File(f) => f.read(buf)?,
            };
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            if !self.advance().map_err(std::io::Error::other)? {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let ids = chain_ids(&[d('a'), d('b')]);
        assert_eq!(ids[0], d('a'));
        assert_eq!(
            ids[1],
            sha256_digest(format!("{} {}", d('a'), d('b')).as_bytes())
        );
    }

    /// A layer reassembled from hand-written tar-split metadata and a diff folder gives the original tar bytes.
    #[test]
    fn a_layer_is_reassembled_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let diff = dir.path().join("diff");
        std::fs::create_dir_all(diff.join("etc")).unwrap();
        std::fs::write(diff.join("etc/hello"), b"hello, world\n").unwrap();
        let mut tar = Vec::new();
        {
            let mut b = tar::Builder::new(&mut tar);
            let mut h = tar::Header::new_gnu();
            h.set_size(13);
            h.set_mode(0o644);
            b.append_data(&mut h, "etc/hello", &b"hello, world\n"[..])
                .unwrap();
            b.finish().unwrap();
        }
        // Header (512), contents (13), padding and the end (the rest), as tar-split records them.
        let enc = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let lines = [
            format!(
                r#"{{"type":2,"payload":"{}","position":0}}"#,
                enc(&tar[..512])
            ),
            r#"{"type":1,"name":"etc/hello","size":13,"payload":"AAAAAAAAAAA=","position":1}"#
                .into(),
            format!(
                r#"{{"type":2,"payload":"{}","position":2}}"#,
                enc(&tar[525..])
            ),
        ];
        let meta = dir.path().join("tar-split.json.gz");
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&meta).unwrap(),
            flate2::Compression::default(),
        );
        std::io::Write::write_all(&mut gz, lines.join("\n").as_bytes()).unwrap();
        gz.finish().unwrap();
        let mut s = LayerStream {
            entries: Box::new(entries(&meta).unwrap()),
            diff,
            current: Current::Bytes(Vec::new(), 0),
        };
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        assert_eq!(back, tar);
    }
}
