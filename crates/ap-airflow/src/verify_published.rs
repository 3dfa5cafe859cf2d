//! `ap-airflow verify-published REPO:TAG --key PUB.pem`: checks, in the registry, that the digest the tag points at
//! carries a cosign signature by that key (`sha256-<hex>.sig`, as `cosign verify --key` checks it: the payload names
//! the digest, the signature over the payload verifies) and an attached SPDX SBOM whose subject is that digest
//! (`sha256-<hex>.sbom`).

use std::process::ExitCode;

use anyhow::{anyhow, Context as _};

use crate::attach::{self, Verifier};
use crate::registry::{Client, RegistryArgs, Repository};
use crate::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `registry/repository:tag` (or `@sha256:…`).
    pub reference: String,
    /// The signer's public key (PEM, ECDSA P-256), as for `cosign verify --key`.
    #[arg(long, value_name = "PUB.pem")]
    pub key: std::path::PathBuf,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `repo:tag` or `repo@digest` → (repository, tag or digest).
pub fn split_reference(reference: &str) -> anyhow::Result<(Repository, String)> {
    let (repo, what) = match reference.split_once('@') {
        Some((r, d)) => (r, d.to_owned()),
        None => {
            let slash = reference.rfind('/').map_or(0, |i| i + 1);
            let colon = reference[slash..]
                .rfind(':')
                .map(|i| i + slash)
                .ok_or_else(|| {
                    anyhow!("{reference}: give repository:tag or repository@sha256:…")
                })?;
            (&reference[..colon], reference[colon + 1..].to_owned())
        }
    };
    Ok((Repository::parse(repo)?, what))
}

pub struct Report {
    pub digest: String,
    pub lines: Vec<String>,
    pub ok: bool,
}

/// Checks signature and SBOM of what `what` (tag or digest) points at in `repo`.
pub fn check(
    client: &mut Client,
    repo: &Repository,
    what: &str,
    verifier: &Verifier,
) -> anyhow::Result<Report> {
    let top = client
        .get_manifest(&repo.name, what)?
        .ok_or_else(|| anyhow!("{repo}:{what} does not exist"))?;
    let digest = top.digest.clone();
    let mut lines = Vec::new();
    let mut ok = true;
    let sig_tag = attach::cosign_tag(&digest, ".sig");
    let mut signed = false;
    if let Some(m) = client.get_manifest(&repo.name, &sig_tag)? {
        for l in attach::sig_layers(&m.bytes) {
            let Some(payload) = client.get_blob(&repo.name, &l.blob.digest, 1 << 20)? else {
                continue;
            };
            if attach::payload_names(&payload, &digest) && verifier.verify(&payload, &l.signature) {
                signed = true;
                break;
            }
        }
    }
    if signed {
        lines.push(format!(
            "signature: ok ({repo}:{sig_tag}, verified with the key)"
        ));
    } else {
        ok = false;
        lines.push(format!(
            "signature: MISSING or not by this key ({repo}:{sig_tag})"
        ));
    }
    let sbom_tag = attach::cosign_tag(&digest, ".sbom");
    match sbom_of(client, repo, &digest)? {
        Ok(what) => lines.push(format!("sbom: ok ({repo}:{sbom_tag}, SPDX 2.3, {what})")),
        Err(e) => {
            ok = false;
            lines.push(format!("sbom: {e} ({repo}:{sbom_tag})"));
        }
    }
    // An index: every platform's manifest carries its own SBOM too (publish attaches one per platform).
    #[derive(serde::Deserialize)]
    struct Entry {
        digest: String,
        platform: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Entry>,
    }
    let index: Index = serde_json::from_slice(&top.bytes).unwrap_or(Index {
        manifests: Vec::new(),
    });
    for m in index.manifests {
        let p = m.platform.unwrap_or_default();
        let (os, arch) = (
            p["os"].as_str().unwrap_or("?"),
            p["architecture"].as_str().unwrap_or("?"),
        );
        if os == "unknown" {
            continue; // an attestation, not an image
        }
        let tag = attach::cosign_tag(&m.digest, ".sbom");
        match sbom_of(client, repo, &m.digest)? {
            Ok(what) => lines.push(format!("sbom {os}/{arch}: ok ({repo}:{tag}, {what})")),
            Err(e) => {
                ok = false;
                lines.push(format!("sbom {os}/{arch}: {e} ({repo}:{tag})"));
            }
        }
    }
    Ok(Report { digest, lines, ok })
}

/// The SPDX 2.3 SBOM attached to `digest` (cosign's `.sbom` tag), whose subject must be that digest: Ok with a
/// summary, or Err with what is wrong.
fn sbom_of(
    client: &mut Client,
    repo: &Repository,
    digest: &str,
) -> anyhow::Result<Result<String, String>> {
    let sbom_tag = attach::cosign_tag(digest, ".sbom");
    Ok(match client.get_manifest(&repo.name, &sbom_tag)? {
        None => Err("no SBOM attached".to_owned()),
        Some(m) => {
            let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap_or_default();
            let layer = v["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["mediaType"] == crate::sbom::SPDX_MEDIA_TYPE)
                .and_then(|l| l["digest"].as_str().map(String::from));
            match layer {
                None => Err("the .sbom manifest has no SPDX layer".into()),
                Some(d) => match client.get_blob(&repo.name, &d, 256 << 20)? {
                    None => Err(format!("the SBOM blob {d} is missing")),
                    Some(bytes) => {
                        let doc: serde_json::Value =
                            serde_json::from_slice(&bytes).unwrap_or_default();
                        let hex = digest.trim_start_matches("sha256:");
                        let subject = doc["packages"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|p| p["checksums"][0]["checksumValue"] == hex);
                        let images = doc["packages"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|p| p["primaryPackagePurpose"] == "CONTAINER")
                            .count();
                        let n = doc["packages"].as_array().map_or(0, |p| p.len());
                        if doc["spdxVersion"] != "SPDX-2.3" {
                            Err("the SBOM is not an SPDX 2.3 document".into())
                        } else if !subject {
                            Err("the SBOM describes another image".into())
                        } else {
                            Ok(format!("{} packages", n.saturating_sub(images)))
                        }
                    }
                },
            }
        }
    })
}

pub fn run(_ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let (repo, what) = split_reference(&args.reference)?;
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("cannot read {}", args.key.display()))?;
    let verifier = Verifier::from_pem(&pem).with_context(|| args.key.display().to_string())?;
    let mut client = Client::connect(&repo, &args.registry.options())?;
    let report = check(&mut client, &repo, &what, &verifier)?;
    println!("{}: {}", args.reference, report.digest);
    for l in &report.lines {
        println!("  {l}");
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let (r, t) = split_reference("127.0.0.1:5000/a/b:2.10.5-1-bookworm").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.name.as_str(), t.as_str()),
            ("127.0.0.1:5000", "a/b", "2.10.5-1-bookworm")
        );
        let (r, t) = split_reference("quay.io/a/b@sha256:abc").unwrap();
        assert_eq!((r.name.as_str(), t.as_str()), ("a/b", "sha256:abc"));
        assert!(split_reference("127.0.0.1:5000/a/b").is_err());
    }
}
