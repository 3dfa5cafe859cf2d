//! Facts of the built images: metadata from `docker image inspect`, the rest from one probe container each.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use ap_airflow::image;
use serde_json::Value;

use crate::util::{airflow3, images, say, tail, text, Container};

fn inspect(image: &str) -> Value {
    let out = crate::util::docker(&["image", "inspect", image]);
    assert!(
        out.status.success(),
        "docker image inspect {image}: {}",
        text(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    v[0]["Config"].clone()
}

fn label<'a>(config: &'a Value, key: &str) -> &'a str {
    config["Labels"][key].as_str().unwrap_or("<missing>")
}

fn env_of(config: &Value) -> BTreeMap<String, String> {
    config["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
#[ignore = "needs Docker and the line's built images: scripts/test runs it"]
fn metadata_labels_env_user_and_onbuild_triggers() {
    let im = images();
    for (image, onbuild) in [(&im.base, false), (&im.onbuild, true)] {
        let c = inspect(image);
        for (k, v) in [
            ("io.astronomer.docker", "true"),
            ("io.astronomer.docker.distro", "debian"),
            ("io.astronomer.docker.module", "airflow"),
            ("io.astronomer.docker.component", "airflow"),
            ("io.astronomer.docker.uid", "50000"),
            (
                "io.astronomer.docker.airflow.version",
                im.airflow_version.as_str(),
            ),
            ("io.astronomer.docker.ac.version", im.ac_version.as_str()),
        ] {
            assert_eq!(label(&c, k), v, "{image}: label {k}");
        }
        assert_eq!(
            label(&c, "io.astronomer.docker.airflow.onbuild"),
            if onbuild { "true" } else { "<missing>" },
            "{image}: onbuild label"
        );
        let env = env_of(&c);
        assert_eq!(
            env.get("AIRFLOW_HOME").map(String::as_str),
            Some("/usr/local/airflow"),
            "{image}"
        );
        let pythonpath = env.get("PYTHONPATH").cloned().unwrap_or_default();
        assert!(
            pythonpath.split(':').any(|p| p == "/usr/local/airflow"),
            "{image}: PYTHONPATH={pythonpath}"
        );
        assert_eq!(
            env.get("ASTRONOMER_USER").map(String::as_str),
            Some("astro"),
            "{image}"
        );
        assert_eq!(
            env.get("ASTRONOMER_UID").map(String::as_str),
            Some("50000"),
            "{image}"
        );
        let lang = env
            .get("LC_ALL")
            .or(env.get("LANG"))
            .cloned()
            .unwrap_or_default();
        assert!(
            lang.to_uppercase().replace('-', "").contains("UTF8"),
            "{image}: locale {lang:?}"
        );
        assert_eq!(c["User"], "astro", "{image}: USER");
        assert_eq!(c["WorkingDir"], "/usr/local/airflow", "{image}: WORKDIR");
        assert_eq!(
            c["Entrypoint"],
            serde_json::json!(["/entrypoint"]),
            "{image}: ENTRYPOINT"
        );
        assert_eq!(
            c["Cmd"],
            serde_json::json!(["airflow", "--help"]),
            "{image}: CMD"
        );
        let triggers: Vec<&str> = c["OnBuild"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if onbuild {
            // The seed's order: packages.txt → apt as root, requirements.txt → pip, back to astro, the project last.
            let pos = |needles: &[&str]| {
                triggers
                    .iter()
                    .position(|t| needles.iter().all(|n| t.contains(n)))
                    .unwrap_or_else(|| {
                        panic!("{image}: no ONBUILD step with {needles:?} in {triggers:?}")
                    })
            };
            assert!(pos(&["COPY", "packages.txt"]) < pos(&["USER root"]));
            assert!(pos(&["USER root"]) < pos(&["RUN", "packages.txt"]));
            assert!(pos(&["RUN", "packages.txt"]) < pos(&["COPY", "requirements.txt"]));
            assert!(pos(&["COPY", "requirements.txt"]) < pos(&["RUN", "requirements.txt"]));
            assert!(pos(&["RUN", "requirements.txt"]) < pos(&["USER astro"]));
            assert!(
                triggers.last().unwrap().starts_with("COPY"),
                "{image}: project copy last: {triggers:?}"
            );
            assert!(
                triggers.last().unwrap().contains("astro"),
                "{image}: project owned by astro: {triggers:?}"
            );
        } else {
            assert!(
                triggers.is_empty(),
                "{image}: base has ONBUILD steps {triggers:?}"
            );
        }
    }
}

/// Everything a probe shell inside the image reports, as `key=value` lines; the image contract's executables and
/// paths (`ap_airflow::image`) are filled in by `probe`.
const PROBE: &str = r#"
exec 2>&1
echo "uid=$(id -u)"
echo "user=$(id -un)"
echo "groups=$(id -Gn)"
echo "gids=$(id -G)"
echo "home=$HOME"
echo "lang=$(python -c 'import locale, sys; print(sys.getfilesystemencoding(), locale.getpreferredencoding())')"
echo "pythonpath=$(python -c 'import sys; print(":".join(sys.path))')"
for p in @EXECUTABLES@; do
  if [ -f "$p" ] && [ -x "$p" ]; then echo "exec:$p=yes"; else echo "exec:$p=no"; fi
done
for p in @PATHS@; do
  if [ -L "$p" ]; then echo "path:$p=$(stat -c '%U:%G %a' "$p") -> $(readlink "$p")";
  elif [ -e "$p" ]; then echo "path:$p=$(stat -c '%U:%G %a' "$p")"; fi
done
for c in gcc cc g++ c++ clang; do
  if command -v "$c" >/dev/null 2>&1; then echo "compiler:$c=present"; else echo "compiler:$c=absent"; fi
done
echo "airflow_version=$(airflow version 2>/dev/null | tail -n 1)"
echo "cfg:run_as_user=$(airflow config get-value kubernetes_executor run_as_user 2>/dev/null | tail -n 1)"
echo "cfg:lazy_load_plugins=$(airflow config get-value core lazy_load_plugins 2>/dev/null | tail -n 1)"
echo "cfg:update_fab_perms=$(airflow config get-value fab update_fab_perms 2>/dev/null | tail -n 1)"
echo "cfg:operation_timeout=$(airflow config get-value celery operation_timeout 2>/dev/null | tail -n 1)"
echo "cfg:auth_manager=$(airflow config get-value core auth_manager 2>/dev/null | tail -n 1)"
echo "env:AIRFLOW_VERSION=$AIRFLOW_VERSION"
# Airflow 3 moved the API's auth backends to FAB's section.
case "$AIRFLOW_VERSION" in 3.*) section=fab ;; *) section=api ;; esac
backends=$(airflow config get-value "$section" auth_backends 2>/dev/null | tail -n 1)
echo "cfg:auth_backends=$backends"
if python -c 'import importlib, sys
for m in sys.argv[1].split(","):
    importlib.import_module(m.strip())' "$backends" >/dev/null 2>&1; then
  echo "auth_backends_import=ok"
else
  echo "auth_backends_import=failed"
fi
echo "cfg:override=$(AIRFLOW__CORE__LAZY_LOAD_PLUGINS=True airflow config get-value core lazy_load_plugins 2>/dev/null | tail -n 1)"
pip check >/tmp/pip-check 2>&1; echo "pip_check=$?"
sed 's/^/pip_check_out: /' /tmp/pip-check | head -n 20
"#;

fn probe_script() -> String {
    let paths: Vec<&str> = image::PATHS.iter().map(|p| p.path).collect();
    PROBE
        .replace("@EXECUTABLES@", &image::EXECUTABLES.join(" "))
        .replace("@PATHS@", &paths.join(" "))
}

fn probe(image: &str) -> BTreeMap<String, String> {
    Container::run(
        "probe",
        image,
        &[],
        &["bash", "-c", &probe_script()],
        Duration::from_secs(300),
    )
    .expect_ok(&format!("probe shell in {image}"))
    .facts()
}

#[test]
#[ignore = "needs Docker and the line's built images: scripts/test runs it"]
fn runtime_facts_user_paths_config_defaults_pip_check_and_no_compiler() {
    let im = images();
    let t0 = Instant::now();
    let f = probe(&im.base);
    say!(
        "probe of {} took {:.1}s",
        im.base,
        t0.elapsed().as_secs_f64()
    );
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("<missing>");
    let report = || format!("probe output:\n{f:#?}");

    assert_eq!(
        get("uid"),
        image::ASTRONOMER_UID.to_string(),
        "{}",
        report()
    );
    assert_eq!(get("user"), image::ASTRONOMER_USER, "{}", report());
    assert!(
        get("groups")
            .split(' ')
            .any(|g| g == image::ASTRONOMER_GROUP),
        "{}",
        report()
    );
    let gid = image::ASTRONOMER_GROUP_GID.to_string();
    assert!(get("gids").split(' ').any(|g| g == gid), "{}", report());
    assert!(get("lang").to_lowercase().contains("utf-8"), "{}", report());
    assert!(
        get("pythonpath")
            .split(':')
            .any(|p| p == "/usr/local/airflow"),
        "{}",
        report()
    );
    for p in image::EXECUTABLES {
        assert_eq!(
            get(&format!("exec:{p}")),
            "yes",
            "{p} executable; {}",
            report()
        );
    }
    // Owners, groups and modes (the contract `ap-airflow verify` checks too); a path with none only has to exist.
    for p in image::PATHS {
        let got = get(&format!("path:{}", p.path));
        match p.stat() {
            Some(want) => assert_eq!(got, want, "{}; {}", p.path, report()),
            None => assert_ne!(got, "<missing>", "{}; {}", p.path, report()),
        }
    }
    for c in ["gcc", "cc", "g++", "c++", "clang"] {
        assert_eq!(get(&format!("compiler:{c}")), "absent", "{}", report());
    }
    assert_eq!(get("airflow_version"), im.airflow_version, "{}", report());
    assert_eq!(
        get("env:AIRFLOW_VERSION"),
        im.airflow_version,
        "{}",
        report()
    );
    if airflow3() {
        // Airflow 3 has no run_as_user; FAB is the auth manager, as in the seed's images.
        assert_eq!(
            get("cfg:auth_manager"),
            "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
            "{}",
            report()
        );
    } else {
        assert_eq!(get("cfg:run_as_user"), "50000", "{}", report());
    }
    assert_eq!(get("cfg:operation_timeout"), "10.0", "{}", report());
    assert_eq!(get("cfg:lazy_load_plugins"), "False", "{}", report());
    assert_eq!(get("cfg:update_fab_perms"), "False", "{}", report());
    assert!(!get("cfg:auth_backends").trim().is_empty(), "{}", report());
    assert_eq!(get("auth_backends_import"), "ok", "{}", report());
    assert_eq!(
        get("cfg:override"),
        "True",
        "an env var overrides the image default; {}",
        report()
    );
    assert_eq!(get("pip_check"), "0", "{}", report());
}

#[test]
#[ignore = "needs Docker and the line's built images: scripts/test runs it"]
fn onbuild_image_runs_the_same_airflow() {
    let im = images();
    let out = Container::run(
        "onbuild-version",
        &im.onbuild,
        &[],
        &[
            "bash",
            "-c",
            "id -u; airflow version 2>/dev/null | tail -n 1",
        ],
        Duration::from_secs(120),
    )
    .expect_ok("airflow version in the onbuild image");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        ["50000", im.airflow_version.as_str()],
        "{}",
        out.both()
    );
}

#[test]
#[ignore = "needs Docker and the line's built images: scripts/test runs it"]
fn ap_airflow_verify_accepts_both_built_images() {
    let im = images();
    for image in [&im.base, &im.onbuild] {
        let t0 = Instant::now();
        let (status, stdout, stderr) = crate::util::run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_ap-airflow"))
                .current_dir(crate::util::workspace_root())
                .args(["verify", image]),
            Duration::from_secs(300),
        );
        say!(
            "ap-airflow verify {image}: {:?} in {:.1}s",
            status,
            t0.elapsed().as_secs_f64()
        );
        assert!(
            status.is_some_and(|s| s.success()),
            "ap-airflow verify {image} failed ({status:?}):\n{}\n{}",
            tail(&stdout, 40),
            tail(&stderr, 40)
        );
    }
}
