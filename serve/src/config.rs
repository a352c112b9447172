//! Command-line flags; every flag is also a `MODELOPS_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::batch::BatchConfig;

use crate::model::ModelSource;

/// Serve ONNX classifiers over the Open Inference Protocol (V2) and V1 REST.
#[derive(Debug, Clone, Parser)]
#[command(name = "serve", version, about)]
pub struct Config {
    /// Model repository: DIR/<name>/<version>/model.onnx (+ DIR/<name>/model.toml).
    /// Defaults to `models` unless --model is given.
    #[arg(long, env = "MODELOPS_MODELS", value_name = "DIR")]
    pub models: Option<PathBuf>,

    /// A single ONNX file to serve as version 1, named NAME or after the file.
    /// Repeatable; comma-separated in the environment variable.
    #[arg(
        long = "model",
        env = "MODELOPS_MODEL",
        value_name = "PATH[:NAME]",
        value_delimiter = ','
    )]
    pub model_files: Vec<String>,

    /// Address to listen on.
    #[arg(long, env = "MODELOPS_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one; the log says which).
    #[arg(long, env = "MODELOPS_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "MODELOPS_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// On SIGTERM/SIGINT, report not-ready for this long (still serving)
    /// before closing the listener, so load balancers stop sending traffic.
    #[arg(long, env = "MODELOPS_DRAIN_SECONDS", default_value_t = 5.0)]
    pub drain_seconds: f64,

    /// After the drain window, how long in-flight requests get to finish.
    #[arg(long, env = "MODELOPS_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 30)]
    pub shutdown_timeout_seconds: u64,

    /// Dynamic batching: rows per model run at most (`[batching]` in a
    /// model.toml overrides these four per model).
    #[arg(long, env = "MODELOPS_MAX_BATCH_ROWS", default_value_t = 64)]
    pub max_batch_rows: usize,

    /// Dynamic batching: microseconds a batch may wait for more requests
    /// (0: never wait; batches still form from requests queued meanwhile).
    #[arg(long, env = "MODELOPS_MAX_QUEUE_DELAY_US", default_value_t = 0)]
    pub max_queue_delay_us: u64,

    /// Admission control: rows queued per model at most; more get 429.
    #[arg(long, env = "MODELOPS_MAX_QUEUE_ROWS", default_value_t = 4096)]
    pub max_queue_rows: usize,

    /// Inference threads per model version.
    #[arg(long, env = "MODELOPS_INSTANCES", default_value_t = 1)]
    pub instances: usize,

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "MODELOPS_WORKERS")]
    pub workers: Option<usize>,

    /// Log filter, e.g. `info` or `serve=debug`.
    #[arg(long, env = "MODELOPS_LOG", default_value = "info")]
    pub log: String,
}

impl Config {
    /// The batching defaults the flags give.
    pub fn batching(&self) -> BatchConfig {
        BatchConfig {
            max_batch_rows: self.max_batch_rows.max(1),
            max_queue_delay: Duration::from_micros(self.max_queue_delay_us),
            max_queue_rows: self.max_queue_rows.max(1),
            instances: self.instances.max(1),
        }
    }

    /// The model sources the flags name: `models/` when nothing is named.
    pub fn model_sources(&self) -> Vec<ModelSource> {
        let mut sources: Vec<ModelSource> = self
            .model_files
            .iter()
            .map(|spec| ModelSource::file_spec(spec))
            .collect();
        match &self.models {
            Some(dir) => sources.push(ModelSource::Repository(dir.clone())),
            None if sources.is_empty() => sources.push(ModelSource::Repository("models".into())),
            None => {}
        }
        sources
    }
}
