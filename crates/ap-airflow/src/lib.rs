//! `ap-airflow`: builds, locks, verifies and publishes Astronomer's Airflow images.
//! Each subcommand lives in its own module with its `Args` and `run`.

use std::path::PathBuf;

pub(crate) mod attach;
pub mod base;
pub mod build;
pub(crate) mod compress;
pub mod cross;
pub(crate) mod digest;
pub(crate) mod docker;
pub mod image;
pub(crate) mod layer_store;
pub(crate) mod local;
pub mod lock;
pub mod next_build;
pub(crate) mod output;
pub mod platform;
pub mod publish;
pub(crate) mod registry;
pub mod release;
pub mod sbom;
pub mod tags;
pub mod verify;
pub mod verify_published;
pub(crate) mod workspace;

/// What every subcommand may need: where the release file is.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub releases_path: Option<PathBuf>,
}

impl Context {
    pub fn releases(&self) -> Result<release::ReleaseFile, release::ReleaseError> {
        let path = release::locate(self.releases_path.as_deref())?;
        release::ReleaseFile::load(&path)
    }
}
