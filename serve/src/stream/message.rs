//! The Kafka wire format, parsed in this one place: which model a message is
//! for (headers), its value turned into the domain's features, and the JSON
//! value of the result message.

use std::sync::Arc;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::http::{parse_json, parse_v2_request, NestedNumbers};
use crate::model::{FeatureMatrix, LoadedModel, ModelRepository, Predictions};
use crate::ServeError;

/// Header naming the model a message is for.
pub const MODEL_HEADER: &str = "model";
/// Header naming the model version (the latest ready one without it).
pub const VERSION_HEADER: &str = "model-version";

/// What a message asks: features for its model.
#[derive(Debug)]
pub struct ScoreRequest {
    pub features: FeatureMatrix,
    /// The `id` of a V2 request body, if it had one.
    pub body_id: Option<String>,
}

/// The model a message is for: its `model` header, else the default model.
pub fn resolve_model(
    repository: &ModelRepository,
    default_model: Option<&str>,
    model_header: Option<&[u8]>,
    version_header: Option<&[u8]>,
) -> Result<Arc<LoadedModel>, ServeError> {
    let text = |name: &str, bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| ServeError::invalid(format!("header `{name}` is not UTF-8")))
    };
    let name = match model_header {
        Some(bytes) => text(MODEL_HEADER, bytes)?,
        None => default_model.map(str::to_owned).ok_or_else(|| {
            ServeError::invalid(format!(
                "the message has no `{MODEL_HEADER}` header and no default model is set (--kafka-model)"
            ))
        })?,
    };
    let version = version_header
        .map(|bytes| text(VERSION_HEADER, bytes))
        .transpose()?;
    repository.resolve(&name, version.as_deref())
}

/// A message value: a V2 inference request, `{"instances": [[..], ..]}`, one
/// row `[..]` or rows `[[..], ..]`.
pub fn parse_value(model: &LoadedModel, value: &[u8]) -> Result<ScoreRequest, ServeError> {
    #[derive(Deserialize)]
    struct Probe {
        inputs: Option<IgnoredAny>,
        instances: Option<NestedNumbers>,
    }
    let (features, body_id) = match value.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ServeError::invalid("the message has no value")),
        Some(b'[') => (
            rows(model, &parse_json::<NestedNumbers>(value)?, "the value")?,
            None,
        ),
        Some(b'{') => match parse_json::<Probe>(value)? {
            Probe {
                inputs: Some(_), ..
            } => {
                let parsed = parse_v2_request(value, None, model)?;
                (parsed.features, parsed.id)
            }
            Probe {
                instances: Some(instances),
                ..
            } => (rows(model, &instances, "`instances`")?, None),
            _ => return Err(not_a_request()),
        },
        Some(_) => return Err(not_a_request()),
    };
    Ok(ScoreRequest { features, body_id })
}

fn not_a_request() -> ServeError {
    ServeError::invalid(
        "the value must be a V2 inference request (with `inputs`), {\"instances\": [[...], ...]}, \
         one row [...] or rows [[...], ...]",
    )
}

/// One row (`[f1, f2, ..]`) or a list of rows.
fn rows(
    model: &LoadedModel,
    numbers: &NestedNumbers,
    what: &str,
) -> Result<FeatureMatrix, ServeError> {
    let features = model.signature.features;
    match numbers.dims.as_slice() {
        [width] | [_, width] if *width == features => {
            FeatureMatrix::from_values(&model.signature, &numbers.values, what)
        }
        [_] | [_, _] => Err(ServeError::invalid(format!(
            "{what}: model `{}` takes rows of {features} features, got {:?}",
            model.name, numbers.dims
        ))),
        _ => Err(ServeError::invalid(format!(
            "{what} must be one row of {features} numbers or a list of such rows"
        ))),
    }
}

/// A model's result messages: the JSON that is the same for every message
/// of the model is rendered once (per batch), the rest per message. The
/// fields, in order: `id` (the message key, else the V2 body's `id`, else
/// `topic/partition/offset`), `model`, `model_version`, `labels` (each
/// row's winning class), `probabilities` (per row, in `classes` order),
/// `classes`, `latency_ms` (from consuming the message to its result).
#[derive(Debug)]
pub struct ResultTemplate {
    /// `,"model":"iris","model_version":"1","labels":[`
    head: Vec<u8>,
    /// `],"classes":["setosa",...],"latency_ms":`
    tail: Vec<u8>,
    /// Each class label as JSON.
    labels: Vec<Vec<u8>>,
}

impl ResultTemplate {
    pub fn new(model: &LoadedModel) -> ResultTemplate {
        let classes = &model.signature.labels;
        let mut head = b",\"model\":".to_vec();
        head.extend(to_json(model.name.as_str()));
        head.extend(b",\"model_version\":");
        head.extend(to_json(&model.version.to_string()));
        head.extend(b",\"labels\":[");
        let mut tail = b"],\"classes\":".to_vec();
        tail.extend(to_json(classes));
        tail.extend(b",\"latency_ms\":");
        ResultTemplate {
            head,
            tail,
            labels: (0..classes.len())
                .map(|c| to_json(&classes.json(c)))
                .collect(),
        }
    }

    /// The value of the result message for `predictions`.
    pub fn render(&self, id: &str, predictions: &Predictions, latency: Duration) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.head.len() + self.tail.len() + 64 + 48 * predictions.rows);
        out.extend(b"{\"id\":");
        write(&mut out, &id);
        out.extend(&self.head);
        for (row, &class) in predictions.label_indices.iter().enumerate() {
            if row > 0 {
                out.push(b',');
            }
            out.extend(&self.labels[class]);
        }
        out.extend(b"],\"probabilities\":[");
        for row in 0..predictions.rows {
            if row > 0 {
                out.push(b',');
            }
            write(&mut out, &predictions.row(row));
        }
        // `tail` opens with the `]` that closes `probabilities`.
        out.extend(&self.tail);
        write(&mut out, &(latency.as_secs_f64() * 1e3));
        out.push(b'}');
        out
    }
}

/// Appends `value` as JSON (serde_json's formatting of numbers and strings).
fn write(out: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(out, value).expect("numbers and strings always serialize");
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("labels and names always serialize")
}
