//! Dynamic batching and admission control, between the transports and the
//! models.
//!
//! Each model version has a queue and worker threads of its own. A worker
//! takes every request already queued (up to `max_batch_rows` rows), runs the
//! model once on all of them and hands each request its own rows back. With
//! an empty queue a request runs at once; under load, requests that arrive
//! while the model is busy form the next batch. `max_queue_delay` can hold a
//! batch open a little longer for more. The queue is bounded in rows: a
//! request that does not fit is refused at once (HTTP 429), never parked.
//!
//! With `max_queue_delay` zero (the default), a request that finds its model
//! idle and nothing queued runs at once on the calling thread: the batch a
//! worker would form is that request alone, and the hand-off to a worker and
//! back costs more CPU than a small model's run. Models whose runs take long
//! (see `queue::INLINE_RUN_LIMIT`) always run on the workers.

mod queue;

use std::collections::HashMap;
use std::time::Duration;

pub use queue::{Batcher, Scored};

use crate::model::{BatchingOverrides, LoadedModel, ModelRepository, VersionState};
use crate::ServeError;

/// How a model's requests are batched; `model.toml`'s `[batching]` overrides
/// the server-wide defaults field by field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchConfig {
    /// Rows per model run at most (a larger single request runs alone).
    pub max_batch_rows: usize,
    /// How long a batch may wait for more requests; zero never waits.
    pub max_queue_delay: Duration,
    /// Rows waiting at most; beyond, requests are refused.
    pub max_queue_rows: usize,
    /// Worker threads (model executions in parallel).
    pub instances: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch_rows: 64,
            max_queue_delay: Duration::ZERO,
            max_queue_rows: 4096,
            instances: 1,
        }
    }
}

impl BatchConfig {
    /// These defaults with a model's `[batching]` settings applied.
    pub fn with_overrides(self, overrides: &BatchingOverrides) -> BatchConfig {
        BatchConfig {
            max_batch_rows: overrides
                .max_batch_rows
                .unwrap_or(self.max_batch_rows)
                .max(1),
            max_queue_delay: overrides
                .max_queue_delay_us
                .map_or(self.max_queue_delay, Duration::from_micros),
            max_queue_rows: overrides
                .max_queue_rows
                .unwrap_or(self.max_queue_rows)
                .max(1),
            instances: overrides.instances.unwrap_or(self.instances).max(1),
        }
    }
}

/// Every ready model version's batcher, keyed by the loaded model's identity
/// (the repository keeps each `Arc<LoadedModel>` for the life of the server).
pub struct Scheduler {
    batchers: HashMap<usize, Batcher>,
}

fn key(model: &LoadedModel) -> usize {
    model as *const LoadedModel as usize
}

impl Scheduler {
    /// Starts a batcher for every ready version in `repository`.
    pub fn start(repository: &ModelRepository, defaults: BatchConfig) -> Scheduler {
        let mut batchers = HashMap::new();
        for entry in repository.models() {
            let config = defaults.with_overrides(&entry.manifest.batching);
            for state in entry.versions.values() {
                if let VersionState::Ready(model) = state {
                    batchers.insert(key(model), Batcher::start(model.clone(), config));
                }
            }
        }
        Scheduler { batchers }
    }

    /// The batcher that scores `model`'s requests (and holds its metrics).
    pub fn batcher(&self, model: &LoadedModel) -> Result<&Batcher, ServeError> {
        self.batchers
            .get(&key(model))
            .ok_or_else(|| ServeError::ModelNotReady {
                model: model.name.clone(),
                reason: "no batcher runs it".into(),
            })
    }
}
