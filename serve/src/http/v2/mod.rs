//! Open Inference Protocol V2 (KServe / Triton): server and model metadata,
//! readiness, the repository index, and inference with JSON tensors, binary
//! tensors (`binary_tensor_data`) and top-k classes (`classification`).

mod fast_json;
mod request;
mod response;

/// The V2 request parser, shared with the Kafka transport.
pub(crate) use request::parse as parse_request;

use actix_web::http::header::HeaderName;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::infer::{score, Parsed};
use super::AppState;
use crate::model::{LoadedModel, ModelEntry, VersionState};
use crate::ServeError;

/// The binary extension's header (`Inference-Header-Content-Length`): how
/// many leading body bytes are JSON. A `HeaderName`, because looking a
/// header up by text parses the text on every request.
pub const INFERENCE_HEADER_LENGTH: HeaderName =
    HeaderName::from_static("inference-header-content-length");

/// Output names this server returns for every classifier.
pub const LABEL_OUTPUT: &str = "label";
pub const PROBABILITIES_OUTPUT: &str = "probabilities";

/// `{model}` or `{model}/versions/{version}` in the URL.
#[derive(Debug, Deserialize)]
pub struct ModelPath {
    model: String,
    version: Option<String>,
}

/// `GET /v2`: server metadata.
pub async fn server_metadata() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "modelops",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "classification"],
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
    http: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ServeError> {
    infer_model(&state, &path.model, path.version.as_deref(), &http, payload).await
}

/// Scores a V2 inference request on `model` (`version`, or the latest).
pub async fn infer_model(
    state: &AppState,
    model: &str,
    version: Option<&str>,
    http: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ServeError> {
    let model = state.repository.resolve(model, version)?;
    let json_length = match http.headers().get(INFERENCE_HEADER_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ServeError::invalid(
                        "header Inference-Header-Content-Length must be a byte count",
                    )
                })?,
        ),
    };
    score(
        state,
        &model,
        http,
        payload,
        |body| {
            let parsed = request::parse(body, json_length, &model)?;
            Ok(Parsed {
                features: parsed.features,
                id: parsed.id,
                context: parsed.outputs,
            })
        },
        |outputs, id, predictions| response::render(&model, predictions, &outputs, id),
    )
    .await
}
