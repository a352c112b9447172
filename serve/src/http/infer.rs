//! The path every inference route shares: read the body, parse it into
//! features, score them through the model's batcher, render the answer,
//! record metrics and hand the outcome to telemetry.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header::HeaderName;
use actix_web::{web, HttpRequest, HttpResponse};

use super::body::read_limited;
use super::AppState;
use crate::model::{FeatureMatrix, LoadedModel, Predictions};
use crate::telemetry::{Origin, Prediction, TRACEPARENT_HEADER};
use crate::ServeError;

/// Names the request in telemetry when its body has no `id`. Header names
/// are `HeaderName`s: looking a header up by text parses the text on every
/// request (two lookups by text were most of telemetry's cost per request).
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static(TRACEPARENT_HEADER);

/// What a route's parser makes of a body.
pub struct Parsed<T> {
    pub features: FeatureMatrix,
    /// The request's own id (V2 `id`), for the response and telemetry.
    pub id: Option<String>,
    /// Whatever else the route needs to render its response.
    pub context: T,
}

/// Scores the request in `payload` on `model`: `parse` turns the body into
/// features, `render` the predictions into the response. The predictions
/// then go to telemetry as they are, with no copy or formatting here.
pub async fn score<T>(
    state: &AppState,
    model: &Arc<LoadedModel>,
    request: &HttpRequest,
    payload: web::Payload,
    parse: impl FnOnce(&[u8]) -> Result<Parsed<T>, ServeError>,
    render: impl FnOnce(T, Option<&str>, &Predictions) -> HttpResponse,
) -> Result<HttpResponse, ServeError> {
    let received = Instant::now();
    // Every ready version has a batcher, so this fails only for models that
    // could not serve anything anyway.
    let batcher = state.scheduler.batcher(model)?;
    let telemetry = &state.telemetry;
    let at = telemetry.enabled().then(SystemTime::now);
    let sample_inputs = telemetry.sample_inputs();
    let (mut id, mut inputs) = (None, None);
    let outcome = async {
        let body = read_limited(payload, state.max_body_bytes).await?;
        let parsed = parse(&body)?;
        id = parsed.id;
        if sample_inputs {
            inputs = Some(parsed.features.values());
        }
        let scored = batcher.predict(parsed.features).await?;
        Ok((parsed.context, scored))
    }
    .await;
    let metrics = batcher.metrics();
    let (response, outcome) = match outcome {
        Ok((context, scored)) => {
            metrics.record_inference(Ok(&scored.predictions), received.elapsed(), scored.queued);
            let response = render(context, id.as_deref(), &scored.predictions);
            (Ok(response), Ok(scored.predictions))
        }
        Err(e) => {
            metrics.record_inference(Err(&e), received.elapsed(), Duration::ZERO);
            (Err(e.clone()), Err(e))
        }
    };
    if let Some(at) = at {
        let header = |name: HeaderName| {
            let value = request.headers().get(name)?;
            value.to_str().ok().map(str::to_string)
        };
        telemetry.record(Prediction {
            origin: Origin::Rest {
                request_id: id.or_else(|| header(REQUEST_ID_HEADER)),
            },
            model: model.clone(),
            traceparent: header(TRACEPARENT),
            at,
            latency: received.elapsed(),
            outcome,
            inputs,
        });
    }
    response
}
