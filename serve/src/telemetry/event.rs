//! What is recorded: a request's outcome as the scoring path hands it over
//! ([`Prediction`]) and the documents written for it ([`Document`], one per
//! row, or one for a failed request).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::model::{LoadedModel, Predictions};
use crate::ServeError;

/// Fixed width (microseconds, `Z`), so that timestamps sort as text.
pub(super) const TIMESTAMP_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The W3C trace context header (HTTP and Kafka alike) whose trace id
/// documents carry.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The transport a request came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Rest,
    Kafka,
}

/// Where a request came from, which also names its documents.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// The V2 body's `id`, else the `x-request-id` header.
    Rest { request_id: Option<String> },
    /// The message's key (else the V2 body's `id`) and its position: a
    /// message scored again after a rebalance makes the same document ids,
    /// so redelivery overwrites instead of duplicating.
    Kafka {
        request_id: String,
        topic: String,
        partition: i32,
        offset: i64,
    },
}

/// A request's outcome as the scoring path hands it over: moved, not
/// formatted, because it is built on every request; the writer thread
/// turns it into documents.
#[derive(Debug)]
pub struct Prediction {
    pub origin: Origin,
    /// The model version the request was addressed to (requests for models
    /// that are not served have no partition to go to, and are not recorded).
    pub model: Arc<LoadedModel>,
    /// The request's W3C `traceparent`, when it carried one.
    pub traceparent: Option<String>,
    pub at: SystemTime,
    pub latency: Duration,
    pub outcome: Result<Predictions, ServeError>,
    /// The request's features, row-major, when input sampling chose it.
    pub inputs: Option<Vec<f64>>,
}

/// Where a model came from: `model.toml`'s `[lineage]` plus what the build
/// and the deployment say (`MODELOPS_CODE_COMMIT`, `MODELOPS_IMAGE_DIGEST`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    #[serde(flatten)]
    pub manifest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
}

/// One telemetry document: one row's prediction, or one failed request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Unique per document (Cosmos' `id`).
    pub id: String,
    pub request_id: Option<String>,
    /// The partition key.
    pub model: String,
    pub version: String,
    pub model_sha256: String,
    pub source: Source,
    /// UTC, RFC 3339 with microseconds (see [`TIMESTAMP_FORMAT`]).
    pub timestamp: String,
    /// The whole request's latency, received to answered.
    pub latency_ms: f64,
    /// The row's index within its request (none for a failed request).
    pub row: Option<usize>,
    pub label: Option<serde_json::Value>,
    /// Class label → probability.
    pub probabilities: Option<BTreeMap<String, f32>>,
    /// `ok`, or the error kind (`invalid_input`, `overloaded`, ...).
    pub outcome: String,
    pub error: Option<String>,
    pub trace_id: Option<String>,
    /// Shared by every document of a request: cloning the map per row was
    /// a good part of building them.
    pub lineage: Arc<Lineage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<f64>>,
}

impl Prediction {
    /// The documents for this request: one per row, or one for a failure.
    /// `sequence` numbers REST requests within this process (`process`).
    pub fn documents(&self, process: &str, sequence: u64, deployment: &Lineage) -> Vec<Document> {
        let model = &*self.model;
        let (request_id, id_prefix, source) = match &self.origin {
            Origin::Rest { request_id } => (
                request_id.clone(),
                format!("{process}-{sequence:x}"),
                Source::Rest,
            ),
            Origin::Kafka {
                request_id,
                topic,
                partition,
                offset,
            } => (
                Some(request_id.clone()),
                format!("{topic}-{partition}-{offset}"),
                Source::Kafka,
            ),
        };
        let base = Document {
            id: String::new(),
            request_id,
            model: model.name.clone(),
            version: model.version.to_string(),
            model_sha256: model.sha256.clone(),
            source,
            timestamp: timestamp(self.at),
            latency_ms: self.latency.as_secs_f64() * 1e3,
            row: None,
            label: None,
            probabilities: None,
            outcome: "ok".into(),
            error: None,
            trace_id: self.traceparent.as_deref().and_then(trace_id),
            lineage: Arc::new(Lineage {
                manifest: model.manifest.lineage.clone(),
                ..deployment.clone()
            }),
            inputs: None,
        };
        let predictions = match &self.outcome {
            Ok(predictions) => predictions,
            Err(error) => {
                return vec![Document {
                    id: format!("{id_prefix}-error"),
                    outcome: error.kind().to_string(),
                    error: Some(error.to_string()),
                    inputs: self.inputs.clone(),
                    ..base
                }]
            }
        };
        let labels = &model.signature.labels;
        let features = model.signature.features;
        (0..predictions.rows)
            .map(|row| Document {
                id: format!("{id_prefix}-{row}"),
                row: Some(row),
                label: Some(labels.json(predictions.label_indices[row])),
                probabilities: Some(
                    predictions
                        .row(row)
                        .iter()
                        .enumerate()
                        .map(|(class, &p)| (labels.text(class), p))
                        .collect(),
                ),
                inputs: self
                    .inputs
                    .as_ref()
                    .and_then(|x| x.get(row * features..(row + 1) * features))
                    .map(<[f64]>::to_vec),
                ..base.clone()
            })
            .collect()
    }

    /// How many documents [`Self::documents`] makes, without making them.
    pub fn document_count(&self) -> usize {
        match &self.outcome {
            Ok(predictions) => predictions.rows,
            Err(_) => 1,
        }
    }
}

fn timestamp(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(TIMESTAMP_FORMAT)
        .expect("every SystemTime after 1970 formats")
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| trace.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-xyz-00f067aa0ba902b7-01"), None);
    }

    #[test]
    fn timestamps_have_a_fixed_width_and_sort_as_text() {
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let later = whole + Duration::from_micros(500_000);
        assert_eq!(timestamp(whole), "2023-11-14T22:13:20.000000Z");
        assert_eq!(timestamp(later), "2023-11-14T22:13:20.500000Z");
        assert!(timestamp(whole) < timestamp(later));
    }
}
