//! A V2 inference request, JSON or JSON followed by raw tensors (the
//! `binary_data` extension), turned into the domain's features plus the
//! outputs the client wants and how.

use std::borrow::Cow;

use serde::Deserialize;

use super::fast_json::parse_infer_request;
use super::{LABEL_OUTPUT, PROBABILITIES_OUTPUT};
use crate::http::body::parse_json;
use crate::http::numbers::NestedNumbers;
use crate::model::{ElementType, FeatureMatrix, LoadedModel};
use crate::ServeError;

#[derive(Debug, Deserialize)]
pub(super) struct InferRequest {
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) parameters: RequestParameters,
    pub(super) inputs: Vec<InputTensor>,
    pub(super) outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RequestParameters {
    /// Every output as raw bytes unless the output says otherwise.
    #[serde(default)]
    pub(super) binary_data_output: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct InputTensor {
    pub(super) name: String,
    pub(super) shape: Vec<i64>,
    pub(super) datatype: String,
    pub(super) data: Option<NestedNumbers>,
    #[serde(default)]
    pub(super) parameters: InputParameters,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct InputParameters {
    /// The tensor's bytes follow the JSON instead of a `data` field.
    pub(super) binary_data_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RequestedOutput {
    pub(super) name: String,
    #[serde(default)]
    pub(super) parameters: OutputParameters,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct OutputParameters {
    pub(super) binary_data: Option<bool>,
    /// Top-k classes as "score:index:label" strings instead of probabilities.
    pub(super) classification: Option<usize>,
}

/// One output the client asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Output {
    Label,
    Probabilities,
    /// The `k` most probable classes per row (classification extension).
    TopClasses(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WantedOutput {
    pub output: Output,
    /// Raw little-endian bytes after the JSON instead of a `data` field.
    pub binary: bool,
}

/// A parsed, validated request.
#[derive(Debug)]
pub struct Parsed {
    pub id: Option<String>,
    pub features: FeatureMatrix,
    pub outputs: Vec<WantedOutput>,
}

/// Parses `body` for `model`. With `json_length` (the
/// `Inference-Header-Content-Length` header) the JSON is that many leading
/// bytes and binary tensors follow.
pub fn parse(
    body: &[u8],
    json_length: Option<usize>,
    model: &LoadedModel,
) -> Result<Parsed, ServeError> {
    let (json, mut binary) = match json_length {
        None => (body, &body[body.len()..]),
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(ServeError::invalid(format!(
                "Inference-Header-Content-Length is {n} but the body has {} bytes",
                body.len()
            )))
        }
    };
    let request = match parse_infer_request(json) {
        Some(request) => request,
        None => parse_json::<InferRequest>(json)?,
    };
    let input = single_input(model, &request.inputs)?;
    let what = format!("input `{}`", input.name);
    let datatype = ElementType::from_v2_name(&input.datatype).ok_or_else(|| {
        ServeError::invalid(format!(
            "{what}: datatype `{}` is not supported; use FP32, FP64, INT32 or INT64",
            input.datatype
        ))
    })?;
    let dims = check_shape(&what, &input.shape, model.signature.features)?;
    let count: usize = dims.iter().product();
    let values = match (&input.data, input.parameters.binary_data_size) {
        (Some(_), Some(_)) => {
            return Err(ServeError::invalid(format!(
                "{what} has both `data` and `binary_data_size`"
            )))
        }
        (None, None) => {
            return Err(ServeError::invalid(format!(
                "{what} has neither `data` nor `binary_data_size`"
            )))
        }
        (Some(data), None) => {
            check_json_data(&what, data, &dims, count)?;
            Cow::Borrowed(data.values.as_slice())
        }
        (None, Some(size)) => {
            if size > binary.len() {
                return Err(ServeError::invalid(format!(
                    "{what}: binary_data_size is {size} but only {} bytes follow the JSON",
                    binary.len()
                )));
            }
            let (bytes, rest) = binary.split_at(size);
            binary = rest;
            Cow::Owned(binary_values(&what, bytes, datatype, count)?)
        }
    };
    if !binary.is_empty() {
        return Err(ServeError::invalid(format!(
            "{} bytes of binary data follow the JSON that no input claims",
            binary.len()
        )));
    }
    if datatype.is_integer() {
        if let Some(v) = values.iter().find(|v| v.fract() != 0.0) {
            return Err(ServeError::invalid(format!(
                "{what}: datatype {} but the data holds the non-integer {v}",
                input.datatype
            )));
        }
    }
    let features = FeatureMatrix::from_values(&model.signature, &values, &what)?;
    let outputs = wanted_outputs(model, &request)?;
    Ok(Parsed {
        id: request.id,
        features,
        outputs,
    })
}

fn single_input<'a>(
    model: &LoadedModel,
    inputs: &'a [InputTensor],
) -> Result<&'a InputTensor, ServeError> {
    let expected = &model.signature.input_name;
    let input = match inputs {
        [input] => input,
        [] => {
            return Err(ServeError::invalid(format!(
                "`inputs` is empty; model `{}` expects input `{expected}`",
                model.name
            )))
        }
        many => {
            return Err(ServeError::invalid(format!(
                "model `{}` takes one input (`{expected}`), the request has {}",
                model.name,
                many.len()
            )))
        }
    };
    if &input.name != expected {
        return Err(ServeError::invalid(format!(
            "unknown input `{}`; model `{}` expects `{expected}`",
            input.name, model.name
        )));
    }
    Ok(input)
}

/// The declared shape must be `[rows, features]` (or `[features]` for one
/// row); returns it as dimensions.
fn check_shape(what: &str, shape: &[i64], features: usize) -> Result<Vec<usize>, ServeError> {
    if shape.iter().any(|&d| d < 0) {
        return Err(ServeError::invalid(format!(
            "{what}: shape {shape:?} has a negative dimension"
        )));
    }
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let width = match dims.as_slice() {
        [width] | [_, width] => *width,
        _ => {
            return Err(ServeError::invalid(format!(
                "{what}: shape {shape:?} must be [rows, {features}] or [{features}]"
            )))
        }
    };
    if width != features {
        return Err(ServeError::invalid(format!(
            "{what}: expected {features} features per row, shape {shape:?} has {width}"
        )));
    }
    Ok(dims)
}

/// JSON `data` must hold as many values as the shape, nested like it if nested.
fn check_json_data(
    what: &str,
    data: &NestedNumbers,
    dims: &[usize],
    count: usize,
) -> Result<(), ServeError> {
    if count != data.values.len() {
        return Err(ServeError::invalid(format!(
            "{what}: shape {dims:?} needs {count} values, `data` has {}",
            data.values.len()
        )));
    }
    if data.dims.len() > 1 && data.dims != dims {
        return Err(ServeError::invalid(format!(
            "{what}: `data` is nested as {:?}, which does not match shape {dims:?}",
            data.dims
        )));
    }
    Ok(())
}

/// Raw little-endian values of `datatype`.
fn binary_values(
    what: &str,
    bytes: &[u8],
    datatype: ElementType,
    count: usize,
) -> Result<Vec<f64>, ServeError> {
    let width = match datatype {
        ElementType::F32 | ElementType::I32 => 4,
        ElementType::F64 | ElementType::I64 => 8,
    };
    if bytes.len() != count * width {
        return Err(ServeError::invalid(format!(
            "{what}: binary_data_size is {} but {count} {} values take {} bytes",
            bytes.len(),
            datatype.v2_name(),
            count * width
        )));
    }
    let chunks = bytes.chunks_exact(width);
    Ok(match datatype {
        ElementType::F32 => chunks
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64)
            .collect(),
        ElementType::F64 => chunks
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        ElementType::I32 => chunks
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as f64)
            .collect(),
        ElementType::I64 => chunks
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64)
            .collect(),
    })
}

/// The outputs asked for, in order; both, as JSON, when none are named.
fn wanted_outputs(
    model: &LoadedModel,
    request: &InferRequest,
) -> Result<Vec<WantedOutput>, ServeError> {
    let default_binary = request.parameters.binary_data_output;
    let Some(requested) = request.outputs.as_deref().filter(|r| !r.is_empty()) else {
        return Ok(vec![
            WantedOutput {
                output: Output::Label,
                binary: default_binary,
            },
            WantedOutput {
                output: Output::Probabilities,
                binary: default_binary,
            },
        ]);
    };
    let classes = model.signature.classes();
    requested
        .iter()
        .map(|r| {
            let binary = r.parameters.binary_data.unwrap_or(default_binary);
            let output = match (r.name.as_str(), r.parameters.classification) {
                (LABEL_OUTPUT, None) => Output::Label,
                (PROBABILITIES_OUTPUT, None) => Output::Probabilities,
                (PROBABILITIES_OUTPUT, Some(k)) if (1..=classes).contains(&k) => Output::TopClasses(k),
                (PROBABILITIES_OUTPUT, Some(k)) => {
                    return Err(ServeError::invalid(format!(
                        "output `{PROBABILITIES_OUTPUT}`: classification must be between 1 and {classes}, got {k}"
                    )))
                }
                (LABEL_OUTPUT, Some(_)) => {
                    return Err(ServeError::invalid(format!(
                        "output `{LABEL_OUTPUT}`: classification applies to `{PROBABILITIES_OUTPUT}`"
                    )))
                }
                (other, _) => {
                    return Err(ServeError::invalid(format!(
                        "unknown output `{other}`; model `{}` has outputs `{LABEL_OUTPUT}` and `{PROBABILITIES_OUTPUT}`",
                        model.name
                    )))
                }
            };
            Ok(WantedOutput { output, binary })
        })
        .collect()
}
