//! The V1 shape (KServe V1 / TF-Serving style): `{"instances": [[...], ...]}`
//! in, `{"predictions": [{"label": .., "probabilities": {label: p}}]}` out.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde::{Deserialize, Serialize as DeriveSerialize};
use serde_json::json;

use super::body::parse_json;
use super::infer::{score, Parsed};
use super::numbers::NestedNumbers;
use super::AppState;
use crate::model::{ClassLabels, FeatureMatrix, LoadedModel, Predictions};
use crate::ServeError;

#[derive(Debug, Deserialize)]
struct PredictRequest {
    instances: NestedNumbers,
}

/// `GET /v1/models`.
pub async fn list_models(state: web::Data<AppState>) -> HttpResponse {
    let names: Vec<&str> = state.repository.models().map(|m| m.name.as_str()).collect();
    HttpResponse::Ok().json(json!({ "models": names }))
}

/// `GET /v1/models/{model}`.
pub async fn model_status(
    state: web::Data<AppState>,
    model: web::Path<String>,
) -> Result<HttpResponse, ServeError> {
    let entry = state.repository.entry(&model)?;
    Ok(HttpResponse::Ok()
        .json(json!({ "name": entry.name, "ready": entry.latest_ready().is_some() })))
}

/// `POST /v1/models/{model}:predict`.
pub async fn predict(
    state: web::Data<AppState>,
    model: web::Path<String>,
    http: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ServeError> {
    let model = state.repository.resolve(&model, None)?;
    let labels = &model.signature.labels;
    score(
        &state,
        &model,
        &http,
        payload,
        |body| {
            let request = parse_json::<PredictRequest>(body)?;
            Ok(Parsed {
                features: to_domain(&model, &request.instances)?,
                id: None,
                context: (),
            })
        },
        |(), _, predictions| {
            let rows: Vec<Row> = (0..predictions.rows)
                .map(|row| Row {
                    labels,
                    predictions,
                    row,
                })
                .collect();
            HttpResponse::Ok().json(PredictResponse { predictions: rows })
        },
    )
    .await
}

fn to_domain(model: &LoadedModel, instances: &NestedNumbers) -> Result<FeatureMatrix, ServeError> {
    let features = model.signature.features;
    match instances.dims.as_slice() {
        [_, width] if *width == features => {}
        [_, width] => {
            return Err(ServeError::invalid(format!(
                "`instances`: expected {features} features per instance, got {width}"
            )))
        }
        _ => {
            return Err(ServeError::invalid(format!(
                "`instances` must be a list of rows of {features} numbers, e.g. [[{}]]",
                vec!["0.0"; features].join(", ")
            )))
        }
    }
    FeatureMatrix::from_values(&model.signature, &instances.values, "`instances`")
}

#[derive(DeriveSerialize)]
struct PredictResponse<'a> {
    predictions: Vec<Row<'a>>,
}

/// One prediction: `{"label": .., "probabilities": {label: p, ...}}` with
/// probabilities in class order.
struct Row<'a> {
    labels: &'a ClassLabels,
    predictions: &'a Predictions,
    row: usize,
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(
            "label",
            &self.labels.json(self.predictions.label_indices[self.row]),
        )?;
        map.serialize_entry("probabilities", &ClassProbabilities(self))?;
        map.end()
    }
}

struct ClassProbabilities<'a>(&'a Row<'a>);

impl Serialize for ClassProbabilities<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Row {
            labels,
            predictions,
            row,
        } = self.0;
        let probabilities = predictions.row(*row);
        let mut map = serializer.serialize_map(Some(probabilities.len()))?;
        for (class, p) in probabilities.iter().enumerate() {
            map.serialize_entry(&labels.text(class), p)?;
        }
        map.end()
    }
}
