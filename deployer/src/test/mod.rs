//! `deployer test MODEL_DIR`: the release gate. Three tiers run in order,
//! each printed as it runs; the first that fails stops the gate.
//!
//! - item: the latest version loads in the serving library, and its
//!   signature and class labels agree with the held-back test set;
//! - acceptance: the test set, scored by the server's own code, reaches the
//!   thresholds of `model.toml` and does not fall below the production
//!   record by more than the allowed margin;
//! - integration: the real `serve` binary, started on the model, answers
//!   health, metadata and inference with the acceptance tier's results.

mod acceptance;
mod integration;
mod item;
mod process;
mod record;

use std::path::{Path, PathBuf};

use clap::Args;
use thiserror::Error;

use crate::model_dir::{ModelDir, ModelDirError};
pub use acceptance::Scores;
pub use process::ServeProcess;
pub use record::ProductionRecord;

#[derive(Debug, Error)]
pub enum GateError {
    #[error(transparent)]
    Model(#[from] ModelDirError),
    #[error("item tier failed: {0}")]
    Item(String),
    #[error("acceptance tier failed: {0}")]
    Acceptance(String),
    #[error("integration tier failed: {0}")]
    Integration(String),
    #[error("production record {path}: {reason}")]
    Record { path: String, reason: String },
}

/// `deployer test`: run the release gate on one model folder.
#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// The model folder: MODEL_DIR/model.toml, MODEL_DIR/<version>/model.onnx,
    /// MODEL_DIR/test.csv (the latest version is tested).
    #[arg(env = "MODELOPS_MODEL_DIR")]
    pub model_dir: PathBuf,

    /// How far accuracy and macro-F1 may fall below the production record
    /// (MODEL_DIR/production.toml) before the gate fails.
    #[arg(long, env = "MODELOPS_GATE_MAX_REGRESSION", default_value_t = 0.01)]
    pub max_regression: f64,

    /// The `serve` binary the integration tier runs. Default: `serve` next
    /// to this binary.
    #[arg(long, env = "MODELOPS_SERVE_BINARY", value_name = "PATH")]
    pub serve_binary: Option<PathBuf>,

    /// When the gate passes, write MODEL_DIR/production.toml (run it in the
    /// release job once the image is pushed, and commit the file).
    #[arg(long, env = "MODELOPS_GATE_RECORD_PRODUCTION")]
    pub record_production: bool,
}

/// What a passed gate measured.
#[derive(Debug)]
pub struct GateReport {
    pub name: String,
    pub version: u64,
    pub sha256: String,
    pub scores: Scores,
}

/// `serve` next to the running binary, as cargo and the image lay them out.
pub fn default_serve_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("serve")))
        .unwrap_or_else(|| PathBuf::from("serve"))
}

/// Runs the three tiers on `args.model_dir`.
pub fn run(args: &TestArgs) -> Result<GateReport, GateError> {
    let model_dir = ModelDir::open(&args.model_dir)?;
    println!(
        "gate: model `{}` in {}",
        model_dir.name,
        model_dir.dir.display()
    );

    println!("[1/3 item]");
    let item = item::check(&model_dir)?;

    println!("[2/3 acceptance]");
    let scores = acceptance::score(&item)?;
    print!("{}", scores.report());
    let record_path = model_dir.production_record();
    let production = ProductionRecord::read_optional(&record_path)?;
    acceptance::judge(
        &scores,
        &model_dir.manifest.acceptance,
        production.as_ref(),
        args.max_regression,
    )?;

    println!("[3/3 integration]");
    let serve = args
        .serve_binary
        .clone()
        .unwrap_or_else(default_serve_binary);
    integration::check(&model_dir, &item, &scores, &serve)?;

    let report = GateReport {
        name: model_dir.name.clone(),
        version: item.model.version,
        sha256: item.model.sha256.clone(),
        scores,
    };
    if args.record_production {
        ProductionRecord::of(&report).write(&record_path)?;
        println!("production record written to {}", record_path.display());
    }
    println!(
        "gate passed: {} version {} (accuracy {:.4}, macro-F1 {:.4})",
        report.name, report.version, report.scores.accuracy, report.scores.macro_f1
    );
    Ok(report)
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}
