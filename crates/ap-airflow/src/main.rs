use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ap_airflow::{
    base, build, lock, next_build, publish, sbom, tags, verify, verify_published, Context,
};

/// Builds, verifies and publishes Astronomer Core's Airflow images.
#[derive(Debug, Parser)]
#[command(name = "ap-airflow", version)]
struct Cli {
    /// The release file (default: releases.toml in this folder or the nearest parent).
    #[arg(long, global = true, env = "AP_AIRFLOW_RELEASES")]
    releases: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the base and -onbuild images of a release line with the local Docker engine.
    Build(build::Args),
    /// Make the Python base image offline from a Debian mirror (debootstrap + docker import).
    Base(base::Args),
    /// Write a release line's constraints file.
    Lock(lock::Args),
    /// Check a built image against its release line.
    Verify(verify::Args),
    /// Print the tag plan of a release line.
    Tags(tags::Args),
    /// Publish a release line's images to registries, never rewriting an immutable tag.
    Publish(publish::Args),
    /// Report the next free build number of a release line in a registry.
    NextBuild(next_build::Args),
    /// Print the SPDX 2.3 SBOM of a local image (the one publish attaches).
    Sbom(sbom::Args),
    /// Check that a published tag's digest is signed by a key and has an SBOM attached.
    VerifyPublished(verify_published::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Context {
        releases_path: cli.releases,
    };
    let result = match cli.command {
        Command::Build(a) => build::run(&ctx, a),
        Command::Base(a) => base::run(&ctx, a),
        Command::Lock(a) => lock::run(&ctx, a),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Tags(a) => tags::run(&ctx, a),
        Command::Publish(a) => publish::run(&ctx, a),
        Command::NextBuild(a) => next_build::run(&ctx, a),
        Command::Sbom(a) => sbom::run(&ctx, a),
        Command::VerifyPublished(a) => verify_published::run(&ctx, a),
    };
    result.unwrap_or_else(|e| {
        // One line: the error and its causes, never a backtrace or a wall of text.
        eprintln!("ap-airflow: {}", format!("{e:#}").replace('\n', " "));
        ExitCode::from(1)
    })
}
