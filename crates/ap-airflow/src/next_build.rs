//! `ap-airflow next-build`: the next free build number of a release line in a repository.

use std::process::ExitCode;

use crate::registry::{Client, RegistryArgs, Repository};
use crate::release::{Flavour, TagScheme};
use crate::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Release line, e.g. 2.10.5-1 (default: the newest in the release file); its build number is ignored.
    pub release: Option<String>,
    /// Repository to ask, e.g. quay.io/astronomer/ap-airflow.
    #[arg(long, value_name = "REPO")]
    pub repo: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// max N over `<airflow>-<N>-<distro>[-onbuild]` tags, plus one; 1 when there is none.
pub fn next_build(tags: &[String], airflow: &str, distro: &str) -> u32 {
    let scheme = TagScheme::new(airflow, distro);
    Flavour::ALL
        .iter()
        .flat_map(|&f| scheme.builds_in(tags, f))
        .max()
        .map_or(1, |n| n.saturating_add(1))
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let file = ctx.releases()?;
    let release = file.get(args.release.as_deref())?;
    let repo = Repository::parse(&args.repo)?;
    let mut client = Client::connect(&repo, &args.registry.options())?;
    let tags = client.list_tags(&repo.name)?;
    println!("{}", next_build(&tags, &release.airflow, &release.distro));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_after_the_highest_of_either_flavour() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(super::next_build(&t(&[]), "2.10.5", "bookworm"), 1);
        assert_eq!(
            super::next_build(&t(&["2.10.5-bookworm", "latest"]), "2.10.5", "bookworm"),
            1
        );
        let tags = t(&[
            "2.10.5-2-bookworm",
            "2.10.5-7-bookworm-onbuild",
            "2.10.5-9-bullseye",
            "2.10.4-12-bookworm",
        ]);
        assert_eq!(super::next_build(&tags, "2.10.5", "bookworm"), 8);
    }
}
