//! Command-line flags; every flag is also a `MODELOPS_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use thiserror::Error;

use crate::batch::BatchConfig;

use crate::model::ModelSource;
use crate::stream::{KafkaOptions, TopicSpec};
use crate::telemetry::{CosmosSettings, Lineage, OnRefused, Store, TelemetryOptions};

/// A setting that cannot work, found before anything starts.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("--telemetry cosmos needs {0}")]
    Missing(&'static str),
    #[error("give the Cosmos DB key once: --cosmos-key (COSMOS_KEY) or --cosmos-key-file")]
    TwoKeys,
    #[error("reading the Cosmos DB key from {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// This machine's (or pod's) name.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("expected a fraction from 0 to 1, got `{text}`")),
    }
}

/// A secret that `{:?}` does not print.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn parse_secret(text: &str) -> Result<Secret, String> {
    Ok(Secret(text.trim().to_string()))
}

/// Where prediction telemetry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TelemetryKind {
    Off,
    /// JSON lines in a local file (--telemetry-file).
    File,
    /// Azure Cosmos DB (--cosmos-*).
    Cosmos,
}

/// The telemetry store: shared by `serve` (which writes it) and `serve
/// report` (which reads it).
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Where prediction telemetry goes: a JSON-lines file, Azure Cosmos DB,
    /// or nowhere.
    #[arg(long, env = "MODELOPS_TELEMETRY", value_enum, default_value = "file")]
    pub telemetry: TelemetryKind,

    /// The JSON-lines file of `--telemetry file`.
    #[arg(
        long,
        env = "MODELOPS_TELEMETRY_FILE",
        default_value = "telemetry/predictions.jsonl"
    )]
    pub telemetry_file: PathBuf,

    /// Cosmos DB: the account endpoint, `https://ACCOUNT.documents.azure.com:443/`.
    #[arg(long, env = "MODELOPS_COSMOS_ENDPOINT", value_name = "URL")]
    pub cosmos_endpoint: Option<String>,

    /// Cosmos DB: the account key (prefer the environment variable or
    /// --cosmos-key-file: a flag shows in the process list). Never logged.
    #[arg(long, env = "COSMOS_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub cosmos_key: Option<Secret>,

    /// Cosmos DB: a file holding the account key (a mounted secret).
    #[arg(long, env = "MODELOPS_COSMOS_KEY_FILE", value_name = "PATH")]
    pub cosmos_key_file: Option<PathBuf>,

    /// Cosmos DB: the database, created when missing.
    #[arg(long, env = "MODELOPS_COSMOS_DATABASE", default_value = "modelops")]
    pub cosmos_database: String,

    /// Cosmos DB: the container, created when missing (partition key `/model`).
    #[arg(long, env = "MODELOPS_COSMOS_CONTAINER", default_value = "predictions")]
    pub cosmos_container: String,

    /// Cosmos DB: preferred regions, in order (default: the account's order).
    #[arg(long, env = "MODELOPS_COSMOS_REGIONS", value_delimiter = ',')]
    pub cosmos_regions: Vec<String>,
}

impl TelemetryArgs {
    /// The store these flags name (reading the key file, if one is named).
    pub fn store(&self) -> Result<Store, ConfigError> {
        match self.telemetry {
            TelemetryKind::Off => Ok(Store::Off),
            TelemetryKind::File => Ok(Store::File(self.telemetry_file.clone())),
            TelemetryKind::Cosmos => {
                let endpoint = self
                    .cosmos_endpoint
                    .clone()
                    .ok_or(ConfigError::Missing("--cosmos-endpoint"))?;
                let key = match (&self.cosmos_key, &self.cosmos_key_file) {
                    (Some(_), Some(_)) => return Err(ConfigError::TwoKeys),
                    (Some(Secret(key)), None) => key.clone(),
                    (None, Some(path)) => std::fs::read_to_string(path)
                        .map_err(|source| ConfigError::KeyFile {
                            path: path.clone(),
                            source,
                        })?
                        .trim()
                        .to_string(),
                    (None, None) => {
                        return Err(ConfigError::Missing(
                            "--cosmos-key (COSMOS_KEY) or --cosmos-key-file",
                        ))
                    }
                };
                Ok(Store::Cosmos(CosmosSettings {
                    endpoint,
                    key,
                    database: self.cosmos_database.clone(),
                    container: self.cosmos_container.clone(),
                    regions: self.cosmos_regions.clone(),
                }))
            }
        }
    }
}

/// What else `serve` does than serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Per model version: documents, error rate, latency percentiles and
    /// label distribution from the telemetry store; optionally an SVG chart.
    Report(ReportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    /// A model to report on (repeatable). Default: every model in the file,
    /// or for Cosmos DB (read one partition per model) every model folder
    /// under --models.
    #[arg(long = "model", value_name = "NAME")]
    pub models: Vec<String>,

    /// The model repository whose model names Cosmos DB is asked about.
    #[arg(long = "models", env = "MODELOPS_MODELS", default_value = "models")]
    pub repository: PathBuf,

    /// Also write an SVG chart here: label distribution and latency over time.
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,
}

impl ReportArgs {
    /// The models to report on: those named, else (for Cosmos DB, which is
    /// read partition by partition) the repository's model folders.
    pub fn models(&self) -> std::io::Result<Vec<String>> {
        if !self.models.is_empty() || self.telemetry.telemetry != TelemetryKind::Cosmos {
            return Ok(self.models.clone());
        }
        // A model folder holds version folders named by integers.
        let is_model = |dir: &std::path::Path| -> std::io::Result<bool> {
            Ok(std::fs::read_dir(dir)?
                .filter_map(Result::ok)
                .any(|version| {
                    version.path().is_dir()
                        && version.file_name().to_string_lossy().parse::<u64>().is_ok()
                }))
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.repository)? {
            let path = entry?.path();
            if path.is_dir() && is_model(&path)? {
                names.extend(path.file_name().map(|n| n.to_string_lossy().into_owned()));
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Serve ONNX classifiers over the Open Inference Protocol (V2) and V1 REST.
#[derive(Debug, Clone, Parser)]
#[command(name = "serve", version, about)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

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

    /// Do not serve REST (Kafka only; needs --kafka-brokers).
    #[arg(long, env = "MODELOPS_NO_REST", requires = "kafka_brokers")]
    pub no_rest: bool,

    /// Kafka: score messages from these brokers (`host:port,...`); Kafka is
    /// off without it.
    #[arg(long, env = "MODELOPS_KAFKA_BROKERS", value_name = "HOST:PORT,...")]
    pub kafka_brokers: Option<String>,

    /// Kafka: the topic requests are read from.
    #[arg(
        long,
        env = "MODELOPS_KAFKA_INPUT_TOPIC",
        default_value = "modelops-requests"
    )]
    pub kafka_input_topic: String,

    /// Kafka: the topic results are written to.
    #[arg(
        long,
        env = "MODELOPS_KAFKA_OUTPUT_TOPIC",
        default_value = "modelops-results"
    )]
    pub kafka_output_topic: String,

    /// Kafka: where messages that cannot be scored go, with the reason in
    /// headers (default: the input topic's name + `.dlq`).
    #[arg(long, env = "MODELOPS_KAFKA_DLQ_TOPIC")]
    pub kafka_dlq_topic: Option<String>,

    /// Kafka: the consumer group.
    #[arg(long, env = "MODELOPS_KAFKA_GROUP_ID", default_value = "modelops")]
    pub kafka_group_id: String,

    /// Kafka: the model for messages without a `model` header (default: the
    /// only model, when one is served).
    #[arg(long, env = "MODELOPS_KAFKA_MODEL")]
    pub kafka_model: Option<String>,

    /// Kafka: create the input, output and dead-letter topics when missing.
    #[arg(long, env = "MODELOPS_KAFKA_CREATE_TOPICS")]
    pub kafka_create_topics: bool,

    /// Kafka: partitions of topics it creates.
    #[arg(long, env = "MODELOPS_KAFKA_TOPIC_PARTITIONS", default_value_t = 1)]
    pub kafka_topic_partitions: i32,

    /// Kafka: replication factor of topics it creates.
    #[arg(long, env = "MODELOPS_KAFKA_TOPIC_REPLICATION", default_value_t = 1)]
    pub kafka_topic_replication: i32,

    /// Kafka: messages consumed and not yet finished at most; beyond, the
    /// partitions are paused.
    #[arg(long, env = "MODELOPS_KAFKA_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub kafka_max_in_flight: usize,

    /// Kafka: exactly once instead of at least once: results, dead letters
    /// and input offsets are committed together in Kafka transactions.
    #[arg(long, env = "MODELOPS_KAFKA_EXACTLY_ONCE")]
    pub kafka_exactly_once: bool,

    /// Kafka: the producer's `transactional.id` with --kafka-exactly-once;
    /// keep it stable across restarts of one instance (e.g. the pod name) so
    /// a restart fences its crashed predecessor at once. Default:
    /// `modelops-GROUP-HOSTNAME-PID`.
    #[arg(
        long,
        env = "MODELOPS_KAFKA_TRANSACTIONAL_ID",
        requires = "kafka_exactly_once"
    )]
    pub kafka_transactional_id: Option<String>,

    /// Kafka: copy each message to the output topic without scoring it (the
    /// benchmark's baseline: the cost of consuming and producing alone).
    #[arg(long, env = "MODELOPS_KAFKA_PASS_THROUGH", hide = true)]
    pub kafka_pass_through: bool,

    /// Kafka: a librdkafka property for the consumer and producer (e.g.
    /// `security.protocol=SASL_SSL`). Repeatable; `;`-separated (values may
    /// hold commas).
    #[arg(
        long = "kafka-property",
        env = "MODELOPS_KAFKA_PROPERTIES",
        value_name = "KEY=VALUE",
        value_delimiter = ';',
        value_parser = parse_property
    )]
    pub kafka_properties: Vec<(String, String)>,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    /// Telemetry: documents waiting to be written at most; beyond, new ones
    /// are dropped and counted (scoring never waits).
    #[arg(long, env = "MODELOPS_TELEMETRY_QUEUE", default_value_t = 10_000)]
    pub telemetry_queue: usize,

    /// Telemetry: document writes in flight at most.
    #[arg(long, env = "MODELOPS_TELEMETRY_CONCURRENCY", default_value_t = 16)]
    pub telemetry_concurrency: usize,

    /// Telemetry: the fraction of requests whose inputs (features) are
    /// recorded too.
    #[arg(
        long,
        env = "MODELOPS_TELEMETRY_INPUT_SAMPLING",
        default_value_t = 0.0,
        value_parser = parse_fraction
    )]
    pub telemetry_input_sampling: f64,

    /// Telemetry: on shutdown, how long queued documents get to be written.
    #[arg(long, env = "MODELOPS_TELEMETRY_FLUSH_SECONDS", default_value_t = 10.0)]
    pub telemetry_flush_seconds: f64,

    /// Telemetry: when Cosmos DB refuses the key at startup, stop (`fail`)
    /// or serve anyway and drop the documents (`warn`).
    #[arg(
        long,
        env = "MODELOPS_COSMOS_ON_AUTH_ERROR",
        value_enum,
        default_value = "fail"
    )]
    pub cosmos_on_auth_error: OnRefused,

    /// Lineage: the commit this server was built from, recorded with every
    /// prediction.
    #[arg(long, env = "MODELOPS_CODE_COMMIT")]
    pub code_commit: Option<String>,

    /// Lineage: the container image digest this server runs from.
    #[arg(long, env = "MODELOPS_IMAGE_DIGEST")]
    pub image_digest: Option<String>,

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

    /// The Kafka settings, when Kafka is on. `served` names the models the
    /// repository holds (the default model is the only one, if one).
    pub fn kafka(&self, served: &[&str]) -> Option<KafkaOptions> {
        let brokers = self.kafka_brokers.clone()?;
        let default_model = self.kafka_model.clone().or(match served {
            [only] => Some(only.to_string()),
            _ => None,
        });
        Some(KafkaOptions {
            brokers,
            input_topic: self.kafka_input_topic.clone(),
            output_topic: self.kafka_output_topic.clone(),
            dlq_topic: self
                .kafka_dlq_topic
                .clone()
                .unwrap_or_else(|| format!("{}.dlq", self.kafka_input_topic)),
            group_id: self.kafka_group_id.clone(),
            default_model,
            create_topics: self.kafka_create_topics.then_some(TopicSpec {
                partitions: self.kafka_topic_partitions,
                replication: self.kafka_topic_replication,
            }),
            max_in_flight: self.kafka_max_in_flight.max(1),
            transactional_id: self.kafka_exactly_once.then(|| {
                self.kafka_transactional_id.clone().unwrap_or_else(|| {
                    format!(
                        "modelops-{}-{}-{}",
                        self.kafka_group_id,
                        hostname(),
                        std::process::id()
                    )
                })
            }),
            drain_timeout: Duration::from_secs(self.shutdown_timeout_seconds),
            pass_through: self.kafka_pass_through,
            client_properties: self.kafka_properties.clone(),
        })
    }

    /// How the telemetry writer works.
    pub fn telemetry_options(&self) -> TelemetryOptions {
        TelemetryOptions {
            queue_capacity: self.telemetry_queue.max(1),
            concurrency: self.telemetry_concurrency.max(1),
            input_sampling: self.telemetry_input_sampling,
            deployment: Lineage {
                code_commit: self.code_commit.clone(),
                image_digest: self.image_digest.clone(),
                ..Lineage::default()
            },
            connect_timeout: Duration::from_secs(10),
            on_refused: self.cosmos_on_auth_error,
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
