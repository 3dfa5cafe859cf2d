//! `ap-airflow publish`: pushes a release line's images to registries, keeping the tag promise.
//!
//! Rules (docs/publishing.md):
//! * an immutable tag is written once; present with the same digest → skipped; with another digest → the whole
//!   repository is refused (nothing written there) and the run exits non-zero;
//! * a floating tag moves when this run newly wrote the immutable tag, with `--move-floating`, or to complete an
//!   interrupted publish (immutable tag already ours, floating tag elsewhere, and ours the newest build of the line
//!   in that repository); never while a higher build of the line is in the repository;
//! * `--dev`: immutable and CI tags only, no floating tag is ever touched;
//! * every tag of a flavour points at one OCI image index over every platform built locally (`<tag>` for the native
//!   architecture, `<tag>-<arch>` for another; `platform::Platform::local_tag`), the index being the tag's image;
//! * order per flavour: blobs, per-platform manifests (by digest), the image index under the immutable tag, CI tag,
//!   floating tag — a failure leaves at worst an immutable tag without its floating move, which the completion rule
//!   finishes on retry.
//!
//! "Same image" is decided on image IDs (config digests), not on manifest digests: the config lists the digest of
//! every uncompressed layer, so a tag whose manifests name the same configs holds the same image however its layers
//! were compressed (an older uncompressed publish, another compressor build). Such a tag is never refused nor
//! rewritten, and the CI and floating tags of a flavour receive the exact bytes its immutable tag holds.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;

use crate::compress::Compression;
use crate::local::{Blob, IndexedImage, Piece, Source};
use crate::platform::Platform as Arch;
use crate::registry::client::{Client, Manifest, Mount, Options};
use crate::registry::{RegistryArgs, Repository};
use crate::release::{Flavour, Release};
use crate::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Release line, e.g. 2.10.5-1 (default: the newest in the release file).
    pub release: Option<String>,
    /// Target repository, e.g. quay.io/astronomer/ap-airflow (repeat for several).
    #[arg(long = "to", value_name = "REPO", required = true)]
    pub to: Vec<String>,
    /// The --to repositories are dev repositories: immutable and CI tags only, floating tags untouched.
    #[arg(long)]
    pub dev: bool,
    /// CI build number: also tag `<floating>-<B>`.
    #[arg(long)]
    pub build_number: Option<u64>,
    /// Print the exact actions and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Move floating tags to this build even when its immutable tags were already published.
    #[arg(long)]
    pub move_floating: bool,
    /// Local repository the images are read from (default: the release file's `repository`).
    #[arg(long, visible_alias = "from", value_name = "REPO")]
    pub source_repository: Option<String>,
    /// Folder for the compressed layers while they are uploaded (default: the system temp folder).
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Layer compression.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: Compression,
    /// Sign the digest each immutable tag points at (the index) as `cosign sign --key` does: a PKCS#8 PEM ECDSA
    /// P-256 private key. From the environment, AP_AIRFLOW_SIGN_KEY may hold the path or the PEM itself.
    #[arg(
        long,
        value_name = "KEY.pem",
        env = "AP_AIRFLOW_SIGN_KEY",
        hide_env_values = true
    )]
    pub sign_key: Option<String>,
    /// Attach no SBOM (the SBOM probe needs /bin/sh in the image).
    #[arg(long, env = "AP_AIRFLOW_NO_SBOM")]
    pub no_sbom: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

// ---------------------------------------------------------------------------------------------------------------
// The planner (pure) lives in `plan`; what follows acts on its steps.

mod plan;

pub use plan::{plan, Action, Have, Policy, Step, TagKind, Want};

// ---------------------------------------------------------------------------------------------------------------
// Execution.

/// One row of the final table.
struct Row {
    repo: String,
    tag: String,
    digest: String,
    action: String,
}

/// What a tag is made to point at: the top manifest (an index, or a single manifest for images published before
/// indexes) and the per-platform manifests it names, with every blob they reference.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub top: Manifest,
    pub children: Vec<Manifest>,
    /// Config and layer blobs of every platform.
    pub blobs: Vec<Blob>,
}

impl Bundle {
    pub fn local(image: &IndexedImage) -> Bundle {
        let mut blobs = Vec::new();
        for i in &image.images {
            for b in i.layers.iter().chain([&i.config_blob]) {
                if !blobs.contains(b) {
                    blobs.push(b.clone());
                }
            }
        }
        Bundle {
            top: Manifest {
                bytes: image.index.clone(),
                media_type: crate::local::OCI_INDEX.into(),
                digest: image.digest.clone(),
            },
            children: image
                .images
                .iter()
                .map(|i| Manifest {
                    bytes: i.manifest.clone(),
                    media_type: crate::local::OCI_MANIFEST.into(),
                    digest: i.digest.clone(),
                })
                .collect(),
            blobs,
        }
    }
}

#[derive(serde::Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    platform: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct ManifestJson {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

fn is_index(m: &Manifest) -> bool {
    m.media_type.contains("index") || m.media_type.contains("manifest.list")
}

/// Reads what a tag points at, with its per-platform manifests: its identity (sorted image IDs) and its bundle.
pub fn read_remote(
    client: &mut Client,
    repo: &str,
    top: Manifest,
) -> anyhow::Result<(String, Bundle)> {
    let parsed = |m: &Manifest| -> anyhow::Result<ManifestJson> {
        serde_json::from_slice(&m.bytes)
            .map_err(|e| anyhow::anyhow!("malformed manifest {} in {repo}: {e}", m.digest))
    };
    let mut children = Vec::new();
    let mut ids = Vec::new();
    let mut blobs = Vec::new();
    let mut add_blobs = |m: &ManifestJson, ids: &mut Vec<String>| {
        if let Some(c) = &m.config {
            ids.push(c.digest.clone());
        }
        for d in m.config.iter().chain(&m.layers) {
            let b = Blob {
                digest: d.digest.clone(),
                size: d.size,
            };
            if !blobs.contains(&b) {
                blobs.push(b);
            }
        }
    };
    if is_index(&top) {
        for d in parsed(&top)?.manifests {
            let child = client.get_manifest(repo, &d.digest)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "{repo}: index {} names a missing manifest {}",
                    top.digest,
                    d.digest
                )
            })?;
            let attestation = d
                .platform
                .as_ref()
                .and_then(|p| p.get("os"))
                .and_then(|o| o.as_str())
                == Some("unknown");
            let mut child_ids = Vec::new();
            add_blobs(&parsed(&child)?, &mut child_ids);
            if !attestation {
                ids.extend(child_ids);
            }
            children.push(child);
        }
    } else {
        add_blobs(&parsed(&top)?, &mut ids);
    }
    ids.sort();
    Ok((
        ids.join(","),
        Bundle {
            top,
            children,
            blobs,
        },
    ))
}

/// What a repository holds for the wanted flavours, read before anything is written anywhere.
pub struct Gathered {
    pub tags: Vec<String>,
    pub haves: Vec<Have>,
    /// Per flavour: what its immutable tag holds now, when it does.
    pub remote_immutable: Vec<Option<Bundle>>,
}

/// Reads a repository's tags and what the line's tags point at (read-only).
pub fn gather_haves(
    client: &mut Client,
    repo: &Repository,
    wants: &[Want],
) -> anyhow::Result<Gathered> {
    let tags = client.list_tags(&repo.name)?;
    let mut haves = Vec::new();
    let mut remote_immutable: Vec<Option<Bundle>> = Vec::new();
    for w in wants {
        let has = |t: &str| tags.iter().any(|x| x == t);
        let read = |client: &mut Client, t: &str| -> anyhow::Result<Option<(String, Bundle)>> {
            if !has(t) {
                return Ok(None);
            }
            match client.get_manifest(&repo.name, t)? {
                Some(m) => Ok(Some(read_remote(client, &repo.name, m)?)),
                None => Ok(None),
            }
        };
        let immutable = read(client, &w.immutable)?;
        let floating = read(client, &w.floating)?;
        let ci = match &w.ci {
            Some(t) => read(client, t)?,
            None => None,
        };
        let mut h = Have {
            immutable: immutable.as_ref().map(|(i, _)| i.clone()),
            floating: floating.as_ref().map(|(i, _)| i.clone()),
            ci: ci.map(|(i, _)| i),
            highest_build: w.scheme.builds_in(&tags, w.flavour).into_iter().max(),
            floating_build: None,
        };
        if h.floating.is_some() && h.floating != Some(w.identity.clone()) && h.immutable.is_some() {
            // Which older build is the floating tag at? Only needed to recognise an interrupted publish.
            let fdigest = floating.as_ref().map(|(_, b)| b.top.digest.clone());
            let mut older = w.scheme.builds_in(&tags, w.flavour);
            older.retain(|&n| n < w.build);
            older.sort_unstable_by(|a, b| b.cmp(a));
            for n in older {
                let tag = w.scheme.immutable(n, w.flavour);
                if client.manifest_digest(&repo.name, &tag)? == fdigest {
                    h.floating_build = Some(n);
                    break;
                }
            }
        }
        haves.push(h);
        remote_immutable.push(immutable.map(|(_, b)| b));
    }
    Ok(Gathered {
        tags,
        haves,
        remote_immutable,
    })
}

struct Run<'a> {
    dry_run: bool,
    ctx: &'a Context,
    release: String,
    no_sbom: bool,
    signer: Option<crate::attach::Signer>,
    /// SBOM documents by subject digest, made once per run.
    sboms: HashMap<String, Vec<u8>>,
    /// Probe results by image ID, each image probed once per run.
    probes: HashMap<String, crate::sbom::Probed>,
    /// Per registry and subject digest: a repository holding its `.sbom` artifact (copied, not remade, elsewhere).
    sbom_held: HashMap<(String, String), String>,
    opts: crate::registry::Options,
    clients: HashMap<String, Client>,
    /// Per registry: blob digest → a repository that holds it (seen or pushed this run), for cross-repo mounts.
    known: HashMap<String, HashMap<String, String>>,
    /// Per registry and identity: a bundle some repository of that registry holds (seen or written this run). A new
    /// repository of the same registry gets the very same manifests, its blobs mounted.
    held: HashMap<(String, String), Bundle>,
    rows: Vec<Row>,
    problems: Vec<String>,
    images: &'a BTreeMap<Flavour, IndexedImage>,
    source: &'a Source,
    /// Per repository: the layers uploaded while they compressed.
    streamed: HashMap<String, Vec<Blob>>,
}

fn human(bytes: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn say(line: &str) {
    eprintln!("{line}");
}

/// The client of `repo`'s registry, connected on first use.
fn client<'c>(
    clients: &'c mut HashMap<String, Client>,
    repo: &Repository,
    opts: &Options,
) -> anyhow::Result<&'c mut Client> {
    if !clients.contains_key(&repo.registry) {
        let c = Client::connect(repo, opts)?;
        clients.insert(repo.registry.clone(), c);
    }
    Ok(clients.get_mut(&repo.registry).expect("inserted above"))
}

/// An error with its causes, on one line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// What an SBOM describes: a flavour's index (with its platform manifests and the local image each one is), or one
/// platform's manifest (the local image's index in the flavour).
enum SbomOf<'t> {
    Index(Flavour, &'t str, Vec<(String, usize)>),
    Platform(Flavour, usize, &'t str),
}

impl SbomOf<'_> {
    fn what(&self, run: &Run) -> String {
        match self {
            SbomOf::Index(_, _, children) if children.len() > 1 => {
                format!("the index, {} platforms", children.len())
            }
            SbomOf::Index(..) => "the index".into(),
            SbomOf::Platform(f, i, _) => run.images[f].images[*i].platform.to_string(),
        }
    }
}

impl Run<'_> {
    fn client(&mut self, repo: &Repository) -> anyhow::Result<&mut Client> {
        client(&mut self.clients, repo, &self.opts)
    }

    fn publish_repo(
        &mut self,
        repo: &Repository,
        wants: &[Want],
        gathered: Gathered,
        policy: Policy,
    ) -> anyhow::Result<()> {
        let dry = self.dry_run;
        let client = self.client(repo)?;
        say(&format!("==> {repo} ({})", client.base_url()));
        let Gathered {
            tags,
            haves,
            remote_immutable,
        } = gathered;
        let steps = plan(wants, &haves, policy);
        let refused = steps
            .iter()
            .any(|s| matches!(s.action, Action::Refuse { .. }));
        if refused {
            let first = steps
                .iter()
                .find_map(|s| match &s.action {
                    Action::Refuse {
                        reason,
                        cascaded: false,
                    } => Some(reason.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            say(&format!("  refused: {first}; nothing written to {repo}"));
            self.problems.push(format!("refused {repo}: {first}"));
        }
        // Per flavour: the bundle its tags get in this repository.
        let mut targets: HashMap<Flavour, Bundle> = HashMap::new();
        for s in &steps {
            let fi = wants
                .iter()
                .position(|w| w.flavour == s.flavour)
                .expect("a step of a want");
            let mut digest = self.images[&s.flavour].digest.clone();
            let action = match &s.action {
                Action::Refuse { .. } => "refused".to_owned(),
                Action::Skip(why) => {
                    say(&format!("  skip {}: {why}", s.tag));
                    if s.kind == TagKind::Immutable {
                        if let Some(b) = &remote_immutable[fi] {
                            // The registry holds this image here: its blobs can be mounted into other repositories.
                            self.remember(repo, &s.identity, b);
                            targets.insert(s.flavour, b.clone());
                            digest = b.top.digest.clone();
                            // A previous run may have stopped before its attachments: they are completed here.
                            self.attach(repo, s.flavour, b, &s.tag, &tags)?;
                        }
                    } else if let Some(t) = targets.get(&s.flavour) {
                        digest = t.top.digest.clone();
                    }
                    format!("unchanged ({why})")
                }
                Action::Publish => {
                    let key = (repo.registry.clone(), s.identity.clone());
                    let bundle = match self.held.get(&key) {
                        // Another repository of this registry holds the image: the same manifests, blobs mounted.
                        Some(b) => b.clone(),
                        None => Bundle::local(&self.images[&s.flavour]),
                    };
                    self.push_blobs(repo, &bundle)?;
                    for c in &bundle.children {
                        self.put(repo, &c.digest, c, "put manifest")?;
                    }
                    self.put(repo, &s.tag, &bundle.top, "put index")?;
                    if !dry {
                        self.remember(repo, &s.identity, &bundle);
                    }
                    digest = bundle.top.digest.clone();
                    self.attach(repo, s.flavour, &bundle, &s.tag, &tags)?;
                    targets.insert(s.flavour, bundle);
                    "published".to_owned()
                }
                Action::Tag { from, why } => {
                    let verb = match (s.kind, from) {
                        (TagKind::Floating, Some(_)) => "move tag",
                        _ => "put tag",
                    };
                    let top = targets
                        .get(&s.flavour)
                        .map(|b| b.top.clone())
                        .ok_or_else(|| {
                            anyhow::anyhow!("internal: {} has no image to point at", s.tag)
                        })?;
                    self.put(repo, &s.tag, &top, verb)?;
                    digest = top.digest;
                    match from {
                        Some(old) => format!("moved from image {} ({why})", short(old)),
                        None => format!("tagged ({why})"),
                    }
                }
            };
            self.rows.push(Row {
                repo: repo.to_string(),
                tag: s.tag.clone(),
                digest,
                action: if dry && !action.starts_with("unchanged") && action != "refused" {
                    format!("would be {action}")
                } else {
                    action
                },
            });
        }
        Ok(())
    }

    /// SBOMs (the index's and one per platform manifest) and the signature of the digest an immutable tag points
    /// at, each unless already there.
    fn attach(
        &mut self,
        repo: &Repository,
        flavour: Flavour,
        bundle: &Bundle,
        tag: &str,
        tags: &[String],
    ) -> anyhow::Result<()> {
        use crate::attach;
        let dry = self.dry_run;
        let top = &bundle.top;
        if !self.no_sbom {
            let children = self.platform_children(flavour, bundle);
            // An older publish's single manifest (no index) is its own only platform.
            let parts = if children.is_empty() {
                vec![(top.digest.clone(), 0)]
            } else {
                children
                    .iter()
                    .map(|(c, i)| (c.digest.clone(), *i))
                    .collect()
            };
            self.attach_sbom(repo, top, tags, SbomOf::Index(flavour, tag, parts))?;
            for (child, i) in children {
                self.attach_sbom(repo, &child, tags, SbomOf::Platform(flavour, i, tag))?;
            }
        }
        if let Some(signer) = &self.signer {
            let sig_tag = attach::cosign_tag(&top.digest, ".sig");
            let docker_reference = repo.to_string();
            let payload = attach::payload(&docker_reference, &top.digest);
            let payload_digest = crate::digest::sha256_digest(&payload);
            let verifier = signer.verifier();
            let mut layers = Vec::new();
            if tags.contains(&sig_tag) {
                let client = self.client(repo)?;
                if let Some(m) = client.get_manifest(&repo.name, &sig_tag)? {
                    layers = attach::sig_layers(&m.bytes);
                }
            }
            if layers
                .iter()
                .any(|l| l.blob.digest == payload_digest && verifier.verify(&payload, &l.signature))
            {
                say(&format!(
                    "  skip signature {sig_tag} (signed with this key)"
                ));
            } else {
                say(&format!("  sign {repo}@{} -> {repo}:{sig_tag}", top.digest));
                if !dry {
                    let signer = self.signer.as_ref().expect("checked above");
                    let (layer, blob) =
                        attach::new_signature(signer, &docker_reference, &top.digest)?;
                    layers.push(layer);
                    let art = attach::signature_artifact(&layers, vec![blob]);
                    self.push_artifact(repo, &art)?;
                    let client = self.client(repo)?;
                    client.put_manifest(
                        &repo.name,
                        &sig_tag,
                        &art.manifest,
                        crate::local::OCI_MANIFEST,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The SBOM artifact of `subject` (an index or a platform manifest), unless attached: copied from another
    /// repository of the registry holding it, else made from the image's probe.
    fn attach_sbom(
        &mut self,
        repo: &Repository,
        subject: &Manifest,
        tags: &[String],
        of: SbomOf,
    ) -> anyhow::Result<()> {
        use crate::attach;
        let dry = self.dry_run;
        let sbom_tag = attach::cosign_tag(&subject.digest, ".sbom");
        let key = (repo.registry.clone(), subject.digest.clone());
        let held = self
            .sbom_held
            .get(&key)
            .filter(|r| **r != repo.name)
            .cloned();
        if tags.contains(&sbom_tag) {
            say(&format!("  skip sbom {sbom_tag} (attached)"));
            self.sbom_held
                .entry(key)
                .or_insert_with(|| repo.name.clone());
        } else if let Some(from) = held {
            // Another repository of this registry holds it: the same artifact, its blobs mounted.
            say(&format!(
                "  attach sbom {repo}:{sbom_tag} (copied from {from})"
            ));
            if !dry {
                let client = self.client(repo)?;
                let m = client
                    .get_manifest(&from, &sbom_tag)?
                    .ok_or_else(|| anyhow::anyhow!("{from}:{sbom_tag} vanished"))?;
                let v: serde_json::Value = serde_json::from_slice(&m.bytes)?;
                for d in v["layers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain([&v["config"]])
                {
                    let digest = d["digest"].as_str().unwrap_or_default();
                    if !client.blob_exists(&repo.name, digest)? {
                        if let Mount::Upload(_) = client.mount_blob(&repo.name, digest, &from)? {
                            bail!(
                                "registry {} did not mount {digest} from {from}",
                                repo.registry
                            );
                        }
                    }
                }
                client.put_manifest(&repo.name, &m.digest, &m.bytes, &m.media_type)?;
                client.put_manifest(&repo.name, &sbom_tag, &m.bytes, &m.media_type)?;
            }
        } else {
            say(&format!(
                "  attach sbom {repo}:{sbom_tag} ({})",
                of.what(self)
            ));
            if !dry {
                let doc = self.sbom_doc(&of, &subject.digest)?;
                let blob = Blob {
                    digest: subject.digest.clone(),
                    size: subject.bytes.len() as u64,
                };
                let art = attach::sbom_artifact(&doc, &blob, &subject.media_type);
                self.push_artifact(repo, &art)?;
                let digest = art.digest();
                let client = self.client(repo)?;
                client.put_manifest(
                    &repo.name,
                    &digest,
                    &art.manifest,
                    crate::local::OCI_MANIFEST,
                )?;
                if client.last_oci_subject.as_deref() == Some(subject.digest.as_str()) {
                    say("    (registry indexed it as a referrer: OCI 1.1 referrers API)");
                }
                client.put_manifest(
                    &repo.name,
                    &sbom_tag,
                    &art.manifest,
                    crate::local::OCI_MANIFEST,
                )?;
                self.sbom_held
                    .entry(key)
                    .or_insert_with(|| repo.name.clone());
            }
        }
        Ok(())
    }

    /// The per-platform manifests of a bundle with the index of the local image each one is (by image ID);
    /// entries that are no local image (attestations) are left out.
    fn platform_children(&self, flavour: Flavour, bundle: &Bundle) -> Vec<(Manifest, usize)> {
        let images = &self.images[&flavour].images;
        bundle
            .children
            .iter()
            .filter_map(|c| {
                let config = serde_json::from_slice::<ManifestJson>(&c.bytes)
                    .ok()?
                    .config?
                    .digest;
                let i = images.iter().position(|i| i.id == config)?;
                Some((c.clone(), i))
            })
            .collect()
    }

    /// What a probe of one platform image found (probed once per run), checked against the lock.
    fn probed(&mut self, flavour: Flavour, i: usize) -> anyhow::Result<&crate::sbom::Probed> {
        let image = &self.images[&flavour].images[i];
        if !self.probes.contains_key(&image.id) {
            say(&format!("  probing {} for its SBOM", image.reference));
            let platform = image.platform.foreign();
            let p = crate::sbom::probe_checked(
                self.ctx,
                &image.reference,
                platform.as_deref(),
                Some(&self.release),
            )?;
            self.probes.insert(image.id.clone(), p);
        }
        let p = &self.probes[&image.id];
        if !p.problems.is_empty() {
            bail!(
                "the SBOM of {} disagrees with the lock: {}",
                image.reference,
                p.problems.join("; ")
            );
        }
        Ok(p)
    }

    /// The SBOM document for `subject`: an index's lists every platform (with the manifests `bundle` names), a
    /// platform manifest's lists that image. Made once per subject per run.
    fn sbom_doc(&mut self, of: &SbomOf, subject: &str) -> anyhow::Result<Vec<u8>> {
        if let Some(d) = self.sboms.get(subject) {
            return Ok(d.clone());
        }
        let (flavour, tag, which) = match of {
            SbomOf::Index(f, t, children) => (*f, *t, children.clone()),
            SbomOf::Platform(f, i, t) => (*f, *t, vec![(subject.to_owned(), *i)]),
        };
        for (_, i) in &which {
            self.probed(flavour, *i)?;
        }
        let images = &self.images[&flavour].images;
        let first = &images[which.first().map_or(0, |(_, i)| *i)];
        let parts: Vec<crate::sbom::PlatformPart> = which
            .iter()
            .map(|(digest, i)| crate::sbom::PlatformPart {
                arch: images[*i].platform.architecture.clone(),
                manifest_digest: digest.clone(),
                probe: &self.probes[&images[*i].id].probe,
            })
            .collect();
        let subject_of = crate::sbom::Subject {
            tag: tag.to_owned(),
            digest: subject.to_owned(),
            created: crate::sbom::created_of(&first.config),
            distro: self.probes[&first.id].distro.clone(),
        };
        let doc = crate::sbom::index_document(&subject_of, &parts);
        self.sboms.insert(subject.to_owned(), doc.clone());
        Ok(doc)
    }

    /// Small blobs from memory (mounted when another repository of the registry has them); the caller puts the
    /// manifest.
    fn push_artifact(
        &mut self,
        repo: &Repository,
        art: &crate::attach::Artifact,
    ) -> anyhow::Result<()> {
        for (blob, bytes) in &art.blobs {
            let from = self.held_elsewhere(repo, &blob.digest);
            let client = self.client(repo)?;
            if !client.blob_exists(&repo.name, &blob.digest)? {
                let loc = match from {
                    Some(from) => match client.mount_blob(&repo.name, &blob.digest, &from)? {
                        Mount::Mounted => None,
                        Mount::Upload(loc) => Some(loc),
                    },
                    None => Some(client.start_upload(&repo.name)?),
                };
                if let Some(loc) = loc {
                    client.finish_upload(
                        &repo.name,
                        &loc,
                        &blob.digest,
                        blob.size,
                        &mut &bytes[..],
                    )?;
                }
            }
            self.note_held(repo, &blob.digest);
        }
        Ok(())
    }

    /// Another repository of `repo`'s registry known to hold the blob: a cross-repository mount source.
    fn held_elsewhere(&self, repo: &Repository, digest: &str) -> Option<String> {
        self.known
            .get(&repo.registry)
            .and_then(|m| m.get(digest))
            .filter(|r| **r != repo.name)
            .cloned()
    }

    /// `repo` now holds the blob.
    fn note_held(&mut self, repo: &Repository, digest: &str) {
        self.known
            .entry(repo.registry.clone())
            .or_default()
            .insert(digest.to_owned(), repo.name.clone());
    }

    fn remember(&mut self, repo: &Repository, identity: &str, bundle: &Bundle) {
        let known = self.known.entry(repo.registry.clone()).or_default();
        for b in &bundle.blobs {
            known
                .entry(b.digest.clone())
                .or_insert_with(|| repo.name.clone());
        }
        self.held
            .entry((repo.registry.clone(), identity.to_owned()))
            .or_insert_with(|| bundle.clone());
    }

    fn put(
        &mut self,
        repo: &Repository,
        tag: &str,
        manifest: &Manifest,
        verb: &str,
    ) -> anyhow::Result<()> {
        if tag.starts_with("sha256:") {
            say(&format!("  {verb} {repo}@{tag}"));
        } else {
            say(&format!("  {verb} {repo}:{tag} -> {}", manifest.digest));
        }
        if !self.dry_run {
            let client = self.client(repo)?;
            client.put_manifest(&repo.name, tag, &manifest.bytes, &manifest.media_type)?;
        }
        Ok(())
    }

    /// The bytes of a blob of the local images: a config from memory, a compressed layer from the spool.
    fn open_blob(&self, digest: &str) -> anyhow::Result<Box<dyn std::io::Read>> {
        for image in self.images.values() {
            for i in &image.images {
                if i.config_blob.digest == digest {
                    return Ok(Box::new(std::io::Cursor::new(i.config.clone())));
                }
            }
        }
        Ok(Box::new(self.source.open_blob(digest)?))
    }

    fn push_blobs(&mut self, repo: &Repository, bundle: &Bundle) -> anyhow::Result<()> {
        let dry = self.dry_run;
        let configs: Vec<String> = bundle
            .children
            .iter()
            .chain(std::iter::once(&bundle.top))
            .filter_map(|m| {
                serde_json::from_slice::<ManifestJson>(&m.bytes)
                    .ok()?
                    .config
            })
            .map(|c| c.digest)
            .collect();
        for blob in &bundle.blobs {
            let what = if configs.contains(&blob.digest) {
                "config"
            } else {
                "layer"
            };
            let known_elsewhere = self.held_elsewhere(repo, &blob.digest);
            let streamed = self
                .streamed
                .get(&repo.to_string())
                .is_some_and(|s| s.contains(blob));
            let client = self.client(repo)?;
            if streamed {
                say(&format!(
                    "  skip {what} {} (pushed while compressing)",
                    blob.digest
                ));
            } else if client.blob_exists(&repo.name, &blob.digest)? {
                say(&format!("  skip {what} {} (present)", blob.digest));
            } else {
                let mut location = None;
                if let Some(from) = &known_elsewhere {
                    say(&format!(
                        "  mount {what} {} {} from {from}",
                        blob.digest, blob.size
                    ));
                    if !dry {
                        match client.mount_blob(&repo.name, &blob.digest, from)? {
                            Mount::Mounted => {}
                            Mount::Upload(loc) => {
                                say("    (registry did not mount; uploading)");
                                location = Some(loc);
                            }
                        }
                    }
                } else {
                    say(&format!(
                        "  push {what} {} {} ({})",
                        blob.digest,
                        blob.size,
                        human(blob.size)
                    ));
                    if !dry {
                        location = Some(client.start_upload(&repo.name)?);
                    }
                }
                if let Some(loc) = location {
                    let mut reader = self.open_blob(&blob.digest)?;
                    let client = self.client(repo)?;
                    upload_blob(client, &repo.name, &loc, blob, &mut reader)?;
                }
            }
            self.note_held(repo, &blob.digest);
        }
        Ok(())
    }
}

/// Sends a blob's bytes into an upload session opened for it (`start_upload`, or a mount the registry declined),
/// with a byte progress bar on a terminal.
pub fn upload_blob(
    client: &mut Client,
    repo: &str,
    location: &str,
    blob: &Blob,
    data: &mut dyn std::io::Read,
) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(blob.size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "    {bytes}/{total_bytes} {bar:30} {bytes_per_sec}",
        )
        .expect("static template"),
    );
    let mut wrapped = bar.wrap_read(data);
    let r = client.finish_upload(repo, location, &blob.digest, blob.size, &mut wrapped);
    bar.finish_and_clear();
    r
}

fn short(identity: &str) -> String {
    let first = identity.split(',').next().unwrap_or(identity);
    let hex = first.strip_prefix("sha256:").unwrap_or(first);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

/// What this run wants per flavour; `identity` is the flavour's image IDs (`IndexedImage::identity`), known from
/// the engine before any layer is read.
pub fn wants(
    release: &Release,
    identities: &BTreeMap<Flavour, String>,
    build_number: Option<u64>,
) -> Vec<Want> {
    Flavour::ALL
        .iter()
        .map(|&f| Want {
            flavour: f,
            identity: identities[&f].clone(),
            build: release.build,
            scheme: release.tags(),
            immutable: release.immutable_tag(f),
            floating: release.floating_tag(f),
            ci: build_number.map(|b| release.ci_tag(f, b)),
        })
        .collect()
}

/// A flavour's local images: per platform built, its local name and image ID.
pub type LocalNames = Vec<(Arch, String, String)>;

/// The local images of each flavour, one per platform built: `<source>:<immutable tag>` for the engine's native
/// architecture, `<source>:<immutable tag>-<arch>` for another (`platform::Platform::local_tag`). Each image's
/// architecture must be the one its name says, both flavours must have the same platforms, and a platform built for
/// neither is said in one line: what exists is published.
pub fn local_platforms(
    source_repo: &str,
    release: &Release,
) -> anyhow::Result<Vec<(Flavour, LocalNames)>> {
    let mut out = Vec::new();
    let mut missing: BTreeMap<Arch, Vec<String>> = BTreeMap::new();
    for f in Flavour::ALL {
        let mut present = Vec::new();
        for arch in Arch::ALL {
            let reference = format!(
                "{source_repo}:{}",
                arch.local_tag(&release.immutable_tag(f))
            );
            match crate::local::inspect(&reference)? {
                Some((_, platform)) if platform.architecture != arch.arch() => bail!(
                    "{reference} is a {platform} image, but its name makes it the {arch} image (nothing pushed)"
                ),
                Some((id, _)) => present.push((arch, reference, id)),
                None => missing.entry(arch).or_default().push(reference),
            }
        }
        if present.is_empty() {
            let native = format!(
                "{source_repo}:{}",
                Arch::native().local_tag(&release.immutable_tag(f))
            );
            bail!("local image {native} not found in the Docker engine (build it first, or pass --source-repository)");
        }
        out.push((f, present));
    }
    let sets: Vec<Vec<Arch>> = out
        .iter()
        .map(|(_, ps)| ps.iter().map(|(a, _, _)| *a).collect())
        .collect();
    if sets.windows(2).any(|w| w[0] != w[1]) {
        let (partial, names) = missing
            .iter()
            .next()
            .expect("sets differ, so some platform is missing");
        // An immutable tag is written once: an index lacking a platform the other flavour has would stay so.
        bail!(
            "{partial} is built for one flavour but not the other ({} missing): build both flavours or neither",
            names.join(", ")
        );
    }
    let built: Vec<String> = sets[0].iter().map(|a| a.to_string()).collect();
    for (arch, names) in &missing {
        say(&format!(
            "{arch} not built locally ({}): publishing {} only",
            names.join(", "),
            built.join(" and ")
        ));
    }
    Ok(out)
}

/// The repository layers can be uploaded to while they compress: the first one (in `--to` order) whose plan
/// publishes every flavour from the local images (no refusal, and no tag of a repository of its registry holding
/// the images already: their blobs are there, and a new build of the same images only needs manifests). At most
/// one: the others get the spooled layers, or mounts.
fn stream_target<'t>(
    targets: &'t [Repository],
    gathered: &[Option<Gathered>],
    wants: &[Want],
    policy: Policy,
) -> Option<&'t Repository> {
    let held_in = |registry: &str, identity: &str| {
        targets.iter().zip(gathered).any(|(r, g)| {
            r.registry == registry
                && g.as_ref().is_some_and(|g| {
                    g.haves.iter().any(|h| {
                        [&h.immutable, &h.floating, &h.ci]
                            .iter()
                            .any(|t| t.as_deref() == Some(identity))
                    })
                })
        })
    };
    targets.iter().zip(gathered).find_map(|(repo, g)| {
        let steps = plan(wants, &g.as_ref()?.haves, policy);
        let publishes_all = steps
            .iter()
            .filter(|s| s.kind == TagKind::Immutable)
            .all(|s| s.action == Action::Publish && !held_in(&repo.registry, &s.identity));
        publishes_all.then_some(repo)
    })
}

/// Receives a stream's pieces as one layer's bytes: ends at the layer's `End` (kept), fails on `Abort` or when the
/// sender is gone.
struct LayerReader<'r> {
    rx: &'r std::sync::mpsc::Receiver<Piece>,
    buf: Vec<u8>,
    pos: usize,
    end: Option<Blob>,
}

impl std::io::Read for LayerReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.end.is_some() {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Piece::Data(d)) => (self.buf, self.pos) = (d, 0),
                Ok(Piece::End(blob)) => self.end = Some(blob),
                Ok(Piece::Abort) => return Err(std::io::Error::other("the layer was not read")),
                Ok(Piece::Begin) | Err(_) => {
                    return Err(std::io::Error::other("the layer stream broke off"))
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Uploads each layer of the stream while `docker save` and the compressor still produce it, as `docker push`
/// does: an upload session per layer, its bytes sent in one chunked PATCH as they come, closed by the PUT with the
/// digest once the compressor knows it. Returns the layers uploaded.
fn stream_uploads(
    client: &mut Client,
    repo: &str,
    rx: std::sync::mpsc::Receiver<Piece>,
) -> anyhow::Result<Vec<Blob>> {
    let mut done = Vec::new();
    while let Ok(piece) = rx.recv() {
        if !matches!(piece, Piece::Begin) {
            bail!("internal: a layer stream without its start");
        }
        let location = client.start_upload(repo)?;
        let mut layer = LayerReader {
            rx: &rx,
            buf: Vec::new(),
            pos: 0,
            end: None,
        };
        let location = client.patch_upload(repo, &location, &mut layer)?;
        let blob = layer.end.take().expect("the reader ends at End");
        client.close_upload(repo, &location, &blob.digest)?;
        say(&format!(
            "  pushed layer {} {} ({}) while compressing",
            blob.digest,
            blob.size,
            human(blob.size)
        ));
        done.push(blob);
    }
    Ok(done)
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let file = ctx.releases()?;
    let release = file.get(args.release.as_deref())?;
    let mut targets = Vec::new();
    for t in &args.to {
        let r = Repository::parse(t)?;
        if !targets.contains(&r) {
            targets.push(r);
        }
    }
    if args.dev {
        // The historic accident: dev images in the production repository.
        let prod = Repository::parse(&file.defaults.repository)?;
        if let Some(t) = targets.iter().find(|t| **t == prod) {
            bail!(
                "--dev refuses {t}: it is the production repository of {}",
                file.path.display()
            );
        }
    }
    let source_repo = args
        .source_repository
        .clone()
        .unwrap_or_else(|| file.defaults.repository.clone());
    let signer = match &args.sign_key {
        Some(k) => Some(crate::attach::Signer::load(k)?),
        None => None,
    };
    // Reach every registry first: one that is down or refuses the credentials fails now, not after `docker save`.
    let opts = args.registry.options();
    let mut clients: HashMap<String, Client> = HashMap::new();
    let mut problems = Vec::new();
    targets.retain(|repo| match client(&mut clients, repo, &opts) {
        Ok(_) => true,
        Err(e) => {
            problems.push(format!("failed {repo}: {}", one_line(&e)));
            false
        }
    });
    if targets.is_empty() {
        for p in &problems {
            eprintln!("ap-airflow: {p}");
        }
        return Ok(ExitCode::from(1));
    }
    let spool = args.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let locals = local_platforms(&source_repo, release)?;
    let identities: BTreeMap<Flavour, String> = locals
        .iter()
        .map(|(f, ps)| {
            let mut ids: Vec<&str> = ps.iter().map(|(_, _, id)| id.as_str()).collect();
            ids.sort_unstable();
            (*f, ids.join(","))
        })
        .collect();
    let wants = wants(release, &identities, args.build_number);
    let policy = Policy {
        dev: args.dev,
        move_floating: args.move_floating,
    };
    // Every repository is read before any layer is: the plans say where layers can go while they compress.
    let mut gathered = Vec::new();
    for repo in &targets {
        let client = client(&mut clients, repo, &opts)?;
        match gather_haves(client, repo, &wants) {
            Ok(g) => gathered.push(Some(g)),
            Err(e) => {
                let line = one_line(&e);
                say(&format!("==> {repo}: failed: {line}"));
                problems.push(format!("failed {repo}: {line}"));
                gathered.push(None);
            }
        }
    }
    let stream_to = if args.dry_run {
        None
    } else {
        stream_target(&targets, &gathered, &wants, policy)
    };
    let references: Vec<String> = locals
        .iter()
        .flat_map(|(_, ps)| ps.iter().map(|(_, r, _)| r.clone()))
        .collect();
    say(&format!(
        "reading {} from the Docker engine",
        references.join(", ")
    ));
    let mut streamed: HashMap<String, Vec<Blob>> = HashMap::new();
    let mut probes = HashMap::new();
    let (source, mut loaded) = match stream_to {
        None => Source::load(&references, &spool, args.compression)?,
        Some(repo) => {
            say(&format!("  layers go to {repo} while they compress"));
            let client = clients.get_mut(&repo.registry).expect("connected above");
            let (tx, rx) = std::sync::mpsc::sync_channel(16);
            let release_name = release.name();
            let (loaded, uploaded) = std::thread::scope(|s| {
                let uploader = s.spawn(|| stream_uploads(client, &repo.name, rx));
                // Images are published from here, so their SBOMs will be made: probe them meanwhile.
                let prober = (!args.no_sbom).then(|| {
                    s.spawn(|| {
                        for (_, platforms) in &locals {
                            for (arch, reference, id) in platforms {
                                say(&format!("  probing {reference} for its SBOM"));
                                let platform = (*arch != Arch::native()).then(|| arch.docker());
                                // A failure is reported when the SBOM is made (probed again then).
                                if let Ok(p) = crate::sbom::probe_checked(
                                    ctx,
                                    reference,
                                    platform.as_deref(),
                                    Some(&release_name),
                                ) {
                                    probes.insert(id.clone(), p);
                                }
                            }
                        }
                    })
                });
                let loaded =
                    Source::load_streaming(&references, &spool, args.compression, Some(tx));
                if let Some(p) = prober {
                    p.join().expect("the probe thread");
                }
                (loaded, uploader.join().expect("the upload thread"))
            });
            match uploaded {
                Ok(blobs) => {
                    streamed.insert(repo.to_string(), blobs);
                }
                // What did not arrive is uploaded from the spool below, as without streaming.
                Err(e) => say(&format!(
                    "  streaming to {repo} stopped ({}); the rest is uploaded after compression",
                    one_line(&e)
                )),
            }
            loaded?
        }
    };
    let mut images = BTreeMap::new();
    for (f, platforms) in &locals {
        let mut of_flavour = Vec::new();
        for _ in platforms {
            let image = loaded.remove(0);
            say(&format!(
                "  {}: image {}, {} {} ({} layers, {} compressed)",
                image.reference,
                short(&image.id),
                image.platform,
                image.digest,
                image.layers.len(),
                human(image.layers.iter().map(|l| l.size).sum())
            ));
            of_flavour.push(image);
        }
        let indexed = IndexedImage::new(of_flavour);
        say(&format!("  index {}", indexed.digest));
        images.insert(*f, indexed);
    }
    let mut run = Run {
        dry_run: args.dry_run,
        ctx,
        release: release.name(),
        no_sbom: args.no_sbom,
        signer,
        sboms: HashMap::new(),
        probes,
        sbom_held: HashMap::new(),
        opts,
        clients,
        known: HashMap::new(),
        held: HashMap::new(),
        rows: Vec::new(),
        problems,
        images: &images,
        source: &source,
        streamed,
    };
    if args.dry_run {
        say("dry run: nothing is written");
    }
    for (repo, gathered) in targets.iter().zip(gathered) {
        let Some(gathered) = gathered else { continue };
        if let Err(e) = run.publish_repo(repo, &wants, gathered, policy) {
            let line = one_line(&e);
            say(&format!("  failed: {line}"));
            run.problems.push(format!("failed {repo}: {line}"));
        }
    }
    let mut rows = vec![["REPOSITORY", "TAG", "DIGEST", "ACTION"].map(String::from)];
    rows.extend(run.rows.iter().map(|r| {
        [
            r.repo.clone(),
            r.tag.clone(),
            r.digest.clone(),
            r.action.clone(),
        ]
    }));
    if rows.len() > 1 {
        print!("{}", crate::output::columns(&rows));
    }
    let (blobs, manifests) = run.clients.values().fold((0, 0), |(b, m), c| {
        (b + c.blob_bytes_sent, m + c.manifest_bytes_sent)
    });
    println!(
        "sent {} bytes (blobs {blobs}, manifests {manifests}) in {:.1} s{}",
        blobs + manifests,
        started.elapsed().as_secs_f64(),
        if args.dry_run { " (dry run)" } else { "" }
    );
    if run.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &run.problems {
            eprintln!("ap-airflow: {p}");
        }
        Ok(ExitCode::from(1))
    }
}
