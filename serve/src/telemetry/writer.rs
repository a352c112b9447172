//! The bounded queue between scoring and the sink, and the writer thread
//! that drains it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::event::{EncodedDocument, ModelFragments};
use super::metrics::{DropReason, TelemetryMetrics};
use super::{Lineage, Prediction, Sink, SinkError, TelemetryError};
use crate::model::LoadedModel;

/// First wait before retrying a write the sink said may succeed later.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Dropped documents are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Buffered sinks are flushed (and the pending gauge set) this often.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// While predictions keep arriving, the writer takes them this often.
const LOOK_EVERY: Duration = Duration::from_millis(5);
/// Documents wait about this long (at most twice) for a full batch: a
/// write costs the same few hundred microseconds of the writer's CPU for
/// one document as for a hundred.
const FILL_WAIT: Duration = Duration::from_millis(50);

/// What to do when the store refuses the connection for good at startup
/// (a wrong key, no access).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnRefused {
    /// Do not start.
    Fail,
    /// Log a warning and serve anyway; documents are dropped and counted.
    Warn,
}

/// How the writer works.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// Documents waiting at most; beyond, new ones are dropped and counted.
    pub queue_capacity: usize,
    /// Writes in flight at most.
    pub concurrency: usize,
    /// Fraction of requests whose inputs are recorded (0: none).
    pub input_sampling: f64,
    /// What every document's lineage carries besides `model.toml`'s.
    pub deployment: Lineage,
    /// How long startup waits for the store to answer.
    pub connect_timeout: Duration,
    pub on_refused: OnRefused,
}

/// What the writer thread is sent. Nearly every message is a record, so it
/// is not boxed: that would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Message {
    Record(Prediction),
    /// Write what is queued, until this deadline, then stop.
    Finish(Instant),
}

/// What the recording side and the writer share.
struct Shared {
    /// Documents queued and not yet written or given up.
    queued: AtomicUsize,
    capacity: usize,
    closed: AtomicBool,
    metrics: TelemetryMetrics,
    /// Requests seen by input sampling.
    sampled: AtomicU64,
    input_sampling: f64,
    drops_since_warning: AtomicU64,
    /// Milliseconds after `started` of the last drop warning.
    last_warning: AtomicU64,
    started: Instant,
}

const NEVER: u64 = u64::MAX;

impl Shared {
    fn new(capacity: usize, input_sampling: f64) -> Shared {
        Shared {
            queued: AtomicUsize::new(0),
            capacity,
            closed: AtomicBool::new(false),
            metrics: TelemetryMetrics::new(),
            sampled: AtomicU64::new(0),
            input_sampling: input_sampling.clamp(0.0, 1.0),
            drops_since_warning: AtomicU64::new(0),
            last_warning: AtomicU64::new(NEVER),
            started: Instant::now(),
        }
    }

    /// Counts dropped documents; warns at most every [`WARN_EVERY`].
    fn count_drops(&self, documents: usize, reason: DropReason) {
        if documents == 0 {
            return;
        }
        self.metrics.dropped(reason).increment(documents as u64);
        self.drops_since_warning
            .fetch_add(documents as u64, Ordering::Relaxed);
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_warning.load(Ordering::Relaxed);
        let due = last == NEVER || now >= last + WARN_EVERY.as_millis() as u64;
        if due
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let dropped = self.drops_since_warning.swap(0, Ordering::Relaxed);
            tracing::warn!(
                dropped,
                reason = reason.name(),
                "telemetry documents dropped (counted in modelops_telemetry_dropped_total); \
                 scoring is unaffected"
            );
        }
    }

    /// Documents written or given up: no longer queued.
    fn finished(&self, documents: usize) {
        self.queued.fetch_sub(documents, Ordering::SeqCst);
    }
}

/// The handle the transports record predictions through. Recording is a
/// capacity check and a channel send: it never waits.
pub struct Telemetry {
    sender: Option<mpsc::UnboundedSender<Message>>,
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Telemetry {
    /// Telemetry switched off: recording does nothing.
    pub fn off() -> Telemetry {
        Telemetry {
            sender: None,
            shared: Arc::new(Shared::new(0, 0.0)),
            writer: Mutex::new(None),
        }
    }

    /// Starts the writer thread, connects `sink` and waits (up to the
    /// connect timeout) for its answer: a store that refuses the connection
    /// for good fails the start unless `on_refused` says warn; one that does
    /// not answer is retried in the background.
    pub fn start(
        sink: Arc<dyn Sink>,
        options: TelemetryOptions,
    ) -> Result<Telemetry, TelemetryError> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(
            options.queue_capacity.max(1),
            options.input_sampling,
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(TelemetryError::Runtime)?;
        let (connected_tx, connected_rx) = std_mpsc::channel();
        let (connect_timeout, on_refused) = (options.connect_timeout, options.on_refused);
        let writer = Writer {
            sink,
            options,
            shared: shared.clone(),
            process: process_id(),
            sequence: 0,
            fragments: FragmentCache::default(),
        };
        let thread = std::thread::Builder::new()
            .name("telemetry".into())
            .spawn(move || runtime.block_on(writer.run(receiver, connected_tx)))
            .map_err(TelemetryError::Runtime)?;
        let telemetry = Telemetry {
            sender: Some(sender),
            shared,
            writer: Mutex::new(Some(thread)),
        };
        match connected_rx.recv_timeout(connect_timeout) {
            Ok(Ok(())) => {}
            Ok(Err(SinkError::Permanent(reason))) if on_refused == OnRefused::Fail => {
                telemetry.shutdown(Duration::ZERO);
                return Err(TelemetryError::Refused(reason));
            }
            Ok(Err(SinkError::Permanent(reason))) => tracing::warn!(
                "the telemetry store refused the connection: {reason}; serving anyway, \
                 telemetry documents are dropped and counted"
            ),
            Ok(Err(SinkError::Retryable { reason, .. })) => tracing::warn!(
                "the telemetry store is not reachable yet: {reason}; documents are queued \
                 and retried"
            ),
            Err(_) => tracing::warn!(
                "the telemetry store did not answer within {connect_timeout:?}; documents \
                 are queued and retried"
            ),
        }
        Ok(telemetry)
    }

    /// Whether predictions are recorded at all (so that callers can skip
    /// building them).
    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Whether this request's inputs go into its documents: every
    /// 1/rate-th request, counted, so that the rate holds exactly.
    pub fn sample_inputs(&self) -> bool {
        let rate = self.shared.input_sampling;
        if rate <= 0.0 {
            return false;
        }
        let n = self.shared.sampled.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * rate).floor() > (n * rate).floor()
    }

    /// Queues `prediction`'s documents, or drops and counts them when the
    /// queue is full (or telemetry is shutting down).
    pub fn record(&self, prediction: Prediction) {
        let Some(sender) = &self.sender else {
            return;
        };
        let shared = &self.shared;
        let count = prediction.document_count();
        let before = shared.queued.fetch_add(count, Ordering::SeqCst);
        let refused = before + count > shared.capacity
            || shared.closed.load(Ordering::SeqCst)
            || sender.send(Message::Record(prediction)).is_err();
        if refused {
            shared.queued.fetch_sub(count, Ordering::SeqCst);
            shared.count_drops(count, DropReason::QueueFull);
        } else {
            shared.metrics.queued.increment(count as u64);
        }
    }

    /// Stops accepting documents and gives the queue until `deadline` to be
    /// written; what is left then is dropped and counted.
    pub fn shutdown(&self, deadline: Duration) {
        let Some(sender) = &self.sender else {
            return;
        };
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let pending = self.pending();
        if pending > 0 {
            tracing::info!(
                pending,
                "flushing telemetry (up to {:.1} s)",
                deadline.as_secs_f64()
            );
        }
        let _ = sender.send(Message::Finish(Instant::now() + deadline));
        if let Some(thread) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }

    /// Documents queued and not yet written or given up.
    pub fn pending(&self) -> usize {
        self.shared.queued.load(Ordering::SeqCst)
    }
}

/// Puts the calling (writer) thread in the `SCHED_IDLE` class: it runs on
/// CPU time scoring leaves, and a request waking up takes the core from it
/// at once. Under saturation documents queue up, then are dropped and
/// counted, instead of requests slowing down.
#[allow(unsafe_code)]
fn yield_to_scoring() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0
    // is the calling thread (scheduling policy is per thread on Linux).
    let failed = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0;
    if failed {
        tracing::debug!(
            "the telemetry writer keeps its scheduling class: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Unique across restarts and replicas: the process start time and id.
fn process_id() -> String {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{started:x}-{:x}", std::process::id())
}

/// The writer thread's state.
struct Writer {
    sink: Arc<dyn Sink>,
    options: TelemetryOptions,
    shared: Arc<Shared>,
    process: String,
    /// REST requests seen, for their document ids.
    sequence: u64,
    fragments: FragmentCache,
}

/// The shutdown deadline, once there is one; writes stop retrying past it.
type Deadline = Arc<Mutex<Option<Instant>>>;

/// Documents encoded and not yet handed to a write, per model: a write
/// takes one model's (a Cosmos DB batch is one partition's).
#[derive(Default)]
struct Pending {
    models: HashMap<Arc<str>, Waiting>,
    /// Models with documents waiting, the one served longest ago first.
    order: VecDeque<Arc<str>>,
}

/// One model's documents waiting, and since when: the oldest's arrival, or
/// the last take for those it left (younger than that; not older than
/// [`FILL_WAIT`] then, or they would have been taken).
struct Waiting {
    documents: VecDeque<EncodedDocument>,
    since: Instant,
}

impl Waiting {
    /// A full batch, or documents that waited [`FILL_WAIT`].
    fn ready(&self, max: usize) -> bool {
        self.documents.len() >= max || self.since.elapsed() >= FILL_WAIT
    }
}

impl Pending {
    fn push(&mut self, documents: Vec<EncodedDocument>) {
        for document in documents {
            if let Some(waiting) = self.models.get_mut(&document.model) {
                waiting.documents.push_back(document);
                continue;
            }
            self.order.push_back(document.model.clone());
            let waiting = Waiting {
                since: Instant::now(),
                documents: VecDeque::from([document]),
            };
            self.models
                .insert(waiting.documents[0].model.clone(), waiting);
        }
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether a model's documents are [`Waiting::ready`] to be written.
    fn ready(&self, max: usize) -> bool {
        self.models.values().any(|waiting| waiting.ready(max))
    }

    /// Up to `max` documents of one model, models taking turns: the next
    /// that is ready, else the next.
    fn take(&mut self, max: usize) -> Vec<EncodedDocument> {
        let ready = self
            .order
            .iter()
            .position(|model| self.models[model].ready(max));
        let Some(model) = self.order.remove(ready.unwrap_or(0)) else {
            return Vec::new();
        };
        let waiting = self.models.get_mut(&model).expect("ordered models wait");
        let take = max.min(waiting.documents.len());
        let batch: Vec<EncodedDocument> = waiting.documents.drain(..take).collect();
        if waiting.documents.is_empty() {
            self.models.remove(&model);
        } else {
            // Otherwise the rest would count as old as the oldest taken,
            // and a steady flow would go in a batch per look again.
            waiting.since = Instant::now();
            self.order.push_back(model);
        }
        batch
    }
}

/// Each model version's [`ModelFragments`], by the loaded model's address;
/// the weak reference tells a model still served from a new one that
/// reuses a dropped one's address.
#[derive(Default)]
struct FragmentCache {
    models: HashMap<usize, (Weak<LoadedModel>, Arc<ModelFragments>)>,
}

impl FragmentCache {
    fn get(&mut self, model: &Arc<LoadedModel>, deployment: &Lineage) -> Arc<ModelFragments> {
        let key = Arc::as_ptr(model) as usize;
        match self.models.get(&key) {
            Some((weak, fragments)) if weak.upgrade().is_some() => fragments.clone(),
            _ => {
                // Versions unloaded since are forgotten as new ones arrive.
                self.models.retain(|_, (weak, _)| weak.strong_count() > 0);
                let fragments = Arc::new(ModelFragments::new(model, deployment));
                self.models
                    .insert(key, (Arc::downgrade(model), fragments.clone()));
                fragments
            }
        }
    }
}

impl Writer {
    async fn run(
        mut self,
        mut receiver: mpsc::UnboundedReceiver<Message>,
        connected: std_mpsc::Sender<Result<(), SinkError>>,
    ) {
        // The startup check runs at normal priority: a busy machine must not
        // turn a wrong key into a warning about a slow store.
        let _ = connected.send(self.sink.connect().await);
        yield_to_scoring();
        let permits = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let deadline: Deadline = Arc::default();
        let max_batch = self.sink.max_batch().max(1);
        let mut pending = Pending::default();
        let mut writes = JoinSet::new();
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Asleep on the channel only while nothing comes: the first request
        // after a quiet spell wakes the writer; while requests keep coming
        // it looks every LOOK_EVERY, so scoring does not wake a thread (two
        // context switches) per request.
        let mut idle = true;
        let finish_by = loop {
            tokio::select! {
                message = receiver.recv(), if idle => match message {
                    Some(Message::Record(prediction)) => {
                        pending.push(self.documents(prediction));
                        idle = false;
                    }
                    Some(Message::Finish(by)) => break by,
                    None => break Instant::now(),
                },
                _ = look.tick(), if !idle => {
                    let mut received = false;
                    let finish = loop {
                        match receiver.try_recv() {
                            Ok(Message::Record(prediction)) => {
                                pending.push(self.documents(prediction));
                                received = true;
                            }
                            Ok(Message::Finish(by)) => break Some(by),
                            Err(TryRecvError::Empty) => break None,
                            Err(TryRecvError::Disconnected) => break Some(Instant::now()),
                        }
                    };
                    if let Some(by) = finish {
                        break by;
                    }
                    idle = !received && pending.is_empty();
                }
                Ok(permit) = permits.clone().acquire_owned(), if pending.ready(max_batch) => {
                    let batch = pending.take(max_batch);
                    writes.spawn(self.write(batch, permit, deadline.clone()));
                }
                // Reap finished writes so the set does not grow.
                Some(_) = writes.join_next(), if !writes.is_empty() => {}
                _ = flush.tick() => self.flush(),
            }
        };
        // What was sent before recording closed is queued too.
        receiver.close();
        while let Ok(message) = receiver.try_recv() {
            if let Message::Record(prediction) = message {
                pending.push(self.documents(prediction));
            }
        }
        *deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(finish_by);
        let _ = tokio::time::timeout_at(finish_by.into(), async {
            while !pending.is_empty() {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let batch = pending.take(max_batch);
                writes.spawn(self.write(batch, permit, deadline.clone()));
            }
            while writes.join_next().await.is_some() {}
        })
        .await;
        writes.abort_all();
        while writes.join_next().await.is_some() {}
        // Whatever is still counted as queued was not written in time.
        let left = self.shared.queued.swap(0, Ordering::SeqCst);
        self.shared.count_drops(left, DropReason::Shutdown);
        self.flush();
    }

    fn documents(&mut self, prediction: Prediction) -> Vec<EncodedDocument> {
        self.sequence += 1;
        let fragments = self
            .fragments
            .get(&prediction.model, &self.options.deployment);
        prediction.encode(&self.process, self.sequence, &fragments)
    }

    fn write(
        &self,
        batch: Vec<EncodedDocument>,
        permit: OwnedSemaphorePermit,
        deadline: Deadline,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        write_batch(
            self.sink.clone(),
            batch,
            permit,
            deadline,
            self.shared.clone(),
        )
    }

    fn flush(&self) {
        self.shared
            .metrics
            .pending
            .set(self.shared.queued.load(Ordering::Relaxed) as f64);
        if let Err(e) = self.sink.flush() {
            tracing::warn!("flushing telemetry: {e}");
        }
    }
}

/// Writes one batch, retrying what may succeed later (after the delay the
/// sink asks for, else with exponential backoff) until it is written,
/// refused for good, or the shutdown deadline passes.
async fn write_batch(
    sink: Arc<dyn Sink>,
    batch: Vec<EncodedDocument>,
    _permit: OwnedSemaphorePermit,
    deadline: Deadline,
    shared: Arc<Shared>,
) {
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let outcome = loop {
        match sink.write(&batch).await {
            Ok(()) => break Ok(()),
            Err(SinkError::Permanent(reason)) => break Err((DropReason::Refused, reason)),
            Err(SinkError::Retryable { reason, after }) => {
                let wait = after.unwrap_or(backoff);
                let late = deadline
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some_and(|by| Instant::now() + wait > by);
                if late {
                    break Err((DropReason::Shutdown, reason));
                }
                shared.metrics.retried.increment(1);
                tracing::debug!(documents = batch.len(), "telemetry write retried: {reason}");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    shared.finished(batch.len());
    match outcome {
        Ok(()) => {
            shared.metrics.written.increment(batch.len() as u64);
            shared.metrics.write_duration.record(started.elapsed());
        }
        Err((reason, message)) => {
            tracing::debug!(
                documents = batch.len(),
                "telemetry documents dropped: {message}"
            );
            shared.count_drops(batch.len(), reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::path::Path;

    use super::*;
    use crate::model::{LoadedModel, Manifest};
    use crate::telemetry::sink::SinkFuture;
    use crate::telemetry::{Document, Origin};
    use crate::ServeError;

    /// Keeps documents in memory; fails the first `fail_first` attempts of
    /// each document with a retryable error (a throttling store), and can be
    /// made to fail every write (a store that is down).
    #[derive(Default)]
    struct MemorySink {
        written: Mutex<HashMap<String, Document>>,
        attempts: Mutex<HashMap<String, usize>>,
        fail_first: usize,
        down: AtomicBool,
        refuse_connection: bool,
    }

    impl Sink for MemorySink {
        fn connect(&self) -> SinkFuture<'_> {
            let refuse = self.refuse_connection;
            Box::pin(async move {
                match refuse {
                    true => Err(SinkError::Permanent("401: wrong key".into())),
                    false => Ok(()),
                }
            })
        }

        fn max_batch(&self) -> usize {
            7
        }

        fn write<'a>(&'a self, encoded: &'a [EncodedDocument]) -> SinkFuture<'a> {
            Box::pin(async move {
                assert!(encoded.len() <= 7, "batches stay within max_batch");
                let documents: Vec<Document> =
                    encoded.iter().map(|d| d.decode().unwrap()).collect();
                assert!(documents.iter().all(|d| d.model == documents[0].model));
                assert!(encoded.iter().all(|d| *d.model == documents[0].model));
                if self.down.load(Ordering::SeqCst) {
                    return Err(SinkError::Retryable {
                        reason: "down".into(),
                        after: Some(Duration::from_millis(20)),
                    });
                }
                let mut attempts = self.attempts.lock().unwrap();
                let mut throttled = false;
                for document in &documents {
                    let n = attempts.entry(document.id.clone()).or_insert(0);
                    *n += 1;
                    throttled |= *n <= self.fail_first;
                }
                if throttled {
                    return Err(SinkError::Retryable {
                        reason: "429".into(),
                        after: Some(Duration::from_millis(1)),
                    });
                }
                let mut written = self.written.lock().unwrap();
                for document in documents {
                    written.insert(document.id.clone(), document);
                }
                Ok(())
            })
        }
    }

    fn iris() -> Arc<LoadedModel> {
        static IRIS: std::sync::OnceLock<Arc<LoadedModel>> = std::sync::OnceLock::new();
        IRIS.get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/iris");
            let manifest = Manifest::read_optional(&dir.join("model.toml")).unwrap();
            Arc::new(
                LoadedModel::load("iris", 1, &dir.join("1/model.onnx"), Arc::new(manifest))
                    .unwrap(),
            )
        })
        .clone()
    }

    fn failure(n: usize) -> Prediction {
        Prediction {
            origin: Origin::Rest {
                request_id: Some(format!("r{n}")),
            },
            model: iris(),
            traceparent: None,
            at: SystemTime::now(),
            latency: Duration::from_micros(10),
            outcome: Err(ServeError::invalid("no rows")),
            inputs: None,
        }
    }

    fn options(queue_capacity: usize) -> TelemetryOptions {
        TelemetryOptions {
            queue_capacity,
            concurrency: 4,
            input_sampling: 0.0,
            deployment: Lineage::default(),
            connect_timeout: Duration::from_secs(5),
            on_refused: OnRefused::Fail,
        }
    }

    #[test]
    fn retried_documents_all_arrive_once() {
        let sink = Arc::new(MemorySink {
            fail_first: 1,
            ..MemorySink::default()
        });
        let telemetry = Telemetry::start(sink.clone(), options(1000)).unwrap();
        for n in 0..200 {
            telemetry.record(failure(n));
        }
        telemetry.shutdown(Duration::from_secs(10));
        let written = sink.written.lock().unwrap();
        assert_eq!(written.len(), 200);
        assert!(sink.attempts.lock().unwrap().values().all(|&n| n == 2));
        assert_eq!(telemetry.pending(), 0);
        let request_ids: HashSet<_> = written.values().map(|d| d.request_id.clone()).collect();
        assert_eq!(request_ids.len(), 200);
    }

    #[test]
    fn a_full_queue_drops_exactly_the_overflow_and_shutdown_gives_up_at_its_deadline() {
        let sink = Arc::new(MemorySink::default());
        sink.down.store(true, Ordering::SeqCst);
        let telemetry = Telemetry::start(sink.clone(), options(50)).unwrap();
        let started = Instant::now();
        for n in 0..80 {
            telemetry.record(failure(n));
        }
        // Recording never waited for the store that is down.
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(telemetry.pending(), 50, "30 of 80 dropped");
        telemetry.shutdown(Duration::from_millis(200));
        assert!(sink.written.lock().unwrap().is_empty());
        assert_eq!(telemetry.pending(), 0, "the rest counted at shutdown");
        // Recording after shutdown is refused, not queued.
        telemetry.record(failure(99));
        assert_eq!(telemetry.pending(), 0);
    }

    #[test]
    fn a_store_that_comes_back_gets_everything_queued_meanwhile() {
        let sink = Arc::new(MemorySink::default());
        sink.down.store(true, Ordering::SeqCst);
        let telemetry = Telemetry::start(sink.clone(), options(1000)).unwrap();
        for n in 0..100 {
            telemetry.record(failure(n));
        }
        std::thread::sleep(Duration::from_millis(100));
        sink.down.store(false, Ordering::SeqCst);
        telemetry.shutdown(Duration::from_secs(10));
        assert_eq!(sink.written.lock().unwrap().len(), 100);
    }

    #[test]
    fn a_refused_connection_fails_the_start_or_only_warns() {
        let refusing = || {
            Arc::new(MemorySink {
                refuse_connection: true,
                ..MemorySink::default()
            })
        };
        match Telemetry::start(refusing(), options(10)) {
            Err(TelemetryError::Refused(reason)) => assert!(reason.contains("401"), "{reason}"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("started with a refused connection"),
        }
        let warn = TelemetryOptions {
            on_refused: OnRefused::Warn,
            ..options(10)
        };
        let telemetry = Telemetry::start(refusing(), warn).unwrap();
        telemetry.record(failure(0));
        telemetry.shutdown(Duration::from_secs(5));
        assert_eq!(telemetry.pending(), 0);
    }

    #[test]
    fn pending_documents_are_batched_per_model_taking_turns() {
        let mut pending = Pending::default();
        let documents = |model: &str, count: usize| -> Vec<EncodedDocument> {
            (0..count)
                .map(|n| EncodedDocument {
                    model: model.into(),
                    json: format!("{{\"n\":{n}}}").into_bytes(),
                })
                .collect()
        };
        pending.push(documents("a", 5));
        pending.push(documents("b", 2));
        pending.push(documents("a", 1));
        // Full batches go first; b's two wait for more.
        let model = |batch: Vec<EncodedDocument>| (batch[0].model.to_string(), batch.len());
        assert!(pending.ready(3));
        assert_eq!(model(pending.take(3)), ("a".to_string(), 3));
        assert!(pending.ready(3), "a has three more");
        assert_eq!(model(pending.take(3)), ("a".to_string(), 3));
        assert!(!pending.ready(3), "b's two wait for a full batch");
        // ... until they have waited FILL_WAIT; then models take turns.
        pending.push(documents("a", 2));
        std::thread::sleep(FILL_WAIT);
        assert!(pending.ready(3));
        assert_eq!(model(pending.take(3)), ("b".to_string(), 2));
        assert_eq!(model(pending.take(3)), ("a".to_string(), 2));
        assert!(pending.is_empty());
        // What a take leaves waits for a batch of its own.
        pending.push(documents("c", 4));
        std::thread::sleep(FILL_WAIT);
        assert_eq!(model(pending.take(3)), ("c".to_string(), 3));
        assert!(!pending.ready(3), "the fourth waits again");
    }

    #[test]
    fn off_records_nothing() {
        let telemetry = Telemetry::off();
        assert!(!telemetry.enabled());
        telemetry.record(failure(0));
        assert_eq!(telemetry.pending(), 0);
        telemetry.shutdown(Duration::ZERO);
    }

    #[test]
    fn input_sampling_keeps_its_rate_exactly() {
        let sink = Arc::new(MemorySink::default());
        let sampling = |rate| {
            let telemetry = Telemetry::start(
                sink.clone(),
                TelemetryOptions {
                    input_sampling: rate,
                    ..options(10)
                },
            )
            .unwrap();
            let chosen = (0..1000).filter(|_| telemetry.sample_inputs()).count();
            telemetry.shutdown(Duration::ZERO);
            chosen
        };
        assert_eq!(sampling(0.0), 0);
        assert_eq!(sampling(0.1), 100);
        assert_eq!(sampling(0.25), 250);
        assert_eq!(sampling(1.0), 1000);
    }

    #[test]
    fn predictions_make_one_document_per_row_with_lineage_and_inputs() {
        let model = iris();
        let predictions = crate::model::Predictions {
            rows: 2,
            classes: 3,
            probabilities: vec![0.7, 0.2, 0.1, 0.1, 0.1, 0.8],
            label_indices: vec![0, 2],
            compute: Duration::ZERO,
        };
        let prediction = Prediction {
            origin: Origin::Kafka {
                request_id: "key-1".into(),
                group: "scoring".into(),
                topic: "in".into(),
                partition: 3,
                offset: 42,
            },
            traceparent: Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".into()),
            outcome: Ok(predictions),
            inputs: Some(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
            ..failure(0)
        };
        let deployment = Lineage {
            code_commit: Some("abc123".into()),
            ..Lineage::default()
        };
        assert_eq!(prediction.document_count(), 2);
        let fragments = ModelFragments::new(&model, &deployment);
        let decode = |encoded: Vec<EncodedDocument>| -> Vec<Document> {
            assert!(encoded.iter().all(|d| &*d.model == "iris"));
            encoded.iter().map(|d| d.decode().unwrap()).collect()
        };
        let documents = decode(prediction.encode("p", 7, &fragments));
        assert_eq!(documents.len(), 2);
        let second = &documents[1];
        assert_eq!(second.id, "scoring-in-3-42-1");
        assert_eq!(second.request_id.as_deref(), Some("key-1"));
        assert_eq!(second.label, Some(serde_json::json!("virginica")));
        assert_eq!(second.probabilities.as_ref().unwrap()["virginica"], 0.8);
        assert_eq!(second.inputs, Some(vec![5.0, 6.0, 7.0, 8.0]));
        assert_eq!(second.version, "1");
        assert_eq!(second.model_sha256, model.sha256);
        assert_eq!(
            second.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(second.lineage.code_commit.as_deref(), Some("abc123"));
        assert_eq!(
            second.lineage.manifest["training_script"],
            "models/train/train.py"
        );
        let first = &documents[0];
        assert_eq!(
            (first.id.as_str(), first.row),
            ("scoring-in-3-42-0", Some(0))
        );
        assert_eq!(first.label, Some(serde_json::json!("setosa")));
        assert_eq!(first.inputs, Some(vec![1.0, 2.0, 3.0, 4.0]));
        assert_eq!(first.outcome, "ok");
        let failed = decode(failure(5).encode("p", 7, &fragments));
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].id, "p-7-error");
        assert_eq!(failed[0].outcome, "invalid_input");
        assert!(failed[0].error.as_deref().unwrap().contains("no rows"));
        assert_eq!((failed[0].row, &failed[0].label), (None, &None));
        assert_eq!(failed[0].request_id.as_deref(), Some("r5"));
    }
}
