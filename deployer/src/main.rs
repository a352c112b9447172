//! The `deployer` binary: wiring only. Each subcommand's flags and work live
//! in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "deployer",
    version,
    about = "Gate, package and push modelops models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the release gate (item, acceptance, integration) on a model folder.
    Test(deployer::test::TestArgs),
    /// Build a reproducible OCI image layout: base, serve binary, models.
    Package(deployer::package::PackageArgs),
    /// Push an OCI image layout to a registry, manifest last, digest verified.
    Push(deployer::push::PushArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Test(args) => deployer::test::run(&args).map(drop).map_err(Into::into),
        Command::Package(args) => deployer::package::run(&args).map(drop).map_err(Into::into),
        Command::Push(args) => deployer::push::run(&args).map(drop).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deployer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
