//! Telemetry and lineage: one document per scored row (or per failed
//! request), from REST and Kafka alike, written to a store in the background.
//!
//! Scoring never waits for it: a request's predictions go into a bounded
//! queue as they are ([`Prediction`]); a writer thread encodes them into
//! JSON documents ([`Document`]'s fields: model, version, sha256, lineage,
//! latency, label, probabilities, outcome) and writes them with bounded
//! concurrency,
//! retrying what the store says may succeed later. When the queue is full,
//! documents are dropped and counted. On shutdown the queue is flushed
//! within a deadline. [`report`] reads the documents back.
//!
//! Knows the model domain; nothing of HTTP or Kafka (they hand in an
//! [`Origin`]).

mod cosmos;
mod event;
mod file;
mod metrics;
pub mod report;
mod sink;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

pub use cosmos::{CosmosSettings, CosmosSink};
pub use event::{
    Document, EncodedDocument, Lineage, ModelFragments, Origin, Prediction, Source,
    TRACEPARENT_HEADER,
};
pub use file::FileSink;
pub use sink::{Sink, SinkError, SinkFuture};
pub use writer::{OnRefused, Telemetry, TelemetryOptions};

/// Where telemetry goes (and where the report reads it from).
#[derive(Debug, Clone)]
pub enum Store {
    Off,
    /// JSON lines appended to a local file.
    File(PathBuf),
    Cosmos(CosmosSettings),
}

#[derive(Debug, Error)]
pub enum TelemetryError {
    #[error("telemetry file {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: not a telemetry document: {reason}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A wrong key or missing permission, found at startup.
    #[error("the telemetry store refused the connection: {0}")]
    Refused(String),
    #[error("Cosmos DB: {0}")]
    Cosmos(String),
    #[error("starting the telemetry writer: {0}")]
    Runtime(std::io::Error),
    #[error("telemetry is off: there is nothing to report on")]
    Off,
}

impl Telemetry {
    /// Starts writing to `store` (nothing for [`Store::Off`]).
    pub fn open(store: &Store, options: TelemetryOptions) -> Result<Telemetry, TelemetryError> {
        let sink: Arc<dyn Sink> = match store {
            Store::Off => return Ok(Telemetry::off()),
            Store::File(path) => Arc::new(FileSink::open(path)?),
            Store::Cosmos(settings) => Arc::new(CosmosSink::new(settings.clone())),
        };
        Telemetry::start(sink, options)
    }
}

impl Store {
    /// The documents of `models` (every model, for the file, when none are
    /// named); Cosmos is read one partition per model.
    pub async fn read(&self, models: &[String]) -> Result<Vec<Document>, TelemetryError> {
        match self {
            Store::Off => Err(TelemetryError::Off),
            Store::File(path) => {
                let mut documents = file::read_documents(path)?;
                if !models.is_empty() {
                    documents.retain(|d| models.contains(&d.model));
                }
                Ok(documents)
            }
            Store::Cosmos(settings) => {
                let mut documents = Vec::new();
                for model in models {
                    documents.extend(cosmos::query_model(settings, model).await?);
                }
                Ok(documents)
            }
        }
    }
}
