//! A V2 inference response: JSON tensors, or a JSON header followed by raw
//! little-endian tensors for the outputs asked for in binary (the
//! `binary_data` extension, announced by `Inference-Header-Content-Length`).

use actix_web::http::header::ContentType;
use actix_web::HttpResponse;
use serde::ser::Serializer;
use serde::Serialize;

use super::request::{Output, WantedOutput};
use super::{INFERENCE_HEADER_LENGTH, LABEL_OUTPUT, PROBABILITIES_OUTPUT};
use crate::model::{ClassLabels, LoadedModel, Predictions};

// Everything borrows from the predictions: rendering allocates only the
// output buffer (and the strings of the classification extension).
#[derive(Debug, Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    #[serde(serialize_with = "serde_display")]
    model_version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputTensor<'a>>,
}

#[derive(Debug, Serialize)]
struct OutputTensor<'a> {
    name: &'static str,
    datatype: &'static str,
    shape: Shape,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<OutputData<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Shape {
    Rows([usize; 1]),
    Matrix([usize; 2]),
}

#[derive(Debug, Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// Output tensor contents; f32 stays f32 so JSON carries its shortest form.
#[derive(Debug)]
enum OutputData<'a> {
    /// The label of each row's winning class.
    Labels(&'a ClassLabels, &'a [usize]),
    Floats(&'a [f32]),
    Strings(Vec<String>),
}

impl Serialize for OutputData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            OutputData::Labels(ClassLabels::Int(values), indices) => {
                serializer.collect_seq(indices.iter().map(|&i| values[i]))
            }
            OutputData::Labels(ClassLabels::Str(values), indices) => {
                serializer.collect_seq(indices.iter().map(|&i| &values[i]))
            }
            OutputData::Floats(values) => values.serialize(serializer),
            OutputData::Strings(values) => values.serialize(serializer),
        }
    }
}

fn serde_display<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

impl OutputData<'_> {
    /// The tensor as the binary extension lays it out: little-endian
    /// numbers; BYTES elements each prefixed by their u32 length.
    fn write_bytes(&self, out: &mut Vec<u8>) {
        match self {
            OutputData::Floats(values) => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
            OutputData::Strings(values) => values.iter().for_each(|s| push_bytes(out, s)),
            OutputData::Labels(ClassLabels::Int(values), indices) => indices
                .iter()
                .for_each(|&i| out.extend(values[i].to_le_bytes())),
            OutputData::Labels(ClassLabels::Str(values), indices) => {
                indices.iter().for_each(|&i| push_bytes(out, &values[i]))
            }
        }
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
    id: Option<&str>,
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
                    Shape::Rows([predictions.rows]),
                    OutputData::Labels(labels, &predictions.label_indices),
                ),
                Output::Probabilities => (
                    PROBABILITIES_OUTPUT,
                    "FP32",
                    Shape::Matrix([predictions.rows, predictions.classes]),
                    OutputData::Floats(&predictions.probabilities),
                ),
                Output::TopClasses(k) => (
                    PROBABILITIES_OUTPUT,
                    "BYTES",
                    Shape::Matrix([predictions.rows, k]),
                    OutputData::Strings(top_classes(predictions, labels, k)),
                ),
            };
            let (parameters, data) = if w.binary {
                let start = binary.len();
                data.write_bytes(&mut binary);
                let binary_data_size = binary.len() - start;
                (Some(BinaryParameters { binary_data_size }), None)
            } else {
                (None, Some(data))
            };
            OutputTensor {
                name,
                datatype,
                shape,
                parameters,
                data,
            }
        })
        .collect();
    let response = InferResponse {
        model_name: &model.name,
        model_version: model.version,
        id,
        outputs,
    };
    // About 48 bytes per row plus the envelope, so one allocation mostly.
    let mut body = Vec::with_capacity(256 + 48 * predictions.rows + binary.len());
    serde_json::to_writer(&mut body, &response).expect("responses serialize");
    if binary.is_empty() {
        return HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(body);
    }
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
