//! A V2 inference response: JSON tensors, or a JSON header followed by raw
//! little-endian tensors for the outputs asked for in binary (the
//! `binary_data` extension, announced by `Inference-Header-Content-Length`).

use actix_web::HttpResponse;
use serde::Serialize;
use serde_json::Value;

use super::request::{Output, WantedOutput};
use super::{INFERENCE_HEADER_LENGTH, LABEL_OUTPUT, PROBABILITIES_OUTPUT};
use crate::model::{ClassLabels, LoadedModel, Predictions};

#[derive(Debug, Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    outputs: Vec<OutputTensor>,
}

#[derive(Debug, Serialize)]
struct OutputTensor {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<OutputData>,
}

#[derive(Debug, Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// Output tensor contents; f32 stays f32 so JSON carries its shortest form.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum OutputData {
    Labels(Vec<Value>),
    Floats(Vec<f32>),
    Strings(Vec<String>),
}

impl OutputData {
    /// The tensor as the binary extension lays it out: little-endian
    /// numbers; BYTES elements each prefixed by their u32 length.
    fn to_bytes(&self, labels: &ClassLabels, indices: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            OutputData::Floats(values) => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
            OutputData::Strings(values) => values.iter().for_each(|s| push_bytes(&mut out, s)),
            OutputData::Labels(_) => match labels {
                ClassLabels::Int(values) => indices
                    .iter()
                    .for_each(|&i| out.extend(values[i].to_le_bytes())),
                ClassLabels::Str(values) => indices
                    .iter()
                    .for_each(|&i| push_bytes(&mut out, &values[i])),
            },
        }
        out
    }
}

fn push_bytes(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

/// Renders `predictions` as the outputs in `wanted`.
pub fn render(
    model: &LoadedModel,
    predictions: &Predictions,
    wanted: &[WantedOutput],
    id: Option<String>,
) -> HttpResponse {
    let labels = &model.signature.labels;
    let mut binary = Vec::new();
    let outputs = wanted
        .iter()
        .map(|w| {
            let (name, datatype, shape, data) = match w.output {
                Output::Label => (
                    LABEL_OUTPUT,
                    labels.v2_datatype(),
                    vec![predictions.rows],
                    OutputData::Labels(
                        predictions
                            .label_indices
                            .iter()
                            .map(|&i| labels.json(i))
                            .collect(),
                    ),
                ),
                Output::Probabilities => (
                    PROBABILITIES_OUTPUT,
                    "FP32",
                    vec![predictions.rows, predictions.classes],
                    OutputData::Floats(predictions.probabilities.clone()),
                ),
                Output::TopClasses(k) => (
                    PROBABILITIES_OUTPUT,
                    "BYTES",
                    vec![predictions.rows, k],
                    OutputData::Strings(top_classes(predictions, labels, k)),
                ),
            };
            if w.binary {
                let bytes = data.to_bytes(labels, &predictions.label_indices);
                let parameters = Some(BinaryParameters {
                    binary_data_size: bytes.len(),
                });
                binary.extend(bytes);
                OutputTensor {
                    name,
                    datatype,
                    shape,
                    parameters,
                    data: None,
                }
            } else {
                OutputTensor {
                    name,
                    datatype,
                    shape,
                    parameters: None,
                    data: Some(data),
                }
            }
        })
        .collect();
    let response = InferResponse {
        model_name: &model.name,
        model_version: model.version.to_string(),
        id,
        outputs,
    };
    if binary.is_empty() {
        return HttpResponse::Ok().json(response);
    }
    let mut body = serde_json::to_vec(&response).expect("responses serialize");
    let json_length = body.len();
    body.extend(binary);
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((INFERENCE_HEADER_LENGTH, json_length.to_string()))
        .body(body)
}

/// Per row, the `k` most probable classes as "score:index:label", most
/// probable first (Triton's classification extension).
fn top_classes(predictions: &Predictions, labels: &ClassLabels, k: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(predictions.rows * k);
    let mut order: Vec<usize> = Vec::with_capacity(predictions.classes);
    for row in 0..predictions.rows {
        let p = predictions.row(row);
        order.clear();
        order.extend(0..predictions.classes);
        // Stable: equal scores keep class order.
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        out.extend(
            order[..k]
                .iter()
                .map(|&c| format!("{}:{c}:{}", p[c], labels.text(c))),
        );
    }
    out
}
