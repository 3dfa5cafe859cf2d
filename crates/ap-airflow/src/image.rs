//! The image contract shared by `build` (build arguments), `verify` and the tests: who runs Airflow in the
//! image and which workspace binaries it carries.

/// The image's user, as in the seed.
pub const ASTRONOMER_USER: &str = "astro";
pub const ASTRONOMER_UID: u32 = 50000;
/// The platform UID allowed to step down to astro (the original's `_apt`/UID 100 with gosu).
pub const PLATFORM_UID: u32 = 100;
pub const ORG: &str = "astronomer";
/// The workspace's binaries copied into the image (cargo binary names; the build context's `bin/<name>`).
pub const RUNTIME_BINARIES: [&str; 3] = ["entrypoint", "tini", "clean-airflow-logs"];
