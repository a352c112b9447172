//! The telemetry writer's Prometheus metrics, registered once: recording
//! happens on every request, where a lookup by name would cost more than
//! the rest of it.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

/// Documents accepted into the queue.
const QUEUED: &str = "modelops_telemetry_queued_total";
/// Documents the sink acknowledged.
const WRITTEN: &str = "modelops_telemetry_written_total";
/// Writes (of a batch) tried again after a retryable error (429, 503,
/// unreachable).
const RETRIED: &str = "modelops_telemetry_retried_total";
/// Documents given up, by `reason`: `queue_full`, `refused` (the store said
/// no for good) or `shutdown` (not written by the flush deadline).
const DROPPED: &str = "modelops_telemetry_dropped_total";
/// Documents queued and not yet written or given up.
const PENDING: &str = "modelops_telemetry_pending";
/// Time to write one batch, retries included.
const WRITE_DURATION: &str = "modelops_telemetry_write_duration_seconds";

/// Why documents were dropped.
#[derive(Debug, Clone, Copy)]
pub enum DropReason {
    QueueFull,
    Refused,
    Shutdown,
}

impl DropReason {
    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Refused => "refused",
            DropReason::Shutdown => "shutdown",
        }
    }
}

pub struct TelemetryMetrics {
    pub queued: Counter,
    pub written: Counter,
    pub retried: Counter,
    dropped: [Counter; 3],
    pub pending: Gauge,
    pub write_duration: Histogram,
}

impl TelemetryMetrics {
    pub fn new() -> TelemetryMetrics {
        let dropped = |reason: DropReason| counter!(DROPPED, "reason" => reason.name());
        TelemetryMetrics {
            queued: counter!(QUEUED),
            written: counter!(WRITTEN),
            retried: counter!(RETRIED),
            dropped: [
                dropped(DropReason::QueueFull),
                dropped(DropReason::Refused),
                dropped(DropReason::Shutdown),
            ],
            pending: gauge!(PENDING),
            write_duration: histogram!(WRITE_DURATION),
        }
    }

    pub fn dropped(&self, reason: DropReason) -> &Counter {
        &self.dropped[reason as usize]
    }
}
