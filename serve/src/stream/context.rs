//! The consumer's callbacks: rebalances (finish or give up the work of
//! revoked partitions, then commit what is done) and librdkafka's statistics
//! (consumer lag).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use tokio::sync::Notify;

use super::metrics;
use super::offsets::{OffsetTracker, Partition};

/// Offsets in flight and done, shared by the consumer loop, the scoring
/// tasks and the rebalance callbacks.
#[derive(Debug, Default)]
pub struct Progress {
    tracker: Mutex<OffsetTracker>,
    /// Signalled whenever a message's work finishes.
    pub finished: Notify,
    /// Rebalances so far (assignments and revocations).
    pub rebalances: AtomicU64,
}

impl Progress {
    pub fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (blocking this thread) until no message of `partitions` is in
    /// flight, or `grace` has passed.
    fn wait_for(&self, partitions: &[Partition], grace: Duration) {
        let deadline = Instant::now() + grace;
        while partitions
            .iter()
            .any(|p| self.tracker().in_flight_for(p) > 0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Commits every offset that became committable. A failed commit is kept
/// for the next call (the messages it covers are done; only the record of
/// it is late).
pub fn commit(consumer: &impl Consumer<StreamContext>, progress: &Progress) {
    let offsets = progress.tracker().take_committable();
    if offsets.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in &offsets {
        if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::warn!(topic, partition, offset, "cannot commit offset: {e}");
        }
    }
    // Synchronous so that a failure is seen and the offsets retried; callers
    // are off the scoring path (a timer, a rebalance, shutdown).
    match tokio::task::block_in_place(|| consumer.commit(&list, CommitMode::Sync)) {
        Ok(()) => {
            for ((topic, partition), offset) in &offsets {
                metrics::committed(topic, *partition, *offset);
            }
        }
        Err(e) => {
            tracing::warn!("committing offsets failed (retried): {e}");
            progress.tracker().restore_committable(offsets);
        }
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// The consumer's context.
pub struct StreamContext {
    pub progress: std::sync::Arc<Progress>,
    /// How long a revoked partition's work in flight may take to finish
    /// before it is abandoned (its messages are then read again by the
    /// partition's next owner).
    pub revoke_grace: Duration,
}

impl ClientContext for StreamContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (&partition, stats) in &stats.partitions {
                // librdkafka reports -1 until it knows, and partition -1 is
                // its internal "unassigned" one.
                if partition >= 0 && stats.consumer_lag >= 0 {
                    metrics::lag(topic, partition, stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for StreamContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.progress.rebalances.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partitions(list);
            tracing::info!(
                ?revoked,
                "partitions revoked: finishing their work in flight"
            );
            tokio::task::block_in_place(|| self.progress.wait_for(&revoked, self.revoke_grace));
            commit(consumer, &self.progress);
            let mut tracker = self.progress.tracker();
            let abandoned: BTreeMap<&Partition, usize> = revoked
                .iter()
                .map(|p| (p, tracker.in_flight_for(p)))
                .filter(|(_, n)| *n > 0)
                .collect();
            if !abandoned.is_empty() {
                tracing::warn!(
                    ?abandoned,
                    "revoked partitions still had work in flight; its messages will be read again"
                );
            }
            for partition in &revoked {
                tracker.revoke(partition);
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                tracing::info!(?assigned, "partitions assigned");
                let mut tracker = self.progress.tracker();
                for partition in assigned {
                    tracker.assign(partition);
                }
            }
            Rebalance::Error(e) => tracing::warn!("rebalance failed: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }
}
