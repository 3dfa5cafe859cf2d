//! `ap-airflow publish` and `next-build` against Debian's real `docker-registry` on loopback ports.
//! Every test has its own registry, storage and images, so tests run in parallel. The ones that need Docker and the
//! registry are `#[ignore]`d, so a plain `cargo test` never passes them untested; scripts/test runs them with
//! `--ignored` (the real-image one per release line, after its build).

mod util;

use util::*;

fn assert_ok(out: &Out) {
    assert_eq!(out.code, 0, "{out:?}");
}

/// After a complete publish: all four tags, floating = immutable per flavour.
fn assert_published(reg: &Registry, repo: &str) {
    let imm = reg.digest(repo, IMM).expect("immutable tag");
    let imm_on = reg.digest(repo, IMM_ON).expect("onbuild immutable tag");
    assert_eq!(reg.digest(repo, FLOAT), Some(imm.clone()));
    assert_eq!(reg.digest(repo, FLOAT_ON), Some(imm_on.clone()));
    assert_ne!(imm, imm_on);
}

#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn first_publish_then_republish_sends_no_layer() {
    let reg = Registry::start();
    let img = Images::new(1, "a");
    let to = [reg.repo("astronomer/ap-airflow")];
    let first = publish(&img, &to, &[], &[]);
    assert_ok(&first);
    assert_published(&reg, "astronomer/ap-airflow");
    assert!(first.blob_bytes() > 2 * 96 * 1024, "{first:?}");
    assert!(first.stdout.contains("published"), "{first:?}");
    let manifest = reg.manifest("astronomer/ap-airflow", IMM);

    let again = publish(&img, &to, &[], &[]);
    assert_ok(&again);
    assert_eq!(again.blob_bytes(), 0, "{again:?}");
    assert!(again.stdout.contains("sent 0 bytes"), "{again:?}");
    assert!(again.stderr.contains("already published"), "{again:?}");
    // Same local image, same manifest bytes: the digest is a function of the image.
    assert_eq!(reg.manifest("astronomer/ap-airflow", IMM), manifest);
}

/// What a tag points at: an OCI index with one linux/amd64 OCI manifest whose layers are gzip.
fn assert_index_of_gzip_layers(reg: &Registry, repo: &str, tag: &str) {
    assert_index_of_gzip_layers_for(reg, repo, tag, &["amd64"]);
}

/// An OCI index with one OCI manifest of gzip layers per architecture of `arches`, in that order.
fn assert_index_of_gzip_layers_for(reg: &Registry, repo: &str, tag: &str, arches: &[&str]) {
    let index: serde_json::Value = serde_json::from_slice(&reg.manifest(repo, tag)).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), arches.len(), "{index}");
    for (entry, arch) in manifests.iter().zip(arches) {
        assert_eq!(entry["platform"]["os"], "linux");
        assert_eq!(entry["platform"]["architecture"], *arch);
        let child = entry["digest"].as_str().unwrap();
        let m: serde_json::Value = serde_json::from_slice(&reg.manifest(repo, child)).unwrap();
        assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
        for l in m["layers"].as_array().unwrap() {
            assert_eq!(
                l["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
        }
    }
}

/// Three real clients read what publish wrote: skopeo copies every tag (checking every blob digest), Docker pulls
/// the immutable tags and gets the very image IDs it was given, containerd's ctr pulls them too.
#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn docker_skopeo_and_containerd_pull_every_tag() {
    let reg = Registry::start();
    let repo = "astronomer/ap-airflow";
    let a = Images::new(1, "pulled");
    let out = publish(&a, &[reg.repo(repo)], &["--build-number", "9"], &[]);
    assert_ok(&out);
    let tags = reg.tags(repo);
    assert_eq!(tags.len(), 6, "{tags:?}");
    let layout = tempfile::tempdir().unwrap();
    for tag in &tags {
        assert_index_of_gzip_layers(&reg, repo, tag);
        let copied = skopeo_copy(&reg, repo, tag, layout.path());
        assert_eq!(
            Some(copied),
            reg.digest(repo, tag),
            "{tag}: skopeo kept the index"
        );
    }
    // The engine must download every layer: the source images go first (their layers are theirs alone).
    let ids: Vec<String> = [IMM, IMM_ON]
        .iter()
        .map(|t| image_id(&format!("{}:{t}", a.repo)))
        .collect();
    drop(a);
    for ((tag, flavour), id) in [(IMM, ""), (IMM_ON, "-onbuild")].into_iter().zip(ids) {
        let remote = format!("{}:{tag}", reg.repo(repo));
        must("docker", &["pull", "--quiet", &remote]);
        let pulled = image_id(&remote);
        let container = must("docker", &["create", &remote]).trim().to_owned();
        let variant = must("docker", &["cp", &format!("{container}:/etc/variant"), "-"]);
        must("docker", &["rm", &container]);
        must("docker", &["rmi", &remote]);
        assert_eq!(pulled, id, "{tag}: the pulled image is the published one");
        assert!(
            variant.contains(&format!("pulled{flavour}\n")),
            "{tag}: {variant:?}"
        );
        ctr_pull(&remote);
    }
}

/// Same image, same compressed bytes: two runs with empty caches give two registries the same index digests — one
/// reading the engine's layer store, the other `docker save` (so both readers give the very same layer bytes) —
/// and a re-publish from the cache alone (no layer read) is a no-op.
#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn compression_is_deterministic_across_runs_and_caches() {
    let (r1, r2) = (Registry::start(), Registry::start());
    let repo = "astronomer/ap-airflow";
    let a = Images::big("deterministic");
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cache = |d: &tempfile::TempDir| d.path().to_str().unwrap().to_owned();
    let (k1, k2) = (cache(&c1), cache(&c2));
    let store = publish(&a, &[r1.repo(repo)], &[], &[("XDG_CACHE_HOME", &k1)]);
    assert_ok(&store);
    assert!(
        !store.stderr.contains("docker save ("),
        "the layer store was read: {store:?}"
    );
    let save = publish(
        &a,
        &[r2.repo(repo)],
        &[],
        &[("XDG_CACHE_HOME", &k2), ("AP_AIRFLOW_DOCKER_SAVE", "1")],
    );
    assert_ok(&save);
    assert!(
        save.stderr
            .contains("reading the images with docker save (AP_AIRFLOW_DOCKER_SAVE=1)"),
        "{save:?}"
    );
    // Both streamed the big layer while it compressed.
    for out in [&store, &save] {
        assert!(out.stderr.contains(") while compressing"), "{out:?}");
    }
    for tag in [IMM, IMM_ON] {
        assert_eq!(r1.digest(repo, tag), r2.digest(repo, tag), "{tag}");
        assert_eq!(r1.manifest(repo, tag), r2.manifest(repo, tag), "{tag}");
    }
    let again = publish(&a, &[r1.repo(repo)], &[], &[("XDG_CACHE_HOME", &k2)]);
    assert_ok(&again);
    assert_eq!(again.blob_bytes(), 0, "{again:?}");
    assert!(again.stdout.contains("sent 0 bytes"), "{again:?}");
}

/// `--sign-key`: every immutable tag's digest (the index) is signed in cosign's format, checked here with openssl
/// alone; a re-publish signs nothing again; the key may come from the environment as PEM text;
/// `verify-published` accepts the key and refuses another one.
#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn signatures_in_cosigns_format_verify_with_openssl() {
    let reg = Registry::start();
    let (repo, mirror) = ("astronomer/ap-airflow", "mirror/ap-airflow");
    let a = Images::new(1, "signed");
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path());
    let other = tempfile::tempdir().unwrap();
    let (_, other_public) = keypair(other.path());
    let key_arg = key.to_str().unwrap();
    let out = publish(&a, &[reg.repo(repo)], &["--sign-key", key_arg], &[]);
    assert_ok(&out);
    for tag in [IMM, IMM_ON, FLOAT, FLOAT_ON] {
        assert!(openssl_verifies(&reg, repo, tag, &public), "{tag}: {out:?}");
        assert!(!openssl_verifies(&reg, repo, tag, &other_public), "{tag}");
        // cosign itself agrees, both ways.
        assert!(cosign_verifies(&reg, repo, tag, &public), "{tag}");
        assert!(!cosign_verifies(&reg, repo, tag, &other_public), "{tag}");
    }
    let again = publish(&a, &[reg.repo(repo)], &["--sign-key", key_arg], &[]);
    assert_ok(&again);
    assert_eq!(again.blob_bytes(), 0, "{again:?}");
    assert!(again.stderr.contains("signed with this key"), "{again:?}");

    let pem = std::fs::read_to_string(&key).unwrap();
    let out = publish(
        &a,
        &[reg.repo(mirror)],
        &[],
        &[("AP_AIRFLOW_SIGN_KEY", &pem)],
    );
    assert_ok(&out);
    assert!(openssl_verifies(&reg, mirror, IMM, &public));
    assert!(!out.all().contains("PRIVATE KEY"), "{out:?}");

    // verify-published: the signature verifies; no SBOM was attached (--no-sbom), which it reports.
    let reference = format!("{}:{IMM}", reg.repo(repo));
    let check = verify_published(&reference, &public);
    assert_eq!(check.code, 1, "{check:?}");
    assert!(check.stdout.contains("signature: ok"), "{check:?}");
    assert!(check.stdout.contains("sbom: no SBOM attached"), "{check:?}");
    let wrong = verify_published(&reference, &other_public);
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(wrong.stdout.contains("signature: MISSING"), "{wrong:?}");
}

/// The other direction: a signature made by `cosign sign` itself (its own key pair; cosign 2.5 cannot import an
/// openssl EC key) is one `verify-published` accepts with cosign's public key; a publish with `--sign-key` later adds
/// its signature under the same `.sig` tag, and cosign verifies both.
#[test]
#[ignore = "needs docker, docker-registry and cosign: scripts/test runs it"]
fn cosign_signatures_are_accepted_by_verify_published() {
    let reg = Registry::start();
    let repo = "astronomer/ap-airflow";
    let a = Images::new(1, "cosigned");
    assert_ok(&publish(&a, &[reg.repo(repo)], &[], &[]));
    let reference = format!("{}:{IMM}", reg.repo(repo));
    let check = |key: &std::path::Path| verify_published(&reference, key);
    let keys = tempfile::tempdir().unwrap();
    let prefix = keys.path().join("cosign");
    let made = cosign_with_password(&[
        "generate-key-pair",
        "--output-key-prefix",
        prefix.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{made:?}");
    let cosign_public = keys.path().join("cosign.pub");
    assert!(check(&cosign_public).stdout.contains("signature: MISSING"));

    let digest = reg.digest(repo, IMM).unwrap();
    let signed = cosign_with_password(&[
        "sign",
        "--key",
        keys.path().join("cosign.key").to_str().unwrap(),
        "--tlog-upload=false",
        "--allow-http-registry=true",
        "--yes",
        &format!("{}@{digest}", reg.repo(repo)),
    ]);
    assert!(signed.status.success(), "{signed:?}");
    let ok = check(&cosign_public);
    assert!(ok.stdout.contains("signature: ok"), "{ok:?}");
    let (key, public) = keypair(keys.path());
    assert!(check(&public).stdout.contains("signature: MISSING"));

    // Our signature joins cosign's under the same .sig tag; cosign verifies both keys' signatures.
    let again = publish(
        &a,
        &[reg.repo(repo)],
        &["--sign-key", key.to_str().unwrap()],
        &[],
    );
    assert_ok(&again);
    assert!(check(&public).stdout.contains("signature: ok"));
    assert!(check(&cosign_public).stdout.contains("signature: ok"));
    assert!(cosign_verifies(&reg, repo, IMM, &public));
    assert!(cosign_verifies(&reg, repo, IMM, &cosign_public));
}

/// `--compression zstd`: tar+zstd layers that containerd and skopeo read; the same image already published with gzip
/// layers is the same image (same IDs), so a zstd publish over it changes nothing.
#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn zstd_layers_pull_with_containerd_and_skopeo() {
    let reg = Registry::start();
    let repo = "astronomer/ap-airflow";
    let a = Images::new(1, "zstd");
    let out = publish(&a, &[reg.repo(repo)], &["--compression", "zstd"], &[]);
    assert_ok(&out);
    let index: serde_json::Value = serde_json::from_slice(&reg.manifest(repo, IMM)).unwrap();
    let child = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let m: serde_json::Value = serde_json::from_slice(&reg.manifest(repo, &child)).unwrap();
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        let blob = reg.blob(repo, l["digest"].as_str().unwrap());
        assert_eq!(&blob[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
    }
    let layout = tempfile::tempdir().unwrap();
    for tag in [IMM, IMM_ON, FLOAT, FLOAT_ON] {
        assert_eq!(
            Some(skopeo_copy(&reg, repo, tag, layout.path())),
            reg.digest(repo, tag)
        );
    }
    ctr_pull(&format!("{}:{IMM}", reg.repo(repo)));

    let gz = "gzip/ap-airflow";
    assert_ok(&publish(&a, &[reg.repo(gz)], &[], &[]));
    let before = reg.state(gz);
    let out = publish(&a, &[reg.repo(gz)], &["--compression", "zstd"], &[]);
    assert_ok(&out);
    assert!(
        out.stderr.contains("already published with this image ID"),
        "{out:?}"
    );
    assert_eq!(out.blob_bytes(), 0);
    assert_eq!(reg.state(gz), before);
}

/// What an older version of the tool published (Docker schema 2, uncompressed layers) holds the same image: a gzip
/// re-publish changes nothing, and a rebuild over it is still refused.
#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn an_older_uncompressed_publish_is_the_same_image() {
    let reg = Registry::start();
    let repo = "astronomer/ap-airflow";
    let a = Images::new(1, "old");
    push_uncompressed(&reg, repo, &format!("{}:{IMM}", a.repo), &[IMM, FLOAT]);
    push_uncompressed(
        &reg,
        repo,
        &format!("{}:{IMM_ON}", a.repo),
        &[IMM_ON, FLOAT_ON],
    );
    let before = reg.state(repo);
    let out = publish(&a, &[reg.repo(repo)], &[], &[]);
    assert_ok(&out);
    assert!(
        out.stderr.contains("already published with this image ID"),
        "{out:?}"
    );
    assert_eq!(out.blob_bytes(), 0, "{out:?}");
    assert_eq!(reg.state(repo), before);
    let b = Images::new(1, "rebuilt");
    let out = publish(&b, &[reg.repo(repo)], &[], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("refused"), "{out:?}");
    assert_eq!(reg.state(repo), before);
}

/// The index under `tag`: (architecture, manifest digest, config digest) of every platform, in index order.
fn platforms_of(reg: &Registry, repo: &str, tag: &str) -> Vec<(String, String, String)> {
    let index: serde_json::Value = serde_json::from_slice(&reg.manifest(repo, tag)).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["platform"]["os"], "linux");
            let digest = m["digest"].as_str().unwrap().to_owned();
            let child: serde_json::Value =
                serde_json::from_slice(&reg.manifest(repo, &digest)).unwrap();
            (
                m["platform"]["architecture"].as_str().unwrap().to_owned(),
                digest,
                child["config"]["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Two architectures built locally (`<tag>` and `<tag>-arm64`): every tag is one index listing both, skopeo resolves
/// it per architecture to that platform's manifest and the very image (config) the engine had; the local `-arm64`
/// names are never published; a layer both platforms share is uploaded once; a re-publish is a no-op.
#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn two_platforms_under_one_index() {
    let reg = Registry::start();
    let repo = "astronomer/ap-airflow";
    let a = Images::platforms(1, "multi", &["amd64", "arm64"]);
    let out = publish(&a, &[reg.repo(repo)], &["--build-number", "3"], &[]);
    assert_ok(&out);
    assert!(!out.stderr.contains("not built locally"), "{out:?}");
    let tags = reg.tags(repo);
    assert_eq!(tags.len(), 6, "{tags:?}");
    assert!(
        tags.iter()
            .all(|t| !t.ends_with("-arm64") && !t.ends_with("-amd64")),
        "{tags:?}"
    );
    for tag in &tags {
        let platforms = platforms_of(&reg, repo, tag);
        let arches: Vec<&str> = platforms.iter().map(|(a, _, _)| a.as_str()).collect();
        assert_eq!(arches, ["amd64", "arm64"], "{tag}");
        let flavour = if tag.contains("onbuild") {
            "-onbuild"
        } else {
            ""
        };
        for (arch, manifest, config) in &platforms {
            // skopeo picks this platform's manifest: its architecture, its layers, its config (the local image).
            let (got_arch, layers, got_config) = skopeo_resolve(&reg, repo, tag, arch);
            let child: serde_json::Value =
                serde_json::from_slice(&reg.manifest(repo, manifest)).unwrap();
            let want_layers: Vec<String> = child["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                (&got_arch, &layers, &got_config),
                (arch, &want_layers, config),
                "{tag} {arch}"
            );
            let local = format!(
                "{}:{}",
                a.repo,
                local_tag(&format!("2.10.5-1-bookworm{flavour}"), arch)
            );
            assert_eq!(*config, image_id(&local), "{tag} {arch}: the local image");
        }
    }
    // The shared layer: first in every platform's manifest, pushed once.
    let layer0 = |digest: &str| -> String {
        let m: serde_json::Value = serde_json::from_slice(&reg.manifest(repo, digest)).unwrap();
        m["layers"][0]["digest"].as_str().unwrap().to_owned()
    };
    let shared: Vec<String> = platforms_of(&reg, repo, IMM)
        .iter()
        .chain(&platforms_of(&reg, repo, IMM_ON))
        .map(|(_, m, _)| layer0(m))
        .collect();
    assert!(shared.windows(2).all(|w| w[0] == w[1]), "{shared:?}");
    let pushes = out
        .stderr
        .lines()
        .filter(|l| l.contains(&format!("push layer {} ", shared[0])))
        .count();
    assert_eq!(pushes, 1, "{out:?}");

    let before = reg.state(repo);
    let again = publish(&a, &[reg.repo(repo)], &["--build-number", "3"], &[]);
    assert_ok(&again);
    assert_eq!(again.blob_bytes(), 0, "{again:?}");
    assert!(again.stdout.contains("sent 0 bytes"), "{again:?}");
    assert_eq!(reg.state(repo), before);
}

/// A line published with amd64 only (said in one line) is a different image once arm64 is added: the immutable tag
/// refuses it, while the next build publishes both platforms and moves the floating tag to them.
#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn adding_a_platform_needs_a_new_build() {
    let reg = Registry::start();
    let repo = "astronomer/ap-airflow";
    let to = [reg.repo(repo)];
    let mut a = Images::platforms(1, "grow", &["amd64"]);
    let out = publish(&a, &to, &[], &[]);
    assert_ok(&out);
    let said: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("not built locally"))
        .collect();
    assert_eq!(said.len(), 1, "{out:?}");
    assert!(
        said[0].starts_with("linux/arm64 not built locally ("),
        "{out:?}"
    );
    assert!(
        said[0].contains("2.10.5-1-bookworm-onbuild-arm64"),
        "{out:?}"
    );
    assert!(
        said[0].ends_with(": publishing linux/amd64 only"),
        "{out:?}"
    );
    assert_eq!(platforms_of(&reg, repo, IMM).len(), 1);
    let before = reg.state(repo);

    // Build 1 again, now with arm64 beside the same amd64 images: another image under the immutable tags.
    let arm = Images::platforms(1, "grow", &["arm64"]);
    for suffix in ["", "-onbuild"] {
        let tag = local_tag(&format!("2.10.5-1-bookworm{suffix}"), "arm64");
        let theirs = format!("{}:{tag}", arm.repo);
        let ours = format!("{}:{tag}", a.repo);
        must("docker", &["tag", &theirs, &ours]);
        a.adopt(ours);
    }
    let out = publish(&a, &to, &[], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("refused {}", to[0])),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("a rebuild needs a new build number"),
        "{out:?}"
    );
    assert_eq!(out.blob_bytes(), 0);
    assert_eq!(reg.state(repo), before, "nothing written");

    // Build 2 with both platforms: published, and the floating tags move to the two-platform index.
    let two = Images::platforms(2, "grow", &["amd64", "arm64"]);
    let out = publish_build2(&two, &[to[0].clone()], &[], &[]);
    assert_ok(&out);
    let build2 = reg.digest(repo, "2.10.5-2-bookworm").unwrap();
    assert_eq!(reg.digest(repo, FLOAT), Some(build2));
    let arches: Vec<String> = platforms_of(&reg, repo, FLOAT)
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    assert_eq!(
        reg.state(repo).iter().find(|(t, _)| t == IMM),
        before.iter().find(|(t, _)| t == IMM)
    );
}

/// A local image whose architecture is not the one its name says is refused in one line, before anything is
/// pushed; so is a platform built for one flavour only (an immutable tag would keep the gap forever).
#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn an_architecture_mismatch_is_refused() {
    let reg = Registry::start();
    let repo = "astronomer/ap-airflow";
    let mut a = Images::platforms(1, "mismatch", &["amd64"]);
    let other = if native_arch() == "amd64" {
        "arm64"
    } else {
        "amd64"
    };
    // The native image loaded again under the other architecture's name: its config still says native.
    let bad = format!("{}:{}", a.repo, local_tag(IMM, other));
    must("docker", &["tag", &format!("{}:{IMM}", a.repo), &bad]);
    a.adopt(bad.clone());
    let out = publish(&a, &[reg.repo(repo)], &[], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    let last = out.stderr.lines().last().unwrap();
    assert!(last.starts_with("ap-airflow: "), "{out:?}");
    assert!(
        last.contains(&format!("{bad} is a linux/{}", native_arch())),
        "{out:?}"
    );
    assert!(last.contains(&format!("linux/{other} image")), "{out:?}");
    assert!(reg.tags(repo).is_empty(), "nothing pushed");

    // A right-architecture image for the base flavour only.
    must("docker", &["rmi", &bad]);
    let arm = Images::platforms(1, "mismatch", &[other]);
    let theirs = format!("{}:{}", arm.repo, local_tag(IMM, other));
    must("docker", &["tag", &theirs, &bad]);
    let out = publish(&a, &[reg.repo(repo)], &[], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("built for one flavour but not the other"),
        "{out:?}"
    );
    assert!(reg.tags(repo).is_empty(), "nothing pushed");
}

#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn rebuilt_image_under_an_existing_immutable_tag_is_refused() {
    let reg = Registry::start();
    let to = [reg.repo("astronomer/ap-airflow")];
    let a = Images::new(1, "a");
    assert_ok(&publish(&a, &to, &[], &[]));
    let before = reg.state("astronomer/ap-airflow");

    let b = Images::new(1, "b-rebuilt");
    let out = publish(&b, &to, &[], &[]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!("refused {}", to[0])),
        "{out:?}"
    );
    let refusals = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("ap-airflow: refused"))
        .count();
    assert_eq!(refusals, 1, "one line per refused repository: {out:?}");
    assert_eq!(out.blob_bytes(), 0);
    assert_eq!(reg.state("astronomer/ap-airflow"), before, "nothing moved");
}

#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn a_new_build_adds_its_immutable_tag_and_moves_floating_never_back() {
    let reg = Registry::start();
    let repo = "astronomer/ap-airflow";
    let to = [reg.repo(repo)];
    let one = Images::new(1, "one");
    assert_ok(&publish(&one, &to, &[], &[]));
    let build1 = reg.digest(repo, IMM).unwrap();

    let two = Images::new(2, "two");
    let out = publish_build2(&two, &[to[0].clone()], &[], &[]);
    assert_ok(&out);
    let build2 = reg
        .digest(repo, "2.10.5-2-bookworm")
        .expect("new immutable tag");
    assert_ne!(build1, build2);
    assert_eq!(
        reg.digest(repo, IMM),
        Some(build1.clone()),
        "old immutable tag kept"
    );
    assert_eq!(
        reg.digest(repo, FLOAT),
        Some(build2.clone()),
        "floating moved"
    );
    assert_eq!(
        reg.digest(repo, FLOAT_ON),
        reg.digest(repo, "2.10.5-2-bookworm-onbuild")
    );

    // Re-running build 1 (even with --move-floating) never moves the floating tag back.
    for extra in [&[][..], &["--move-floating"][..]] {
        let out = publish(&one, &to, extra, &[]);
        assert_ok(&out);
        assert!(
            out.stderr.contains("build 2 of this line is newer"),
            "{out:?}"
        );
        assert_eq!(reg.digest(repo, FLOAT), Some(build2.clone()));
    }

    let next = tool(&["next-build", RELEASE, "--repo", &to[0]], &[]);
    assert_ok(&next);
    assert_eq!(next.stdout.trim(), "3");
}

#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn two_repositories_one_refused_the_other_published_with_mounted_blobs() {
    let reg = Registry::start();
    let (r1, r2, r3) = ("prod/ap-airflow", "mirror/ap-airflow", "third/ap-airflow");
    let a = Images::new(1, "a");
    // r1 already has the same image: skipped there, and the source of mounts into r2.
    assert_ok(&publish(&a, &[reg.repo(r1)], &[], &[]));
    let out = publish(&a, &[reg.repo(r1), reg.repo(r2)], &[], &[]);
    assert_ok(&out);
    assert_published(&reg, r2);
    assert_eq!(
        out.blob_bytes(),
        0,
        "same registry: blobs mounted, not sent: {out:?}"
    );
    assert!(out.stderr.contains("mount layer"), "{out:?}");
    assert!(
        out.stdout.lines().count() >= 9,
        "a table row per tag: {out:?}"
    );

    // r3 holds another build under the same immutable tag: refused there, r2-like repos still published.
    let b = Images::new(1, "b");
    assert_ok(&publish(&b, &[reg.repo(r3)], &[], &[]));
    let before = reg.state(r3);
    let r4 = "fourth/ap-airflow";
    let out = publish(&a, &[reg.repo(r3), reg.repo(r4)], &[], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(reg.state(r3), before);
    assert_published(&reg, r4);
    assert_eq!(reg.digest(r4, IMM), reg.digest(r1, IMM));
}

#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn dev_publishes_immutable_and_ci_tags_only() {
    let reg = Registry::start();
    let repo = "astronomer-dev/ap-airflow";
    let a = Images::new(1, "dev");
    let out = publish(
        &a,
        &[reg.repo(repo)],
        &["--dev", "--build-number", "77"],
        &[],
    );
    assert_ok(&out);
    assert_eq!(
        reg.tags(repo),
        [
            IMM,
            IMM_ON,
            "2.10.5-bookworm-77",
            "2.10.5-bookworm-onbuild-77"
        ]
        .map(String::from)
        .to_vec()
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(
        reg.digest(repo, "2.10.5-bookworm-77"),
        reg.digest(repo, IMM)
    );

    // The production repository of the release file is never a dev target (no traffic: refused up front).
    let out = publish(
        &a,
        &["docker.io/astronomerinc/ap-airflow".into()],
        &["--dev"],
        &[],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("--dev refuses docker.io/astronomerinc/ap-airflow"),
        "{out:?}"
    );
}

#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn dry_run_prints_actions_and_changes_nothing() {
    let reg = Registry::start();
    let repo = "astronomer/ap-airflow";
    let a = Images::new(1, "a");
    let out = publish(&a, &[reg.repo(repo)], &["--dry-run"], &[]);
    assert_ok(&out);
    assert!(reg.tags(repo).is_empty(), "dry run wrote tags");
    assert!(out.stderr.contains("push layer sha256:"), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("put index {}:{IMM}", reg.repo(repo))),
        "{out:?}"
    );
    assert!(out.stdout.contains("would be published"), "{out:?}");
    assert!(out.stdout.contains("sent 0 bytes"), "{out:?}");

    assert_ok(&publish(&a, &[reg.repo(repo)], &[], &[]));
    let before = reg.state(repo);
    let two = Images::new(2, "two");
    let out = publish_build2(
        &two,
        &[reg.repo(repo)],
        &["--dry-run", "--build-number", "5"],
        &[],
    );
    assert_ok(&out);
    assert!(out.stderr.contains("move tag"), "{out:?}");
    assert!(out.stdout.contains("would be moved"), "{out:?}");
    assert_eq!(reg.state(repo), before, "dry run changed the registry");
}

#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn a_registry_going_down_mid_publish_is_finished_by_a_retry() {
    let repo = "astronomer/ap-airflow";
    let a = Images::new(1, "a");
    // Two ways to die: during the first blob upload, and between the immutable tag and its floating move.
    for trigger in [
        format!("PUT /v2/{repo}/blobs/uploads/"),
        format!("PUT /v2/{repo}/manifests/{FLOAT} "),
    ] {
        let mut reg = Registry::start();
        let proxy = CutProxy::start(reg.port, &trigger);
        let via = format!("127.0.0.1:{}/{repo}", proxy.port);
        let out = publish(&a, &[via], &[], &[]);
        assert!(
            proxy.cut.load(std::sync::atomic::Ordering::SeqCst),
            "trigger {trigger:?} never sent"
        );
        assert_eq!(out.code, 1, "{out:?}");
        let last = out.stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("ap-airflow: failed 127.0.0.1:"), "{out:?}");
        assert!(last.contains("registry 127.0.0.1:"), "{out:?}");

        // Whatever is tagged is complete: an immutable tag is never there without all its blobs.
        let state = reg.state(repo);
        assert!(state.iter().all(|(t, _)| t == IMM), "{state:?}");

        // The registry restarts on the same storage; the retry finishes the publish.
        reg.restart();
        let out = publish(&a, &[reg.repo(repo)], &[], &[]);
        assert_ok(&out);
        assert_published(&reg, repo);
    }
}

/// A big layer is uploaded while it compresses (one chunked PATCH, then the PUT naming the digest); the bytes the
/// registry got are the spooled ones another registry receives by the ordinary upload in the same run, skopeo
/// verifies every blob, and a re-publish sends nothing.
#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn layers_upload_while_they_compress() {
    let (r1, r2) = (Registry::start(), Registry::start());
    let repo = "astronomer/ap-airflow";
    let a = Images::big("stream");
    let cache = tempfile::tempdir().unwrap();
    let env = [("XDG_CACHE_HOME", cache.path().to_str().unwrap())];
    let out = publish(&a, &[r1.repo(repo), r2.repo(repo)], &[], &env);
    assert_ok(&out);
    assert!(
        out.stderr.contains(&format!(
            "layers go to {} while they compress",
            r1.repo(repo)
        )),
        "{out:?}"
    );
    let streamed: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("while compressing") && l.contains("pushed layer"))
        .collect();
    assert_eq!(
        streamed.len(),
        1,
        "the one big layer (shared by both flavours): {out:?}"
    );
    assert!(out.stderr.contains("(pushed while compressing)"), "{out:?}");
    // r2, another registry, got the spooled layer the ordinary way: same bytes, same digests.
    assert!(out.stderr.contains("push layer"), "{out:?}");
    for tag in [IMM, IMM_ON, FLOAT, FLOAT_ON] {
        assert_eq!(r1.digest(repo, tag), r2.digest(repo, tag), "{tag}");
    }
    let index: serde_json::Value = serde_json::from_slice(&r1.manifest(repo, IMM)).unwrap();
    let child = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let m: serde_json::Value = serde_json::from_slice(&r1.manifest(repo, &child)).unwrap();
    let big = m["layers"][0]["digest"].as_str().unwrap();
    assert!(m["layers"][0]["size"].as_u64().unwrap() > 6 << 20, "{m}");
    assert_eq!(r1.blob(repo, big), r2.blob(repo, big));
    let layout = tempfile::tempdir().unwrap();
    for tag in [IMM, IMM_ON] {
        assert_eq!(
            Some(skopeo_copy(&r1, repo, tag, layout.path())),
            r1.digest(repo, tag)
        );
    }
    let again = publish(&a, &[r1.repo(repo)], &[], &env);
    assert_ok(&again);
    assert_eq!(again.blob_bytes(), 0, "{again:?}");

    // Build 2 of the same images, with no cache: the floating tag already holds them, so no layer is sent again.
    for suffix in ["", "-onbuild"] {
        let one = format!("{}:2.10.5-1-bookworm{suffix}", a.repo);
        must(
            "docker",
            &[
                "tag",
                &one,
                &format!("{}:2.10.5-2-bookworm{suffix}", a.repo),
            ],
        );
    }
    let empty = tempfile::tempdir().unwrap();
    let two = publish_build2(
        &a,
        &[r1.repo(repo)],
        &[],
        &[("XDG_CACHE_HOME", empty.path().to_str().unwrap())],
    );
    for suffix in ["", "-onbuild"] {
        let _ = std::process::Command::new("docker")
            .args(["rmi", &format!("{}:2.10.5-2-bookworm{suffix}", a.repo)])
            .output();
    }
    assert_ok(&two);
    assert!(!two.stderr.contains("while they compress"), "{two:?}");
    assert_eq!(two.blob_bytes(), 0, "{two:?}");
    assert_eq!(r1.digest(repo, "2.10.5-2-bookworm"), r1.digest(repo, IMM));
}

/// The registry dies while a layer streams to it: the run fails with one line, no tag is written, and a retry
/// against the restarted registry finishes the publish.
#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn a_registry_dying_while_a_layer_streams_is_finished_by_a_retry() {
    let repo = "astronomer/ap-airflow";
    let a = Images::big("stream-cut");
    let mut reg = Registry::start();
    let proxy = CutProxy::start(reg.port, &format!("PATCH /v2/{repo}/blobs/uploads/"));
    let via = format!("127.0.0.1:{}/{repo}", proxy.port);
    // An empty cache: layers stream only when `docker save` runs (cached digests make it unneeded).
    let cache = tempfile::tempdir().unwrap();
    let env = [("XDG_CACHE_HOME", cache.path().to_str().unwrap())];
    let out = publish(&a, &[via], &[], &env);
    assert!(
        proxy.cut.load(std::sync::atomic::Ordering::SeqCst),
        "no layer streamed: {out:?}"
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("streaming to 127.0.0.1:"), "{out:?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("ap-airflow: failed 127.0.0.1:"), "{out:?}");
    assert!(reg.tags(repo).is_empty(), "{:?}", reg.tags(repo));
    reg.restart();
    let out = publish(&a, &[reg.repo(repo)], &[], &env);
    assert_ok(&out);
    assert_published(&reg, repo);
}

#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn next_build_follows_pagination() {
    let reg = Registry::start();
    let repo = "astronomer/ap-airflow";
    let to = reg.repo(repo);
    let empty = tool(&["next-build", RELEASE, "--repo", &to], &[]);
    assert_ok(&empty);
    assert_eq!(empty.stdout.trim(), "1", "absent repository: {empty:?}");

    let a = Images::new(1, "a");
    assert_ok(&publish(&a, std::slice::from_ref(&to), &[], &[]));
    let manifest = reg.manifest(repo, IMM);
    for n in [2, 3, 5, 8, 13] {
        reg.put_manifest(repo, &format!("2.10.5-{n}-bookworm"), &manifest);
    }
    reg.put_manifest(repo, "2.10.5-21-bookworm-onbuild", &manifest);
    reg.put_manifest(repo, "2.10.5-99-bullseye", &manifest);
    reg.put_manifest(repo, "2.10.4-50-bookworm", &manifest);
    assert!(reg.tags(repo).len() > 10);
    for page in ["2", "3", "100"] {
        let out = tool(
            &["next-build", RELEASE, "--repo", &to, "--page-size", page],
            &[],
        );
        assert_ok(&out);
        assert_eq!(out.stdout.trim(), "22", "page size {page}");
    }
}

#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn auth_and_tls_registry() {
    let reg = Registry::start_secure();
    let auth = reg.auth.as_ref().unwrap();
    let repo = "astronomer/ap-airflow";
    let to = [reg.repo(repo)];
    let ca = auth.ca.to_str().unwrap();
    let a = Images::new(1, "a");

    // Untrusted certificate: a clear error, no downgrade to plain HTTP.
    let out = publish(
        &a,
        &to,
        &[],
        &[
            ("REGISTRY_USERNAME", &auth.user),
            ("REGISTRY_PASSWORD", &auth.password),
        ],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("certificate"), "{out:?}");

    // No credentials.
    let out = publish(&a, &to, &["--ca-cert", ca], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("requires authentication and no credentials"),
        "{out:?}"
    );

    // Wrong password: named as such, never printed.
    let wrong = "wrong-Pa55word";
    let out = publish(
        &a,
        &to,
        &["--ca-cert", ca],
        &[
            ("REGISTRY_USERNAME", &auth.user),
            ("REGISTRY_PASSWORD", wrong),
        ],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("authentication to 127.0.0.1:"),
        "{out:?}"
    );
    assert!(out.stderr.contains("failed for user publisher"), "{out:?}");
    assert!(!out.all().contains(wrong), "{out:?}");

    // Credentials from a Docker config.json.
    let cfg = tempfile::tempdir().unwrap();
    let b64 = base64_encode(&format!("{}:{}", auth.user, auth.password));
    std::fs::write(
        cfg.path().join("config.json"),
        format!(
            r#"{{"auths":{{"https://{}":{{"auth":"{b64}"}}}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    let out = publish(
        &a,
        &to,
        &["--ca-cert", ca],
        &[("DOCKER_CONFIG", cfg.path().to_str().unwrap())],
    );
    assert_ok(&out);
    assert_published(&reg, repo);
    assert!(!out.all().contains(&auth.password));

    // And from REGISTRY_USERNAME/REGISTRY_PASSWORD, with the CA from SSL_CERT_FILE.
    let out = tool(
        &["next-build", RELEASE, "--repo", &to[0]],
        &[
            ("REGISTRY_USERNAME", &auth.user),
            ("REGISTRY_PASSWORD", &auth.password),
            ("SSL_CERT_FILE", ca),
        ],
    );
    assert_ok(&out);
    assert_eq!(out.stdout.trim(), "2");
}

/// Docker's credential helpers: `credHelpers` for the registry, then `credsStore`, run as
/// `docker-credential-<name> get` with the server on stdin (a small helper script on PATH).
#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn credential_helpers_from_docker_config() {
    use std::os::unix::fs::PermissionsExt as _;
    let reg = Registry::start_secure();
    let auth = reg.auth.as_ref().unwrap();
    let ca = auth.ca.to_str().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let helper = |name: &str, body: &str| {
        let p = bin.path().join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    helper(
        "aptest",
        &format!(
            r#"[ "$1" = get ] || exit 1
read server
echo "$server" >> "$(dirname "$0")/asked"
case "$server" in
  127.0.0.1:*) printf '{{"ServerURL":"%s","Username":"{}","Secret":"{}"}}' "$server";;
  *) echo "credentials not found in native keychain"; exit 1;;
esac"#,
            auth.user, auth.password
        ),
    );
    helper("broken", "echo 'boom: keychain locked'; exit 3");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cfg = tempfile::tempdir().unwrap();
    let config = |json: String| std::fs::write(cfg.path().join("config.json"), json).unwrap();
    let env = [
        ("DOCKER_CONFIG", cfg.path().to_str().unwrap()),
        ("PATH", path.as_str()),
    ];
    let repo = "astronomer/ap-airflow";
    let a = Images::new(1, "helper");

    // credHelpers names the helper for this registry (a wrong auths entry is not used).
    config(format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}}}},"credHelpers":{{"{}":"aptest"}}}}"#,
        reg.host(),
        base64_encode("publisher:wrong"),
        reg.host()
    ));
    let out = publish(&a, &[reg.repo(repo)], &["--ca-cert", ca], &env);
    assert_ok(&out);
    assert_published(&reg, repo);
    assert!(!out.all().contains(&auth.password));
    let asked = std::fs::read_to_string(bin.path().join("asked")).unwrap();
    assert_eq!(asked.lines().next(), Some(reg.host().as_str()));

    // credsStore for every registry.
    config(r#"{"credsStore":"aptest"}"#.to_owned());
    let to = reg.repo(repo);
    let out = tool(
        &["next-build", RELEASE, "--repo", &to, "--ca-cert", ca],
        &env,
    );
    assert_ok(&out);
    assert_eq!(out.stdout.trim(), "2");

    // A failing helper is named, its error shown in one line.
    config(r#"{"credsStore":"broken"}"#.to_owned());
    let out = tool(
        &["next-build", RELEASE, "--repo", &to, "--ca-cert", ca],
        &env,
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("credential helper docker-credential-broken failed"),
        "{out:?}"
    );
    assert!(out.stderr.contains("boom"), "{out:?}");
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
#[ignore = "needs docker and docker-registry: scripts/test runs it"]
fn bad_input_is_one_clear_line() {
    let port = free_port();
    let a = Images::new(1, "bad");
    // The registry is reached before any image is read: the missing image needs one that answers.
    let live = Registry::start();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "publish".into(),
                RELEASE.into(),
                "--to".into(),
                "127.0.0.1:5000/Bad/Name".into(),
            ],
            "malformed repository reference",
        ),
        (
            vec![
                "publish".into(),
                "9.9.9-1".into(),
                "--to".into(),
                "127.0.0.1:5000/a".into(),
            ],
            "unknown release",
        ),
        (
            vec![
                "publish".into(),
                RELEASE.into(),
                "--from".into(),
                a.repo.clone(),
                "--to".into(),
                format!("127.0.0.1:{port}/a"),
            ],
            "cannot reach registry",
        ),
        (
            vec![
                "next-build".into(),
                RELEASE.into(),
                "--repo".into(),
                format!("127.0.0.1:{port}/a"),
            ],
            "cannot reach registry",
        ),
        (
            vec![
                "publish".into(),
                RELEASE.into(),
                "--from".into(),
                "ap-airflow-regtest/absent".into(),
                "--to".into(),
                live.repo("a"),
            ],
            "not found in the Docker engine",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tool(&args, &[]);
        assert_ne!(out.code, 0, "{args:?}: {out:?}");
        assert!(out.stderr.contains(want), "{args:?}: {out:?}");
        let last = out.stderr.lines().last().unwrap();
        assert!(last.starts_with("ap-airflow: "), "{out:?}");
    }
}

/// Bearer auth as Docker Hub and quay.io do it, against a tiny fake registry + token server: the token is fetched
/// from the challenge's realm with Basic credentials, the service and the repository scope.
#[test]
fn bearer_token_challenge() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
                if req.first() == Some(&0x16) {
                    break; // a TLS ClientHello (the https probe): close, as a plain-HTTP server would fail it
                }
                if req.len() > 65536 {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&req).to_string();
            let Some(line) = text.lines().next().filter(|l| l.ends_with("HTTP/1.1")) else {
                continue; // a TLS hello: not spoken here
            };
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            let auth = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("authorization: ")
                        .or_else(|| l.strip_prefix("Authorization: "))
                })
                .unwrap_or("")
                .to_owned();
            log.lock().unwrap().push(format!("{path} {auth}"));
            let basic = format!("Basic {}", base64_encode("hubuser:hubpass"));
            let (status, extra, body) = if path.starts_with("/token?") {
                if auth == basic
                    && path.contains("scope=repository%3Aastronomer%2Fap-airflow%3Apull")
                {
                    ("200 OK", String::new(), r#"{"token":"tok-123"}"#.to_owned())
                } else {
                    ("401 Unauthorized", String::new(), "{}".to_owned())
                }
            } else if auth == "Bearer tok-123"
                && path.starts_with("/v2/astronomer/ap-airflow/tags/list")
            {
                (
                    "200 OK",
                    String::new(),
                    r#"{"name":"astronomer/ap-airflow","tags":["2.10.5-4-bookworm"]}"#.into(),
                )
            } else {
                (
                    "401 Unauthorized",
                    format!(
                        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\"\r\n"
                    ),
                    "{}".to_owned(),
                )
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let repo = format!("127.0.0.1:{port}/astronomer/ap-airflow");
    let good = [
        ("REGISTRY_USERNAME", "hubuser"),
        ("REGISTRY_PASSWORD", "hubpass"),
    ];
    let out = tool(&["next-build", RELEASE, "--repo", &repo], &good);
    assert_ok(&out);
    assert_eq!(out.stdout.trim(), "5");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("service=fake")),
        "{:?}",
        seen.lock().unwrap()
    );

    let out = tool(
        &["next-build", RELEASE, "--repo", &repo],
        &[
            ("REGISTRY_USERNAME", "hubuser"),
            ("REGISTRY_PASSWORD", "nope-wrong"),
        ],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("failed for user hubuser"), "{out:?}");
    assert!(!out.all().contains("nope-wrong"));
}

/// A small fake registry for the transport: every answer closes its connection; `GET …/tags/list` gets, in turn,
/// the answers of `script` ("503", "close" = the connection closed with no answer), then 200 with one tag. Returns
/// its port and the number of tag-list requests seen.
fn flaky_registry(
    script: &'static [&'static str],
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.first() != Some(&0x16) {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req).to_string();
            let Some(line) = text.lines().next().filter(|l| l.ends_with("HTTP/1.1")) else {
                continue; // the https probe's TLS hello: closed, as a plain-HTTP server would
            };
            let (status, body) = if line.starts_with("GET /v2/ ") {
                ("200 OK", "{}".to_owned())
            } else if line.contains("/tags/list") {
                let n = count.fetch_add(1, Ordering::SeqCst);
                match script.get(n) {
                    Some(&"close") => continue,
                    Some(&"503") => ("503 Service Unavailable", "{}".to_owned()),
                    _ => (
                        "200 OK",
                        r#"{"name":"a/b","tags":["2.10.5-6-bookworm"]}"#.to_owned(),
                    ),
                }
            } else {
                ("404 Not Found", "{}".to_owned())
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

/// An idempotent request is tried again when the registry answers 5xx or the connection breaks, with a line
/// saying so, and the command succeeds; a registry that keeps failing fails the command after three attempts, in
/// one line.
#[test]
fn idempotent_requests_are_retried_on_5xx_and_broken_connections() {
    use std::sync::atomic::Ordering;
    let (port, seen) = flaky_registry(&["503", "close"]);
    let repo = format!("127.0.0.1:{port}/a/b");
    let out = tool(&["next-build", RELEASE, "--repo", &repo], &[]);
    assert_ok(&out);
    assert_eq!(out.stdout.trim(), "7", "{out:?}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "503, a closed connection, then 200"
    );
    let retries: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("trying again"))
        .collect();
    assert_eq!(retries.len(), 2, "{out:?}");
    assert!(retries[0].contains("HTTP 503"), "{out:?}");
    assert!(retries[1].contains("broken connection"), "{out:?}");

    let (port, seen) = flaky_registry(&["503", "503", "503", "503"]);
    let repo = format!("127.0.0.1:{port}/a/b");
    let out = tool(&["next-build", RELEASE, "--repo", &repo], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 3, "three attempts");
    let last = out.stderr.lines().last().unwrap();
    assert!(last.starts_with("ap-airflow: "), "{out:?}");
    assert!(last.contains("HTTP 503"), "{out:?}");
}

/// The real images of a release line (built by `ap-airflow build`; `AP_AIRFLOW_PUBLISH_RELEASE=<line>`, run by
/// scripts/test after each line's build): published into a loopback registry, then pulled and started by Docker
/// (`airflow version`), pulled by containerd, and every tag copied by skopeo.
#[test]
#[ignore = "needs a line's built images: scripts/test runs it per line with AP_AIRFLOW_PUBLISH_RELEASE"]
fn real_image_publish_pull_and_run() {
    let line = std::env::var("AP_AIRFLOW_PUBLISH_RELEASE")
        .expect("AP_AIRFLOW_PUBLISH_RELEASE=<line>, after `ap-airflow build <line>`");
    let plan = tool(&["tags", &line, "--json"], &[]);
    assert_ok(&plan);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let src = format!("ap-airflow-regtest/{}", unique("real"));
    let mut tagged = Vec::new();
    // The arm64 images (`ap-airflow build --platform linux/arm64`), when built: published in the same indexes.
    let demand_arm64 = std::env::var("AP_AIRFLOW_PUBLISH_ARM64").as_deref() == Ok("1");
    let mut arm64 = Vec::new();
    for f in plan.as_array().unwrap() {
        let imm = f["immutable"].as_str().unwrap();
        let theirs = format!("astronomerinc/ap-airflow:{imm}");
        must("docker", &["tag", &theirs, &format!("{src}:{imm}")]);
        tagged.push(format!("{src}:{imm}"));
        let arm_tag = local_tag(imm, "arm64");
        let theirs = format!("astronomerinc/ap-airflow:{arm_tag}");
        let present = std::process::Command::new("docker")
            .args(["image", "inspect", &theirs])
            .output()
            .unwrap()
            .status
            .success();
        if present {
            must("docker", &["tag", &theirs, &format!("{src}:{arm_tag}")]);
            tagged.push(format!("{src}:{arm_tag}"));
            arm64.push(imm.to_owned());
        } else {
            assert!(
                !demand_arm64,
                "AP_AIRFLOW_PUBLISH_ARM64=1 but {theirs} does not exist (ap-airflow build {line} --platform linux/arm64)"
            );
            eprintln!("{theirs} not built: publishing and checking linux/amd64 only");
        }
    }
    let arches: &[&str] = if arm64.is_empty() {
        &["amd64"]
    } else {
        assert_eq!(
            arm64.len(),
            2,
            "both flavours or neither have an arm64 image"
        );
        &["amd64", "arm64"]
    };
    struct Untag(Vec<String>);
    impl Drop for Untag {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .arg("rmi")
                .args(&self.0)
                .output();
        }
    }
    let mut cleanup = Untag(tagged);
    let reg = Registry::start();
    let repo = "astronomer/ap-airflow";
    let cache = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path());
    let out = tool(
        &[
            "publish",
            &line,
            "--from",
            &src,
            "--to",
            &reg.repo(repo),
            "--sign-key",
            key.to_str().unwrap(),
        ],
        &[
            ("XDG_CACHE_HOME", cache.path().to_str().unwrap()),
            ("AP_AIRFLOW_NO_SBOM", "false"),
        ],
    );
    assert_ok(&out);
    eprintln!("{}", out.stdout);
    // Every immutable tag: signed (openssl checks it too) and an SBOM attached, as verify-published says.
    for f in plan.as_array().unwrap() {
        let imm = f["immutable"].as_str().unwrap();
        let reference = format!("{}:{imm}", reg.repo(repo));
        let check = verify_published(&reference, &public);
        assert_ok(&check);
        assert!(check.stdout.contains("signature: ok"), "{check:?}");
        assert!(check.stdout.contains("sbom: ok"), "{check:?}");
        for arch in arches {
            // One SBOM per platform manifest too.
            assert!(
                check.stdout.contains(&format!("sbom linux/{arch}: ok")),
                "{check:?}"
            );
        }
        assert!(openssl_verifies(&reg, repo, imm, &public), "{imm}");
        // cosign reads what publish attached: it verifies the signature and downloads our SPDX document.
        assert!(cosign_verifies(&reg, repo, imm, &public), "{imm}");
        let sbom = cosign(&["download", "sbom", "--allow-http-registry=true", &reference]);
        assert!(sbom.status.success(), "{sbom:?}");
        let doc: serde_json::Value =
            serde_json::from_slice(&sbom.stdout).expect("cosign prints the SBOM");
        assert_eq!(doc["spdxVersion"], "SPDX-2.3", "{imm}");
        let names: Vec<&str> = doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(
            names.contains(&"apache-airflow") && names.contains(&"bash"),
            "{imm}: {names:?}"
        );
    }
    // A second repository of the registry: layers and SBOM mounted, manifests and a signature sent, no probe run.
    let mirror = "mirror/ap-airflow";
    let out = tool(
        &[
            "publish",
            &line,
            "--from",
            &src,
            "--to",
            &reg.repo(repo),
            "--to",
            &reg.repo(mirror),
            "--sign-key",
            key.to_str().unwrap(),
        ],
        &[
            ("XDG_CACHE_HOME", cache.path().to_str().unwrap()),
            ("AP_AIRFLOW_NO_SBOM", "false"),
        ],
    );
    assert_ok(&out);
    assert!(out.blob_bytes() < 64 << 10, "{out:?}");
    assert!(!out.stderr.contains("probing"), "{out:?}");
    for f in plan.as_array().unwrap() {
        let reference = format!("{}:{}", reg.repo(mirror), f["immutable"].as_str().unwrap());
        let check = verify_published(&reference, &public);
        assert_ok(&check);
    }
    let layout = tempfile::tempdir().unwrap();
    // The image tags (cosign's sha256-<hex>.sig/.sbom tags hold attachments, not images).
    for tag in reg
        .tags(repo)
        .into_iter()
        .filter(|t| !t.starts_with("sha256-"))
    {
        assert_index_of_gzip_layers_for(&reg, repo, &tag, arches);
        let copied = skopeo_copy(&reg, repo, &tag, layout.path());
        assert_eq!(Some(copied), reg.digest(repo, &tag), "{tag}");
        // skopeo resolves the tag, per architecture, to the local image of that architecture.
        let immutable = plan
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["immutable"].as_str().unwrap())
            .find(|imm| tag.contains("onbuild") == imm.contains("onbuild"))
            .unwrap();
        for arch in arches {
            let (got, _, config) = skopeo_resolve(&reg, repo, &tag, arch);
            assert_eq!(&got, arch, "{tag}");
            let local = format!("{src}:{}", local_tag(immutable, arch));
            assert_eq!(config, image_id(&local), "{tag} {arch}");
        }
    }
    let airflow = line.rsplit_once('-').unwrap().0;
    for (i, f) in plan.as_array().unwrap().iter().enumerate() {
        let remote = format!("{}:{}", reg.repo(repo), f["immutable"].as_str().unwrap());
        must("docker", &["pull", "--quiet", &remote]);
        cleanup.0.push(remote.clone());
        let version = must(
            "docker",
            &[
                "run",
                "--rm",
                "--network",
                "host",
                &remote,
                "airflow",
                "version",
            ],
        );
        assert!(version.contains(airflow), "{remote}: {version}");
        if i == 0 {
            // containerd downloads every layer into a namespace of its own (the flavours share all but one).
            ctr_pull(&remote);
        }
        if !arm64.is_empty() {
            // The same tag, pulled for arm64, runs an aarch64 image (under emulation here).
            must(
                "docker",
                &["pull", "--quiet", "--platform", "linux/arm64", &remote],
            );
            let machine = must(
                "docker",
                &[
                    "run",
                    "--rm",
                    "--platform",
                    "linux/arm64",
                    "--network",
                    "host",
                    &remote,
                    "uname",
                    "-m",
                ],
            );
            assert_eq!(machine.trim(), "aarch64", "{remote}");
        }
    }
}
