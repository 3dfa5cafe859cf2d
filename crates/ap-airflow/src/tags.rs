//! `ap-airflow tags`: the tag plan of a release line. Pure: no engine, no registry.

use std::process::ExitCode;

use crate::release::{Flavour, Release};
use crate::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Release line, e.g. 2.10.5-1 (default: the newest in the release file).
    pub release: Option<String>,
    /// CI build number: adds the `<floating>-<B>` tag.
    #[arg(long)]
    pub build_number: Option<u64>,
    /// Print as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The tags of one flavour of a release line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FlavourTags {
    pub flavour: &'static str,
    pub immutable: String,
    pub floating: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci: Option<String>,
}

pub fn plan(release: &Release, build_number: Option<u64>) -> Vec<FlavourTags> {
    Flavour::ALL
        .iter()
        .map(|&f| FlavourTags {
            flavour: f.name(),
            immutable: release.immutable_tag(f),
            floating: release.floating_tag(f),
            ci: build_number.map(|b| release.ci_tag(f, b)),
        })
        .collect()
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let file = ctx.releases()?;
    let release = file.get(args.release.as_deref())?;
    let plan = plan(release, args.build_number);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", table(&plan));
    }
    Ok(ExitCode::SUCCESS)
}

fn table(plan: &[FlavourTags]) -> String {
    let mut rows = vec![["flavour", "immutable", "floating", "ci"].map(String::from)];
    for t in plan {
        rows.push([
            t.flavour.to_string(),
            t.immutable.clone(),
            t.floating.clone(),
            t.ci.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    crate::output::columns(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> Release {
        Release {
            build: 3,
            extras: vec![],
            lock: "l".into(),
            ..Release::sample()
        }
    }

    #[test]
    fn plan_has_both_flavours_and_optional_ci_tags() {
        let p = plan(&release(), None);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].immutable, "2.10.5-3-bookworm");
        assert_eq!(p[1].floating, "2.10.5-bookworm-onbuild");
        assert!(p.iter().all(|t| t.ci.is_none()));
        let p = plan(&release(), Some(412));
        assert_eq!(p[1].ci.as_deref(), Some("2.10.5-bookworm-onbuild-412"));
    }

    #[test]
    fn table_is_aligned() {
        let out = table(&plan(&release(), None));
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = lines[0].find("immutable").unwrap();
        assert_eq!(lines[1].find("2.10.5-3-bookworm"), Some(col));
    }
}
