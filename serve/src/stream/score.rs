//! One message's work: resolve its model, score it through the model's
//! batcher (the same one REST requests go through), and produce the result,
//! or the message itself to the dead-letter topic with the reason.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;

use super::message::{self, ScoredMessage, MODEL_HEADER, VERSION_HEADER};
use super::metrics;
use super::Pipeline;
use crate::model::{LoadedModel, Predictions};
use crate::ServeError;

/// A queue full of REST traffic is waited out, never dead-lettered.
const OVERLOAD_BACKOFF: Duration = Duration::from_millis(10);

/// Scores `message` and produces its result, or the message to the
/// dead-letter topic with the reason (also when the result itself cannot
/// be produced). Fails only when neither could be produced; the message is
/// then not done.
pub async fn handle(pipeline: &Pipeline, message: &OwnedMessage) -> Result<(), String> {
    let consumed = Instant::now();
    metrics::consumed(message.topic());
    let output = &pipeline.options.output_topic;
    if pipeline.options.pass_through {
        let value = message.payload().unwrap_or_default();
        let headers = passed_on(message, &[]);
        return send(pipeline, output, message, value, headers).await;
    }
    let error = match score(pipeline, message).await {
        Ok((model, predictions, id)) => {
            let value = ScoredMessage::new(&id, &model, &predictions, consumed.elapsed()).to_json();
            match send(
                pipeline,
                output,
                message,
                &value,
                result_headers(message, &model),
            )
            .await
            {
                Ok(()) => {
                    metrics::produced(output, since_created(message, consumed));
                    return Ok(());
                }
                // Even after librdkafka's own retries: keep the message,
                // with the reason.
                Err(e) => ServeError::Inference {
                    model: model.name.clone(),
                    reason: format!("the result could not be produced to `{output}`: {e}"),
                },
            }
        }
        Err(error) => error,
    };
    let dlq = &pipeline.options.dlq_topic;
    let value = message.payload().unwrap_or_default();
    send(
        pipeline,
        dlq,
        message,
        value,
        dead_letter_headers(message, &error),
    )
    .await
    .map_err(|e| format!("producing a dead letter to `{dlq}` failed: {e}"))?;
    metrics::dead_letter(error.kind());
    tracing::debug!(
        partition = message.partition(),
        offset = message.offset(),
        "dead-lettered: {error}"
    );
    Ok(())
}

type Scored = (Arc<LoadedModel>, Predictions, String);

async fn score(pipeline: &Pipeline, message: &OwnedMessage) -> Result<Scored, ServeError> {
    let started = Instant::now();
    let header = |name: &str| {
        message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == name))
            .and_then(|h| h.value)
    };
    let model = message::resolve_model(
        &pipeline.repository,
        pipeline.options.default_model.as_deref(),
        header(MODEL_HEADER),
        header(VERSION_HEADER),
    )?;
    let batcher = pipeline.scheduler.batcher(&model)?;
    let outcome = async {
        let request = message::parse_value(&model, message.payload().unwrap_or_default())?;
        let id = match (message.key(), request.body_id) {
            (Some(key), _) => String::from_utf8_lossy(key).into_owned(),
            (None, Some(id)) => id,
            (None, None) => format!(
                "{}/{}/{}",
                message.topic(),
                message.partition(),
                message.offset()
            ),
        };
        let mut features = request.features;
        loop {
            match batcher.predict(features).await {
                Err(ServeError::Overloaded { .. }) => {
                    tokio::time::sleep(OVERLOAD_BACKOFF).await;
                    features = message::parse_value(&model, message.payload().unwrap_or_default())?
                        .features;
                }
                other => return other.map(|scored| (scored, id)),
            }
        }
    }
    .await;
    let metrics = batcher.metrics();
    match &outcome {
        Ok((scored, _)) => {
            metrics.record_inference(Ok(&scored.predictions), started.elapsed(), scored.queued)
        }
        Err(e) => metrics.record_inference(Err(e), started.elapsed(), Duration::ZERO),
    }
    outcome.map(|(scored, id)| (model, scored.predictions, id))
}

async fn send(
    pipeline: &Pipeline,
    topic: &str,
    message: &OwnedMessage,
    value: &[u8],
    headers: OwnedHeaders,
) -> Result<(), String> {
    let mut record = FutureRecord::to(topic).payload(value).headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    // Waiting for room in librdkafka's queue is backpressure, not failure.
    match pipeline
        .producer
        .send(record, rdkafka::util::Timeout::Never)
        .await
    {
        Ok(_) => Ok(()),
        Err((e, _)) => Err(e.to_string()),
    }
}

/// The input's headers (`traceparent` and the like) passed on, with the
/// model and version that actually scored it.
fn result_headers(message: &OwnedMessage, model: &LoadedModel) -> OwnedHeaders {
    let version = model.version.to_string();
    passed_on(message, &[MODEL_HEADER, VERSION_HEADER])
        .insert(Header {
            key: MODEL_HEADER,
            value: Some(model.name.as_bytes()),
        })
        .insert(Header {
            key: VERSION_HEADER,
            value: Some(version.as_bytes()),
        })
}

/// The input's headers plus why it failed and where it came from.
pub(super) fn dead_letter_headers(message: &OwnedMessage, error: &ServeError) -> OwnedHeaders {
    let reason = error.to_string();
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let added: [(&str, &[u8]); 5] = [
        ("error", reason.as_bytes()),
        ("error-kind", error.kind().as_bytes()),
        ("source-topic", message.topic().as_bytes()),
        ("source-partition", partition.as_bytes()),
        ("source-offset", offset.as_bytes()),
    ];
    let names: Vec<&str> = added.iter().map(|(k, _)| *k).collect();
    added
        .iter()
        .fold(passed_on(message, &names), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(*value),
            })
        })
}

/// The input's headers except those named in `replaced`.
fn passed_on(message: &OwnedMessage, replaced: &[&str]) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(input) = message.headers() {
        for header in input.iter().filter(|h| !replaced.contains(&h.key)) {
            headers = headers.insert(header);
        }
    }
    headers
}

/// Time since the message was created (its producer's timestamp), or since
/// it was consumed when it carries none or the clocks disagree.
fn since_created(message: &OwnedMessage, consumed: Instant) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    match message.timestamp().to_millis() {
        Some(created) if created > 0 && created <= now_ms => {
            Duration::from_millis((now_ms - created) as u64)
        }
        _ => consumed.elapsed(),
    }
}
