//! Prometheus metrics, named after Triton's so operators recognise them
//! (`nv_inference_*` becomes `modelops_inference_*`), labelled by model and
//! version; plus HTTP responses by route and status.

use std::cell::RefCell;
use std::time::Duration;

use actix_web::http::Method;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::{LoadedModel, Predictions};

use crate::ServeError;

pub const REQUEST_SUCCESS: &str = "modelops_inference_request_success_total";
pub const REQUEST_FAILURE: &str = "modelops_inference_request_failure_total";
/// Rows scored (Triton's inference count).
pub const INFERENCE_COUNT: &str = "modelops_inference_count_total";
/// Model executions (Triton's execution count; below the row count once batching merges requests).
pub const EXECUTION_COUNT: &str = "modelops_inference_exec_count_total";
pub const REQUEST_DURATION: &str = "modelops_inference_request_duration_seconds";
/// Time from receiving a request to the model starting on it.
pub const QUEUE_DURATION: &str = "modelops_inference_queue_duration_seconds";
pub const COMPUTE_DURATION: &str = "modelops_inference_compute_duration_seconds";
pub const HTTP_RESPONSES: &str = "modelops_http_responses_total";
/// Rows waiting in a model's batching queue.
pub const QUEUE_ROWS: &str = "modelops_queue_rows";
/// Rows per model execution.
pub const BATCH_ROWS: &str = "modelops_batch_rows";

/// Latency buckets from 10 µs to 10 s.
const DURATION_BUCKETS: [f64; 16] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.5, 1.0, 10.0,
];

/// Batch sizes in rows.
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder; the handle renders `/metrics`.
pub fn install() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".into()),
            &DURATION_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .set_buckets_for_metric(Matcher::Full(BATCH_ROWS.into()), &BATCH_BUCKETS)
        .map_err(|e| e.to_string())?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    // Histograms keep every sample until drained; with nobody scraping
    // /metrics that is ~50 bytes a request forever. Drain them on a timer.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        })
        .map_err(|e| e.to_string())?;
    Ok(handle)
}

/// One model version's metric handles, registered once: looking a metric up
/// by name and labels on every request cost ~9k instructions (two label
/// Strings, a hash lookup and a key clone per metric).
pub struct ModelMetrics {
    model: String,
    version: String,
    success: Counter,
    rows: Counter,
    request_duration: Histogram,
    queue_duration: Histogram,
    executions: Counter,
    compute_duration: Histogram,
    batch_rows: Histogram,
    queue_rows: Gauge,
}

impl ModelMetrics {
    pub fn new(model: &LoadedModel) -> ModelMetrics {
        let name = model.name.clone();
        let version = model.version.to_string();
        let labels = [("model", name.clone()), ("version", version.clone())];
        ModelMetrics {
            success: counter!(REQUEST_SUCCESS, &labels),
            rows: counter!(INFERENCE_COUNT, &labels),
            request_duration: histogram!(REQUEST_DURATION, &labels),
            queue_duration: histogram!(QUEUE_DURATION, &labels),
            executions: counter!(EXECUTION_COUNT, &labels),
            compute_duration: histogram!(COMPUTE_DURATION, &labels),
            batch_rows: histogram!(BATCH_ROWS, &labels),
            queue_rows: gauge!(QUEUE_ROWS, "model" => name.clone()),
            model: name,
            version,
        }
    }

    /// Records one inference request.
    pub fn record_inference(
        &self,
        outcome: Result<&Predictions, &ServeError>,
        request: Duration,
        queue: Duration,
    ) {
        match outcome {
            Ok(predictions) => {
                self.success.increment(1);
                self.rows.increment(predictions.rows as u64);
                self.request_duration.record(request);
                self.queue_duration.record(queue);
            }
            // Failures are rare; their reason label is looked up each time.
            Err(error) => counter!(
                REQUEST_FAILURE,
                "model" => self.model.clone(),
                "version" => self.version.clone(),
                "reason" => error.kind()
            )
            .increment(1),
        }
    }

    /// Records one model execution (a batch of one or more requests).
    pub fn record_execution(&self, rows: usize, compute: Duration) {
        self.executions.increment(1);
        self.compute_duration.record(compute);
        self.batch_rows.record(rows as f64);
    }

    /// Rows waiting in the model's queue.
    pub fn set_queue_rows(&self, rows: usize) {
        self.queue_rows.set(rows as f64);
    }
}

/// Counts one HTTP response; `route` is the matched pattern, never the raw path.
pub fn record_http(method: &Method, route: &str, status: u16) {
    // Registering the counter means three label Strings and a hash lookup,
    // a few percent of a small request's CPU: each HTTP worker thread keeps
    // the handles it has used (a few dozen at most: routes × methods × statuses).
    thread_local! {
        static COUNTERS: RefCell<Vec<(Method, String, u16, Counter)>> = const { RefCell::new(Vec::new()) };
    }
    COUNTERS.with_borrow_mut(|counters| {
        let known = counters
            .iter()
            .find(|(m, r, s, _)| *s == status && m == method && r == route);
        match known {
            Some((.., counter)) => counter.increment(1),
            None => {
                let counter = counter!(
                    HTTP_RESPONSES,
                    "method" => method.to_string(),
                    "route" => route.to_string(),
                    "status" => status.to_string()
                );
                counter.increment(1);
                counters.push((method.clone(), route.to_string(), status, counter));
            }
        }
    });
}
