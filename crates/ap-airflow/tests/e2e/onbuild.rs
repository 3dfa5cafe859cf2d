//! Projects built FROM the onbuild image: the example project, a DAG-only rebuild from cache, packages.txt with
//! CRLF line ends and comments, a provider requirement, and every way of pinning apache-airflow refused.

use std::time::Duration;

use crate::util::{example_image, images, metric, say, tail, Container, ImageGuard, Project};

const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

#[test]
#[ignore = "needs Docker and the line's built images: scripts/test runs it"]
fn example_project_builds_runs_its_dag_and_rebuilds_a_dag_change_from_cache() {
    let image = example_image();

    // What the ONBUILD steps put in: jq from packages.txt, toolz from requirements.txt, the project owned by astro,
    // a DAG that imports cleanly and the plugin.
    let script = r#"
        set -e
        jq --version
        python -c 'import toolz; print("toolz", toolz.__version__)'
        stat -c 'owner %U %n' dags/example_astro.py plugins/example_plugin.py packages.txt
        AIRFLOW__CORE__LOAD_EXAMPLES=False python -c '
try:  # Airflow 3
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
b = DagBag()
print("import errors:", dict(b.import_errors))
print("dags:", " ".join(sorted(b.dag_ids)))' 2>/dev/null
        airflow plugins -o plain 2>/dev/null | grep -o example_astro_plugin
        pip check
    "#;
    let out = Container::run(
        "example-facts",
        image,
        &[],
        &["bash", "-c", script],
        Duration::from_secs(300),
    )
    .expect_ok("the example project image");
    let s = out.stdout;
    assert!(s.contains("jq-1."), "jq from packages.txt:\n{s}");
    assert!(
        s.contains("toolz 1.0.0"),
        "toolz from requirements.txt:\n{s}"
    );
    assert_eq!(
        s.matches("owner astro ").count(),
        3,
        "project files owned by astro:\n{s}"
    );
    assert!(
        s.contains("import errors: {}"),
        "the DAG folder has import errors:\n{s}"
    );
    assert!(
        s.contains("dags: example_astro\n"),
        "example_astro is not the one DAG found:\n{s}"
    );
    assert!(
        s.lines().any(|l| l.trim() == "example_astro_plugin"),
        "plugin not listed:\n{s}"
    );

    // The ONBUILD COPY keeps $AIRFLOW_HOME writable by group root: an arbitrary UID (OpenShift) still runs Airflow.
    let out = Container::run(
        "example-arbitrary-uid",
        image,
        &["--user", "12345:0"],
        &[
            "bash",
            "-c",
            "stat -c 'home %U:%G %a' \"$AIRFLOW_HOME\" && airflow version 2>/dev/null",
        ],
        Duration::from_secs(300),
    )
    .expect_ok("the example project image as --user 12345:0");
    assert!(out.stdout.contains("home astro:root 775"), "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim() == images().airflow_version),
        "airflow version as an arbitrary UID:\n{}",
        out.stdout
    );

    // A DAG-only change: the same project with one DAG edited and one added rebuilds from the cache
    // (the example image above is that cache): no apt, no pip, only the last COPY runs.
    let p = Project::example();
    let dag = std::fs::read_to_string(p.path("dags/example_astro.py")).unwrap();
    p.write(
        "dags/example_astro.py",
        &format!("{dag}\n# edited by the e2e test\n"),
    );
    p.write("dags/second.py", "# a second DAG file, no DAG in it\n");
    let tag = format!("ap-airflow-e2e/example:dag-change-{}", std::process::id());
    let _guard = ImageGuard(tag.clone());
    let b = p.build(&tag, BUILD_TIMEOUT);
    assert!(b.ok, "DAG-only rebuild failed:\n{}", tail(&b.log, 40));
    say!("DAG-only rebuild took {:.2}s", b.took.as_secs_f64());
    let triggers = onbuild_trigger_count();
    let cached = b.log.matches("Using cache").count();
    assert!(
        cached >= triggers - 1,
        "a DAG-only change should reuse every ONBUILD step but the project COPY ({} of {triggers} cached):\n{}",
        cached,
        b.log
    );
    for rerun in [
        "ap-onbuild: installing",
        "apt-get",
        "Get:1",
        "Requirement already satisfied",
        "Collecting",
    ] {
        assert!(
            !b.log.contains(rerun),
            "apt or pip ran again on a DAG-only change ({rerun:?}):\n{}",
            b.log
        );
    }
    metric("dag_only_rebuild_s", b.took.as_secs_f64());
    assert!(
        b.took < Duration::from_secs(30),
        "DAG-only rebuild took {:?}",
        b.took
    );
}

fn onbuild_trigger_count() -> usize {
    let out = crate::util::docker(&[
        "image",
        "inspect",
        "--format",
        "{{len .Config.OnBuild}}",
        &images().onbuild,
    ]);
    crate::util::text(&out.stdout)
        .trim()
        .parse()
        .expect("ONBUILD trigger count")
}

/// packages.txt as Windows editors save it, with comments, blank lines and two names on one line.
const CRLF_PACKAGES: &str =
    "# Debian packages for this project\r\n\r\n   \r\njq\r\n# tree lists folders\r\ntree  # inline comment\r\n\r\n";

#[test]
#[ignore = "needs Docker and the line's built images: scripts/test runs it"]
fn crlf_packages_and_a_provider_requirement_build_and_every_airflow_pin_is_refused() {
    let p = Project::example();
    p.write("packages.txt", CRLF_PACKAGES);
    p.write(
        "requirements.txt",
        "# providers are fine: this one is part of the release's lock\napache-airflow-providers-sqlite\ntoolz==1.0.0\n",
    );
    let tag = format!("ap-airflow-e2e/crlf:{}", std::process::id());
    let _guard = ImageGuard(tag.clone());
    let b = p.build(&tag, BUILD_TIMEOUT);
    assert!(
        b.ok,
        "CRLF packages.txt + provider requirement failed to build:\n{}",
        tail(&b.log, 60)
    );
    say!(
        "CRLF/provider project built in {:.1}s",
        b.took.as_secs_f64()
    );
    let out = Container::run(
        "crlf-facts",
        &tag,
        &[],
        &[
            "bash",
            "-c",
            "command -v jq tree && python -c 'import airflow.providers.sqlite as p; print(\"sqlite provider ok\")'",
        ],
        Duration::from_secs(120),
    )
    .expect_ok("packages from a CRLF packages.txt");
    assert!(
        out.stdout.contains("/usr/bin/jq") && out.stdout.contains("/usr/bin/tree"),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("sqlite provider ok"), "{}", out.both());

    // Every way of pinning apache-airflow is refused with a message that says to change the base image. The
    // packages.txt above stays, so the apt step comes from the cache and each build stops at the pip step.
    let pins = [
        "apache-airflow==2.10.5",
        "apache-airflow>=2",
        "apache-airflow~=2.10",
        "apache-airflow[celery]==2.10.5",
        " Apache_Airflow == 2.10.5",
        "apache.airflow<3",
        // Airflow 3's distributions under the meta-package: pinning them changes Airflow all the same.
        "apache-airflow-core==3.3.2",
        "Apache_Airflow.Task-SDK>=1.0",
    ];
    for pin in pins {
        p.write(
            "requirements.txt",
            &format!("# a user's pin\ntoolz==1.0.0\n{pin}\n"),
        );
        let tag = format!("ap-airflow-e2e/pinned:{}", std::process::id());
        let _guard = ImageGuard(tag.clone());
        let b = p.build(&tag, BUILD_TIMEOUT);
        say!(
            "pin {pin:?}: refused={} in {:.1}s",
            !b.ok,
            b.took.as_secs_f64()
        );
        assert!(
            !b.ok,
            "requirements.txt with {pin:?} was accepted:\n{}",
            tail(&b.log, 30)
        );
        let log = b.log.to_lowercase();
        assert!(
            log.contains("base image")
                && log.contains("change")
                && log.contains(&pin.trim().to_lowercase()),
            "the refusal of {pin:?} should quote the line and say to change the base image:\n{}",
            tail(&b.log, 30)
        );
        assert!(
            !log.contains("collecting"),
            "pip ran before refusing {pin:?}:\n{}",
            tail(&b.log, 30)
        );
    }
}
