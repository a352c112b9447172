//! Test support for Kafka: the broker `scripts/kafka-broker` started (its
//! address in `MODELOPS_TEST_KAFKA_BROKERS`), topics, a producer and a
//! consumer that reads a topic from the beginning.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

static BROKERS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Points this test process at another broker than the shared one (each
/// test runs in a process of its own under nextest).
pub fn use_brokers(address: String) {
    BROKERS
        .set(address)
        .expect("brokers chosen once per process");
}

/// The broker's `host:port`.
pub fn brokers() -> String {
    if let Some(address) = BROKERS.get() {
        return address.clone();
    }
    std::env::var("MODELOPS_TEST_KAFKA_BROKERS").expect(
        "MODELOPS_TEST_KAFKA_BROKERS is not set: run the tests with scripts/test, which starts \
         the broker (or scripts/kafka-broker start DIR and export its address)",
    )
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers());
    config
}

/// Creates `topic` with `partitions` partitions.
pub fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config().create().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap();
    for result in results {
        result.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

/// Waits (up to a minute) until `topic` exists with its partitions.
pub fn wait_for_topic(topic: &str) {
    let consumer: BaseConsumer = config().create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let exists = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.error().is_none() && !t.partitions().is_empty())
            })
            .unwrap_or(false);
        if exists {
            return;
        }
        assert!(Instant::now() < deadline, "topic {topic} never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A message to produce.
pub struct Outgoing {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
    pub partition: Option<i32>,
}

impl Outgoing {
    pub fn new(key: Option<&str>, value: impl Into<Vec<u8>>) -> Outgoing {
        Outgoing {
            key: key.map(str::to_string),
            value: value.into(),
            headers: Vec::new(),
            partition: None,
        }
    }

    pub fn header(mut self, key: &'static str, value: &str) -> Outgoing {
        self.headers.push((key, value.to_string()));
        self
    }
}

/// Produces `messages` to `topic` and waits until the broker has them all.
pub fn produce(topic: &str, messages: &[Outgoing]) {
    let producer: BaseProducer = config().set("enable.idempotence", "true").create().unwrap();
    for message in messages {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &message.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let mut record = BaseRecord::<String, Vec<u8>>::to(topic)
            .payload(&message.value)
            .headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key);
        }
        if let Some(partition) = message.partition {
            record = record.partition(partition);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    // The local queue is full: let deliveries drain.
                    producer.poll(Duration::from_millis(10));
                    record = r;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// A consumed message.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub partition: i32,
    pub offset: i64,
}

impl<M: Message> From<&M> for Received {
    fn from(message: &M) -> Received {
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Received {
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            value: message.payload().unwrap_or_default().to_vec(),
            headers,
            partition: message.partition(),
            offset: message.offset(),
        }
    }
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.value)))
    }
}

/// Reads a topic from its beginning (no consumer group commits).
pub struct Reader {
    consumer: BaseConsumer,
    pub received: Vec<Received>,
    /// The distinct keys among `received`.
    pub keys: HashSet<String>,
}

impl Reader {
    /// Sees only committed transactions (`read_committed`).
    pub fn new(topic: &str) -> Reader {
        Reader::with_isolation(topic, "read_committed")
    }

    /// Sees every record, also those of open and aborted transactions
    /// (`read_uncommitted`), at once: it asks the broker again every
    /// millisecond rather than waiting up to half a second for more data.
    pub fn uncommitted(topic: &str) -> Reader {
        Reader::with_isolation(topic, "read_uncommitted")
    }

    fn with_isolation(topic: &str, isolation: &str) -> Reader {
        let mut config = config();
        if isolation == "read_uncommitted" {
            config.set("fetch.wait.max.ms", "1");
        }
        let consumer: BaseConsumer = config
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", isolation)
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Reader {
            consumer,
            received: Vec::new(),
            keys: HashSet::new(),
        }
    }

    /// Reads until `done(self)` or `timeout`; returns whether done.
    pub fn read_until(&mut self, timeout: Duration, done: impl Fn(&Reader) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() > deadline {
                return false;
            }
            if let Some(Ok(message)) = self.consumer.poll(Duration::from_millis(100)) {
                let received = Received::from(&message);
                self.keys.extend(received.key.clone());
                self.received.push(received);
            }
        }
        true
    }

    /// Reads for `quiet` more and returns how many messages arrived.
    pub fn read_more(&mut self, quiet: Duration) -> usize {
        let before = self.received.len();
        self.read_until(quiet, |_| false);
        self.received.len() - before
    }
}

/// Everything a new `read_committed` reader sees in `topic` (partitions
/// `0..partitions`), read from the beginning up to each partition's last
/// stable offset, each partition in one fetch.
///
/// A fresh reader, and one fetch, because of a noida-db 0.2.3 quirk: after
/// a transaction was aborted (a killed producer fenced by its restart), its
/// Fetch responses list that aborted transaction also for fetches that
/// start past its abort marker. The restarted producer keeps the producer
/// id, so librdkafka drops every later batch of it as aborted: a reader
/// that had reached the open transaction before the abort sees nothing
/// more. A fetch that starts before the marker sees the marker and is right.
pub fn read_committed_from_start(topic: &str, partitions: i32) -> Vec<Received> {
    let consumer: BaseConsumer = config()
        .set("group.id", unique("snapshot"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("max.partition.fetch.bytes", "52428800")
        .set("receive.message.max.bytes", "104857600")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut at_end = HashSet::new();
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_end.len() < partitions as usize {
        assert!(Instant::now() < deadline, "{topic}: no end after 30 s");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => received.push(Received::from(&message)),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    received
}

/// The offsets `group` committed for `topic`'s partitions `0..partitions`
/// (-1 where none).
pub fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = config().set("group.id", group).create().unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).unwrap().offset() {
                Offset::Offset(o) => o,
                _ => -1,
            },
        )
        .collect()
}
