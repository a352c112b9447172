//! One model version's queue and its worker threads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::BatchConfig;
use crate::model::{FeatureMatrix, LoadedModel, Predictions};
use crate::prometheus::ModelMetrics;
use crate::ServeError;

/// Models whose runs typically take longer than this never run on the
/// calling (HTTP) thread, which would stall that thread's other connections.
const INLINE_RUN_LIMIT: Duration = Duration::from_micros(200);

/// A request's answer, with how long it waited in the queue.
#[derive(Debug)]
pub struct Scored {
    pub predictions: Predictions,
    pub queued: Duration,
}

struct Job {
    features: FeatureMatrix,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Scored, ServeError>>,
}

/// What a batcher, its workers and the requests running inline share.
struct Shared {
    model: Arc<LoadedModel>,
    metrics: ModelMetrics,
    queued_rows: AtomicUsize,
    /// Model runs in progress, on workers or inline.
    running: AtomicUsize,
    /// Recent run time in nanoseconds (moving average; 0 before the first).
    typical_run_ns: AtomicU64,
}

impl Shared {
    /// Runs the model once on `features` and records the run.
    fn run(&self, features: FeatureMatrix) -> Result<Predictions, ServeError> {
        let rows = features.rows();
        let predictions = self.model.predict(features)?;
        self.metrics.record_execution(rows, predictions.compute);
        let last = u64::try_from(predictions.compute.as_nanos()).unwrap_or(u64::MAX);
        let typical = self.typical_run_ns.load(Ordering::Relaxed);
        let typical = if typical == 0 {
            last
        } else {
            typical - typical / 8 + last / 8
        };
        self.typical_run_ns.store(typical, Ordering::Relaxed);
        Ok(predictions)
    }
}

/// Queues requests for one model version; its workers run them in batches.
pub struct Batcher {
    sender: Sender<Job>,
    shared: Arc<Shared>,
    config: BatchConfig,
}

impl Batcher {
    /// Starts `config.instances` worker threads for `model`. They stop when
    /// the batcher is dropped and the queue is empty.
    pub fn start(model: Arc<LoadedModel>, config: BatchConfig) -> Batcher {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let shared = Arc::new(Shared {
            metrics: ModelMetrics::new(&model),
            model,
            queued_rows: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            typical_run_ns: AtomicU64::new(0),
        });
        for instance in 0..config.instances {
            let worker = Worker {
                shared: shared.clone(),
                receiver: receiver.clone(),
                config,
                carried: None,
            };
            let model = &shared.model;
            std::thread::Builder::new()
                .name(format!("infer-{}-{}-{instance}", model.name, model.version))
                .spawn(move || worker.run())
                .expect("spawning an inference thread");
        }
        Batcher {
            sender,
            shared,
            config,
        }
    }

    /// The model's metric handles.
    pub fn metrics(&self) -> &ModelMetrics {
        &self.shared.metrics
    }

    /// Scores `features`: at once on the calling thread when the model is
    /// idle, otherwise queued for a worker to batch. Refuses at once when the
    /// queue holds `max_queue_rows` rows already.
    pub async fn predict(&self, features: FeatureMatrix) -> Result<Scored, ServeError> {
        let shared = &self.shared;
        if self.may_run_inline() {
            // The batch a worker would form now is this request alone; running
            // it here saves two thread switches (~30% of a small request's CPU).
            let outcome = shared.run(features);
            shared.running.fetch_sub(1, Ordering::SeqCst);
            return outcome.map(|predictions| Scored {
                predictions,
                queued: Duration::ZERO,
            });
        }
        let rows = features.rows();
        let before = shared.queued_rows.fetch_add(rows, Ordering::SeqCst);
        // An oversized request is still admitted into an empty queue.
        if before > 0 && before + rows > self.config.max_queue_rows {
            shared.queued_rows.fetch_sub(rows, Ordering::SeqCst);
            return Err(ServeError::Overloaded {
                model: shared.model.name.clone(),
                queued_rows: before,
            });
        }
        shared.metrics.set_queue_rows(before + rows);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            features,
            enqueued: Instant::now(),
            reply,
        };
        let sent = self.sender.send(job);
        if sent.is_err() {
            shared.queued_rows.fetch_sub(rows, Ordering::SeqCst);
            return Err(self.gone());
        }
        answer.await.map_err(|_| self.gone())?
    }

    /// True, and the run claimed, when nothing is queued or running, batches
    /// are not held open for more (`max_queue_delay` zero) and the model's
    /// runs are short.
    fn may_run_inline(&self) -> bool {
        let shared = &self.shared;
        self.config.max_queue_delay.is_zero()
            && shared.typical_run_ns.load(Ordering::Relaxed) <= INLINE_RUN_LIMIT.as_nanos() as u64
            && shared.queued_rows.load(Ordering::SeqCst) == 0
            && shared
                .running
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    fn gone(&self) -> ServeError {
        ServeError::Inference {
            model: self.shared.model.name.clone(),
            reason: "the inference worker stopped".into(),
        }
    }
}

/// One inference thread.
struct Worker {
    shared: Arc<Shared>,
    receiver: Arc<Mutex<Receiver<Job>>>,
    config: BatchConfig,
    /// A job taken from the queue that did not fit the last batch.
    carried: Option<Job>,
}

impl Worker {
    fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            self.shared.running.fetch_add(1, Ordering::SeqCst);
            self.execute(batch);
            self.shared.running.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Waits for a job, then takes whatever else is queued up to the batch
    /// limit (waiting up to `max_queue_delay` for more). `None` once the
    /// queue is closed and empty.
    fn next_batch(&mut self) -> Option<Vec<Job>> {
        let receiver = self.receiver.lock().unwrap_or_else(|e| e.into_inner());
        let first = match self.carried.take() {
            Some(job) => job,
            None => receiver.recv().ok()?,
        };
        let deadline = first.enqueued + self.config.max_queue_delay;
        let mut rows = first.features.rows();
        let mut batch = vec![first];
        while rows < self.config.max_batch_rows {
            let next = match receiver.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Empty) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    if wait.is_zero() {
                        break;
                    }
                    match receiver.recv_timeout(wait) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            if rows + next.features.rows() > self.config.max_batch_rows {
                self.carried = Some(next);
                break;
            }
            rows += next.features.rows();
            batch.push(next);
        }
        Some(batch)
    }

    /// Runs one batch and answers each of its jobs.
    fn execute(&self, batch: Vec<Job>) {
        let shared = &self.shared;
        let started = Instant::now();
        let counts: Vec<usize> = batch.iter().map(|j| j.features.rows()).collect();
        let total: usize = counts.iter().sum();
        let left = shared.queued_rows.fetch_sub(total, Ordering::SeqCst) - total;
        shared.metrics.set_queue_rows(left);
        let mut replies = Vec::with_capacity(batch.len());
        let mut parts = Vec::with_capacity(batch.len());
        for job in batch {
            replies.push((job.reply, started.saturating_duration_since(job.enqueued)));
            parts.push(job.features);
        }
        match FeatureMatrix::concat(parts).and_then(|features| shared.run(features)) {
            Ok(predictions) => {
                for ((reply, queued), predictions) in
                    replies.into_iter().zip(predictions.split(&counts))
                {
                    let _ = reply.send(Ok(Scored {
                        predictions,
                        queued,
                    }));
                }
            }
            Err(error) => {
                // Every request of the batch gets the model's own error.
                let reason = match error {
                    ServeError::Inference { reason, .. } => reason,
                    other => other.to_string(),
                };
                for (reply, _) in replies {
                    let _ = reply.send(Err(ServeError::Inference {
                        model: shared.model.name.clone(),
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }
}
