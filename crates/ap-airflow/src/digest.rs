//! Content digests, as the registry API and the image labels write them (lower-case hex sha256).

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use std::path::Path;

/// The sha256 of bytes, as lower-case hex (image labels, file names).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The registry API's digest of bytes: `sha256:<hex>`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// The sha256 of a file, as lower-case hex; read in a stream (root file system layers are hundreds of MB).
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}
