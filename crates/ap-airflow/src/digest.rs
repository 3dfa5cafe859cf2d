//! Content digests, as the registry API and the image labels write them (lower-case hex sha256).

use anyhow::Context as _;
use sha2::Digest;
use std::path::Path;

/// The sha256 of a file, as lower-case hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}
