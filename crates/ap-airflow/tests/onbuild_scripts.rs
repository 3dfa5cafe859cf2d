//! The onbuild guard scripts (`images/onbuild/ap-onbuild-packages`, `ap-onbuild-requirements`) run with `sh` on
//! the host, in their `--check` mode: their parsing needs no Docker, no apt and no pip.

use std::path::PathBuf;
use std::process::Command;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../images/onbuild")
        .join(name)
}

/// Run `sh SCRIPT --check FILE` on a temp file holding `contents`: (exit code, stdout + stderr).
fn check(name: &str, contents: &[u8]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("list.txt");
    std::fs::write(&file, contents).unwrap();
    let out = Command::new("sh")
        .arg(script(name))
        .arg("--check")
        .arg(&file)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
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
