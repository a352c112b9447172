//! A V2 inference response: JSON tensors, or a JSON header followed by raw
//! little-endian tensors for the outputs asked for in binary (the
//! `binary_data` extension, announced by `Inference-Header-Content-Length`).

use actix_web::http::header::ContentType;
use actix_web::HttpResponse;
use serde_json::ser::{CompactFormatter, Formatter};

use super::request::{Output, WantedOutput};
use super::{INFERENCE_HEADER_LENGTH, LABEL_OUTPUT, PROBABILITIES_OUTPUT};
use crate::model::{ClassLabels, LoadedModel, Predictions};

// The JSON is written directly rather than through serde structs: that lets
// a string label be escaped once per class instead of once per row, which
// was a fifth of rendering a 64-row iris response. Numbers and strings go
// through serde_json's own formatter, so the bytes are what serde wrote.

/// Output tensor contents; f32 stays f32 so JSON carries its shortest form.
enum OutputData<'a> {
    /// The label of each row's winning class.
    Labels(&'a ClassLabels, &'a [usize]),
    Floats(&'a [f32]),
    Strings(Vec<String>),
}

impl OutputData<'_> {
    /// The tensor as a JSON array.
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            OutputData::Labels(ClassLabels::Int(values), indices) => {
                write_array(out, indices, |out, &i| write_i64(out, values[i]))
            }
            OutputData::Labels(ClassLabels::Str(values), indices) => {
                let quoted: Vec<Vec<u8>> = values
                    .iter()
                    .map(|v| {
                        let mut q = Vec::new();
                        write_string(&mut q, v);
                        q
                    })
                    .collect();
                write_array(out, indices, |out, &i| out.extend_from_slice(&quoted[i]))
            }
            OutputData::Floats(values) => write_array(out, values, |out, &v| write_f32(out, v)),
            OutputData::Strings(values) => write_array(out, values, |out, s| write_string(out, s)),
        }
    }

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
    // About 48 bytes per row plus the envelope, so one allocation mostly.
    let mut body = Vec::with_capacity(256 + 48 * predictions.rows);
    body.extend_from_slice(b"{\"model_name\":");
    write_string(&mut body, &model.name);
    body.extend_from_slice(b",\"model_version\":\"");
    write_u64(&mut body, model.version);
    body.push(b'"');
    if let Some(id) = id {
        body.extend_from_slice(b",\"id\":");
        write_string(&mut body, id);
    }
    body.extend_from_slice(b",\"outputs\":[");
    for (n, w) in wanted.iter().enumerate() {
        let (name, datatype, shape, data) = match w.output {
            Output::Label => (
                LABEL_OUTPUT,
                labels.v2_datatype(),
                &[predictions.rows][..],
                OutputData::Labels(labels, &predictions.label_indices),
            ),
            Output::Probabilities => (
                PROBABILITIES_OUTPUT,
                "FP32",
                &[predictions.rows, predictions.classes][..],
                OutputData::Floats(&predictions.probabilities),
            ),
            Output::TopClasses(k) => (
                PROBABILITIES_OUTPUT,
                "BYTES",
                &[predictions.rows, k][..],
                OutputData::Strings(top_classes(predictions, labels, k)),
            ),
        };
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"name\":");
        write_string(&mut body, name);
        body.extend_from_slice(b",\"datatype\":");
        write_string(&mut body, datatype);
        body.extend_from_slice(b",\"shape\":");
        write_array(&mut body, shape, |out, &d| write_u64(out, d as u64));
        if w.binary {
            let start = binary.len();
            data.write_bytes(&mut binary);
            body.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
            write_u64(&mut body, (binary.len() - start) as u64);
            body.push(b'}');
        } else {
            body.extend_from_slice(b",\"data\":");
            data.write_json(&mut body);
        }
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
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

/// `[a,b,...]`, each element written by `write`.
fn write_array<T>(out: &mut Vec<u8>, items: &[T], mut write: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

// Writing to a Vec cannot fail; serde_json's formatter returns io::Result
// only because it writes to any io::Write.

/// `s` as a quoted, escaped JSON string.
fn write_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing to a Vec");
}

/// An f32 as serde_json writes it: shortest round-trip form; NaN and the
/// infinities, which JSON lacks, as `null`.
fn write_f32(out: &mut Vec<u8>, v: f32) {
    let written = if v.is_finite() {
        CompactFormatter.write_f32(out, v)
    } else {
        CompactFormatter.write_null(out)
    };
    written.expect("writing to a Vec");
}

fn write_i64(out: &mut Vec<u8>, v: i64) {
    CompactFormatter
        .write_i64(out, v)
        .expect("writing to a Vec");
}

fn write_u64(out: &mut Vec<u8>, v: u64) {
    CompactFormatter
        .write_u64(out, v)
        .expect("writing to a Vec");
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
