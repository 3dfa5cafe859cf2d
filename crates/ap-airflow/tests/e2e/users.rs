//! Who Airflow runs as: started as root or as the platform's UID 100 the entrypoint steps down to astro;
//! started as any other UID (OpenShift style, `--user 12345:0`) it keeps that UID and still works.

use std::collections::BTreeMap;
use std::time::Duration;

use ap_airflow::image;

use crate::util::{images, Container};

const PROBE: &str = r#"
echo "uid=$(id -u)"
echo "gids=$(id -G)"
echo "home=$HOME"
if touch "$HOME/.e2e-write" 2>/dev/null; then echo "home_writable=yes"; else echo "home_writable=no"; fi
echo "airflow=$(airflow version 2>/dev/null | tail -n 1)"
"#;

fn probe_as(user: &str) -> BTreeMap<String, String> {
    Container::run(
        &format!("user-{user}"),
        &images().base,
        &["--user", user],
        &["bash", "-c", PROBE],
        Duration::from_secs(180),
    )
    .expect_ok(&format!("probe with --user {user}"))
    .facts()
}

fn assert_astro(user: &str) {
    let f = probe_as(user);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("<missing>");
    assert_eq!(
        get("uid"),
        image::ASTRONOMER_UID.to_string(),
        "--user {user} should run as astro: {f:#?}"
    );
    let gid = image::ASTRONOMER_GROUP_GID.to_string();
    assert!(
        get("gids").split(' ').any(|g| g == gid),
        "--user {user}: astrogroup missing: {f:#?}"
    );
    assert!(
        !get("gids").split(' ').any(|g| g == "0"),
        "--user {user}: kept root's group: {f:#?}"
    );
    assert_eq!(get("home"), image::ASTRONOMER_HOME, "--user {user}: {f:#?}");
    assert_eq!(get("home_writable"), "yes", "--user {user}: {f:#?}");
    assert_eq!(
        get("airflow"),
        images().airflow_version,
        "--user {user}: {f:#?}"
    );
}

#[test]
#[ignore = "needs Docker and the line's built images: scripts/test runs it"]
fn started_as_root_runs_as_astro() {
    assert_astro("0");
}

#[test]
#[ignore = "needs Docker and the line's built images: scripts/test runs it"]
fn started_as_platform_uid_100_steps_down_to_astro() {
    assert_astro("100");
}

#[test]
#[ignore = "needs Docker and the line's built images: scripts/test runs it"]
fn started_as_an_arbitrary_uid_still_works() {
    let f = probe_as("12345:0");
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("<missing>");
    assert_eq!(get("uid"), "12345", "{f:#?}");
    assert_eq!(get("home_writable"), "yes", "HOME must be writable: {f:#?}");
    assert_eq!(get("airflow"), images().airflow_version, "{f:#?}");
}
