//! A batch of consumed messages' work: resolve each message's model, score
//! the rows of all messages for one model in one call through the model's
//! batcher (the same one REST requests go through), and produce each
//! message's result, or the message itself to the dead-letter topic with the
//! reason.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;

use super::message::{self, ResultTemplate, MODEL_HEADER, VERSION_HEADER};
use super::Pipeline;
use crate::batch::Batcher;
use crate::model::{FeatureMatrix, LoadedModel, Predictions};
use crate::telemetry::{Origin, Prediction, TRACEPARENT_HEADER};
use crate::ServeError;

/// A queue full of REST traffic is waited out, never dead-lettered.
const OVERLOAD_BACKOFF: Duration = Duration::from_millis(10);

/// A message's scoring outcome: the model, its result messages' template,
/// its predictions and the request id.
type Scored = (Arc<LoadedModel>, Arc<ResultTemplate>, Predictions, String);

/// Why a message was not scored, and the model it was for when known.
type Failed = (Option<Arc<LoadedModel>>, ServeError);

/// Scores `messages` and produces each one's result, or the message to the
/// dead-letter topic with the reason (also when the result itself cannot be
/// produced). Per message, fails only when neither could be produced; that
/// message is then not done.
pub async fn handle(pipeline: &Pipeline, messages: &[OwnedMessage]) -> Vec<Result<(), String>> {
    let consumed = Instant::now();
    let at = SystemTime::now();
    for _ in messages {
        pipeline.metrics.consumed.increment(1);
    }
    if pipeline.options.pass_through {
        let output = &pipeline.options.output_topic;
        return join_all(messages.iter().map(|m| {
            let value = m.payload().unwrap_or_default();
            send(pipeline, output, m, value, passed_on(m, &[]))
        }))
        .await;
    }
    let outcomes = score(pipeline, messages).await;
    join_all(
        messages
            .iter()
            .zip(outcomes)
            .map(|(m, outcome)| deliver(pipeline, m, outcome, consumed, at)),
    )
    .await
}

/// Produces `message`'s result, or its dead letter, then hands the outcome
/// to telemetry.
async fn deliver(
    pipeline: &Pipeline,
    message: &OwnedMessage,
    outcome: Result<Scored, Failed>,
    consumed: Instant,
    at: SystemTime,
) -> Result<(), String> {
    let output = &pipeline.options.output_topic;
    let record = |model, id, outcome| {
        record(
            pipeline,
            message,
            model,
            id,
            outcome,
            consumed.elapsed(),
            at,
        )
    };
    let (model, error) = match outcome {
        Ok((model, template, predictions, id)) => {
            let value = template.render(&id, &predictions, consumed.elapsed());
            let headers = result_headers(message, &model);
            match send(pipeline, output, message, &value, headers).await {
                Ok(()) => {
                    pipeline.metrics.produced.increment(1);
                    pipeline
                        .metrics
                        .end_to_end
                        .record(since_created(message, consumed));
                    record(model, id, Ok(predictions));
                    return Ok(());
                }
                // Even after librdkafka's own retries: keep the message,
                // with the reason.
                Err(e) => {
                    let reason = format!("the result could not be produced to `{output}`: {e}");
                    let name = model.name.clone();
                    (
                        Some(model),
                        ServeError::Inference {
                            model: name,
                            reason,
                        },
                    )
                }
            }
        }
        Err(failed) => failed,
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
    super::metrics::dead_letter(error.kind());
    tracing::debug!(
        partition = message.partition(),
        offset = message.offset(),
        "dead-lettered: {error}"
    );
    if let Some(model) = model {
        record(model, message_id(message, None), Err(error));
    }
    Ok(())
}

/// Hands a message's outcome to telemetry (with its features when input
/// sampling chooses it: parsed again, which only sampled messages pay for).
fn record(
    pipeline: &Pipeline,
    message: &OwnedMessage,
    model: Arc<LoadedModel>,
    request_id: String,
    outcome: Result<Predictions, ServeError>,
    latency: Duration,
    at: SystemTime,
) {
    let telemetry = &pipeline.telemetry;
    if !telemetry.enabled() {
        return;
    }
    let payload = message.payload().unwrap_or_default();
    let inputs = telemetry
        .sample_inputs()
        .then(|| message::parse_value(&model, payload).ok())
        .flatten()
        .map(|request| request.features.values());
    let traceparent = header(message, TRACEPARENT_HEADER)
        .map(|value| String::from_utf8_lossy(value).into_owned());
    telemetry.record(Prediction {
        origin: Origin::Kafka {
            request_id,
            group: pipeline.group.clone(),
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
        },
        model,
        traceparent,
        at,
        latency,
        outcome,
        inputs,
    });
}

/// The value of `message`'s header `name`.
fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a [u8]> {
    message
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == name))
        .and_then(|h| h.value)
}

/// What names a message's result: its key, else the V2 body's `id`, else
/// its position.
fn message_id(message: &OwnedMessage, body_id: Option<String>) -> String {
    match (message.key(), body_id) {
        (Some(key), _) => String::from_utf8_lossy(key).into_owned(),
        (None, Some(id)) => id,
        (None, None) => format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        ),
    }
}

/// What one message asks: its model, features and request id.
fn request(
    pipeline: &Pipeline,
    message: &OwnedMessage,
) -> Result<(Arc<LoadedModel>, FeatureMatrix, String), Failed> {
    let model = message::resolve_model(
        &pipeline.repository,
        pipeline.options.default_model.as_deref(),
        header(message, MODEL_HEADER),
        header(message, VERSION_HEADER),
    )
    .map_err(|e| (None, e))?;
    let request = message::parse_value(&model, message.payload().unwrap_or_default())
        .map_err(|e| (Some(model.clone()), e))?;
    let id = message_id(message, request.body_id);
    Ok((model, request.features, id))
}

/// A message of a model's group: its index in the batch, features and id.
type Member = (usize, FeatureMatrix, String);

/// Scores every message, one model run per model for the whole batch.
async fn score(pipeline: &Pipeline, messages: &[OwnedMessage]) -> Vec<Result<Scored, Failed>> {
    let started = Instant::now();
    let mut outcomes: Vec<Option<Result<Scored, Failed>>> = vec![None; messages.len()];
    // Per model: the messages' indices, features and ids.
    let mut groups: Vec<(Arc<LoadedModel>, Vec<Member>)> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        match request(pipeline, message) {
            Ok((model, features, id)) => {
                match groups.iter_mut().find(|(m, _)| Arc::ptr_eq(m, &model)) {
                    Some((_, members)) => members.push((index, features, id)),
                    None => groups.push((model, vec![(index, features, id)])),
                }
            }
            Err(error) => outcomes[index] = Some(Err(error)),
        }
    }
    for (model, members) in groups {
        let counts: Vec<usize> = members.iter().map(|(_, f, _)| f.rows()).collect();
        let mut indices = Vec::with_capacity(members.len());
        let mut features = Vec::with_capacity(members.len());
        let mut ids = Vec::with_capacity(members.len());
        for (index, matrix, id) in members {
            indices.push(index);
            features.push(matrix);
            ids.push(id);
        }
        let batcher = pipeline.scheduler.batcher(&model);
        let scored = match batcher {
            Ok(batcher) => predict(batcher, features, &indices, messages, &model).await,
            Err(ref error) => Err(error.clone()),
        };
        match scored {
            Ok((predictions, queued)) => {
                let template = Arc::new(ResultTemplate::new(&model));
                for ((index, predictions), id) in
                    indices.iter().zip(predictions.split(&counts)).zip(ids)
                {
                    if let Ok(batcher) = batcher {
                        let metrics = batcher.metrics();
                        metrics.record_inference(Ok(&predictions), started.elapsed(), queued);
                    }
                    outcomes[*index] = Some(Ok((model.clone(), template.clone(), predictions, id)));
                }
            }
            Err(error) => {
                for index in indices {
                    outcomes[index] = Some(Err((Some(model.clone()), error.clone())));
                }
            }
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every message has an outcome"))
        .collect()
}

/// Runs the model once on the messages' rows; waits out a full queue.
async fn predict(
    batcher: &Batcher,
    features: Vec<FeatureMatrix>,
    indices: &[usize],
    messages: &[OwnedMessage],
    model: &LoadedModel,
) -> Result<(Predictions, Duration), ServeError> {
    let mut features = FeatureMatrix::concat(features)?;
    loop {
        match batcher.predict(features).await {
            Err(ServeError::Overloaded { .. }) => {
                tokio::time::sleep(OVERLOAD_BACKOFF).await;
                // The features went into the refused request: parse again.
                let parts = indices
                    .iter()
                    .map(|&i| {
                        message::parse_value(model, messages[i].payload().unwrap_or_default())
                            .map(|r| r.features)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                features = FeatureMatrix::concat(parts)?;
            }
            Err(error) => {
                batcher
                    .metrics()
                    .record_inference(Err(&error), Duration::ZERO, Duration::ZERO);
                return Err(error);
            }
            Ok(scored) => return Ok((scored.predictions, scored.queued)),
        }
    }
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
