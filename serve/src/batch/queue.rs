//! One model version's queue and its worker threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::gauge;
use tokio::sync::oneshot;

use super::BatchConfig;
use crate::model::{FeatureMatrix, LoadedModel, Predictions};
use crate::prometheus::{record_execution, QUEUE_ROWS};
use crate::ServeError;

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

/// Queues requests for one model version; its workers run them in batches.
pub struct Batcher {
    sender: Sender<Job>,
    queued_rows: Arc<AtomicUsize>,
    config: BatchConfig,
    model: Arc<LoadedModel>,
}

impl Batcher {
    /// Starts `config.instances` worker threads for `model`. They stop when
    /// the batcher is dropped and the queue is empty.
    pub fn start(model: Arc<LoadedModel>, config: BatchConfig) -> Batcher {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let queued_rows = Arc::new(AtomicUsize::new(0));
        for instance in 0..config.instances {
            let worker = Worker {
                model: model.clone(),
                receiver: receiver.clone(),
                queued_rows: queued_rows.clone(),
                config,
                carried: None,
            };
            std::thread::Builder::new()
                .name(format!("infer-{}-{}-{instance}", model.name, model.version))
                .spawn(move || worker.run())
                .expect("spawning an inference thread");
        }
        Batcher {
            sender,
            queued_rows,
            config,
            model,
        }
    }

    /// Queues `features` and waits for its rows' predictions. Refuses at once
    /// when the queue holds `max_queue_rows` rows already.
    pub async fn predict(&self, features: FeatureMatrix) -> Result<Scored, ServeError> {
        let rows = features.rows();
        let before = self.queued_rows.fetch_add(rows, Ordering::SeqCst);
        // An oversized request is still admitted into an empty queue.
        if before > 0 && before + rows > self.config.max_queue_rows {
            self.queued_rows.fetch_sub(rows, Ordering::SeqCst);
            return Err(ServeError::Overloaded {
                model: self.model.name.clone(),
                queued_rows: before,
            });
        }
        gauge!(QUEUE_ROWS, "model" => self.model.name.clone()).set((before + rows) as f64);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            features,
            enqueued: Instant::now(),
            reply,
        };
        let sent = self.sender.send(job);
        if sent.is_err() {
            self.queued_rows.fetch_sub(rows, Ordering::SeqCst);
            return Err(self.gone());
        }
        answer.await.map_err(|_| self.gone())?
    }

    fn gone(&self) -> ServeError {
        ServeError::Inference {
            model: self.model.name.clone(),
            reason: "the inference worker stopped".into(),
        }
    }
}

/// One inference thread.
struct Worker {
    model: Arc<LoadedModel>,
    receiver: Arc<Mutex<Receiver<Job>>>,
    queued_rows: Arc<AtomicUsize>,
    config: BatchConfig,
    /// A job taken from the queue that did not fit the last batch.
    carried: Option<Job>,
}

impl Worker {
    fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            self.execute(batch);
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
        let started = Instant::now();
        let counts: Vec<usize> = batch.iter().map(|j| j.features.rows()).collect();
        let total: usize = counts.iter().sum();
        let left = self.queued_rows.fetch_sub(total, Ordering::SeqCst) - total;
        gauge!(QUEUE_ROWS, "model" => self.model.name.clone()).set(left as f64);
        let mut replies = Vec::with_capacity(batch.len());
        let mut parts = Vec::with_capacity(batch.len());
        for job in batch {
            replies.push((job.reply, started.saturating_duration_since(job.enqueued)));
            parts.push(job.features);
        }
        let outcome =
            FeatureMatrix::concat(parts).and_then(|features| self.model.predict(features));
        match outcome {
            Ok(predictions) => {
                record_execution(&self.model, total, predictions.compute);
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
                let message = error.to_string();
                for (reply, _) in replies {
                    let _ = reply.send(Err(ServeError::Inference {
                        model: self.model.name.clone(),
                        reason: message.clone(),
                    }));
                }
            }
        }
    }
}
