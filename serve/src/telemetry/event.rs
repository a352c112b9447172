//! What is recorded: a request's outcome as the scoring path hands it over
//! ([`Prediction`]) and the documents written for it ([`Document`], one per
//! row, or one for a failed request).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{LoadedModel, Predictions};
use crate::ServeError;

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
    /// The message's key (else the V2 body's `id`) and its position in the
    /// consumer group's stream: a message scored again after a rebalance
    /// makes the same document ids, so redelivery overwrites instead of
    /// duplicating, while another group (another deployment reading the
    /// same topic) makes its own.
    Kafka {
        request_id: String,
        group: Arc<str>,
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

/// One telemetry document: one row's prediction, or one failed request, as
/// read back from a store ([`Prediction::encode`] writes them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Document {
    /// Unique per document (Cosmos' `id`).
    pub id: String,
    pub request_id: Option<String>,
    /// The partition key.
    pub model: String,
    pub version: String,
    pub model_sha256: String,
    pub source: Source,
    /// UTC, RFC 3339 with microseconds, fixed width (see [`timestamp`]).
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
    pub lineage: Lineage,
    #[serde(default)]
    pub inputs: Option<Vec<f64>>,
}

/// A document as the stores take it: its JSON and its partition (model).
/// Documents are encoded once, on the writer thread, straight from the
/// [`Prediction`]; [`Document`] is what reading them back gives.
#[derive(Debug, Clone)]
pub struct EncodedDocument {
    pub model: Arc<str>,
    pub json: Vec<u8>,
}

impl EncodedDocument {
    pub fn decode(&self) -> serde_json::Result<Document> {
        serde_json::from_slice(&self.json)
    }
}

/// What every document of one model version carries, encoded once: the
/// larger part of a document (sha256, lineage, class names).
#[derive(Debug)]
pub struct ModelFragments {
    model: Arc<str>,
    /// `"model":…,"version":…,"model_sha256":…,`
    identity: Vec<u8>,
    /// `"lineage":{…}`
    lineage: Vec<u8>,
    /// Each class' label as JSON, in probability-column order.
    labels: Vec<Vec<u8>>,
    /// Each class' name as a JSON object key, with its colon.
    keys: Vec<Vec<u8>>,
}

impl ModelFragments {
    pub fn new(model: &LoadedModel, deployment: &Lineage) -> ModelFragments {
        let mut identity = Vec::new();
        field(&mut identity, "model", &model.name);
        field(&mut identity, "version", &model.version.to_string());
        field(&mut identity, "model_sha256", &model.sha256);
        let mut lineage = b"\"lineage\":".to_vec();
        json(
            &mut lineage,
            &Lineage {
                manifest: model.manifest.lineage.clone(),
                ..deployment.clone()
            },
        );
        let labels = &model.signature.labels;
        let classes = 0..model.signature.classes();
        ModelFragments {
            model: model.name.as_str().into(),
            identity,
            lineage,
            labels: classes.clone().map(|c| encoded(&labels.json(c))).collect(),
            keys: classes
                .map(|c| {
                    let mut key = encoded(&labels.text(c));
                    key.push(b':');
                    key
                })
                .collect(),
        }
    }
}

impl Prediction {
    /// The documents for this request, encoded: one per row, or one for a
    /// failure. `sequence` numbers REST requests within this process
    /// (`process`). The fields are [`Document`]'s, in its order.
    pub fn encode(
        &self,
        process: &str,
        sequence: u64,
        fragments: &ModelFragments,
    ) -> Vec<EncodedDocument> {
        // `{"id":"<prefix>-`: each document adds its row (or `error`).
        let mut id_head = Vec::with_capacity(64);
        id_head.extend_from_slice(b"{\"id\":");
        let (request_id, source) = match &self.origin {
            Origin::Rest { request_id } => {
                json(&mut id_head, &format_args!("{process}-{sequence:x}"));
                (request_id.as_deref(), Source::Rest)
            }
            Origin::Kafka {
                request_id,
                group,
                topic,
                partition,
                offset,
            } => {
                let group = id_safe(group);
                json(
                    &mut id_head,
                    &format_args!("{group}-{topic}-{partition}-{offset}"),
                );
                (Some(request_id.as_str()), Source::Kafka)
            }
        };
        id_head.pop();
        id_head.push(b'-');
        // What follows each document's id, up to its row.
        let mut head = Vec::with_capacity(128 + fragments.identity.len());
        field(&mut head, "request_id", &request_id);
        head.extend_from_slice(&fragments.identity);
        field(&mut head, "source", &source);
        head.extend_from_slice(b"\"timestamp\":\"");
        write_timestamp(&mut head, self.at);
        head.extend_from_slice(b"\",");
        field(&mut head, "latency_ms", &(self.latency.as_secs_f64() * 1e3));
        // `"trace_id":…,`, encoded once.
        let trace: Cow<[u8]> = match self.traceparent.as_deref().and_then(trace_id) {
            None => Cow::Borrowed(b"\"trace_id\":null,"),
            Some(id) => {
                let mut trace = Vec::with_capacity(48);
                field(&mut trace, "trace_id", &id);
                Cow::Owned(trace)
            }
        };
        // Each document is written straight into its own buffer, sized
        // once: its row's fields (about 48 bytes a class) go between
        // `head` and the trace id.
        let size = id_head.len() + head.len() + fragments.lineage.len() + 160;
        let size = size + 48 * self.model.signature.classes();
        let start = |id_suffix: &dyn Fn(&mut Vec<u8>), inputs: Option<&[f64]>| {
            let mut out = Vec::with_capacity(size + inputs.map_or(0, |x| 16 + 24 * x.len()));
            out.extend_from_slice(&id_head);
            id_suffix(&mut out);
            out.extend_from_slice(b"\",");
            out.extend_from_slice(&head);
            out
        };
        let finish = |mut out: Vec<u8>, inputs: Option<&[f64]>| {
            out.extend_from_slice(&trace);
            out.extend_from_slice(&fragments.lineage);
            if let Some(inputs) = inputs {
                out.extend_from_slice(b",\"inputs\":");
                json(&mut out, inputs);
            }
            out.push(b'}');
            EncodedDocument {
                model: fragments.model.clone(),
                json: out,
            }
        };
        let predictions = match &self.outcome {
            Ok(predictions) => predictions,
            Err(error) => {
                let inputs = self.inputs.as_deref();
                let mut out = start(&|out| out.extend_from_slice(b"error"), inputs);
                out.extend_from_slice(b"\"row\":null,\"label\":null,\"probabilities\":null,");
                field(&mut out, "outcome", error.kind());
                field(&mut out, "error", &error.to_string());
                return vec![finish(out, inputs)];
            }
        };
        let features = self.model.signature.features;
        (0..predictions.rows)
            .map(|row| {
                let inputs = self
                    .inputs
                    .as_ref()
                    .and_then(|x| x.get(row * features..(row + 1) * features));
                let mut out = start(&|out| json(out, &row), inputs);
                field(&mut out, "row", &row);
                out.extend_from_slice(b"\"label\":");
                out.extend_from_slice(&fragments.labels[predictions.label_indices[row]]);
                out.extend_from_slice(b",\"probabilities\":{");
                for (class, p) in predictions.row(row).iter().enumerate() {
                    if class > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&fragments.keys[class]);
                    json(&mut out, p);
                }
                out.extend_from_slice(b"},\"outcome\":\"ok\",\"error\":null,");
                finish(out, inputs)
            })
            .collect()
    }

    /// How many documents [`Self::encode`] makes, without making them.
    pub fn document_count(&self) -> usize {
        match &self.outcome {
            Ok(predictions) => predictions.rows,
            Err(_) => 1,
        }
    }
}

/// Appends `value` as JSON.
fn json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("strings, numbers and string-keyed maps encode");
}

fn encoded<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    json(&mut out, value);
    out
}

/// Appends `"name":value,`.
fn field<T: Serialize + ?Sized>(out: &mut Vec<u8>, name: &str, value: &T) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    json(out, value);
    out.push(b',');
}

/// Appends `at` in UTC as `YYYY-MM-DDTHH:MM:SS.ffffffZ`: fixed width, so
/// that timestamps sort as text. (Written digit by digit: a format
/// description cost a sixth of a document's encoding.)
fn write_timestamp(out: &mut Vec<u8>, at: SystemTime) {
    let at = OffsetDateTime::from(at);
    let (year, month, day) = at.to_calendar_date();
    let (hour, minute, second, micro) = at.to_hms_micro();
    let parts = [
        (year.clamp(0, 9999) as u32, 4, b'-'),
        (month as u32, 2, b'-'),
        (u32::from(day), 2, b'T'),
        (u32::from(hour), 2, b':'),
        (u32::from(minute), 2, b':'),
        (u32::from(second), 2, b'.'),
        (micro, 6, b'Z'),
    ];
    for (value, width, separator) in parts {
        for place in (0..width).rev() {
            out.push(b'0' + (value / 10u32.pow(place) % 10) as u8);
        }
        out.push(separator);
    }
}

/// `text` without the characters a Cosmos DB id cannot hold (`/`, `\`,
/// `?`, `#`), percent-encoded (and `%` itself, so that two texts stay two
/// ids). Kafka group ids may hold any of them; topic names cannot.
fn id_safe(text: &str) -> Cow<'_, str> {
    const UNSAFE: [char; 5] = ['/', '\\', '?', '#', '%'];
    if !text.contains(UNSAFE) {
        return text.into();
    }
    text.chars()
        .map(|c| match UNSAFE.contains(&c) {
            true => format!("%{:02X}", c as u32),
            false => c.to_string(),
        })
        .collect::<String>()
        .into()
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
    fn ids_keep_what_cosmos_db_allows_and_encode_the_rest() {
        assert_eq!(id_safe("scoring-v2.canary_1"), "scoring-v2.canary_1");
        assert_eq!(id_safe("team/a?b#c\\d%e"), "team%2Fa%3Fb%23c%5Cd%25e");
        assert_ne!(id_safe("a/b"), id_safe("a%2Fb"));
    }

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-xyz-00f067aa0ba902b7-01"), None);
    }

    fn timestamp(at: SystemTime) -> String {
        let mut out = Vec::new();
        write_timestamp(&mut out, at);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamps_have_a_fixed_width_and_sort_as_text() {
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let later = whole + Duration::from_micros(500_000);
        assert_eq!(timestamp(whole), "2023-11-14T22:13:20.000000Z");
        assert_eq!(timestamp(later), "2023-11-14T22:13:20.500000Z");
        assert!(timestamp(whole) < timestamp(later));
        // The same text as the `time` crate's formatting, across years,
        // leap days and microseconds.
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        for step in 0..2000u64 {
            let at = SystemTime::UNIX_EPOCH
                + Duration::from_micros(step * 987_654_321_123 % 4_000_000_000_000_000);
            let expected = OffsetDateTime::from(at).format(format).unwrap();
            assert_eq!(timestamp(at), expected);
        }
    }
}
