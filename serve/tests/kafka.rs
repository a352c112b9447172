//! Kafka stream scoring against a real Kafka-protocol broker (noida-db,
//! started by scripts/test): every message format, headers passed on, dead
//! letters with the reason, at-least-once delivery through a SIGKILL, a
//! rebalance and a graceful shutdown, and exactly-once delivery through a
//! graceful stop and through SIGKILLs inside transactions.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::json;
use support::kafka::{
    brokers, committed, create_topic, produce, read_committed_from_start, unique, Outgoing, Reader,
};
use support::{metric, output, v2_request, Reference, Server};

const WAIT: Duration = Duration::from_secs(60);

/// One test's topics and consumer group.
struct Topics {
    input: String,
    output: String,
    dlq: String,
    group: String,
}

impl Topics {
    /// Fresh names, no topics created.
    fn names() -> Topics {
        Topics {
            input: unique("in"),
            output: unique("out"),
            dlq: unique("dlq"),
            group: unique("group"),
        }
    }

    fn new(partitions: i32) -> Topics {
        let topics = Topics::names();
        create_topic(&topics.input, partitions);
        create_topic(&topics.output, 1);
        create_topic(&topics.dlq, 1);
        topics
    }

    /// `serve` scoring these topics (and REST, as always), plus `extra` flags.
    fn scorer(&self, extra: &[&str]) -> Server {
        let brokers = brokers();
        let mut args = vec![
            "--models",
            "models",
            "--kafka-brokers",
            &brokers,
            "--kafka-input-topic",
            &self.input,
            "--kafka-output-topic",
            &self.output,
            "--kafka-dlq-topic",
            &self.dlq,
            "--kafka-group-id",
            &self.group,
            "--drain-seconds",
            "0",
        ];
        args.extend_from_slice(extra);
        Server::start(&args)
    }
}

/// Row `i` of iris' held-back set as a bare JSON row, keyed `i`.
fn keyed_row(iris: &Reference, i: usize) -> Outgoing {
    let row = &iris.rows[i % iris.rows.len()];
    Outgoing::new(Some(&i.to_string()), json!(row).to_string()).header("model", "iris")
}

/// `count` keyed rows (see [`keyed_row`]).
fn keyed_rows(iris: &Reference, count: usize) -> Vec<Outgoing> {
    (0..count).map(|i| keyed_row(iris, i)).collect()
}

/// Results beyond the first per key.
fn duplicates(seen: &HashMap<usize, usize>) -> usize {
    seen.values().map(|n| n - 1).sum()
}

/// Checks every result against onnxruntime's label for its row; returns
/// how many results each key got.
fn check_results(iris: &Reference, results: &[support::kafka::Received]) -> HashMap<usize, usize> {
    let mut seen = HashMap::new();
    for result in results {
        let key: usize = result.key.as_deref().unwrap().parse().unwrap();
        let body = result.json();
        assert_eq!(
            body["labels"][0],
            iris.labels[key % iris.rows.len()],
            "key {key}: {body}"
        );
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

#[test]
fn scores_every_message_format_and_passes_keys_and_headers_on() {
    let topics = Topics::new(1);
    let _server = topics.scorer(&[]);
    let iris = Reference::bundled("iris");
    let rows = &iris.rows;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut v2 = v2_request("X", &rows[0..2]);
    v2["id"] = json!("body-id");
    let messages = vec![
        Outgoing::new(Some("v2"), v2.to_string())
            .header("model", "iris")
            .header("traceparent", traceparent),
        Outgoing::new(
            Some("instances"),
            json!({ "instances": &rows[2..5] }).to_string(),
        )
        .header("model", "iris")
        .header("model-version", "1"),
        Outgoing::new(Some("row"), json!(rows[5]).to_string()).header("model", "iris"),
        Outgoing::new(Some("rows"), json!(&rows[6..8]).to_string()).header("model", "iris"),
        // No key: the V2 body's id names the result.
        Outgoing::new(None, v2.to_string()).header("model", "iris"),
    ];
    produce(&topics.input, &messages);

    let mut reader = Reader::new(&topics.output);
    assert!(
        reader.read_until(WAIT, |r| r.received.len() >= 5),
        "results: {:?}",
        reader.received
    );
    let by_id: HashMap<String, &support::kafka::Received> = reader
        .received
        .iter()
        .map(|r| (r.json()["id"].as_str().unwrap().to_string(), r))
        .collect();
    let expect = |id: &str, first_row: usize, count: usize| {
        let result = by_id
            .get(id)
            .unwrap_or_else(|| panic!("no result {id}: {by_id:?}"));
        let body = result.json();
        assert_eq!(body["model"], "iris");
        assert_eq!(body["model_version"], "1");
        assert_eq!(body["classes"], json!(iris.classes));
        assert_eq!(
            body["labels"],
            json!(iris.labels[first_row..first_row + count]),
            "{id}"
        );
        let probabilities = body["probabilities"].as_array().unwrap();
        assert_eq!(probabilities.len(), count);
        for (row, got) in probabilities.iter().enumerate() {
            for (class, p) in got.as_array().unwrap().iter().enumerate() {
                let want = iris.probabilities[first_row + row][class];
                assert!((p.as_f64().unwrap() - want).abs() < 1e-5, "{id}: {body}");
            }
        }
        assert!(body["latency_ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(result.headers["model"], "iris");
        assert_eq!(result.headers["model-version"], "1");
        *result
    };
    let v2_result = expect("v2", 0, 2);
    assert_eq!(v2_result.key.as_deref(), Some("v2"), "the key is kept");
    assert_eq!(v2_result.headers["traceparent"], traceparent);
    expect("instances", 2, 3);
    expect("row", 5, 1);
    expect("rows", 6, 2);
    let unkeyed = expect("body-id", 0, 2);
    assert_eq!(unkeyed.key, None);

    let mut dead = Reader::new(&topics.dlq);
    assert_eq!(dead.read_more(Duration::from_secs(1)), 0, "no dead letters");
}

#[test]
fn poison_messages_go_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let topics = Topics::new(1);
    // Statistics (consumer lag) every 200 ms instead of 5 s.
    let server = topics.scorer(&["--kafka-property", "statistics.interval.ms=200"]);
    let iris = Reference::bundled("iris");
    let poison = vec![
        Outgoing::new(Some("not-json"), "{\"inputs\": [").header("model", "iris"),
        Outgoing::new(Some("no-model"), json!(iris.rows[0]).to_string()),
        Outgoing::new(Some("unknown-model"), json!(iris.rows[0]).to_string())
            .header("model", "nope"),
        Outgoing::new(Some("wrong-width"), "[1.0, 2.0]").header("model", "iris"),
        Outgoing::new(Some("empty"), "").header("model", "iris"),
        Outgoing::new(Some("bad-version"), json!(iris.rows[0]).to_string())
            .header("model", "iris")
            .header("model-version", "9"),
    ];
    let mut messages: Vec<Outgoing> = poison;
    messages.push(keyed_row(&iris, 7));
    for message in &mut messages {
        message.headers.push(("traceparent", "trace-1".into()));
    }
    produce(&topics.input, &messages);

    let mut dead = Reader::new(&topics.dlq);
    assert!(
        dead.read_until(WAIT, |r| r.received.len() >= 6),
        "{:?}",
        dead.received
    );
    let by_key: HashMap<&str, &support::kafka::Received> = dead
        .received
        .iter()
        .map(|r| (r.key.as_deref().unwrap(), r))
        .collect();
    let expect = |key: &str, kind: &str, says: &str, offset: i64| {
        let letter = by_key[key];
        assert_eq!(letter.headers["error-kind"], kind, "{key}: {letter:?}");
        assert!(
            letter.headers["error"].contains(says),
            "{key}: `{}` should mention `{says}`",
            letter.headers["error"]
        );
        assert_eq!(letter.headers["source-topic"], topics.input);
        assert_eq!(letter.headers["source-partition"], "0");
        assert_eq!(letter.headers["source-offset"], offset.to_string());
        assert_eq!(letter.headers["traceparent"], "trace-1");
        assert_eq!(
            letter.value, messages[offset as usize].value,
            "the original value"
        );
    };
    expect("not-json", "invalid_input", "invalid JSON", 0);
    expect("no-model", "invalid_input", "no `model` header", 1);
    expect("unknown-model", "model_not_found", "nope", 2);
    expect("wrong-width", "invalid_input", "4 features", 3);
    expect("empty", "invalid_input", "no value", 4);
    expect("bad-version", "version_not_found", "9", 5);

    let mut results = Reader::new(&topics.output);
    assert!(results.read_until(WAIT, |r| !r.received.is_empty()));
    assert_eq!(results.received[0].key.as_deref(), Some("7"));

    // Everything is done, so everything gets committed.
    let deadline = std::time::Instant::now() + WAIT;
    while committed(&topics.group, &topics.input, 1) != [7] {
        assert!(
            std::time::Instant::now() < deadline,
            "committed: {:?}",
            committed(&topics.group, &topics.input, 1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, metrics) = server.get_text("/metrics");
    assert!(
        metrics.contains("modelops_kafka_dead_letters_total{reason=\"invalid_input\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("modelops_kafka_committed_offset{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("modelops_kafka_end_to_end_duration_seconds_count 1"),
        "one result produced: {metrics}"
    );
    let lag = format!(
        "modelops_kafka_consumer_lag{{topic=\"{}\",partition=\"0\"}} 0",
        topics.input
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.get_text("/metrics").1.contains(&lag) {
        assert!(
            std::time::Instant::now() < deadline,
            "no `{lag}` in {}",
            server.get_text("/metrics").1
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kafka_only_creates_its_topics_and_stops_on_sigterm() {
    // The scorer creates the topics itself.
    let topics = Topics::names();
    let brokers = brokers();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_serve"))
        .current_dir(support::repo_root())
        .env("MODELOPS_TELEMETRY", "off")
        .args([
            "--models",
            "models",
            "--no-rest",
            "--kafka-brokers",
            &brokers,
        ])
        .args(["--kafka-input-topic", &topics.input])
        .args(["--kafka-output-topic", &topics.output])
        .args(["--kafka-dlq-topic", &topics.dlq])
        .args(["--kafka-group-id", &topics.group])
        .args(["--kafka-create-topics", "--kafka-topic-partitions", "3"])
        .args(["--kafka-model", "iris"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if an assertion fails before the SIGTERM below.
    let guard = KillOnDrop(child.id());
    let iris = Reference::bundled("iris");
    // The scorer creates its topics; read the output once it exists (a
    // subscription to a missing topic notices it only at the next metadata
    // refresh).
    support::kafka::wait_for_topic(&topics.output);
    support::kafka::wait_for_topic(&topics.input);
    let mut reader = Reader::new(&topics.output);
    // No `model` header: the default model scores it.
    produce(
        &topics.input,
        &[Outgoing::new(Some("k"), json!(iris.rows[0]).to_string())],
    );
    assert!(
        reader.read_until(WAIT, |r| !r.received.is_empty()),
        "no result"
    );
    assert_eq!(reader.received[0].json()["labels"][0], iris.labels[0]);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    // It exited: nothing to kill (and its PID may be reused).
    std::mem::forget(guard);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("created topic") && log.contains("partitions=3"),
        "{log}"
    );
    assert!(!log.contains("listening on"), "no REST: {log}");
}

#[test]
fn a_killed_server_loses_nothing() {
    let topics = Topics::new(4);
    let iris = Reference::bundled("iris");
    let total = 3000;
    let messages = keyed_rows(&iris, total);
    produce(&topics.input, &messages);

    let mut results = Reader::new(&topics.output);
    // The restarted process takes the killed one's place in the group at
    // once, as a restarted pod does with static membership (without it the
    // group would wait for the dead member's session to time out).
    let instance = format!("group.instance.id={}", unique("scorer"));
    let session = ["--kafka-property", instance.as_str()];
    let mut first = topics.scorer(&session);
    assert!(results.read_until(WAIT, |r| r.received.len() >= total / 5));
    // Killed mid-stream, no chance to commit or flush anything.
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    let before_restart = results.received.len();

    let second = topics.scorer(&session);
    assert!(
        results.read_until(WAIT, |r| r.keys.len() >= total),
        "{} of {total} keys scored; the restarted scorer's log:\n{}",
        results.keys.len(),
        second.log()
    );
    let seen = check_results(&iris, &results.received);
    assert_eq!(seen.len(), total, "every message has a result");
    let duplicates = duplicates(&seen);
    eprintln!(
        "killed after {before_restart} results; {duplicates} of {total} messages scored twice"
    );
}

#[test]
fn sigterm_finishes_in_flight_work_and_commits_it() {
    let topics = Topics::new(2);
    let iris = Reference::bundled("iris");
    let total = 1000;
    let messages = keyed_rows(&iris, total);
    // Backpressure on: at most 8 messages in flight, partitions paused beyond.
    let mut server = topics.scorer(&["--kafka-max-in-flight", "8"]);
    produce(&topics.input, &messages);
    let mut results = Reader::new(&topics.output);
    assert!(results.read_until(WAIT, |r| r.received.len() >= total / 2));
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    results.read_more(Duration::from_secs(1));
    let committed_total: i64 = committed(&topics.group, &topics.input, 2)
        .iter()
        .map(|&o| o.max(0))
        .sum();
    // Exactly what was produced before the stop is committed: a result for
    // every committed message, nothing committed without its result.
    let scored = results.keys.len();
    assert_eq!(committed_total as usize, scored, "committed vs scored");
    assert_eq!(
        results.received.len(),
        scored,
        "no duplicates without a crash"
    );

    // The restarted scorer takes up exactly where the first left off.
    let _again = topics.scorer(&[]);
    assert!(results.read_until(WAIT, |r| r.keys.len() >= total));
    results.read_more(Duration::from_secs(2));
    let seen = check_results(&iris, &results.received);
    assert_eq!(seen.len(), total);
    assert!(
        seen.values().all(|&n| n == 1),
        "a graceful stop commits what it scored: nothing is scored twice"
    );
}

#[test]
fn a_rebalance_between_two_scorers_loses_nothing() {
    let topics = Topics::new(4);
    let iris = Reference::bundled("iris");
    let total = 3000;
    let messages = keyed_rows(&iris, total);
    let mut results = Reader::new(&topics.output);
    let mut first = topics.scorer(&[]);
    produce(&topics.input, &messages[..total / 2]);
    assert!(results.read_until(WAIT, |r| r.received.len() >= total / 10));
    // A second scorer joins the group: partitions move while work is in flight.
    let second = topics.scorer(&[]);
    let deadline = Instant::now() + WAIT;
    while !second.log().contains("partitions assigned") {
        assert!(
            Instant::now() < deadline,
            "the second scorer got no partitions"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    produce(&topics.input, &messages[total / 2..]);
    assert!(results.read_until(WAIT, |r| r.received.len() >= total * 6 / 10));
    // Both scored part of the stream: the group split the partitions.
    let consumed = |server: &Server| {
        metric(
            &server.get_text("/metrics").1,
            "modelops_kafka_consumed_total{",
        )
    };
    let (by_first, by_second) = (consumed(&first), consumed(&second));
    assert!(
        by_first > 0.0 && by_second > 0.0,
        "{by_first} / {by_second}"
    );
    // The first leaves: the second takes every partition.
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(30)).success());
    assert!(
        results.read_until(WAIT, |r| r.keys.len() >= total),
        "{} of {total}",
        results.keys.len()
    );
    let seen = check_results(&iris, &results.received);
    assert_eq!(seen.len(), total);
    let duplicates = duplicates(&seen);
    eprintln!(
        "rebalance: consumed {by_first} + {by_second} before the first left; \
         {duplicates} of {total} messages scored twice"
    );
}

#[test]
fn ten_thousand_records_on_four_partitions_each_get_one_result_equal_to_rest() {
    let topics = Topics::new(4);
    let iris = Reference::bundled("iris");
    let total = 10_000;
    let messages = keyed_rows(&iris, total);
    let server = topics.scorer(&[]);
    produce(&topics.input, &messages);
    // The same rows over REST, one request.
    let (status, rest) = server.post_json("/v2/models/iris/infer", &v2_request("X", &iris.rows));
    assert_eq!(status, 200);
    let rest_labels = output(&rest, "label")["data"].as_array().unwrap().clone();
    let rest_probabilities = output(&rest, "probabilities")["data"]
        .as_array()
        .unwrap()
        .clone();
    let classes = iris.classes.len();

    let mut results = Reader::new(&topics.output);
    assert!(
        results.read_until(WAIT, |r| r.keys.len() >= total),
        "{} of {total}",
        results.keys.len()
    );
    results.read_more(Duration::from_secs(1));
    assert_eq!(
        results.received.len(),
        total,
        "exactly one result per record"
    );
    let partitions: HashSet<i32> = results
        .received
        .iter()
        .map(|r| {
            let key: usize = r.key.as_deref().unwrap().parse().unwrap();
            let row = key % iris.rows.len();
            let body = r.json();
            assert_eq!(body["labels"][0], rest_labels[row], "key {key}");
            for class in 0..classes {
                assert_eq!(
                    body["probabilities"][0][class],
                    rest_probabilities[row * classes + class],
                    "key {key}: Kafka and REST score the same row alike"
                );
            }
            r.partition
        })
        .collect();
    assert_eq!(partitions.len(), 1, "the output topic has one partition");
    // And every input offset gets committed.
    let deadline = Instant::now() + WAIT;
    loop {
        let committed_total: i64 = committed(&topics.group, &topics.input, 4).iter().sum();
        if committed_total == total as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed {committed_total} of {total}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_broker_restart_mid_stream_loses_nothing() {
    // A broker of this test's own: restarting the shared one would disturb
    // the other tests.
    let broker = OwnBroker::start();
    support::kafka::use_brokers(broker.address.clone());
    let topics = Topics::new(2);
    let iris = Reference::bundled("iris");
    let total = 3000;
    let messages = keyed_rows(&iris, total);
    produce(&topics.input, &messages[..total / 2]);
    // Static membership, as recommended for deployments: the rejoin after
    // the restart does not wait for the old membership's session to end.
    let instance = format!("group.instance.id={}", unique("scorer"));
    let scorer = topics.scorer(&["--kafka-property", instance.as_str()]);
    let mut results = Reader::new(&topics.output);
    assert!(results.read_until(WAIT, |r| r.received.len() >= total / 10));
    broker.restart();
    produce(&topics.input, &messages[total / 2..]);
    // librdkafka reconnects with backoff (up to 10 s between attempts).
    assert!(
        results.read_until(2 * WAIT, |r| r.keys.len() >= total),
        "{} of {total}; log:\n{}",
        results.keys.len(),
        scorer.log()
    );
    let seen = check_results(&iris, &results.received);
    assert_eq!(seen.len(), total);
    let duplicates = duplicates(&seen);
    eprintln!("broker restart: {duplicates} of {total} messages scored twice");
}

/// Kills a process by its PID when dropped (a failed test leaves no
/// scorer behind).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

/// A broker started (and restarted, on the same port and data) by
/// `scripts/kafka-broker`, stopped by its PID when dropped.
struct OwnBroker {
    dir: std::path::PathBuf,
    address: String,
}

impl OwnBroker {
    fn script() -> std::path::PathBuf {
        support::repo_root().join("scripts/kafka-broker")
    }

    fn start() -> OwnBroker {
        let dir = std::env::temp_dir().join(unique("broker"));
        let out = std::process::Command::new(OwnBroker::script())
            .arg("start")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let address = String::from_utf8(out.stdout).unwrap().trim().to_string();
        OwnBroker { dir, address }
    }

    fn stop(&self) {
        let status = std::process::Command::new(OwnBroker::script())
            .arg("stop")
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Stops it, waits a moment, starts it again on the same port and data.
    fn restart(&self) {
        self.stop();
        std::thread::sleep(Duration::from_secs(2));
        let port = self.address.rsplit(':').next().unwrap();
        let out = std::process::Command::new(OwnBroker::script())
            .arg("start")
            .arg(&self.dir)
            .arg(port)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Produces `total` keyed iris rows with one poison record a third of the
/// way in, and returns the flags of an exactly-once scorer that keeps its
/// transactional id and group instance across restarts, as a pod does
/// (its init_transactions then fences the instance before it), with
/// transactions of at most 50 messages: many of them, so that a stop or a
/// kill lands inside one.
fn exactly_once_input(topics: &Topics, iris: &Reference, total: usize) -> Vec<String> {
    let mut messages = keyed_rows(iris, total);
    messages.insert(
        total / 3,
        Outgoing::new(Some("poison"), "[1, 2]").header("model", "iris"),
    );
    produce(&topics.input, &messages);
    let transactional_id = unique("txn");
    let instance = format!("group.instance.id={}", unique("scorer"));
    [
        "--kafka-exactly-once",
        "--kafka-max-in-flight",
        "50",
        "--kafka-transactional-id",
        transactional_id.as_str(),
        "--kafka-property",
        instance.as_str(),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn exactly_once_across_a_stop_mid_stream_and_a_restart() {
    let topics = Topics::new(2);
    let iris = Reference::bundled("iris");
    let total = 2000;
    // (SIGKILLs inside transactions: the next test.)
    let flags = exactly_once_input(&topics, &iris, total);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // Reads only committed transactions.
    let mut results = Reader::new(&topics.output);
    let mut first = topics.scorer(&flags);
    assert!(results.read_until(WAIT, |r| r.received.len() >= total / 4));
    // Stopped mid-stream: the transaction in progress commits or aborts.
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(30)).success());

    let second = topics.scorer(&flags);
    assert!(
        results.read_until(WAIT, |r| r.keys.len() >= total),
        "{} of {total} keys; log:\n{}",
        results.keys.len(),
        second.log()
    );
    results.read_more(Duration::from_secs(2));
    let seen = check_results(&iris, &results.received);
    assert_eq!(seen.len(), total);
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "scored more than once: {twice:?}");

    let mut dead = Reader::new(&topics.dlq);
    assert!(dead.read_until(WAIT, |r| !r.received.is_empty()));
    dead.read_more(Duration::from_secs(1));
    assert_eq!(dead.received.len(), 1, "one dead letter, once");
    assert_eq!(dead.received[0].key.as_deref(), Some("poison"));
}

#[test]
fn exactly_once_across_sigkills_mid_transaction_and_restarts() {
    let topics = Topics::new(2);
    let iris = Reference::bundled("iris");
    let total = 6000;
    let mut flags = exactly_once_input(&topics, &iris, total);
    flags.extend(
        [
            // A transaction's first 30 results go out at once, the rest 50 ms
            // later: the kills below, which follow results coming out, land in
            // that window, inside a transaction whose results are written but
            // not committed (without it, the window between the results and
            // the commit is a few milliseconds and most kills miss it).
            "--kafka-property",
            "batch.num.messages=30",
            "--kafka-property",
            "linger.ms=50",
        ]
        .map(String::from),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // Sees results as soon as they are written, before their transaction
    // commits.
    let mut raw = Reader::uncommitted(&topics.output);
    let mut server = topics.scorer(&flags);
    // Results that were written but not committed when each kill struck.
    let mut left_open = Vec::new();
    let mut not_committed_before = 0;
    // At least three kills, more (up to six) until one struck inside a
    // transaction whose results were written.
    let mut kill = 0;
    while kill < 3 || (kill < 6 && left_open.iter().all(|&n| n == 0)) {
        kill += 1;
        let at = kill * total / 8;
        assert!(
            raw.read_until(WAIT, |r| r.received.len() >= at),
            "{} results before kill {kill}",
            raw.received.len()
        );
        server.signal("KILL");
        server.wait_exit(Duration::from_secs(10));
        // Nothing is written between the kill and the restart: what the raw
        // reader has beyond committed results is from aborted or open
        // transactions.
        let committed = read_committed_from_start(&topics.output, 1).len();
        assert!(raw.read_until(WAIT, |r| r.received.len() >= committed));
        raw.read_more(Duration::from_millis(300));
        let not_committed = raw.received.len() - committed;
        left_open.push(not_committed - not_committed_before);
        not_committed_before = not_committed;
        server = topics.scorer(&flags);
    }

    // A reader that starts after the restarts sees each result once.
    let deadline = Instant::now() + WAIT;
    let mut committed = read_committed_from_start(&topics.output, 1);
    while distinct_keys(&committed) < total {
        assert!(
            Instant::now() < deadline,
            "{} of {total} keys; log:\n{}",
            distinct_keys(&committed),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
        committed = read_committed_from_start(&topics.output, 1);
    }
    // Anything scored again would show up by now.
    std::thread::sleep(Duration::from_secs(1));
    let committed = read_committed_from_start(&topics.output, 1);
    assert!(raw.read_until(WAIT, |r| r.received.len() >= committed.len()));
    raw.read_more(Duration::from_millis(300));
    let seen = check_results(&iris, &committed);
    let lost = total - seen.len();
    let duplicates = duplicates(&seen);
    let aborted = raw.received.len() - committed.len();
    eprintln!(
        "exactly once: {kill} SIGKILLs, results left in an open transaction by each: \
         {left_open:?}; {aborted} aborted results in the topic; read_committed: {} results, \
         {lost} lost, {duplicates} duplicates",
        committed.len()
    );
    assert_eq!(lost, 0, "every message has a result");
    assert_eq!(duplicates, 0, "no result twice");
    assert_eq!(committed.len(), total);
    // The test is only worth something if a kill struck inside a
    // transaction whose results were already written.
    assert!(
        left_open.iter().any(|&n| n > 0),
        "no kill landed inside a transaction: {left_open:?}"
    );

    let dead = read_committed_from_start(&topics.dlq, 1);
    assert_eq!(dead.len(), 1, "one dead letter, once: {dead:?}");
    assert_eq!(dead[0].key.as_deref(), Some("poison"));
}

/// How many distinct keys `results` have.
fn distinct_keys(results: &[support::kafka::Received]) -> usize {
    results
        .iter()
        .map(|r| r.key.as_deref())
        .collect::<HashSet<_>>()
        .len()
}

#[test]
fn kafka_flags_are_checked() {
    let topics = Topics::new(1);
    // An unknown librdkafka property fails at start, naming it.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_serve"))
        .current_dir(support::repo_root())
        .env("MODELOPS_TELEMETRY", "off")
        .args(["--port", "0", "--kafka-brokers", &brokers()])
        .args(["--kafka-input-topic", &topics.input])
        .args(["--kafka-property", "no.such.property=1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no.such.property"), "{stderr}");
}
