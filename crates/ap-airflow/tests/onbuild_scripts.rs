//! The onbuild guard scripts (`images/onbuild/ap-onbuild-packages`, `ap-onbuild-requirements`) run with `sh` on
//! the host, in their `--check` mode: their parsing needs no Docker, no apt and no pip.

use std::path::PathBuf;
use std::process::Command;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../images/onbuild")
        .join(name)
}

/// Run `sh SCRIPT --check FILE` on a temp file holding `contents`: (exit code, stdout + stderr). Debian images
/// have mawk as `awk`; when the host has it too, the script runs with both it and the default `awk`, which must
/// agree.
fn check(name: &str, contents: &[u8]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("list.txt");
    std::fs::write(&file, contents).unwrap();
    let mut paths = vec!["/usr/bin:/bin".to_string()];
    if std::path::Path::new("/usr/bin/mawk").exists() {
        let bin = dir.path().join("mawk-bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink("/usr/bin/mawk", bin.join("awk")).unwrap();
        paths.push(format!("{}:/usr/bin:/bin", bin.display()));
    }
    let results: Vec<(i32, String)> = paths
        .iter()
        .map(|path| {
            let out = Command::new("sh")
                .arg(script(name))
                .arg("--check")
                .arg(&file)
                .env_clear()
                .env("PATH", path)
                .output()
                .unwrap();
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            (out.status.code().unwrap_or(-1), text)
        })
        .collect();
    for r in &results[1..] {
        assert_eq!(r, &results[0], "awk and mawk disagree");
    }
    results.into_iter().next().unwrap()
}

#[test]
fn packages_accept_only_name_arch_version() {
    let (rc, out) = check(
        "ap-onbuild-packages",
        b"# tools\r\njq tree\r\ng++ libpq5:amd64\ncurl=7.88.1-10+deb12u5 libc6:kfreebsd-amd64 # comment\n\n",
    );
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("lists: jq tree g++ libpq5:amd64 curl=7.88.1-10+deb12u5 libc6:kfreebsd-amd64"),
        "{out}"
    );
    // Issue #11 item 13: apt reads a trailing - as "remove" and + as "install"; options, shell words, capitals.
    for bad in [
        "sudo-",
        "bash:amd64-",
        "jq+",
        "jq=1.6-",
        "jq=1.6+",
        "jq:amd64+",
        "jq=v1",
        "-y",
        "--allow-unauthenticated",
        "jq;rm",
        "Jq",
        "a",
        "jq:",
        "jq=",
        "jq:-amd64",
    ] {
        let (rc, out) = check("ap-onbuild-packages", format!("curl\n{bad}\n").as_bytes());
        assert_eq!(rc, 1, "{bad} was accepted: {out}");
        assert!(
            out.contains("not a Debian package name") && out.contains(bad),
            "{bad}: {out}"
        );
    }
}

#[test]
fn packages_file_may_be_empty_but_must_exist() {
    let (rc, out) = check("ap-onbuild-packages", b"# nothing\n\n");
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("lists no packages"), "{out}");
}

/// What must be refused, with the text the refusal must quote.
const AIRFLOW_PINS: &[(&str, &str)] = &[
    ("apache-airflow==2.10.5", "apache-airflow==2.10.5"),
    ("apache-airflow>=2", "apache-airflow>=2"),
    ("apache-airflow~=2.10", "apache-airflow~=2.10"),
    (
        "apache-airflow[celery]==2.10.5",
        "apache-airflow[celery]==2.10.5",
    ),
    (" Apache_Airflow == 2.10.5", "Apache_Airflow == 2.10.5"),
    ("apache.airflow<3", "apache.airflow<3"),
    ("apache-airflow-core==3.3.2", "apache-airflow-core==3.3.2"),
    (
        "Apache_Airflow.Task-SDK>=1.0",
        "Apache_Airflow.Task-SDK>=1.0",
    ),
    ("apache-airflow===2.10.5", "apache-airflow===2.10.5"),
    (
        "apache-airflow==2.10.5 --hash=sha256:00",
        "apache-airflow==2.10.5",
    ),
    // Issue #11 item 14: PEP 503 normalisation, pip's line syntax, direct and VCS references.
    ("apache--airflow==2.9", "apache--airflow==2.9"),
    ("apache_.airflow==2.9", "apache_.airflow==2.9"),
    ("apache-airflow (==2.9)", "apache-airflow (==2.9)"),
    ("apache-airflow \\\n  ==2.9", "apache-airflow   ==2.9"),
    ("apache-airflow\\\n==2.9 # pinned", "apache-airflow==2.9"),
    (
        "-e git+https://github.com/apache/airflow.git#egg=apache-airflow",
        "#egg=apache-airflow",
    ),
    (
        "--editable=git+https://github.com/apache/airflow.git@v3#egg=apache-airflow-core",
        "#egg=apache-airflow-core",
    ),
    (
        "git+https://github.com/apache/airflow.git@2.9.0#egg=apache_airflow",
        "#egg=apache_airflow",
    ),
    (
        "git+https://github.com/apache/airflow.git@2.9.0",
        "apache/airflow.git@2.9.0",
    ),
    (
        "https://files.example.com/apache_airflow-2.9.0-py3-none-any.whl",
        "apache_airflow-2.9.0-py3-none-any.whl",
    ),
    (
        "./wheels/apache_airflow_core-3.3.2-py3-none-any.whl",
        "apache_airflow_core-3.3.2",
    ),
    (
        "/tmp/apache-airflow-2.9.0.tar.gz",
        "apache-airflow-2.9.0.tar.gz",
    ),
    (
        "apache-airflow @ https://example.com/x.whl",
        "apache-airflow @ https://example.com/x.whl",
    ),
    (
        "apache-airflow[celery]@file:///wheels/x.whl",
        "apache-airflow[celery]@file:///wheels/x.whl",
    ),
];

#[test]
fn requirements_refuse_every_airflow_pin_and_direct_reference() {
    for (pin, quoted) in AIRFLOW_PINS {
        for (how, text) in [
            ("LF", format!("# a user's pin\ntoolz==1.0.0\n{pin}\n")),
            (
                "CRLF",
                format!(
                    "# a user's pin\r\ntoolz==1.0.0\r\n{}\r\n",
                    pin.replace('\n', "\r\n")
                ),
            ),
            ("last line, no newline", format!("toolz==1.0.0\n{pin}")),
        ] {
            let (rc, out) = check("ap-onbuild-requirements", text.as_bytes());
            assert_eq!(rc, 1, "{pin:?} ({how}) was accepted: {out}");
            assert!(
                out.contains(quoted),
                "{pin:?} ({how}): the line is not quoted: {out}"
            );
            assert!(
                out.contains("base image") && out.contains("change the FROM line"),
                "{pin:?} ({how}): {out}"
            );
        }
    }
    // A UTF-8 byte order mark before the first line hides nothing.
    let mut bom = b"\xef\xbb\xbfapache-airflow==2.9\n".to_vec();
    let (rc, out) = check("ap-onbuild-requirements", &bom);
    assert_eq!(rc, 1, "BOM: {out}");
    assert!(out.contains(":1:apache-airflow==2.9"), "{out}");
    bom.extend_from_slice(b"toolz\n");
    assert_eq!(check("ap-onbuild-requirements", &bom).0, 1);
}

#[test]
fn requirements_allow_providers_and_an_unpinned_airflow() {
    let text = "\u{feff}# providers and everything else are fine\n\
        apache-airflow-providers-amazon==9.1.0\n\
        apache-airflow-providers-sqlite\n\
        apache_airflow_providers_google>=10 ; python_version >= \"3.11\"\n\
        https://files.example.com/apache_airflow_providers_amazon-9.1.0-py3-none-any.whl\n\
        git+https://github.com/example/airflow-plugins.git#egg=airflow-plugins\n\
        toolz==1.0.0 \\\n    --hash=sha256:00\n\
        apache-airflow\n\
        apache-airflow[celery]\n\
        apache-airflow ; python_version >= \"3\"\n\
        --index-url https://pypi.org/simple\n\
        airflow-code-editor==8.0  # not Airflow itself\n";
    let (rc, out) = check("ap-onbuild-requirements", text.as_bytes());
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("no pin of apache-airflow"), "{out}");
    let (rc, out) = check("ap-onbuild-requirements", b"# nothing\n\n");
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("lists no requirements"), "{out}");
}

#[test]
fn requirements_expand_environment_variables_as_pip_does() {
    // pip replaces ${NAME} from the environment before it reads the requirement.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("requirements.txt");
    std::fs::write(&file, "toolz\n${AIRFLOW_PKG}==2.9\n${UNSET_PKG}==1\n").unwrap();
    let out = Command::new("sh")
        .arg(script("ap-onbuild-requirements"))
        .arg("--check")
        .arg(&file)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AIRFLOW_PKG", "apache-airflow")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(":2:${AIRFLOW_PKG}==2.9"), "{err}");
    assert!(!err.contains("UNSET_PKG"), "{err}");
}
