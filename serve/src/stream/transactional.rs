//! Exactly once (`--kafka-exactly-once`): consume → score → produce in Kafka
//! transactions. Each transaction takes the messages that arrived within
//! [`TRANSACTION_WINDOW`] (at most `max_in_flight`), scores them together,
//! produces their results and dead letters, and commits their input offsets
//! inside the same transaction (`send_offsets_to_transaction`). A reader
//! with `isolation.level=read_committed` sees each result exactly once: a
//! transaction that fails is aborted and its messages are read again; one
//! left open by a crash is aborted by the broker (or at once by the next
//! producer with the same `transactional.id`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::Producer;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::context::StreamContext;
use super::{leave_group, score, sleep_until, Pipeline, StreamError};
use crate::shutdown::Draining;

/// How long a transaction collects messages once the first arrived.
const TRANSACTION_WINDOW: Duration = Duration::from_millis(100);
/// Timeout of each transactional call to the broker.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a transaction did not commit.
enum Failed {
    /// Abort it and read its messages again.
    Abort(String),
    /// The producer cannot go on (fenced by a newer instance, or broken).
    Fatal(KafkaError),
}

impl From<KafkaError> for Failed {
    fn from(e: KafkaError) -> Self {
        match &e {
            KafkaError::Transaction(rd) if rd.is_fatal() => Failed::Fatal(e),
            _ => Failed::Abort(e.to_string()),
        }
    }
}

/// The consumer loop in exactly-once mode; ends when `draining` starts
/// (after the transaction in progress) or on a fatal producer error.
pub async fn run(
    pipeline: Arc<Pipeline>,
    consumer: StreamConsumer<StreamContext>,
    draining: Draining,
) -> Result<(), StreamError> {
    let outcome = transactions(&pipeline, &consumer, &draining).await;
    leave_group(&consumer).await;
    tracing::info!("Kafka: stopped");
    outcome
}

/// Transactions until draining starts or the producer cannot go on.
async fn transactions(
    pipeline: &Pipeline,
    consumer: &StreamConsumer<StreamContext>,
    draining: &Draining,
) -> Result<(), StreamError> {
    let producer = &pipeline.producer;
    tokio::task::block_in_place(|| producer.init_transactions(BROKER_TIMEOUT))?;
    let max_batch = pipeline.options.max_in_flight.max(1);
    loop {
        let (batch, stopping) = collect(pipeline, consumer, draining, max_batch).await;
        if !batch.is_empty() {
            match transaction(pipeline, consumer, &batch).await {
                Ok(()) => {}
                Err(Failed::Fatal(e)) => {
                    tracing::error!("Kafka: the transactional producer failed: {e}");
                    return Err(e.into());
                }
                Err(Failed::Abort(reason)) => {
                    tracing::warn!(
                        messages = batch.len(),
                        "Kafka: transaction aborted, its messages will be read again: {reason}"
                    );
                    tokio::task::block_in_place(|| producer.abort_transaction(BROKER_TIMEOUT))
                        .inspect_err(|e| tracing::error!("Kafka: aborting failed: {e}"))?;
                    // Going on without the rewind would skip the aborted
                    // messages; a restart reads them from the committed offsets.
                    rewind(consumer, &batch)
                        .inspect_err(|e| tracing::error!("Kafka: rewinding failed: {e}"))?;
                }
            }
        }
        if stopping {
            return Ok(());
        }
    }
}

/// The messages of the next transaction, and whether draining started.
async fn collect(
    pipeline: &Pipeline,
    consumer: &StreamConsumer<StreamContext>,
    draining: &Draining,
    max_batch: usize,
) -> (Vec<OwnedMessage>, bool) {
    let progress = &pipeline.progress;
    // A rebalance restarts every partition assigned after it at its
    // committed offset: messages collected before it come again (or go to
    // another member), so they are dropped, not scored.
    let mut rebalances = progress.rebalances.load(Ordering::SeqCst);
    let mut drop_if_rebalanced = |batch: &mut Vec<OwnedMessage>| {
        let now = progress.rebalances.load(Ordering::SeqCst);
        if now != rebalances {
            rebalances = now;
            batch.clear();
        }
    };
    let mut batch = Vec::new();
    let mut close_at: Option<Instant> = None;
    let stopping = loop {
        tokio::select! {
            biased;
            _ = draining.started() => break true,
            _ = sleep_until(close_at), if close_at.is_some() => break false,
            received = consumer.recv() => match received {
                Ok(message) => {
                    drop_if_rebalanced(&mut batch);
                    batch.push(message.detach());
                    close_at.get_or_insert_with(|| Instant::now() + TRANSACTION_WINDOW);
                    if batch.len() >= max_batch {
                        break false;
                    }
                }
                Err(e) => tracing::warn!("consuming failed: {e}"),
            },
        }
    };
    drop_if_rebalanced(&mut batch);
    (batch, stopping)
}

/// Scores `batch` and commits results and input offsets atomically.
async fn transaction(
    pipeline: &Pipeline,
    consumer: &StreamConsumer<StreamContext>,
    batch: &[OwnedMessage],
) -> Result<(), Failed> {
    let producer = &pipeline.producer;
    tracing::debug!(messages = batch.len(), "Kafka: transaction begins");
    producer.begin_transaction()?;
    let outcomes = score::handle(pipeline, batch).await;
    if let Some(e) = outcomes.into_iter().find_map(Result::err) {
        return Err(Failed::Abort(e));
    }
    let metadata = consumer
        .group_metadata()
        .ok_or_else(|| Failed::Abort("no consumer group metadata yet".into()))?;
    let offsets = next_offsets(batch);
    tokio::task::block_in_place(|| {
        producer.send_offsets_to_transaction(&offsets, &metadata, BROKER_TIMEOUT)?;
        producer.commit_transaction(BROKER_TIMEOUT)
    })?;
    tracing::debug!(messages = batch.len(), "Kafka: transaction committed");
    for element in offsets.elements() {
        if let Offset::Offset(offset) = element.offset() {
            super::metrics::committed(element.topic(), element.partition(), offset);
        }
    }
    Ok(())
}

/// Per partition of `batch`, its messages' offsets folded with `pick`
/// (`min` for the first, `max` for the last).
fn per_partition(batch: &[OwnedMessage], pick: fn(i64, i64) -> i64) -> BTreeMap<(&str, i32), i64> {
    let mut offsets = BTreeMap::new();
    for m in batch {
        offsets
            .entry((m.topic(), m.partition()))
            .and_modify(|o: &mut i64| *o = pick(*o, m.offset()))
            .or_insert(m.offset());
    }
    offsets
}

/// Per partition, the offset after the last message of `batch`.
fn next_offsets(batch: &[OwnedMessage]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), last) in per_partition(batch, i64::max) {
        // Offsets of our own messages: always valid.
        let _ = list.add_partition_offset(topic, partition, Offset::Offset(last + 1));
    }
    list
}

/// Seeks each partition of `batch` that is still assigned back to its first
/// message in the batch (a partition no longer ours restarts at its
/// committed offset anyway).
fn rewind(consumer: &StreamConsumer<StreamContext>, batch: &[OwnedMessage]) -> KafkaResult<()> {
    let assigned = consumer.assignment()?;
    for ((topic, partition), first) in per_partition(batch, i64::min) {
        if assigned.find_partition(topic, partition).is_some() {
            consumer.seek(topic, partition, Offset::Offset(first), BROKER_TIMEOUT)?;
        }
    }
    Ok(())
}
