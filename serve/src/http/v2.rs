//! Open Inference Protocol V2 (KServe / Triton) with JSON tensors: server and
//! model metadata, readiness, and inference.

use std::time::Instant;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::body::{parse_json, read_limited};
use super::numbers::NestedNumbers;
use super::AppState;
use crate::model::{
    ElementType, FeatureMatrix, LoadedModel, ModelEntry, Predictions, VersionState,
};
use crate::prometheus::record_inference;
use crate::ServeError;

/// Output names this server returns for every classifier.
pub const LABEL_OUTPUT: &str = "label";
pub const PROBABILITIES_OUTPUT: &str = "probabilities";

/// `{model}` or `{model}/versions/{version}` in the URL.
#[derive(Debug, Deserialize)]
pub struct ModelPath {
    model: String,
    version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<InputTensor>,
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: NestedNumbers,
}

#[derive(Debug, Deserialize)]
struct RequestedOutput {
    name: String,
}

#[derive(Debug, Serialize)]
struct InferResponse {
    model_name: String,
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
    data: OutputData,
}

/// Output tensor contents; f32 stays f32 so JSON carries its shortest form.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum OutputData {
    Labels(Vec<Value>),
    Floats(Vec<f32>),
}

/// `GET /v2`: server metadata.
pub async fn server_metadata() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "modelops",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

/// `GET /v2/models/{model}[/versions/{version}]`: the model's signature.
pub async fn model_metadata(
    state: web::Data<AppState>,
    path: web::Path<ModelPath>,
) -> Result<HttpResponse, ServeError> {
    let entry = state.repository.entry(&path.model)?;
    let model = state
        .repository
        .resolve(&path.model, path.version.as_deref())?;
    Ok(HttpResponse::Ok().json(metadata(entry, &model)))
}

fn metadata(entry: &ModelEntry, model: &LoadedModel) -> Value {
    let signature = &model.signature;
    let versions: Vec<String> = entry.versions.keys().map(u64::to_string).collect();
    json!({
        "name": model.name,
        "versions": versions,
        "platform": "onnx",
        "inputs": [{
            "name": signature.input_name,
            "datatype": signature.input_type.v2_name(),
            "shape": [-1, signature.features],
        }],
        "outputs": [
            { "name": LABEL_OUTPUT, "datatype": signature.labels.v2_datatype(), "shape": [-1] },
            { "name": PROBABILITIES_OUTPUT, "datatype": "FP32", "shape": [-1, signature.classes()] },
        ],
        "parameters": {
            "version": model.version.to_string(),
            "description": model.manifest.description,
            "class_labels": signature.labels,
            "sha256": model.sha256,
            "lineage": model.manifest.lineage,
            "metrics": model.manifest.metrics,
        },
    })
}

/// `GET /v2/models/{model}[/versions/{version}]/ready`.
pub async fn model_ready(state: web::Data<AppState>, path: web::Path<ModelPath>) -> HttpResponse {
    match state
        .repository
        .resolve(&path.model, path.version.as_deref())
    {
        Ok(_) => HttpResponse::Ok().json(json!({ "name": path.model, "ready": true })),
        Err(e @ (ServeError::ModelNotFound(_) | ServeError::VersionNotFound { .. })) => {
            actix_web::ResponseError::error_response(&e)
        }
        Err(e) => HttpResponse::ServiceUnavailable().json(json!({
            "name": path.model, "ready": false, "error": e.to_string(),
        })),
    }
}

/// `POST|GET /v2/repository/index`: every model version with its state and,
/// for those that failed to load, why (Triton's repository index shape).
pub async fn repository_index(state: web::Data<AppState>) -> HttpResponse {
    let index: Vec<Value> = state
        .repository
        .models()
        .flat_map(|entry| {
            entry.versions.iter().map(move |(version, state)| match state {
                VersionState::Ready(_) => {
                    json!({ "name": entry.name, "version": version.to_string(), "state": "READY" })
                }
                VersionState::Failed(reason) => json!({
                    "name": entry.name, "version": version.to_string(),
                    "state": "UNAVAILABLE", "reason": reason,
                }),
            })
        })
        .collect();
    HttpResponse::Ok().json(index)
}

/// `POST /v2/models/{model}[/versions/{version}]/infer`.
pub async fn infer(
    state: web::Data<AppState>,
    path: web::Path<ModelPath>,
    payload: web::Payload,
) -> Result<HttpResponse, ServeError> {
    let received = Instant::now();
    let model = state
        .repository
        .resolve(&path.model, path.version.as_deref())?;
    let body = read_limited(payload, state.max_body_bytes).await?;
    let mut queued = received.elapsed();
    let outcome = parse_json::<InferRequest>(&body).and_then(|request| {
        let (features, outputs) = to_domain(&model, &request)?;
        queued = received.elapsed();
        let predictions = model.predict(features)?;
        Ok((request.id, outputs, predictions))
    });
    match outcome {
        Ok((id, outputs, predictions)) => {
            record_inference(&model, Ok(&predictions), received.elapsed(), queued);
            Ok(HttpResponse::Ok().json(InferResponse {
                model_name: model.name.clone(),
                model_version: model.version.to_string(),
                id,
                outputs: render_outputs(&model, &predictions, &outputs),
            }))
        }
        Err(e) => {
            record_inference(&model, Err(&e), received.elapsed(), queued);
            Err(e)
        }
    }
}

/// Which outputs the client asked for (all when it names none).
#[derive(Debug, Clone, Copy)]
struct Wanted {
    label: bool,
    probabilities: bool,
}

/// Validates the request against the model's signature and builds the
/// domain's feature matrix.
fn to_domain(
    model: &LoadedModel,
    request: &InferRequest,
) -> Result<(FeatureMatrix, Wanted), ServeError> {
    let signature = &model.signature;
    let expected = &signature.input_name;
    let input = match request.inputs.as_slice() {
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
    let what = format!("input `{}`", input.name);
    let datatype = ElementType::from_v2_name(&input.datatype).ok_or_else(|| {
        ServeError::invalid(format!(
            "{what}: datatype `{}` is not supported; use FP32, FP64, INT32 or INT64",
            input.datatype
        ))
    })?;
    check_shape(&what, &input.shape, &input.data, signature.features)?;
    if datatype.is_integer() {
        if let Some(v) = input.data.values.iter().find(|v| v.fract() != 0.0) {
            return Err(ServeError::invalid(format!(
                "{what}: datatype {} but the data holds the non-integer {v}",
                input.datatype
            )));
        }
    }
    let features = FeatureMatrix::from_values(signature, &input.data.values, &what)?;
    Ok((features, wanted_outputs(model, request.outputs.as_deref())?))
}

/// The declared shape must be `[rows, features]` (or `[features]` for one
/// row), match the element count, and match the nesting of nested data.
fn check_shape(
    what: &str,
    shape: &[i64],
    data: &NestedNumbers,
    features: usize,
) -> Result<(), ServeError> {
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
    let count: usize = dims.iter().product();
    if count != data.values.len() {
        return Err(ServeError::invalid(format!(
            "{what}: shape {shape:?} needs {count} values, `data` has {}",
            data.values.len()
        )));
    }
    if data.dims.len() > 1 && data.dims != dims {
        return Err(ServeError::invalid(format!(
            "{what}: `data` is nested as {:?}, which does not match shape {shape:?}",
            data.dims
        )));
    }
    Ok(())
}

fn wanted_outputs(
    model: &LoadedModel,
    requested: Option<&[RequestedOutput]>,
) -> Result<Wanted, ServeError> {
    let Some(requested) = requested.filter(|r| !r.is_empty()) else {
        return Ok(Wanted {
            label: true,
            probabilities: true,
        });
    };
    let mut wanted = Wanted {
        label: false,
        probabilities: false,
    };
    for output in requested {
        match output.name.as_str() {
            LABEL_OUTPUT => wanted.label = true,
            PROBABILITIES_OUTPUT => wanted.probabilities = true,
            other => {
                return Err(ServeError::invalid(format!(
                    "unknown output `{other}`; model `{}` has outputs `{LABEL_OUTPUT}` and `{PROBABILITIES_OUTPUT}`",
                    model.name
                )))
            }
        }
    }
    Ok(wanted)
}

fn render_outputs(
    model: &LoadedModel,
    predictions: &Predictions,
    wanted: &Wanted,
) -> Vec<OutputTensor> {
    let labels = &model.signature.labels;
    let mut outputs = Vec::with_capacity(2);
    if wanted.label {
        outputs.push(OutputTensor {
            name: LABEL_OUTPUT,
            datatype: labels.v2_datatype(),
            shape: vec![predictions.rows],
            data: OutputData::Labels(
                predictions
                    .label_indices
                    .iter()
                    .map(|&ix| labels.json(ix))
                    .collect(),
            ),
        });
    }
    if wanted.probabilities {
        outputs.push(OutputTensor {
            name: PROBABILITIES_OUTPUT,
            datatype: "FP32",
            shape: vec![predictions.rows, predictions.classes],
            data: OutputData::Floats(predictions.probabilities.clone()),
        });
    }
    outputs
}
