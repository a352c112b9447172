//! The Kafka transport's Prometheus metrics.

use metrics::{counter, gauge, histogram, Counter, Histogram};

pub const CONSUMED: &str = "modelops_kafka_consumed_total";
pub const PRODUCED: &str = "modelops_kafka_produced_total";
pub const DEAD_LETTERS: &str = "modelops_kafka_dead_letters_total";
/// Sends that failed and are tried again (the message is not lost).
pub const PRODUCE_RETRIES: &str = "modelops_kafka_produce_retries_total";
/// The next offset to read, as committed, per partition.
pub const COMMITTED_OFFSET: &str = "modelops_kafka_committed_offset";
/// Messages the partition holds beyond the committed offset (from librdkafka's statistics).
pub const CONSUMER_LAG: &str = "modelops_kafka_consumer_lag";
/// Messages consumed whose result is not yet acknowledged.
pub const IN_FLIGHT: &str = "modelops_kafka_in_flight";
/// From the input message's timestamp to its result being acknowledged.
pub const END_TO_END: &str = "modelops_kafka_end_to_end_duration_seconds";

/// Per-message metric handles, registered once (a lookup by name and
/// labels per message cost an allocation and a hash each).
pub struct StreamMetrics {
    pub consumed: Counter,
    pub produced: Counter,
    pub end_to_end: Histogram,
}

impl StreamMetrics {
    pub fn new(input_topic: &str, output_topic: &str) -> StreamMetrics {
        StreamMetrics {
            consumed: counter!(CONSUMED, "topic" => input_topic.to_string()),
            produced: counter!(PRODUCED, "topic" => output_topic.to_string()),
            end_to_end: histogram!(END_TO_END),
        }
    }
}

pub fn dead_letter(reason: &'static str) {
    counter!(DEAD_LETTERS, "reason" => reason).increment(1);
}

pub fn produce_retry(topic: &str) {
    counter!(PRODUCE_RETRIES, "topic" => topic.to_string()).increment(1);
}

pub fn committed(topic: &str, partition: i32, offset: i64) {
    gauge!(COMMITTED_OFFSET, "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(offset as f64);
}

pub fn lag(topic: &str, partition: i32, lag: i64) {
    gauge!(CONSUMER_LAG, "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag as f64);
}

pub fn in_flight(count: usize) {
    gauge!(IN_FLIGHT).set(count as f64);
}
