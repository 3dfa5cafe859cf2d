//! `ap-airflow sbom IMAGE`: an SPDX 2.3 JSON document of an image — every Debian package (name, version, source,
//! license from its machine-readable copyright file where there is one) and every Python distribution installed
//! (from the venv's metadata, cross-checked against the release line's lock) — whose subject is the digest of the
//! OCI image index that `publish` puts under the image's tags.
//!
//! The document is a function of the image: packages sorted, `created` taken from the image config, the namespace
//! derived from the digest. The same image always yields the same bytes, so a re-publish attaches nothing new.
//!
//! Facts come from one probe run inside the image (`docker run --rm --network none --entrypoint /bin/sh`, as the
//! image's user): `dpkg-query`, the first `License:` of each `/usr/share/doc/*/copyright`, and
//! `importlib.metadata` of the image's `python3` (the venv's, first on PATH).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::Context;

pub const SPDX_MEDIA_TYPE: &str = "text/spdx+json";
pub const SPDX_ARTIFACT_TYPE: &str = "application/spdx+json";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Local image, e.g. astronomerinc/ap-airflow:2.10.5-1-bookworm.
    pub image: String,
    /// Release line whose lock the Python distributions are checked against (default: the image's label).
    #[arg(long)]
    pub release: Option<String>,
    /// Subject digest (default: the OCI index digest `publish` computes for this image).
    #[arg(long, value_name = "sha256:…")]
    pub digest: Option<String>,
    /// Folder for the compressed layers when the index digest has to be computed (default: the temp folder).
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
}

pub const PROBE: &str = r#"
dpkg-query -W -f='D\t${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\n' 2>/dev/null
awk 'FNR == 1 { done = 0 }
     !done && /^License:/ { sub(/^License:[ \t]*/, ""); f = FILENAME; sub(/\/copyright$/, "", f); sub(/.*\//, "", f);
                            printf "L\t%s\t%s\n", f, $0; done = 1 }' /usr/share/doc/*/copyright 2>/dev/null
python3 - <<'PY' 2>/dev/null
import importlib.metadata as m
def clean(s):
    return " ".join((s or "").split())
for d in m.distributions():
    md = d.metadata
    lic = clean(md.get("License-Expression"))
    if not lic:
        l = (md.get("License") or "").strip()
        if l and "\n" not in l and len(l) < 80:
            lic = clean(l)
    cls = ";".join(clean(c) for c in (md.get_all("Classifier") or []) if c.startswith("License ::"))
    print("P\t%s\t%s\t%s\t%s" % (clean(md["Name"]), clean(d.version), lic, cls))
PY
true
"#;

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deb {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub source: String,
    pub source_version: String,
    pub license: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dist {
    pub name: String,
    pub version: String,
    pub license: Option<String>,
    pub classifiers: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub debs: Vec<Deb>,
    pub dists: Vec<Dist>,
}

pub fn parse_probe(out: &str) -> Probe {
    let mut debs = Vec::new();
    let mut licenses = BTreeMap::new();
    let mut dists = BTreeSet::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["D", name, version, arch, source, source_version] => debs.push(Deb {
                name: name.to_string(),
                version: version.to_string(),
                arch: arch.to_string(),
                source: if source.is_empty() { name } else { source }.to_string(),
                source_version: if source_version.is_empty() {
                    version
                } else {
                    source_version
                }
                .to_string(),
                license: None,
            }),
            ["L", name, license] if !license.trim().is_empty() => {
                licenses.insert(name.to_string(), license.trim().to_string());
            }
            ["P", name, version, license, classifiers] if !name.is_empty() => {
                dists.insert(Dist {
                    name: name.to_string(),
                    version: version.to_string(),
                    license: Some(license.to_string()).filter(|l| !l.is_empty()),
                    classifiers: classifiers.to_string(),
                });
            }
            _ => {}
        }
    }
    for d in &mut debs {
        d.license = licenses.get(&d.name).cloned();
    }
    debs.sort();
    debs.dedup();
    Probe {
        debs,
        dists: dists.into_iter().collect(),
    }
}

/// PEP 503 name normalisation.
pub fn normalize(name: &str) -> String {
    let mut out = String::new();
    let mut sep = false;
    for c in name.chars() {
        if c == '-' || c == '_' || c == '.' {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// `name==version` pins of a lock (constraints file), by normalised name.
pub fn parse_lock(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next()?.trim();
            let l = l.split(';').next()?.trim().trim_end_matches('\\').trim();
            let (name, version) = l.split_once("==")?;
            let name = name.split('[').next()?.trim();
            Some((normalize(name), version.trim().to_owned()))
        })
        .collect()
}

/// Python distributions whose version differs from the lock (name, image version, lock version).
pub fn lock_mismatches(
    dists: &[Dist],
    lock: &BTreeMap<String, String>,
) -> Vec<(String, String, String)> {
    dists
        .iter()
        .filter_map(|d| {
            let want = lock.get(&normalize(&d.name))?;
            (*want != d.version).then(|| (d.name.clone(), d.version.clone(), want.clone()))
        })
        .collect()
}

/// SPDX license identifiers this tool writes as such; anything else is NOASSERTION with the original in a comment.
const SPDX_IDS: &[&str] = &[
    "0BSD",
    "AFL-2.1",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "Apache-1.1",
    "Apache-2.0",
    "Artistic-1.0",
    "Artistic-2.0",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-4-Clause",
    "BSL-1.0",
    "CC-BY-4.0",
    "CC0-1.0",
    "CNRI-Python",
    "curl",
    "EPL-2.0",
    "GPL-1.0-or-later",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "HPND",
    "ISC",
    "LGPL-2.0-or-later",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "MIT",
    "MIT-0",
    "MPL-1.1",
    "MPL-2.0",
    "OpenSSL",
    "PSF-2.0",
    "Python-2.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "WTFPL",
    "X11",
    "Zlib",
    "ZPL-2.1",
];

/// Debian copyright short names and common free-text licenses → SPDX identifiers.
fn spdx_id(token: &str) -> Option<&'static str> {
    let t = token.trim();
    if let Some(id) = SPDX_IDS.iter().find(|id| id.eq_ignore_ascii_case(t)) {
        return Some(id);
    }
    Some(match t.to_ascii_lowercase().as_str() {
        "expat" | "mit license" | "the mit license" | "mit/expat" => "MIT",
        "gpl-2" | "gplv2" => "GPL-2.0-only",
        "gpl-2+" | "gplv2+" | "gpl-2.0+" => "GPL-2.0-or-later",
        "gpl-3" | "gplv3" => "GPL-3.0-only",
        "gpl-3+" | "gplv3+" | "gpl-3.0+" => "GPL-3.0-or-later",
        "gpl" | "gpl-1+" => "GPL-1.0-or-later",
        "lgpl-2.1" => "LGPL-2.1-only",
        "lgpl-2.1+" | "lgpl-2+" => "LGPL-2.1-or-later",
        "lgpl-3" => "LGPL-3.0-only",
        "lgpl-3+" => "LGPL-3.0-or-later",
        "apache 2.0"
        | "apache-2"
        | "apache 2"
        | "apache license 2.0"
        | "apache software license"
        | "apache license, version 2.0" => "Apache-2.0",
        "bsd"
        | "bsd-3"
        | "bsd 3-clause"
        | "bsd-3-clause-license"
        | "3-clause bsd"
        | "new bsd"
        | "new bsd license"
        | "bsd license" => "BSD-3-Clause",
        "bsd-2" | "bsd 2-clause" | "simplified bsd" => "BSD-2-Clause",
        "mpl 2.0" | "mpl-2" => "MPL-2.0",
        "psf" | "psfl" | "psf license" | "python software foundation license" => "PSF-2.0",
        "zlib/libpng" => "Zlib",
        "public-domain" | "public domain" => return None,
        _ => return None,
    })
}

/// A license text from dpkg or Python metadata as an SPDX expression, when every part of it is known.
pub fn spdx_expression(text: &str) -> Option<String> {
    if let Some(id) = spdx_id(text) {
        return Some(id.to_owned());
    }
    let mut out = Vec::new();
    let spaced = text.replace('(', " ( ").replace(')', " ) ");
    let mut term = Vec::new();
    let flush = |term: &mut Vec<&str>, out: &mut Vec<String>| -> Option<()> {
        if !term.is_empty() {
            out.push(spdx_id(&term.join(" "))?.to_owned());
            term.clear();
        }
        Some(())
    };
    for w in spaced.split_whitespace() {
        match w {
            "and" | "AND" | "or" | "OR" | "with" | "WITH" | "(" | ")" | "|" | "," => {
                flush(&mut term, &mut out)?;
                out.push(match w {
                    "|" | "or" => "OR".to_owned(),
                    "," | "and" => "AND".to_owned(),
                    "with" => "WITH".to_owned(),
                    other => other.to_owned(),
                });
            }
            _ => term.push(w),
        }
    }
    flush(&mut term, &mut out)?;
    (!out.is_empty()).then(|| out.join(" ").replace("( ", "(").replace(" )", ")"))
}

fn classifier_license(classifiers: &str) -> Option<&'static str> {
    classifiers.split(';').find_map(|c| {
        Some(match c.rsplit("::").next()?.trim() {
            "MIT License" => "MIT",
            "Apache Software License" => "Apache-2.0",
            "BSD License" => "BSD-3-Clause",
            "ISC License (ISCL)" => "ISC",
            "Mozilla Public License 2.0 (MPL 2.0)" => "MPL-2.0",
            "Python Software Foundation License" => "PSF-2.0",
            "GNU Lesser General Public License v3 (LGPLv3)" => "LGPL-3.0-only",
            "GNU General Public License v2 (GPLv2)" => "GPL-2.0-only",
            "The Unlicense (Unlicense)" => "Unlicense",
            _ => return None,
        })
    })
}

/// What the document describes: the image under one tag and the digest of its index.
#[derive(Debug, Clone)]
pub struct Subject {
    /// e.g. `2.10.5-1-bookworm`
    pub tag: String,
    /// `sha256:…` of the OCI image index.
    pub digest: String,
    /// RFC 3339, from the image config.
    pub created: String,
    pub distro: String,
}

fn spdx_ref(prefix: &str, name: &str, version: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("SPDXRef-{prefix}-{}-{}", clean(name), clean(version))
}

fn purl_escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace(':', "%3A")
        .replace('+', "%2B")
        .replace('@', "%40")
}

/// One SPDX package entry: what a Debian package and a Python distribution share (their purl says which).
fn package(
    id: &str,
    name: &str,
    version: &str,
    declared: String,
    comment: Option<String>,
    purl: String,
) -> Value {
    let mut p = json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": declared,
        "copyrightText": "NOASSERTION",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }],
    });
    if let Some(c) = comment {
        p["licenseComments"] = c.into();
    }
    p
}

/// The image CONTAINS the package `id`.
fn contains(image_ref: &str, id: &str) -> Value {
    json!({
        "spdxElementId": image_ref,
        "relationshipType": "CONTAINS",
        "relatedSpdxElement": id,
    })
}

fn license_fields(text: Option<&str>, fallback: Option<&str>) -> (String, Option<String>) {
    match text
        .and_then(spdx_expression)
        .or(fallback.map(String::from))
    {
        Some(e) => (e, None),
        None => (
            "NOASSERTION".into(),
            text.map(|t| format!("declared license (not an SPDX expression): {t}")),
        ),
    }
}

/// The SPDX 2.3 document of one image (JSON, keys sorted, compact).
pub fn document(subject: &Subject, probe: &Probe) -> Vec<u8> {
    spdx(subject, &[(None, probe)])
}

/// One platform's image inside an index: its architecture, the digest of its manifest, what its probe found.
pub struct PlatformPart<'a> {
    pub arch: String,
    pub manifest_digest: String,
    pub probe: &'a Probe,
}

/// The SPDX 2.3 document of an image index over several platforms: the index CONTAINS one image package per
/// platform (its manifest digest as checksum), and each of those CONTAINS its own Debian packages and Python
/// distributions (SPDX IDs qualified by architecture, since the builds differ). With one platform it is exactly
/// `document` (the index then stands for its only image).
pub fn index_document(subject: &Subject, parts: &[PlatformPart]) -> Vec<u8> {
    if let [only] = parts {
        return document(subject, only.probe);
    }
    let parts: Vec<_> = parts
        .iter()
        .map(|p| (Some((p.arch.as_str(), p.manifest_digest.as_str())), p.probe))
        .collect();
    spdx(subject, &parts)
}

fn spdx(subject: &Subject, parts: &[(Option<(&str, &str)>, &Probe)]) -> Vec<u8> {
    let hex = subject.digest.trim_start_matches("sha256:");
    let image_ref = "SPDXRef-Image".to_owned();
    let image_package = |id: &str, name: String, digest: &str, purl_query: String| {
        let hex = digest.trim_start_matches("sha256:");
        json!({
            "SPDXID": id,
            "name": name,
            "versionInfo": digest,
            "primaryPackagePurpose": "CONTAINER",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "checksums": [{"algorithm": "SHA256", "checksumValue": hex}],
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:oci/ap-airflow@sha256%3A{hex}?{purl_query}"),
            }],
        })
    };
    let mut packages = vec![image_package(
        &image_ref,
        format!("ap-airflow:{}", subject.tag),
        &subject.digest,
        format!("tag={}", subject.tag),
    )];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_ref,
    })];
    for (platform, probe) in parts {
        // With several platforms, each image package holds its own packages; alone, the subject holds them.
        let (holder, qualifier) = match platform {
            None => (image_ref.clone(), String::new()),
            Some((arch, digest)) => {
                let id = format!("SPDXRef-Image-{arch}");
                packages.push(image_package(
                    &id,
                    format!("ap-airflow:{} linux/{arch}", subject.tag),
                    digest,
                    format!("arch={arch}&tag={}", subject.tag),
                ));
                relationships.push(contains(&image_ref, &id));
                (id, format!("-{arch}"))
            }
        };
        let mut seen = BTreeSet::new();
        for d in &probe.debs {
            let id = spdx_ref(&format!("deb{qualifier}"), &d.name, &d.version);
            if !seen.insert(id.clone()) {
                continue;
            }
            let (declared, comment) = license_fields(d.license.as_deref(), None);
            let purl = format!(
                "pkg:deb/debian/{}@{}?arch={}&distro=debian-{}",
                d.name,
                purl_escape(&d.version),
                d.arch,
                subject.distro
            );
            let mut p = package(&id, &d.name, &d.version, declared, comment, purl);
            p["sourceInfo"] =
                format!("built package from: {} {}", d.source, d.source_version).into();
            p["supplier"] = "Organization: Debian".into();
            packages.push(p);
            relationships.push(contains(&holder, &id));
        }
        for d in &probe.dists {
            let id = spdx_ref(&format!("pypi{qualifier}"), &normalize(&d.name), &d.version);
            if !seen.insert(id.clone()) {
                continue;
            }
            let (declared, comment) =
                license_fields(d.license.as_deref(), classifier_license(&d.classifiers));
            let purl = format!(
                "pkg:pypi/{}@{}",
                normalize(&d.name),
                purl_escape(&d.version)
            );
            packages.push(package(&id, &d.name, &d.version, declared, comment, purl));
            relationships.push(contains(&holder, &id));
        }
    }
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("ap-airflow:{}", subject.tag),
        "documentNamespace": format!("https://github.com/astronomer/ap-airflow/spdx/{}/sha256-{hex}", subject.tag),
        "creationInfo": {
            "created": subject.created,
            "creators": [format!("Tool: ap-airflow-{}", env!("CARGO_PKG_VERSION"))],
        },
        "documentDescribes": [image_ref],
        "packages": packages,
        "relationships": relationships,
    });
    serde_json::to_vec(&doc).expect("JSON values serialise")
}

/// Runs the probe in a local image. `platform` (`linux/arm64`) runs another architecture's image under emulation
/// (binfmt_misc with qemu-user-static).
pub fn probe_image(image: &str, platform: Option<&str>) -> anyhow::Result<Probe> {
    let mut cmd = crate::docker::docker();
    cmd.args([
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
    ]);
    if let Some(p) = platform {
        cmd.args(["--platform", p]);
    }
    let out = cmd
        .arg(image)
        .args(["-c", PROBE])
        .stdin(Stdio::null())
        .output()
        .context("cannot run docker")?;
    if !out.status.success() {
        let hint = match platform {
            Some(p) => format!(
                "; a {p} image runs here only under emulation (binfmt_misc and qemu-user-static)"
            ),
            None => String::new(),
        };
        bail!(
            "cannot run the SBOM probe in {image} (it needs /bin/sh; publish --no-sbom skips SBOMs{hint}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let probe = parse_probe(&String::from_utf8_lossy(&out.stdout));
    if probe.debs.is_empty() && probe.dists.is_empty() {
        bail!("the SBOM probe found neither Debian packages nor Python distributions in {image}");
    }
    Ok(probe)
}

/// `created` of an image config, to the second, as SPDX wants it (`…Z`).
pub fn created_of(config: &[u8]) -> String {
    let v: Value = serde_json::from_slice(config).unwrap_or_default();
    let c = v["created"].as_str().unwrap_or("1970-01-01T00:00:00Z");
    let secs = c.split('.').next().unwrap_or(c).trim_end_matches('Z');
    format!("{}Z", &secs[..secs.len().min(19)])
}

/// What one local image holds, checked against its release line's lock.
pub struct Probed {
    pub probe: Probe,
    /// The line's distro (for package URLs); empty when the line is unknown.
    pub distro: String,
    /// Python distributions whose version is not the lock's.
    pub problems: Vec<String>,
}

/// Probes a local image (of `platform`, when not the engine's own) and cross-checks it with the lock of `release`
/// (default: the image's label).
pub fn probe_checked(
    ctx: &Context,
    image: &str,
    platform: Option<&str>,
    release: Option<&str>,
) -> anyhow::Result<Probed> {
    let probe = probe_image(image, platform)?;
    let file = ctx.releases()?;
    let label = crate::docker::inspect_image(image).ok().and_then(|v| {
        v["Config"]["Labels"]["io.astronomer.docker.ac.version"]
            .as_str()
            .map(String::from)
    });
    let name = release.map(String::from).or(label);
    let mut problems = Vec::new();
    let mut distro = String::new();
    match name.as_deref().map(|n| file.get(Some(n))) {
        Some(Ok(r)) => {
            distro = r.distro.clone();
            let lock = std::fs::read_to_string(file.lock_path(r))
                .with_context(|| format!("cannot read the lock of {}", r.name()))?;
            for (n, got, want) in lock_mismatches(&probe.dists, &parse_lock(&lock)) {
                problems.push(format!(
                    "{n} {got} in the image, {want} in the lock of {}",
                    r.name()
                ));
            }
        }
        Some(Err(e)) => problems.push(format!("no lock to check against: {e}")),
        None => {}
    }
    Ok(Probed {
        probe,
        distro,
        problems,
    })
}

/// The SBOM of a local image for a subject digest, with the lock cross-check. Returns the document and the
/// mismatches (Python distributions whose version is not the lock's).
pub fn make(
    ctx: &Context,
    image: &str,
    platform: Option<&str>,
    release: Option<&str>,
    tag: &str,
    digest: &str,
    config: &[u8],
) -> anyhow::Result<(Vec<u8>, Vec<String>)> {
    let p = probe_checked(ctx, image, platform, release)?;
    let subject = Subject {
        tag: tag.to_owned(),
        digest: digest.to_owned(),
        created: created_of(config),
        distro: p.distro,
    };
    Ok((document(&subject, &p.probe), p.problems))
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    crate::verify::check_image_name(&args.image)?;
    let spool = args.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let (_source, mut images) = crate::local::Source::load(
        std::slice::from_ref(&args.image),
        &spool,
        crate::compress::Compression::Gzip,
    )?;
    let image = images.remove(0);
    let config = image.config.clone();
    let platform = image.platform.foreign();
    let indexed = crate::local::IndexedImage::new(vec![image]);
    let digest = args.digest.clone().unwrap_or(indexed.digest);
    let tag = args
        .image
        .rsplit_once(':')
        .map_or("latest", |(_, t)| t)
        .to_owned();
    let (doc, problems) = make(
        ctx,
        &args.image,
        platform.as_deref(),
        args.release.as_deref(),
        &tag,
        &digest,
        &config,
    )?;
    println!("{}", String::from_utf8_lossy(&doc));
    for p in &problems {
        eprintln!("ap-airflow: sbom: {p}");
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "D\tlibc6\t2.36-9+deb12u9\tamd64\tglibc\t\n\
D\tzlib1g\t1:1.2.13.dfsg-1\tamd64\tzlib\t1:1.2.13.dfsg-1\n\
D\tbase-files\t12.4\tamd64\t\t\n\
L\tlibc6\tGPL-2+\n\
L\tzlib1g\tZlib\n\
L\tbase-files\tGPL with odd words\n\
P\tapache-airflow\t2.10.5\tApache-2.0\t\n\
P\tsome_lib\t1.0\t\tLicense :: OSI Approved :: MIT License\n\
P\tpip\t24.0\t\t\n\
noise\n";

    #[test]
    fn probe_output_parses() {
        let p = parse_probe(OUT);
        assert_eq!(p.debs.len(), 3);
        let libc = p.debs.iter().find(|d| d.name == "libc6").unwrap();
        assert_eq!(
            (libc.source.as_str(), libc.source_version.as_str()),
            ("glibc", "2.36-9+deb12u9")
        );
        assert_eq!(libc.license.as_deref(), Some("GPL-2+"));
        assert_eq!(p.dists.len(), 3);
    }

    #[test]
    fn licenses_become_spdx_expressions_or_noassertion() {
        for (text, want) in [
            ("GPL-2+", Some("GPL-2.0-or-later")),
            ("Expat", Some("MIT")),
            ("Apache-2.0", Some("Apache-2.0")),
            ("MIT OR Apache-2.0", Some("MIT OR Apache-2.0")),
            ("GPL-2+ or Artistic", None),
            ("BSD-3-clause", Some("BSD-3-Clause")),
            (
                "(MIT OR Apache-2.0) AND Unicode-DFS-2016",
                Some("(MIT OR Apache-2.0) AND Unicode-DFS-2016"),
            ),
            ("public-domain", None),
            ("Copyright (c) someone, all rights reserved", None),
        ] {
            assert_eq!(spdx_expression(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn lock_cross_check() {
        let lock = parse_lock("# header\napache-airflow==2.10.5\nSome.Lib==1.1 ; python_version >= '3'\n    # via x\n");
        assert_eq!(lock.get("some-lib").map(String::as_str), Some("1.1"));
        let p = parse_probe(OUT);
        let m = lock_mismatches(&p.dists, &lock);
        assert_eq!(
            m,
            [("some_lib".to_owned(), "1.0".to_owned(), "1.1".to_owned())]
        );
    }

    #[test]
    fn document_is_spdx_and_deterministic() {
        let s = Subject {
            tag: "2.10.5-1-bookworm".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            created: "2026-11-30T08:00:00Z".into(),
            distro: "bookworm".into(),
        };
        let a = document(&s, &parse_probe(OUT));
        assert_eq!(a, document(&s, &parse_probe(OUT)));
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["spdxVersion"], "SPDX-2.3");
        assert_eq!(v["documentDescribes"][0], "SPDXRef-Image");
        let pkgs = v["packages"].as_array().unwrap();
        assert_eq!(pkgs.len(), 1 + 3 + 3);
        assert_eq!(pkgs[0]["checksums"][0]["checksumValue"], "ab".repeat(32));
        let libc = pkgs.iter().find(|p| p["name"] == "libc6").unwrap();
        assert_eq!(libc["licenseDeclared"], "GPL-2.0-or-later");
        assert_eq!(
            libc["sourceInfo"],
            "built package from: glibc 2.36-9+deb12u9"
        );
        let base = pkgs.iter().find(|p| p["name"] == "base-files").unwrap();
        assert_eq!(base["licenseDeclared"], "NOASSERTION");
        assert!(base["licenseComments"]
            .as_str()
            .unwrap()
            .contains("GPL with odd words"));
        let lib = pkgs.iter().find(|p| p["name"] == "some_lib").unwrap();
        assert_eq!(lib["licenseDeclared"], "MIT");
        assert_eq!(
            lib["externalRefs"][0]["referenceLocator"],
            "pkg:pypi/some-lib@1.0"
        );
        assert_eq!(v["relationships"].as_array().unwrap().len(), 1 + 6);
    }

    #[test]
    fn an_index_over_two_platforms_lists_each_with_its_packages() {
        let s = Subject {
            tag: "3.3.2-1-trixie".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            created: "2026-11-30T08:00:00Z".into(),
            distro: "trixie".into(),
        };
        let amd = parse_probe(OUT);
        let arm = parse_probe(&OUT.replace("\tamd64\t", "\tarm64\t"));
        let part = |arch: &str, n: &str, probe| PlatformPart {
            arch: arch.into(),
            manifest_digest: format!("sha256:{}", n.repeat(64)),
            probe,
        };
        // One platform: the single-image document, byte for byte.
        assert_eq!(
            index_document(&s, &[part("amd64", "1", &amd)]),
            document(&s, &amd)
        );
        let doc = index_document(&s, &[part("amd64", "1", &amd), part("arm64", "2", &arm)]);
        assert_eq!(
            doc,
            index_document(&s, &[part("amd64", "1", &amd), part("arm64", "2", &arm)])
        );
        let v: Value = serde_json::from_slice(&doc).unwrap();
        let pkgs = v["packages"].as_array().unwrap();
        // The index, two platform images, and each image's 3 Debian packages and 3 Python distributions.
        assert_eq!(pkgs.len(), 1 + 2 + 2 * 6);
        let ids: BTreeSet<&str> = pkgs.iter().map(|p| p["SPDXID"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), pkgs.len(), "SPDX IDs are unique");
        let arm_image = pkgs
            .iter()
            .find(|p| p["SPDXID"] == "SPDXRef-Image-arm64")
            .unwrap();
        assert_eq!(arm_image["checksums"][0]["checksumValue"], "2".repeat(64));
        let rels = v["relationships"].as_array().unwrap();
        let contains = |a: &str, b: &str| {
            rels.iter().any(|r| {
                r["spdxElementId"] == a
                    && r["relationshipType"] == "CONTAINS"
                    && r["relatedSpdxElement"] == b
            })
        };
        assert!(contains("SPDXRef-Image", "SPDXRef-Image-arm64"));
        assert!(contains(
            "SPDXRef-Image-arm64",
            "SPDXRef-deb-arm64-libc6-2.36-9-deb12u9"
        ));
        let libc_arm = pkgs
            .iter()
            .find(|p| p["SPDXID"] == "SPDXRef-deb-arm64-libc6-2.36-9-deb12u9")
            .unwrap();
        assert!(libc_arm["externalRefs"][0]["referenceLocator"]
            .as_str()
            .unwrap()
            .contains("arch=arm64"));
        assert_eq!(pkgs[0]["checksums"][0]["checksumValue"], "ab".repeat(32));
    }

    #[test]
    fn created_is_to_the_second() {
        assert_eq!(
            created_of(br#"{"created":"2026-11-30T08:39:12.123456789Z"}"#),
            "2026-11-30T08:39:12Z"
        );
        assert_eq!(created_of(b"{}"), "1970-01-01T00:00:00Z");
    }
}
