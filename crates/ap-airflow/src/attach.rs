//! What `publish` attaches to the digest an immutable tag points at (the image index), and how it is read back:
//!
//! * **SBOM** — an OCI artifact manifest (`artifactType: application/spdx+json`, empty config, one
//!   `text/spdx+json` layer, `subject` = the index), put by digest (registries with the OCI 1.1 referrers API index
//!   it through `subject` and answer `OCI-Subject`) and always also under cosign's tag `sha256-<hex>.sbom`, as
//!   `cosign attach sbom` does, so every registry and cosign find it.
//! * **Signature** — exactly cosign's `cosign sign --key` format: a simple-signing payload
//!   (`critical.image.docker-manifest-digest`, `critical.identity.docker-reference`, `critical.type`) as a layer of
//!   media type `application/vnd.dev.cosign.simplesigning.v1+json`, the base64 DER ECDSA P-256/SHA-256 signature in
//!   its `dev.cosignproject.cosign/signature` annotation, in an OCI manifest under tag `sha256-<hex>.sig`. Existing
//!   signatures there (other keys) are kept: ours is appended, as cosign does.

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};
use serde_json::{json, Value};

use crate::digest::sha256_digest;
use crate::local::{Blob, OCI_CONFIG, OCI_MANIFEST};

pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const EMPTY_CONFIG_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONFIG: &[u8] = b"{}";
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

fn blob_of(bytes: &[u8]) -> Blob {
    Blob {
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
    }
}

/// `sha256:abc…` → `sha256-abc…<suffix>` (cosign's tag scheme).
pub fn cosign_tag(digest: &str, suffix: &str) -> String {
    format!("{}{suffix}", digest.replacen(':', "-", 1))
}

/// An artifact ready to push: blobs (with their bytes) and the manifest naming them.
pub struct Artifact {
    pub blobs: Vec<(Blob, Vec<u8>)>,
    pub manifest: Vec<u8>,
}

impl Artifact {
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }
}

/// The SBOM artifact for `subject` (the index, or the manifest an older publish left: digest, size, media type).
pub fn sbom_artifact(sbom: &[u8], subject: &Blob, subject_type: &str) -> Artifact {
    let (config, layer) = (blob_of(EMPTY_CONFIG), blob_of(sbom));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": crate::sbom::SPDX_ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_CONFIG_TYPE, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": crate::sbom::SPDX_MEDIA_TYPE, "digest": layer.digest, "size": layer.size}],
        "subject": {"mediaType": subject_type, "digest": subject.digest, "size": subject.size},
    });
    Artifact {
        blobs: vec![(config, EMPTY_CONFIG.to_vec()), (layer, sbom.to_vec())],
        manifest: serde_json::to_vec(&manifest).expect("JSON values serialise"),
    }
}

/// cosign's simple-signing payload for `digest` in `docker_reference` (the repository, no tag).
pub fn payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    // Field order as cosign writes it; the signature covers these exact bytes.
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":{}}},"image":{{"docker-manifest-digest":{}}},"type":"{SIGNATURE_TYPE}"}},"optional":null}}"#,
        serde_json::to_string(docker_reference).expect("a string serialises"),
        serde_json::to_string(digest).expect("a string serialises"),
    )
    .into_bytes()
}

/// The body of the first PEM block labelled `label`.
fn pem_block(pem: &str, label: &str) -> anyhow::Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .ok_or_else(|| anyhow!("no \"{begin}\" block"))?
        + begin.len();
    let stop = pem[start..]
        .find(&end)
        .ok_or_else(|| anyhow!("no \"{end}\" line"))?
        + start;
    let b64: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| anyhow!("the {label} block is not base64"))
}

pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Signer {
    /// A PKCS#8 PEM ECDSA P-256 private key (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`).
    pub fn from_pem(pem: &str) -> anyhow::Result<Signer> {
        if pem.contains("ENCRYPTED") {
            bail!(
                "the signing key is encrypted; give an unencrypted PKCS#8 PEM (BEGIN PRIVATE KEY)"
            );
        }
        let der = pem_block(pem, "PRIVATE KEY")?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &der, &rng)
            .map_err(|e| anyhow!("not a PKCS#8 ECDSA P-256 private key ({e})"))?;
        Ok(Signer { key, rng })
    }

    /// `--sign-key`: a file, or (from the environment, for CI secrets) the PEM itself.
    pub fn load(key: &str) -> anyhow::Result<Signer> {
        let pem = if key.trim_start().starts_with("-----BEGIN") {
            key.to_owned()
        } else {
            std::fs::read_to_string(key)
                .with_context(|| format!("cannot read signing key {key}"))?
        };
        Self::from_pem(&pem).context("signing key")
    }

    /// Base64 of the DER signature of `payload`.
    pub fn sign(&self, payload: &[u8]) -> anyhow::Result<String> {
        let sig = self
            .key
            .sign(&self.rng, payload)
            .map_err(|_| anyhow!("signing failed"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sig.as_ref()))
    }

    pub fn verifier(&self) -> Verifier {
        Verifier {
            point: self.key.public_key().as_ref().to_vec(),
        }
    }
}

/// An ECDSA P-256 public key.
pub struct Verifier {
    point: Vec<u8>,
}

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, uncompressed point follows).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl Verifier {
    /// A PEM public key (`openssl pkey -pubout`, or cosign's `cosign.pub`).
    pub fn from_pem(pem: &str) -> anyhow::Result<Verifier> {
        let der = pem_block(pem, "PUBLIC KEY")?;
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 4 => Ok(Verifier {
                point: point.to_vec(),
            }),
            _ => bail!("not an ECDSA P-256 public key"),
        }
    }

    pub fn verify(&self, payload: &[u8], signature_b64: &str) -> bool {
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()) else {
            return false;
        };
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(payload, &sig)
            .is_ok()
    }
}

/// One signature layer of a `.sig` manifest.
#[derive(Debug, Clone)]
pub struct SigLayer {
    pub blob: Blob,
    pub signature: String,
}

/// The simple-signing layers of a `.sig` manifest.
pub fn sig_layers(manifest: &[u8]) -> Vec<SigLayer> {
    let v: Value = serde_json::from_slice(manifest).unwrap_or_default();
    v["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["mediaType"] == SIMPLESIGNING)
        .filter_map(|l| {
            Some(SigLayer {
                blob: Blob {
                    digest: l["digest"].as_str()?.to_owned(),
                    size: l["size"].as_u64()?,
                },
                signature: l["annotations"][SIGNATURE_ANNOTATION].as_str()?.to_owned(),
            })
        })
        .collect()
}

/// A `.sig` manifest over `layers` (cosign's layout: an OCI config whose diff_ids are the payload digests).
pub fn signature_artifact(layers: &[SigLayer], payloads: Vec<(Blob, Vec<u8>)>) -> Artifact {
    let config = json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.blob.digest.clone()).collect::<Vec<_>>()},
    });
    let config = serde_json::to_vec(&config).expect("JSON values serialise");
    let cblob = blob_of(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": cblob.size, "digest": cblob.digest},
        "layers": layers.iter().map(|l| json!({
            "mediaType": SIMPLESIGNING,
            "size": l.blob.size,
            "digest": l.blob.digest,
            "annotations": {SIGNATURE_ANNOTATION: l.signature},
        })).collect::<Vec<_>>(),
    });
    let mut blobs = vec![(cblob, config)];
    blobs.extend(payloads);
    Artifact {
        blobs,
        manifest: serde_json::to_vec(&manifest).expect("JSON values serialise"),
    }
}

/// Checks a payload: it names `digest` and is a cosign container image signature.
pub fn payload_names(payload: &[u8], digest: &str) -> bool {
    let v: Value = serde_json::from_slice(payload).unwrap_or_default();
    v["critical"]["image"]["docker-manifest-digest"] == digest
        && v["critical"]["type"] == SIGNATURE_TYPE
}

pub fn new_signature(
    signer: &Signer,
    docker_reference: &str,
    digest: &str,
) -> anyhow::Result<(SigLayer, (Blob, Vec<u8>))> {
    let p = payload(docker_reference, digest);
    let blob = blob_of(&p);
    let signature = signer.sign(&p)?;
    Ok((
        SigLayer {
            blob: blob.clone(),
            signature,
        },
        (blob, p),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway key made by `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`.
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNhG/EfFBELhZkGsG
9m5Z0tI9OgnUabNFiyRAi+BXdsuhRANCAAQsrdhLjdW+c7TfRS3GaoJtG7y08xbT
Tux5J/OrXpbDBtcc32UEhvFTyieljcHnUXp5D1sjiF69vZDeyODJSyB5
-----END PRIVATE KEY-----
";

    #[test]
    fn payload_is_cosigns() {
        let p = payload("127.0.0.1:5000/a/b", "sha256:abc");
        let v: Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(
            v["critical"]["identity"]["docker-reference"],
            "127.0.0.1:5000/a/b"
        );
        assert_eq!(
            v["critical"]["image"]["docker-manifest-digest"],
            "sha256:abc"
        );
        assert_eq!(v["critical"]["type"], "cosign container image signature");
        assert!(v["optional"].is_null());
        assert!(payload_names(&p, "sha256:abc"));
        assert!(!payload_names(&p, "sha256:abd"));
        assert_eq!(cosign_tag("sha256:abc", ".sig"), "sha256-abc.sig");
    }

    #[test]
    fn sign_and_verify() {
        let s = Signer::from_pem(KEY).unwrap();
        let sig = s.sign(b"hello").unwrap();
        let v = s.verifier();
        assert!(v.verify(b"hello", &sig));
        assert!(!v.verify(b"hellO", &sig));
        assert!(!v.verify(b"hello", "not base64!"));
        assert!(Signer::from_pem("-----BEGIN ENCRYPTED PRIVATE KEY-----\n").is_err());
        assert!(Verifier::from_pem("nothing").is_err());
    }

    #[test]
    fn signature_manifest_layout() {
        let s = Signer::from_pem(KEY).unwrap();
        let (layer, payload) = new_signature(&s, "r/a", "sha256:abc").unwrap();
        let a = signature_artifact(std::slice::from_ref(&layer), vec![payload]);
        let v: Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(v["layers"][0]["mediaType"], SIMPLESIGNING);
        assert_eq!(v["config"]["mediaType"], OCI_CONFIG);
        let layers = sig_layers(&a.manifest);
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].blob, layer.blob);
        assert_eq!(a.blobs.len(), 2);
    }
}
