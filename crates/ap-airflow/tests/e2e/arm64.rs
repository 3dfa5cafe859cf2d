//! The linux/arm64 images of the line under test, run under emulation (binfmt_misc + qemu-user-static) on an
//! amd64 host: `ap-airflow build LINE --platform linux/arm64` tags them `<tag>-arm64` locally. `scripts/test` runs
//! these for the newest line only (emulation is slow); they are ignored in a plain `cargo test`.

use std::collections::BTreeMap;
use std::time::Duration;

use ap_airflow::platform::Platform;

use crate::util::{docker, images, say, tail, text, Container, Project};

const PLATFORM: &str = "linux/arm64";

/// The line's arm64 images (base, onbuild), which must exist: a missing one is a failure.
fn arm64_images() -> (String, String) {
    let names = (
        Platform::Arm64.local_tag(&images().base),
        Platform::Arm64.local_tag(&images().onbuild),
    );
    for image in [&names.0, &names.1] {
        let out = docker(&["image", "inspect", "--format", "{{.Architecture}}", image]);
        assert!(
            out.status.success(),
            "image {image} is missing: build it with `ap-airflow build {} --platform linux/arm64`",
            images().ac_version
        );
        assert_eq!(text(&out.stdout).trim(), "arm64", "{image}: architecture");
    }
    names
}

/// `key=value` lines of a shell probe run in `image` as `user`.
fn probe(image: &str, user: &str, script: &str) -> BTreeMap<String, String> {
    Container::run(
        &format!("arm64-{user}"),
        image,
        &["--platform", PLATFORM, "--user", user],
        &["bash", "-c", script],
        Duration::from_secs(600),
    )
    .expect_ok(&format!("probe of {image} as {user}"))
    .facts()
}

#[test]
#[ignore = "needs docker, binfmt_misc and the line's arm64 images: scripts/test runs it"]
fn arm64_image_is_aarch64_runs_airflow_and_steps_root_down_to_astro() {
    let (base, _) = arm64_images();
    let script = r#"
echo "machine=$(uname -m)"
echo "entrypoint=$(od -An -tu2 -j18 -N2 /entrypoint | tr -d ' ')"
echo "uid=$(id -u)"
echo "user=$(id -un)"
echo "airflow=$(airflow version 2>/dev/null | tail -n 1)"
"#;
    say!("probing {base} as root under emulation");
    let f = probe(&base, "0", script);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("<missing>");
    assert_eq!(get("machine"), "aarch64", "{f:#?}");
    assert_eq!(
        get("entrypoint"),
        "183",
        "/entrypoint must be an AArch64 ELF: {f:#?}"
    );
    assert_eq!(get("uid"), "50000", "root must step down to astro: {f:#?}");
    assert_eq!(get("user"), "astro", "{f:#?}");
    assert_eq!(get("airflow"), images().airflow_version, "{f:#?}");
}

#[test]
#[ignore = "needs docker, binfmt_misc and the line's arm64 images: scripts/test runs it"]
fn example_project_builds_from_the_arm64_onbuild_image_and_its_dag_succeeds() {
    let (_, onbuild) = arm64_images();
    let tag = "ap-airflow-e2e/example:arm64";
    say!("building the example project FROM {onbuild} ({PLATFORM}, emulated)");
    let b = Project::example().build_from(&onbuild, Some(PLATFORM), tag, Duration::from_secs(1800));
    assert!(
        b.ok,
        "the example project does not build for arm64:\n{}",
        tail(&b.log, 60)
    );
    say!("built in {:.1}s", b.took.as_secs_f64());
    let arch = docker(&["image", "inspect", "--format", "{{.Architecture}}", tag]);
    assert_eq!(text(&arch.stdout).trim(), "arm64");

    // A throw-away SQLite database in the container: `airflow dags test` runs every task in-process, then the
    // database says how the run and each task ended.
    say!("airflow dags test example_astro under emulation");
    let script = r#"
airflow db migrate >/dev/null
airflow dags test example_astro 2025-01-01 || echo "dags_test_exit=$?"
python - <<'PY'
import os, sqlite3
db = sqlite3.connect(os.path.join(os.environ["AIRFLOW_HOME"], "airflow.db"))
q = "select state from dag_run where dag_id = 'example_astro'"
print("run=" + ",".join(str(r[0]) for r in db.execute(q)))
q = "select task_id, state from task_instance where dag_id = 'example_astro' order by task_id"
print("tasks=" + ",".join(f"{t}:{s}" for t, s in db.execute(q)))
PY
"#;
    let out = Container::run(
        "arm64-dags-test",
        tag,
        &["--platform", PLATFORM],
        &["bash", "-c", script],
        Duration::from_secs(1500),
    );
    let log = out.both();
    let line = |k: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or("<missing>")
            .to_owned()
    };
    assert!(
        out.ok(),
        "the DAG test container failed (exit {:?}):\n{}",
        out.code,
        tail(&log, 60)
    );
    assert_eq!(
        line("dags_test_exit="),
        "<missing>",
        "airflow dags test failed:\n{}",
        tail(&log, 60)
    );
    assert_eq!(line("run="), "success", "{}", tail(&log, 60));
    // hello (bash), shape (requirements.txt's toolz), jq (packages.txt's jq): every task succeeded.
    assert_eq!(
        line("tasks="),
        "hello:success,jq:success,shape:success",
        "{}",
        tail(&log, 60)
    );
}
