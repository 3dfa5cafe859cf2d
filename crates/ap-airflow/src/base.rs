//! `ap-airflow base` (to be written).

use std::process::ExitCode;

use crate::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Release line, e.g. 2.10.5-1 (default: the newest in the release file).
    pub release: Option<String>,
}

pub fn run(_ctx: &Context, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`ap-airflow base` is not implemented yet")
}
