//! Integration tests: the built `entrypoint` and `tini` against the real kernel, real users, real PostgreSQL and
//! Redis. One test binary (ripgrep style) so the binaries are built once and helpers are shared.

mod airflow3;
mod bounded;
mod privilege;
mod readiness;
mod servers;
mod startup;
mod supervise;
mod util;
