//! Kafka stream scoring: consume → score → produce, at least once (or
//! exactly once in transactions, [`transactional`]).
//!
//! The messages that arrived together are scored by one task, one model run
//! per model through the model's batcher (shared with REST requests), then
//! each result goes to the output topic, or the message itself to the
//! dead-letter topic with the reason. An input offset is committed only
//! when it and every earlier offset of its partition have their result or
//! dead letter acknowledged by the broker ([`offsets`]), so a crash at any
//! moment loses nothing (a restart reads the unfinished messages again).
//!
//! Work in flight is bounded: at `max_in_flight` messages the loop stops
//! taking more, and after a moment pauses the assigned partitions until half
//! of it finished. On a rebalance, work of
//! the revoked partitions gets a grace period to finish and what is done is
//! committed ([`context`]). On shutdown consumption stops, work in flight
//! finishes, offsets are committed and the consumer leaves the group.
//!
//! Knows the model domain and the batcher, nothing of HTTP (it reuses the
//! V2 JSON parser, which is the wire format's one parser).

mod context;
mod message;
mod metrics;
mod offsets;
mod score;
mod topics;
mod transactional;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use thiserror::Error;

use crate::batch::Scheduler;
use crate::model::ModelRepository;
use crate::shutdown::Draining;
use crate::telemetry::Telemetry;
use context::{commit, Progress, StreamContext};
use offsets::Ticket;

pub use message::{MODEL_HEADER, VERSION_HEADER};

/// How long the loop may stop taking messages (work in flight at its bound)
/// before it pauses the partitions and goes back to polling.
const PAUSE_AFTER: Duration = Duration::from_millis(500);

/// Between attempts at a message whose result nobody acknowledged.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Messages taken into one scoring task at most.
const MAX_BATCH: usize = 256;

/// How often done offsets are committed while running.
const COMMIT_EVERY: Duration = Duration::from_millis(500);

/// Where to read from and write to, and how.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub input_topic: String,
    pub output_topic: String,
    pub dlq_topic: String,
    pub group_id: String,
    /// The model for messages without a `model` header.
    pub default_model: Option<String>,
    /// Create the three topics like this when missing.
    pub create_topics: Option<TopicSpec>,
    /// Messages consumed and not yet finished, at most.
    pub max_in_flight: usize,
    /// On shutdown or revocation, how long work in flight may take.
    pub drain_timeout: Duration,
    /// Exactly once, in transactions with this `transactional.id`; at least
    /// once without.
    pub transactional_id: Option<String>,
    /// Benchmark baseline: copy each value to the output topic unscored.
    pub pass_through: bool,
    /// librdkafka properties for the consumer and producer (security, tuning).
    pub client_properties: Vec<(String, String)>,
}

#[derive(Debug, Error)]
pub enum StreamError {
    #[error("Kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("creating topic `{topic}`: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("starting the Kafka runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Partitions and replication factor of topics the scorer creates.
#[derive(Debug, Clone, Copy)]
pub struct TopicSpec {
    pub partitions: i32,
    pub replication: i32,
}

/// What the scoring tasks share.
struct Pipeline {
    options: KafkaOptions,
    /// `options.group_id`, shared by every message's telemetry.
    group: Arc<str>,
    metrics: metrics::StreamMetrics,
    repository: Arc<ModelRepository>,
    scheduler: Arc<Scheduler>,
    producer: FutureProducer,
    progress: Arc<Progress>,
    telemetry: Arc<Telemetry>,
}

/// The stream scorer, running on threads of its own.
pub struct StreamScorer {
    thread: std::thread::JoinHandle<Result<(), StreamError>>,
}

impl StreamScorer {
    /// Connects, creates topics if asked, subscribes and starts scoring on a
    /// runtime of its own. It stops when `draining` starts.
    pub fn start(
        options: KafkaOptions,
        repository: Arc<ModelRepository>,
        scheduler: Arc<Scheduler>,
        telemetry: Arc<Telemetry>,
        draining: Draining,
    ) -> Result<StreamScorer, StreamError> {
        // Two threads: the consumer loop blocks one briefly on commits and
        // rebalances while scoring tasks go on on the other.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kafka")
            .enable_all()
            .build()?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kafka-main".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let (pipeline, consumer) =
                        match connect(options, repository, scheduler, telemetry).await {
                            Ok(connected) => {
                                let _ = ready_tx.send(Ok(()));
                                connected
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return Ok(());
                            }
                        };
                    let pipeline = Arc::new(pipeline);
                    if pipeline.options.transactional_id.is_none() {
                        run(pipeline, consumer, draining).await;
                        return Ok(());
                    }
                    let outcome = transactional::run(pipeline, consumer, draining.clone()).await;
                    if let Err(e) = &outcome {
                        // The process stops: restarted, it takes up from the
                        // last committed transaction.
                        tracing::error!("Kafka scoring failed, shutting down: {e}");
                        draining.start();
                    }
                    outcome
                })
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(StreamScorer { thread }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("the Kafka thread stopped").into()),
        }
    }

    /// Waits until the scorer stopped (after `draining` started).
    pub fn join(self) -> Result<(), StreamError> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the Kafka thread panicked").into()))
    }
}

/// `defaults` overridden by the user's properties.
fn client_config(options: &KafkaOptions, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &options.brokers);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in &options.client_properties {
        config.set(key, value);
    }
    config
}

async fn connect(
    options: KafkaOptions,
    repository: Arc<ModelRepository>,
    scheduler: Arc<Scheduler>,
    telemetry: Arc<Telemetry>,
) -> Result<(Pipeline, StreamConsumer<StreamContext>), StreamError> {
    if let Some(spec) = options.create_topics {
        topics::create_missing(
            &client_config(&options, &[]),
            &[
                &options.input_topic,
                &options.output_topic,
                &options.dlq_topic,
            ],
            spec,
        )
        .await?;
    }
    let mut producer = client_config(
        &options,
        // A transaction left open by a crash blocks read_committed readers
        // until the broker aborts it; ours last well under a second.
        &[("transaction.timeout.ms", "10000")],
    );
    // Retries never duplicate or reorder results.
    producer.set("enable.idempotence", "true");
    if let Some(id) = &options.transactional_id {
        producer.set("transactional.id", id);
    }
    let producer: FutureProducer = producer.create()?;
    let progress = Arc::new(Progress::default());
    let context = StreamContext {
        progress: progress.clone(),
        revoke_grace: options.drain_timeout,
    };
    let defaults = [
        // A new group starts at the beginning: nothing published before the
        // first start is skipped.
        ("auto.offset.reset", "earliest"),
        // Statistics carry the consumer lag.
        ("statistics.interval.ms", "5000"),
    ];
    let consumer: StreamConsumer<StreamContext> = client_config(&options, &defaults)
        .set("group.id", &options.group_id)
        // Offsets are committed by us, once their results are acknowledged.
        .set("enable.auto.commit", "false")
        .create_with_context(context)?;
    consumer.subscribe(&[&options.input_topic])?;
    tracing::info!(
        brokers = options.brokers,
        input = options.input_topic,
        output = options.output_topic,
        dead_letters = options.dlq_topic,
        group = options.group_id,
        exactly_once = options.transactional_id.is_some(),
        "Kafka scoring started"
    );
    let pipeline = Pipeline {
        metrics: metrics::StreamMetrics::new(&options.input_topic, &options.output_topic),
        group: options.group_id.as_str().into(),
        options,
        repository,
        scheduler,
        producer,
        progress,
        telemetry,
    };
    Ok((pipeline, consumer))
}

/// The consumer loop: hands the messages that arrived together to a task,
/// commits on a timer, stops taking messages (then pauses) while too much is
/// in flight; on `draining`, finishes up.
async fn run(pipeline: Arc<Pipeline>, consumer: StreamConsumer<StreamContext>, draining: Draining) {
    let progress = pipeline.progress.clone();
    let max_in_flight = pipeline.options.max_in_flight.max(1);
    let mut commit_timer = tokio::time::interval(COMMIT_EVERY);
    // At `max_in_flight` the loop stops taking messages until one finishes;
    // if that lasts, the partitions are paused so that the consumer can keep
    // polling (group liveness, rebalances) without fetching more.
    let mut saturated_since: Option<Instant> = None;
    let mut paused = false;
    loop {
        let pause_at = saturated_since.map(|since| since + PAUSE_AFTER);
        tokio::select! {
            biased;
            _ = draining.started() => break,
            _ = commit_timer.tick() => commit(&consumer, &progress),
            _ = progress.finished.notified(), if saturated_since.is_some() => {
                let in_flight = progress.tracker().in_flight();
                // Paused partitions lose what was fetched: resume only when
                // half the work is done, not at every finished message.
                let resume_below = if paused { max_in_flight / 2 + 1 } else { max_in_flight };
                if in_flight < resume_below {
                    saturated_since = None;
                    if paused {
                        set_paused(&consumer, false);
                        paused = false;
                    }
                }
            }
            _ = sleep_until(pause_at), if pause_at.is_some() && !paused => {
                set_paused(&consumer, true);
                paused = true;
            }
            received = consumer.recv(), if saturated_since.is_none() || paused => {
                let first = match received {
                    Ok(message) => message.detach(),
                    Err(e) => {
                        tracing::warn!("consuming failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Whatever else has arrived goes into the same batch: one
                // task and one model run for all of them.
                let room = max_in_flight.saturating_sub(progress.tracker().in_flight());
                let mut batch = vec![first];
                while batch.len() < room.clamp(1, MAX_BATCH) {
                    match consumer.recv().now_or_never() {
                        Some(Ok(message)) => batch.push(message.detach()),
                        _ => break,
                    }
                }
                let tickets: Vec<Ticket> = {
                    let mut tracker = progress.tracker();
                    batch
                        .iter()
                        .map(|m| tracker.consumed((m.topic().to_string(), m.partition()), m.offset()))
                        .collect()
                };
                tokio::spawn(score_until_done(pipeline.clone(), batch, tickets));
                let in_flight = progress.tracker().in_flight();
                metrics::in_flight(in_flight);
                if in_flight >= max_in_flight && saturated_since.is_none() {
                    saturated_since = Some(Instant::now());
                }
            }
        }
    }
    tracing::info!("Kafka: stopped consuming; finishing work in flight");
    let deadline = Instant::now() + pipeline.options.drain_timeout;
    while progress.tracker().in_flight() > 0 && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(50), progress.finished.notified()).await;
    }
    commit(&consumer, &progress);
    let left = progress.tracker().in_flight();
    if left > 0 {
        tracing::warn!(
            left,
            "Kafka: work still in flight at the deadline; those messages will be read again"
        );
    }
    leave_group(&consumer).await;
    if let Err(e) = tokio::task::block_in_place(|| {
        rdkafka::producer::Producer::flush(&pipeline.producer, Duration::from_secs(5))
    }) {
        tracing::warn!("flushing the producer: {e}");
    }
    tracing::info!("Kafka: stopped");
}

/// At least once: each message is retried until its result or dead letter
/// is acknowledged (or the process stops, and it is read again); each is
/// marked done as soon as it is.
async fn score_until_done(
    pipeline: Arc<Pipeline>,
    mut messages: Vec<OwnedMessage>,
    mut tickets: Vec<Ticket>,
) {
    let progress = &pipeline.progress;
    loop {
        let outcomes = score::handle(&pipeline, &messages).await;
        let mut failed = Vec::new();
        {
            let mut tracker = progress.tracker();
            for ((message, ticket), outcome) in messages.into_iter().zip(tickets).zip(outcomes) {
                match outcome {
                    Ok(()) => {
                        tracker.done(&ticket);
                    }
                    Err(e) => {
                        tracing::warn!("{e}; retrying");
                        failed.push((message, ticket));
                    }
                }
            }
            metrics::in_flight(tracker.in_flight());
        }
        progress.finished.notify_one();
        if failed.is_empty() {
            return;
        }
        metrics::produce_retry(&pipeline.options.dlq_topic);
        tokio::time::sleep(RETRY_BACKOFF).await;
        (messages, tickets) = failed.into_iter().unzip();
    }
}

/// Pauses or resumes every assigned partition.
fn set_paused(consumer: &StreamConsumer<StreamContext>, pause: bool) {
    let outcome = consumer.assignment().and_then(|assigned| {
        if pause {
            consumer.pause(&assigned)
        } else {
            consumer.resume(&assigned)
        }
    });
    match outcome {
        Ok(()) if pause => tracing::debug!("Kafka: too much in flight, partitions paused"),
        Ok(()) => tracing::debug!("Kafka: partitions resumed"),
        Err(e) => tracing::warn!("pausing or resuming partitions failed: {e}"),
    }
}

/// Leaves the consumer group now (the revoke callback commits once more)
/// rather than when the consumer is dropped.
async fn leave_group(consumer: &StreamConsumer<StreamContext>) {
    consumer.unsubscribe();
    // The revocation is served while polling.
    let _ = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await;
}

/// Sleeps until `deadline` (forever without one).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
