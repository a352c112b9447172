//! `deployer`: wiring only; each subcommand's flags and work live in its
//! own module.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use deployer::{infra, package, push, render, rollout, test};

#[derive(Parser)]
#[command(
    name = "deployer",
    version,
    about = "Gate, package, push and roll out modelops models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the release gate (item, acceptance, integration) on a model folder.
    Test(test::TestArgs),
    /// Build a reproducible OCI image layout: base, serve binary, models.
    Package(package::PackageArgs),
    /// Push an OCI image layout to a registry, manifest last, digest verified.
    Push(push::PushArgs),
    /// Render the Kubernetes manifests of a release (k8s/ base + overlay).
    Render {
        #[command(flatten)]
        release: render::Args,
        /// Write one file per object into this folder instead of
        /// multi-document YAML on stdout.
        #[arg(long, env = "MODELOPS_RENDER_OUTPUT", value_name = "DIR")]
        output: Option<PathBuf>,
    },
    /// The Azure infrastructure (ARM templates in infra/).
    Infra {
        #[command(subcommand)]
        command: InfraCommand,
    },
    /// Apply a release and wait for it; roll back automatically if it fails.
    Rollout(rollout::RolloutArgs),
    /// Go back to the Deployment's previous revision and wait for it.
    Rollback {
        #[command(flatten)]
        target: rollout::TargetArgs,
        /// Seconds to wait for the restored revision.
        #[arg(long, env = "MODELOPS_ROLLOUT_TIMEOUT", default_value_t = 900)]
        timeout: u64,
    },
    /// What the Deployment serves, its state and its revisions.
    Status(rollout::TargetArgs),
}

#[derive(Subcommand)]
enum InfraCommand {
    /// Validate, then write the filled parameter files.
    Render {
        #[command(flatten)]
        infra: infra::Args,
        /// Where the filled NAME.parameters.json files go.
        #[arg(long, env = "MODELOPS_INFRA_OUTPUT", value_name = "DIR")]
        output: PathBuf,
    },
    /// Check the templates and filled parameter files offline.
    Validate(infra::Args),
}

/// Errors are printed as one line of causes, without a backtrace: they are
/// meant for the operator, who cannot act on one.
fn main() -> ExitCode {
    // The registry client (push) needs it too, not only the rollout.
    rollout::install_tls_provider();
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deployer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Test(args) => drop(test::run(&args)?),
        Command::Package(args) => drop(package::run(&args)?),
        Command::Push(args) => drop(push::run(&args)?),
        Command::Render { release, output } => {
            let objects = render::render(&release)?;
            match output {
                Some(dir) => render::write_dir(&objects, &dir)?,
                None => print!("{}", render::to_yaml(&objects)),
            }
        }
        Command::Infra { command } => match command {
            InfraCommand::Render { infra, output } => {
                let deployments = infra::render(&infra)?;
                infra::validate(&deployments)?;
                infra::write_parameters(&deployments, &output)?;
            }
            InfraCommand::Validate(infra) => {
                let deployments = infra::render(&infra)?;
                infra::validate(&deployments)?;
                println!("{} templates valid", deployments.len());
            }
        },
        Command::Rollout(args) => on_runtime(rollout::rollout(&args))?,
        Command::Rollback { target, timeout } => {
            on_runtime(rollout::rollback(&target, Duration::from_secs(timeout)))?
        }
        Command::Status(target) => on_runtime(rollout::status(&target))?,
    }
    Ok(())
}

/// Runs the Kubernetes commands (push makes a runtime of its own).
fn on_runtime<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
        .block_on(future)
}
