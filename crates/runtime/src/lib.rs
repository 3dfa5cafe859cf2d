//! The runtime inside the images: init, privilege step-down, readiness and Airflow start-up.
//!
//! Both binaries (`entrypoint`, `tini`) are thin wrappers over these modules. Everything that talks to the
//! kernel directly lives in `init` and `syscall`; the rest is plain, table-tested logic.

#![warn(clippy::undocumented_unsafe_blocks)]

pub(crate) mod airflow;
pub mod entry;
pub mod init;
pub mod log;
pub mod passwd;
pub(crate) mod privilege;
pub mod probe;
pub(crate) mod syscall;
pub mod tini_args;
pub mod url;
pub(crate) mod wait;
