//! The path every inference route shares: read the body, parse it into
//! features, score them through the model's batcher, record metrics.

use std::time::{Duration, Instant};

use actix_web::web;

use super::body::read_limited;
use super::AppState;
use crate::batch::Scored;
use crate::model::{FeatureMatrix, LoadedModel};
use crate::ServeError;

/// Scores the request in `payload` on `model`. `parse` turns the body into
/// features plus whatever the route needs to render its response.
pub async fn score<T>(
    state: &AppState,
    model: &LoadedModel,
    payload: web::Payload,
    parse: impl FnOnce(&[u8]) -> Result<(FeatureMatrix, T), ServeError>,
) -> Result<(T, Scored), ServeError> {
    let received = Instant::now();
    // Every ready version has a batcher, so this fails only for models that
    // could not serve anything anyway.
    let batcher = state.scheduler.batcher(model)?;
    let outcome = async {
        let body = read_limited(payload, state.max_body_bytes).await?;
        let (features, context) = parse(&body)?;
        let scored = batcher.predict(features).await?;
        Ok((context, scored))
    }
    .await;
    let metrics = batcher.metrics();
    match &outcome {
        Ok((_, scored)) => {
            metrics.record_inference(Ok(&scored.predictions), received.elapsed(), scored.queued)
        }
        Err(e) => metrics.record_inference(Err(e), received.elapsed(), Duration::ZERO),
    }
    outcome
}
