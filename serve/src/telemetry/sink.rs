//! Where documents go: one trait, one implementation per store.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use thiserror::Error;

use super::EncodedDocument;

/// Why a write (or connecting) failed, and whether it is worth trying again.
#[derive(Debug, Clone, Error)]
pub enum SinkError {
    /// Throttled, unavailable or unreachable (Cosmos 429/503, a full disk
    /// that may clear): try again, after `after` when the store said so.
    #[error("{reason}")]
    Retryable {
        reason: String,
        after: Option<Duration>,
    },
    /// Will not succeed however often it is tried (wrong key, no access, a
    /// document the store refuses).
    #[error("{0}")]
    Permanent(String),
}

/// A boxed future, so that sinks can be chosen at run time.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A store for telemetry documents. Its futures run on the telemetry
/// writer's own runtime.
pub trait Sink: Send + Sync + 'static {
    /// Checks the store once at startup (credentials, reachability) so that
    /// a wrong setting is reported then, not at the first write.
    fn connect(&self) -> SinkFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    /// Most documents one [`Sink::write`] takes.
    fn max_batch(&self) -> usize;

    /// Writes documents of one model (one partition), at most
    /// [`Sink::max_batch`] of them. Called concurrently (up to the
    /// configured concurrency) and again with the same documents after a
    /// retryable error: writing the same `id` twice must not make two
    /// documents.
    fn write<'a>(&'a self, documents: &'a [EncodedDocument]) -> SinkFuture<'a>;

    /// Makes what was written durable (the file sink flushes its buffer).
    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
