//! End-to-end tests of the built images: one test binary (`cargo test -p ap-airflow --test e2e`).
//!
//! They need a Docker engine and the images `ap-airflow build` made of the default release line (or of
//! `AP_AIRFLOW_E2E_RELEASE`), so each is `#[ignore]`d: a plain `cargo test` lists them as ignored, never as passed.
//! `scripts/test` runs them with `-- --ignored`; there a missing image or Docker engine is a failure, never a skip.
//! Run them one at a time (`-- --test-threads=1`): each starts Airflow containers on the host network.
//!
//! * `harness`: the PostgreSQL guard and the helpers the other tests lean on (ports, polling and Redis come from
//!   the workspace's test-support crate).
//! * `image`: facts of the base and onbuild images (user, labels, env, paths, config defaults, `pip check`, …).
//! * `onbuild`: projects built FROM the onbuild image (packages.txt, requirements.txt, pin refusal, caching).
//! * `executors`: LocalExecutor and CeleryExecutor against PostgreSQL and Redis, `/health`, a DAG run to
//!   success, and `docker stop` of every component within its grace period.
//! * `users`: started as root, as the platform UID 100 and as an arbitrary UID.
//! * `chart`: the official Helm chart's invocations (jobs, components, probes, groomer sidecar, grace periods)
//!   replayed with `docker run` against PostgreSQL and Redis.

mod arm64;
mod chart;
mod executors;
mod harness;
mod image;
mod onbuild;
mod users;
mod util;
